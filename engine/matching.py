"""The simulated exchange (compiled): fills the engine's open orders against the market the
replay shows, event by event. The live paper exchange runs these same kernels.

An order reaches the exchange at its `active_ts` (sent at the event's ts_recv, plus the
order latency). On quotes and L2 books it then meets the market as it stood at that
moment, which is the state before the next event of its instrument is applied:

- taking: a marketable order takes the opposite side best price first, up to the size
  shown there; on L2 data it walks down the levels up to its limit (any level for a
  market order). What one of our orders took in a step is not there for the next.
  IOC and market orders cancel what they could not fill; a limit order rests.
- resting: a resting order joins the queue behind the size displayed at its price
  (none when its price is better than the best). Decreases of that size, trades and
  cancellations alike, move it up (it never moves back). A trade print at its price
  fills it only with what is left of the print once the queue ahead is used up; a
  print through its price, or the opposite side quoted at or through it, means every
  order at its price traded, so it fills whole at its limit (maker).
- trades data alone show no queue: a resting order fills only on prints through its price.
- bars: an order decided on bar t first meets bar t+1: marketable orders fill at its open;
  a resting limit fills whole at its limit when the bar's range touches it.

Cancels take effect when they reach the exchange (`cancel_ts`); the order can fill until
then. Our own trades do not change the data: liquidity we took is shown again by the
next update, as in every replay of recorded market data.
"""

from __future__ import annotations

import numpy as np

from tickwise.engine.context import VENUE_GATEWAY
from tickwise.engine.jit import kernel
from tickwise.engine.orders import cancel_row_nb, remove_open_nb
from tickwise.engine.portfolio import apply_fill_nb
from tickwise.engine.quantities import lots_toward_zero, units
from tickwise.engine.schemas import (
    LIQ_MAKER,
    LIQ_TAKER,
    ORD_MARKET,
    STATUS_ACKED,
    STATUS_NEW,
    STATUS_PARTIAL,
    TIF_IOC,
)


@kernel
def _fill(ctx, k, lots, px, liquidity, ts):
    """Fill `lots` of row k of the open-order table at time ts, with the configured fee;
    True when the order is now complete (and its row gone: the last row took its place)."""
    fees = ctx.fees[0]
    qty = units(lots, ctx.instruments[ctx.open_orders[k].instrument])
    if liquidity == LIQ_TAKER:
        fee = qty * (px * fees.taker_bps * 1e-4 + fees.taker_per_unit)
    else:
        fee = qty * (px * fees.maker_bps * 1e-4 + fees.maker_per_unit)
    return book_fill_nb(ctx, k, lots, px, fee, liquidity, ts)


@kernel
def book_fill_nb(ctx, k, lots, px, fee, liquidity, ts):
    """Book a fill of `lots` of row k of the open-order table: logged (in units), applied
    to the position, and the order completed (its row gone: the last row took its place,
    True) or partial."""
    o = ctx.open_orders[k]
    n = ctx.clock[0].n_fill_log
    f = ctx.fill_log[n]
    f.order_id = o.id
    f.ts = ts
    f.instrument = o.instrument
    f.side = o.side
    f.price = px
    f.qty = units(lots, ctx.instruments[o.instrument])
    f.fee = fee
    f.liquidity = liquidity
    ctx.clock[0].n_fill_log = n + 1
    apply_fill_nb(ctx, o.instrument, o.side, lots, px, fee)
    o.filled += lots
    o.status = STATUS_PARTIAL
    if o.filled >= o.lots:
        remove_open_nb(ctx, k)
        return True
    return False


