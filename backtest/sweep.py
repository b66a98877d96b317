"""Sweeps: one strategy over one history with many points of parameters.

`sweep` runs a grid (every point), a random search or an Optuna search
(`search.py`) of a `Space`, each point a trial (`trials.py`) run by an
executor (`executors.py`: local processes or Ray). Every finished trial is
stored at once; the table of the sweep is written in trial order, so it is the
same whatever ran the trials, how many workers there were, in which order they
finished, and whether the sweep was killed and resumed on the way.

A sweep folder (`sweep_folder.py`) holds:

- `trials.parquet`: one row per trial (its parameters, outcome, every number
  of its summary, its run_hash, wall and setup times);
- `best.toml`: the best trial's parameters with the sweep's configuration, as
  `tickwise backtest --config` and `tickwise live --config` read it;
- `sweep.json`: what was swept, how, the best trial, counts and timings;
- `report.html`, and `oos_equity.parquet` after a walk-forward;
- `trials.sqlite`: the store every trial is committed to as it finishes.

The best trial is the one with the best first objective among those that ran
to the end (a halted or failed trial is never chosen), ties to the lowest trial
id; with several objectives, among those no other trial beats in all of them
(the Pareto front).
"""

from __future__ import annotations

import json
import os
import resource
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tickwise.engine.caches import engine_fingerprint
from tickwise.engine.config import SessionConfig, load_config
from tickwise.engine.errors import TickwiseError
from tickwise.engine.strategy import Strategy, StrategyError, load_strategy
from tickwise.feeds.merged import open_data

from .executors import (
    EXECUTORS,
    check_reachable,
    check_timeout,
    check_workers,
    default_workers,
    make_executor,
    on_this_machine,
    ray_address,
)
from .folds import Fold, duration, purged_k_fold, walk_forward
from .replay import check_data, replay
from .results import footer_hash, summarize
from .search import SAMPLERS, Objective, make_sampler, parse_objective
from .search import search as optuna_search
from .space import Space, parse_space
from .statistics import DAY_NS
from .sweep_folder import SweepFolder, absolute_spec, best_header, best_toml
from .sweep_report import write_sweep_report
from .trials import (
    COUNTS,
    FAILED,
    INVALID,
    NUMBERS,
    OK,
    WHOLE,
    Plan,
    Task,
    TrialStore,
    Window,
    code_files,
    config_json,
    data_key,
    failed_row,
    finite_or_none,
    strategy_fingerprint,
    trial_key,
)
from .validation import overfitting, stitched, walk_forward_summary

SEARCHES = ("grid", *SAMPLERS)
PARAM = "param."  # the prefix of parameter columns in the trial table


@dataclass
class Sweep:
    """What a sweep produced: its table (pyarrow, trial order), the best trial, and how it
    ran."""

    table: pa.Table
    best: dict[str, Any] | None  # the best trial's row (None: no trial ran to the end)
    objectives: tuple[Objective, ...]
    out: Path | None
    trials: int  # rows in the table
    ran: int  # trials run by this call (the others came from the store)
    workers: int
    wall_s: float
    info: dict[str, Any] = field(default_factory=dict)  # sweep.json


