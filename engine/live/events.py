"""A live session's events as they happen: one line each on stderr (and a log file), the
journal, the recent ones for `status` and `tickwise top`, and a person's alert command.

The journal has long kept what a session did; a trader watching its terminal saw a start
line and, minutes later, a summary. Every event a person should hear of now (the start,
warm-up done, the first batch, kill-switch trips, a person's kills and resumes, refusals,
reject storms, feed gaps and silences, the exchange lost and back, the stop) goes through
`EventLog.emit`, which:

- queues it for the journal (durable at the turn's commit, as before);
- writes one line to stderr, as text for people or JSON for log shippers
  (`--log-format`), and the same line to `--log-file` if given, each from a thread of its
  own (`LineWriter`): a reader that stalls (a pipe nobody drains, a terminal paused with
  Ctrl-S) never holds the session up; lines it cannot take are dropped and counted. A log
  file that can no longer be written (a full disk) is given up with one line on stderr:
  the session goes on, its journal is the record that stops it when lost;
- keeps the latest ones for `status` (what `top` shows);
- hands it to the alert command (`--on-event CMD`), which runs in a thread of its own,
  one event at a time, the event's JSON on its stdin. The session never waits for it: a
  command that fails, hangs past its timeout (its whole process group is stopped) or falls
  behind (its queue full; critical events keep a queue of their own) is reported as an
  `alert_failed` event, which is not itself sent to the command.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

LEVELS = ("info", "warning", "critical")
LOG_FORMATS = ("text", "json")
RECENT_KEPT = 200  # events kept for status (which carries the latest 50: top shows them)
ALERT_QUEUE = 1_000  # events waiting for the alert command; more are dropped and said so
ALERT_TIMEOUT_S = 10.0  # an alert command running longer is killed
URGENT_QUEUE = 100  # critical events waiting when the alert queue is full
LINES_QUEUED = 10_000  # log lines waiting for a slow reader; more are dropped and counted
_ALERT_OUTPUT = 500  # characters of a failing command's stderr quoted
# Every event a live session logs, with the levels it comes at (docs/live.md has the table):
# their counters start at 0, so that a scraper's rate() sees the first of each.
KNOWN_EVENTS: dict[str, tuple[str, ...]] = {
    "start": ("info",), "warmed_up": ("info",), "first_batch": ("info",),
    "trip": ("critical", "warning"), "kill": ("critical",), "resume": ("warning",),
    "resume_refused": ("warning",), "flatten": ("warning",), "flatten_refused": ("warning",),
    "flat": ("info",), "flatten_incomplete": ("critical",),
    "flatten_stopped": ("critical", "warning"),
    "reject_storm": ("warning",), "rejects_calm": ("info",), "seq_gap": ("critical",),
    "feed_silent": ("critical", "warning"), "feed_back": ("info",),
    "exchange_lost": ("critical",), "exchange_back": ("info",), "reconcile": ("critical",),
    "malformed": ("warning",), "bad_data": ("warning",), "ignored": ("info",),
    "journal_lost": ("critical",), "stop": ("info",), "end": ("info", "warning"),
    "alert_failed": ("warning",),
}  # fmt: skip


class _Journal(Protocol):
    def event(self, ts: int, what: str, detail: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Event:
    """One event: when (wall clock, ns), what (its name), how grave, a line for people and
    the figures behind it."""

    ts: int
    name: str
    level: str
    message: str
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The event as JSON carries it (the alert command's stdin, a JSON log line)."""
        return {
            "ts": iso_time(self.ts),
            "ts_ns": self.ts,
            "level": self.level,
            "event": self.name,
            "message": self.message,
            "detail": _plain(self.detail),
        }

    def text(self) -> str:
        """One line for people: time (UTC), level, event name, what happened."""
        return f"{iso_time(self.ts)} {self.level.upper():<8} {self.name:<14} {self.message}"


