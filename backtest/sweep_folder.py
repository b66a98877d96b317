"""A sweep's folder: held by one sweep at a time, holding one strategy over one data set,
its results replaced only once the new ones are whole.

- `trials.parquet`, `best.toml`, `sweep.json`, `report.html` and, after a
  walk-forward, `oos_equity.parquet`: the results, written at the end;
- `trials.sqlite`: the store every trial is committed to as it finishes;
- `sweep.lock`: locked (flock) while a sweep runs in the folder and holding its
  pid: a second sweep is refused, naming it.

The results are written to a staging folder inside it, then moved into place
one file after another (renames, which a full disk cannot fail): a sweep that
cannot write them leaves the results of the run before whole, and its trials in
the store. A folder holding another strategy's sweep, or one over other data,
is refused rather than have its results replaced.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shlex
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tickwise.engine.atomic import make_folder
from tickwise.engine.config import SessionConfig
from tickwise.engine.errors import TickwiseError

from .trials import TrialStore

RESULTS = ("trials.parquet", "best.toml", "sweep.json", "oos_equity.parquet", "report.html")
FILES = (*RESULTS, "trials.sqlite", "sweep.lock")
STAGING = ".staging-"  # the prefix of the folder results are written in first


def check_folder(out: Path, strategy: str, data: Sequence[str]) -> None:
    """The folder must be new, or hold a sweep of `strategy` (its name) over `data`
    (absolute paths) to resume or grow: anything else is refused, not lost."""
    if not out.exists():
        return
    if not out.is_dir():
        raise TickwiseError(f"--out {out} is a file; a sweep writes a folder")
    foreign = sorted(p.name for p in out.iterdir()  # (a dot: staging, or a temporary file)
                     if not p.name.lstrip(".").startswith(FILES) and p.name[:1] != ".")  # fmt: skip
    if foreign:
        raise TickwiseError(f"--out {out} holds {', '.join(foreign[:3])}, which is no sweep's: "
                            "choose a new folder (a sweep folder is resumed)")  # fmt: skip
    try:
        before = json.loads((out / "sweep.json").read_text())
        name, paths = before["strategy_name"], list(before["data"])
    except (OSError, ValueError, KeyError, TypeError):  # (none yet: a sweep killed early)
        return
    if all(Path(p).is_absolute() for p in paths):  # (older sweeps kept them as given)
        paths = [str(Path(p).resolve()) for p in paths]
    else:
        paths = list(data)
    if (name, paths) != (strategy, list(data)):
        raise TickwiseError(f"--out {out} holds a sweep of {name} over {', '.join(paths)}; its "
                            "results would be replaced: choose another folder for this "
                            "one")  # fmt: skip


class SweepFolder:
    """A sweep folder, held: checked, created if new, locked, stale staging removed. Its
    store opens when the sweep is about to run trials (`open_store`)."""

    def __init__(self, out: Path, strategy: str, data: Sequence[str]) -> None:
        check_folder(out, strategy, data)
        self.out = out
        self.new = not out.exists()
        make_folder(out)
        self.store: TrialStore | None = None
        self._fd = os.open(out / "sweep.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = os.pread(self._fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            raise TickwiseError(
                f"--out {out}: another sweep (pid {who}) is running in it; "
                "wait for it to end, or choose another folder"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)
        try:
            check_folder(out, strategy, data)  # (again: what is there now the lock is ours)
        except TickwiseError:
            os.close(self._fd)
            raise
        for stale in out.glob(STAGING + "*"):  # (a sweep killed while writing its results)
            shutil.rmtree(stale, ignore_errors=True)

    def open_store(self) -> TrialStore:
        self.store = TrialStore(self.out / "trials.sqlite")
        return self.store

    def close(self, failed: bool = False) -> None:
        """Let the folder go; a folder this sweep created and that stores nothing (the
        plan was refused before it ran) is removed."""
        if self.store is not None:
            self.store.close()
        elif failed and self.new:
            (self.out / "sweep.lock").unlink(missing_ok=True)
            with suppress(OSError):  # (something else came to be in it: kept)
                self.out.rmdir()
        os.close(self._fd)

    def write(self, results: Callable[[Path], None]) -> None:
        """Write the results (`results(stage)` writes each of RESULTS it has into the
        staging folder), then move them into place; a result the sweep did not write this
        time is removed (no best: no best.toml)."""
        try:
            stage = Path(tempfile.mkdtemp(prefix=STAGING, dir=self.out))
            try:
                results(stage)
                for name in RESULTS:
                    if (stage / name).exists():
                        (stage / name).replace(self.out / name)
                    else:
                        (self.out / name).unlink(missing_ok=True)
            finally:
                shutil.rmtree(stage, ignore_errors=True)
        except OSError as exc:
            full = " (the disk is full)" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
            why = exc.strerror or exc
            raise TickwiseError(f"{self.out}: the results could not be written{full}: {why}; "
                                "every trial is stored in trials.sqlite and the results "
                                "before are kept: rerun the same command to write them "
                                "(nothing is run again)") from None  # fmt: skip


def best_toml(spec: str, config: SessionConfig, params: Mapping[str, Any],
              header: Sequence[str]) -> str:  # fmt: skip
    """A config file with the sweep's settings and these parameters: what `backtest
    --config` needs to run the same trial (and `live --config`, with its endpoints)."""
    import tomli_w

    def table(value: Any) -> dict[str, Any]:
        return {k: v for k, v in asdict(value).items() if v is not None}

    settings = {k: v for k, v in table(config).items() if k not in ("risk", "killswitch", "live")}
    doc = {"live": {"strategy": spec}, "params": dict(params), "backtest": settings,
           "risk": table(config.risk), "killswitch": table(config.killswitch)}  # fmt: skip
    return "".join(f"# {line}\n" for line in header) + "\n" + tomli_w.dumps(doc)


def absolute_spec(spec: str) -> str:
    """A strategy spec that names a file, with the file's absolute path (one given by name
    or module is the same from any folder)."""
    where, sep, name = spec.rpartition(":")
    if sep and where.endswith(".py"):
        return f"{Path(where).resolve()}:{name}"
    return spec


def best_header(best: Mapping[str, Any], info: Mapping[str, Any], spec: str, config_path: Path,
                objectives: str, said: str) -> list[str]:  # fmt: skip
    """best.toml's first lines: which trial it is, and the command that replays it (paths
    absolute and quoted for a shell, so it runs from any folder)."""
    data = " ".join(f"--data {shlex.quote(d)}" for d in info["data"])
    run = (f"tickwise backtest --config {shlex.quote(str(config_path.resolve()))} "
           f"--strategy {shlex.quote(spec)} {data}")  # fmt: skip
    windows = best["windows"]
    if len(windows) == 1:
        (a, b), bounds = windows[0], ""
        bounds += f" --start {a}" if a is not None else ""
        bounds += f" --end {b}" if b is not None else ""
        how = [f"run it: {run}{bounds} --out DIR", f"run_hash {best['run_hash']}"]
    else:  # (purged k-fold: a training of two windows)
        how = [f"its run_hash {best['run_hash']} joins the backtests of its windows (ns): "
               + ", ".join(f"--start {a} --end {b}" for a, b in windows)]  # fmt: skip
    return [f"tickwise sweep: trial {best['trial']} of {info['trials']}, the best by "
            f"{objectives} ({said})", *how]  # fmt: skip
