"""What every command shares: the parser that errs in one line, the command groups, the
options of the control socket, and the way figures are printed."""

from __future__ import annotations

import argparse
import datetime as dt
import re
from collections.abc import Sequence
from typing import Any, NoReturn

from rich.table import Table

from tickwise.engine.console import plain, stderr, stdout
from tickwise.engine.errors import TickwiseError

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that points at --help."""

    def error(self, message: str) -> NoReturn:
        stderr.print(f"{self.prog}: error: {message} (see `{self.prog} --help`)", markup=False)
        raise SystemExit(EXIT_USAGE)


def subparser(subs: argparse._SubParsersAction, name: str, help_: str, example: str) -> Parser:
    return subs.add_parser(
        name,
        help=help_,
        description=help_,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def group(commands: argparse._SubParsersAction, name: str, help_: str) -> Any:
    """A command made of actions (`tickwise data synth`, ...): its subparsers."""
    group = commands.add_parser(name, help=help_)
    actions = group.add_subparsers(dest=f"{name}_command", metavar="ACTION", parser_class=Parser)
    actions.required = True
    return actions


def operator_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--operator", default=None, help="who gives the command, for the journal (your OS user)"
    )


def control_options(parser: argparse.ArgumentParser) -> None:
    """Where a live session's control socket is, and how to reach it."""
    parser.add_argument(
        "--control", default="tcp://127.0.0.1:5560", help="its endpoint (tcp://127.0.0.1:5560)"
    )
    parser.add_argument(
        "--server-key", default=None, help="its CurveZMQ public key (Z85), when not on loopback"
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (5)")


def event_time(text: str) -> int:
    """A point in event time from the command line: nanoseconds since the epoch, or an ISO
    8601 date or date and time (without a zone: UTC)."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        if not -(2**63) <= int(text) < 2**63:
            raise argparse.ArgumentTypeError(f"{text} ns does not fit 64 bits")
        return int(text)
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither nanoseconds since the epoch nor an ISO 8601 time "
            "(2024-01-02, 2024-01-02T14:30:00, 2024-01-02T14:30:00+01:00)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    delta = when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    ns = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
    if not -(2**63) <= ns < 2**63:
        raise argparse.ArgumentTypeError(f"{text!r} is beyond what nanoseconds since the epoch "
                                         "hold (1677-09-21 to 2262-04-11)")  # fmt: skip
    return ns


def parse_params(items: list[str]) -> dict[str, str]:
    params = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise TickwiseError(f"--param {item!r} must look like name=value")
        params[key.strip()] = value
    return params


def print_measures(title: str, rows: Sequence[tuple[str, str]]) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(*plain(name, value))
    stdout.print(table)


def counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in counts.items() if v) or "none"


def money(value: float | str) -> str:
    """A PnL as people read it (a figure that is not a number comes as text: "-inf")."""
    return value if isinstance(value, str) else f"{value:,.2f}"


def p50_p99(percentiles: dict[str, float]) -> str:
    if not percentiles:
        return "-"
    return f"p50 {percentiles['p50']:,.0f}  p99 {percentiles['p99']:,.0f}"


def state_line(status: dict[str, Any]) -> str:
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


def operator(args: argparse.Namespace) -> str:
    from tickwise.engine.live.control import check_operator, default_operator

    return check_operator(args.operator) if args.operator is not None else default_operator()


def instrument_table(text: str) -> Any:
    from tickwise.feeds.history import open_history
    from tickwise.feeds.synth import make_instruments

    if text.startswith("synth:"):
        count = text.removeprefix("synth:")
        if not count.isdigit() or not 1 <= int(count) <= 10_000:
            raise TickwiseError(f"--instruments {text!r}: synth:N takes a count in 1..10000")
        return make_instruments(int(count))
    return open_history(text).instruments


# Control characters (an escape sequence would rewrite the terminal) in what a reply says.
CONTROL_CHARS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` from a reply with its control characters shown as escapes, never sent to the
    terminal as they are (a socket that answers may not be a tickwise session)."""
    return CONTROL_CHARS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def scrubbed(value: Any) -> Any:
    """`value` with every string in it `printable` (keys too)."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {scrubbed(k): scrubbed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrubbed(v) for v in value]
    return value
