"""Order kernels: what a strategy can do (submit, cancel) and ask about its own orders.

Every action is written to `ctx.order_log` (new, cancelled, rejected) for
Python to send and journal after the batch; nothing is allocated per order.
An order that fails the risk gate is logged as rejected with its reason and
its id is returned negated, so a strategy can tell (`if id < 0`).

Quantities come in and go out in units and are held in whole lots in between
(engine.quantities): `buy`/`sell` refuse a quantity that is no whole number of
lots, `trade_to` rounds its target toward zero to whole lots.
"""

from __future__ import annotations

import numpy as np

from tickwise.engine.jit import cold_kernel, kernel

from .context import VENUE_GATEWAY
from .quantities import MAX_LOTS, lots_toward_zero, units, whole_lots
from .risk import gate_nb, trading_state, working_lots
from .schemas import (
    ORD_LIMIT,
    ORD_MARKET,
    REASON_HALTED,
    REASON_NONE,
    REASON_REDUCE_ONLY,
    SIDE_BUY,
    SIDE_SELL,
    STATE_ACTIVE,
    STATE_HALTED,
    STATE_REDUCING,
    STATUS_CANCELLED,
    STATUS_NEW,
    STATUS_REJECTED,
    TIF_GTC,
    TIF_IOC,
)


@kernel
def log_order_nb(ctx, oid, i, side, price, qty, order_type, tif, status, reason):
    n = ctx.clock[0].n_order_log
    if n >= ctx.order_log.size:
        return False
    row = ctx.order_log[n]
    row.id = oid
    row.ts = ctx.clock[0].recv
    row.instrument = i
    row.side = side
    row.price = price
    row.qty = qty
    row.order_type = order_type
    row.tif = tif
    row.status = status
    row.session = ctx.guard[0].session
    row.strategy = ctx.guard[0].strategy
    row.reason = reason
    ctx.clock[0].n_order_log = n + 1
    return True


@cold_kernel
def _log_reject(ctx, oid, i, side, price, qty, order_type, tif, reason):
    """Log a refused order; of those refused because trading is halted or reducing, only the
    first of each reason since the state last changed (a halted strategy that keeps trying
    would log a row per event), counting the rest."""
    g = ctx.guard[0]
    if reason == REASON_HALTED:
        g.refused_halted += 1
        if g.refused_halted > 1:
            g.unlogged_halted += 1
            return
    elif reason == REASON_REDUCE_ONLY:
        g.refused_reducing += 1
        if g.refused_reducing > 1:
            g.unlogged_reducing += 1
            return
    log_order_nb(ctx, oid, i, side, price, qty, order_type, tif, STATUS_REJECTED, reason)


@kernel
def order_latency_nb(ctx, oid):
    """This order's entry latency: the base plus its share of the jitter, drawn from a hash
    of (seed, order id), so it never depends on how the replay was batched."""
    base = ctx.clock[0].latency_ns
    jitter = ctx.clock[0].jitter_ns
    if jitter <= 0:
        return base
    z = np.uint64(oid) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(ctx.clock[0].latency_seed)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)  # splitmix64 finaliser
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    u = float(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)
    return base + np.int64(u * jitter)


@kernel
def submit_nb(ctx, i, side, qty, lots, price, order_type, tif):
    """Send an order of `lots` whole lots (`qty` is what was asked, in units, for the record
    of a refusal; lots < 1: it was no whole number of lots): its id (> 0) if it passed the
    risk gate, else minus its id."""
    oid = ctx.clock[0].next_id
    ctx.clock[0].next_id = oid + 1
    reason = gate_nb(ctx, i, side, qty, lots, price, order_type)
    n_open = ctx.clock[0].n_open
    if reason != REASON_NONE:
        _log_reject(ctx, oid, i, side, price, qty, order_type, tif, reason)
        return -oid
    sent = units(lots, ctx.instruments[i])
    if not log_order_nb(ctx, oid, i, side, price, sent, order_type, tif, STATUS_NEW, REASON_NONE):
        return -oid  # the batch log is full; the session reports it as an error
    o = ctx.open_orders[n_open]
    o.id = oid
    o.ts = ctx.clock[0].recv
    o.active_ts = ctx.clock[0].recv + order_latency_nb(ctx, oid)
    o.cancel_ts = 0
    o.cancel_unsent = 0
    o.instrument = i
    o.side = side
    o.price = price
    o.lots = lots
    o.filled = 0
    o.queue = np.nan
    o.order_type = order_type
    o.tif = tif
    o.status = STATUS_NEW
    o.session = ctx.guard[0].session
    o.strategy = ctx.guard[0].strategy
    ctx.clock[0].n_open = n_open + 1
    ctx.inst_open[i] += 1
    return oid


