"""The pre-trade gate every order passes before it may leave (compiled).

`check_order_nb` returns why an order may not leave (a `REASON_*`), checking in
turn: the order itself (instrument, lot, tick), the trading state (HALTED lets
nothing automated pass, REDUCING only orders that reduce a position), open
orders, size, the price collar around a fresh reference price, notional,
position and gross exposure counting working orders, self-trade prevention
and the order-rate throttle. Limits are in `ctx.limits` (engine/limits.py).

`note_order_nb` then feeds the trading state machine (`engine.states`): a
storm of rejects, a runaway strategy repeating one order, NaN or infinite
values from a strategy each trip it.
"""

from __future__ import annotations

import numpy as np

from tickwise.engine.jit import cold_kernel, kernel

from .market import mid_price
from .quantities import MAX_LOTS, units
from .schemas import (
    ORD_LIMIT,
    ORD_MARKET,
    REASON_BAD_PRICE,
    REASON_BAD_QTY,
    REASON_BOOK_FULL,
    REASON_COLLAR,
    REASON_GROSS_LIMIT,
    REASON_HALTED,
    REASON_MAX_NOTIONAL,
    REASON_MAX_OPEN_ORDERS,
    REASON_MAX_QTY,
    REASON_NO_REFERENCE,
    REASON_NONE,
    REASON_POSITION_LIMIT,
    REASON_REDUCE_ONLY,
    REASON_SELF_TRADE,
    REASON_THROTTLE,
    REASON_UNKNOWN_INSTRUMENT,
    STATE_HALTED,
    STATE_REDUCING,
    TRIP_REJECT_RATE,
    TRIP_RUNAWAY,
    TRIP_STRATEGY_FAULT,
)
from .states import trading_state, trip_nb

_GRID_TOLERANCE = 1e-9  # relative: prices are decimals held in binary floats
_SECOND = 1_000_000_000


@kernel
def _on_grid(value, step):
    units = value / step
    return abs(units - np.round(units)) <= _GRID_TOLERANCE * max(1.0, abs(units))


@kernel
def _open_lots(ctx, instrument, side, staying):
    total = 0
    if ctx.inst_open[instrument] == 0:
        return total
    for k in range(ctx.clock[0].n_open):
        o = ctx.open_orders[k]
        if o.instrument == instrument and o.side == side and (o.cancel_ts == 0 or not staying):
            total += o.lots - o.filled
    return total


@kernel
def working_lots(ctx, instrument, side):
    """Unfilled lots of the open orders of one instrument on one side (+1 buy, -1 sell)."""
    return _open_lots(ctx, instrument, side, False)


@kernel
def staying_lots(ctx, instrument, side):
    """Like `working_lots`, leaving out orders whose cancel is already on its way."""
    return _open_lots(ctx, instrument, side, True)


@kernel
def reduces_position(ctx, i, side, lots):
    """True when the order, with the working orders on its side that are staying, can only
    shrink the position (exactly: all in whole lots)."""
    pos = ctx.portfolio[i].lots
    if pos == 0 or (pos > 0) == (side > 0):
        return False
    return staying_lots(ctx, i, side) + lots <= abs(pos)


@kernel
def reference_price(ctx, i):
    """The price orders of instrument i are checked against: its mid (or last trade, or bar
    close); NaN when there is none, or when it is older than the limit allows."""
    m = ctx.market[i]
    age = ctx.clock[0].recv - m.ts
    if m.ts == 0 or age > ctx.limits[0].reference_age_ns:
        return np.nan
    ref = mid_price(ctx, i)
    if not (ref > 0.0 and ref < np.inf):
        return np.nan
    return ref


@cold_kernel
def _gross_exposure(ctx):
    """|position| x mark over all instruments, plus what working orders could add."""
    gross = 0.0
    for j in range(ctx.portfolio.size):
        q = ctx.portfolio[j].lots
        if q != 0:
            mark = mid_price(ctx, j)
            gross += abs(ctx.portfolio[j].qty) * (mark if mark == mark else ctx.portfolio[j].avg_px)
    for k in range(ctx.clock[0].n_open):
        o = ctx.open_orders[k]
        px = o.price if o.price == o.price else mid_price(ctx, o.instrument)
        if px == px:
            gross += units(o.lots - o.filled, ctx.instruments[o.instrument]) * px
    return gross


@kernel
def _self_trade(ctx, i, side, price, order_type):
    """True when the order would trade against one of our own resting orders."""
    if ctx.inst_open[i] == 0:
        return False
    for k in range(ctx.clock[0].n_open):
        o = ctx.open_orders[k]
        if o.instrument != i or o.side == side or o.order_type == ORD_MARKET:
            continue
        if order_type == ORD_MARKET or (price >= o.price if side > 0 else price <= o.price):
            return True
    return False


