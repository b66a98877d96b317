"""`tickwise top`: a full-screen live view of one running session, with keys to kill, resume
and flatten it.

The view asks the session's control socket for its status a few times a second, from a
worker thread (a session that does not answer never freezes the screen, it only turns the
header red), and draws what it hears: state and kill-switch cause, instruments, working
orders, fills, rates, latency sparklines, feed and exchange health, the event log. Each key
sends the same control request as the command line (`tickwise kill`, `resume --confirm`,
`flatten --confirm`), signed with the operator's name. A key the session does not know yet
shows its refusal; a figure it does not send shows as "-".

Textual is imported only when `top` runs (`tickwise.cli.top_view`), so every other command
starts without it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.table import Table
from rich.text import Text

from tickwise.cli.common import control_options, operator, operator_option, scrubbed, subparser
from tickwise.engine.errors import TickwiseError

REFRESH_S = 0.25
REFRESH_RANGE_S = (0.05, 60.0)
SPARK_POINTS = 240  # latency figures kept per series: a minute at the default refresh
SHOWN_ORDERS = 50
SHOWN_FILLS = 20
SHOWN_TRANSITIONS = 8
# The latency series a session may send (percentiles in µs), with the name people read.
LATENCIES = (
    ("latency_us", "feed → journal"),
    ("tick_to_order_us", "tick → order"),
    ("round_trip_us", "order round trip"),
    ("batch_us", "batch"),
)
PANEL_TITLES = {
    "instruments": "instruments (position in units; prices, PnL and fees in price units)",
    "orders": "working orders",
    "fills": "recent fills (time UTC; price and fee in price units)",
    "activity": "activity",
    "latency": "latency, wall clock: p50 and p99 (µs)",
    "health": "feed and exchange",
    "events": "event log (time UTC)",
    "transitions": "changes of state (time UTC)",
}
STATE_STYLES = {"active": "bold green", "reducing": "bold yellow", "halted": "bold white on red"}
LEVEL_STYLES = {"info": "", "warning": "yellow", "critical": "bold red"}
SIDE_STYLES = {"buy": "green", "sell": "red"}


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add `tickwise top` to the command tree."""
    top = subparser(
        commands, "top", "the live view of a session: state, positions, orders, fills, "
        "latency, events; keys to kill, resume and flatten it",
        "tickwise top --control tcp://127.0.0.1:5560 --refresh 0.5",
    )  # fmt: skip
    control_options(top)
    operator_option(top)
    top.add_argument("--refresh", type=float, default=REFRESH_S, metavar="SECONDS",
                     help=f"ask the session for its status this often ({REFRESH_S:g})")  # fmt: skip
    top.set_defaults(run=_cmd_top)


def _cmd_top(args: argparse.Namespace) -> int:
    low, high = REFRESH_RANGE_S
    if not low <= args.refresh <= high:
        raise TickwiseError(f"--refresh must be in {low:g}..{high:g} seconds, got {args.refresh:g}")
    if not args.timeout > 0:
        raise TickwiseError(f"--timeout must be positive, got {args.timeout:g}")
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise TickwiseError(
            "tickwise top is a full-screen view: run it in a terminal (for one status as a "
            "table or JSON: tickwise status [--json])"
        )
    link = Link(args.control, args.server_key.encode() if args.server_key else None, args.timeout)
    top_app(link, operator(args), args.refresh).run()
    return 0


@dataclass(frozen=True)
class Link:
    """Where the session's control socket is, and how to reach it."""

    endpoint: str
    server_key: bytes | None = None
    timeout_s: float = 5.0


def top_app(link: Link, operator: str, refresh_s: float = REFRESH_S,
            stop_when: Callable[[], bool] | None = None) -> Any:  # fmt: skip
    """The Textual app of `tickwise top` (not yet running: `.run()`, or `.run_test()` in a
    test). `operator` signs every command, as `--operator` does on the command line. With
    `stop_when`, the view closes itself once that says so (asked at each refresh: `tickwise
    demo --top` closes it when its session ends); `.seen.status` is the last status heard."""
    from tickwise.cli.top_view import TopApp  # (Textual loads here, for `top` only)

    return TopApp(link, operator, refresh_s, stop_when)


