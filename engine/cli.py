"""The `tickwise` command line: each subcommand parses, calls one API function, and prints.

A user mistake ends as one line on stderr and a non-zero exit; a bug keeps
its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import gc
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from rich.markup import escape
from rich.table import Table

from tickwise import __version__

from .console import fmt_ns, fmt_rate, plain, progress, stderr, stdout
from .errors import TickwiseError
from .schemas import KINDS

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that points at --help."""

    def error(self, message: str) -> NoReturn:
        stderr.print(f"{self.prog}: error: {message} (see `{self.prog} --help`)", markup=False)
        raise SystemExit(EXIT_USAGE)


def _subparser(subs: argparse._SubParsersAction, name: str, help_: str, example: str) -> _Parser:
    return subs.add_parser(
        name,
        help=help_,
        description=help_,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _group(commands: argparse._SubParsersAction, name: str, help_: str) -> Any:
    """A command made of actions (`tickwise data synth`, ...): its subparsers."""
    group = commands.add_parser(name, help=help_)
    actions = group.add_subparsers(dest=f"{name}_command", metavar="ACTION", parser_class=_Parser)
    actions.required = True
    return actions


def _publisher_options(parser: argparse.ArgumentParser) -> None:
    """What every `tickwise feed` publisher takes: where, how many rows a message, heartbeat."""
    parser.add_argument(
        "--bind",
        default="tcp://127.0.0.1:5555",
        help="endpoint to publish on (tcp://127.0.0.1:5555; port * picks a free one)",
    )
    parser.add_argument(
        "--batch-rows", type=int, default=4_096, help="most rows in one message (4096)"
    )
    parser.add_argument(
        "--heartbeat-ms", type=float, default=100.0, help="heartbeat when quiet this long (100)"
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="wait this long for the first subscribers before starting; 0: start at once (30)",
    )
    parser.add_argument(
        "--packet-us", type=float, default=0.0, metavar="US",
        help="send rows in packets: each US microseconds of event time in "
        "one message once it has passed (0: each row as soon as it is due, in as few messages "
        "as the machine's pace allows)",
    )  # fmt: skip
    parser.add_argument(
        "--subscribers", type=int, default=1, metavar="N",
        help="how many subscribers to wait for (1; 2 for an exchange and an engine)",
    )  # fmt: skip


def _operator_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--operator", default=None, help="who gives the command, for the journal (your OS user)"
    )


