"""Market state kernels: what the engine knows of each instrument, and what strategies may ask.

The `apply_*` functions fold one event into `ctx`; the others are the
read-only questions a strategy callback may ask (best bid, sizes, book levels).
Prices the engine has not seen yet are NaN.
"""

from __future__ import annotations

import numpy as np

from tickwise.engine.jit import kernel

from .context import BOOK_DEPTH
from .schemas import BOOK_F_CLEAR


@kernel
def apply_quote_nb(ctx, i, ts, bid_px, ask_px, bid_sz, ask_sz):
    m = ctx.market[i]
    m.ts = ts
    m.bid_px = bid_px
    m.ask_px = ask_px
    m.bid_sz = bid_sz
    m.ask_sz = ask_sz


@kernel
def apply_trade_nb(ctx, i, ts, px, sz):
    m = ctx.market[i]
    m.ts = ts
    m.last_px = px
    m.last_sz = sz


@kernel
def apply_bar_nb(ctx, i, ts, close, volume):
    m = ctx.market[i]
    m.ts = ts
    m.last_px = close
    m.last_sz = volume


@kernel
def apply_book_nb(ctx, i, ts, side, px, sz, flags):
    """Apply one L2 delta; the top of book becomes the instrument's bid and ask.

    Levels beyond `BOOK_DEPTH` from the top are not kept.
    """
    if flags & BOOK_F_CLEAR:
        ctx.book_n[i, 0] = 0
        ctx.book_n[i, 1] = 0
    s = 0 if side == 1 else 1
    prices = ctx.book_px[i, s]
    sizes = ctx.book_sz[i, s]
    n = ctx.book_n[i, s]
    j = 0  # first level at or behind px (bids fall with depth, asks rise)
    while j < n and (prices[j] > px if s == 0 else prices[j] < px):
        j += 1
    if j < n and prices[j] == px:
        if sz == 0.0:
            for k in range(j, n - 1):
                prices[k] = prices[k + 1]
                sizes[k] = sizes[k + 1]
            ctx.book_n[i, s] = n - 1
        else:
            sizes[j] = sz
    elif sz != 0.0 and j < BOOK_DEPTH:
        last = min(n, BOOK_DEPTH - 1)
        for k in range(last, j, -1):
            prices[k] = prices[k - 1]
            sizes[k] = sizes[k - 1]
        prices[j] = px
        sizes[j] = sz
        ctx.book_n[i, s] = last + 1
    m = ctx.market[i]
    m.ts = ts
    m.bid_px = ctx.book_px[i, 0, 0] if ctx.book_n[i, 0] else np.nan
    m.bid_sz = ctx.book_sz[i, 0, 0] if ctx.book_n[i, 0] else np.nan
    m.ask_px = ctx.book_px[i, 1, 0] if ctx.book_n[i, 1] else np.nan
    m.ask_sz = ctx.book_sz[i, 1, 0] if ctx.book_n[i, 1] else np.nan


# --- what a strategy may ask --------------------------------------------------------------


@kernel
def best_bid(ctx, i):
    """Best bid price of instrument i (NaN if none seen)."""
    return ctx.market[i].bid_px


@kernel
def best_ask(ctx, i):
    """Best ask price of instrument i (NaN if none seen)."""
    return ctx.market[i].ask_px


@kernel
def bid_size(ctx, i):
    return ctx.market[i].bid_sz


@kernel
def ask_size(ctx, i):
    return ctx.market[i].ask_sz


@kernel
def mid_price(ctx, i):
    """Mid of best bid and ask; the last trade (or bar close) when there are no quotes."""
    m = ctx.market[i]
    if m.bid_px == m.bid_px and m.ask_px == m.ask_px:
        return 0.5 * (m.bid_px + m.ask_px)
    return m.last_px


@kernel
def last_price(ctx, i):
    """Last trade price (bar close on bar data); NaN if none seen."""
    return ctx.market[i].last_px


@kernel
def book_levels(ctx, i, side):
    """How many price levels the engine holds on one side (side +1 bids, -1 asks)."""
    return ctx.book_n[i, 0 if side == 1 else 1]


@kernel
def book_level(ctx, i, side, level):
    """(price, size) of a book level counted from the top (0); (NaN, 0) beyond the book."""
    s = 0 if side == 1 else 1
    if level >= ctx.book_n[i, s]:
        return np.nan, 0.0
    return ctx.book_px[i, s, level], ctx.book_sz[i, s, level]


@kernel
def book_imbalance(ctx, i, levels):
    """(bid size - ask size) / (bid size + ask size) over the top `levels` levels, in [-1, 1].

    On L1 data (no book) the best bid and ask sizes are used; 0 when there is no size.
    """
    bid = 0.0
    ask = 0.0
    if ctx.book_n[i, 0] or ctx.book_n[i, 1]:
        for k in range(min(levels, ctx.book_n[i, 0])):
            bid += ctx.book_sz[i, 0, k]
        for k in range(min(levels, ctx.book_n[i, 1])):
            ask += ctx.book_sz[i, 1, k]
    else:
        m = ctx.market[i]
        bid = m.bid_sz if m.bid_sz == m.bid_sz else 0.0
        ask = m.ask_sz if m.ask_sz == m.ask_sz else 0.0
    total = bid + ask
    return (bid - ask) / total if total > 0.0 else 0.0


@kernel
def tick_size(ctx, i):
    """The price tick of instrument i."""
    return ctx.instruments[i].tick_size


@kernel
def lot_size(ctx, i):
    """The quantity lot of instrument i."""
    return ctx.instruments[i].lot_size


@kernel
def round_to_tick(ctx, i, price, direction):
    """`price` on instrument i's tick grid: down (direction -1), up (+1) or nearest (0).

    The result is the double nearest the decimal price, as in market data, so it
    compares equal to quoted prices.
    """
    tick = ctx.instruments[i].tick_size
    units = price / tick
    if direction < 0:
        units = np.floor(units + 1e-9)
    elif direction > 0:
        units = np.ceil(units - 1e-9)
    else:
        units = np.round(units)
    return np.round(units * tick, 10)
