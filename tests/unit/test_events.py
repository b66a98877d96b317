"""A live session's event log (`engine.live.events`): lines for people and for log shippers,
and an alert command that never holds the session up nor feeds on its own failures."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import pytest

from tickwise.engine.live.events import KNOWN_EVENTS, LINES_QUEUED, EventLog, open_log_file


def test_a_text_line_and_a_json_line_say_the_same_event() -> None:
    text, js = io.StringIO(), io.StringIO()
    for stream, form in ((text, "text"), (js, "json")):
        log = EventLog(stream=stream, log_format=form)
        log.emit("trip", "kill switch tripped", "critical", ts=10**18, value=5.0)
        log.close()  # (lines are written from a thread of their own)
    assert (
        text.getvalue() == "2001-09-09T01:46:40.000Z CRITICAL trip           kill switch tripped\n"
    )
    assert json.loads(js.getvalue()) == {
        "ts": "2001-09-09T01:46:40.000Z", "ts_ns": 10**18, "level": "critical",
        "event": "trip", "message": "kill switch tripped", "detail": {"value": 5.0},
    }  # fmt: skip


def test_every_known_event_is_counted_from_zero() -> None:
    log = EventLog(stream=io.StringIO())
    counts = log.counts_by_level()
    assert counts == {(n, lv): 0 for n, levels in KNOWN_EVENTS.items() for lv in levels}
    log.emit("trip", "x", "warning")
    assert log.counts_by_level()["trip", "warning"] == 1


def test_a_failing_alert_command_is_said_once_per_look_and_never_fed_its_own_failures(
    tmp_path: Path,
) -> None:
    got = tmp_path / "got.jsonl"
    said = io.StringIO()
    log = EventLog(stream=said, on_event=f"cat >> '{got}'; echo down >&2; exit 3")
    log.emit("start", "the session starts")
    deadline = time.monotonic() + 30
    while "alert_failed" not in said.getvalue() and time.monotonic() < deadline:
        log.pump()
        time.sleep(0.05)
    for _ in range(20):  # more looks: nothing more to say, nothing more sent
        log.pump()
        time.sleep(0.05)
    log.close()
    failed = [line for line in said.getvalue().splitlines() if " alert_failed " in line]
    assert len(failed) == 1
    assert "exited with status 3: down" in failed[0]
    assert [json.loads(line)["event"] for line in got.read_text().splitlines()] == ["start"]
    assert log.alerts_not_sent == 1


def test_a_log_file_must_be_a_file_not_a_fifo_or_a_folder(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a file"):
        open_log_file(fifo)  # (opening it would wait for a reader, holding the session)
    with pytest.raises(OSError, match="not a file"):
        open_log_file(tmp_path)
    open_log_file(Path(os.devnull)).close()  # (a device is a file to write to)
    open_log_file(tmp_path / "new.log").close()
    assert (tmp_path / "new.log").is_file()


@pytest.mark.timeout(60)
def test_a_stderr_nobody_reads_never_holds_the_session_up() -> None:
    """A pipe nobody drains (a stalled log shipper, `| less`, Ctrl-S) blocks its writer once
    full: the lines wait for it in a thread of their own, and beyond LINES_QUEUED are
    dropped and counted; `emit` never waits."""
    read_end, write_end = os.pipe()
    stalled = os.fdopen(write_end, "w")
    try:
        log = EventLog(stream=stalled)
        for n in range(LINES_QUEUED + 2_000):  # (far more than the pipe and the queue hold)
            log.emit("bad_data", f"row {n} dropped at the boundary", "warning", journal=False)
        assert log.lines_dropped > 0
        log.close(wait_s=0.2)  # (gives up on the stalled reader: the stop is not held either)
    finally:
        os.close(read_end)
