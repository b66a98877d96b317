"""Risk limits and kill-switch thresholds: the `[risk]` and `[killswitch]` tables of a session
or backtest config, validated, and packed into the array the compiled guard reads.

Defaults are safe: limits that make sense whatever the instrument (price
collar, fresh reference price, order rate, open orders, self-trade prevention,
runaway strategies, price jumps, feed health, reject rate, strategy faults)
are on; limits in money or quantity (order size, notional, position, gross
exposure, loss, drawdown) depend on the book being traded and are off until
set. Every threshold can be switched off: `0` for the feed and reject checks
named `..._ms` / `..._per_sec`, `false` for the switches, and any limit left at
`inf` is off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from .errors import TickwiseError
from .jit import kernel
from .schemas import (
    N_TRIPS,
    STATE_HALTED,
    STATE_REDUCING,
    TRIP_BAD_DATA,
    TRIP_FEED_LATENCY,
    TRIP_GATEWAY_LOST,
    TRIP_MAX_DRAWDOWN,
    TRIP_MAX_LOSS,
    TRIP_NAMES,
    TRIP_PRICE_JUMP,
    TRIP_RECONCILE,
    TRIP_REJECT_RATE,
    TRIP_RUNAWAY,
    TRIP_SEQ_GAP,
    TRIP_STALE_FEED,
    TRIP_STRATEGY_FAULT,
)

INF = math.inf

# `ctx.limits`: one record of the session's thresholds, in the units the kernels compare in
# (ns, not ms). A threshold at inf is off; `action[trip]` is the state each trigger moves to
# (STATE_ACTIVE: that trigger is off).
LIMITS_DTYPE = np.dtype(
    [
        ("max_order_qty", "<f8"),
        ("max_notional", "<f8"),
        ("max_position", "<f8"),
        ("max_gross", "<f8"),
        ("max_open_orders", "<f8"),
        ("collar_pct", "<f8"),
        ("collar_ticks", "<f8"),
        ("reference_age_ns", "<f8"),
        ("max_orders_per_sec", "<f8"),  # 0: off
        ("runaway_repeats", "<f8"),
        ("runaway_window_ns", "<f8"),
        ("max_loss", "<f8"),
        ("max_drawdown", "<f8"),
        ("jump_pct", "<f8"),
        ("jump_sigmas", "<f8"),
        ("jump_window_ns", "<f8"),
        ("stale_ns", "<f8"),
        ("max_feed_latency_ns", "<f8"),
        ("feed_latency_events", "<f8"),
        ("max_rejects_per_sec", "<f8"),
        ("action", "<i8", (N_TRIPS,)),
        ("self_trade", "?"),  # reject orders that would trade against our own resting orders
        ("flatten_on_halt", "?"),  # flatten positions with reduce-only orders when halted
        ("jump_halts_instrument", "?"),  # a price jump halts only the instrument that jumped
    ],
    align=True,
)

# What a person changes to make a trigger trip later, or never: for the line that reports a
# halt (the kill switch is there for a reason: first look at why it tripped).
TRIGGER_SETTINGS = {
    "max_loss": "[killswitch] max_loss",
    "max_drawdown": "[killswitch] max_drawdown",
    "price_jump": "[killswitch] price_jump_pct / price_jump_sigmas / price_jump_window_ms (0: off)",
    "stale_feed": "[killswitch] stale_feed_ms (0: off)",
    "seq_gap": "[killswitch] seq_gap = false",
    "feed_latency": "[killswitch] max_feed_latency_ms / feed_latency_events (0: off)",
    "reject_rate": "[killswitch] max_rejects_per_sec (0: off); the rejects by reason say why "
    "orders were refused",
    "strategy_fault": "the strategy's code (an exception, or a NaN or infinite order); "
    "[killswitch] strategy_faults = false",
    "runaway": "[risk] runaway_repeats / runaway_window_ms (0: off)",
    "gateway_lost": "[killswitch] gateway_timeout_ms / ack_timeout_ms (0: off)",
    "reconcile": "[killswitch] reconcile = false",
    "bad_data": "[killswitch] max_bad_rows_per_sec (0: off)",
}

THROTTLE_MAX = 1 << 20  # most orders per second the throttle can count


def _positive(name: str, value: Any, *, allow_inf: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TickwiseError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if math.isnan(value) or value <= 0 or (value == INF and not allow_inf):
        raise TickwiseError(
            f"{name} must be positive{'' if allow_inf else ' and finite'}, got {value}"
        )
    return value


def _off_or_positive(name: str, value: Any) -> float:
    """0 (off) or a positive number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise TickwiseError(f"{name} must be a number (0: off), got {value!r}")
    if value < 0:
        raise TickwiseError(f"{name} must be 0 (off) or positive, got {value}")
    return float(value)