# --- what the view knows: textual-free, so the command line loads none of it ---------------


@dataclass
class Seen:
    """What the view has heard: the latest status, when, since when the session has not
    answered (and why), and the history of each latency series' p50 and p99."""

    status: dict[str, Any] = field(default_factory=dict)
    heard_at: dt.datetime | None = None
    silent_since: dt.datetime | None = None
    error: str | None = None
    latency: dict[str, tuple[deque[float], deque[float]]] = field(
        default_factory=lambda: {
            key: (deque(maxlen=SPARK_POINTS), deque(maxlen=SPARK_POINTS)) for key, _ in LATENCIES
        }
    )

    def heard(self, status: dict[str, Any]) -> None:
        # (control characters in what a socket says are shown as escapes, never sent to the
        # terminal: it may not be a tickwise session)
        self.status, self.heard_at = scrubbed(status), _now()
        self.silent_since = self.error = None
        for key, (p50s, p99s) in self.latency.items():
            figures = _dict(status.get(key))
            for name, series in (("p50", p50s), ("p99", p99s)):
                value = figures.get(name)
                if _is_number(value):
                    series.append(float(value))

    def missed(self, error: str) -> None:
        self.error = error
        if self.silent_since is None:
            self.silent_since = _now()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def fig(value: Any, decimals: int = 2, unit: str = "") -> str:
    """A figure as people read it: thousands separated, `decimals` at most (trailing zeros
    dropped), its unit; "-" for a missing one, and as sent for one JSON cannot carry as a
    number ("inf", "nan")."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not _is_number(value):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    text = f"{value:,.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text} {unit}" if unit else text


def money(value: Any) -> str:
    """PnL and fees: always two decimals."""
    return f"{value:,.2f}" if _is_number(value) and math.isfinite(value) else fig(value)


def clock(ts: Any, digits: int = 3) -> str:
    """A time of day in UTC from what a session sends: epoch nanoseconds, or ISO 8601 text."""
    when: dt.datetime | None = None
    if _is_number(ts) and math.isfinite(ts):
        seconds = ts / 1e9 if abs(ts) >= 1e14 else ts  # (ns since the epoch, else seconds)
        when = dt.datetime.fromtimestamp(seconds, dt.UTC)
    elif isinstance(ts, str):
        try:
            when = dt.datetime.fromisoformat(ts)
        except ValueError:
            return ts
        when = when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)
    elif isinstance(ts, dt.datetime):
        when = ts
    if when is None:
        return "-"
    text = f"{when:%H:%M:%S}"
    return text + f".{when.microsecond:06d}"[: digits + 1] if digits else text


def state_text(state: Any) -> Text:
    """A trading state, upper case and coloured (ACTIVE green, REDUCING yellow, HALTED red)."""
    if not isinstance(state, str):
        return Text("-")
    return Text(state.upper(), STATE_STYLES.get(state, "bold"))


def _duration(seconds: Any) -> str:
    if not _is_number(seconds) or not math.isfinite(seconds):
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def _params(params: Any) -> str:
    if not isinstance(params, dict) or not params:
        return "-"
    return ", ".join(f"{k}={v}" for k, v in params.items())


def header(seen: Seen, link: Link, operator: str, refresh_s: float) -> Text:
    """Who, what and how it stands: the session's strategy and state, the kill switch's
    cause, a person's reasons, what blocks a resume, and whether the session answers."""
    s = seen.status
    text = Text()
    text.append("tickwise top", "bold")
    text.append(f"  {link.endpoint}  operator ")
    text.append(operator, "bold")
    text.append(f"  strategy {fig(s.get('strategy'))} ({_params(s.get('params'))})")
    text.append(f"  up {_duration(s.get('uptime_s'))}\n")
    text.append("state ")
    text.append_text(state_text(s.get("state")) if s else Text("-"))
    reason = s.get("halt_reason")
    if reason:
        where = f" on {s['halt_instrument']}" if s.get("halt_instrument") else ""
        text.append(f"  kill switch: {reason}{where}", "red")
        value, limit = s.get("halt_value"), s.get("halt_limit")
        if value or limit:  # (a person's kill has neither)
            text.append(f", value {fig(value, 4)}, limit {fig(limit, 4)}", "red")
        if s.get("halt_ts") is not None:
            text.append(f", at {clock(s.get('halt_ts'))} UTC", "red")
    elif s:
        text.append("  kill switch: armed, not tripped")
    reasons = _dict(s.get("reasons"))
    text.append("\na person's halt: ")
    text.append("; ".join(f"{scope or 'session'}: {why}" for scope, why in reasons.items()) or "-")
    blocked = _list(s.get("resume_blocked_by"))
    text.append("   resume blocked by: ")
    text.append("; ".join(map(str, blocked)) or ("nothing" if s else "-"),
                "yellow" if blocked else "")  # fmt: skip
    text.append("\n")
    if seen.silent_since is not None:
        text.append(f"no answer from {link.endpoint} since {clock(seen.silent_since, 0)} UTC; "
                    f"asking again every {refresh_s:g} s", "bold red")  # fmt: skip
        if seen.heard_at is not None:
            text.append(f" (figures below as of {clock(seen.heard_at, 0)} UTC)", "red")
        text.append(f"\n{seen.error}", "red")
    elif seen.heard_at is not None:
        text.append(f"status as of {clock(seen.heard_at)} UTC, asked every {refresh_s:g} s",
                    "dim")  # fmt: skip
    else:
        text.append(f"asking {link.endpoint} for its status ...", "dim")
    return text


