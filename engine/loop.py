"""The event loop: one compiled pass over a record batch, the same in backtests and live.

Per event: fire the strategy's timer when due, let orders that reached the
exchange meet the market as it stood, update the market state, let the
exchange step match resting orders (the backtest's simulated exchange; live,
fills arrive from the gateway instead), tell the strategy of its fills, then
hand it the event. Its
orders pass the risk gate as it sends them (`engine.orders`) and land in the
batch's order log, which Python sends and journals after the batch.

This file is also a template: `engine.loops` writes a copy per strategy with
the callback imports below pointing at the strategy's functions, so that
Numba specialises and caches one loop per strategy. Everything else is
shared, which is what makes a backtest and a live session run the same code.
"""

from __future__ import annotations

from tickwise.engine.callbacks import ignore
from tickwise.engine.jit import event_kernel, kernel
from tickwise.engine.killswitch import enforce_nb, guard_feed_nb, guard_market_nb
from tickwise.engine.market import apply_bar_nb, apply_book_nb, apply_quote_nb, apply_trade_nb
from tickwise.engine.matching import (
    arrive_nb,
    book_fill_nb,
    match_bar_nb,
    match_quote_nb,
    match_trade_nb,
)
from tickwise.engine.orders import log_order_nb, open_row_nb, remove_open_nb
from tickwise.engine.portfolio import sample_equity_nb
from tickwise.engine.quantities import units, whole_lots
from tickwise.engine.schemas import (
    BOOK_F_LAST,
    KIND_BARS,
    KIND_BOOK,
    KIND_QUOTES,
    KIND_TRADES,
    REASON_UNKNOWN_ORDER,
    STATUS_ACKED,
    STATUS_CANCEL_SENT,
    STATUS_CANCELLED,
    STATUS_NEW,
    STATUS_REJECTED,
    TRIP_RECONCILE,
    Bar,
    BookDelta,
    Fill,
    Quote,
    Trade,
)
from tickwise.engine.states import trip_nb

# --- strategy callbacks: the lines `engine.loops` rewrites per strategy --------------------
_on_quote = ignore  # callback: on_quote
_on_trade = ignore  # callback: on_trade
_on_bar = ignore  # callback: on_bar
_on_book = ignore  # callback: on_book
_on_fill = ignore  # callback: on_fill
_on_timer = ignore  # callback: on_timer

# --- the kill switch: the lines `engine.loops` points elsewhere only to measure its cost ------
_guard_feed = guard_feed_nb  # guard
_guard_market = guard_market_nb  # guard
_enforce = enforce_nb  # guard

# Room kept in the order and fill logs for one event; the loop returns early (and
# Python drains the logs) rather than let an event find them full. An event adds at
# most one equity sample.
LOG_HEADROOM = 1_024
EQUITY_HEADROOM = 1


# Kernels taking `ctx` read its arrays into locals first and avoid `and`/`or` across
# array reads: Numba then keeps reference counting out of the per-event path.


@kernel
def _room_left(ctx):
    clock = ctx.clock[0]
    orders = clock.n_order_log + LOG_HEADROOM <= ctx.order_log.size
    fills = clock.n_fill_log + LOG_HEADROOM <= ctx.fill_log.size
    equity = clock.n_equity_log + EQUITY_HEADROOM < ctx.equity_log.size
    return orders & fills & equity


@kernel
def _begin_event(ctx, st, p, ts, recv):
    """Sample equity and fire the strategy's timer if the event is past their next
    boundaries, then move the clock.

    The timer fires at multiples of its period, before the first event at or
    after each; boundaries with no event in between coalesce into the latest one.
    """
    clock = ctx.clock[0]
    step = clock.sample_ns
    if step > 0 and ts >= clock.next_sample:
        sample = ts - ts % step
        if clock.next_sample > 0:
            sample_equity_nb(ctx, sample)  # the curve as it stood at the step boundary
        clock.next_sample = sample + step
    period = clock.timer_ns
    if period > 0 and ts >= clock.next_timer:
        boundary = ts - ts % period
        armed = clock.next_timer > 0
        clock.next_timer = boundary + period  # first: a timer that raises fires once
        if armed:
            clock.now = boundary
            clock.recv = boundary
            _on_timer(ctx, boundary, st, p)
    clock.now = ts
    feed = clock.feed_ns
    clock.recv = recv if feed < 0 else ts + feed
    clock.events += 1


