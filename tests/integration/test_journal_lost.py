"""A live session's journal is never lost without a word, between real processes on 127.0.0.1:
one session per journal folder, a refused start leaves nothing behind, and a journal that can
no longer be written (a full disk, its folder deleted) halts the session, cancels its resting
orders at the exchange, prints its summary and ends it with an error."""

from __future__ import annotations

import resource
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tickwise.engine.live.control import request
from tickwise.engine.live.journal import replay_journal

from .processes import TICKWISE, WAIT, spawn

# A market maker: orders resting at the exchange all the time, and a journal that grows.
MAKER = ["--strategy", "obi_market_maker", "--param", "qty=100", "--param", "max_position=1000"]


def live_args(feed: str, journal: Path, *extra: str) -> list[str]:
    return [TICKWISE, "live", "--strategy", "mean_reversion", "--feed", feed, "--instruments",
            "synth:2", "--journal", str(journal), "--control", "tcp://127.0.0.1:*",
            *extra]  # fmt: skip


def test_a_second_session_on_the_same_journal_is_refused_in_one_line(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    feed, endpoint = spawn("feed", "synth", "--bind", "tcp://127.0.0.1:*", "--rate", "200",
                           "--instruments", "2", "--wait", "0")  # fmt: skip
    first, control = spawn(*live_args(endpoint, journal)[1:])
    try:
        before = sorted(p.name for p in journal.iterdir())
        second = subprocess.run(live_args(endpoint, journal), capture_output=True, text=True,
                                timeout=300)  # fmt: skip
        assert second.returncode == 1
        assert "in use by another session" in second.stderr
        assert str(first.pid) in second.stderr
        assert "Traceback" not in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
        assert sorted(p.name for p in journal.iterdir()) == before  # nothing added
        assert request(control, {"cmd": "status"})["ok"]  # the first goes on
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
        feed.kill()
        feed.wait(30)
    assert first.returncode == 0
    assert replay_journal(journal).segments == 1  # one session, never mixed with another


@pytest.mark.parametrize("refusal", ["non-loopback control", "control port in use"])
def test_a_refused_start_leaves_no_journal_behind(tmp_path: Path, refusal: str) -> None:
    import zmq

    with zmq.Context() as ctx, ctx.socket(zmq.ROUTER) as taken:
        port = taken.bind_to_random_port("tcp://127.0.0.1")
        control = "tcp://0.0.0.0:5599" if refusal == "non-loopback control" else (
            f"tcp://127.0.0.1:{port}")  # fmt: skip
        fresh, existing = tmp_path / "fresh", tmp_path / "existing"
        existing.mkdir()
        (existing / "notes.txt").write_text("mine")
        for journal in (fresh, existing):
            args = live_args("tcp://127.0.0.1:5598", journal)
            args[args.index("--control") + 1] = control
            done = subprocess.run(args, capture_output=True, text=True, timeout=300)
            assert done.returncode == 1
            assert "control socket" in done.stderr
            assert "Traceback" not in done.stderr
    assert not fresh.exists()
    assert sorted(p.name for p in existing.iterdir()) == ["notes.txt"]


def _limit_file_size() -> None:
    # Every file this process writes may grow to 64 KiB: its journal's streams soon cannot.
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))


@pytest.mark.parametrize("how", ["disk full", "folder deleted"])
def test_a_journal_that_cannot_be_written_halts_cancels_and_stops_the_session(
    tmp_path: Path, how: str
) -> None:
    journal = tmp_path / "journal"
    # Its loop compiled and cached first: under the limit, the cache could not be written.
    warm = subprocess.run([TICKWISE, "live", *MAKER, "--feed", "tcp://127.0.0.1:9", "--gateway",
                           "tcp://127.0.0.1:9", "--instruments", "synth:3", "--journal",
                           str(tmp_path / "warm"), "--control", "tcp://127.0.0.1:*",
                           "--seconds", "0.1"], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert warm.returncode == 0, warm.stderr
    feed, feed_ep = spawn("feed", "synth", "--bind", "tcp://127.0.0.1:*", "--rate", "1000",
                          "--instruments", "3", "--subscribers", "2", *WAIT)  # fmt: skip
    exchange, gateway = spawn("exchange", "--bind", "tcp://127.0.0.1:*", "--feed", feed_ep,
                              "--instruments", "synth:3")  # fmt: skip
    live = subprocess.Popen(
        [TICKWISE, "live", *MAKER, "--feed", feed_ep, "--gateway", gateway,
         "--instruments", "synth:3", "--journal", str(journal), "--control",
         "tcp://127.0.0.1:*"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_limit_file_size if how == "disk full" else None,
    )  # fmt: skip
    try:
        control = live.stdout.readline().rsplit(" on ", 1)[1].strip()
        deadline = time.monotonic() + 120
        while request(control, {"cmd": "status"})["open_orders"] < 2:  # resting at the exchange
            assert time.monotonic() < deadline
            time.sleep(0.05)
        if how == "folder deleted":
            shutil.rmtree(journal)
        out, err = live.communicate(timeout=120)  # it stops by itself
        exchange.send_signal(signal.SIGINT)
        ex_out, _ = exchange.communicate(timeout=60)
    finally:
        for proc in (live, exchange, feed):
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
    assert live.returncode == 1
    assert "Traceback" not in err
    reason = "File too large" if how == "disk full" else "deleted"
    assert "the journal in" in err
    assert reason in err, err
    assert "stopped by the journal was lost" in out  # its summary, printed
    assert "HALTED by journal_lost" in out, out
    # The exchange was told: nothing of the session's still rests there.
    resting = next(x for x in ex_out.splitlines() if "orders resting at the end" in x)
    assert resting.split()[-2] == "0", ex_out
    if how == "disk full":
        replay_journal(journal)  # what was committed before the disk filled replays