def _table(columns: Iterable[tuple[str, str]]) -> Table:
    table = Table(expand=True, box=None, pad_edge=False, header_style="bold")
    for name, justify in columns:
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    return table


_INSTRUMENT_COLUMNS = (
    ("symbol", "left"), ("state", "left"), ("trigger", "left"), ("position", "right"),
    ("avg px", "right"), ("mark", "right"), ("realized", "right"), ("unrealized", "right"),
    ("fees", "right"), ("PnL", "right"),
)  # fmt: skip


def instruments_table(s: dict[str, Any]) -> Table:
    """One row per instrument and a total: `by_instrument`, or (from a session that does not
    send it) the positions and the instruments not active."""
    table = _table(_INSTRUMENT_COLUMNS)
    rows = [row for row in _list(s.get("by_instrument")) if isinstance(row, dict)]
    if rows:
        for row in rows:
            table.add_row(
                Text(str(row.get("symbol", "-"))), state_text(row.get("state", "active")),
                Text(fig(row.get("trigger"))), fig(row.get("position"), 4),
                fig(row.get("avg_px"), 6), fig(row.get("mark"), 6), money(row.get("realized")),
                money(row.get("unrealized")), money(row.get("fees")), money(row.get("pnl")),
            )  # fmt: skip
        totals = [_total(rows, key) for key in ("realized", "unrealized", "fees", "pnl")]
        if totals[-1] is None:
            totals[-1] = s.get("pnl")
    else:
        positions, halted = _dict(s.get("positions")), _dict(s.get("instruments"))
        for symbol in sorted(set(positions) | set(halted)):
            inst = _dict(halted.get(symbol))
            state = _stricter(inst.get("state", "active"), s.get("state", "active"))
            table.add_row(Text(symbol), state_text(state),
                          Text(fig(inst.get("trigger"))), fig(positions.get(symbol), 4),
                          *["-"] * 6)  # fmt: skip
        totals = [None, None, None, s.get("pnl")]
    table.add_row(Text("total", "bold"), "", "", "", "", "",
                  *(Text(money(v), "bold") for v in totals), end_section=False)  # fmt: skip
    return table


def _stricter(a: Any, b: Any) -> Any:
    """The stricter of two trading states: what an instrument trades under is the stricter of
    its own and the session's."""
    order = ("active", "reducing", "halted")
    return max(a, b, key=lambda state: order.index(state) if state in order else -1)