@dataclass(frozen=True)
class RiskLimits:
    """Pre-trade checks every order passes before it leaves (`[risk]`)."""

    max_order_qty: float = INF  # units per order
    max_notional: float = INF  # quantity x price (or reference price) per order
    max_position: float = INF  # |position| per instrument, counting working orders
    max_gross_exposure: float = INF  # sum of |position| x mark, counting working orders
    max_open_orders: int = 500  # working orders at once, all instruments
    price_collar_pct: float = 5.0  # limit price within this % of the reference price
    price_collar_ticks: float = INF  # and within this many ticks of it
    reference_max_age_ms: float = 10_000.0  # an older reference price is stale: rejects
    max_orders_per_sec: float = 1_000.0  # orders sent in any 1 s of event time (0: off)
    self_trade_prevention: bool = True  # reject orders that would trade with our own
    runaway_repeats: float = 100.0  # the same order this many times ... (0: off)
    runaway_window_ms: float = 1_000.0  # ... within this long disables the strategy

    def __post_init__(self) -> None:
        for name in ("max_order_qty", "max_notional", "max_position", "max_gross_exposure"):
            _positive(name, getattr(self, name))
        _positive("max_open_orders", self.max_open_orders)
        _positive("price_collar_pct", self.price_collar_pct)
        _positive("price_collar_ticks", self.price_collar_ticks)
        _positive("reference_max_age_ms", self.reference_max_age_ms)
        rate = _off_or_positive("max_orders_per_sec", self.max_orders_per_sec)
        if rate > THROTTLE_MAX or rate != int(rate):
            raise TickwiseError(
                f"max_orders_per_sec must be a whole number up to {THROTTLE_MAX}, got {rate}"
            )
        _off_or_positive("runaway_repeats", self.runaway_repeats)
        _positive("runaway_window_ms", self.runaway_window_ms, allow_inf=False)
        if not isinstance(self.self_trade_prevention, bool):
            raise TickwiseError(
                f"self_trade_prevention must be true or false, got {self.self_trade_prevention!r}"
            )

    @classmethod
    def off(cls) -> RiskLimits:
        """No pre-trade limits beyond order validity (tests and research only)."""
        return cls(
            max_open_orders=INF,
            price_collar_pct=INF,
            reference_max_age_ms=INF,
            max_orders_per_sec=0,
            self_trade_prevention=False,
            runaway_repeats=0,
        )


