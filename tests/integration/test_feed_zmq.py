"""Market data over real ZeroMQ sockets on 127.0.0.1 between real processes: `tickwise feed
replay` publishing, a `Subscriber` in the test receiving, checking and decoding.

Every loop here is bounded in count and in time, and every process is stopped by the test.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tickwise.feeds import wire
from tickwise.feeds.history import columns, open_history
from tickwise.feeds.synth import StaleFeed
from tickwise.feeds.transport import Subscriber

from ..conftest import make_synth

TICKWISE = str(Path(sys.executable).with_name("tickwise"))
DEADLINE_S = 90.0


def start_replay(data: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """Start `tickwise feed replay` on a free loopback port; returns it and its endpoint."""
    proc = subprocess.Popen(
        [TICKWISE, "feed", "replay", str(data), "--bind", "tcp://127.0.0.1:*", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    first = proc.stdout.readline()  # "publishing quotes on tcp://127.0.0.1:PORT"
    if "publishing" not in first:
        proc.kill()
        raise AssertionError(f"no endpoint from the replay: {first!r} {proc.stderr.read()}")
    return proc, first.split(" on ")[1].strip()


def receive_all(sub: Subscriber, rows: int, until_heartbeats: int = 0) -> list[wire.Message]:
    """Messages until `rows` rows (and that many heartbeats after them) came, or the deadline."""
    got = []
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        message = sub.receive(200)
        if message is not None:
            got.append(message)
        if sub.rows >= rows and sub.heartbeats >= until_heartbeats:
            break
    return got


@pytest.fixture(scope="module")
def quotes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("feed")
    return make_synth(folder / "q.parquet", kind="quotes", rows=20_000, instruments=3, seed=4)


def test_a_replay_at_max_speed_delivers_every_row_in_order_without_gaps(quotes: Path) -> None:
    proc, endpoint = start_replay(quotes, "--speed", "max", "--batch-rows", "1000")
    try:
        with Subscriber(endpoint) as sub:
            messages = receive_all(sub, 20_000)
        out, err = proc.communicate(timeout=DEADLINE_S)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "published 20,000 rows in 20 messages" in out
    batches = [m for m in messages if not m.is_heartbeat]
    assert [m.seq for m in batches] == list(range(1, 21))
    assert not sub.gaps
    assert not sub.malformed
    history = open_history(quotes)
    expected = [columns(b) for b in history.batches(1_000)]
    for message, want in zip(batches, expected, strict=True):
        for name, values in want.items():
            assert np.array_equal(message.columns[name], values), name
        assert message.batch.num_rows == message.rows  # and as Arrow, over the same memory


def _packets(data: Path, packet_us: int) -> list[np.ndarray]:
    """Each message's ts_event from a replay of `data` at 20x real time in packets."""
    proc, endpoint = start_replay(data, "--speed", "20", "--packet-us", str(packet_us),
                                  "--batch-rows", "100000")  # fmt: skip
    try:
        with Subscriber(endpoint) as sub:
            messages = receive_all(sub, 5_000)
        out, err = proc.communicate(timeout=DEADLINE_S)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert f"in packets of {packet_us} µs" in out
    assert not sub.gaps
    return [m.columns["ts_event"].copy() for m in messages if not m.is_heartbeat]


