"""Trials of a sweep: what one is, how it runs in a worker, and the store that keeps them.

A trial is one backtest: the sweep's strategy, data and configuration with one
point of parameters, over a window of event time. It is keyed by a hash of all
that (the strategy's code and the engine's, the data's Parquet footers, the
configuration, the parameters, the window), so a trial already in the store is
never run again: a sweep killed halfway, rerun, picks up where it stopped, and
a sweep that grows (a finer grid, more trials, another fold) reuses every
point it shares with the ones before.

A worker loads the strategy, opens the data and loads the compiled loop once,
then runs trial after trial; only each trial's summary leaves it (a row of
numbers), never its orders or fills. Its `run_hash` is the one `tickwise
backtest` gives for the same parameters.

The store is SQLite in WAL mode, one committed transaction per finished trial:
a sweep process killed with SIGKILL loses only the trials still running.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import resource
import sqlite3
import sys
import time
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from tickwise.engine.caches import engine_fingerprint
from tickwise.engine.config import SessionConfig
from tickwise.engine.errors import TickwiseError
from tickwise.engine.jit import python_function
from tickwise.engine.strategy import Strategy, load_strategy

# Trial outcomes, as the table writes them.
OK = "ok"  # ran to the end
HALTED = "halted"  # the kill switch stopped it (its numbers are up to the halt): never best
INVALID = "invalid"  # the strategy's check_params refused the point: never run
FAILED = "failed"  # an error ended it (its reason says which)

# The numbers of a trial, as summary.json names them; statistics first, then counts.
STATISTICS = ("sharpe", "sortino", "volatility", "max_drawdown", "max_drawdown_days",
              "max_drawdown_pct", "cagr", "calmar", "hit_rate", "turnover",
              "turnover_per_year", "exposure")  # fmt: skip
COUNTS = ("events", "orders", "fills", "rejects", "trades")
NUMBERS = ("pnl", "fees", *STATISTICS, *COUNTS)


@dataclass(frozen=True)
class Plan:
    """What every worker needs to run trials: picklable, and the same for all of them."""

    strategy: str  # a spec load_strategy takes
    data: tuple[str, ...]  # the paths (one data set, or several replayed merged)
    config: SessionConfig = field(default_factory=SessionConfig)
    # What the sweep saw when it began: a worker starting later (a replacement) refuses
    # code or data that changed since, rather than mixing them under the sweep's keys.
    engine: str | None = None  # engine_fingerprint()
    code: tuple[tuple[str, str], ...] = ()  # code_files: (path, SHA-256) of each
    data_key: str | None = None  # data_key of the data


Window = tuple[int | None, int | None]  # [start, end) ns of event time; None: open
WHOLE: tuple[Window, ...] = ((None, None),)
CURVE_POINTS = 2_000  # the most points of a trial's equity curve kept (for the report)


@dataclass(frozen=True)
class Task:
    """One trial to run: its key in the store, its resolved parameters, the windows of event
    time it replays (one after another, each from flat) and whether to keep its curve."""

    key: str
    params: dict[str, Any]
    windows: tuple[Window, ...] = WHOLE
    curve: bool = False


def _digest(path: str) -> str | None:
    """SHA-256 of a file's bytes (None: it is gone)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def code_files(strategy: type[Strategy], spec: str | None = None) -> dict[str, str]:
    """The source files a trial's results depend on besides the engine's, each with the
    SHA-256 of its bytes: the files of the strategy's class and of its callbacks, and of
    every module of the user's that their modules reach through their names (an `import
    helpers`, a `from rules import limit`), transitively. Installed packages (known by their
    versions) and tickwise's own code are not read. A strategy file is loaded once per
    contents (engine/strategy.py), so a copy at another path may be the module loaded:
    `spec`, when it names a file, says which file the sweep runs."""
    roots = {sys.modules.get(strategy.__module__)}
    files = {inspect.getsourcefile(strategy)}
    for fn in strategy.callbacks().values():
        files.add(inspect.getsourcefile(python_function(fn)))
        roots.add(sys.modules.get(python_function(fn).__module__))
    files |= _user_sources([m for m in roots if m is not None])
    found = sorted(str(Path(f).resolve()) for f in files if f)
    where, sep, _ = (spec or "").rpartition(":")
    if sep and where.endswith(".py"):
        loaded = str(Path(inspect.getsourcefile(strategy) or where).resolve())
        found = [str(Path(where).resolve()) if f == loaded else f for f in found]
    return {f: _digest(f) or "" for f in found}