def _control_options(parser: argparse.ArgumentParser) -> None:
    """Where a live session's control socket is, and how to reach it."""
    parser.add_argument(
        "--control", default="tcp://127.0.0.1:5560", help="its endpoint (tcp://127.0.0.1:5560)"
    )
    parser.add_argument(
        "--server-key", default=None, help="its CurveZMQ public key (Z85), when not on loopback"
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (5)")


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree (exposed for tests and documentation)."""
    parser = _Parser(
        prog="tickwise",
        description="Low-latency trading and decision engine: data, backtests, live sessions.",
    )
    parser.add_argument("--version", action="version", version=f"tickwise {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    data_cmds = _group(commands, "data", "make, inspect and import market-data history")

    synth = _subparser(
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

    inspect = _subparser(
        data_cmds,
        "inspect",
        "schema, rows, instruments, time range and validation verdict",
        "tickwise data inspect data/quotes.parquet",
    )
    inspect.add_argument("path", type=Path, help="a .parquet file or a hive directory")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of tables")
    inspect.set_defaults(run=_cmd_inspect)

    imp = _subparser(
        data_cmds,
        "import",
        "validated import of CSV (or foreign Parquet) history",
        "tickwise data import ticks.csv --kind quotes --tick-size 0.01 --out data/ticks.parquet",
    )
    imp.add_argument("source", type=Path, help="CSV file (header row) or Parquet file")
    imp.add_argument("--kind", choices=KINDS, required=True, help="record kind of the rows")
    imp.add_argument(
        "--instruments",
        type=Path,
        default=None,
        metavar="CSV",
        help="instrument table: symbol,tick_size,lot_size[,id]",
    )
    imp.add_argument("--tick-size", type=float, default=0.01, help="default tick size (0.01)")
    imp.add_argument("--lot-size", type=float, default=1.0, help="default lot size (1)")
    imp.add_argument("--partition", action="store_true", help="write a hive directory")
    imp.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    imp.add_argument("--out", type=Path, required=True, help="output .parquet file or directory")
    imp.set_defaults(run=_cmd_import)

    backtest = _subparser(
        commands, "backtest", "deterministic replay of a strategy over Parquet history",
        "tickwise backtest --strategy mean_reversion --data data/quotes.parquet "
        "--param window=200 --out results/mr",
    )  # fmt: skip
    backtest.add_argument(
        "--strategy", required=True, help="registered name, path/to/file.py:Class or module:Class"
    )
    backtest.add_argument("--data", type=Path, required=True, help="Parquet file or hive folder")
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
    backtest.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    backtest.add_argument("--out", type=Path, required=True, help="result folder to write")
    backtest.set_defaults(run=_cmd_backtest)

    feed_cmds = _group(commands, "feed", "publish market data over ZeroMQ")
    replay = _subparser(
        feed_cmds, "replay", "publish a Parquet history over ZeroMQ in event time",
        "tickwise feed replay data/quotes.parquet --bind tcp://127.0.0.1:5555 --speed 10",
    )  # fmt: skip
    replay.add_argument("path", type=Path, help="a .parquet file or a hive directory")
    replay.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        metavar="X|max",
        help="times real time (a subscriber that lags loses messages, as from a live feed), "
        "or max: as fast as the subscribers take every message (1)",
    )
    _publisher_options(replay)
    replay.set_defaults(run=_cmd_feed_replay)

    fsynth = _subparser(
        feed_cmds, "synth", "publish the synthetic market live over ZeroMQ, in real time",
        "tickwise feed synth --bind tcp://127.0.0.1:5555 --rate 5000 "
        "--inject crash:at=60,drop_pct=8",
    )  # fmt: skip
    fsynth.add_argument("--kind", choices=KINDS, default="quotes", help="record kind (quotes)")
    fsynth.add_argument("--rate", type=float, default=None, help="market events per second (1000)")
    fsynth.add_argument("--instruments", type=int, default=4, help="number of instruments (4)")
    fsynth.add_argument("--seed", type=int, default=0, help="random seed (0)")
    fsynth.add_argument(
        "--seconds", type=float, default=None, help="stop after this long (run until Ctrl-C)"
    )
    fsynth.add_argument(
        "--inject",
        action="append",
        default=[],
        metavar="EPISODE",
        help="abnormal episode, as for data synth (S: seconds from the start)",
    )
    _publisher_options(fsynth)
    fsynth.set_defaults(run=_cmd_feed_synth)

    live = _subparser(
        commands, "live", "a live session: feed in, strategy, risk, kill switch, orders out, "
        "journal, control",
        "tickwise live --strategy mean_reversion --feed tcp://127.0.0.1:5555 "
        "--gateway tcp://127.0.0.1:5570 --instruments data/quotes.parquet "
        "--journal sessions/today   (or: tickwise live --config session.toml)",
    )  # fmt: skip
    live.add_argument(
        "--config",
        type=Path,
        default=None,
        help="session file (TOML): [live] strategy, feed, instruments, gateway, control, "
        "journal; [params]; [backtest] fee/latency models; [risk]; [killswitch]. Flags given "
        "here override it",
    )
    live.add_argument("--strategy", help="registered name, path/to/file.py:Class or module:Class")
    live.add_argument("--feed", help="market data to subscribe to (tcp://127.0.0.1:5555)")
    live.add_argument(
        "--instruments",
        help="the instrument table: a tickwise Parquet history carrying it, or synth:N for "
        "the synthetic market's N instruments",
    )
    live.add_argument("--param", action="append", default=[], metavar="K=V",
                      help="strategy parameter, repeatable")  # fmt: skip
    live.add_argument(
        "--gateway",
        help="send orders to the paper exchange at this endpoint (`tickwise exchange`); "
        "without it, orders fill in the engine's own simulated exchange",
    )
    live.add_argument("--journal", help="journal folder (one session's: it is locked)")
    live.add_argument("--control", help="control socket (tcp://127.0.0.1:5560)")
    live.add_argument("--seconds", type=float, default=None, help="stop after this long")
    _operator_option(live)
    live.add_argument("--until-idle", type=float, default=None, metavar="SECONDS",
                      help="stop once the feed has sent nothing for this long")  # fmt: skip
    live.set_defaults(run=_cmd_live)

    exchange = _subparser(
        commands, "exchange", "the paper exchange: the backtester's matching, fees and latency "
        "as a process that takes orders over ZeroMQ",
        "tickwise exchange --bind tcp://127.0.0.1:5570 --feed tcp://127.0.0.1:5555 "
        "--instruments synth:3 --config fees.toml",
    )  # fmt: skip
    exchange.add_argument("--bind", default="tcp://127.0.0.1:5570",
                          help="order socket (tcp://127.0.0.1:5570; loopback only)")  # fmt: skip
    exchange.add_argument("--feed", default="tcp://127.0.0.1:5555", help="market data to match on")
    exchange.add_argument("--instruments", required=True,
                          help="instruments: a tickwise Parquet history, or synth:N")  # fmt: skip
    exchange.add_argument("--config", type=Path, default=None,
                          help="TOML: [backtest] fees and order latency/jitter/seed")  # fmt: skip
    exchange.add_argument("--heartbeat-ms", type=float, default=100.0,
                          help="heartbeat a client hearing nothing this long (100)")  # fmt: skip
    exchange.add_argument("--client-timeout-ms", type=float, default=1_000.0,
                          help="cancel a silent client's orders after this (1000)")  # fmt: skip
    exchange.add_argument("--seconds", type=float, default=None, help="stop after this long")
    exchange.set_defaults(run=_cmd_exchange)

    demo = _subparser(
        commands, "demo", "a synthetic feed and a live session on loopback, with a flash crash "
        "the kill switch must catch", "tickwise demo --seconds 20",
    )  # fmt: skip
    demo.add_argument("--seconds", type=float, default=20.0, help="how long to run (20)")
    demo.set_defaults(run=_cmd_demo)

    status = _subparser(
        commands, "status", "a live session's state, kill switch, positions and PnL",
        "tickwise status --control tcp://127.0.0.1:5560",
    )  # fmt: skip
    _control_options(status)
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.set_defaults(run=_cmd_status)

    kill = _subparser(
        commands, "kill", "halt a live session's automated trading now (a person's command)",
        'tickwise kill --reason "fat finger on SYN2"',
    )  # fmt: skip
    _control_options(kill)
    kill.add_argument("--reason", default=None,
                      help="why, in your words (journaled with the halt; 1,000 characters at "
                      "most)")  # fmt: skip
    _operator_option(kill)
    kill.add_argument("--instrument", default=None, help="halt only this symbol")
    kill.add_argument(
        "--reducing", action="store_true", help="go to REDUCING (orders that reduce pass)"
    )
    kill.set_defaults(run=_cmd_kill)

    resume = _subparser(
        commands, "resume", "let a halted session trade again (refused while its cause persists)",
        "tickwise resume --confirm",
    )  # fmt: skip
    _control_options(resume)
    resume.add_argument(
        "--confirm", action="store_true", help="required: automated orders will leave again"
    )
    resume.add_argument("--reason", default=None, help="why, in your words (journaled)")
    _operator_option(resume)
    resume.add_argument("--instrument", default=None, help="resume only this symbol")
    resume.add_argument("--reducing", action="store_true", help="resume to REDUCING, not ACTIVE")
    resume.set_defaults(run=_cmd_resume)

    journal_cmds = _group(commands, "journal", "read a live session's journal")
    jreplay = _subparser(
        journal_cmds, "replay", "rebuild positions from everything a journal committed",
        "tickwise journal replay sessions/today/journal",
    )  # fmt: skip
    jreplay.add_argument("folder", type=Path, help="the journal folder of a session")
    jreplay.add_argument("--json", action="store_true", help="print JSON instead of a table")
    jreplay.set_defaults(run=_cmd_journal_replay)
    jevents = _subparser(
        journal_cmds, "events", "the audit trail: every change of trading state with its cause, "
        "every person's command with who and why, bad data, the session's start and stop",
        "tickwise journal events sessions/today/journal --json",
    )  # fmt: skip
    jevents.add_argument("folder", type=Path, help="the journal folder of a session")
    jevents.add_argument("--json", action="store_true", help="print JSON lines, one per event")
    jevents.set_defaults(run=_cmd_journal_events)

    bench = _subparser(
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
    bench.add_argument("--schema", action="store_true",
                       help="print the JSON Schema a run is written in, and stop")  # fmt: skip
    bench.set_defaults(run=_cmd_bench)

    strategies = _subparser(
        commands, "strategies", "registered strategies with their parameters and defaults",
        "tickwise strategies --json",
    )  # fmt: skip
    strategies.add_argument("--json", action="store_true", help="print JSON instead of tables")
    strategies.set_defaults(run=_cmd_strategies)
    return parser


def _speed(text: str) -> float | None:
    if text == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or max") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"speed must be positive, got {text}")
    return value


def _cmd_feed_replay(args: argparse.Namespace) -> int:
    from tickwise.feeds.history import open_history

    history = open_history(args.path)
    return _publish(args, history.kind, history.rows, history.batches, args.speed)


def _cmd_feed_synth(args: argparse.Namespace) -> int:
    import time

    from tickwise.feeds.synth import Market, SynthConfig, parse_episode
    from tickwise.feeds.transport import rebased

    if args.seconds is not None and not args.seconds > 0:
        raise TickwiseError(f"--seconds must be positive, got {args.seconds}")
    config = SynthConfig(
        kind=args.kind, rows=2**62, instruments=args.instruments, seed=args.seed, rate=args.rate,
        episodes=tuple(parse_episode(e) for e in args.inject),
    )  # fmt: skip
    market = Market(config)
    # Compiled (or loaded) before anyone subscribes: on a cold cache that takes seconds, and
    # the first rows would leave already late, as if the feed had been silent.
    next(Market(dataclasses.replace(config, rows=1)).batches(), None)

    def batches(rows: int) -> Iterator[Any]:
        # The market's clock starts now: events carry today's times, episodes fall at their
        # seconds from the start.
        shift = time.time_ns() - market.start_ns
        until = None if args.seconds is None else market.start_ns + shift + int(args.seconds * 1e9)
        return rebased(_rechunk_rows(market.batches(), rows), shift, until)

    return _publish(args, config.kind, None, batches, 1.0)


def _rechunk_rows(batches: Iterator[Any], rows: int) -> Iterator[Any]:
    for batch in batches:
        for start in range(0, batch.num_rows, rows):
            yield batch.slice(start, rows)


def _publish(
    args: argparse.Namespace,
    kind: str,
    rows: int | None,
    batches: Callable[[int], Iterator[Any]],
    speed: float | None,
) -> int:
    """Serve `batches(batch_rows)` on args.bind until done, Ctrl-C or SIGTERM; summary."""
    import signal
    import time

    from tickwise.feeds.transport import Publisher, replay

    if args.batch_rows < 1:
        raise TickwiseError(f"--batch-rows must be at least 1, got {args.batch_rows}")
    if not 0 <= args.packet_us <= 60e6:
        raise TickwiseError(f"--packet-us must be between 0 and 60,000,000, got {args.packet_us}")
    if args.packet_us and speed is None:
        raise TickwiseError("--packet-us paces rows in event time: it needs a --speed, not max")
    packet_ns = max(1, round(args.packet_us * 1e3)) if args.packet_us else 0  # (never 0 if asked)
    # At max speed the replay waits for its subscribers rather than drop what they lag.
    nodrop = speed is None
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as on Ctrl-C
    with Publisher(args.bind, heartbeat_ms=args.heartbeat_ms, nodrop=nodrop) as publisher:
        # The endpoint first, on a line of its own: a script that asked for port * reads it.
        print(f"publishing {kind} on {publisher.endpoint}", flush=True)
        if args.subscribers < 1:
            raise TickwiseError(f"--subscribers must be at least 1, got {args.subscribers}")
        if args.wait > 0 and not publisher.wait_for_subscriber(args.wait, args.subscribers):
            raise TickwiseError(
                f"fewer than {args.subscribers} subscriber(s) on {publisher.endpoint} "
                f"within {args.wait:g} s"
            )
        began = time.perf_counter()
        stopped = ""
        try:
            with progress(f"feed {kind}", rows) as advance:
                replay(publisher, kind, batches(args.batch_rows), speed, advance, packet_ns)
        except KeyboardInterrupt:
            stopped = ", stopped by a signal"
        publisher.heartbeat()  # the last sequence number, for whoever missed the end
        wall = time.perf_counter() - began
    pace = "max" if speed is None else f"{speed:g}x real time"
    if packet_ns:
        pace += f" in packets of {args.packet_us:g} µs"
    stdout.print(
        f"published {publisher.rows:,} rows in {publisher.batches:,} messages "
        f"(+{publisher.heartbeats:,} heartbeats) at {pace}{stopped}: {wall:.2f} s wall clock, "
        f"{fmt_rate(publisher.rows, wall, 'rows')}",
        markup=False,
    )
    return 0


def _instrument_table(text: str) -> Any:
    from tickwise.feeds.history import open_history
    from tickwise.feeds.synth import make_instruments

    if text.startswith("synth:"):
        count = text.removeprefix("synth:")
        if not count.isdigit() or not 1 <= int(count) <= 10_000:
            raise TickwiseError(f"--instruments {text!r}: synth:N takes a count in 1..10000")
        return make_instruments(int(count))
    return open_history(text).instruments


_LIVE_KEYS = {"strategy", "feed", "instruments", "gateway", "control", "journal", "seconds"}
_LIVE_DEFAULTS = {"feed": "tcp://127.0.0.1:5555", "control": "tcp://127.0.0.1:5560"}


def _session_settings(args: argparse.Namespace) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """The session file's [live] table (if any) overlaid with the flags given."""
    import tomllib

    from tickwise.backtest.replay import BacktestConfig, load_config

    if args.config is None:
        config, params, table = BacktestConfig(), {}, {}
    else:
        config, params = load_config(args.config)
        table = tomllib.loads(args.config.read_text()).get("live", {})
        unknown = sorted(set(table) - _LIVE_KEYS)
        if unknown:
            raise TickwiseError(
                f"{args.config}: unknown [live] keys {unknown}; "
                f"allowed: {', '.join(sorted(_LIVE_KEYS))}"
            )
    settings = {**_LIVE_DEFAULTS, **table}
    for key in _LIVE_KEYS:
        flag = getattr(args, key, None)
        if flag is not None:
            settings[key] = flag
    missing = [k for k in ("strategy", "instruments", "journal") if k not in settings]
    if missing:
        raise TickwiseError(
            f"a live session needs {', '.join('--' + k for k in missing)} "
            "(or the same keys in the [live] table of --config)"
        )
    seconds = settings.get("seconds")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int | float)):
        raise TickwiseError(f"[live] seconds must be a number, got {seconds!r}")
    for key in _LIVE_KEYS - {"seconds"}:
        if key in settings and not isinstance(settings[key], str | Path):
            raise TickwiseError(f"[live] {key} must be a string, got {settings[key]!r}")
    if not str(settings["journal"]).strip():
        raise TickwiseError("--journal needs a folder (an empty name would be the current one)")
    params |= _parse_params(args.param)
    return config, params, settings