# The order functions below call `submit_nb` from one place each: it is inlined where it
# is called, and one copy per call keeps compile times down.


@kernel
def _lot_of(ctx, instrument):
    """Instrument's lot, or NaN for an id outside the table (the gate names it)."""
    if instrument < 0 or instrument >= ctx.instruments.size:
        return np.nan
    return ctx.instruments[instrument].lot_size


@kernel
def _send(ctx, instrument, side, qty, lots, tif, price):
    """A limit order at `price`, or a market order (IOC) when price is NaN."""
    market = price != price
    order_type = ORD_MARKET if market else ORD_LIMIT
    tif = TIF_IOC if market else tif
    return submit_nb(ctx, instrument, side, qty, lots, price, order_type, tif)


@kernel
def buy(ctx, instrument, qty, price=np.nan, tif=TIF_GTC):
    """Buy `qty` units (a whole number of lots, else refused as `bad_qty`): a limit order
    at `price`, or a market order (IOC) when price is NaN."""
    lots = whole_lots(qty, _lot_of(ctx, instrument))
    return _send(ctx, instrument, SIDE_BUY, qty, lots, tif, price)


@kernel
def sell(ctx, instrument, qty, price=np.nan, tif=TIF_GTC):
    """Sell `qty` units (a whole number of lots, else refused as `bad_qty`): a limit order
    at `price`, or a market order (IOC) when price is NaN."""
    lots = whole_lots(qty, _lot_of(ctx, instrument))
    return _send(ctx, instrument, SIDE_SELL, qty, lots, tif, price)


@kernel
def remove_open_nb(ctx, k):
    """Drop row k of the open-order table (the last row takes its place)."""
    last = ctx.clock[0].n_open - 1
    ctx.inst_open[ctx.open_orders[k].instrument] -= 1
    if k != last:
        ctx.open_orders[k] = ctx.open_orders[last]
    ctx.clock[0].n_open = last


@kernel
def cancel_row_nb(ctx, k):
    """The exchange cancels the order in row k now: logged, then removed from the table."""
    o = ctx.open_orders[k]
    left = units(o.lots - o.filled, ctx.instruments[o.instrument])
    log_order_nb(ctx, o.id, o.instrument, o.side, o.price, left, o.order_type, o.tif,
                 STATUS_CANCELLED, REASON_NONE)  # fmt: skip
    remove_open_nb(ctx, k)


@kernel
def _request_cancel(ctx, k):
    """The strategy asks to cancel row k. Without latency it takes effect at once; with it,
    the request reaches the exchange after the order latency, and the order can still fill
    until then; an exchange process (VENUE_GATEWAY) is sent it after the batch. False when
    a cancel of it is already on its way."""
    o = ctx.open_orders[k]
    if o.cancel_ts != 0:
        return False
    clock = ctx.clock[0]
    if clock.venue == VENUE_GATEWAY:
        o.cancel_ts = max(clock.recv, 1)  # (nonzero: asked)
        o.cancel_unsent = 1
        clock.cancel_asks += 1
        return True
    delay = order_latency_nb(ctx, np.int64(o.id))
    if delay == 0:
        cancel_row_nb(ctx, k)
    else:
        o.cancel_ts = clock.recv + delay
    return True


@kernel
def open_row_nb(ctx, order_id):
    """The open-order table's row of `order_id`, or -1 when it is not open."""
    for k in range(ctx.clock[0].n_open):
        if ctx.open_orders[k].id == order_id:
            return k
    return -1


