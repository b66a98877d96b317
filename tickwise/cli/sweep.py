"""`tickwise sweep`: a strategy over a history across a grid or a search of its parameters."""

from __future__ import annotations

import argparse
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from tickwise.cli.common import EXIT_INTERRUPTED, event_time, parse_params, subparser
from tickwise.engine.console import compile_notice, stderr, stdout
from tickwise.engine.errors import TickwiseError

SHOWN = 10  # the best trials printed
LOG_EVERY_S = 10.0  # off a terminal: a progress line this often


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add the sweep command to the command tree."""
    sweep = subparser(
        commands, "sweep", "a strategy across a grid or a search of its parameters; resumable",
        "tickwise sweep --strategy mean_reversion --data data/quotes.parquet "
        "--grid window=50:500:50 --grid entry_z=1.5,2,2.5 --objective sharpe --out sweeps/mr",
    )  # fmt: skip
    sweep.add_argument(
        "--strategy", required=True, help="registered name, path/to/file.py:Class or module:Class"
    )
    sweep.add_argument(
        "--data", type=Path, required=True, action="append",
        help="Parquet file or hive folder; repeat it to replay kinds together (as backtest)",
    )  # fmt: skip
    sweep.add_argument(
        "--grid", action="append", default=[], metavar="K=SPEC",
        help="a swept parameter, repeatable: a:b:step (a grid's axis), v1,v2,... (these "
        "values), a:b or a:b:log (any value between: searches only)",
    )  # fmt: skip
    sweep.add_argument(
        "--param", action="append", default=[], metavar="K=V",
        help="a fixed parameter, repeatable (overrides the config file)",
    )  # fmt: skip
    sweep.add_argument(
        "--config", type=Path, default=None, help="TOML file: [backtest] settings and [params]"
    )
    how = sweep.add_mutually_exclusive_group()
    how.add_argument("--random", type=int, metavar="N", help="N points drawn at random")
    how.add_argument("--trials", type=int, metavar="N",
                     help="N points chosen by an Optuna sampler (--sampler)")  # fmt: skip
    sweep.add_argument(
        "--sampler", choices=("tpe", "cmaes", "nsga2"), default=None,
        help="with --trials: tpe (one objective, the default), cmaes, nsga2 (several)",
    )  # fmt: skip
    sweep.add_argument("--seed", type=int, default=0, help="seed of --random/--trials (0)")
    sweep.add_argument(
        "--batch", type=int, default=8,
        help="points asked of the sampler at a time (8); the results never depend on "
        "--workers, and a larger batch keeps more workers busy",
    )  # fmt: skip
    sweep.add_argument(
        "--objective", action="append", default=None, metavar="NAME[:max|min]",
        help="a number of the trial table to optimise, repeatable (sharpe; max_drawdown:min)",
    )  # fmt: skip
    sweep.add_argument("--executor", choices=("local", "ray"), default="local",
                       help="local processes (the default) or a Ray cluster")  # fmt: skip
    sweep.add_argument("--workers", type=int, default=None,
                       help="worker processes (the CPUs; with Ray, the cluster's)")  # fmt: skip
    sweep.add_argument(
        "--address", default=None,
        help="with --executor ray: auto or HOST:PORT of a running cluster (none: a local Ray "
        "started for the sweep)",
    )  # fmt: skip
    for flag, what in (("--start", "the first"), ("--end", "past the last")):
        sweep.add_argument(
            flag, type=event_time, default=None, metavar="TIME",
            help=f"{what} ts_event replayed: ISO 8601 (UTC unless a zone is given) or ns",
        )  # fmt: skip
    wf = sweep.add_argument_group(
        "walk-forward and k-fold",
        "each fold searches on its training windows and runs the best point on its test "
        "window; lengths of event time: 30d, 12h, 90m, 45s, 2w",
    )
    wf.add_argument("--train", type=_length("--train"), default=None,
                    help="walk-forward: the training window")  # fmt: skip
    wf.add_argument("--test", type=_length("--test"), default=None,
                    help="walk-forward: the test window after it")  # fmt: skip
    wf.add_argument("--step", type=_length("--step"), default=None,
                    help="walk-forward: from one fold to the next (the test's length)")  # fmt: skip
    wf.add_argument("--anchored", action="store_true",
                    help="walk-forward: training starts at the first event")  # fmt: skip
    wf.add_argument("--folds", type=int, default=None, metavar="K",
                    help="purged k-fold: K equal windows, each the test of one fold")  # fmt: skip
    wf.add_argument("--embargo", type=_length("--embargo"), default=0,
                    help="purged k-fold: kept out of training each side of a test")  # fmt: skip
    sweep.add_argument(
        "--max-memory", type=_size, default=None, metavar="SIZE",
        help="refuse, before starting, a plan that needs more memory: 8GiB, 800MiB, 2G",
    )  # fmt: skip
    sweep.add_argument(
        "--trial-timeout", type=float, default=None, metavar="SECONDS",
        help="stop a trial still running after this long (its worker is replaced; the row "
        "says so and is not stored): a guard against a loop that never ends",
    )  # fmt: skip
    sweep.add_argument(
        "--no-killswitch", action="store_true",
        help="research runs: no automatic trigger ([killswitch] enabled = false)",
    )  # fmt: skip
    sweep.add_argument(
        "--out", type=Path, required=True,
        help="sweep folder; an existing one is resumed (finished trials are not run again)",
    )  # fmt: skip
    sweep.set_defaults(run=_cmd_sweep)


_UNITS = {"": 1, "k": 2**10, "kib": 2**10, "m": 2**20, "mib": 2**20, "g": 2**30,
          "gib": 2**30, "t": 2**40, "tib": 2**40}  # fmt: skip


def _size(text: str) -> int:
    """An argparse type: an amount of memory (8GiB, 800MiB, 2G; binary units), in bytes."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = found[2].lower().removesuffix("b") if found else ""
    unit = {"ki": "kib", "mi": "mib", "gi": "gib", "ti": "tib"}.get(unit, unit)
    if not found or unit not in _UNITS:
        raise argparse.ArgumentTypeError(f"{text!r} is no amount of memory (8GiB, 800MiB, 2G)")
    return int(float(found[1]) * _UNITS[unit])