class EventLog:
    """Where a live session's events go (see the module's docstring). `emit` is called from
    the session's thread only; `pump` (each turn) brings in what the alert thread reports."""

    def __init__(
        self,
        journal: _Journal | None = None,
        *,
        log_format: str = "text",
        stream: IO[str] | None = None,
        log_file: Path | None = None,
        on_event: str | None = None,
        alert_timeout_s: float = ALERT_TIMEOUT_S,
    ) -> None:
        if log_format not in LOG_FORMATS:
            raise ValueError(f"log format {log_format!r}; allowed: {', '.join(LOG_FORMATS)}")
        self.journal = journal
        self.log_format = log_format
        self.stream = sys.stderr if stream is None else stream
        self.recent: deque[Event] = deque(maxlen=RECENT_KEPT)
        self.counts: Counter[str] = Counter()  # events by name
        self.by_level: Counter[tuple[str, str]] = Counter(  # events by (name, level)
            {(name, level): 0 for name, levels in KNOWN_EVENTS.items() for level in levels}
        )
        self.log_file_failure: str | None = None
        self.log_file = log_file
        self._out = LineWriter(self.stream)
        self._file: LineWriter | None = None
        if log_file is not None:
            self._file = LineWriter(open_log_file(log_file), closing=True)
        self._alerts = AlertCommand(on_event, alert_timeout_s) if on_event else None

    def emit(self, name: str, message: str, level: str = "info", *, journal: bool = True,
             ts: int | None = None, **detail: Any) -> Event:  # fmt: skip
        """Record one event: journal (unless `journal=False`: already journaled in another
        form), log line, recent list, alert command."""
        assert level in LEVELS, level
        event = Event(time.time_ns() if ts is None else int(ts), name, level, message, detail)
        if journal and self.journal is not None:
            self.journal.event(event.ts, name, detail | {"level": level, "message": message})
        self.counts[name] += 1
        self.by_level[name, level] += 1
        self.recent.append(event)
        line = event.text() if self.log_format == "text" else json.dumps(event.as_dict())
        self._out.write(line)
        if self._file is not None:
            self._file.write(line)
        if self._alerts is not None and name != "alert_failed":  # (never to the command itself)
            self._alerts.send(event)
        return event

    def pump(self) -> None:
        """Report what the alert command did wrong since the last call (as events of the
        session's thread; never sent to the command again)."""
        if self._file is not None and self._file.failure is not None:
            self._give_up_file()
        if self._alerts is None:
            return
        problems = self._alerts.problems()
        if problems:  # (one event for all since the last look: a dead pager is no flood)
            more = f" (and {len(problems) - 1:,} more)" if len(problems) > 1 else ""
            self.emit("alert_failed", problems[-1] + more, "warning", failures=len(problems))

    def counts_by_level(self) -> dict[tuple[str, str], int]:
        """Events so far by (name, level) (a copy: read from the metrics thread)."""
        return dict(self.by_level)

    @property
    def lines_dropped(self) -> int:
        """Log lines a stalled stderr or log file could not take (dropped, not waited for)."""
        return self._out.dropped + (self._file.dropped if self._file is not None else 0)

    @property
    def alerts_not_sent(self) -> int:
        """Events the alert command failed on, or never got."""
        return 0 if self._alerts is None else self._alerts.failed + self._alerts.dropped

    def recent_dicts(self, most: int = 50) -> list[dict[str, Any]]:
        """The latest `most` events, oldest first, as JSON carries them."""
        return [e.as_dict() for e in list(self.recent)[-most:]]

    def close(self, wait_s: float = 2.0) -> None:
        """Stop: the alert command gets up to `wait_s` to take what is queued (then the rest
        is counted as not sent), the log lines up to `wait_s` to be written, and the log
        file is closed."""
        if self._alerts is not None:
            self._alerts.close(wait_s)
            self.pump()
        if self._file is not None:
            self._file.close(wait_s)
            if self._file.failure is not None:
                self._give_up_file()
            self._file = None
        self._out.close(wait_s)

    def _give_up_file(self) -> None:
        assert self._file is not None
        self.log_file_failure = self._file.failure
        self._file.close(0.0)
        self._file = None
        self._out.write(f"tickwise: the log file {self.log_file} can no longer be written "
                        f"({self.log_file_failure}); events go on to stderr and the "
                        "journal")  # fmt: skip