def strategy_fingerprint(strategy: type[Strategy], code: Mapping[str, str] | None = None) -> str:
    """A hash of the code a trial's results depend on: the engine's source (the compiled
    loop, matching, risk, statistics), the strategy's files (`code_files`, or `code` as
    already computed) and the class's name."""
    code = code_files(strategy) if code is None else code
    h = hashlib.sha256(engine_fingerprint().encode())
    for digest in code.values():  # (contents, not paths: a moved folder is the same code)
        h.update(digest.encode())
    h.update(f"{strategy.__module__}:{strategy.__qualname__}".encode())
    return h.hexdigest()


def _not_users() -> tuple[str, ...]:
    """Folders of code that is not the user's: the standard library, installed packages
    (system, user and virtual environment site-packages), tickwise itself (its engine is
    hashed whole; its registered strategies are read as a user's)."""
    import site
    import sysconfig

    roots = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots |= set(site.getsitepackages()) | {site.getusersitepackages()}
    package = Path(__file__).resolve().parent.parent / "tickwise"  # (this checkout's)
    face = sys.modules.get("tickwise")  # (the installed one, when it is another)
    for folder in {package, *([Path(face.__file__).parent] if face and face.__file__ else [])}:
        roots |= {str(folder)} | {str(folder / d) for d in ("engine", "feeds", "backtest")}
    return tuple(str(Path(r).resolve()) + "/" for r in roots)


def _user_sources(modules: Iterable[ModuleType]) -> set[str]:
    """The source files of `modules` and of the user's modules they reach through their
    names, transitively."""
    skip = _not_users()
    found: set[str] = set()
    todo: list[Any] = list(modules)
    while todo:
        mod = todo.pop()
        path = getattr(mod, "__file__", None)
        if not path or not path.endswith(".py"):
            continue
        path = str(Path(path).resolve())
        installed = "/site-packages/" in path or "/dist-packages/" in path
        if path in found or installed or path.startswith(skip):
            continue
        found.add(path)
        for value in list(vars(mod).values()):
            if isinstance(value, ModuleType):
                todo.append(value)
            elif isinstance(getattr(value, "__module__", None), str):
                todo.append(sys.modules.get(value.__module__))
    return found


def data_key(history: Any, footers: str) -> str:
    """The data as it keys a trial: its Parquet footers (`footers`) and each file's size and
    modification time, so that a file rewritten in place with the same footer (same rows,
    same statistics) is not taken for the one before."""
    h = hashlib.sha256(footers.encode())
    for part in getattr(history, "histories", (history,)):
        for f in part.files:
            st = Path(f.path).stat()  # (named within its data set, as footer_hash names it)
            name = Path(f.path).relative_to(part.path.parent)
            h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def config_json(config: SessionConfig) -> dict[str, Any]:
    """The configuration as it keys a trial: every setting but the batch size (results never
    depend on it) and the [live] table (a backtest does not read it)."""
    table = asdict(config)
    table.pop("batch_size")
    table.pop("live")
    return json.loads(json.dumps(table, default=str, allow_nan=True))


