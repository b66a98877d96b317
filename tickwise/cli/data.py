"""`tickwise data`: make, inspect and import market-data history."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from tickwise.cli.common import (
    EXIT_ERROR,
    group,
    subparser,
)
from tickwise.engine.console import fmt_ns, fmt_rate, plain, progress, stdout
from tickwise.engine.errors import TickwiseError
from tickwise.engine.schemas import KINDS

# The vendor formats (feeds.vendors.readers), named here so that --help imports nothing.
FORMATS = ("databento", "tardis", "binance", "lobster", "mbo")


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add the data commands to the command tree."""
    data_cmds = group(commands, "data", "make, inspect and import market-data history")

    synth = subparser(
        data_cmds,
        "synth",
        "deterministic synthetic market data to Parquet",
        "tickwise data synth --kind quotes --rows 1000000 --instruments 4 --seed 7 "
        "--inject crash:at=600,drop_pct=8 --out data/quotes.parquet",
    )
    synth.add_argument("--kind", choices=KINDS, default="quotes", help="record kind (quotes)")
    synth.add_argument("--rows", type=int, default=1_000_000, help="rows to write (1000000)")
    synth.add_argument("--instruments", type=int, default=4, help="number of instruments (4)")
    synth.add_argument("--seed", type=int, default=0, help="random seed: same seed, same bytes (0)")
    synth.add_argument(
        "--rate",
        type=float,
        default=None,
        help="market events per second, all instruments together (1000; bars: 50)",
    )
    synth.add_argument(
        "--start", default=None, help="first session open, ISO-8601 UTC (2024-01-02T14:30:00Z)"
    )
    synth.add_argument(
        "--inject",
        action="append",
        default=[],
        metavar="EPISODE",
        help="abnormal episode, repeatable: crash:at=S,drop_pct=P,down_s=D,recover_s=R"
        "[,instrument=I] | gap:at=S,seconds=N | stale:at=S,seconds=N "
        "(S: seconds from the start)",
    )
    synth.add_argument(
        "--partition",
        action="store_true",
        help="write a hive directory date=…/instrument=… instead of one file",
    )
    synth.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    synth.add_argument("--out", type=Path, required=True, help="output .parquet file or directory")
    synth.set_defaults(run=_cmd_synth)

    inspect = subparser(
        data_cmds,
        "inspect",
        "schema, rows, instruments, time range and validation verdict",
        "tickwise data inspect data/quotes.parquet",
    )
    inspect.add_argument("path", type=Path, help="a .parquet file or a hive directory")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of tables")
    inspect.set_defaults(run=_cmd_inspect)

    imp = subparser(
        data_cmds,
        "import",
        "validated, streaming import of vendor history (Databento DBN, order-by-order CSV) or "
        "of CSV/Parquet in tickwise's columns; order-by-order books to L2 deltas and L1 quotes",
        "tickwise data import glbx-mdp3-20240105.mbo.dbn.zst glbx-mdp3-20240105.definition.dbn"
        ".zst --to book,quotes,trades --out data/es\n"
        "  tickwise data import ticks.csv --kind quotes --tick-size 0.01 --out data/ticks.parquet",
    )
    imp.add_argument(
        "source",
        type=Path,
        nargs="+",
        help="files of one format, imported as one history in the order given",
    )
    imp.add_argument(
        "--format",
        choices=("csv", *FORMATS),
        default=None,
        help="the files' format (by default told from their names or first bytes; csv: "
        "tickwise's own columns, with --kind)",
    )
    imp.add_argument(
        "--kind", choices=KINDS, default=None, help="record kind of the rows (--format csv)"
    )
    imp.add_argument(
        "--to",
        type=_kinds,
        default=None,
        metavar="KINDS",
        help="kinds to write, comma-separated (by default all the files give; order-by-order "
        "messages give book,quotes,trades); several make --out a folder of kinds",
    )
    imp.add_argument(
        "--map",
        action="append",
        default=None,
        metavar="FIELD=COLUMN",
        help="--format mbo: the column holding a field (ts_event, ts_recv, symbol, order_id, "
        "action, side, price, size), e.g. --map order_id=id",
    )
    imp.add_argument(
        "--instruments",
        type=Path,
        default=None,
        metavar="CSV",
        help="instrument table: symbol,tick_size,lot_size[,id]",
    )
    imp.add_argument("--tick-size", type=float, default=0.01, help="default tick size (0.01)")
    imp.add_argument("--lot-size", type=float, default=1.0, help="default lot size (1)")
    imp.add_argument(
        "--sort",
        action="store_true",
        help="--format csv: put rows in time order first (vendor files are always put in order)",
    )
    imp.add_argument(
        "--bad-rows",
        type=Path,
        default=None,
        metavar="CSV",
        help="set refused rows aside in this CSV (file, line, reason, values) and import the rest",
    )
    imp.add_argument(
        "--notes",
        type=Path,
        default=None,
        metavar="CSV",
        help="write every note of the order-by-order books to this CSV (file, line or record, "
        "what: unknown orders, crossed books repaired)",
    )
    imp.add_argument("--partition", action="store_true", help="write hive directories")
    imp.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    imp.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output .parquet file or directory (a folder of kinds for several)",
    )
    imp.set_defaults(run=_cmd_import)


