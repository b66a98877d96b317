"""`tickwise live` between real processes on 127.0.0.1: the same events through a live session
(fed by `tickwise feed replay` over ZeroMQ) and through `tickwise backtest` give the same
orders and fills; a person's kill reaches it through `tickwise kill`; a signal stops it
cleanly with everything journaled."""

from __future__ import annotations

import getpass
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tickwise.engine.live.journal import replay_journal

from ..conftest import make_synth
from .processes import TICKWISE, WAIT, spawn

PARAMS = ["--param", "window=30", "--param", "entry_z=1.0", "--param", "qty=100"]
# A constant feed latency: the strategy sees each event 50 µs after its ts_event, live as in
# the backtest (live, ts_recv is when the engine received it, which no backtest can know).
CONFIG = """
[backtest]
feed_latency_us = 50.0
order_latency_us = 150.0
taker_fee_bps = 0.5
"""


ROWS = 10_000  # one message each: enough for messages to wait behind a commit


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("live")
    return make_synth(folder / "q.parquet", kind="quotes", rows=30_000, instruments=3, seed=11)


def test_live_and_backtest_give_the_same_orders_for_the_same_events(
    tmp_path: Path, data: Path
) -> None:
    config = tmp_path / "session.toml"
    config.write_text(CONFIG)
    backtest = [TICKWISE, "backtest", "--strategy", "mean_reversion", "--data", str(data),
                *PARAMS, "--config", str(config), "--out", str(tmp_path / "bt")]  # fmt: skip
    done = subprocess.run(backtest, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr

    # Messages of 7 rows at full speed: many more wait for the engine than it runs between
    # two commits of its journal (each must still be run, once, in order).
    feed, endpoint = spawn("feed", "replay", str(data), "--bind", "tcp://127.0.0.1:*",
                           "--speed", "max", "--batch-rows", "7", *WAIT)  # fmt: skip
    live = subprocess.Popen([TICKWISE, "live", "--strategy", "mean_reversion", "--feed", endpoint,
                             "--instruments", str(data), *PARAMS, "--config", str(config),
                             "--journal", str(tmp_path / "journal"), "--control",
                             "tcp://127.0.0.1:*", "--until-idle", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        out, err = live.communicate(timeout=300)
        feed.communicate(timeout=60)
    finally:
        live.kill()
        feed.kill()
    assert live.returncode == 0, err
    assert feed.returncode == 0
    assert "stopped by the feed idle for 2 s" in out

    from tickwise.backtest.results import readable
    from tickwise.feeds.history import open_history

    journal = replay_journal(tmp_path / "journal")
    strategies = {int(v): "mean_reversion" for v in set(journal.orders["strategy"].tolist())}
    backtest_orders = pq.read_table(tmp_path / "bt" / "orders.parquet")
    backtest_fills = pq.read_table(tmp_path / "bt" / "fills.parquet")
    assert len(journal.orders) == backtest_orders.num_rows > 100, out
    assert len(journal.fills) == backtest_fills.num_rows > 0
    for records, table in ((journal.orders, backtest_orders), (journal.fills, backtest_fills)):
        # The result files name their codes (buy, new, taker, ...): written from the same
        # records, they must read back bit for bit as what the live session journaled.
        mine = readable(records, open_history(data).instruments, strategies)
        for name in table.schema.names:
            want, got = table.column(name), mine.column(name)
            if pa.types.is_dictionary(want.type):
                assert want.to_pylist() == got.to_pylist(), name
            else:
                assert want.to_numpy().tobytes() == got.to_numpy().tobytes(), name  # (NaNs)
    summary = json.loads((tmp_path / "bt" / "summary.json").read_text())
    assert f"{summary['pnl']:,.2f}" in out  # the same PnL, to the cent


def test_a_person_kills_a_live_session_and_a_signal_stops_it_cleanly(
    tmp_path: Path, data: Path
) -> None:
    # 500 quotes a second: PARAMS trade ~0.2 orders a quote, far from the 1,000 orders a second
    # the default throttle allows (at 3,000 quotes a second a CI machine starved the session,
    # its late batches shared one receipt time, the throttle refused and reject_rate tripped
    # before the person could)
    feed, endpoint = spawn("feed", "synth", "--bind", "tcp://127.0.0.1:*", "--rate", "500",
                           "--instruments", "3", *WAIT)  # fmt: skip
    live = subprocess.Popen([TICKWISE, "live", "--strategy", "mean_reversion", "--feed", endpoint,
                             "--instruments", "synth:3", *PARAMS, "--journal",
                             str(tmp_path / "journal"), "--control", "tcp://127.0.0.1:*"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        control = live.stdout.readline().rsplit(" on ", 1)[1].strip()
        time.sleep(1.0)  # trading
        killed = subprocess.run([TICKWISE, "kill", "--reason", "test", "--control", control,
                                 "--timeout", "30", ], capture_output=True, text=True,
                                timeout=60)  # fmt: skip
        assert killed.returncode == 0, killed.stderr
        status = subprocess.run([TICKWISE, "status", "--json", "--control", control, "--timeout",
                                 "30"], capture_output=True, text=True, timeout=60)  # fmt: skip
        state = json.loads(status.stdout)
        assert (state["state"], state["halt_reason"], state["reason"]) == ("halted", "manual",
                                                                           "test")  # fmt: skip
        assert state["batches"] > 0
        assert state["open_orders"] == 0
        live.send_signal(signal.SIGTERM)
        out, err = live.communicate(timeout=60)
    finally:
        live.kill()
        feed.send_signal(signal.SIGINT)
        feed.communicate(timeout=60)
        feed.kill()
    assert live.returncode == 0, err
    assert "stopped by a signal" in out
    journal = replay_journal(tmp_path / "journal")
    whats = [e["what"] for e in journal.events]
    assert whats == ["start", "warmed_up", "first_batch", "kill", "transition", "end"]
    kill = json.loads(journal.events[3]["detail"])
    assert (kill["reason"], kill["operator"]) == ("test", getpass.getuser())
    change = json.loads(journal.events[4]["detail"])
    assert (change["scope"], change["from"], change["to"], change["trigger"]) == (
        "session", "active", "halted", "manual")  # fmt: skip
    # The change's time is when the person acted (the wall clock), not the last quote's.
    assert abs(change["ts"] - journal.events[3]["ts"]) < 50_000_000
    killed_at = journal.events[3]["ts"]  # the engine's wall clock, as its orders' send times
    before = journal.orders["ts"] < killed_at
    assert np.count_nonzero(before & (journal.orders["status"] == 0)) > 0  # it was trading
    # Once halted, nothing automated left: every order event after the kill is a cancel or a
    # refusal, never a new order.
    assert np.count_nonzero(~before & (journal.orders["status"] == 0)) == 0


def live_on(feed_endpoint: str, tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    config = tmp_path / "session.toml"
    config.write_text("[killswitch]\nstale_feed_ms = 500.0\n")
    proc = subprocess.Popen([TICKWISE, "live", "--strategy", "mean_reversion", "--feed",
                             feed_endpoint, "--instruments", "synth:2", *PARAMS, "--config",
                             str(config), "--journal", str(tmp_path / "journal"), "--control",
                             "tcp://127.0.0.1:*", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    return proc, proc.stdout.readline().rsplit(" on ", 1)[1].strip()


def wait_for_halt(control: str, deadline_s: float = 60.0) -> dict:
    """The session's status once it is halted (or the last one seen at the deadline)."""
    deadline = time.monotonic() + deadline_s
    while True:
        done = subprocess.run([TICKWISE, "status", "--json", "--control", control, "--timeout",
                               "30"], capture_output=True, text=True, timeout=60)  # fmt: skip
        state = json.loads(done.stdout)
        if state["halted"] or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


def halted_then_stopped(live: subprocess.Popen, feed: subprocess.Popen, control: str) -> dict:
    """The session's status once halted; then SIGINT stops it, and both processes are ended
    whatever happened."""
    try:
        state = wait_for_halt(control)
        live.send_signal(signal.SIGINT)
        live.communicate(timeout=60)
        return state
    finally:
        live.kill()
        feed.kill()


def test_a_feed_gone_silent_trips_the_kill_switch_by_the_clock(tmp_path: Path) -> None:
    # (as slow as the kill test's feed, for the same reason: nothing but the silence may trip)
    feed, endpoint = spawn("feed", "synth", "--bind", "tcp://127.0.0.1:*", "--rate", "500",
                           "--instruments", "2", *WAIT)  # fmt: skip
    live, control = live_on(endpoint, tmp_path)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # trading first
            done = subprocess.run([TICKWISE, "status", "--json", "--control", control],
                                  capture_output=True, text=True, timeout=60)  # fmt: skip
            if json.loads(done.stdout)["batches"] > 50:
                break
        feed.kill()  # no more data, no more heartbeats
        feed.wait(timeout=30)
    finally:
        state = halted_then_stopped(live, feed, control)
    assert state["halt_reason"] == "stale_feed"
    assert state["halt_value"] > 500.0  # ms of silence, past the limit
    assert live.returncode == 0


def resume(control: str) -> subprocess.CompletedProcess:
    return subprocess.run([TICKWISE, "resume", "--confirm", "--control", control, "--timeout",
                           "30"], capture_output=True, text=True, timeout=60)  # fmt: skip


def test_resume_is_refused_while_the_feed_is_silent_and_taken_once_it_is_heard_again(
    tmp_path: Path,
) -> None:
    feed, endpoint = spawn("feed", "synth", "--bind", "tcp://127.0.0.1:*", "--rate", "500",
                           "--instruments", "2", *WAIT)  # fmt: skip
    live, control = live_on(endpoint, tmp_path)
    try:
        deadline = time.monotonic() + 60
        while json.loads(subprocess.run([TICKWISE, "status", "--json", "--control", control],
                                        capture_output=True, text=True,
                                        timeout=60).stdout)["batches"] < 50:  # fmt: skip
            assert time.monotonic() < deadline
        feed.send_signal(signal.SIGSTOP)  # alive, but silent: no data, no heartbeats
        state = wait_for_halt(control)
        assert state["halt_reason"] == "stale_feed", state
        refused = resume(control)
        assert refused.returncode != 0
        assert "the feed has been silent for" in refused.stderr, refused.stderr
        assert wait_for_halt(control)["halted"]
        feed.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 60
        while (done := resume(control)).returncode != 0:  # heard again (and caught up)
            assert time.monotonic() < deadline, done.stderr
            time.sleep(0.2)
        assert "ACTIVE" in done.stdout
    finally:
        feed.send_signal(signal.SIGCONT)
        live.send_signal(signal.SIGINT)
        live.communicate(timeout=60)
        feed.kill()
        feed.wait(30)
    assert live.returncode == 0
    events = replay_journal(tmp_path / "journal").events
    refusals = [json.loads(e["detail"]) for e in events if e["what"] == "resume_refused"]
    assert "the feed has been silent for" in refusals[0]["error"]
    changes = [json.loads(e["detail"]) for e in events if e["what"] == "transition"]
    assert (changes[0]["to"], changes[0]["trigger"]) == ("halted", "stale_feed")
    resumes = [c for c in changes if (c["from"], c["to"]) == ("halted", "active")]
    assert resumes[-1]["trigger"] == "manual"


GAPPY_FEED = r"""
import sys, time, zmq, numpy as np
from tickwise.feeds import wire
sock = zmq.Context.instance().socket(zmq.XPUB)
port = sock.bind_to_random_port("tcp://127.0.0.1")
print(f"gappy feed on tcp://127.0.0.1:{port}", flush=True)
sock.poll(300000)
sock.recv()
dt = wire.DTYPES["quotes"]
# Messages 4 to 6 never sent; the quotes inside run on in sequence (1 to 5), so only the
# wire's sequence numbers show what was lost.
for k, seq in enumerate((1, 2, 3, 7, 8)):
    now = time.time_ns()
    cols = {n: np.zeros(1, dt.fields[n][0]) for n in dt.names}
    cols["ts_event"][:] = now
    cols["ts_recv"][:] = now
    cols["seq"][:] = k + 1
    cols["bid_px"][:] = 100.0
    cols["ask_px"][:] = 100.02
    cols["bid_sz"][:] = cols["ask_sz"][:] = 10.0
    sock.send_multipart(list(wire.encode("quotes", cols, seq)))
    if seq == 3:
        sock.send_multipart([b"TW\x01\x09" + bytes(36), b""])  # and one malformed message
    time.sleep(0.05)
for _ in range(200):  # heartbeats while the test looks
    sock.send_multipart(list(wire.heartbeat(8)))
    time.sleep(0.05)
"""


def test_batches_lost_on_the_wire_trip_the_kill_switch_and_garbage_is_journaled(
    tmp_path: Path,
) -> None:
    feed = subprocess.Popen([sys.executable, "-c", GAPPY_FEED], stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    endpoint = feed.stdout.readline().rsplit(" on ", 1)[1].strip()
    live, control = live_on(endpoint, tmp_path)
    state = halted_then_stopped(live, feed, control)
    assert state["halt_reason"] == "seq_gap"
    assert state["halt_value"] == 3.0  # batches 4, 5 and 6
    journal = replay_journal(tmp_path / "journal")
    whats = [e["what"] for e in journal.events]
    assert {"end", "malformed", "seq_gap", "start", "transition"} <= set(whats)
    # (and what the log said as it happened: the feed's silence once the gappy feed ended)
    assert set(whats) <= {"start", "warmed_up", "first_batch", "malformed", "seq_gap",
                          "transition", "feed_silent", "end"}  # fmt: skip
    malformed = next(e for e in journal.events if e["what"] == "malformed")
    assert "unknown schema id 9" in malformed["detail"]


def test_the_demo_shows_the_kill_switch_catching_a_crash_and_leaves_no_process_behind(
    tmp_path: Path,
) -> None:
    demo = subprocess.Popen([TICKWISE, "demo", "--seconds", "8", "--out", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        out, err = demo.communicate(timeout=600)
    finally:
        demo.kill()
    assert demo.returncode == 0, err
    assert "strategy: mean_reversion (window=100, entry_z=2.0, exit_z=0.5, qty=100" in out
    assert "kill switch: tripped by price_jump, trading halted" in out
    assert "tickwise top --control tcp://127.0.0.1:" in out
    assert "positions left open: " in out
    # Its journal is kept, and the commands printed to read it work as printed.
    (session,) = tmp_path.iterdir()
    journal = session / "journal"
    assert f"tickwise journal events {journal}" in out
    events = subprocess.run([TICKWISE, "journal", "events", str(journal), "--json"],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert events.returncode == 0, events.stderr
    assert '"price_jump"' in events.stdout
    assert " trip " in (session / "events.log").read_text()
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):  # nothing left in the demo's process group
        os.killpg(demo.pid, 0)


def test_every_waiting_batch_is_run_once_whatever_the_journal_commit_groups(
    tmp_path: Path,
) -> None:
    """One-row messages at full speed into a session that commits every 3 batches: each
    message must still be run exactly once, in order (the event count, no sequence gap)."""
    from tickwise.engine.config import SessionConfig
    from tickwise.engine.live.runner import run_live
    from tickwise.feeds.history import open_history

    data = make_synth(tmp_path / "q.parquet", kind="quotes", rows=ROWS, instruments=3, seed=11)

    feed, endpoint = spawn("feed", "replay", str(data), "--bind", "tcp://127.0.0.1:*",
                           "--speed", "max", "--batch-rows", "1", *WAIT)  # fmt: skip
    try:
        # (the history keeps its own times: the session sees them 50 µs late, as in
        # `test_live_and_backtest_give_the_same_orders_for_the_same_events`)
        summary = run_live("mean_reversion", endpoint, open_history(data).instruments,
                           {"window": 30, "entry_z": 1.0, "qty": 100.0},
                           SessionConfig(feed_latency_us=50.0),
                           journal_dir=tmp_path / "journal", control="tcp://127.0.0.1:*",
                           until_idle_s=2.0, group=3)  # fmt: skip
        feed.communicate(timeout=120)
    finally:
        feed.kill()
    assert summary.events == summary.batches == ROWS
    # Messages waiting together ran as one compiled call (at most `group` of them).
    assert summary.batches / 3 <= summary.loop_calls < summary.batches
    assert summary.gaps == 0
    assert summary.status["halt_reason"] != "seq_gap"


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--instruments", "synth:0"], "synth:N takes a count in 1..10000"),
     (["--instruments", "synth:x"], "synth:N takes a count in 1..10000"),
     (["--instruments", "synth:2", "--seconds", "0"], "seconds must be positive"),
     (["--instruments", "synth:2", "--until-idle", "-1"], "until_idle_s must be positive")],
)  # fmt: skip
def test_live_refuses_bad_arguments_in_one_line(tmp_path: Path, args: list, message: str) -> None:
    done = subprocess.run([TICKWISE, "live", "--strategy", "mean_reversion", "--journal",
                           str(tmp_path / "j"), *args], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr
