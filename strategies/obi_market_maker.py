"""obi_market_maker: quote both sides around the mid, leaning with order-book imbalance and
against inventory, within an inventory limit.

Quotes, exactly: `imbalance` is (bid size - ask size) / (bid size + ask size)
over the top `levels` book levels (best sizes on L1 data), in [-1, 1]. The
centre is `mid + imbalance_ticks * imbalance * tick - inventory_ticks *
(position / max_position) * tick`. The bid is the centre minus
`half_spread_ticks` ticks rounded down to the grid, the ask the centre plus
`half_spread_ticks` ticks rounded up, and neither may cross the market (bid at
most one tick under the best ask, ask at least one above the best bid). No
bid is kept while `position + qty > max_position`, no ask while `position -
qty < -max_position`. A working quote is replaced once its wanted price has
moved by `requote_ticks` ticks or more (cancelled, and its successor sent once the cancel
is confirmed); quotes are GTC limit orders of `qty`.
While the kill switch has the instrument REDUCING only the quote that shrinks the
position is kept (when `qty` does not exceed it); while HALTED nothing is sent. A quote that
would trade against our own quote on the other side (still working, or its cancel not yet
confirmed) waits: self-trade prevention would refuse it.
"""

from __future__ import annotations

from tickwise import (
    STATE_ACTIVE,
    STATE_HALTED,
    Param,
    PerInstrument,
    Strategy,
    best_ask,
    best_bid,
    book_imbalance,
    buy,
    cancel,
    is_open,
    kernel,
    position,
    round_to_tick,
    sell,
    tick_size,
    trading_state,
)


@kernel
def _keep_quote(ctx, i, side, wanted, price, ids, prices, p):
    """Keep instrument i's quote on one side at `price` (or none when not `wanted`). A quote
    to move is cancelled first; its successor goes once it is gone (confirmed cancelled or
    filled), so that one quote a side works at a time and the two never meet."""
    oid = ids[i]
    if oid != 0 and not is_open(ctx, oid):
        oid = 0  # filled or cancelled since
    if oid != 0:
        moved = abs(prices[i] - price) >= p.requote_ticks * tick_size(ctx, i) - 1e-12
        if not wanted or moved:
            cancel(ctx, oid)  # (nothing when its cancel is already on its way)
        return
    if wanted:
        oid = buy(ctx, i, p.qty, price) if side > 0 else sell(ctx, i, p.qty, price)
        prices[i] = price
    ids[i] = max(oid, 0)


@kernel
def _working(ctx, oid):
    return oid != 0 and is_open(ctx, oid)


@kernel
def _quote(ctx, i, st, p):
    state = trading_state(ctx, i)
    if state == STATE_HALTED:
        return  # (the kill switch has cancelled the quotes; nothing may leave)
    bid = best_bid(ctx, i)
    ask = best_ask(ctx, i)
    if not (bid == bid and ask == ask):
        return
    tick = tick_size(ctx, i)
    pos = position(ctx, i)
    centre = 0.5 * (bid + ask) + p.imbalance_ticks * book_imbalance(ctx, i, p.levels) * tick
    centre -= p.inventory_ticks * (pos / p.max_position) * tick
    my_bid = min(round_to_tick(ctx, i, centre - p.half_spread_ticks * tick, -1), ask - tick)
    my_ask = max(round_to_tick(ctx, i, centre + p.half_spread_ticks * tick, 1), bid + tick)
    my_bid = round_to_tick(ctx, i, my_bid, 0)
    my_ask = round_to_tick(ctx, i, my_ask, 0)
    can_buy = pos + p.qty <= p.max_position and my_bid > 0.0
    can_sell = pos - p.qty >= -p.max_position
    if state != STATE_ACTIVE:  # reducing: only a quote that shrinks the position
        can_buy = can_buy and pos <= -p.qty
        can_sell = can_sell and pos >= p.qty
    if _working(ctx, st.ask_id[i]) and my_bid >= st.ask_px[i]:
        can_buy = False  # (it would meet our own ask)
    if _working(ctx, st.bid_id[i]) and my_ask <= st.bid_px[i]:
        can_sell = False
    _keep_quote(ctx, i, 1, can_buy, my_bid, st.bid_id, st.bid_px, p)
    _keep_quote(ctx, i, -1, can_sell, my_ask, st.ask_id, st.ask_px, p)


@kernel
def on_quote(ctx, q, st, p):
    _quote(ctx, q.instrument, st, p)


@kernel
def on_book(ctx, d, st, p):
    _quote(ctx, d.instrument, st, p)


class ObiMarketMaker(Strategy):
    """Quotes both sides around the mid, skewed by book imbalance and inventory, within a limit."""

    params = {
        "qty": Param(1.0, 0.0, None, "size of each quote"),
        "half_spread_ticks": Param(1, 1, 10_000, "ticks from the centre to each quote"),
        "imbalance_ticks": Param(1.0, 0.0, 1_000.0, "centre shift at full book imbalance (ticks)"),
        "inventory_ticks": Param(1.0, 0.0, 1_000.0, "centre shift at full inventory (ticks)"),
        "max_position": Param(10.0, 0.0, None, "inventory limit, either side"),
        "levels": Param(5, 1, 16, "book levels in the imbalance"),
        "requote_ticks": Param(1, 1, 10_000, "move a quote once its price is this far off"),
    }
    state = {
        "bid_id": PerInstrument(int),
        "ask_id": PerInstrument(int),
        "bid_px": PerInstrument(float),
        "ask_px": PerInstrument(float),
    }
    kinds = ("quotes", "book")
    on_quote = on_quote
    on_book = on_book

    @classmethod
    def check_params(cls, params):
        if params["qty"] <= 0:
            return f"qty must be positive, got {params['qty']}"
        if params["max_position"] < params["qty"]:
            return f"max_position ({params['max_position']}) is below qty ({params['qty']})"
        return None
