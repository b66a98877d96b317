"""Starting tickwise commands as real processes, for the integration tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