@dataclass
class _Context:
    """What every trial of the sweep shares (the parent's side)."""

    strategy: type[Strategy]
    plan: Plan
    fixed: dict[str, Any]
    space: Space
    objectives: tuple[Objective, ...]
    strategy_fp: str
    data_fp: str
    config: dict[str, Any]
    store: TrialStore | None
    executor_name: str
    workers: int | None
    address: str | None
    timeout: float | None
    on_trial: Callable[[int, dict[str, Any] | None], None] | None
    executor: Any = None
    ran: int = 0
    reused: int = 0  # trials taken from the store
    walls: list[float] = field(default_factory=list)  # wall and setup times of trials run now
    setups: list[float] = field(default_factory=list)
    peaks: list[float] = field(default_factory=list)  # their workers' peak RSS (MiB)
    best: dict[str, Any] | None = None
    memory: dict[str, dict[str, Any]] = field(default_factory=dict)  # (no store: kept here)

    def get(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        if self.store is None:
            return {k: self.memory[k] for k in keys if k in self.memory}
        return self.store.get(keys)

    def put(self, key: str, row: dict[str, Any]) -> None:
        if self.store is None:
            self.memory[key] = row
        else:
            self.store.put(key, row)

    def run_points(self, first_id: int, points: Sequence[dict[str, Any]],
                   windows: tuple[Window, ...] = WHOLE, *, curve: bool = False,
                   fold: int | None = None, role: str | None = None) -> list[dict]:  # fmt: skip
        """The rows of trials `first_id`... with these points over `windows`: from the
        store, or run (each stored as it finishes); an invalid point is a row, never run."""
        rows: list[dict[str, Any] | None] = [None] * len(points)
        keys: list[str | None] = [None] * len(points)
        tasks: dict[str, Task] = {}
        for n, point in enumerate(points):
            try:
                params = self.strategy.resolve_params(self.fixed | point)
            except StrategyError as exc:
                rows[n] = failed_row(INVALID, str(exc).removeprefix(f"{self.strategy.name()}: "))
                rows[n]["params"] = self.fixed | point
                continue
            except Exception as exc:  # (check_params raised instead of saying what is wrong)
                rows[n] = failed_row(FAILED, f"check_params raised {type(exc).__name__}: {exc}")
                rows[n]["params"] = self.fixed | point
                continue
            keys[n] = key = trial_key(self.strategy_fp, self.data_fp, self.config, params,
                                      windows, curve)  # fmt: skip
            tasks.setdefault(key, Task(key, params, windows, curve))
        done = self.get(list(tasks))
        self.reused += len(done)
        todo = [t for k, t in tasks.items() if k not in done]
        meta = {"fold": fold, "role": role, "start": windows[0][0], "end": windows[-1][1],
                "windows": [list(w) for w in windows]}  # fmt: skip
        for n, row in enumerate(rows):
            if row is None and keys[n] in done:
                row = done[keys[n]]
            if row is not None:
                rows[n] = {**row, **meta}
                self._finished(first_id + n, rows[n])
        if todo:
            for task, row in self._executor().run(todo):
                row["params"] = task.params
                if not row.pop("lost", False):  # (a lost worker is no result: run it next time)
                    self.put(task.key, row)
                self.ran += 1
                if "wall_s" in row:
                    self.walls.append(row["wall_s"])
                if "setup_s" in row:
                    self.setups.append(row["setup_s"])
                if "peak_rss_mib" in row:
                    self.peaks.append(row["peak_rss_mib"])
                for n, key in enumerate(keys):
                    if key == task.key:
                        rows[n] = {**row, **meta}
                        self._finished(first_id + n, rows[n])
        return rows  # type: ignore[return-value]

    def _executor(self) -> Any:
        if self.executor is None:
            self.executor = make_executor(self.executor_name, self.plan, self.workers,
                                          self.address, self.timeout)  # fmt: skip
        return self.executor

    def _finished(self, trial: int, row: dict[str, Any]) -> None:
        """Follow the best so far (of the trials that choose), and tell the caller."""
        if (
            row["role"] != "test"
            and eligible(row, self.objectives)
            and (self.best is None or _better(row, trial, self.best, self.objectives[0]))
        ):
            self.best = {**row, "trial": trial}
        if self.on_trial:
            self.on_trial(trial, self.best)


def eligible(row: Mapping[str, Any], objectives: Sequence[Objective]) -> bool:
    """Whether a trial may be chosen: it ran to the end and every objective has a value."""
    return row["status"] == OK and all(finite_or_none(row.get(o.name)) is not None
                                       for o in objectives)  # fmt: skip


def _better(row: Mapping[str, Any], trial: int, best: Mapping[str, Any], o: Objective) -> bool:
    a, b = float(row[o.name]), float(best[o.name])
    return (a > b if o.maximise else a < b) or (a == b and trial < best["trial"])


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(
        x > y for x, y in zip(a, b, strict=True))  # fmt: skip


def _scores(rows: Sequence[Mapping[str, Any]],
            objectives: Sequence[Objective]) -> dict[int, list[float]]:  # fmt: skip
    """Each eligible row's objective values, signed so that more is better."""
    signs = [1.0 if o.maximise else -1.0 for o in objectives]
    return {n: [s * float(r[o.name]) for s, o in zip(signs, objectives, strict=True)]
            for n, r in enumerate(rows) if eligible(r, objectives)}  # fmt: skip


def pareto_front(rows: Sequence[Mapping[str, Any]], objectives: Sequence[Objective]) -> set[int]:
    """The rows (by index) that may be chosen and that no other such row beats in every
    objective (with one objective: every eligible row)."""
    scores = _scores(rows, objectives)
    if len(objectives) == 1:
        return set(scores)
    return {n for n in scores if not any(_dominates(scores[m], scores[n]) for m in scores)}


def rank(rows: Sequence[Mapping[str, Any]], objectives: Sequence[Objective],
         front: set[int] | None = None) -> list[int | None]:  # fmt: skip
    """Each trial's rank (1 = best; None: not eligible): by the first objective, ties to the
    lower trial id; with several objectives, the Pareto front (`front`, if already known)
    first."""
    scores = _scores(rows, objectives)
    front = pareto_front(rows, objectives) if front is None else front
    order = sorted(scores, key=lambda n: (n not in front, -scores[n][0], n))
    ranks: list[int | None] = [None] * len(rows)
    for place, n in enumerate(order, 1):
        ranks[n] = place
    return ranks


def table_of(strategy: type[Strategy], rows: Sequence[Mapping[str, Any]],
             objectives: Sequence[Objective]) -> pa.Table:  # fmt: skip
    """The trial table: trial id, fold and role (walk-forward), window, outcome, rank (in
    its fold's training), with several objectives whether it is on its fold's Pareto front,
    each parameter, every number, run hash, times."""
    ranks: list[int | None] = [None] * len(rows)
    fronts: list[bool | None] = [None] * len(rows)
    for fold in dict.fromkeys(r["fold"] for r in rows):
        mine = [n for n, r in enumerate(rows) if r["fold"] == fold and r["role"] != "test"]
        theirs = [rows[n] for n in mine]
        front = pareto_front(theirs, objectives)
        for k, (n, place) in enumerate(zip(mine, rank(theirs, objectives, front), strict=True)):
            ranks[n], fronts[n] = place, k in front
    utc = pa.timestamp("ns", tz="UTC")
    columns: dict[str, pa.Array] = {"trial": pa.array(range(len(rows)), pa.int64())}
    columns["fold"] = pa.array([r["fold"] for r in rows], pa.int64())
    columns["role"] = pa.array([r["role"] for r in rows], pa.string())
    columns["start"] = pa.array([r["start"] for r in rows], utc)  # (of its first window)
    columns["end"] = pa.array([r["end"] for r in rows], utc)  # (of its last)
    window = pa.struct([("start", utc), ("end", utc)])
    columns["windows"] = pa.array([[{"start": a, "end": b} for a, b in r["windows"]]
                                   for r in rows], pa.list_(window))  # fmt: skip
    columns["status"] = pa.array([r["status"] for r in rows], pa.string())
    columns["reason"] = pa.array([r.get("reason") for r in rows], pa.string())
    columns["rank"] = pa.array(ranks, pa.int64())
    if len(objectives) > 1:
        columns["pareto"] = pa.array(fronts, pa.bool_())
    kinds = {bool: pa.bool_(), int: pa.int64(), float: pa.float64()}
    for name, param in strategy.params.items():
        values = [r.get("params", {}).get(name) for r in rows]
        columns[PARAM + name] = pa.array(values, kinds[param.type])
    for name in NUMBERS:
        values = [r.get(name) for r in rows]
        columns[name] = pa.array(values, pa.int64() if name in COUNTS else pa.float64())
    for name in ("halt_reason", "run_hash"):
        columns[name] = pa.array([r.get(name) for r in rows], pa.string())
    for name in ("first_event", "last_event"):
        columns[name] = pa.array([r.get(name) for r in rows], utc)
    for name in ("wall_s", "setup_s", "peak_rss_mib"):
        columns[name] = pa.array([r.get(name) for r in rows], pa.float64())
    return pa.table(columns)


def resident_bytes() -> int:
    """This process's resident memory now (Linux: /proc; elsewhere its peak so far)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def check_memory(limit: int, workers: int, batch_rows: int, row_bytes: int) -> dict[str, int]:
    """Refuse a plan that cannot fit in `limit` bytes, before any worker starts. Each worker
    holds what this process holds now (the libraries, the compiled loop, the data opened:
    measured) and a batch in flight four times over (Arrow, its checks, the columns the loop
    reads, the logs it returns); what a trial's orders and fills take on top depends on how
    much it trades (each row of trials.parquet says its worker's peak: peak_rss_mib)."""
    base = resident_bytes()
    per_worker = base + 4 * batch_rows * row_bytes
    need = base + workers * per_worker
    if need > limit:
        fit = (limit - base) // per_worker
        more = (f"at most {fit} fit (--workers {fit})" if fit >= 1
                else "not even one fits")  # fmt: skip
        raise TickwiseError(
            f"--max-memory {limit / 2**30:.2f} GiB: the sweep needs about {need / 2**30:.2f} GiB "
            f"(this process {base / 2**20:,.0f} MiB with the loop loaded, measured, and each "
            f"of {workers} workers about {per_worker / 2**20:,.0f} MiB with {batch_rows:,} rows "
            f"in flight): {more}, or lower [backtest] batch_size"
        )
    return {"estimate_bytes": need, "per_worker_bytes": per_worker, "sweep_bytes": base}


def sweep(
    strategy: str,
    data: str | Path | Sequence[str | Path],
    space: Mapping[str, Any],
    *,
    params: Mapping[str, Any] | None = None,
    config: SessionConfig | str | Path | None = None,
    search: str = "grid",
    trials: int | None = None,
    seed: int = 0,
    batch: int = 8,
    objectives: Sequence[str] = ("sharpe",),
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
    out: str | Path | None = None,
    start: int | None = None,
    end: int | None = None,
    train: int | str | None = None,
    test: int | str | None = None,
    step: int | str | None = None,
    anchored: bool = False,
    folds: int | None = None,
    embargo: int | str = 0,
    max_memory: int | None = None,
    trial_timeout: float | None = None,
    on_trial: Callable[[int, dict[str, Any] | None], None] | None = None,
    on_plan: Callable[[int], None] | None = None,
    on_compile: Callable[[str], AbstractContextManager[None]] | None = None,
) -> Sweep:
    """Sweep `strategy` over `data` across `space` ({name: 'a:b:step' | 'a,b' | 'a:b' |
    'a:b:log' | list of values}); `params` fixes the others. `search`: 'grid' (every
    point), or 'random', 'tpe', 'cmaes', 'nsga2' for `trials` points drawn with `seed`,
    `batch` at a time. `objectives`: summary numbers ('sharpe', 'max_drawdown:min').
    `executor` 'local' (`workers` processes, default the CPUs) or 'ray' (`address`).

    `config`: a SessionConfig, or a config file's path (its [params] under `params`).
    Walk-forward (`train` and `test`: ns of event time, or '30d', '12h'; `step`,
    `anchored`) or purged k-fold (`folds`, `embargo`): each fold searches the space on
    its training windows and runs the best point on its test windows (backtest/folds.py).
    `start`/`end` (ns) bound the data used. `max_memory` (bytes) refuses a plan that would
    not fit in it (`check_memory`), before any worker starts. `trial_timeout` (s) stops a
    trial still running after it (the time its worker takes to load the compiled loop at
    its first trial included). With `out`, every trial is stored there as it finishes and a
    rerun resumes; the table, best.toml, sweep.json and report.html are written at the end.
    `on_plan(total)` and `on_trial(id, best row)` follow the progress."""
    began = time.perf_counter()
    if isinstance(config, str | Path):  # a config file, as --config reads it
        config, from_file = load_config(Path(config))
        params = {**from_file, **(params or {})}
        params = {k: v for k, v in params.items() if k not in space}  # (swept wins)
    config = config or SessionConfig()
    if not isinstance(config, SessionConfig):
        raise TickwiseError(f"config must be a SessionConfig or a config file's path, not a "
                            f"{type(config).__name__}")  # fmt: skip
    lengths = ((train, "train"), (test, "test"), (step, "step"), (embargo, "embargo"))
    train, test, step, embargo = (duration(x, n) if isinstance(x, str) else x
                                  for x, n in lengths)  # fmt: skip
    cls = load_strategy(strategy)
    paths = [data] if isinstance(data, str | Path) else list(data)
    history = open_data(paths[0] if len(paths) == 1 else paths)
    check_data(cls, history)
    dims = parse_space(cls, space)
    fixed = _fixed(cls, params, dims)
    goals = _objectives(objectives, search, executor)
    plan_folds = _folds(history, start, end, train, test, step, anchored, folds, embargo)
    if search == "grid":
        if trials is not None:
            raise TickwiseError(
                "a grid runs every point: a number of trials is for searches "
                "(search='random', 'tpe', ...: --random N or --trials N)"
            )
        per_fold = dims.grid_size()
    else:
        if trials is None or trials < 1:
            raise TickwiseError(f"a {search} search needs a number of trials (at least 1)")
        if batch < 1:
            raise TickwiseError(f"--batch must be at least 1, got {batch}")
        make_sampler(search, seed, len(goals))  # (refuses a sampler unfit for the goals)
        per_fold = trials
    local = executor == "local" or on_this_machine(address)  # (workers: this machine's CPUs)
    check_workers(workers, "local" if local else "ray")
    check_timeout(trial_timeout)
    if executor == "ray" and ray_address(address) not in (None, "auto"):
        check_reachable(ray_address(address))  # (before compiling: Ray would retry for minutes)
    if max_memory is not None and max_memory <= 0:
        raise TickwiseError(f"--max-memory must be above zero, got {max_memory}")
    out = Path(out) if out is not None else None
    data_paths = [str(Path(p).resolve()) for p in paths]
    with ExitStack() as held:
        store = None
        if out is not None:  # (held from here: a second sweep is refused before compiling)
            folder = SweepFolder(out, cls.name(), data_paths)
            held.push(lambda kind, *_: folder.close(failed=kind is not None))
        _warm_up(cls, history, fixed, config, on_compile)
        memory = None
        if max_memory is not None:
            n = workers or (default_workers() if executor == "local" else 1)
            memory = check_memory(max_memory, n, config.batch_size, _row_bytes(history))
        footers = footer_hash(history)
        code = code_files(cls, strategy)  # (after the warm-up: check_params's imports too)
        strategy_fp = strategy_fingerprint(cls, code)
        data_fp = data_key(history, footers)
        plan = Plan(strategy, tuple(str(p) for p in paths), config, engine_fingerprint(),
                    tuple(code.items()), data_fp)  # fmt: skip
        if out is not None:
            store = folder.open_store()
        stale = None if store is None else store.seen(engine_fingerprint(), strategy_fp, data_fp)
        ctx = _Context(cls, plan, fixed, dims, goals, strategy_fp, data_fp, config_json(config),
                       store, executor, workers, address, trial_timeout, on_trial)  # fmt: skip
        if on_plan:
            on_plan(per_fold * len(plan_folds) + sum(1 for f in plan_folds if f.test))
        rows: list[dict[str, Any]] = []

        def explore(windows: tuple[Window, ...], fold: int | None, role: str | None) -> int:
            """Search the space over `windows`; the rows go to `rows`; returns the first id."""
            first = len(rows)
            if search == "grid":
                points = dims.grid()
                while chunk := [p for _, p in zip(range(4096), points, strict=False)]:
                    rows.extend(ctx.run_points(len(rows), chunk, windows, fold=fold, role=role))
                return first

            def run(points: list[dict[str, Any]]) -> list[Any]:
                done = ctx.run_points(len(rows), points, windows, fold=fold, role=role)
                rows.extend(done)
                return [[finite_or_none(r.get(o.name)) for o in goals]
                        if r["status"] == OK else None for r in done]  # fmt: skip

            optuna_search(dims, make_sampler(search, seed, len(goals)), goals, per_fold, batch, run)
            return first

        try:
            for fold in plan_folds:
                if not fold.test:  # (no folds: the whole window, once)
                    explore(fold.train, None, None)
                    continue
                first = explore(fold.train, fold.number, "train")
                chosen = _best_of(rows[first:], first, goals)
                point = {n: chosen["params"][n] for n in dims.names} if chosen else None
                if point is not None:
                    rows.extend(ctx.run_points(len(rows), [point], fold.test, curve=True,
                                               fold=fold.number, role="test"))  # fmt: skip
                    rows[-1]["chosen"] = chosen["trial"]
        finally:
            workers_used = ctx.executor.workers if ctx.executor else 0
            if ctx.executor is not None:
                ctx.executor.close()
        table = table_of(cls, rows, goals)
        best = _best_of(rows, 0, goals, last_fold=True)
        info = {
            "strategy": strategy,
            "strategy_name": cls.name(),
            "data": data_paths,
            "window": [start, end],
            "search": search,
            "space": {d.name: d.text() for d in dims.dimensions},
            "fixed": fixed,
            "trials": len(rows),
            "seed": None if search == "grid" else seed,
            "batch": None if search == "grid" else batch,
            "objectives": [o.text() for o in goals],
            "executor": executor,
            "workers": workers_used,
            "ran": ctx.ran,
            "reused": ctx.reused,
            "store_note": stale,  # (why trials in the store were not reused, when it can tell)
            "status": {s: sum(r["status"] == s for r in rows)
                       for s in (OK, "halted", INVALID, FAILED)},
            "best": None if best is None else {
                "trial": best["trial"], "params": best["params"],
                **{o.name: best[o.name] for o in goals}, "run_hash": best["run_hash"],
            },
            "wall_s": time.perf_counter() - began,
            "trial_wall_s": _percentiles(ctx.walls),  # (of the trials run by this call)
            "trial_setup_s": _percentiles(ctx.setups),
            "no_best": None if best is not None else _why_no_best(rows, goals),
            "peak_rss_mib": {
                "sweep": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "worker": max(ctx.peaks, default=None),  # (of the trials run by this call)
            },
            "memory_plan": memory,
        }  # fmt: skip
        if plan_folds[0].test:
            days = lambda ns: None if ns is None else ns / DAY_NS  # noqa: E731
            how = {"kind": "purged k-fold" if folds else "anchored" if anchored else "rolling",
                   "train_days": days(train), "test_days": days(test),
                   "step_days": days(test if step is None else step) if train else None,
                   "k": folds, "embargo_days": days(embargo) if folds else None}  # fmt: skip
            info["walk_forward"] = walk_forward_summary(plan_folds, rows, goals, config, how)
        else:
            info["overfitting"] = overfitting(rows, goals[0], config)
        if out is not None:
            folder.write(lambda stage: _write_results(stage, out, table, info, best, strategy,
                                                      config, goals, rows))  # fmt: skip
        return Sweep(table, best, goals, out, len(rows), ctx.ran, workers_used,
                     info["wall_s"], info)  # fmt: skip


def _why_no_best(rows: Sequence[Mapping[str, Any]], goals: Sequence[Objective]) -> str:
    """Why no trial could be chosen, with what to change."""
    from collections import Counter

    from tickwise.engine.limits import TRIGGER_SETTINGS

    if not rows:
        return "no trial was run"
    ok = [r for r in rows if r["status"] == OK]
    if ok:
        for o in goals:
            nulls = Counter(r.get("null", {}).get(o.name) for r in ok if r.get(o.name) is None)
            if nulls:
                why, n = nulls.most_common(1)[0]
                return (f"{n:,} of the {len(ok):,} trials that ran to the end have no {o.name}: "
                        f"{why or 'not a number'}; choose another --objective (pnl needs no "
                        "returns), or data over more periods")  # fmt: skip
    halts = Counter(r.get("halt_reason") for r in rows if r["status"] == "halted")
    if halts:
        cause, n = halts.most_common(1)[0]
        hint = TRIGGER_SETTINGS.get(cause, "")
        said = f"{n:,} of {len(rows):,} trials were halted by the kill switch ({cause})"
        return f"{said}; a sweep is research: --no-killswitch, or set {hint}" if hint else said
    statuses = Counter(r["status"] for r in rows)
    first = next((r["reason"] for r in rows if r.get("reason")), "")
    return f"trials: {dict(statuses)}; the first reason: {first}"


def _fixed(cls: type[Strategy], params: Mapping[str, Any] | None, dims: Space) -> dict:
    """The fixed parameters, each checked; none may be swept too."""
    fixed = dict(params or {})
    both = sorted(set(fixed) & set(dims.names))
    if both:
        raise TickwiseError(f"{', '.join(both)}: both fixed (--param) and swept (--grid)")
    for name, value in fixed.items():
        if name not in cls.params:
            cls.resolve_params({name: value})  # (says which parameters there are)
        fixed[name] = cls.params[name].check(name, value)
    return fixed


def _objectives(objectives: Sequence[str], search: str, executor: str) -> tuple[Objective, ...]:
    if search not in SEARCHES:
        raise TickwiseError(f"search {search!r}: one of {', '.join(SEARCHES)}")
    if executor not in EXECUTORS:
        raise TickwiseError(f"--executor {executor!r}: one of {', '.join(EXECUTORS)}")
    goals = tuple(parse_objective(o, NUMBERS) for o in objectives)
    if not goals:
        raise TickwiseError("no objective: give at least one (--objective sharpe)")
    if len({o.name for o in goals}) != len(goals):
        raise TickwiseError("an objective is given twice")
    return goals


def _folds(history: Any, start: int | None, end: int | None, train: int | None,
           test: int | None, step: int | None, anchored: bool, folds: int | None,
           embargo: int) -> list[Fold]:  # fmt: skip
    """The sweep's folds: walk-forward, purged k-fold, or one fold of the whole window
    with no test (a plain sweep)."""
    walking = train is not None or test is not None
    if walking and folds is not None:
        raise TickwiseError("--train/--test (walk-forward) or --folds (k-fold): not both")
    if not walking and folds is None:
        if step is not None or anchored or embargo:
            raise TickwiseError("--step and --anchored go with --train/--test; --embargo "
                                "with --folds")  # fmt: skip
        return [Fold(0, ((start, end),), ())]
    first, last = history.ts_range
    lo = first if start is None else max(first, start)
    hi = last if end is None else min(last, end - 1)
    if lo > hi:
        raise TickwiseError("--start/--end leave no event to fold")
    if folds is not None:
        if step is not None or anchored:
            raise TickwiseError("--step and --anchored are walk-forward's (--train/--test)")
        return purged_k_fold(lo, hi, folds, embargo)
    if train is None or test is None:
        raise TickwiseError("walk-forward needs both --train and --test")
    if embargo:
        raise TickwiseError("--embargo is k-fold's (--folds)")
    return walk_forward(lo, hi, train, test, step, anchored)


def _best_of(rows: Sequence[Mapping[str, Any]], first: int, goals: Sequence[Objective],
             last_fold: bool = False) -> dict[str, Any] | None:  # fmt: skip
    """The best trial of `rows` (trial ids from `first`) that may be chosen; `last_fold`:
    of the last fold's training when there are folds (what you would trade next)."""
    if last_fold and rows and rows[-1]["fold"] is not None:
        last = max(r["fold"] for r in rows)
        candidates = [(n, r) for n, r in enumerate(rows) if r["fold"] == last]
    else:
        candidates = list(enumerate(rows))
    chosen = [(n, r) for n, r in candidates if r["role"] != "test" and eligible(r, goals)]
    ranks = rank([r for _, r in chosen], goals)
    for (n, r), place in zip(chosen, ranks, strict=True):
        if place == 1:
            return {**r, "trial": first + n}
    return None


def _percentiles(values: Sequence[float]) -> dict[str, float] | None:
    """p50/p90/p99/max of per-trial times (s), or None without any."""
    if not values:
        return None
    import numpy as np

    q = np.percentile(np.asarray(values), [50, 90, 99, 100])
    return dict(zip(("p50", "p90", "p99", "max"), (float(x) for x in q), strict=True))


def _row_bytes(history: Any) -> int:
    """Bytes of one row of the widest kind the data holds."""
    from tickwise.engine.schemas import market_dtype

    kinds = history.kinds if hasattr(history, "kinds") else (history.kind,)
    return max(market_dtype(k).itemsize for k in kinds)


def _warm_up(cls: type[Strategy], history: Any, fixed: Mapping[str, Any],
             config: SessionConfig, on_compile: Any) -> None:  # fmt: skip
    """Compile (or load) what a trial runs, once, here: the strategy's loop and the
    statistics, over the first instant of the data; workers starting together then load
    them from the cache instead of each compiling them. Code that does not compile is
    refused here, once, as `tickwise backtest` refuses it."""
    try:
        cls.resolve_params(fixed)
    except Exception:  # (not these parameters, or check_params raising: each trial says so)
        return
    first = history.ts_range[0]
    try:
        bt = replay(cls, history, fixed, config, on_compile=on_compile, end=first + 1)
    except TickwiseError:  # (nothing at the first instant in this window: trials will say)
        return
    summarize(bt, "")


def _write_results(stage: Path, out: Path, table: pa.Table, info: dict[str, Any],
                   best: dict[str, Any] | None, spec: str, config: SessionConfig,
                   goals: Sequence[Objective],
                   rows: Sequence[Mapping[str, Any]]) -> None:  # fmt: skip
    """The results of a sweep into `stage` (then moved into `out`)."""
    pq.write_table(table, stage / "trials.parquet")
    ts, pnl, fold = curve = stitched(rows)
    if "walk_forward" in info:
        oos = pa.table({"ts": pa.array(ts, pa.timestamp("ns", tz="UTC")), "pnl": pnl,
                        "fold": fold})  # fmt: skip
        pq.write_table(oos, stage / "oos_equity.parquet")
    write_sweep_report(stage / "report.html", table.to_pylist(), info, goals, curve)
    (stage / "sweep.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    if best is None:
        return
    spec = absolute_spec(spec)  # (best.toml may be read from any folder)
    said = ", ".join(f"{o.name} {best[o.name]:.6g}" for o in goals)
    header = best_header(best, info, spec, out / "best.toml",
                         ", ".join(o.text() for o in goals), said)  # fmt: skip
    (stage / "best.toml").write_text(best_toml(spec, config, best["params"], header))