def _parse_start(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise TickwiseError(f"--start {text!r} is not an ISO-8601 time") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _cmd_synth(args: argparse.Namespace) -> int:
    from tickwise.feeds.synth import SynthConfig, parse_episode, synth

    config = SynthConfig(
        kind=args.kind,
        rows=args.rows,
        instruments=args.instruments,
        seed=args.seed,
        rate=args.rate,
        episodes=tuple(parse_episode(e) for e in args.inject),
        **({"start": start} if (start := _parse_start(args.start)) else {}),
    )
    with progress(f"synth {args.kind}", args.rows) as advance:
        result = synth(
            config, args.out, partition=args.partition, overwrite=args.overwrite, on_rows=advance
        )
    stdout.print(
        f"wrote {result.rows:,} {result.kind} rows for {len(result.instruments)} instruments "
        f"({fmt_ns(result.ts_first)} → {fmt_ns(result.ts_last)} UTC) to {result.path}: "
        f"{result.wall_s:.2f} s wall clock, {fmt_rate(result.rows, result.wall_s, 'rows')}",
        markup=False,
    )
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from tickwise.feeds.history import open_history
    from tickwise.feeds.inspection import inspect_history

    rows = open_history(args.path).rows
    with progress("validate", rows) as advance:
        report = inspect_history(args.path, on_rows=advance)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0 if report.valid else EXIT_ERROR
    stdout.print(
        f"[bold]{escape(str(report.path))}[/]: {report.kind}, {report.rows:,} rows in "
        f"{report.files} file(s), "
        f"{fmt_ns(report.ts_first)} → {fmt_ns(report.ts_last)} UTC"
    )
    schema = Table(title="schema", title_justify="left")
    schema.add_column("column")
    schema.add_column("type")
    for name, type_ in report.schema:
        schema.add_row(name, type_)
    stdout.print(schema)
    table = Table(title="instruments", title_justify="left")
    for col in ("id", "symbol", "tick", "lot", "rows", "low", "high", "first (UTC)", "last (UTC)"):
        right = col in ("id", "rows", "low", "high")
        table.add_column(col, justify="right" if right else "left", no_wrap=True)
    for i in report.instruments:
        table.add_row(*plain(
            str(i.id),
            i.symbol,
            f"{i.tick_size:g}",
            f"{i.lot_size:g}",
            f"{i.rows:,}",
            "-" if i.px_low is None else f"{i.px_low:g}",
            "-" if i.px_high is None else f"{i.px_high:g}",
            fmt_ns(i.ts_first),
            fmt_ns(i.ts_last),
        ))  # fmt: skip
    stdout.print(table)
    speed = fmt_rate(report.rows_checked, report.wall_s, "rows")
    if report.valid:
        stdout.print(
            f"[green]valid[/]: {report.rows_checked:,} rows checked in {report.wall_s:.2f} s "
            f"wall clock ({speed})"
        )
        return 0
    stdout.print(f"[red]invalid[/] after {report.rows_checked:,} good rows:", end=" ")
    stdout.print(report.fault, markup=False)
    return EXIT_ERROR


def _kinds(text: str) -> list[str]:
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise argparse.ArgumentTypeError(
            f"{text!r}: name kinds from {', '.join(KINDS)}, comma-separated"
        )
    return kinds


def _cmd_import(args: argparse.Namespace) -> int:
    from tickwise.feeds.vendors import detect_format

    fmt = args.format
    if fmt is None and args.kind is not None:
        fmt = "csv"  # (--kind names tickwise's own columns)
    if fmt is None:
        found = {detect_format(s) for s in args.source if s.is_file()}
        fmt = found.pop() if len(found) == 1 and None not in found else None
    if fmt == "csv" or (fmt is None and all(s.suffix.lower() in (".csv", ".parquet")
                                            for s in args.source)):  # fmt: skip
        return _import_csv(args)
    return _import_vendor(args, fmt)


def _import_csv(args: argparse.Namespace) -> int:
    from tickwise.feeds.importer import import_history

    if args.kind is None:
        raise TickwiseError(
            f"{args.source[0]}: give --kind for a file in tickwise's columns, or --format for "
            f"a vendor's ({', '.join(FORMATS)})"
        )
    if len(args.source) > 1:
        raise TickwiseError("--format csv imports one file at a time; give one SOURCE")
    for flag, value in (("--to", args.to), ("--map", args.map), ("--notes", args.notes)):
        if value:
            raise TickwiseError(f"{flag} is for vendor formats ({', '.join(FORMATS)}), not csv")
    source = args.source[0]
    with progress(f"import {source.name}", None):
        result = import_history(
            source,
            args.kind,
            args.out,
            instruments_file=args.instruments,
            tick_size=args.tick_size,
            lot_size=args.lot_size,
            partition=args.partition,
            overwrite=args.overwrite,
            sort=args.sort,
            bad_rows=args.bad_rows,
        )
    stdout.print(
        f"imported {result.rows:,} {result.kind} rows for {len(result.instruments)} instruments "
        f"to {result.path}{' (sorted by time)' if result.sorted else ''}: "
        f"{result.wall_s:.2f} s wall clock",
        markup=False,
    )
    if args.bad_rows is not None:
        where = f" to {result.bad_rows_path} (line and reason each)" if result.bad_rows else ""
        stdout.print(f"set aside {result.bad_rows:,} bad rows{where}", markup=False)
    return 0


def _import_vendor(args: argparse.Namespace, fmt: str | None) -> int:
    from tickwise.feeds.vendors.mapped import parse_mapping
    from tickwise.feeds.vendors.pipeline import import_vendor

    if args.kind is not None:
        raise TickwiseError("--kind is for --format csv; vendor files say what they hold "
                            "(choose what to write with --to)")  # fmt: skip
    options = {}
    if args.map:
        if fmt not in (None, "mbo"):
            raise TickwiseError(f"--map is for --format mbo, not {fmt}")
        options["mapping"] = parse_mapping(args.map)
    label = args.source[0].name + (f" and {len(args.source) - 1} more" if len(args.source) > 1
                                   else "")  # fmt: skip
    with progress(f"import {label}", None):
        result = import_vendor(
            args.source,
            args.out,
            fmt=fmt,
            to=args.to,
            instruments_file=args.instruments,
            tick_size=args.tick_size,
            lot_size=args.lot_size,
            partition=args.partition,
            overwrite=args.overwrite,
            bad_rows=args.bad_rows,
            notes_path=args.notes,
            options=options,
        )
    rate = (f" ({fmt_rate(result.messages, result.wall_s, 'messages')} over the whole import)"
            if result.messages else "")  # fmt: skip
    stdout.print(
        f"imported {result.format} to {result.out}: "
        + ", ".join(f"{n:,} {k} rows" for k, n in result.rows.items())
        + f" for {len(result.instruments)} instruments; {result.wall_s:.2f} s wall clock{rate}",
        markup=False,
    )
    if result.messages:
        stdout.print(f"order-by-order messages read: {result.messages:,}", markup=False)
    for why, note in result.notes.items():
        first = f" (first: {'; '.join(note.places)})" if note.places else ""
        stdout.print(f"note: {note.count:,} {why}{first}", markup=False)
    if args.notes is not None:
        stdout.print(f"every note of the books, with its place: {args.notes}", markup=False)
    if args.bad_rows is not None:
        where = (
            f" to {result.bad_rows_path} (file, place and reason each)" if result.bad_rows else ""
        )
        stdout.print(f"set aside {result.bad_rows:,} bad rows{where}", markup=False)
    return 0