def _cmd_live(args: argparse.Namespace) -> int:
    import signal

    from .live import run_live

    config, params, settings = _session_settings(args)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as on Ctrl-C
    gateway = settings.get("gateway")

    def ready(endpoint: str) -> None:
        where = f"orders to {gateway}" if gateway else "orders filled in process"
        print(f"live: {settings['strategy']} on {settings['feed']}, {where}, "
              f"control on {endpoint}", flush=True)  # fmt: skip

    summary = run_live(
        str(settings["strategy"]), str(settings["feed"]),
        _instrument_table(str(settings["instruments"])), params, config,
        journal_dir=Path(settings["journal"]), control=str(settings["control"]), gateway=gateway,
        seconds=settings.get("seconds"), until_idle_s=args.until_idle, on_ready=ready,
        operator=_operator(args),
    )  # fmt: skip
    lat = summary.latency_us
    rows = [
        ("feed messages / events", f"{summary.batches:,} / {summary.events:,}"),
        ("orders / fills / rejects",
         f"{summary.orders:,} / {summary.fills:,} / {summary.rejects:,}"),
        ("PnL (price units, after fees)", f"{summary.pnl:,.2f}"),
        ("kill switch", _state_line(summary.status)),
        ("resting orders cancelled on stop", f"{summary.cancelled_on_stop:,}"),
        ("feed: heartbeats / gaps / malformed messages",
         f"{summary.heartbeats:,} / {summary.gaps:,} / {sum(summary.malformed.values()):,}"),
        ("rows dropped at the boundary, by reason", _counts(summary.bad_rows)),
        ("rows of kinds the strategy does not take", _counts(summary.ignored)),
        ("feed send -> messages journaled, per message (wall clock, µs)", _p50_p99(lat)),
    ]  # fmt: skip
    if gateway:
        rows += [
            ("feed send -> orders sent, per turn with orders (wall clock, µs)",
             _p50_p99(summary.tick_to_order_us)),
            ("request -> exchange reply, round trip (wall clock, µs)",
             _p50_p99(summary.round_trip_us)),
            ("orders the exchange had not confirmed gone at the end", f"{summary.left_open:,}"),
        ]  # fmt: skip
    rows.append(("wall clock", f"{summary.wall_s:.1f} s"))
    _print_measures(f"live session, stopped by {summary.stopped_by}", rows)
    if summary.journal_failure is not None:
        raise TickwiseError(
            f"the journal in {settings['journal']} was lost ({summary.journal_failure}); the "
            f"session halted and stopped; not journaled: {_counts(summary.not_journaled)}"
        )
    stdout.print(f"journal in {settings['journal']}", markup=False)
    return 0