@dataclass(frozen=True)
class KillSwitch:
    """When the kill switch trips, and what it does then (`[killswitch]`)."""

    # false: no automatic trigger at all, and the loop compiled without the watchers, for
    # research backtests only (a live session refuses it); summaries say so.
    enabled: bool = True
    max_loss: float = INF  # session PnL (realised + unrealised - fees) below -max_loss
    max_drawdown: float = INF  # PnL this far below its peak
    price_jump_pct: float = 5.0  # mid moves more than this % within the window (0: off)
    price_jump_sigmas: float = 0.0  # or more than this many standard deviations (0: off)
    price_jump_window_ms: float = 60_000.0
    price_jump_halts_instrument: bool = False  # true: only the instrument that jumped
    stale_feed_ms: float = 5_000.0  # no event for this long (0: off)
    seq_gap: bool = True  # a sequence number skipped
    max_feed_latency_ms: float = 1_000.0  # ts_recv - ts_event beyond this ... (0: off)
    feed_latency_events: int = 10  # ... for this many events in a row
    max_rejects_per_sec: float = 50.0  # rejected orders within one second (0: off)
    strategy_faults: bool = True  # NaN/inf from the strategy, or an exception in it
    flatten: bool = False  # when halted, also close positions with reduce-only orders
    # Live sessions trading through an exchange process (`tickwise live --gateway`):
    gateway_timeout_ms: float = 2_000.0  # nothing from the exchange for this long (0: off)
    ack_timeout_ms: float = 1_000.0  # a request (orders, cancels) unanswered this long (0: off)
    reconcile: bool = True  # the exchange reports an order, fill or cancel not expected
    # What a live session takes from outside (feed rows, the exchange's reports) is checked
    # before any kernel sees it; bad rows are dropped, and so many within one second trip
    # `bad_data` (0: off). A row whose ts_event is more than max_ts_skew_ms before the
    # session's clock, or more than max_ts_ahead_ms after it (a feed's clock ahead, or a
    # forged time), is bad (0: no bound).
    max_bad_rows_per_sec: float = 10.0
    max_ts_skew_ms: float = 60_000.0
    max_ts_ahead_ms: float = 1_000.0
    # Triggers that move to REDUCING (only position-reducing orders pass) instead of HALTED.
    reduce_only_on: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        _positive("max_loss", self.max_loss)
        _positive("max_drawdown", self.max_drawdown)
        for name in ("price_jump_pct", "price_jump_sigmas", "stale_feed_ms",
                     "max_feed_latency_ms", "max_rejects_per_sec", "gateway_timeout_ms",
                     "ack_timeout_ms", "max_bad_rows_per_sec", "max_ts_skew_ms",
                     "max_ts_ahead_ms"):  # fmt: skip
            _off_or_positive(name, getattr(self, name))
        _positive("price_jump_window_ms", self.price_jump_window_ms, allow_inf=False)
        _positive("feed_latency_events", self.feed_latency_events, allow_inf=False)
        for name in ("enabled", "price_jump_halts_instrument", "seq_gap", "strategy_faults",
                     "flatten", "reconcile"):  # fmt: skip
            if not isinstance(getattr(self, name), bool):
                raise TickwiseError(f"{name} must be true or false, got {getattr(self, name)!r}")
        known = set(TRIP_NAMES.values()) - {"none"}
        if isinstance(self.reduce_only_on, str) or not all(
            isinstance(name, str) for name in self.reduce_only_on
        ):
            raise TickwiseError(
                f"reduce_only_on must be a list of trigger names, got {self.reduce_only_on!r}"
            )
        unknown = sorted(set(self.reduce_only_on) - known)
        if unknown:
            raise TickwiseError(
                f"reduce_only_on names unknown triggers {unknown}; "
                f"known: {', '.join(sorted(known))}"
            )
        object.__setattr__(self, "reduce_only_on", tuple(self.reduce_only_on))

    @classmethod
    def off(cls) -> KillSwitch:
        """Every automatic trigger off (a person can still halt)."""
        return cls(price_jump_pct=0, stale_feed_ms=0, seq_gap=False, max_feed_latency_ms=0,
                   max_rejects_per_sec=0, strategy_faults=False, gateway_timeout_ms=0,
                   ack_timeout_ms=0, reconcile=False, max_bad_rows_per_sec=0)  # fmt: skip


def _from_table(cls: type, table: dict[str, Any], where: str) -> Any:
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise TickwiseError(
            f"{where}: unknown keys {unknown}; allowed: {', '.join(sorted(allowed))}"
        )
    try:
        return cls(**table)
    except (TypeError, TickwiseError) as exc:
        raise TickwiseError(f"{where}: {exc}") from None


def risk_from_table(table: dict[str, Any], where: str = "[risk]") -> RiskLimits:
    """A `[risk]` table read from TOML, checked key by key."""
    return _from_table(RiskLimits, table, where)