def _total(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [row.get(key) for row in rows]
    if not values or not all(_is_number(v) for v in values):
        return None
    return float(sum(values))


def orders_table(s: dict[str, Any]) -> Table:
    """The orders resting at the exchange (or the engine's simulated one)."""
    orders = [o for o in _list(s.get("working_orders")) if isinstance(o, dict)]
    table = _table((
        ("id", "right"), ("symbol", "left"), ("side", "left"), ("price", "right"),
        ("qty", "right"), ("left", "right"), ("age", "right"), ("", "left"),
    ))  # fmt: skip
    for order in orders[:SHOWN_ORDERS]:
        side = str(order.get("side", "-"))
        table.add_row(
            _ident(order.get("id")), Text(str(order.get("symbol", "-"))),
            Text(side, SIDE_STYLES.get(side, "")), fig(order.get("price"), 6),
            fig(order.get("qty"), 4), fig(order.get("left"), 4),
            fig(order.get("age_ms"), 0, "ms"),
            Text("cancelling", "yellow") if order.get("cancelling") else "",
        )  # fmt: skip
    if len(orders) > SHOWN_ORDERS:
        table.caption = f"... and {len(orders) - SHOWN_ORDERS:,} more"
    elif "working_orders" not in s:
        table.caption = "- (this session does not list its orders)"
    return table


def _ident(value: Any) -> str:
    """An order id as the journal writes it (no thousands separators)."""
    return "-" if value is None else str(value)


def fills_table(s: dict[str, Any]) -> Table:
    """The latest fills, newest at the bottom."""
    fills = [f for f in _list(s.get("recent_fills")) if isinstance(f, dict)][-SHOWN_FILLS:]
    table = _table((
        ("time", "left"), ("symbol", "left"), ("side", "left"), ("price", "right"),
        ("qty", "right"), ("fee", "right"), ("liquidity", "left"), ("order", "right"),
    ))  # fmt: skip
    for f in fills:
        side = str(f.get("side", "-"))
        table.add_row(
            clock(f.get("ts")), Text(str(f.get("symbol", "-"))),
            Text(side, SIDE_STYLES.get(side, "")), fig(f.get("price"), 6), fig(f.get("qty"), 4),
            fig(f.get("fee"), 4), Text(fig(f.get("liquidity"))), _ident(f.get("order_id")),
        )  # fmt: skip
    if "recent_fills" not in s:
        table.caption = "- (this session does not list its fills)"
    return table


def _pairs(rows: Iterable[tuple[str, str | Text]]) -> Table:
    table = Table(show_header=False, box=None, expand=True, pad_edge=False)
    table.add_column("what", no_wrap=True)
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, value if isinstance(value, Text) else Text(value))
    return table


def activity(s: dict[str, Any]) -> Table:
    """How busy the session is: orders, fills, rejects, events."""
    return _pairs((
        ("orders per second (last 5 s)", fig(s.get("orders_per_s"), 1, "/s")),
        ("orders sent / fills", f"{fig(s.get('orders_sent'), 0)} / {fig(s.get('fills'), 0)}"),
        ("orders by status", _counts(s, "orders_by_status")),
        ("rejects by reason", _counts(s, "rejects_by_reason")),
        ("events / feed messages", f"{fig(s.get('events'), 0)} / {fig(s.get('batches'), 0)}"),
        ("PnL (price units, after fees)", money(s.get("pnl"))),
    ))  # fmt: skip


def _counts(s: dict[str, Any], key: str) -> str:
    """`name count, ...` of a dict of counts ("none" when all are 0, "-" when not sent)."""
    if key not in s:
        return "-"
    counts = _dict(s.get(key)).items()
    return ", ".join(f"{name} {fig(n, 0)}" for name, n in counts if n) or "none"


def latency_figures(s: dict[str, Any], key: str) -> tuple[str, str]:
    """The latest p50 and p99 of one latency series, in µs."""
    figures = _dict(s.get(key))
    return fig(figures.get("p50"), 0, "µs"), fig(figures.get("p99"), 0, "µs")


