"""The pre-trade gate every order passes before it may leave, and the kill switch's latch
(compiled).

`check_order_nb` returns why an order may not leave (a `REASON_*`), checking in
turn: the order itself (instrument, lot, tick), the trading state (HALTED lets
nothing automated pass, REDUCING only orders that reduce a position), open
orders, size, the price collar around a fresh reference price, notional,
position and gross exposure counting working orders, self-trade prevention
and the order-rate throttle. Limits are in `ctx.limits` (engine/limits.py).

`trip_nb` is the kill switch's latch: it moves the session (or one instrument)
to HALTED or REDUCING through `transition_nb`, which records the cause with
the values that tripped it and logs the change, and leaves the cancels and
any flattening to `engine.killswitch`, which sends them in the same event.
"""

from __future__ import annotations

import numpy as np

from tickwise.engine.jit import cold_kernel, kernel

from .context import (
    CLK_N_OPEN,
    CLK_N_TRANSITIONS,
    CLK_NOW,
    CLK_RECV,
    G_DUP_COUNT,
    G_DUP_FIRST_TS,
    G_FLATTENING,
    G_PENDING,
    G_REJECT_WINDOW,
    G_REJECTS,
    G_STATE,
    G_THROTTLE_NEXT,
    G_TRIP,
    G_TRIP_INSTRUMENT,
    G_TRIP_TS,
    G_TRIPS,
    GF_DUP_INSTRUMENT,
    GF_DUP_PRICE,
    GF_DUP_QTY,
    GF_DUP_SIDE,
    GF_TRIP_LIMIT,
    GF_TRIP_VALUE,
    IG_STATE,
    IG_TRIP,
    IG_TRIP_TS,
    IGF_TRIP_LIMIT,
    IGF_TRIP_VALUE,
)
from .limits import (
    LIM_ACTION,
    LIM_COLLAR_PCT,
    LIM_COLLAR_TICKS,
    LIM_JUMP_HALTS_INSTRUMENT,
    LIM_MAX_GROSS,
    LIM_MAX_NOTIONAL,
    LIM_MAX_OPEN_ORDERS,
    LIM_MAX_ORDER_QTY,
    LIM_MAX_ORDERS_PER_SEC,
    LIM_MAX_POSITION,
    LIM_MAX_REJECTS_PER_SEC,
    LIM_REFERENCE_AGE_NS,
    LIM_RUNAWAY_REPEATS,
    LIM_RUNAWAY_WINDOW_NS,
    LIM_SELF_TRADE,
)
from .market import mid_price
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
    STATE_ACTIVE,
    STATE_HALTED,
    STATE_REDUCING,
    TRIP_NONE,
    TRIP_PRICE_JUMP,
    TRIP_REJECT_RATE,
    TRIP_RUNAWAY,
    TRIP_STRATEGY_FAULT,
)

_GRID_TOLERANCE = 1e-9  # relative: prices and lots are decimals held in binary floats
_SECOND = 1_000_000_000


@kernel
def _on_grid(value, step):
    units = value / step
    return abs(units - np.round(units)) <= _GRID_TOLERANCE * max(1.0, abs(units))


@kernel
def trading_state(ctx, i):
    """The state instrument i trades under: the stricter of the session's and its own."""
    return max(ctx.guard[G_STATE], ctx.inst_guard[i, IG_STATE])


@kernel
def _open_qty(ctx, instrument, side, staying):
    total = 0.0
    if ctx.inst_open[instrument] == 0:
        return total
    for k in range(ctx.clock[CLK_N_OPEN]):
        o = ctx.open_orders[k]
        if o.instrument == instrument and o.side == side and (o.cancel_ts == 0 or not staying):
            total += o.qty - o.filled
    return total


@kernel
def working_qty(ctx, instrument, side):
    """Unfilled quantity of the open orders of one instrument on one side (+1 buy, -1 sell)."""
    return _open_qty(ctx, instrument, side, False)


@kernel
def staying_qty(ctx, instrument, side):
    """Like `working_qty`, leaving out orders whose cancel is already on its way."""
    return _open_qty(ctx, instrument, side, True)


@kernel
def reduces_position(ctx, i, side, qty):
    """True when the order, with the working orders on its side that are staying, can only
    shrink the position."""
    pos = ctx.portfolio[i].qty
    if pos == 0.0 or (pos > 0.0) == (side > 0):
        return False
    return staying_qty(ctx, i, side) + qty <= abs(pos) * (1.0 + 1e-12)


@kernel
def reference_price(ctx, i):
    """The price orders of instrument i are checked against: its mid (or last trade, or bar
    close); NaN when there is none, or when it is older than the limit allows."""
    m = ctx.market[i]
    age = ctx.clock[CLK_RECV] - m.ts
    if m.ts == 0 or age > ctx.limits[LIM_REFERENCE_AGE_NS]:
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
        q = ctx.portfolio[j].qty
        if q != 0.0:
            mark = mid_price(ctx, j)
            gross += abs(q) * (mark if mark == mark else ctx.portfolio[j].avg_px)
    for k in range(ctx.clock[CLK_N_OPEN]):
        o = ctx.open_orders[k]
        px = o.price if o.price == o.price else mid_price(ctx, o.instrument)
        if px == px:
            gross += (o.qty - o.filled) * px
    return gross


