"""`tickwise strategies`: the registered strategies and their parameters; `strategies check`
compiles one and reports its mistakes."""

from __future__ import annotations

import argparse
import json

from rich.table import Table

from tickwise.cli.common import instrument_table, parse_params, subparser
from tickwise.engine.console import compile_notice, stdout


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add the strategies commands to the command tree."""
    strategies = subparser(
        commands, "strategies", "registered strategies with their parameters and defaults",
        "tickwise strategies --json",
    )  # fmt: skip
    strategies.add_argument("--json", action="store_true", help="print JSON instead of tables")
    strategies.set_defaults(run=_cmd_strategies)
    actions = strategies.add_subparsers(dest="strategies_command", metavar="ACTION")
    check = subparser(
        actions, "check", "load a strategy, check its code and compile every piece a live "
        "session runs; mistakes as one paragraph naming the file, line and rule",
        "tickwise strategies check my_strategies/momentum.py:Momentum --param band=0.002",
    )  # fmt: skip
    check.add_argument("spec", metavar="STRATEGY",
                       help="registered name, path/to/file.py:Class or module:Class")  # fmt: skip
    check.add_argument("--param", action="append", default=[], metavar="K=V",
                       help="a parameter value to check, repeatable")  # fmt: skip
    check.add_argument("--instruments", default="synth:8",
                       help="instrument table to compile for: a tickwise Parquet history, or "
                       "synth:N (synth:8)")  # fmt: skip
    check.set_defaults(run=_cmd_check)


def _cmd_check(args: argparse.Namespace) -> int:
    import time

    from tickwise.engine.session import Session
    from tickwise.engine.strategy import load_strategy

    began = time.perf_counter()
    strategy = load_strategy(args.spec)  # the class and its code, checked before compiling
    session = Session(strategy, instrument_table(args.instruments), parse_params(args.param))
    with compile_notice(strategy.name()):
        session.warm_up(strategy.kinds, reports=True, controls=True)
    stdout.print(
        f"{strategy.name()} ({args.spec}): ok. Compiled or loaded for "
        f"{', '.join(strategy.kinds)}, fills and exchange reports in "
        f"{time.perf_counter() - began:.1f} s (wall clock); parameters: "
        + (", ".join(f"{k}={v}" for k, v in session.params.items()) or "none"),
        markup=False,
    )
    return 0


def _cmd_strategies(args: argparse.Namespace) -> int:
    from tickwise.engine.strategy import registered

    found = registered()
    if args.json:
        listing = {
            name: {
                "class": f"{cls.__module__}:{cls.__qualname__}",
                "summary": cls.summary(),
                "kinds": list(cls.kinds),
                "params": {
                    p: {"default": spec.default, "type": spec.type.__name__, "low": spec.low,
                        "high": spec.high, "doc": spec.doc}
                    for p, spec in cls.params.items()
                },
            }
            for name, cls in found.items()
        }  # fmt: skip
        print(json.dumps(listing, indent=2))
        return 0
    for name, cls in found.items():
        table = Table(title=f"[bold]{name}[/]: {cls.summary()} (data: {', '.join(cls.kinds)})",
                      title_justify="left")  # fmt: skip
        for col in ("parameter", "default", "range", "meaning"):
            table.add_column(col)
        for p, spec in cls.params.items():
            low = "" if spec.low is None else f"{spec.low:g}"
            high = "" if spec.high is None else f"{spec.high:g}"
            span = "" if spec.type is bool else f"[{low or '-inf'}, {high or 'inf'}]"
            table.add_row(p, str(spec.default), span, spec.doc)
        stdout.print(table)
    stdout.print(
        "Commands take a strategy by these names, or your own as path/to/file.py:ClassName.",
        markup=False,
    )
    return 0
