"""The engine state a compiled loop works on, and what a strategy callback receives as `ctx`.

`Ctx` is a tuple of preallocated numpy arrays: the market per instrument, its
order books, positions, the open-order table and the batch's out-buffers of
order events and fills. Strategies never touch these arrays directly; they
use the functions of `engine.orders`, `engine.market` and `engine.portfolio`.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from .instruments import Instruments, unit_divisor
from .jit import pure_python
from .limits import THROTTLE_MAX, KillSwitch, RiskLimits, pack_limits, pnl_floor
from .schemas import (
    EQUITY_DTYPE,
    FILL_DTYPE,
    INSTRUMENT_DTYPE,
    MARKET_DTYPE,
    N_KINDS,
    OPEN_ORDER_DTYPE,
    ORDER_DTYPE,
    POSITION_DTYPE,
    TRANSITION_DTYPE,
)

BOOK_DEPTH = 16  # price levels kept per side of each instrument's book

# Where a session's orders go (`ctx.clock[0].venue`).
VENUE_SIMULATED = 0  # the loop's own simulated exchange matches them (backtests, paper)
VENUE_GATEWAY = 1  # an exchange process does (`tickwise live --gateway`): the loop matches
#                    none of them, and cancels wait to be sent (`Session.cancel_requests`)

# `ctx.clock`: one record of the session's time, counters and order-entry settings.
CLOCK_DTYPE = np.dtype(
    [
        ("now", "<i8"),  # ts_event of the event being processed (ns)
        ("recv", "<i8"),  # ts_recv of the event: when the strategy sees it, and sends orders
        ("events", "<i8"),  # events processed since the session began
        ("next_id", "<i8"),  # next order id
        ("n_order_log", "<i8"),  # rows used in ctx.order_log this batch
        ("n_fill_log", "<i8"),  # rows used in ctx.fill_log this batch
        ("n_equity_log", "<i8"),  # rows used in ctx.equity_log this batch
        ("n_transitions", "<i8"),  # rows used in ctx.transitions since Python last drained
        ("n_open", "<i8"),  # rows used in ctx.open_orders
        ("timer_ns", "<i8"),  # the strategy's timer period (0: no timer)
        ("next_timer", "<i8"),  # when the timer fires next (0: not yet armed)
        ("sample_ns", "<i8"),  # equity sampling step (0: no sampling)
        ("next_sample", "<i8"),  # when equity is sampled next (0: not yet armed)
        ("venue", "<i8"),  # VENUE_SIMULATED or VENUE_GATEWAY
        ("latency_ns", "<i8"),  # order entry latency: from sending to reaching the exchange
        ("jitter_ns", "<i8"),  # plus up to this much more, drawn per order from latency_seed
        ("latency_seed", "<i8"),
        ("feed_ns", "<i8"),  # feed latency: the strategy sees an event this long after
        #                      ts_event (-1: when the data say, at its ts_recv)
        ("cancel_asks", "<i8"),  # cancels asked (VENUE_GATEWAY) since they were last sent
        ("under_lot", "<i8"),  # trade_to calls that sent nothing: under one lot asked, flat
        ("under_lot_instrument", "<i8"),  # the instrument of the latest of those
    ],
    align=True,
)

# `ctx.fees`: one record of the fee schedule the simulated exchange charges.
FEES_DTYPE = np.dtype(
    [
        ("maker_bps", "<f8"),  # on passive fills, basis points of notional
        ("taker_bps", "<f8"),  # on aggressive fills
        ("maker_per_unit", "<f8"),  # plus this much per unit of quantity, on passive fills
        ("taker_per_unit", "<f8"),  # and on aggressive fills
    ],
    align=True,
)

# `ctx.guard`: one record of the kill switch's state for the whole session.
GUARD_DTYPE = np.dtype(
    [
        ("state", "<i8"),  # STATE_ACTIVE, STATE_REDUCING or STATE_HALTED
        ("trip", "<i8"),  # what moved the session to that state (TRIP_*; TRIP_NONE: ACTIVE)
        ("trip_ts", "<i8"),  # when (ns, event time)
        ("trip_instrument", "<i8"),  # the instrument it concerned (-1: none in particular)
        ("trip_value", "<f8"),  # the value that moved the session to its state
        ("trip_limit", "<f8"),  # and the limit it crossed
        ("trips", "<i8"),  # trips since the session began
        ("pending", "<i8"),  # a trip whose cancels (and flattening) are to send, this event
        ("flattening", "<i8"),  # 1 while the guard itself sends reduce-only orders
        ("last_ts", "<i8"),  # the previous event's ts_event (stale feed)
        ("late_run", "<i8"),  # events in a row with feed latency beyond the bound
        ("reject_window", "<i8"),  # start of the current second of rejects
        ("rejects", "<i8"),  # rejects in it
        ("dup_count", "<i8"),  # the same order, how many times in a row
        ("dup_first_ts", "<i8"),  # since when
        ("dup_instrument", "<i8"),  # the order last repeated
        ("dup_side", "<i8"),
        ("dup_qty", "<f8"),
        ("dup_price", "<f8"),
        ("throttle_next", "<i8"),  # next slot of the throttle ring
        # Orders refused because the state forbids them (HALTED, REDUCING): only the first of
        # each reason after a change of state is logged row by row, the rest are counted.
        ("refused_halted", "<i8"),  # since the last change of state
        ("refused_reducing", "<i8"),
        ("unlogged_halted", "<i8"),  # since the session began, not logged
        ("unlogged_reducing", "<i8"),
        ("pnl", "<f8"),  # session PnL, kept up to date event by event
        ("peak", "<f8"),  # its peak (drawdown)
        ("floor", "<f8"),  # PnL below this may cross max_loss or max_drawdown: judged exactly
        ("session", "<i8"),  # attribution carried by every order
        ("strategy", "<i8"),
    ],
    align=True,
)

# `ctx.inst_guard`: a record per instrument of its own state and price-jump window.
INST_GUARD_DTYPE = np.dtype(
    [
        ("state", "<i8"),  # the instrument's own trading state (a halt can target one)
        ("trip", "<i8"),  # what moved it to that state (TRIP_*; TRIP_NONE while ACTIVE)
        ("trip_ts", "<i8"),  # when (ns, event time)
        ("trip_value", "<f8"),  # the value that moved it to its own state
        ("trip_limit", "<f8"),  # and the limit it crossed
        # Per kind (KIND_CODES: each kind numbers its own rows), the last sequence number
        # seen (0: none yet), and the one after a gap: open while still the last seen.
        ("last_seq", "<i8", (N_KINDS,)),
        ("gap_seq", "<i8", (N_KINDS,)),
        ("pnl", "<f8"),  # the instrument's PnL when last updated (its share of guard.pnl)
        ("bucket", "<i8"),  # current price-jump bucket (ts // bucket width)
        ("buckets", "<i8"),  # buckets seen (the sigma estimate needs some)
        ("bucket_end", "<i8"),  # when the current bucket ends (ns): the next event past it
        #                         rolls the window
        ("ret_var", "<f8"),  # EWMA variance of the log returns of the mid, bucket open to open
        #                      (kept only while the sigma test is on: its one reader)
        ("open", "<f8"),  # the first mid of the current bucket
        ("lo", "<f8"),  # lowest mid of the window's other buckets
        ("hi", "<f8"),  # highest
        ("cur_lo", "<f8"),  # lowest mid of the current bucket
        ("cur_hi", "<f8"),  # highest
        ("sigma_factor", "<f8"),  # exp(price_jump_sigmas x the window's standard deviation): a
        #                           jump is a mid beyond its extremes by this factor (inf: unknown)
        ("down", "<f8"),  # a mid below the window's highest x this may be a jump down: judged
        ("up", "<f8"),  # a mid above the window's lowest x this may be a jump up
        ("safe_lo", "<f8"),  # no mid within [safe_lo, safe_hi] is a jump: the usual event's test
        ("safe_hi", "<f8"),
    ],
    align=True,
)

JUMP_BUCKETS = 16  # the price-jump window is kept as this many buckets of min and max

Ctx = namedtuple(
    "Ctx",
    [
        "clock",  # CLOCK_DTYPE, one row
        "fees",  # FEES_DTYPE, one row
        "instruments",  # INSTRUMENT_DTYPE, indexed by instrument id (tick 0: unknown id)
        "market",  # MARKET_DTYPE, indexed by instrument id
        "book_px",  # float64[instrument, side (0 bid, 1 ask), level]
        "book_sz",
        "book_n",  # int64[instrument, side]: live levels
        "portfolio",  # POSITION_DTYPE, indexed by instrument id
        "open_orders",  # OPEN_ORDER_DTYPE, first clock[0].n_open rows live
        "inst_open",  # int64[instrument]: how many of those rows are its orders
        "order_log",  # ORDER_DTYPE: this batch's new orders, cancels and rejects
        "fill_log",  # FILL_DTYPE: this batch's fills
        "equity_log",  # EQUITY_DTYPE: this batch's equity samples
        "mark_log",  # float64[sample, instrument]: each instrument's mark at those samples
        "limits",  # LIMITS_DTYPE, one row: risk limits and kill-switch thresholds
        "guard",  # GUARD_DTYPE, one row: the kill switch's state
        "inst_guard",  # INST_GUARD_DTYPE, indexed by instrument id
        "jump_ring",  # float64[instrument, 2 (min, max), JUMP_BUCKETS]: mids per bucket
        "throttle_ring",  # int64[max_orders_per_sec]: when the latest orders were sent
        "transitions",  # TRANSITION_DTYPE: state changes since Python last drained them
    ],
)


def new_context(
    instruments: Instruments,
    *,
    max_open_orders: int = 1_024,
    log_capacity: int = 1 << 16,
    equity_capacity: int = 4_096,
    maker_fee_bps: float = 0.0,
    taker_fee_bps: float = 0.0,
    maker_fee_per_unit: float = 0.0,
    taker_fee_per_unit: float = 0.0,
    timer_ns: int = 0,
    sample_ns: int = 0,
    order_latency_ns: int = 0,
    latency_jitter_ns: int = 0,
    latency_seed: int = 0,
    feed_latency_ns: int = -1,
    risk: RiskLimits | None = None,
    killswitch: KillSwitch | None = None,
    session_id: int = 0,
    strategy_id: int = 0,
) -> Ctx:
    """Fresh state for a session over `instruments`: flat, no orders, nothing seen yet."""
    size = instruments.known_mask().size
    table = np.zeros(size, dtype=INSTRUMENT_DTYPE)
    for inst in instruments:
        table[inst.id] = (inst.id, inst.tick_size, inst.lot_size, unit_divisor(inst.lot_size))
    market = np.zeros(size, dtype=MARKET_DTYPE)
    for name in ("bid_px", "ask_px", "bid_sz", "ask_sz", "last_px", "last_sz"):
        market[name] = np.nan
    clock = np.zeros(1, dtype=CLOCK_DTYPE)
    c = clock[0]
    c["next_id"] = 1
    c["timer_ns"] = timer_ns
    c["sample_ns"] = sample_ns
    c["venue"] = VENUE_SIMULATED
    c["latency_ns"] = order_latency_ns
    c["jitter_ns"] = latency_jitter_ns
    c["latency_seed"] = latency_seed
    c["feed_ns"] = feed_latency_ns
    fees = np.zeros(1, dtype=FEES_DTYPE)
    fees[0] = (maker_fee_bps, taker_fee_bps, maker_fee_per_unit, taker_fee_per_unit)
    risk = risk or RiskLimits()
    limits = pack_limits(risk, killswitch or KillSwitch())
    guard = np.zeros(1, dtype=GUARD_DTYPE)
    guard["trip_instrument"] = -1
    guard["session"] = session_id
    guard["strategy"] = strategy_id
    jump_ring = np.empty((size, 2, JUMP_BUCKETS))
    jump_ring[:, 0] = np.inf
    jump_ring[:, 1] = -np.inf
    inst_guard = np.zeros(size, dtype=INST_GUARD_DTYPE)
    for name, value in (("open", np.nan), ("lo", np.inf), ("hi", -np.inf),
                        ("sigma_factor", np.inf), ("cur_lo", np.inf), ("cur_hi", -np.inf),
                        ("safe_lo", -np.inf), ("safe_hi", np.inf)):  # fmt: skip
        inst_guard[name] = value
    throttle = int(min(risk.max_orders_per_sec, THROTTLE_MAX)) or 1
    ctx = _as_python_reads(
        Ctx(
            clock=clock,
            fees=fees,
            instruments=table,
            market=market,
            book_px=np.full((size, 2, BOOK_DEPTH), np.nan),
            book_sz=np.zeros((size, 2, BOOK_DEPTH)),
            book_n=np.zeros((size, 2), dtype=np.int64),
            portfolio=np.zeros(size, dtype=POSITION_DTYPE),
            open_orders=np.zeros(max_open_orders, dtype=OPEN_ORDER_DTYPE),
            inst_open=np.zeros(size, dtype=np.int64),
            order_log=np.zeros(log_capacity, dtype=ORDER_DTYPE),
            fill_log=np.zeros(log_capacity, dtype=FILL_DTYPE),
            equity_log=np.zeros(equity_capacity, dtype=EQUITY_DTYPE),
            mark_log=np.full((equity_capacity, size), np.nan),
            limits=limits,
            guard=guard,
            inst_guard=inst_guard,
            jump_ring=jump_ring,
            throttle_ring=np.full(throttle, np.iinfo(np.int64).min // 2, dtype=np.int64),
            # Without a resume, each scope (the session, each instrument) can only go up, to
            # REDUCING then HALTED, within a batch; Python drains the log after every batch.
            transitions=np.zeros(2 * (size + 1) + 64, dtype=TRANSITION_DTYPE),
        )
    )
    ctx.guard[0].floor = pnl_floor(ctx.limits[0], 0.0)
    return ctx


def copy_context(ctx: Ctx) -> Ctx:
    """A deep copy (for warm-up runs that must not touch the real state)."""
    return Ctx(*(a.copy() for a in ctx))  # (a recarray's copy is a recarray)


_STATE = ("clock", "fees", "limits", "guard", "inst_guard")  # records of the session's state


def _as_python_reads(ctx: Ctx) -> Ctx:
    """The context as compiled code reads it. Its state records are recarray views (typed by
    Numba as the arrays they view), so that Python reads `ctx.guard[0].state` as a kernel
    does; when kernels run as Python (TICKWISE_PURE_PYTHON=1), every record array is."""
    every = pure_python()
    return Ctx(
        *(
            a.view(np.recarray) if a.dtype.names and (every or name in _STATE) else a
            for name, a in zip(Ctx._fields, ctx, strict=True)
        )
    )