@kernel
def _notify_fills(ctx, st, p, first):
    for r in range(first, ctx.clock[0].n_fill_log):
        f = ctx.fill_log[r]
        fill = Fill(f.order_id, f.ts, f.instrument, f.side, f.price, f.qty, f.fee, f.liquidity)
        _on_fill(ctx, fill, st, p)


# One kernel per kind handles one event (row `k` of its columns); the runners below loop
# over a batch of one kind, or over several kinds merged in their global order. Numba
# inlines the event kernels into each runner (engine.jit.event_kernel), so a runner costs
# what a loop written out by hand would, and compiles as fast.


@event_kernel
def _quote(ctx, st, p, subscribed, k, ts_event, ts_recv, instrument, seq, bid_px, ask_px,
           bid_sz, ask_sz):  # fmt: skip
    i = instrument[k]
    _begin_event(ctx, st, p, ts_event[k], ts_recv[k])
    first_fill = ctx.clock[0].n_fill_log
    arrive_nb(ctx, i)  # orders that reached the exchange before this event: beyond recall
    _guard_feed(ctx, i, KIND_QUOTES, ts_event[k], seq[k])
    apply_quote_nb(ctx, i, ts_event[k], bid_px[k], ask_px[k], bid_sz[k], ask_sz[k])
    match_quote_nb(ctx, i)
    _guard_market(ctx, i, ts_event[k])
    _notify_fills(ctx, st, p, first_fill)
    if subscribed[i]:
        q = Quote(ts_event[k], ts_recv[k], i, seq[k], bid_px[k], ask_px[k], bid_sz[k],
                  ask_sz[k])  # fmt: skip
        _on_quote(ctx, q, st, p)
    _enforce(ctx)


@event_kernel
def _trade(ctx, st, p, subscribed, k, ts_event, ts_recv, instrument, seq, px, sz, side):
    i = instrument[k]
    _begin_event(ctx, st, p, ts_event[k], ts_recv[k])
    first_fill = ctx.clock[0].n_fill_log
    m = ctx.market[i]
    if (m.bid_px == m.bid_px) | (m.ask_px == m.ask_px):  # quotes or a book beside the trades:
        arrive_nb(ctx, i)  # orders that arrived meet them first, as they would on a quote
    _guard_feed(ctx, i, KIND_TRADES, ts_event[k], seq[k])
    apply_trade_nb(ctx, i, ts_event[k], px[k], sz[k])
    match_trade_nb(ctx, i, px[k], sz[k])
    _guard_market(ctx, i, ts_event[k])
    _notify_fills(ctx, st, p, first_fill)
    if subscribed[i]:
        _on_trade(ctx, Trade(ts_event[k], ts_recv[k], i, seq[k], px[k], sz[k], side[k]), st, p)
    _enforce(ctx)


@event_kernel
def _bar(ctx, st, p, subscribed, k, ts_event, instrument, open_, high, low, close, volume):
    i = instrument[k]
    _begin_event(ctx, st, p, ts_event[k], ts_event[k])
    first_fill = ctx.clock[0].n_fill_log
    match_bar_nb(ctx, i, open_[k], high[k], low[k])  # before the bar is known as last
    apply_bar_nb(ctx, i, ts_event[k], close[k], volume[k])
    _guard_market(ctx, i, ts_event[k])  # bars carry no feed timing or sequence to watch
    _notify_fills(ctx, st, p, first_fill)
    if subscribed[i]:
        b = Bar(ts_event[k], i, open_[k], high[k], low[k], close[k], volume[k])
        _on_bar(ctx, b, st, p)
    _enforce(ctx)