class LineWriter:
    """Writes lines to `stream` from a thread of its own, so that a reader that stalls never
    holds the session up: beyond LINES_QUEUED lines waiting, lines are dropped and counted.
    The first error writing (a full disk) is kept in `failure`, and later lines dropped."""

    def __init__(self, stream: IO[str], closing: bool = False) -> None:
        self.stream, self.closing = stream, closing
        self.dropped = 0
        self.failure: str | None = None
        self._queue: queue.Queue[str | None] = queue.Queue(LINES_QUEUED)
        self._thread = threading.Thread(target=self._work, name="tickwise-log", daemon=True)
        self._thread.start()

    def write(self, line: str) -> None:
        if self.failure is not None:
            self.dropped += 1
            return
        try:
            self._queue.put_nowait(line)
        except queue.Full:
            self.dropped += 1

    def _work(self) -> None:
        while (line := self._queue.get()) is not None:
            if self.failure is not None:
                continue
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (OSError, ValueError) as exc:  # (a full disk; a stream closed)
                self.failure = getattr(exc, "strerror", None) or str(exc)

    def close(self, wait_s: float) -> None:
        """Let the lines waiting be written (up to `wait_s`), then stop; a stream that is
        the writer's own is closed."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=max(wait_s, 0.001))
        self._thread.join(wait_s)
        if self.closing and not self._thread.is_alive():
            with contextlib.suppress(OSError, ValueError):
                self.stream.close()


def open_log_file(path: Path) -> IO[str]:
    """`path` opened to append lines (made if missing), or an OSError naming why not: a
    folder, a FIFO or a socket is refused (a FIFO would hold the session up, at its opening
    and at each line, until someone reads it); a file or a device (/dev/null) is taken."""
    if path.is_dir() or path.is_fifo() or path.is_socket():
        raise OSError(errno.EINVAL, "not a file (a folder, a FIFO or a socket)")
    return path.open("a", encoding="utf-8", buffering=1)  # (line-buffered: a line at a time)


class AlertCommand:
    """Runs `command` (through the shell) once per event, with the event's JSON on stdin, in
    a thread of its own; what went wrong is kept for `problems()`."""

    def __init__(self, command: str, timeout_s: float = ALERT_TIMEOUT_S) -> None:
        self.command = command
        self.timeout_s = timeout_s
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._queue: queue.Queue[Event | None] = queue.Queue(ALERT_QUEUE)
        self._urgent: deque[Event] = deque(maxlen=URGENT_QUEUE)  # critical, when it is full
        self._problems: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._dropped_said = 0
        self._thread = threading.Thread(target=self._work, name="tickwise-alerts", daemon=True)
        self._thread.start()

    def send(self, event: Event) -> None:
        """Queue `event` for the command (never waits: a full queue drops it, counted, but
        a critical event, which waits in a queue of its own and goes first)."""
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            if event.level == "critical" and len(self._urgent) < URGENT_QUEUE:
                self._urgent.append(event)
            else:
                self.dropped += 1

    def problems(self) -> list[str]:
        """What went wrong since the last call, one line each."""
        out = []
        while True:
            try:
                out.append(self._problems.get_nowait())
            except queue.Empty:
                break
        if self.dropped > self._dropped_said:
            out.append(f"{self.dropped - self._dropped_said:,} event(s) not sent to the alert "
                       "command: it had fallen behind (its queue full) or the session was "
                       "stopping")  # fmt: skip
            self._dropped_said = self.dropped
        return out

    def close(self, wait_s: float) -> None:
        with contextlib.suppress(queue.Full):  # (a command hung: it gets no more events)
            self._queue.put(None, timeout=wait_s)
        self._thread.join(wait_s)
        left = self._queue.qsize()
        if self._thread.is_alive() and left:
            self.dropped += left

    def _work(self) -> None:
        while True:
            if self._urgent:
                event: Event | None = self._urgent.popleft()
            else:
                try:
                    event = self._queue.get(timeout=0.05)
                except queue.Empty:
                    continue
            if event is None:
                return
            problem = self._run(event)
            if problem:
                self.failed += 1
                self._problems.put(problem)
            else:
                self.sent += 1

    def _run(self, event: Event) -> str | None:
        body = json.dumps(event.as_dict()) + "\n"
        what = f"the alert command for {event.name}"
        try:  # (a group of its own: a timeout stops the pipeline's children too)
            proc = subprocess.Popen(self.command, shell=True, stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    text=True, start_new_session=True)  # fmt: skip
        except OSError as exc:
            return f"{what} could not start: {exc}"
        try:
            _, err = proc.communicate(body, timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return f"{what} ran over {self.timeout_s:g} s and was stopped (with its children)"
        if proc.returncode != 0:
            said = " ".join(err.split())[:_ALERT_OUTPUT]
            return f"{what} exited with status {proc.returncode}" + (f": {said}" if said else "")
        return None


def iso_time(ts_ns: int) -> str:
    """A wall-clock time (ns since the epoch) as ISO 8601 UTC, to the millisecond."""
    when = dt.datetime.fromtimestamp(ts_ns / 1e9, dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _plain(value: Any) -> Any:
    """JSON-safe: infinities and NaN as text, numpy scalars as Python numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return _plain(value.item())
    return value