@kernel
def _self_trade(ctx, i, side, price, order_type):
    """True when the order would trade against one of our own resting orders."""
    if ctx.inst_open[i] == 0:
        return False
    for k in range(ctx.clock[CLK_N_OPEN]):
        o = ctx.open_orders[k]
        if o.instrument != i or o.side == side or o.order_type == ORD_MARKET:
            continue
        if order_type == ORD_MARKET or (price >= o.price if side > 0 else price <= o.price):
            return True
    return False


@kernel
def check_order_nb(ctx, i, side, qty, price, order_type):
    """The reject reason of an order, or REASON_NONE when it may leave."""
    if i < 0 or i >= ctx.instruments.size or ctx.instruments[i].tick_size == 0.0:
        return REASON_UNKNOWN_INSTRUMENT
    inst = ctx.instruments[i]
    if not (qty > 0.0 and qty < np.inf) or not _on_grid(qty, inst.lot_size):
        return REASON_BAD_QTY
    limit_order = order_type == ORD_LIMIT
    if limit_order and (
        not (price > 0.0 and price < np.inf) or not _on_grid(price, inst.tick_size)
    ):
        return REASON_BAD_PRICE
    lim = ctx.limits
    state = trading_state(ctx, i)
    flattening = ctx.guard[G_FLATTENING] != 0
    if state == STATE_HALTED and not flattening:
        return REASON_HALTED
    reducing = reduces_position(ctx, i, side, qty)
    if (state == STATE_REDUCING or flattening) and not reducing:
        return REASON_REDUCE_ONLY
    if ctx.clock[CLK_N_OPEN] >= lim[LIM_MAX_OPEN_ORDERS]:
        return REASON_MAX_OPEN_ORDERS
    if qty > lim[LIM_MAX_ORDER_QTY]:
        return REASON_MAX_QTY
    # The price the order may trade at: its limit, or for a market order the far touch.
    ref = reference_price(ctx, i)
    m = ctx.market[i]
    px = price if limit_order else (m.ask_px if side > 0 else m.bid_px)
    collar_pct = lim[LIM_COLLAR_PCT]
    collar_ticks = lim[LIM_COLLAR_TICKS]
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
    if lim[LIM_MAX_NOTIONAL] < np.inf and not notional <= lim[LIM_MAX_NOTIONAL]:
        return REASON_MAX_NOTIONAL  # (also when no price is known to measure it by)
    if not reducing:
        if lim[LIM_MAX_POSITION] < np.inf:
            worst = ctx.portfolio[i].qty + side * (working_qty(ctx, i, side) + qty)
            if abs(worst) > lim[LIM_MAX_POSITION] * (1.0 + 1e-12):
                return REASON_POSITION_LIMIT
        if (
            lim[LIM_MAX_GROSS] < np.inf
            and not _gross_exposure(ctx) + notional <= lim[LIM_MAX_GROSS]
        ):
            return REASON_GROSS_LIMIT
    if lim[LIM_SELF_TRADE] != 0.0 and _self_trade(ctx, i, side, price, order_type):
        return REASON_SELF_TRADE
    if lim[LIM_MAX_ORDERS_PER_SEC] > 0.0:
        nth_last = ctx.throttle_ring[ctx.guard[G_THROTTLE_NEXT]]
        if ctx.clock[CLK_RECV] - nth_last < _SECOND:
            return REASON_THROTTLE
    return REASON_NONE


@cold_kernel
def transition_nb(ctx, scope, trigger, state, instrument, value, limit, now):
    """Move `scope` (an instrument, or -1: the whole session) to `state` because of `trigger`
    at time `now` (ns), which becomes its cause (none once ACTIVE again), and log the change
    for the journal. Each scope keeps its own cause, so one never overwrites or clears
    another's."""
    cause = trigger if state != STATE_ACTIVE else TRIP_NONE
    if scope >= 0:
        ig = ctx.inst_guard
        before = ig[scope, IG_STATE]
        ig[scope, IG_STATE] = state
        ig[scope, IG_TRIP] = cause
        ig[scope, IG_TRIP_TS] = now if cause != TRIP_NONE else 0
        ctx.inst_guard_f[scope, IGF_TRIP_VALUE] = value
        ctx.inst_guard_f[scope, IGF_TRIP_LIMIT] = limit
    else:
        g = ctx.guard
        before = g[G_STATE]
        g[G_STATE] = state
        g[G_TRIP] = cause
        g[G_TRIP_TS] = now if cause != TRIP_NONE else 0
        g[G_TRIP_INSTRUMENT] = instrument if cause != TRIP_NONE else -1
        ctx.guard_f[GF_TRIP_VALUE] = value
        ctx.guard_f[GF_TRIP_LIMIT] = limit
    n = ctx.clock[CLK_N_TRANSITIONS]
    if n < ctx.transitions.size:  # (room for every change a batch can make: see new_context)
        t = ctx.transitions[n]
        t.ts = now
        t.scope = scope
        t.trigger = trigger
        t.from_state = before
        t.to_state = state
        t.instrument = instrument
        t.value = value
        t.limit = limit
        ctx.clock[CLK_N_TRANSITIONS] = n + 1