def trial_key(strategy_fp: str, data_fp: str, config: Mapping[str, Any],
              params: Mapping[str, Any], windows: tuple[Window, ...],
              curve: bool) -> str:  # fmt: skip
    """The store's key of a trial: a hash of everything its result depends on (and whether
    its row keeps the curve)."""
    what = {"strategy": strategy_fp, "data": data_fp, "config": config,
            "params": dict(sorted(params.items())), "windows": [list(w) for w in windows],
            "curve": curve}  # fmt: skip
    text = json.dumps(what, sort_keys=True, allow_nan=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def row_of(summary: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's row from a backtest's summary: its numbers, outcome and run hash."""
    stats = summary["statistics"]
    row: dict[str, Any] = {"status": HALTED if summary["halted"] else OK, "reason": None}
    if summary["halted"]:
        halt = summary["halt"]
        row["reason"] = f"halted by {halt['halt_reason']}" + (
            f": {halt['fault']}" if halt.get("fault") else "")  # fmt: skip
    row["pnl"], row["fees"] = summary["pnl"], summary["fees"]
    for name in STATISTICS:
        row[name] = stats[name]["value"]
    row["null"] = {n: stats[n]["reason"] for n in STATISTICS if stats[n]["value"] is None}
    for name in COUNTS:
        row[name] = summary[name]
    row["halt_reason"] = summary["halt_reason"]
    row["run_hash"] = summary["run_hash"]
    row["first_event"] = summary["data"]["first_event"]
    row["last_event"] = summary["data"]["last_event"]
    return row


def failed_row(status: str, reason: str) -> dict[str, Any]:
    """The row of a trial that has no numbers: invalid (never run) or failed."""
    return {"status": status, "reason": reason}


class TrialWorker:
    """Runs trials of one plan: the strategy loaded, the data opened and the compiled loop
    loaded once, in the process (or Ray actor) it lives in."""

    def __init__(self, plan: Plan) -> None:
        from tickwise.feeds.merged import open_data

        from .replay import check_data
        from .results import footer_hash

        began = time.perf_counter()
        self.plan = plan
        self.strategy = load_strategy(plan.strategy)
        self.history = open_data(list(plan.data) if len(plan.data) > 1 else plan.data[0])
        check_data(self.strategy, self.history)
        self.footers = footer_hash(self.history)
        changed = []
        code = [p for p, digest in plan.code if _digest(p) != digest]
        if plan.engine is not None and engine_fingerprint() != plan.engine:
            changed.append("tickwise's engine")
        if code:
            changed.append(f"the strategy's code ({', '.join(Path(p).name for p in code)})")
        if plan.data_key is not None and data_key(self.history, self.footers) != plan.data_key:
            changed.append("the data")
        if changed:
            raise TickwiseError(f"{' and '.join(changed)}: not what the sweep began with "
                                "(changed since, or another copy on this machine); rerun "
                                "the sweep to sweep what is there now")  # fmt: skip
        self.ready_s = time.perf_counter() - began  # (the loop itself loads at the first trial)

    def run(self, task: Task) -> dict[str, Any]:
        """One trial's row (with its wall and setup times): its failure is a row too."""
        began = time.perf_counter()
        try:
            row = self._run(task, began)
        except TickwiseError as exc:
            row = failed_row(FAILED, str(exc))
        except (OSError, MemoryError) as exc:  # the machine, not the trial: not stored (`lost`)
            row = failed_row(FAILED, f"{type(exc).__name__}: {exc}") | {"lost": True}
        except Exception as exc:  # a bug in the strategy's Python, or ours: keep it, go on
            where = traceback.extract_tb(exc.__traceback__)[-1]
            row = failed_row(FAILED, f"{type(exc).__name__}: {exc} "
                                     f"({Path(where.filename).name}:{where.lineno})")  # fmt: skip
        row["wall_s"] = time.perf_counter() - began
        row["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return row

    def _run(self, task: Task, began: float) -> dict[str, Any]:
        from .replay import replay
        from .results import curve_of, summarize
        from .statistics import period_pnl, statistics, stitch

        config = self.plan.config
        runs, setup = [], 0.0
        for start, end in task.windows:
            bt = replay(self.strategy, self.history, task.params, config, start=start,
                        end=end, began=time.perf_counter())  # fmt: skip
            setup += bt.setup_s
            summary = summarize(bt, self.footers)
            runs.append((summary, curve_of(bt, summary["pnl"])))
            del bt  # (its orders and fills: only the numbers are kept)
        curve = stitch([c for _, c in runs])
        if len(runs) == 1:
            row = row_of(runs[0][0])
        else:
            stats = statistics(curve, period=config.returns_period, calendar=config.calendar,
                               capital=config.capital)  # fmt: skip
            row = joined_row([s for s, _ in runs], stats)
        row["setup_s"] = setup
        ends, pnl = period_pnl(curve.ts, curve.pnl, config.returns_period)
        row["periods"] = [ends.tolist(), pnl.tolist()]  # (each period's last time and PnL)
        if task.curve:
            row["curve"] = thinned(curve.ts, curve.pnl)
        return row


def joined_row(summaries: list[Mapping[str, Any]], stats: Mapping[str, Any]) -> dict[str, Any]:
    """The row of a trial over several windows: sums of money and counts, the statistics of
    the joined curve, the first halt, and a hash of the windows' run hashes in order."""
    halted = next((s for s in summaries if s["halted"]), None)
    row = row_of({**summaries[0], "statistics": stats, "halted": halted is not None,
                  "halt": halted["halt"] if halted else None,
                  "halt_reason": halted["halt_reason"] if halted else None})  # fmt: skip
    row["pnl"] = sum(s["pnl"] for s in summaries)
    row["fees"] = sum(s["fees"] for s in summaries)
    for name in COUNTS:
        row[name] = sum(s[name] for s in summaries)
    joined = hashlib.sha256("".join(s["run_hash"] for s in summaries).encode())
    row["run_hash"] = joined.hexdigest()
    row["last_event"] = summaries[-1]["data"]["last_event"]
    return row


def thinned(ts: Any, pnl: Any, points: int = CURVE_POINTS) -> list[list[Any]]:
    """An equity curve cut to at most `points`: the last point in each of `points` equal
    stretches of time (the shape a chart shows, and the exact final PnL)."""
    import numpy as np

    if ts.size > points:
        span = max(float(ts[-1] - ts[0]), 1.0)
        bucket = ((ts - ts[0]) / span * (points - 1)).astype(np.int64)  # (ns * points: > int64)
        last = np.flatnonzero(np.diff(bucket, append=bucket[-1] + 1) != 0)
        ts, pnl = ts[last], pnl[last]
    return [ts.tolist(), pnl.tolist()]


class TrialStore:
    """Finished trials by key, in SQLite: each committed as it finishes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL: a killed process loses nothing
            self.db.execute("CREATE TABLE IF NOT EXISTS trials (key TEXT PRIMARY KEY, "
                            "row TEXT NOT NULL, stored REAL NOT NULL)")  # fmt: skip
            self.db.execute("CREATE TABLE IF NOT EXISTS seen (engine TEXT, strategy TEXT, "
                            "data TEXT, at REAL, PRIMARY KEY (strategy, data))")  # fmt: skip
        except sqlite3.DatabaseError as exc:
            raise self._refused(exc) from None

    def _refused(self, exc: sqlite3.DatabaseError) -> TickwiseError:
        """What went wrong with the store, in one line."""
        if "unable to open" in str(exc) or "readonly" in str(exc) or "read-only" in str(exc):
            return TickwiseError(f"{self.path}: cannot be opened for writing ({exc}): is the "
                                 "folder read-only? The trials in it are kept")  # fmt: skip
        if "full" in str(exc):
            return TickwiseError(f"{self.path}: the disk is full ({exc}); every trial stored "
                                 "so far is kept: free space and rerun to resume")  # fmt: skip
        return TickwiseError(f"{self.path}: not a trial store tickwise can read ({exc}); "
                             "move it away or sweep into another --out")  # fmt: skip

    def get(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The stored rows of those of `keys` that are done."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, dict[str, Any]] = {}
        try:
            for lo in range(0, len(keys), 500):  # (SQLite's limit on bound parameters)
                chunk = keys[lo : lo + 500]
                marks = ",".join("?" * len(chunk))
                for key, text in self.db.execute(
                    f"SELECT key, row FROM trials WHERE key IN ({marks})", chunk
                ):
                    found[key] = json.loads(text)
        except sqlite3.DatabaseError as exc:
            raise self._refused(exc) from None
        return found

    def put(self, key: str, row: Mapping[str, Any]) -> None:
        """Store a finished trial, committed before this returns."""
        text = json.dumps(row, allow_nan=True)
        try:
            self.db.execute("INSERT OR REPLACE INTO trials VALUES (?, ?, ?)",
                            (key, text, time.time()))  # fmt: skip
        except sqlite3.DatabaseError as exc:
            raise self._refused(exc) from None

    def seen(self, engine: str, strategy: str, data: str) -> str | None:
        """Record that a sweep runs with this code (`engine`, and `strategy` which includes
        it) and `data`; say why the trials stored by earlier sweeps will not be reused when
        the last of them ran with other code or data (None when they can be, or when the
        store is new)."""
        try:
            stored = len(self)
            known = self.db.execute("SELECT 1 FROM seen WHERE strategy = ? AND data = ?",
                                    (strategy, data)).fetchone()  # fmt: skip
            last = self.db.execute("SELECT engine, strategy, data FROM seen "
                                   "ORDER BY rowid DESC LIMIT 1").fetchone()  # fmt: skip
            self.db.execute("INSERT OR REPLACE INTO seen VALUES (?, ?, ?, ?)",
                            (engine, strategy, data, time.time()))  # fmt: skip
        except sqlite3.DatabaseError as exc:
            raise self._refused(exc) from None
        if not stored or known:
            return None
        held = f"the store's {stored:,} trial{'s' * (stored != 1)}"
        if last is None:  # (stored by a tickwise that did not record its versions)
            return f"{held} came from an earlier tickwise: none is reused (they are kept)"
        what = []
        if last[0] != engine:
            what.append("tickwise's engine")
        elif last[1] != strategy:
            what.append("the strategy's code")
        if last[2] != data:
            what.append("the data")
        return (f"{held} ran with another version of {' and '.join(what)}: none is reused "
                "(they are kept, for that version)")  # fmt: skip

    def __len__(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM trials").fetchone()[0])

    def close(self) -> None:
        self.db.close()


def finite_or_none(value: Any) -> float | None:
    """An objective's value, or None when it cannot be ranked (null, NaN or infinite)."""
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return value if math.isfinite(value) else None