def killswitch_from_table(table: dict[str, Any], where: str = "[killswitch]") -> KillSwitch:
    """A `[killswitch]` table read from TOML, checked key by key."""
    return _from_table(KillSwitch, table, where)


def pack_limits(risk: RiskLimits, kill: KillSwitch) -> np.ndarray:
    """The record of limits the compiled guard reads (`ctx.limits`, one row)."""
    out = np.zeros(1, dtype=LIMITS_DTYPE)
    lim = out[0]
    lim["max_order_qty"] = risk.max_order_qty
    lim["max_notional"] = risk.max_notional
    lim["max_position"] = risk.max_position
    lim["max_gross"] = risk.max_gross_exposure
    lim["max_open_orders"] = risk.max_open_orders
    lim["collar_pct"] = risk.price_collar_pct
    lim["collar_ticks"] = risk.price_collar_ticks
    lim["reference_age_ns"] = risk.reference_max_age_ms * 1e6
    lim["max_orders_per_sec"] = risk.max_orders_per_sec
    lim["runaway_repeats"] = risk.runaway_repeats or INF
    lim["runaway_window_ns"] = risk.runaway_window_ms * 1e6
    lim["self_trade"] = risk.self_trade_prevention
    lim["max_loss"] = kill.max_loss
    lim["max_drawdown"] = kill.max_drawdown
    lim["jump_pct"] = kill.price_jump_pct or INF
    lim["jump_sigmas"] = kill.price_jump_sigmas or INF
    lim["jump_window_ns"] = kill.price_jump_window_ms * 1e6
    lim["stale_ns"] = kill.stale_feed_ms * 1e6 or INF
    lim["max_feed_latency_ns"] = kill.max_feed_latency_ms * 1e6 or INF
    lim["feed_latency_events"] = kill.feed_latency_events
    lim["max_rejects_per_sec"] = kill.max_rejects_per_sec or INF
    lim["flatten_on_halt"] = kill.flatten
    lim["jump_halts_instrument"] = kill.price_jump_halts_instrument
    switched = {
        TRIP_MAX_LOSS: kill.max_loss < INF,
        TRIP_MAX_DRAWDOWN: kill.max_drawdown < INF,
        TRIP_PRICE_JUMP: bool(kill.price_jump_pct or kill.price_jump_sigmas),
        TRIP_STALE_FEED: bool(kill.stale_feed_ms),
        TRIP_SEQ_GAP: kill.seq_gap,
        TRIP_FEED_LATENCY: bool(kill.max_feed_latency_ms),
        TRIP_REJECT_RATE: bool(kill.max_rejects_per_sec),
        TRIP_STRATEGY_FAULT: kill.strategy_faults,
        TRIP_RUNAWAY: bool(risk.runaway_repeats),
        TRIP_GATEWAY_LOST: bool(kill.gateway_timeout_ms or kill.ack_timeout_ms),
        TRIP_RECONCILE: kill.reconcile,
        TRIP_BAD_DATA: bool(kill.max_bad_rows_per_sec),
    }
    for trip, name in TRIP_NAMES.items():
        on = switched.get(trip, True)  # a person's command and a lost journal: always on
        on = on and (kill.enabled or name in ("manual", "journal_lost", "stop"))
        target = STATE_REDUCING if name in kill.reduce_only_on else STATE_HALTED
        lim["action"][trip] = target if on else 0
    return out


# The kill switch's fast tests compare against bounds moved this much (relative) towards
# tripping; what crosses them is judged again exactly, so rounding never lets a trip by.
GUARD_MARGIN = 1e-9


@kernel
def pnl_floor(lim, peak):
    """The PnL below which the loss limit or the drawdown from `peak` may have been crossed
    (`lim`: the limits record): the kill switch tests against it at each event, and
    exactly only when it is crossed."""
    floor = max(-lim.max_loss, peak - lim.max_drawdown)
    if floor == -np.inf:
        return floor
    return floor + GUARD_MARGIN * max(1.0, abs(floor))
