"""The engine state a compiled loop works on, and what a strategy callback receives as `ctx`.

`Ctx` is a tuple of preallocated numpy arrays: the market per instrument, its
order books, positions, the open-order table and the batch's out-buffers of
order events and fills. Strategies never touch these arrays directly; they
use the functions of `engine.orders`, `engine.market` and `engine.portfolio`.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from .instruments import Instruments
from .jit import pure_python
from .limits import THROTTLE_MAX, KillSwitch, RiskLimits, pack_limits, pnl_floor
from .schemas import (
    EQUITY_DTYPE,
    FILL_DTYPE,
    INSTRUMENT_DTYPE,
    MARKET_DTYPE,
    OPEN_ORDER_DTYPE,
    ORDER_DTYPE,
    POSITION_DTYPE,
    TRANSITION_DTYPE,
)

BOOK_DEPTH = 16  # price levels kept per side of each instrument's book

# Slots of `ctx.clock` (int64).
CLK_NOW = 0  # ts_event of the event being processed (ns)
CLK_NEXT_ID = 1  # next order id
CLK_N_ORDER_LOG = 2  # rows used in ctx.order_log this batch
CLK_N_FILL_LOG = 3  # rows used in ctx.fill_log this batch
CLK_N_OPEN = 4  # rows used in ctx.open_orders
CLK_EVENTS = 5  # events processed since the session began
CLK_TIMER_NS = 6  # the strategy's timer period (0: no timer)
CLK_NEXT_TIMER = 7  # when the timer fires next (0: not yet armed)
CLK_SAMPLE_NS = 8  # equity sampling step (0: no sampling)
CLK_NEXT_SAMPLE = 9  # when equity is sampled next (0: not yet armed)
CLK_N_EQUITY_LOG = 10  # rows used in ctx.equity_log this batch
CLK_RECV = 11  # ts_recv of the event: when the strategy sees it, and sends its orders
CLK_LATENCY_NS = 12  # order entry latency: from sending to reaching the exchange
CLK_JITTER_NS = 13  # plus up to this much more, drawn per order from CLK_LATENCY_SEED
CLK_LATENCY_SEED = 14
CLK_FEED_NS = 15  # feed latency: the strategy sees an event this long after ts_event
#                   (-1: when the data say, at its ts_recv)
CLK_CANCEL_ASKS = 16  # cancels asked since a session trading through an exchange last sent
CLK_N_TRANSITIONS = 17  # rows used in ctx.transitions since Python last drained them
N_CLOCK = 18

# The order latency of a session whose orders go to an exchange process (`tickwise live
# --gateway`): they never reach the loop's own simulated exchange, and a cancel stays
# requested (its cancel_ts this far ahead of when it was asked) until it is sent.
GATEWAY_NS = 1 << 62

# Slots of `ctx.config` (float64).
CFG_MAKER_FEE_BPS = 0  # fee on passive fills, basis points of notional
CFG_TAKER_FEE_BPS = 1  # fee on aggressive fills
CFG_MAKER_FEE_UNIT = 2  # plus this much per unit of quantity, on passive fills
CFG_TAKER_FEE_UNIT = 3  # and on aggressive fills
N_CONFIG = 4

# Slots of `ctx.guard` (int64): the kill switch's state for the whole session.
G_STATE = 0  # STATE_ACTIVE, STATE_REDUCING or STATE_HALTED
G_TRIP = 1  # what moved the session to that state (TRIP_*; TRIP_NONE while ACTIVE)
G_TRIP_TS = 2  # when (ns, event time)
G_TRIP_INSTRUMENT = 3  # the instrument it concerned (-1: none in particular)
G_PENDING = 4  # a trip whose cancels (and flattening) are still to send, this event
G_LAST_TS = 5  # the previous event's ts_event (stale feed)
G_LATE_RUN = 6  # events in a row with feed latency beyond the bound
G_REJECT_WINDOW = 7  # start of the current second of rejects
G_REJECTS = 8  # rejects in it
G_DUP_COUNT = 9  # the same order, how many times in a row
G_DUP_FIRST_TS = 10  # since when
G_THROTTLE_NEXT = 11  # next slot of the throttle ring
G_TRIPS = 12  # trips since the session began
G_SESSION = 13  # attribution carried by every order
G_STRATEGY = 14
G_FLATTENING = 15  # 1 while the guard itself sends reduce-only orders
N_GUARD = 16

# Slots of `ctx.guard_f` (float64).
GF_TRIP_VALUE = 0  # the value that moved the session to its state
GF_TRIP_LIMIT = 1  # and the limit it crossed
GF_PNL = 2  # session PnL, kept up to date event by event
GF_PEAK = 3  # its peak (drawdown)
GF_DUP_INSTRUMENT = 4  # the order last repeated
GF_DUP_SIDE = 5
GF_DUP_QTY = 6
GF_DUP_PRICE = 7
GF_FLOOR = 8  # PnL below this may have crossed max_loss or max_drawdown: judged exactly
N_GUARD_F = 9

# Columns of `ctx.inst_guard` (int64, a row per instrument).
IG_STATE = 0  # the instrument's own trading state (a halt can target one instrument)
IG_LAST_SEQ = 1  # last sequence number seen (0: none yet)
IG_GAP_SEQ = 2  # the sequence number after a gap: open while it is still the last seen
IG_BUCKET = 3  # current price-jump bucket (ts // bucket width)
IG_BUCKETS = 4  # buckets seen (the sigma estimate needs some)
IG_BUCKET_END = 5  # when the current bucket ends (ns): the next event past it rolls the window
IG_TRIP = 6  # what moved the instrument to its own state (TRIP_*; TRIP_NONE while ACTIVE)
IG_TRIP_TS = 7  # when (ns, event time)
N_IG = 8

# Columns of `ctx.inst_guard_f` (float64, a row per instrument).
IGF_PNL = 0  # the instrument's PnL when last updated (its share of GF_PNL)
IGF_VAR = 1  # EWMA variance of the log returns of the mid from one bucket's open to the next
IGF_OPEN = 2  # the first mid of the current bucket
IGF_LO = 3  # lowest mid of the window's other buckets
IGF_HI = 4  # highest
IGF_SIGMA_FACTOR = 5  # exp(price_jump_sigmas x the window's standard deviation): a jump is
#                       a mid beyond the window's extremes by this factor (inf: not yet known)
IGF_CUR_LO = 6  # lowest mid of the current bucket
IGF_CUR_HI = 7  # highest
IGF_DOWN = 8  # a mid below the window's highest x this may be a jump down: judged exactly
IGF_UP = 9  # a mid above the window's lowest x this may be a jump up
IGF_SAFE_LO = 10  # no mid within [SAFE_LO, SAFE_HI] is a jump: the test of the usual event
IGF_SAFE_HI = 11
IGF_TRIP_VALUE = 12  # the value that moved the instrument to its own state
IGF_TRIP_LIMIT = 13  # and the limit it crossed
N_IGF = 14

JUMP_BUCKETS = 16  # the price-jump window is kept as this many buckets of min and max

Ctx = namedtuple(
    "Ctx",
    [
        "clock",
        "config",
        "instruments",  # INSTRUMENT_DTYPE, indexed by instrument id (tick 0: unknown id)
        "market",  # MARKET_DTYPE, indexed by instrument id
        "book_px",  # float64[instrument, side (0 bid, 1 ask), level]
        "book_sz",
        "book_n",  # int64[instrument, side]: live levels
        "portfolio",  # POSITION_DTYPE, indexed by instrument id
        "open_orders",  # OPEN_ORDER_DTYPE, first clock[CLK_N_OPEN] rows live
        "inst_open",  # int64[instrument]: how many of those rows are its orders
        "order_log",  # ORDER_DTYPE: this batch's new orders, cancels and rejects
        "fill_log",  # FILL_DTYPE: this batch's fills
        "equity_log",  # EQUITY_DTYPE: this batch's equity samples
        "mark_log",  # float64[sample, instrument]: each instrument's mark at those samples
        "limits",  # float64[LIM_*]: risk limits and kill-switch thresholds (engine/limits.py)
        "guard",  # int64[G_*]: kill-switch state
        "guard_f",  # float64[GF_*]
        "inst_guard",  # int64[instrument, IG_*]
        "inst_guard_f",  # float64[instrument, IGF_*]
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
        table[inst.id] = (inst.id, inst.tick_size, inst.lot_size)
    market = np.zeros(size, dtype=MARKET_DTYPE)
    for name in ("bid_px", "ask_px", "bid_sz", "ask_sz", "last_px", "last_sz"):
        market[name] = np.nan
    clock = np.zeros(N_CLOCK, dtype=np.int64)
    clock[CLK_NEXT_ID] = 1
    clock[CLK_TIMER_NS] = timer_ns
    clock[CLK_SAMPLE_NS] = sample_ns
    clock[CLK_LATENCY_NS] = order_latency_ns
    clock[CLK_JITTER_NS] = latency_jitter_ns
    clock[CLK_LATENCY_SEED] = latency_seed
    clock[CLK_FEED_NS] = feed_latency_ns
    config = np.zeros(N_CONFIG, dtype=np.float64)
    config[CFG_MAKER_FEE_BPS] = maker_fee_bps
    config[CFG_TAKER_FEE_BPS] = taker_fee_bps
    config[CFG_MAKER_FEE_UNIT] = maker_fee_per_unit
    config[CFG_TAKER_FEE_UNIT] = taker_fee_per_unit
    risk = risk or RiskLimits()
    limits = pack_limits(risk, killswitch or KillSwitch())
    guard = np.zeros(N_GUARD, dtype=np.int64)
    guard[G_TRIP_INSTRUMENT] = -1
    guard[G_SESSION] = session_id
    guard[G_STRATEGY] = strategy_id
    jump_ring = np.empty((size, 2, JUMP_BUCKETS))
    jump_ring[:, 0] = np.inf
    jump_ring[:, 1] = -np.inf
    inst_guard_f = np.zeros((size, N_IGF))
    inst_guard_f[:, IGF_OPEN] = np.nan
    inst_guard_f[:, IGF_LO] = np.inf
    inst_guard_f[:, IGF_HI] = -np.inf
    inst_guard_f[:, IGF_SIGMA_FACTOR] = np.inf
    inst_guard_f[:, IGF_CUR_LO] = np.inf
    inst_guard_f[:, IGF_CUR_HI] = -np.inf
    inst_guard_f[:, IGF_SAFE_LO] = -np.inf
    inst_guard_f[:, IGF_SAFE_HI] = np.inf
    guard_f = np.zeros(N_GUARD_F)
    guard_f[GF_FLOOR] = pnl_floor(limits, 0.0)
    throttle = int(min(risk.max_orders_per_sec, THROTTLE_MAX)) or 1
    return _as_python_reads(
        Ctx(
            clock=clock,
            config=config,
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
            guard_f=guard_f,
            inst_guard=np.zeros((size, N_IG), dtype=np.int64),
            inst_guard_f=inst_guard_f,
            jump_ring=jump_ring,
            throttle_ring=np.full(throttle, np.iinfo(np.int64).min // 2, dtype=np.int64),
            # Without a resume, each scope (the session, each instrument) can only go up, to
            # REDUCING then HALTED, within a batch; Python drains the log after every batch.
            transitions=np.zeros(2 * (size + 1) + 64, dtype=TRANSITION_DTYPE),
        )
    )


def copy_context(ctx: Ctx) -> Ctx:
    """A deep copy (for warm-up runs that must not touch the real state)."""
    return Ctx(*(a.copy() for a in ctx))


def _as_python_reads(ctx: Ctx) -> Ctx:
    """The context as compiled code reads it; when kernels run as Python
    (TICKWISE_PURE_PYTHON=1), its records are recarray views, so that `row.field` reads and
    writes in Python as it does compiled."""
    if not pure_python():
        return ctx
    return Ctx(*(a.view(np.recarray) if a.dtype.names else a for a in ctx))