@event_kernel
def _book(ctx, st, p, subscribed, k, ts_event, ts_recv, instrument, seq, side, px, sz, flags):
    """Matching and the strategy act once per whole update (at the delta flagged last),
    when the book is consistent."""
    i = instrument[k]
    _begin_event(ctx, st, p, ts_event[k], ts_recv[k])
    first_fill = ctx.clock[0].n_fill_log
    arrive_nb(ctx, i)  # a no-op past the update's first delta: its orders have arrived
    _guard_feed(ctx, i, KIND_BOOK, ts_event[k], seq[k])
    _notify_fills(ctx, st, p, first_fill)
    apply_book_nb(ctx, i, ts_event[k], side[k], px[k], sz[k], flags[k])
    if not flags[k] & BOOK_F_LAST:
        _enforce(ctx)
        return
    first_fill = ctx.clock[0].n_fill_log
    match_quote_nb(ctx, i)
    _guard_market(ctx, i, ts_event[k])
    _notify_fills(ctx, st, p, first_fill)
    if subscribed[i]:
        d = BookDelta(ts_event[k], ts_recv[k], i, seq[k], side[k], px[k], sz[k], flags[k])
        _on_book(ctx, d, st, p)
    _enforce(ctx)


@kernel
def run_quotes(ctx, st, p, subscribed, start, ts_event, ts_recv, instrument, seq,
               bid_px, ask_px, bid_sz, ask_sz):  # fmt: skip
    """Process quotes from row `start`; return the row reached (the batch size when done)."""
    for k in range(start, ts_event.size):
        if not _room_left(ctx):
            return k
        _quote(ctx, st, p, subscribed, k, ts_event, ts_recv, instrument, seq, bid_px, ask_px,
               bid_sz, ask_sz)  # fmt: skip
    return ts_event.size


@kernel
def run_trades(ctx, st, p, subscribed, start, ts_event, ts_recv, instrument, seq, px, sz, side):
    """Process trades from row `start`; return the row reached."""
    for k in range(start, ts_event.size):
        if not _room_left(ctx):
            return k
        _trade(ctx, st, p, subscribed, k, ts_event, ts_recv, instrument, seq, px, sz, side)
    return ts_event.size


@kernel
def run_bars(ctx, st, p, subscribed, start, ts_event, instrument, open_, high, low, close,
             volume):  # fmt: skip
    """Process bars from row `start`; return the row reached."""
    for k in range(start, ts_event.size):
        if not _room_left(ctx):
            return k
        _bar(ctx, st, p, subscribed, k, ts_event, instrument, open_, high, low, close, volume)
    return ts_event.size


@kernel
def run_book(ctx, st, p, subscribed, start, ts_event, ts_recv, instrument, seq, side, px, sz,
             flags):  # fmt: skip
    """Process L2 deltas from row `start`; return the row reached."""
    for k in range(start, ts_event.size):
        if not _room_left(ctx):
            return k
        _book(ctx, st, p, subscribed, k, ts_event, ts_recv, instrument, seq, side, px, sz, flags)
    return ts_event.size


@kernel
def run_merged(ctx, st, p, subscribed, start, kind, row, quotes, trades, bars, book):
    """Process events of several kinds in one order, from position `start`: event m is row
    `row[m]` of the columns of kind `kind[m]` (KIND_QUOTES...: each kind's columns a tuple,
    in its schema's order). Return the position reached."""
    for m in range(start, kind.size):
        if not _room_left(ctx):
            return m
        k = row[m]
        c = kind[m]
        if c == KIND_QUOTES:
            ts, recv, inst, seq, bid_px, ask_px, bid_sz, ask_sz = quotes
            _quote(ctx, st, p, subscribed, k, ts, recv, inst, seq, bid_px, ask_px, bid_sz,
                   ask_sz)  # fmt: skip
        elif c == KIND_TRADES:
            ts, recv, inst, seq, px, sz, side = trades
            _trade(ctx, st, p, subscribed, k, ts, recv, inst, seq, px, sz, side)
        elif c == KIND_BARS:
            ts, inst, open_, high, low, close, volume = bars
            _bar(ctx, st, p, subscribed, k, ts, inst, open_, high, low, close, volume)
        else:
            ts, recv, inst, seq, side, px, sz, flags = book
            _book(ctx, st, p, subscribed, k, ts, recv, inst, seq, side, px, sz, flags)
    return kind.size


# --- what an exchange process reports (live sessions with a gateway) -----------------------