def _money(value: float | str) -> str:
    """A PnL as people read it (a figure that is not a number comes as text: "-inf")."""
    return value if isinstance(value, str) else f"{value:,.2f}"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in counts.items() if v) or "none"


def _state_line(status: dict[str, Any]) -> str:
    """`HALTED by reject_rate (SYN2); SYN1 reducing by manual`: the state of the session and of
    each instrument not active, each with the cause that holds it now."""
    if not status:
        return "-"
    parts = []
    if status["state"] != "active":
        where = f" ({status['halt_instrument']})" if status.get("halt_instrument") else ""
        parts.append(f"{status['state'].upper()} by {status['halt_reason']}{where}")
    for symbol, inst in status.get("instruments", {}).items():
        parts.append(f"{symbol} {inst['state']} by {inst['trigger']}")
    return "; ".join(parts) or "ACTIVE, not tripped"


def _p50_p99(percentiles: dict[str, float]) -> str:
    if not percentiles:
        return "-"
    return f"p50 {percentiles['p50']:,.0f}  p99 {percentiles['p99']:,.0f}"


def _cmd_exchange(args: argparse.Namespace) -> int:
    import signal

    from tickwise.backtest.replay import BacktestConfig, load_config

    from .exchange import PaperExchange, run_exchange
    from .live import stop_on_signals

    if args.seconds is not None and not args.seconds > 0:
        raise TickwiseError(f"--seconds must be positive, got {args.seconds}")
    config = BacktestConfig() if args.config is None else load_config(args.config)[0]
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    stop: list[str] = []
    with PaperExchange(
        args.bind, args.feed, _instrument_table(args.instruments), config,
        heartbeat_ms=args.heartbeat_ms, client_timeout_ms=args.client_timeout_ms,
    ) as exchange, stop_on_signals(stop):  # fmt: skip
        print(f"paper exchange (market from {args.feed}) on {exchange.endpoint}", flush=True)
        summary = run_exchange(exchange, args.seconds, stop)
        resting = exchange.open_orders()
    _print_measures(f"paper exchange, stopped by {stop[0] if stop else 'its time'}", (
        ("clients", f"{summary.clients:,}"),
        ("requests / orders accepted / rejected / cancels",
         f"{summary.requests:,} / {summary.orders:,} / {summary.rejects:,} / {summary.cancels:,}"),
        ("fills", f"{summary.fills:,}"),
        ("orders cancelled on a client's disconnect", f"{summary.cancelled_on_disconnect:,}"),
        ("market events matched against", f"{summary.market_events:,}"),
        ("malformed messages dropped", f"{summary.malformed:,}"),
        ("market rows dropped at the boundary", f"{sum(summary.bad_rows.values()):,}"),
        *((f"  of which {reason}", f"{count:,}") for reason, count in summary.bad_rows.items()),
        ("orders resting at the end", f"{resting:,}"),
    ))  # fmt: skip
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    last = run_demo(args.seconds)
    if not last:
        raise TickwiseError("the demo's live session never answered its control socket")
    trip = last.get("halt_reason")
    stdout.print()
    stdout.print(
        f"demo over: {last['events']:,} events in {last['batches']:,} batches, "
        f"PnL {last['pnl']:,.2f}; kill switch: "
        + (f"tripped by {trip}, trading {last['state']}" if trip else "not tripped"),
        markup=False,
    )
    return 0