def _length(flag: str) -> Any:
    """An argparse type: a length of event time (backtest.folds.duration), in ns."""

    def parse(text: str) -> int:
        from tickwise.backtest.folds import duration

        try:
            return duration(text, flag)
        except TickwiseError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


class _Progress:
    """Trials done of the total, the best so far and the time left, on stderr: a bar on a
    terminal, else a line every LOG_EVERY_S (logs of CI and nohup runs)."""

    def __init__(self, objective: str) -> None:
        self.objective = objective
        self.bar = Progress(
            TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[best]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=stderr, transient=True, disable=not stderr.is_terminal,
        )  # fmt: skip
        self.task: Any = None
        self.total = self.done = 0
        self.began = self.said = time.monotonic()

    def plan(self, total: int) -> None:
        self.task = self.bar.add_task("sweep", total=total, best="")
        self.total = total

    def trial(self, _trial: int, best: dict[str, Any] | None) -> None:
        o = self.objective
        shown = "" if best is None else f"best {o} {best[o]:.4g} (trial {best['trial']})"
        self.bar.update(self.task, advance=1, best=shown)
        self.done += 1
        now = time.monotonic()
        if not stderr.is_terminal and (now - self.said >= LOG_EVERY_S or self.done == self.total):
            self.said = now
            stderr.print(f"sweep: {self.done:,}/{self.total:,} trials, {shown or 'no best yet'}, "
                         f"{now - self.began:.0f} s", markup=False)  # fmt: skip