def test_packets_send_each_window_of_event_time_as_one_message_whatever_the_pace(
    tmp_path: Path,
) -> None:
    """With --packet-us the messages are the data's windows of event time, one each: the
    same on every run, however busy the machine (a machine's pace made them differ)."""
    data = make_synth(tmp_path / "q.parquet", kind="quotes", rows=5_000, instruments=2, seed=8,
                      rate=5_000.0)  # fmt: skip
    ts = np.concatenate([columns(b)["ts_event"] for b in open_history(data).batches(100_000)])
    window = 2_000_000  # 2,000 us of event time
    expected = np.split(ts, np.flatnonzero(np.diff((ts - ts[0]) // window)) + 1)
    first = _packets(data, 2_000)
    assert len(first) == len(expected) > 100
    for got, want in zip(first, expected, strict=True):
        assert np.array_equal(got, want)
    again = _packets(data, 2_000)
    assert [len(m) for m in again] == [len(m) for m in first]


def test_packets_need_a_pace_and_a_length(quotes: Path) -> None:
    for args, error in (
        (["replay", str(quotes), "--speed", "max", "--packet-us", "100"],
         "--packet-us paces rows in event time: it needs a --speed, not max"),
        (["synth", "--seconds", "1", "--packet-us", "nan"],
         "--packet-us must be between 0 and 60,000,000, got nan"),
    ):  # fmt: skip
        done = subprocess.run([TICKWISE, "feed", *args, "--bind", "tcp://127.0.0.1:*"],
                              capture_output=True, text=True, timeout=DEADLINE_S)  # fmt: skip
        assert done.returncode == 1, done.stderr
        assert error in done.stderr


def test_a_quiet_feed_sends_heartbeats_with_its_last_sequence_number(tmp_path: Path) -> None:
    # 6 s without events, replayed at 4x real time: 1.5 s of heartbeats every 50 ms (~30; at
    # least 3 even on a machine so loaded that the feed wakes late: 2 s of data gave 1 once,
    # with two test suites sharing two cores).
    data = make_synth(tmp_path / "q.parquet", kind="quotes", rows=3_000, instruments=2, seed=5,
                      rate=2_000.0, episodes=(StaleFeed(at_s=0.5, seconds=6.0),))  # fmt: skip
    proc, endpoint = start_replay(data, "--speed", "4", "--heartbeat-ms", "50")
    try:
        with Subscriber(endpoint) as sub:
            messages = receive_all(sub, 3_000, until_heartbeats=1)
        proc.communicate(timeout=DEADLINE_S)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert sub.rows == 3_000
    assert not sub.gaps
    last = 0
    beats_in_silence = 0
    for m in messages:
        if m.is_heartbeat:
            assert m.seq == last  # the last batch sent before it
            beats_in_silence += 1
        else:
            last = m.seq
    assert beats_in_silence >= 3


def test_a_subscriber_counts_and_drops_malformed_messages_and_keeps_receiving() -> None:
    """A raw publisher process sends garbage between two good batches."""
    script = r"""
import sys, time, zmq, numpy as np
from tickwise.feeds import wire
sock = zmq.Context.instance().socket(zmq.XPUB)
port = sock.bind_to_random_port("tcp://127.0.0.1")
print(port, flush=True)
sock.poll(30000)
sock.recv()
dt = wire.DTYPES["trades"]
cols = {n: np.arange(5).astype(dt.fields[n][0]) for n in dt.names}
h, b = wire.encode("trades", cols, 1)
sock.send_multipart([h, b])
sock.send_multipart([b"TW\x01\x09" + bytes(36), b""])   # unknown schema
sock.send_multipart([h])                                 # one frame
sock.send_multipart([h, bytes(b)[:-8]])                  # short body
sock.send_multipart([b"garbage", b"x", b"y"])            # three frames of noise
h2, b2 = wire.encode("trades", cols, 2)
sock.send_multipart([h2, b2])
time.sleep(1.0)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        port = proc.stdout.readline().strip()
        with Subscriber(f"tcp://127.0.0.1:{port}") as sub:
            good = []
            deadline = time.monotonic() + DEADLINE_S
            while len(good) < 2 and time.monotonic() < deadline:
                message = sub.receive(200)
                if message is not None:
                    good.append(message)
        proc.wait(timeout=DEADLINE_S)
    finally:
        proc.kill()
    assert [m.seq for m in good] == [1, 2]
    assert sub.malformed == {"schema": 1, "frames": 2, "size": 1}
    assert not sub.gaps


def test_a_subscriber_sees_a_gap_in_the_sequence_numbers() -> None:
    sub = Subscriber("tcp://127.0.0.1:1")  # not connected to anything; fed by hand below
    try:
        dt = wire.DTYPES["quotes"]
        cols = {n: np.zeros(1, dt.fields[n][0]) for n in dt.names}
        for seq in (4, 5, 8):
            sub._track(wire.decode(list(wire.encode("quotes", cols, seq))))
        sub._track(wire.decode(list(wire.heartbeat(10))))
    finally:
        sub.close()
    assert [(g.first, g.last) for g in sub.gaps] == [(6, 7), (9, 10)]
    assert sub.last_seq == 10


def test_replay_refuses_bad_arguments_with_one_line(quotes: Path) -> None:
    for args, message in (
        (["--speed", "0"], "speed must be positive"),
        (["--speed", "fast"], "'fast' is not a number or max"),
        (["--bind", "tcp://nowhere.invalid:1", "--wait", "0"], "cannot bind"),
    ):
        done = subprocess.run([TICKWISE, "feed", "replay", str(quotes), *args],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode != 0
        assert message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def start_synth(*args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [TICKWISE, "feed", "synth", "--bind", "tcp://127.0.0.1:*", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    first = proc.stdout.readline()
    if "publishing" not in first:
        proc.kill()
        raise AssertionError(f"no endpoint from feed synth: {first!r} {proc.stderr.read()}")
    return proc, first.split(" on ")[1].strip()


def test_the_live_synthetic_feed_carries_todays_times_and_its_quiet_spell() -> None:
    began = time.time_ns()
    proc, endpoint = start_synth("--rate", "3000", "--seconds", "1.5", "--heartbeat-ms", "50",
                                 "--inject", "stale:at=0.5,seconds=0.5")  # fmt: skip
    try:
        with Subscriber(endpoint) as sub:
            messages = []
            deadline = time.monotonic() + DEADLINE_S
            while proc.poll() is None and time.monotonic() < deadline:
                message = sub.receive(100)
                if message is not None:
                    messages.append(message)
            while (message := sub.receive(200)) is not None:  # what was still on its way
                messages.append(message)
        out, err = proc.communicate(timeout=DEADLINE_S)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert f"published {sub.rows:,} rows in {sub.messages:,} messages" in out
    assert sub.rows > 1_000
    assert not sub.gaps
    assert not sub.malformed
    stamps = np.concatenate([m.columns["ts_event"] for m in messages if not m.is_heartbeat])
    assert (np.diff(stamps) >= 0).all()
    # Today's market: the first event within seconds of the start, not at the history's date.
    assert abs(int(stamps[0]) - began) < 30 * 1_000_000_000
    # The stale episode: half a second without events, heartbeats through it.
    assert np.diff(stamps).max() >= 400_000_000
    assert sub.heartbeats >= 3


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_the_live_feed_stops_cleanly_on_a_signal(stop: signal.Signals) -> None:
    proc, endpoint = start_synth("--rate", "2000")
    try:
        with Subscriber(endpoint) as sub:
            deadline = time.monotonic() + DEADLINE_S
            while sub.rows < 200 and time.monotonic() < deadline:
                sub.receive(100)
            proc.send_signal(stop)
            out, err = proc.communicate(timeout=DEADLINE_S)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopped by a signal" in out
    assert "Traceback" not in err