@kernel
def _take(ctx, k, ts, skip):
    """Order k takes liquidity from the opposite side, best price first, up to its limit,
    passing over the first `skip` units (taken by our earlier orders in this step), in
    whole lots (what a level shows beyond its last whole lot is not taken). Returns
    (quantity taken in units, whether the order is complete and its row gone)."""
    o = ctx.open_orders[k]
    i = o.instrument
    lot = ctx.instruments[i].lot_size
    buying = o.side > 0
    s = 1 if buying else 0
    limit = o.price
    any_price = o.order_type == ORD_MARKET
    leaves = o.lots - o.filled
    m = ctx.market[i]
    depth = ctx.book_n[i, s]
    levels = depth
    if depth == 0:  # no book: the best quote is the only level
        levels = 1
    taken = 0.0
    for j in range(levels):
        if depth == 0:
            px = m.ask_px if buying else m.bid_px
            sz = m.ask_sz if buying else m.bid_sz
        else:
            px = ctx.book_px[i, s, j]
            sz = ctx.book_sz[i, s, j]
        if px != px:  # nothing quoted on that side
            break
        if not any_price and (px > limit if buying else px < limit):
            break
        avail = sz - skip
        if avail <= 0.0:
            skip = -avail
            continue
        skip = 0.0
        q = min(leaves, lots_toward_zero(avail, lot))
        if q < leaves:  # it leaves the level with all of it taken (what is under a lot too)
            taken += avail
        else:  # it is complete here: what is left of the level stays for the next order
            taken += units(q, ctx.instruments[i])
        if q <= 0:
            continue
        leaves -= q
        if _fill(ctx, k, q, px, LIQ_TAKER, ts):
            return taken, True
    return taken, False


@kernel
def _shown_at(ctx, i, side, price):
    """Quantity displayed on an order's own side at its price: the queue it joins. Zero when
    its price is better than the best, or inside the book where no level is; NaN when the
    data cannot tell (behind the best on L1, beyond the levels kept on L2, no quotes)."""
    s = 0 if side > 0 else 1
    n = ctx.book_n[i, s]
    if n == 0:
        m = ctx.market[i]
        best = m.bid_px if side > 0 else m.ask_px
        if best == price:
            return m.bid_sz if side > 0 else m.ask_sz
        if price > best if side > 0 else price < best:
            return 0.0
        return np.nan  # behind the best, or no quote at all
    for j in range(n):
        px = ctx.book_px[i, s, j]
        if px == price:
            return ctx.book_sz[i, s, j]
        if px < price if side > 0 else px > price:
            return 0.0
    return np.nan


@kernel
def _enter(ctx, k, ts, taken_bid, taken_ask):
    """A fresh order k meets the market as it stands at ts: it takes what it can, then rests
    (a limit) or cancels its rest (IOC, market). Returns (row gone, taken_bid, taken_ask)."""
    o = ctx.open_orders[k]
    buying = o.side > 0
    got, done = _take(ctx, k, ts, taken_ask if buying else taken_bid)
    if buying:
        taken_ask += got
    else:
        taken_bid += got
    if done:
        return True, taken_bid, taken_ask
    o = ctx.open_orders[k]
    if o.order_type == ORD_MARKET or o.tif == TIF_IOC:
        cancel_row_nb(ctx, k)
        return True, taken_bid, taken_ask
    if o.status == STATUS_NEW:
        o.status = STATUS_ACKED
    o.queue = _shown_at(ctx, o.instrument, o.side, o.price)
    return False, taken_bid, taken_ask


@kernel
def arrive_nb(ctx, i):
    """Instrument i's orders that reached the exchange since its last event meet the market
    as it stood then. Called before the event at hand is applied; orders that arrive
    before anything is known of the instrument wait for its first event instead."""
    if ctx.inst_open[i] == 0:
        return
    if ctx.clock[0].venue == VENUE_GATEWAY:
        return  # its orders went to an exchange process: none of them is matched here
    if ctx.market[i].ts == 0:
        return
    now = ctx.clock[0].now
    taken_bid = 0.0
    taken_ask = 0.0
    k = 0
    while k < ctx.clock[0].n_open:
        o = ctx.open_orders[k]
        if o.instrument != i or o.status != STATUS_NEW or o.active_ts > now:
            k += 1
            continue
        gone, taken_bid, taken_ask = _enter(ctx, k, o.active_ts, taken_bid, taken_ask)
        if not gone:
            k += 1


