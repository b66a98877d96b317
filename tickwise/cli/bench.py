"""`tickwise bench`: the benchmark suites, each beside its floor measured in the same run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.table import Table

from tickwise.cli.common import (
    subparser,
)
from tickwise.engine.console import stderr, stdout
from tickwise.engine.errors import TickwiseError


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add the bench commands to the command tree."""
    bench = subparser(
        commands, "bench", "benchmarks, each beside its floor measured in the same run",
        "tickwise bench --quick --json bench-results/today.json   "
        "(or: tickwise bench --compare old.json new.json)",
    )  # fmt: skip
    bench.add_argument("--quick", action="store_true", help="fewer rounds (for CI)")
    bench.add_argument("--json", type=Path, default=None, help="also write the run here")
    bench.add_argument("--overwrite", action="store_true",
                       help="replace the --json file if it exists")  # fmt: skip
    bench.add_argument("--only", action="append", default=[], metavar="SUITE",
                       help="run only this suite (repeatable)")  # fmt: skip
    bench.add_argument("--compare", nargs=2, type=Path, default=None, metavar=("OLD", "NEW"),
                       help="compare two runs' ratios instead of running")  # fmt: skip
    bench.add_argument("--markdown", type=Path, default=None, metavar="RUN",
                       help="print a run as the Markdown table of docs/performance.md")  # fmt: skip
    bench.add_argument("--schema", action="store_true",
                       help="print the JSON Schema a run is written in, and stop")  # fmt: skip
    bench.set_defaults(run=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    try:
        from tickwise.benchmarks import harness
        from tickwise.benchmarks.cases import SUITE
        from tickwise.benchmarks.cases import run as run_suites
    except ModuleNotFoundError as exc:
        if exc.name not in ("tickwise.benchmarks", "tickwise.benchmarks.cases"):
            raise
        raise TickwiseError(
            "tickwise bench runs from a source checkout (its benchmarks/ folder is not part of "
            "an installed tickwise): clone the repository and run `make bench` or "
            "`.venv/bin/tickwise bench` there"
        ) from None
    from tickwise.engine.atomic import check_target, make_folder, publish, temporary_path

    if args.schema:
        print(json.dumps(harness.SCHEMA, indent=2))
        return 0
    if args.markdown:
        print(harness.markdown(harness.load(args.markdown)), end="")
        return 0
    if args.compare:
        old, new = (harness.load(p) for p in args.compare)
        changes = harness.compare(old, new)
        table = Table(title=f"{args.compare[0]} -> {args.compare[1]} (cost ratios to each "
                      "case's floor; times are never compared)", title_justify="left")  # fmt: skip
        for column in ("case", "statistic", "old ratio", "new ratio", "change", "verdict"):
            table.add_column(column, justify="left" if column in ("case", "verdict") else "right")
        for c in changes:
            table.add_row(c.name, c.stat, "-" if c.old is None else f"{c.old:.2f}x",
                          "-" if c.new is None else f"{c.new:.2f}x",
                          "-" if c.factor is None else f"{c.factor:.2f}x", c.verdict)  # fmt: skip
        stdout.print(table)
        worse = [c for c in changes if c.verdict == "regression"]
        stdout.print(f"{len(worse)} regression(s) (a ratio grown by more than "
                     f"{harness.REGRESSION:g}x at p50, {harness.TAIL_REGRESSION:g}x at p99)",
                     markup=False)  # fmt: skip
        return 1 if worse else 0
    unknown = sorted(set(args.only) - set(SUITE))
    if unknown:
        raise TickwiseError(f"--only {unknown}: no such suite; suites: {', '.join(SUITE)}")
    if args.json:  # refused before minutes of measuring, not after
        check_target(args.json, args.overwrite)
        make_folder(args.json.parent)
    names = [name for name in SUITE if not args.only or name in args.only]
    cases, failed = run_suites(names, args.quick, lambda line: stderr.print(line, markup=False))
    doc = harness.run_document(cases, args.quick)
    table = Table(title=f"tickwise bench{' --quick' if args.quick else ''}: ours beside its "
                  f"floor measured in the same run ({doc['machine']['cpu']}, "
                  f"{doc['machine']['cores']} cores); latencies at p50 / p90 / p99 / p99.9, "
                  f"rates at the median round; ratio = cost against the floor (above 1 is "
                  f"slower)", title_justify="left")  # fmt: skip
    widest = max((len(c.name) for c in cases), default=4)
    table.add_column("case", no_wrap=True, min_width=widest)  # (names are what --compare keys)
    for column in ("unit", "ours", "floor", "ratio", "target", "verdict"):
        table.add_column(column, justify="left" if column == "verdict" else "right")
    for case in cases:
        verdict = "FAILS" if case.name in failed else "misses" if case.misses() else "meets"
        stats = [k for k in (harness.LATENCY_STATS if case.kind == "latency" else ("p50",))
                 if k in case.ours and k in case.floor]  # fmt: skip
        shown = [k for k in ("p50", "p99") if k in case.ratio]
        table.add_row(
            case.name, case.unit, " / ".join(harness.figure(case.ours[k]) for k in stats),
            " / ".join(harness.figure(case.floor[k]) for k in stats),
            ", ".join(f"{k} {case.ratio[k]:.2f}x" for k in shown),
            ", ".join(f"{k} {v:g}x" for k, v in case.target.items()) or "-", verdict,
        )  # fmt: skip
    stdout.print(table)
    if args.json:
        tmp = temporary_path(args.json)
        tmp.write_text(json.dumps(doc, indent=2))
        publish(tmp, args.json)
        stdout.print(f"run written to {args.json}", markup=False)
    if failed:
        raise TickwiseError(
            f"{', '.join(sorted(failed))}: ratio beyond {harness.FAIL_FACTOR:g}x its target "
            "in two measurements"
        )
    return 0