def _print_measures(title: str, rows: Sequence[tuple[str, str]]) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(*plain(name, value))
    stdout.print(table)


def _control(args: argparse.Namespace, payload: dict[str, Any]) -> dict[str, Any]:
    from .control import request

    key = args.server_key.encode() if args.server_key else None
    reply = request(args.control, payload, timeout_s=args.timeout, server_key=key)
    if not reply.get("ok"):
        raise TickwiseError(f"the session refused: {reply.get('error')}")
    return reply


def _print_status(reply: dict[str, Any]) -> None:
    table = Table(title="live session", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value")
    reasons = reply.get("reasons") or {}
    rows = [
        ("state", _state_line(reply)),
        (
            "a person's halt, because",
            "; ".join(f"{scope or 'session'}: {why}" for scope, why in reasons.items()) or "-",
        ),
        ("resume blocked by", "; ".join(reply["resume_blocked_by"] or []) or "nothing"),
        ("PnL (price units)", _money(reply["pnl"])),
        ("events processed", f"{reply['events']:,}"),
        ("orders sent / fills", f"{reply.get('orders_sent', 0):,} / {reply.get('fills', 0):,}"),
        ("orders per second (last 5 s)", f"{reply.get('orders_per_s', 0.0):,.1f}"),
        ("open orders", f"{reply['open_orders']:,}"),
        ("feed send -> message journaled (µs)", _p50_p99(reply.get("latency_us") or {})),
        ("rows dropped at the boundary", _counts(reply.get("bad_rows") or {})),
    ]
    if "gateway" in reply:
        gw = reply["gateway"]
        rows += [
            ("feed send -> orders out (µs)", _p50_p99(reply.get("tick_to_order_us") or {})),
            ("request -> exchange reply (µs)", _p50_p99(reply.get("round_trip_us") or {})),
            ("exchange", f"{gw['endpoint']}, last heard {gw['silent_ms']:,.0f} ms ago, "
                         f"{gw['in_flight']} request(s) unanswered"),
        ]  # fmt: skip
    rows += [(f"position {sym}", f"{qty:,.4g}") for sym, qty in reply["positions"].items()]
    rows += [(f"{fmt_ns(h['ts'], 3)}", f"{h['scope']}: {h['from']} -> {h['to']} by {h['trigger']}")
             for h in reply.get("history", [])[-5:]]  # fmt: skip
    for name, value in rows:
        table.add_row(*plain(name, value))
    stdout.print(table)


def _cmd_status(args: argparse.Namespace) -> int:
    reply = _control(args, {"cmd": "status"})
    if args.json:
        print(json.dumps(reply, indent=2))
    else:
        _print_status(reply)
    return 0


def _cmd_kill(args: argparse.Namespace) -> int:
    payload = {"cmd": "kill", "reason": args.reason, "instrument": args.instrument,
               "state": "reducing" if args.reducing else "halted",
               "operator": _operator(args)}  # fmt: skip
    _print_status(_control(args, payload))
    return 0


def _cmd_resume(args: argparse.Namespace) -> int:
    if not args.confirm:
        raise TickwiseError("resume lets automated orders leave again: add --confirm")
    payload = {"cmd": "resume", "confirm": True, "instrument": args.instrument,
               "state": "reducing" if args.reducing else "active", "reason": args.reason,
               "operator": _operator(args)}  # fmt: skip
    _print_status(_control(args, payload))
    return 0


def _operator(args: argparse.Namespace) -> str:
    from .control import check_operator, default_operator

    return check_operator(args.operator) if args.operator is not None else default_operator()


def _cmd_journal_events(args: argparse.Namespace) -> int:
    from .journal import journal_events

    events = journal_events(args.folder)
    if args.json:
        for event in events:
            print(json.dumps(event, sort_keys=True))
        return 0
    table = Table(title=f"{args.folder}: {len(events):,} events", title_justify="left")
    for column in ("time (UTC)", "what", "detail"):
        table.add_column(column)
    for event in events:
        table.add_row(*plain(fmt_ns(event["ts"]), event["what"], _event_detail(event)))
    stdout.print(table)
    return 0


def _event_detail(event: dict[str, Any]) -> str:
    """One line a person reads: a change of state as `scope: from -> to by trigger`, anything
    else as its fields."""
    d = event["detail"]
    if event["what"] == "transition":
        by = d["trigger"] + (f" ({d['instrument']})" if d.get("instrument") else "")
        values = f", value {d['value']:,.6g}, limit {d['limit']:,.6g}" if d.get("limit") else ""
        return f"{d['scope']}: {d['from']} -> {d['to']} by {by}{values}"
    return ", ".join(f"{k}={v}" for k, v in d.items())


def _cmd_journal_replay(args: argparse.Namespace) -> int:
    from .journal import replay_journal

    summary = replay_journal(args.folder).summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    stdout.print(
        f"{args.folder}: {summary['segments']} segment(s), {summary['commits']:,} commits, "
        f"{summary['orders']:,} orders, {summary['rejects']:,} rejects, "
        f"{summary['fills']:,} fills, {summary['events']:,} events",
        markup=False,
    )
    table = Table(title="positions rebuilt from the fills", title_justify="left")
    for column in ("instrument", "position", "avg price", "realised PnL", "fees", "traded"):
        table.add_column(column, justify="left" if column == "instrument" else "right")
    for symbol, p in summary["positions"].items():
        table.add_row(*plain(symbol, f"{p['qty']:,.4g}", f"{p['avg_px']:,.6g}",
                             f"{p['realized']:,.2f}", f"{p['fees']:,.2f}",
                             f"{p['traded']:,.4g}"))  # fmt: skip
    stdout.print(table)
    return 0


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


def _cmd_import(args: argparse.Namespace) -> int:
    from tickwise.feeds.importer import import_history

    with progress(f"import {args.source.name}", None):
        result = import_history(
            args.source,
            args.kind,
            args.out,
            instruments_file=args.instruments,
            tick_size=args.tick_size,
            lot_size=args.lot_size,
            partition=args.partition,
            overwrite=args.overwrite,
        )
    stdout.print(
        f"imported {result.rows:,} {result.kind} rows for {len(result.instruments)} instruments "
        f"to {result.path}: {result.wall_s:.2f} s wall clock",
        markup=False,
    )
    return 0


def _parse_params(items: list[str]) -> dict[str, str]:
    params = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise TickwiseError(f"--param {item!r} must look like name=value")
        params[key.strip()] = value
    return params


def _halt_line(summary: dict) -> str:
    halt = summary["halt"]
    if not halt["halted"]:
        return "not tripped"
    where = f" on {halt['halt_instrument']}" if halt["halt_instrument"] else ""
    when = dt.datetime.fromtimestamp(halt["halt_ts"] / 1e9, tz=dt.UTC).strftime("%H:%M:%S.%f")
    return (
        f"HALTED by {halt['halt_reason']}{where} at {when} UTC event time "
        f"({halt['halt_value']:.4g} past {halt['halt_limit']:.4g})"
    )


def _cmd_backtest(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from tickwise.backtest.replay import BacktestConfig, load_config, run_backtest
    from tickwise.backtest.results import write_results
    from tickwise.feeds.history import open_history
    from tickwise.feeds.store import check_target

    check_target(args.out, args.overwrite)  # before any work: never lose a result
    config, params = (BacktestConfig(), {}) if args.config is None else load_config(args.config)
    if args.batch_size is not None:
        config = replace(config, batch_size=args.batch_size)
    params |= _parse_params(args.param)
    rows = open_history(args.data).rows
    with progress("replay", rows) as advance:
        bt = run_backtest(args.strategy, args.data, params, config, on_events=advance)
    summary = write_results(bt, args.out, overwrite=args.overwrite)
    rate = fmt_rate(summary["events"], summary["wall_s"], "events")
    _print_measures(f"[bold]{escape(summary['strategy'])}[/] on {escape(str(args.data))}", (
        ("events", f"{summary['events']:,}"),
        ("orders / fills / rejects",
         f"{summary['orders']:,} / {summary['fills']:,} / {summary['rejects']:,}"),
        ("round trips", f"{summary['trades']:,}"),
        ("PnL (price units, after fees)", f"{summary['pnl']:,.2f}"),
        ("fees", f"{summary['fees']:,.2f}"),
        ("Sharpe (annualised, PnL changes)", f"{summary['sharpe']:.2f}"),
        ("max drawdown", f"{summary['max_drawdown']:,.2f}"),
        ("kill switch", _halt_line(summary)),
        ("run_hash", summary["run_hash"][:16]),
        ("replay (wall clock: read, check, loop)", f"{rate} in {summary['wall_s']:.2f} s"),
        ("of which compiling/loading the loop", f"{summary['warmup_s']:.2f} s"),
    ))  # fmt: skip
    stdout.print(f"results in {args.out}", markup=False)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from tickwise.benchmarks import harness
    from tickwise.benchmarks.cases import SUITE
    from tickwise.benchmarks.cases import run as run_suites
    from tickwise.feeds.store import check_target, make_folder, publish, temporary_path

    if args.schema:
        print(json.dumps(harness.SCHEMA, indent=2))
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
            case.name, case.unit, " / ".join(_figure(case.ours[k]) for k in stats),
            " / ".join(_figure(case.floor[k]) for k in stats),
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


def _figure(value: float) -> str:
    """A figure for a table: 3 significant digits (whole numbers from 100), M or k for
    large ones (rates)."""
    value, suffix = (value / 1e6, " M") if value >= 1e6 else (value / 1e3, " k") \
        if value >= 1e4 else (value, "")  # fmt: skip
    return (f"{value:,.0f}" if value >= 100 else f"{value:.3g}") + suffix


def _cmd_strategies(args: argparse.Namespace) -> int:
    from .strategy import registered

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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tickwise` console script."""
    # A command's objects live until it exits, and its per-event work is compiled: the
    # cyclic collector would only re-scan Numba's and pyarrow's object graphs, again and
    # again (0.3 s of a 2.3 s backtest). Reference counting still frees everything else.
    gc.disable()
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except TickwiseError as exc:
        stderr.print(f"tickwise: error: {exc}", markup=False)
        return EXIT_ERROR
    except OSError as exc:  # the file system said no: permissions, a full disk, a bad path
        stderr.print(f"tickwise: error: {exc}", markup=False)
        return EXIT_ERROR
    except KeyboardInterrupt:
        stderr.print("tickwise: interrupted; nothing half-written was kept", markup=False)
        return EXIT_INTERRUPTED


def run() -> NoReturn:
    """The console script: `main`, then out without the interpreter's teardown.

    Teardown would free Numba's and LLVM's object graphs and every buffer one by one
    (0.17-0.23 s after a 2 s backtest, measured from the last exit handler), after every
    result is already on disk: streams are flushed and exit handlers run, then the
    process ends with `main`'s status.
    """
    try:
        code = main()
    except SystemExit as exc:  # argparse's errors and --help; Python's own meaning of codes
        code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
        if not isinstance(exc.code, int | None):
            print(exc.code, file=sys.stderr)
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