@kernel
def trip_nb(ctx, trip, instrument, value, limit):
    """The kill switch trips in the event under way (see `trip_at_nb`)."""
    return trip_at_nb(ctx, trip, instrument, value, limit, ctx.clock[CLK_NOW])


@kernel
def trip_at_nb(ctx, trip, instrument, value, limit, now):
    """The kill switch trips at `now`: move to the state configured for `trip` (nothing when
    that trigger is off, or that state or a stricter one is already in force). The trigger
    becomes the cause of the new state until a person resumes; cancels and flattening
    follow in the same event."""
    action = np.int64(ctx.limits[LIM_ACTION + trip])
    if action == STATE_ACTIVE:
        return False
    g = ctx.guard
    scope = -1
    if trip == TRIP_PRICE_JUMP and ctx.limits[LIM_JUMP_HALTS_INSTRUMENT] != 0.0 and instrument >= 0:
        if ctx.inst_guard[instrument, IG_STATE] >= action or g[G_STATE] >= action:
            return False
        scope = instrument
    elif g[G_STATE] >= action:
        return False
    transition_nb(ctx, scope, trip, action, instrument, value, limit, now)
    g[G_TRIPS] += 1
    g[G_PENDING] = 1
    return True


@kernel
def note_order_nb(ctx, i, side, qty, price, reason):
    """After the gate: count rejects (reject rate), spot a runaway strategy repeating the
    same order, a strategy sending NaN or infinite values, and stamp the throttle."""
    now = ctx.clock[CLK_RECV]
    g = ctx.guard
    gf = ctx.guard_f
    lim = ctx.limits
    if not (qty == qty and abs(qty) < np.inf) or abs(price) == np.inf:
        trip_nb(ctx, TRIP_STRATEGY_FAULT, i, qty, 0.0)
    same = (gf[GF_DUP_INSTRUMENT] == i) & (gf[GF_DUP_SIDE] == side) & (gf[GF_DUP_QTY] == qty)
    same = same & (
        (gf[GF_DUP_PRICE] == price) | ((price != price) & (gf[GF_DUP_PRICE] != gf[GF_DUP_PRICE]))
    )
    if same and now - g[G_DUP_FIRST_TS] <= lim[LIM_RUNAWAY_WINDOW_NS]:
        g[G_DUP_COUNT] += 1
        if g[G_DUP_COUNT] >= lim[LIM_RUNAWAY_REPEATS]:
            trip_nb(ctx, TRIP_RUNAWAY, i, float(g[G_DUP_COUNT]), lim[LIM_RUNAWAY_REPEATS])
    else:
        g[G_DUP_COUNT] = 1
        g[G_DUP_FIRST_TS] = now
        gf[GF_DUP_INSTRUMENT] = i
        gf[GF_DUP_SIDE] = side
        gf[GF_DUP_QTY] = qty
        gf[GF_DUP_PRICE] = price
    if reason != REASON_NONE:
        if reason in (REASON_HALTED, REASON_REDUCE_ONLY):
            return  # the kill switch's own refusals (halted, reducing) are no reject storm
        if now - g[G_REJECT_WINDOW] >= _SECOND:
            g[G_REJECT_WINDOW] = now
            g[G_REJECTS] = 0
        g[G_REJECTS] += 1
        if g[G_REJECTS] > lim[LIM_MAX_REJECTS_PER_SEC]:
            trip_nb(ctx, TRIP_REJECT_RATE, i, float(g[G_REJECTS]), lim[LIM_MAX_REJECTS_PER_SEC])
    elif lim[LIM_MAX_ORDERS_PER_SEC] > 0.0:
        ring = ctx.throttle_ring
        slot = g[G_THROTTLE_NEXT]
        ring[slot] = now
        g[G_THROTTLE_NEXT] = slot + 1 if slot + 1 < ring.size else 0


@cold_kernel
def gate_nb(ctx, i, side, qty, price, order_type):
    """The whole gate for one order, compiled once and called: its checks, then the
    bookkeeping of rejects, repeats and rate. Returns the reject reason (or REASON_NONE)."""
    reason = check_order_nb(ctx, i, side, qty, price, order_type)
    if reason == REASON_NONE and ctx.clock[CLK_N_OPEN] >= ctx.open_orders.size:
        reason = REASON_BOOK_FULL
    note_order_nb(ctx, i, side, qty, price, reason)
    return reason