@kernel
def cancel(ctx, order_id):
    """Cancel one open order; False when it is not open (filled, cancelled, unknown) or a
    cancel of it is already on its way."""
    k = open_row_nb(ctx, order_id)
    return False if k < 0 else _request_cancel(ctx, k)


@kernel
def cancel_all(ctx, instrument=-1):
    """Cancel every open order (of one instrument, or all with -1); how many cancels were sent."""
    cancelled = 0
    k = ctx.clock[0].n_open - 1
    while k >= 0:
        if (instrument < 0 or ctx.open_orders[k].instrument == instrument) and _request_cancel(
            ctx, k
        ):
            cancelled += 1
        k -= 1
    return cancelled


@kernel
def is_open(ctx, order_id):
    """True while the order is working (not yet filled, cancelled or rejected)."""
    return open_row_nb(ctx, order_id) >= 0


@kernel
def open_orders(ctx, instrument):
    """How many orders of one instrument are open."""
    return ctx.inst_open[instrument]


@kernel
def working_qty(ctx, instrument, side):
    """Unfilled quantity (units) of the open orders of one instrument on one side (+1 buy,
    -1 sell)."""
    return units(working_lots(ctx, instrument, side), ctx.instruments[instrument])


@kernel
def net_lots(ctx, instrument):
    """The position once working orders fill, in whole lots."""
    pos = ctx.portfolio[instrument].lots
    if ctx.inst_open[instrument] == 0:
        return pos
    return pos + working_lots(ctx, instrument, SIDE_BUY) - working_lots(ctx, instrument, SIDE_SELL)


@kernel
def net_position(ctx, instrument):
    """The position once working orders fill (units): position + working buys - working
    sells."""
    if ctx.inst_open[instrument] == 0:
        return ctx.portfolio[instrument].qty
    return units(net_lots(ctx, instrument), ctx.instruments[instrument])


@kernel
def trade_to(ctx, instrument, target):
    """Send a market order for the difference between `target` (units, rounded toward zero
    to whole lots) and the net position; its id, or 0 when there is nothing to do (the
    difference is less than one lot). It sends only what the trading state lets leave:
    nothing while the instrument is HALTED, and while it is REDUCING at most what brings
    the position to flat (the target moved towards 0, never past it). A target that is
    NaN or infinite is sent as asked, for the gate to refuse as a strategy fault (and one
    beyond MAX_LOTS as bad_qty)."""
    state = STATE_ACTIVE
    if instrument >= 0 and instrument < ctx.instruments.size:  # (else the gate names it)
        state = trading_state(ctx, instrument)
        if state == STATE_HALTED:
            return 0
        if state == STATE_ACTIVE and target == net_position(ctx, instrument):
            return 0  # (the common call, each event: the target is the net position just read)
    return _trade_to(ctx, instrument, target, state)


@kernel
def _trade_to(ctx, instrument, target, state):
    """The rest of `trade_to`, when there may be something to send. (Inlined: a called
    kernel is handed the whole context, which costs more than its body saves.)"""
    lot = _lot_of(ctx, instrument)
    if not (lot > 0.0 and abs(target) / lot <= MAX_LOTS):  # unknown id; NaN, inf or too big
        return _send(ctx, instrument, SIDE_BUY, target, np.int64(-1), TIF_GTC, np.nan)
    net = net_lots(ctx, instrument)
    goal = lots_toward_zero(target, lot)
    asked = goal
    if state == STATE_REDUCING:
        pos = ctx.portfolio[instrument].lots
        goal = min(max(goal, min(pos, 0)), max(pos, 0))
    if goal == net:
        if goal == 0 and asked == 0 and abs(target) / lot > 1e-9:
            clock = ctx.clock[0]  # asked for a position of less than one lot: said in the summary
            clock.under_lot += 1
            clock.under_lot_instrument = instrument
        return 0
    side = SIDE_BUY if goal > net else SIDE_SELL
    lots = abs(goal - net)
    return _send(ctx, instrument, side, units(lots, ctx.instruments[instrument]), lots, TIF_GTC,
                 np.nan)  # fmt: skip


@kernel
def now(ctx):
    """The time of the event being processed (ns since the epoch)."""
    return ctx.clock[0].now