@kernel
def match_quote_nb(ctx, i):
    """After a quote (or a whole L2 update) of instrument i: cancels that arrived take
    effect, resting orders fill if the opposite side now reaches them, else move up their
    queue; orders that could not be judged on arrival (nothing known yet) are judged now."""
    if ctx.inst_open[i] == 0:
        return
    if ctx.clock[0].venue == VENUE_GATEWAY:
        return  # its orders went to an exchange process: none of them is matched here
    now = ctx.clock[0].now
    m = ctx.market[i]
    taken_bid = 0.0
    taken_ask = 0.0
    k = 0
    while k < ctx.clock[0].n_open:
        o = ctx.open_orders[k]
        if o.instrument != i or o.active_ts > now:
            k += 1
            continue
        if o.cancel_ts != 0 and o.cancel_ts <= now:  # the cancel arrived before this event
            cancel_row_nb(ctx, k)
            continue
        if o.status == STATUS_NEW:
            gone, taken_bid, taken_ask = _enter(ctx, k, now, taken_bid, taken_ask)
            if not gone:
                k += 1
            continue
        buying = o.side > 0
        crossed = m.ask_px <= o.price if buying else m.bid_px >= o.price
        if crossed:
            _fill(ctx, k, o.lots - o.filled, o.price, LIQ_MAKER, now)  # completes it
            continue
        shown = _shown_at(ctx, i, o.side, o.price)
        if shown == shown:
            o.queue = shown if o.queue != o.queue else min(o.queue, shown)
        k += 1


@kernel
def match_trade_nb(ctx, i, px, sz):
    """A trade print of instrument i: fresh orders trade at its price, up to its size;
    resting ones fill whole when it prints through their limit, and at their limit with
    what the print leaves once the queue ahead of them is used up."""
    if ctx.inst_open[i] == 0:
        return
    if ctx.clock[0].venue == VENUE_GATEWAY:
        return  # its orders went to an exchange process: none of them is matched here
    now = ctx.clock[0].now
    lot = ctx.instruments[i].lot_size
    taken = 0.0
    k = 0
    while k < ctx.clock[0].n_open:
        o = ctx.open_orders[k]
        if o.instrument != i or o.active_ts > now:
            k += 1
            continue
        if o.cancel_ts != 0 and o.cancel_ts <= now:
            cancel_row_nb(ctx, k)
            continue
        buying = o.side > 0
        leaves = o.lots - o.filled
        if o.status == STATUS_NEW:
            marketable = o.order_type == ORD_MARKET or (px <= o.price if buying else px >= o.price)
            q = min(leaves, lots_toward_zero(max(sz - taken, 0.0), lot))
            if marketable and q > 0:
                taken += units(q, ctx.instruments[i])
                if _fill(ctx, k, q, px, LIQ_TAKER, now):
                    continue
            o = ctx.open_orders[k]
            if o.order_type == ORD_MARKET or o.tif == TIF_IOC:
                cancel_row_nb(ctx, k)
                continue
            if o.status == STATUS_NEW:
                o.status = STATUS_ACKED
            o.queue = _shown_at(ctx, i, o.side, o.price)
            k += 1
            continue
        if px < o.price if buying else px > o.price:  # printed through: all at its price traded
            _fill(ctx, k, leaves, o.price, LIQ_MAKER, now)
            continue
        ahead = o.queue
        if px == o.price and ahead == ahead:
            if sz <= ahead:
                o.queue = ahead - sz
            else:
                o.queue = 0.0
                q = min(leaves, lots_toward_zero(sz - ahead, lot))
                if q > 0 and _fill(ctx, k, q, o.price, LIQ_MAKER, now):
                    continue
        k += 1


@kernel
def match_bar_nb(ctx, i, open_, high, low):
    """A new bar of instrument i, before the strategy sees it: fresh orders (decided on an
    earlier bar) fill at its open when marketable; resting limits fill whole at their
    limit when its range touches them, including limits that came to rest at this open."""
    if ctx.inst_open[i] == 0:
        return
    if ctx.clock[0].venue == VENUE_GATEWAY:
        return  # its orders went to an exchange process: none of them is matched here
    now = ctx.clock[0].now
    k = 0
    while k < ctx.clock[0].n_open:
        o = ctx.open_orders[k]
        if o.instrument != i or o.active_ts > now:
            k += 1
            continue
        if o.cancel_ts != 0 and o.cancel_ts <= now:
            cancel_row_nb(ctx, k)
            continue
        buying = o.side > 0
        if o.status == STATUS_NEW:
            market = o.order_type == ORD_MARKET
            if market or (open_ <= o.price if buying else open_ >= o.price):
                _fill(ctx, k, o.lots - o.filled, open_, LIQ_TAKER, now)
                continue
            if o.tif == TIF_IOC:
                cancel_row_nb(ctx, k)
                continue
            o.status = STATUS_ACKED
        if low <= o.price if buying else high >= o.price:
            _fill(ctx, k, o.lots - o.filled, o.price, LIQ_MAKER, now)
            continue
        k += 1