def health(s: dict[str, Any]) -> Table:
    """Whether market data and the exchange are heard, and how well."""
    feed = _dict(s.get("feed"))
    malformed = feed.get("malformed", s.get("malformed"))
    if isinstance(malformed, dict):
        malformed = sum(v for v in malformed.values() if _is_number(v))
    in_sequence = feed.get("in_sequence")
    rows: list[tuple[str, str | Text]] = [
        ("feed", fig(feed.get("endpoint"))),
        ("  last message", _ago(feed.get("silent_ms"))),
        ("  gaps / heartbeats / malformed",
         f"{fig(feed.get('gaps', s.get('feed_gaps')), 0)} / {fig(feed.get('heartbeats'), 0)} / "
         f"{fig(malformed, 0)}"),
        ("  in sequence", Text(fig(in_sequence), "red" if in_sequence is False else "")),
    ]  # fmt: skip
    gateway = _dict(s.get("gateway"))
    if not gateway:
        rows.append(("exchange", "none (fills in process)" if s else "-"))
    else:
        rows += [
            ("exchange", fig(gateway.get("endpoint"))),
            ("  last heard", _ago(gateway.get("silent_ms"))),
            ("  requests in flight", fig(gateway.get("in_flight"), 0)),
        ]
        shown = {"endpoint", "silent_ms", "in_flight"}
        rows += [(f"  {key.replace('_', ' ')}", fig(value, 2))
                 for key, value in gateway.items()
                 if key not in shown and not isinstance(value, dict | list)]  # fmt: skip
    return _pairs(rows)


def _ago(silent_ms: Any) -> str:
    return "-" if silent_ms is None else f"{fig(silent_ms, 0, 'ms')} ago"


def event_log(s: dict[str, Any], lines: int) -> Text:
    """The session's event log, its last `lines` entries, newest at the bottom, coloured by
    level."""
    if "events_log" not in s:
        return Text("- (this session sends no event log)", "dim")
    text = Text()  # (one line each, not wrapped (CSS): the newest stays in view)
    for event in [e for e in _list(s.get("events_log")) if isinstance(e, dict)][-lines:]:
        level = str(event.get("level", "info"))
        style = LEVEL_STYLES.get(level, "")
        text.append(f"{clock(event.get('ts'))} ", "dim")
        text.append(f"{level.upper():<8} ", style or "dim")
        text.append(f"{event.get('event', '-')}: ", style or "bold")
        text.append(f"{event.get('message', '')}\n", style)
    text.rstrip()
    return text or Text("no events yet", "dim")


def transitions(s: dict[str, Any]) -> Text:
    """The latest changes of trading state, newest at the bottom."""
    text = Text()
    for change in [h for h in _list(s.get("history")) if isinstance(h, dict)][-SHOWN_TRANSITIONS:]:
        text.append(f"{clock(change.get('ts'))} {change.get('scope', '-')}: ")
        text.append_text(state_text(change.get("from")))
        text.append(" → ")
        text.append_text(state_text(change.get("to")))
        text.append(f" by {change.get('trigger', '-')}\n")
    text.rstrip()
    return text or Text("no change of state yet", "dim")


def symbols(s: dict[str, Any]) -> list[str]:
    """The symbols a status names (to suggest one when killing an instrument)."""
    named = [str(r.get("symbol")) for r in _list(s.get("by_instrument")) if isinstance(r, dict)]
    named += [*_dict(s.get("positions")), *_dict(s.get("instruments"))]
    return sorted(set(named) - {"None"})


def outcome(
    what: str, reply: dict[str, Any] | None, error: str | None, symbol: str | None = None
) -> tuple[Text, bool]:
    """What a person's command came to, for the line under the header: the session's
    refusal in its own words, or the state it (or `symbol`) is in now; and whether it was
    taken."""
    stamp = f"{clock(_now(), 0)} UTC  "
    if reply is None:
        return Text(f"{stamp}{what}: {error}", "bold red"), False
    if not reply.get("ok"):
        return Text(f"{stamp}{what} refused: {reply.get('error', 'no reason given')}",
                    "bold red"), False  # fmt: skip
    text = Text(f"{stamp}{what}: done", "bold green")
    state = reply.get("state")
    if symbol is not None:
        rows = {
            r.get("symbol"): r for r in _list(reply.get("by_instrument")) if isinstance(r, dict)
        }
        own = _dict(rows.get(symbol) or _dict(reply.get("instruments")).get(symbol))
        state = _stricter(own.get("state", "active"), state) if isinstance(state, str) else None
    if isinstance(state, str):
        text.append(f", {symbol or 'the session'} is ")
        text.append_text(state_text(state))
    return text, True


@dataclass(frozen=True)
class Ask:
    """One line a modal asks for: its name in the request, prompt, limit, whether needed."""

    name: str
    prompt: str
    most: int
    required: bool = False
    suggestions: Sequence[str] = ()
