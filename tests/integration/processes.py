"""Starting tickwise commands as real processes, for the integration tests."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

TICKWISE = str(Path(sys.executable).with_name("tickwise"))
# A live session or an exchange compiles its loop before subscribing when no cache has it
# yet (tens of seconds on a busy machine): the feeds wait for it.
WAIT = ["--wait", "300"]


def spawn(*args: str) -> tuple[subprocess.Popen, str]:
    """Start a tickwise command and read the endpoint it prints on its first line."""
    proc = subprocess.Popen([TICKWISE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    first = proc.stdout.readline()
    if " on tcp://" not in first:
        proc.kill()
        raise AssertionError(f"{args[0]}: {first!r} {proc.stderr.read()}")
    return proc, first.rsplit(" on ", 1)[1].strip()


def stop(*procs: subprocess.Popen, drain: bool = True) -> None:
    """SIGINT each process still running, then SIGKILL what has not ended within 60 s.
    `drain`: read what is left of their pipes (`communicate`); not for a process whose
    output a `Lines` reads (two readers of one pipe would lose lines)."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.communicate(timeout=60) if drain else proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=30) if drain else proc.wait(timeout=30)


class Lines:
    """Every line a stream gives, read by a thread of its own as they come (mixing a line
    read with `communicate` would lose what the reader had buffered)."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line)

    def wait_for(self, test: Callable[[str], bool], timeout_s: float = 300.0) -> str:
        """The first line that passes `test`, waiting up to `timeout_s` for it."""
        deadline = time.monotonic() + timeout_s
        seen = 0
        while time.monotonic() < deadline:
            for line in self.lines[seen:]:
                if test(line):
                    return line
            seen = len(self.lines)
            if not self._thread.is_alive() and seen == len(self.lines):
                break
            time.sleep(0.05)
        raise AssertionError(f"not seen within {timeout_s:g} s: {self.lines[-5:]}")

    def all(self, timeout_s: float = 60.0) -> list[str]:
        """Every line, once the stream has ended (or `timeout_s` passed)."""
        self._thread.join(timeout_s)
        return self.lines
