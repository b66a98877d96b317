"""`tickwise backtest`: a strategy over Parquet history, results to a folder."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from rich.markup import escape

from tickwise.cli.common import (
    event_time,
    parse_params,
    print_measures,
    subparser,
)
from tickwise.engine.console import compile_notice, fmt_rate, progress, stdout
from tickwise.engine.errors import TickwiseError

# The statistics printed after a backtest (summary.json and report.html have them all).
CONSOLE_STATS = ("Sharpe", "CAGR", "max drawdown (price", "max drawdown (%")


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add the backtest commands to the command tree."""
    backtest = subparser(
        commands, "backtest", "deterministic replay of a strategy over Parquet history",
        "tickwise backtest --strategy mean_reversion --data data/quotes.parquet "
        "--param window=200 --out results/mr",
    )  # fmt: skip
    backtest.add_argument(
        "--strategy", default=None,
        help="registered name, path/to/file.py:Class or module:Class (default: the config "
        "file's [live] strategy, as a sweep's best.toml has it)",
    )  # fmt: skip
    backtest.add_argument(
        "--data", type=Path, required=True, action="append",
        help="Parquet file or hive folder; repeat it (or give a folder holding one entry per "
        "kind) to replay kinds together, merged by (ts_event, instrument, seq)",
    )  # fmt: skip
    backtest.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="K=V",
        help="strategy parameter, repeatable (overrides the config file)",
    )
    backtest.add_argument(
        "--config", type=Path, default=None, help="TOML file: [backtest] settings and [params]"
    )
    backtest.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="rows per batch (65536); results never depend on it",
    )
    for flag, what in (("--start", "the first"), ("--end", "past the last")):
        backtest.add_argument(
            flag, type=event_time, default=None, metavar="TIME",
            help=f"{what} ts_event replayed: ISO 8601 (UTC unless a zone is given) or ns",
        )  # fmt: skip
    backtest.add_argument(
        "--no-killswitch",
        action="store_true",
        help="research run: no automatic trigger, the loop compiled without them "
        "(as [killswitch] enabled = false)",
    )
    backtest.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    backtest.add_argument("--out", type=Path, required=True, help="result folder to write")
    backtest.set_defaults(run=_cmd_backtest)


def _iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC).isoformat()


def _cmd_backtest(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from tickwise.backtest.replay import run_backtest
    from tickwise.backtest.results import outcome, write_results
    from tickwise.backtest.statistics import describe
    from tickwise.engine.atomic import check_target
    from tickwise.engine.config import SessionConfig, load_config
    from tickwise.feeds.merged import open_data

    check_target(args.out, args.overwrite)  # before any work: never lose a result
    config, params = (SessionConfig(), {}) if args.config is None else load_config(args.config)
    if args.batch_size is not None:
        config = replace(config, batch_size=args.batch_size)
    if args.no_killswitch:
        config = replace(config, killswitch=replace(config.killswitch, enabled=False))
    params |= parse_params(args.param)
    strategy = args.strategy or config.live.strategy
    if strategy is None:
        raise TickwiseError("which strategy? give --strategy (or [live] strategy in --config)")
    if args.start is not None and args.end is not None and not args.start < args.end:
        raise TickwiseError(f"--start ({_iso(args.start)}) must be before --end ({_iso(args.end)})")
    window = args.start is not None or args.end is not None
    data = args.data[0] if len(args.data) == 1 else args.data
    rows = None if window else open_data(data).rows  # (a window's rows: not known)
    with progress("replay", rows) as advance:
        bt = run_backtest(strategy, data, params, config, on_events=advance,
                          on_compile=compile_notice, start=args.start, end=args.end)  # fmt: skip
    summary = write_results(bt, args.out, overwrite=args.overwrite)
    rate = fmt_rate(summary["events"], summary["replay_s"], "events")
    shown = " + ".join(str(p) for p in args.data)
    print_measures(f"[bold]{escape(summary['strategy'])}[/] on {escape(shown)}", (
        ("events", f"{summary['events']:,}"),
        ("orders / fills / rejects",
         f"{summary['orders']:,} / {summary['fills']:,} / {summary['rejects']:,}"),
        ("round trips", f"{summary['trades']:,}"),
        ("PnL (price units, after fees)", f"{summary['pnl']:,.2f}"),
        ("fees", f"{summary['fees']:,.2f}"),
        *[row for row in describe(summary["statistics"]) if row[0].startswith(CONSOLE_STATS)],
        *outcome(summary),
        ("run_hash", summary["run_hash"][:16]),
        ("replay (wall clock: read, check, loop)", f"{rate} in {summary['replay_s']:.2f} s"),
        ("compiling/loading the loop (wall clock)", f"{summary['warmup_s']:.2f} s"),
    ))  # fmt: skip
    for line in summary["warnings"]:
        stdout.print(f"warning: {line}", markup=False)
    stdout.print(f"results in {args.out}", markup=False)
    return 0
