"""Files and folders all or nothing: built at a hidden path beside the target, moved into
place when complete.

A failure (bad input, a full disk, Ctrl-C) never leaves a half-written file where a
reader would find it, and never destroys what was there before. Histories, backtest
results and benchmark records are all written this way.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tickwise.engine.errors import TickwiseError


def check_target(out: Path, overwrite: bool) -> None:
    """Refuse, before any work, to replace an existing path unless asked to."""
    if out.exists() and not overwrite:
        raise TickwiseError(f"{out} already exists; pass --overwrite to replace it")


def temporary_path(out: Path) -> Path:
    """A hidden path beside `out` to build it in (removed first if a crash left one, and so
    is every other one of `out` whose process is gone: a killed import's staging can be
    gigabytes)."""
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    _remove(tmp)
    for left in out.parent.glob(f".{out.name}.tmp-*"):
        pid = left.name.rsplit("-", 1)[-1]
        if pid.isdecimal() and not _running(int(pid)):
            _remove(left)
    return tmp


def _running(pid: int) -> bool:
    """Whether a process of this id is running (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # (someone else's: running)
        return True
    return True


def publish(tmp: Path, out: Path) -> None:
    """Move a finished file or folder into place, replacing what was at `out`."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        _remove(old)
    else:
        os.replace(tmp, out)


def discard(tmp: Path) -> None:
    """Remove a temporary path (after a failure)."""
    _remove(tmp)


def make_folder(folder: Path) -> None:
    """Create a folder and its parents; a clear error when a parent is a file."""
    for parent in (folder, *folder.parents):
        if parent.exists() and not parent.is_dir():
            raise TickwiseError(f"cannot write into {folder}: {parent} is a file, not a folder")
    folder.mkdir(parents=True, exist_ok=True)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