@kernel
def check_order_nb(ctx, i, side, lots, price, order_type):
    """The reject reason of an order of `lots` whole lots (< 1: the quantity asked was no
    whole number of lots), or REASON_NONE when it may leave."""
    if i < 0 or i >= ctx.instruments.size or ctx.instruments[i].tick_size == 0.0:
        return REASON_UNKNOWN_INSTRUMENT
    inst = ctx.instruments[i]
    if lots < 1 or lots > MAX_LOTS:
        return REASON_BAD_QTY
    qty = units(lots, inst)
    limit_order = order_type == ORD_LIMIT
    if limit_order and (
        not (price > 0.0 and price < np.inf) or not _on_grid(price, inst.tick_size)
    ):
        return REASON_BAD_PRICE
    lim = ctx.limits[0]
    state = trading_state(ctx, i)
    flattening = ctx.guard[0].flattening != 0
    if state == STATE_HALTED and not flattening:
        return REASON_HALTED
    reducing = reduces_position(ctx, i, side, lots)
    if (state == STATE_REDUCING or flattening) and not reducing:
        return REASON_REDUCE_ONLY
    if ctx.clock[0].n_open >= lim.max_open_orders:
        return REASON_MAX_OPEN_ORDERS
    if qty > lim.max_order_qty * (1.0 + 1e-12):  # (quantities are decimals in floats)
        return REASON_MAX_QTY
    # The price the order may trade at: its limit, or for a market order the far touch.
    ref = reference_price(ctx, i)
    m = ctx.market[i]
    px = price if limit_order else (m.ask_px if side > 0 else m.bid_px)
    collar_pct = lim.collar_pct
    collar_ticks = lim.collar_ticks
    if collar_pct < np.inf or collar_ticks < np.inf:
        if ref != ref:
            return REASON_NO_REFERENCE
        if px == px:
            off = abs(px - ref)
            if off > ref * collar_pct * 0.01 * (1.0 + 1e-12) or off > collar_ticks * inst.tick_size:
                return REASON_COLLAR
    if px != px:
        px = ref
    notional = qty * px
    if lim.max_notional < np.inf and not notional <= lim.max_notional * (1.0 + 1e-12):
        return REASON_MAX_NOTIONAL  # (also when no price is known to measure it by)
    if not reducing:
        if lim.max_position < np.inf:
            worst = ctx.portfolio[i].lots + side * (working_lots(ctx, i, side) + lots)
            if units(abs(worst), inst) > lim.max_position * (1.0 + 1e-12):
                return REASON_POSITION_LIMIT
        gross = _gross_exposure(ctx) + notional
        if lim.max_gross < np.inf and not gross <= lim.max_gross * (1.0 + 1e-12):
            return REASON_GROSS_LIMIT
    if lim.self_trade and _self_trade(ctx, i, side, price, order_type):
        return REASON_SELF_TRADE
    if lim.max_orders_per_sec > 0.0:
        nth_last = ctx.throttle_ring[ctx.guard[0].throttle_next]
        if ctx.clock[0].recv - nth_last < _SECOND:
            return REASON_THROTTLE
    return REASON_NONE


@kernel
def note_order_nb(ctx, i, side, qty, price, reason):
    """After the gate: count rejects (reject rate), spot a runaway strategy repeating the
    same order, a strategy sending NaN or infinite values, and stamp the throttle."""
    now = ctx.clock[0].recv
    g = ctx.guard[0]
    lim = ctx.limits[0]
    if not (qty == qty and abs(qty) < np.inf) or abs(price) == np.inf:
        trip_nb(ctx, TRIP_STRATEGY_FAULT, i, qty, 0.0)
    same = (g.dup_instrument == i) & (g.dup_side == side) & (g.dup_qty == qty)
    same = same & ((g.dup_price == price) | ((price != price) & (g.dup_price != g.dup_price)))
    if same and now - g.dup_first_ts <= lim.runaway_window_ns:
        g.dup_count += 1
        if g.dup_count >= lim.runaway_repeats:
            trip_nb(ctx, TRIP_RUNAWAY, i, float(g.dup_count), lim.runaway_repeats)
    else:
        g.dup_count = 1
        g.dup_first_ts = now
        g.dup_instrument = i
        g.dup_side = side
        g.dup_qty = qty
        g.dup_price = price
    if reason != REASON_NONE:
        if reason in (REASON_HALTED, REASON_REDUCE_ONLY):
            return  # the kill switch's own refusals (halted, reducing) are no reject storm
        if now - g.reject_window >= _SECOND:
            g.reject_window = now
            g.rejects = 0
        g.rejects += 1
        if g.rejects > lim.max_rejects_per_sec:
            trip_nb(ctx, TRIP_REJECT_RATE, i, float(g.rejects), lim.max_rejects_per_sec)
    elif lim.max_orders_per_sec > 0.0:
        ring = ctx.throttle_ring
        slot = g.throttle_next
        ring[slot] = now
        g.throttle_next = slot + 1 if slot + 1 < ring.size else 0


@cold_kernel
def gate_nb(ctx, i, side, qty, lots, price, order_type):
    """The whole gate for one order of `qty` units asked, `lots` whole lots (< 1: none),
    compiled once and called: its checks, then the bookkeeping of rejects, repeats and
    rate. Returns the reject reason (or REASON_NONE)."""
    reason = check_order_nb(ctx, i, side, lots, price, order_type)
    if reason == REASON_NONE and ctx.clock[0].n_open >= ctx.open_orders.size:
        reason = REASON_BOOK_FULL
    note_order_nb(ctx, i, side, qty, price, reason)
    return reason
