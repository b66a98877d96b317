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
from .schemas import (
    EQUITY_DTYPE,
    FILL_DTYPE,
    INSTRUMENT_DTYPE,
    MARKET_DTYPE,
    OPEN_ORDER_DTYPE,
    ORDER_DTYPE,
    POSITION_DTYPE,
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
N_CLOCK = 16

# Slots of `ctx.config` (float64).
CFG_MAKER_FEE_BPS = 0  # fee on passive fills, basis points of notional
CFG_TAKER_FEE_BPS = 1  # fee on aggressive fills
CFG_MAKER_FEE_UNIT = 2  # plus this much per unit of quantity, on passive fills
CFG_TAKER_FEE_UNIT = 3  # and on aggressive fills
N_CONFIG = 4

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
        "order_log",  # ORDER_DTYPE: this batch's new orders, cancels and rejects
        "fill_log",  # FILL_DTYPE: this batch's fills
        "equity_log",  # EQUITY_DTYPE: this batch's equity samples
        "mark_log",  # float64[sample, instrument]: each instrument's mark at those samples
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
    return Ctx(
        clock=clock,
        config=config,
        instruments=table,
        market=market,
        book_px=np.full((size, 2, BOOK_DEPTH), np.nan),
        book_sz=np.zeros((size, 2, BOOK_DEPTH)),
        book_n=np.zeros((size, 2), dtype=np.int64),
        portfolio=np.zeros(size, dtype=POSITION_DTYPE),
        open_orders=np.zeros(max_open_orders, dtype=OPEN_ORDER_DTYPE),
        order_log=np.zeros(log_capacity, dtype=ORDER_DTYPE),
        fill_log=np.zeros(log_capacity, dtype=FILL_DTYPE),
        equity_log=np.zeros(equity_capacity, dtype=EQUITY_DTYPE),
        mark_log=np.full((equity_capacity, size), np.nan),
    )


def copy_context(ctx: Ctx) -> Ctx:
    """A deep copy (for warm-up runs that must not touch the real state)."""
    return Ctx(*(a.copy() for a in ctx))