def _cmd_sweep(args: argparse.Namespace) -> int:
    from tickwise.backtest.space import parse_assignments
    from tickwise.backtest.sweep import sweep
    from tickwise.engine.config import SessionConfig, load_config

    config, params = (SessionConfig(), {}) if args.config is None else load_config(args.config)
    if args.no_killswitch:
        config = replace(config, killswitch=replace(config.killswitch, enabled=False))
    space = parse_assignments(args.grid, "--grid")
    given = parse_params(args.param)
    both = sorted(set(given) & set(space))
    if both:
        raise TickwiseError(f"{', '.join(both)}: both --param and --grid; give one")
    params = {k: v for k, v in params.items() if k not in space} | given  # (swept wins)
    if args.start is not None and args.end is not None and not args.start < args.end:
        raise TickwiseError("--start must be before --end")
    search, trials = "grid", None
    if args.random is not None:
        search, trials = "random", args.random
    elif args.trials is not None:
        several = args.objective is not None and len(args.objective) > 1
        search, trials = args.sampler or ("nsga2" if several else "tpe"), args.trials
    elif args.sampler is not None:
        raise TickwiseError("--sampler goes with --trials N")
    objectives = args.objective or ["sharpe"]
    shown = _Progress(objectives[0].partition(":")[0])
    data = args.data[0] if len(args.data) == 1 else args.data
    try:
        with shown.bar:
            result = sweep(
                args.strategy, data, space, params=params, config=config, search=search,
                trials=trials, seed=args.seed, batch=args.batch, objectives=objectives,
                executor=args.executor, workers=args.workers, address=args.address,
                out=args.out, start=args.start, end=args.end, train=args.train,
                test=args.test, step=args.step, anchored=args.anchored, folds=args.folds,
                embargo=args.embargo, max_memory=args.max_memory,
                trial_timeout=args.trial_timeout, on_trial=shown.trial,
                on_plan=shown.plan, on_compile=compile_notice,
            )  # fmt: skip
    except KeyboardInterrupt:
        stderr.print(f"tickwise: interrupted; every finished trial is stored in {args.out}: "
                     "the same command resumes the sweep", markup=False)  # fmt: skip
        return EXIT_INTERRUPTED
    _print(result)
    return 0


def _print(result: Any) -> None:
    info = result.info
    if "walk_forward" not in info:
        _print_best(result)
    _print_outcome(info)
    if "walk_forward" in info:
        _print_folds(info["walk_forward"], [o.name for o in result.objectives], list(info["space"]))
    else:
        _print_overfitting(info["overfitting"])
    if result.best is None:
        stdout.print(f"no best trial, so no best.toml: {info['no_best']}", markup=False)
    files = ["trials.parquet", "sweep.json", "report.html", "best.toml" if result.best else None,
             "oos_equity.parquet" if "walk_forward" in info else None]  # fmt: skip
    stdout.print(f"results in {result.out}: {', '.join(f for f in files if f)}", markup=False)


def _print_best(result: Any) -> None:
    info = result.info
    goals = [o.name for o in result.objectives]
    swept = list(info["space"])
    table = Table(title=f"{escape(info['strategy_name'])}: {info['trials']:,} trials "
                        f"({info['search']}), best by {', '.join(info['objectives'])}",
                  title_justify="left")  # fmt: skip
    numbers = list(dict.fromkeys([*goals, "pnl", "fills"]))
    pareto = "pareto" in result.table.column_names  # (several objectives)
    columns = ["rank", "trial", *swept, *numbers, "run_hash"] + (["pareto"] if pareto else [])
    for name in columns:
        table.add_column(name, justify="right")
    rows = sorted((r for r in result.table.to_pylist() if r["rank"] is not None),
                  key=lambda r: r["rank"])[:SHOWN]  # fmt: skip
    for r in rows:
        cells = [str(r["rank"]), str(r["trial"]), *(_num(r["param." + n]) for n in swept)]
        cells += [_num(r[n]) for n in numbers]
        front = ["yes" if r["pareto"] else ""] if pareto else []
        table.add_row(*cells, r["run_hash"][:12], *front)
    stdout.print(table)
    if pareto:
        on = sum(bool(x) for x in result.table.column("pareto").to_pylist())
        stdout.print(f"Pareto front (no other trial better in every objective): {on:,} "
                     "trials, ranked first", markup=False)  # fmt: skip


