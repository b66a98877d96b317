"""The simulated exchange's matching step (compiled): fills the engine's open orders against
the market the replay shows, event by event.

An order is first matched at the next event of its instrument after it was
sent, never against the event that made the strategy decide. Fresh marketable
orders take liquidity at the opposite best price, up to the displayed size
(taker); IOC and market orders cancel what they could not fill; the rest
rests and fills at its limit price when the market reaches it (maker).
Queue position, latency models and book walking refine this in the
backtester issue.
"""

from __future__ import annotations

import numpy as np

from tickwise.engine.context import (
    CFG_MAKER_FEE_BPS,
    CFG_TAKER_FEE_BPS,
    CLK_N_FILL_LOG,
    CLK_N_OPEN,
    CLK_NOW,
)
from tickwise.engine.jit import kernel
from tickwise.engine.orders import cancel_row_nb, remove_open_nb
from tickwise.engine.portfolio import apply_fill_nb
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
def _fill(ctx, k, qty, px, liquidity):
    """Fill row k of the open-order table; True when the order is now complete (and gone)."""
    o = ctx.open_orders[k]
    n = ctx.clock[CLK_N_FILL_LOG]
    bps = ctx.config[CFG_TAKER_FEE_BPS if liquidity == LIQ_TAKER else CFG_MAKER_FEE_BPS]
    fee = qty * px * bps * 1e-4
    f = ctx.fill_log[n]
    f.order_id = o.id
    f.ts = ctx.clock[CLK_NOW]
    f.instrument = o.instrument
    f.side = o.side
    f.price = px
    f.qty = qty
    f.fee = fee
    f.liquidity = liquidity
    ctx.clock[CLK_N_FILL_LOG] = n + 1
    apply_fill_nb(ctx, o.instrument, o.side, qty, px, fee)
    o.filled += qty
    o.status = STATUS_PARTIAL
    if o.qty - o.filled <= 1e-12 * o.qty:
        remove_open_nb(ctx, k)
        return True
    return False


@kernel
def _match(ctx, i, buy_px, buy_sz, sell_px, sell_sz, rest_buy_px, rest_sell_px):
    """Match instrument i's open orders.

    Fresh buys take `buy_sz` at `buy_px` (fresh sells `sell_sz` at `sell_px`);
    resting buys fill at their limit when `rest_buy_px` <= limit (resting sells
    when `rest_sell_px` >= limit), up to the same sizes. NaN means no liquidity.
    """
    now = ctx.clock[CLK_NOW]
    k = 0
    while k < ctx.clock[CLK_N_OPEN]:
        o = ctx.open_orders[k]
        if o.instrument != i or o.active_ts > now:  # another instrument, or still in flight
            k += 1
            continue
        if o.cancel_ts != 0 and o.cancel_ts <= now:  # the cancel has arrived: it goes first
            cancel_row_nb(ctx, k)
            continue
        buying = o.side > 0
        avail = buy_sz if buying else sell_sz
        leaves = o.qty - o.filled
        if o.status == STATUS_NEW:
            px = buy_px if buying else sell_px
            marketable = px == px and (
                o.order_type == ORD_MARKET or (px <= o.price if buying else px >= o.price)
            )
            if marketable and avail > 0.0 and _fill(ctx, k, min(leaves, avail), px, LIQ_TAKER):
                continue
            o = ctx.open_orders[k]
            if o.order_type == ORD_MARKET or o.tif == TIF_IOC:
                cancel_row_nb(ctx, k)
                continue
            if o.status == STATUS_NEW:
                o.status = STATUS_ACKED
            k += 1
            continue
        through = rest_buy_px <= o.price if buying else rest_sell_px >= o.price
        if through and avail > 0.0 and _fill(ctx, k, min(leaves, avail), o.price, LIQ_MAKER):
            continue
        k += 1


@kernel
def match_quote_nb(ctx, i):
    """Against the instrument's best bid and ask (quotes or the top of an L2 book)."""
    m = ctx.market[i]
    _match(ctx, i, m.ask_px, m.ask_sz, m.bid_px, m.bid_sz, m.ask_px, m.bid_px)


@kernel
def match_trade_nb(ctx, i, px, sz):
    """Against a trade print: fresh orders trade at its price, resting ones fill when it
    prints at or through their limit (up to its size)."""
    _match(ctx, i, px, sz, px, sz, px, px)


@kernel
def match_bar_nb(ctx, i, open_, high, low):
    """Against a new bar: fresh orders fill at its open, resting limits when its range
    reaches them. Orders decided on a bar are first matched on the next bar."""
    _match(ctx, i, open_, np.inf, open_, np.inf, low, high)
