"""`tickwise top` against a real live session on 127.0.0.1: what a person sees, and what
its keys do to the session (kill with a reason, resume, flatten), checked on screen and
through the session's own control socket; and a view of nothing that says so and quits.

The app runs headless in the test process (Textual's `run_test` and its pilot), driven by
`asyncio.run`; the feed and the session are real `tickwise` processes.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from tickwise.cli.top import Link, activity, health, instruments_table, top_app
from tickwise.engine.live.control import request
from tickwise.engine.live.journal import replay_journal

from .processes import TICKWISE, WAIT, spawn

ROOT = Path(__file__).resolve().parents[2]
SIZE = (160, 48)  # the terminal the view is drawn on (columns, lines)
WAIT_S = 30.0  # the longest any one thing may take to show on screen
OPERATOR = "top-test"
REASON = "fat finger on desk 2"
DOCS_CAPTURE = ROOT / "docs" / "top.md"
CAPTURE_MARKERS = ("<!-- top-capture -->\n", "<!-- end top-capture -->")


def screen_text(app: Any) -> str:
    """What the terminal shows now, as plain text: the same render `export_screenshot` turns
    into SVG (modals over the screens beneath them), exported as text."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True,
                      force_terminal=True, color_system="truecolor",
                      legacy_windows=False)  # fmt: skip
    console.print(app.screen._compositor.render_update(
        full=True, screen_stack=app._background_screens))  # fmt: skip
    return console.export_text()


def shown_in(app: Any, selector: str) -> str:
    """The lines of the screen one widget takes, as shown."""
    region = app.query_one(selector).region
    lines = screen_text(app).splitlines()
    return "\n".join(lines[region.y : region.y + region.height])


def header_text(app: Any) -> str:
    """The header's lines: state, kill switch, reasons, whether the session answers."""
    return shown_in(app, "#header")


async def until(pilot: Any, shown: Callable[[], bool], what: str) -> None:
    """Wait (at most WAIT_S) until `shown()` holds, letting the app run meanwhile."""
    deadline = time.monotonic() + WAIT_S
    while not shown():
        assert time.monotonic() < deadline, f"not on screen after {WAIT_S:g} s: {what}\n" + (
            screen_text(pilot.app)
        )
        await pilot.pause(0.1)


async def type_text(pilot: Any, text: str) -> None:
    await pilot.press(*("space" if c == " " else c for c in text))


def status(control: str) -> dict[str, Any]:
    reply = request(control, {"cmd": "status"}, timeout_s=WAIT_S)
    assert reply["ok"], reply
    return reply