def _print_outcome(info: dict[str, Any]) -> None:
    status = ", ".join(f"{k} {v:,}" for k, v in info["status"].items() if v)
    wall = info["trial_wall_s"]
    workers = f"{info['workers']} {info['executor']} worker{'s' * (info['workers'] != 1)}"
    said = f"; {info['reused']:,} from the store" if info["reused"] else ""
    stdout.print(f"trials: {status}; run now {info['ran']:,} on {workers}{said}", markup=False)
    if info.get("store_note"):
        stdout.print(f"note: {info['store_note']}", markup=False)
    if wall:
        setup = info["trial_setup_s"]
        of = f"; of which setup p50 {setup['p50']:.3f}" if setup else ""
        stdout.print(f"trial wall time (s, over trials run now): p50 {wall['p50']:.3f}, "
                     f"p99 {wall['p99']:.3f}, max {wall['max']:.3f}{of}; sweep wall clock "
                     f"{info['wall_s']:.1f} s", markup=False)  # fmt: skip


def _print_folds(wf: dict[str, Any], goals: list[str], swept: list[str]) -> None:
    table = Table(title=f"walk-forward ({wf['kind']}): in sample, the best of each fold's "
                        "training; out of sample, the same parameters on its test window",
                  title_justify="left")  # fmt: skip
    for name in ("fold", "test window (UTC)", "chosen", *(f"{g} in" for g in goals),
                 *(f"{g} out" for g in goals), "test PnL"):  # fmt: skip
        table.add_column(name, justify="right")
    for f in wf["folds"]:
        window = f"{f['test'][0][0][:16]} .. {f['test'][-1][1][:16]}"
        if "reason" in f:
            table.add_row(str(f["fold"]), window, f["reason"], *[""] * (2 * len(goals) + 1))
            continue
        chosen = ", ".join(f"{k}={v}" for k, v in f["params"].items() if k in swept)
        table.add_row(str(f["fold"]), window, chosen,
                      *(_num(f["in_sample"][g]) for g in goals),
                      *(_num(f["out_of_sample"][g]) for g in goals),
                      _num(f["test_pnl"]))  # fmt: skip
    stdout.print(table)
    oos = wf["out_of_sample"]
    sharpe = oos["sharpe"]
    said = (f"{sharpe['value']:.3f}" if sharpe["value"] is not None
            else f"n/a ({sharpe['reason']})")  # fmt: skip
    stdout.print(f"out of sample, the test windows stitched: PnL {oos['pnl']:,.2f} (price "
                 f"units, after fees); Sharpe {said} (annualised, at each period's end)",
                 markup=False)  # fmt: skip


def _print_overfitting(said: dict[str, Any]) -> None:
    pbo, dsr = said["pbo"], said["deflated_sharpe"]
    pbo_text = (f"{pbo['value']:.2f} (CSCV, {pbo['splits']} blocks of {said['period']} "
                f"returns, {pbo['combinations']:,} combinations)" if pbo["value"] is not None
                else f"n/a ({pbo['reason']})")  # fmt: skip
    dsr_text = (f"{dsr['value']:.3f} (the best trial's Sharpe {dsr['trial_sharpe']:.3f} per "
                f"{said['period']} against {dsr['expected_max_sharpe']:.3f} expected of the best "
                f"of {dsr['trials']} trials without skill)" if dsr["value"] is not None
                else f"n/a ({dsr['reason']})")  # fmt: skip
    stdout.print(f"probability of backtest overfitting: {pbo_text}", markup=False)
    stdout.print(f"deflated Sharpe ratio: {dsr_text}", markup=False)


def _num(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:,}" if isinstance(value, int) else f"{value:,.6g}"
