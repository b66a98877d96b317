"""`tickwise strategies`: the registered strategies and their parameters."""

from __future__ import annotations

import argparse
import json

from rich.table import Table

from tickwise.cli.common import (
    subparser,
)
from tickwise.engine.console import stdout


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add the strategies commands to the command tree."""
    strategies = subparser(
        commands, "strategies", "registered strategies with their parameters and defaults",
        "tickwise strategies --json",
    )  # fmt: skip
    strategies.add_argument("--json", action="store_true", help="print JSON instead of tables")
    strategies.set_defaults(run=_cmd_strategies)


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