def stop(proc: subprocess.Popen) -> None:
    """End a process this test started, whatever state it is in."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


@pytest.fixture
def session(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen, Path]]:
    """A real synthetic feed and a real mean_reversion session on it: the session's control
    endpoint, its process and its journal folder. Both processes end with the test."""
    feed, endpoint = spawn("feed", "synth", "--bind", "tcp://127.0.0.1:*", "--rate", "2000",
                           "--instruments", "3", "--seconds", "120", *WAIT)  # fmt: skip
    live = None
    try:
        journal = tmp_path / "journal"
        live, control = spawn("live", "--strategy", "mean_reversion", "--feed", endpoint,
                              "--instruments", "synth:3", "--journal", str(journal),
                              "--control", "tcp://127.0.0.1:*", "--seconds", "120")  # fmt: skip
        yield control, live, journal
    finally:
        if live is not None:
            stop(live)
        stop(feed)


@pytest.mark.timeout(240)
def test_top_shows_a_live_session_and_its_keys_kill_resume_and_flatten_it(
    session: tuple[str, subprocess.Popen, Path],
) -> None:
    control, live, journal = session
    app = top_app(Link(control, timeout_s=WAIT_S), OPERATOR, refresh_s=0.25)
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: "status as of" in header_text(app), "a first status")
            await until(pilot, lambda: "SYN" in screen_text(app), "the instruments' symbols")
            before = status(control)
            assert f"operator {OPERATOR}" in header_text(app)
            assert "tick → order" in screen_text(app)  # (a latency row, "-" without a gateway)

            # k: a modal asks for the reason; Enter sends the kill.
            await pilot.press("k")
            await until(pilot, lambda: "Kill the session" in screen_text(app), "the kill modal")
            await type_text(pilot, REASON)
            await pilot.press("enter")
            await until(pilot, lambda: "HALTED" in header_text(app), "HALTED in the header")
            await until(pilot, lambda: REASON in header_text(app), "the reason in the header")
            halted = status(control)
            assert halted["state"] == "halted"
            assert halted["reasons"] == {"": REASON}
            if before["state"] == "active":  # (else the first cause stays: halts are latched)
                assert halted["halt_reason"] == "manual"
            assert "kill: done, the session is HALTED" in screen_text(app)
            if "events_log" in halted:  # the kill is in the event log on screen
                await until(pilot, lambda: REASON in shown_in(app, "#events"), "the log's kill")
            seen["capture"] = screen_text(app)

            # r: a modal asks to confirm; y sends the resume. The session takes it (ACTIVE
            # on screen) or refuses it, saying why (its words on screen): its status says
            # which.
            await pilot.press("r")
            await until(pilot, lambda: "Resume the whole session" in screen_text(app),
                        "the resume modal")  # fmt: skip
            await pilot.press("y")
            await until(pilot, lambda: re.search(r"resume( refused: \S|: done)",
                                                 shown_in(app, "#action")) is not None,
                        "the resume's outcome")  # fmt: skip
            after = status(control)
            if after["state"] == "active":
                await until(pilot, lambda: "ACTIVE" in header_text(app), "ACTIVE in header")
                assert "resume: done, the session is ACTIVE" in screen_text(app)
            else:
                assert after["resume_blocked_by"], after
                assert "resume refused: cannot resume:" in screen_text(app)

            # Escape cancels a modal: nothing is sent.
            await pilot.press("k")
            await until(pilot, lambda: "Kill the session" in screen_text(app), "the kill modal")
            await pilot.press("escape")
            await until(pilot, lambda: "Kill the session" not in screen_text(app), "no modal")
            assert status(control)["state"] == after["state"]

            # f: confirm, then the flatten is done: the session is REDUCING (or stays HALTED
            # when the resume was refused), as the screen and the session say.
            await pilot.press("f")
            await until(pilot, lambda: "Flatten every position" in screen_text(app),
                        "the flatten modal")  # fmt: skip
            await pilot.press("enter")
            await until(pilot, lambda: "flatten: done" in screen_text(app), "flatten: done")
            flattened = status(control)["state"]
            assert flattened == ("reducing" if after["state"] == "active" else "halted")
            await until(pilot, lambda: flattened.upper() in header_text(app),
                        f"{flattened.upper()} in header")  # fmt: skip
            await pilot.press("q")
        seen["return_code"] = app.return_code

    asyncio.run(scenario())
    assert seen["return_code"] == 0
    if os.environ.get("TICKWISE_WRITE_DOCS"):
        write_docs_capture(seen["capture"])

    # What the keys sent reached the journal, signed with the operator's name.
    live.send_signal(signal.SIGTERM)
    live.communicate(timeout=60)
    heard = [(e["what"], json.loads(e["detail"])) for e in replay_journal(journal).events
             if e["what"] in ("kill", "resume", "resume_refused", "flatten")]  # fmt: skip
    assert [what for what, _ in heard] in (["kill", "resume", "flatten"],
                                          ["kill", "resume_refused", "flatten"])  # fmt: skip
    assert all(detail["operator"] == OPERATOR for _, detail in heard)
    assert heard[0][1]["reason"] == REASON


def write_docs_capture(text: str) -> None:
    """Put one screen of a real run into docs/top.md, between its capture markers."""
    page = DOCS_CAPTURE.read_text()
    begin, end = CAPTURE_MARKERS
    head, rest = page.split(begin, 1)
    _, tail = rest.split(end, 1)
    lines = "\n".join(line.rstrip() for line in text.rstrip().splitlines())
    DOCS_CAPTURE.write_text(f"{head}{begin}```text\n{lines}\n```\n{end}{tail}")


@pytest.mark.timeout(120)
def test_top_of_nothing_says_no_answer_keeps_asking_and_quits_at_once() -> None:
    endpoint = "tcp://127.0.0.1:9"  # (discard: nothing answers there)
    app = top_app(Link(endpoint, timeout_s=0.5), OPERATOR, refresh_s=0.25)
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: f"no answer from {endpoint} since" in header_text(app),
                        "no answer")  # fmt: skip
            await until(pilot, lambda: "no answer from the session's control socket"
                        in header_text(app), "the request's own words")  # fmt: skip
            since = re.search(r"since (\d\d:\d\d:\d\d) UTC", header_text(app))
            await pilot.pause(1.5)  # (asking again and again: the time it fell silent stays)
            assert re.search(r"since (\d\d:\d\d:\d\d) UTC", header_text(app)).group(1) == (
                since.group(1)
            )
            # A command to nothing says so too, and the view goes on.
            await pilot.press("r", "y")
            await until(pilot, lambda: "resume: no answer" in screen_text(app), "resume's fate")
            # A status request is waiting out its timeout now and then: q does not wait.
            app.link = Link(endpoint, timeout_s=20.0)
            await pilot.pause(0.6)
            seen["quit_at"] = time.monotonic()
            await pilot.press("q")
        seen["closed_at"] = time.monotonic()
        seen["return_code"] = app.return_code

    asyncio.run(scenario())  # (a crash in the app would raise here, with its traceback)
    assert seen["return_code"] == 0
    # q closed the view without waiting out the pending request's 20 s (a behaviour, not a
    # speed: the margin is wide for a loaded machine).
    assert seen["closed_at"] - seen["quit_at"] < 15.0


@pytest.mark.parametrize(
    ("extra", "error"),
    [(["--refresh", "0"], "--refresh must be in 0.05..60 seconds, got 0"),
     ([], "tickwise top is a full-screen view: run it in a terminal")],
)  # fmt: skip
def test_top_outside_a_terminal_or_with_a_bad_refresh_is_one_line_on_stderr(
    extra: list[str], error: str
) -> None:
    done = subprocess.run([TICKWISE, "top", "--control", "tcp://127.0.0.1:9", *extra],
                          capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 1
    assert error in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def plain(renderable: Any) -> str:
    console = Console(width=120, file=io.StringIO(), record=True)
    console.print(renderable)
    return console.export_text()


def test_a_status_without_the_newer_keys_falls_back_and_shows_dashes() -> None:
    # What a session sent before by_instrument, feed and rejects_by_reason existed.
    older = {"ok": True, "state": "reducing", "positions": {"SYN0": -2.0},
             "instruments": {"SYN1": {"state": "halted", "trigger": "seq_gap"}},
             "pnl": 12.5, "orders_sent": 40, "feed_gaps": 3, "malformed": {"short": 2}}  # fmt: skip
    rows = {line.split()[0]: line.split() for line in plain(instruments_table(older)).splitlines()
            if line.strip()}  # fmt: skip
    assert rows["SYN0"][:4] == ["SYN0", "REDUCING", "-", "-2"]  # (the session's state)
    assert rows["SYN1"][:4] == ["SYN1", "HALTED", "seq_gap", "-"]
    assert rows["total"][-1] == "12.50"
    shown = plain(activity(older))
    assert re.search(r"orders sent / fills +40 / -", shown)
    assert re.search(r"rejects by reason +-", shown)
    assert re.search(r"gaps / heartbeats / malformed +3 / - / 2", plain(health(older)))


def test_the_command_line_loads_textual_only_for_top() -> None:
    code = ("import sys; from tickwise.cli import build_parser; build_parser(); "
            "print('textual' in sys.modules)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