@kernel
def _mismatch(ctx, bad, n_bad, row, order_id):
    """A report the engine did not expect: noted (row `row`) and the kill switch trips."""
    bad[n_bad] = row
    trip_nb(ctx, TRIP_RECONCILE, -1, float(order_id), 0.0)
    return n_bad + 1


@kernel
def run_fills(ctx, st, p, bad, at, start, order_id, ts, instrument, side, price, qty, fee,
              liquidity):  # fmt: skip
    """Fills reported by the exchange, from row `start`, in its order: each is booked against
    the engine's own open order (its instrument and side, not the report's) and the
    strategy hears of it. A fill of an order that is not open, or beyond what it had left,
    is a mismatch: its row goes in `bad` and the kill switch trips (`reconcile`); `at[0]`
    holds the row under way (to name it if the strategy raises). Returns (row reached,
    mismatches)."""
    n_bad = 0
    for r in range(start, order_id.size):
        if not _room_left(ctx):
            return r, n_bad
        at[0] = r
        k = open_row_nb(ctx, order_id[r])
        q = qty[r]
        if k < 0:
            n_bad = _mismatch(ctx, bad, n_bad, r, order_id[r])
            _enforce(ctx)
            continue
        o = ctx.open_orders[k]
        lots = whole_lots(q, ctx.instruments[o.instrument].lot_size)
        if (
            lots < 1
            or lots > o.lots - o.filled
            or instrument[r] != o.instrument
            or (side[r] != o.side)
        ):
            n_bad = _mismatch(ctx, bad, n_bad, r, order_id[r])
            _enforce(ctx)
            continue
        first_fill = ctx.clock[0].n_fill_log
        book_fill_nb(ctx, k, lots, price[r], fee[r], liquidity[r], ts[r])
        _notify_fills(ctx, st, p, first_fill)
        _enforce(ctx)
    return order_id.size, n_bad


@kernel
def run_order_reports(ctx, st, p, bad, at, start, order_id, status, reason, qty):
    """What the exchange says of orders and cancels, from row `start`: ACKED (an order
    accepted: journaled), CANCEL_SENT (a cancel received, effective later), CANCELLED (the
    order is gone: journaled with what it had left), REJECTED (an order refused with its
    reason, or a cancel refused as `unknown_order`). Anything about an order the engine
    does not hold open, or a refused cancel of an order it does, is a mismatch (see
    `run_fills`). Returns (row reached, mismatches)."""
    n_bad = 0
    for r in range(start, order_id.size):
        if not _room_left(ctx):
            return r, n_bad
        at[0] = r
        k = open_row_nb(ctx, order_id[r])
        s = status[r]
        cancel_refused = s == STATUS_REJECTED and reason[r] == REASON_UNKNOWN_ORDER
        if cancel_refused:
            if k >= 0:  # the exchange no longer has an order the engine thinks is working
                n_bad = _mismatch(ctx, bad, n_bad, r, order_id[r])
        elif k < 0 or s not in (
            STATUS_ACKED,
            STATUS_CANCEL_SENT,
            STATUS_CANCELLED,
            STATUS_REJECTED,
        ):
            n_bad = _mismatch(ctx, bad, n_bad, r, order_id[r])
        else:
            o = ctx.open_orders[k]
            inst = ctx.instruments[o.instrument]
            lot = inst.lot_size
            leaves = units(o.lots - o.filled, inst)
            if s == STATUS_ACKED:
                if o.status == STATUS_NEW:
                    o.status = STATUS_ACKED
                    log_order_nb(ctx, o.id, o.instrument, o.side, o.price, units(o.lots, inst),
                                 o.order_type, o.tif, STATUS_ACKED, 0)  # fmt: skip
            elif s in (STATUS_CANCELLED, STATUS_REJECTED):
                if whole_lots(qty[r], lot) != o.lots - o.filled:  # it had more (or less) left
                    n_bad = _mismatch(ctx, bad, n_bad, r, order_id[r])
                log_order_nb(ctx, o.id, o.instrument, o.side, o.price, leaves, o.order_type,
                             o.tif, s, reason[r])  # fmt: skip
                remove_open_nb(ctx, k)
        _enforce(ctx)
    return order_id.size, n_bad
