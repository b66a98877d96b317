"""Compiled checks of market-data rows, one call per batch.

The rules a row must keep are written once per kind (`quote_fault`, ...).
The file checks (`check_*_nb`) scan a batch and return `(fault, row, column)`
for the first bad row, or `(FAULT_NONE, -1, -1)`; the live screen
(`screen_*_nb`) marks every row's fault, for a receiver that drops bad rows
and keeps the good ones. Order state (last timestamp and sequence per
instrument, the previous row's key) lives in arrays owned by the caller, so a
stream is checked batch by batch exactly as if it were checked whole.
"""

from __future__ import annotations

import numpy as np
from numba import njit

FAULT_NONE = 0
FAULT_UNKNOWN_INSTRUMENT = 1  # instrument id not in the instruments table
FAULT_TS_BACKWARDS = 2  # ts_event lower than the previous row of the same instrument
FAULT_DUP_SEQ = 3  # seq equal to the previous row's of the same instrument
FAULT_SEQ_BACKWARDS = 4  # seq lower than the previous row's of the same instrument
FAULT_UNSORTED = 5  # row key (ts_event, instrument, seq) below the previous row's
FAULT_BAD_PRICE = 6  # price NaN, infinite, zero or negative
FAULT_BAD_SIZE = 7  # size NaN, infinite or negative (or zero where a size must trade)
FAULT_CROSSED = 8  # quote with bid_px above ask_px
FAULT_BAD_SIDE = 9  # side other than +1 / -1
FAULT_BAR_RANGE = 10  # bar whose high/low do not enclose open and close
FAULT_DUP_BAR = 11  # two bars of one instrument with the same ts_event
FAULT_TS_SKEW = 12  # ts_event too far from the receiver's clock (live screen only)
FAULT_OFF_TICK = 13  # price not a whole number of the instrument's ticks (import, inspect)

# What a live session counts bad rows by (journal, status, summary).
FAULT_NAMES = {
    FAULT_UNKNOWN_INSTRUMENT: "unknown_instrument",
    FAULT_BAD_PRICE: "bad_price",
    FAULT_BAD_SIZE: "bad_size",
    FAULT_CROSSED: "crossed",
    FAULT_BAD_SIDE: "bad_side",
    FAULT_BAR_RANGE: "bar_range",
    FAULT_TS_SKEW: "ts_skew",
}

OK = (FAULT_NONE, -1, -1)


@njit(cache=True)
def check_order_nb(ts, inst, seq, has_seq, sorted_, known, last_ts, last_seq, seen, prev, prev_seq):
    """Check instrument ids and the (ts_event, instrument, seq) order; update the order state.

    `prev` is int64[3] = (has previous row, its ts_event, its instrument) and
    `prev_seq` uint64[1] its seq. Without a seq column (bars) pass an empty
    `seq` and `has_seq=False`: then ts_event must strictly increase per instrument.
    With `sorted_=False` only the per-instrument order is checked (rows of
    different instruments may interleave in any order, as in a CSV to import).
    """
    for i in range(ts.size):
        k = inst[i]
        t = ts[i]
        s = seq[i] if has_seq else np.uint64(0)
        if k >= known.size or not known[k]:
            return FAULT_UNKNOWN_INSTRUMENT, i, -1
        if seen[k]:
            if t < last_ts[k]:
                return FAULT_TS_BACKWARDS, i, -1
            if has_seq:
                if s == last_seq[k]:
                    return FAULT_DUP_SEQ, i, -1
                if s < last_seq[k]:
                    return FAULT_SEQ_BACKWARDS, i, -1
            elif t == last_ts[k]:
                return FAULT_DUP_BAR, i, -1
        if sorted_ and prev[0] == 1:
            pt = prev[1]
            pk = prev[2]
            if t < pt or (t == pt and (k < pk or (k == pk and s < prev_seq[0]))):
                return FAULT_UNSORTED, i, -1
        seen[k] = True
        last_ts[k] = t
        last_seq[k] = s
        prev[0] = 1
        prev[1] = t
        prev[2] = k
        prev_seq[0] = s
    return OK


# Beyond any market (a price of a quadrillion, a size of a quintillion): such a value is a
# corrupt row, and would take a running sum of PnL to infinity and beyond repair.
MAX_PRICE = 1e15
MAX_SIZE = 1e18


@njit(cache=True)
def _bad_price(x):
    return not (x > 0.0 and x < MAX_PRICE)


@njit(cache=True)
def _bad_size(x):
    return not (x >= 0.0 and x < MAX_SIZE)


# The value rules of one row of each kind, defined once: the file validator reports the
# first row that breaks one, the live screen drops every row that does. Each returns
# (fault, column), columns numbered in the order of the arguments.


@njit(cache=True)
def quote_fault(b, a, bs, as_):
    """Prices positive and finite, sizes non-negative and finite, bid not above ask."""
    if _bad_price(b):
        return FAULT_BAD_PRICE, 0
    if _bad_price(a):
        return FAULT_BAD_PRICE, 1
    if _bad_size(bs):
        return FAULT_BAD_SIZE, 2
    if _bad_size(as_):
        return FAULT_BAD_SIZE, 3
    if b > a:
        return FAULT_CROSSED, -1
    return FAULT_NONE, -1


@njit(cache=True)
def trade_fault(px, sz, side):
    """Price positive and finite, size positive and finite, side +1 or -1."""
    if _bad_price(px):
        return FAULT_BAD_PRICE, 0
    if _bad_size(sz) or sz == 0.0:
        return FAULT_BAD_SIZE, 1
    if side != 1 and side != -1:
        return FAULT_BAD_SIDE, 2
    return FAULT_NONE, -1


@njit(cache=True)
def bar_fault(open_, high, low, close, volume):
    """OHLC positive and finite, volume non-negative, low <= open, close <= high."""
    if _bad_price(open_):
        return FAULT_BAD_PRICE, 0
    if _bad_price(high):
        return FAULT_BAD_PRICE, 1
    if _bad_price(low):
        return FAULT_BAD_PRICE, 2
    if _bad_price(close):
        return FAULT_BAD_PRICE, 3
    if _bad_size(volume):
        return FAULT_BAD_SIZE, 4
    if low > min(open_, close) or high < max(open_, close):
        return FAULT_BAR_RANGE, -1
    return FAULT_NONE, -1


@njit(cache=True)
def book_fault(side, px, sz):
    """Side +1 or -1, price positive and finite, size non-negative (0 removes the level)."""
    if side != 1 and side != -1:
        return FAULT_BAD_SIDE, 0
    if _bad_price(px):
        return FAULT_BAD_PRICE, 1
    if _bad_size(sz):
        return FAULT_BAD_SIZE, 2
    return FAULT_NONE, -1


# Each file check first runs a branch-free pass that the compiler vectorises (the common
# case: nothing wrong), and only looks for the first bad row when there is one.


@njit(cache=True)
def check_quotes_nb(bid_px, ask_px, bid_sz, ask_sz):
    """The first row of a quotes batch that breaks `quote_fault`'s rules."""
    bad = False
    for i in range(bid_px.size):
        b, a = bid_px[i], ask_px[i]
        bad |= (
            (_bad_price(b) | _bad_price(a))
            | (_bad_size(bid_sz[i]) | _bad_size(ask_sz[i]))
            | (b > a)
        )
    if not bad:
        return OK
    for i in range(bid_px.size):
        fault, column = quote_fault(bid_px[i], ask_px[i], bid_sz[i], ask_sz[i])
        if fault != FAULT_NONE:
            return fault, i, column
    return OK


@njit(cache=True)
def check_trades_nb(px, sz, side):
    """The first row of a trades batch that breaks `trade_fault`'s rules."""
    bad = False
    for i in range(px.size):
        bad |= _bad_price(px[i]) | _bad_size(sz[i]) | (sz[i] == 0.0) | (side[i] * side[i] != 1)
    if not bad:
        return OK
    for i in range(px.size):
        fault, column = trade_fault(px[i], sz[i], side[i])
        if fault != FAULT_NONE:
            return fault, i, column
    return OK


@njit(cache=True)
def check_bars_nb(open_, high, low, close, volume):
    """The first row of a bars batch that breaks `bar_fault`'s rules."""
    for i in range(open_.size):
        fault, column = bar_fault(open_[i], high[i], low[i], close[i], volume[i])
        if fault != FAULT_NONE:
            return fault, i, column
    return OK


@njit(cache=True)
def check_book_nb(side, px, sz):
    """The first row of a book batch that breaks `book_fault`'s rules."""
    bad = False
    for i in range(px.size):
        bad |= (side[i] * side[i] != 1) | _bad_price(px[i]) | _bad_size(sz[i])
    if not bad:
        return OK
    for i in range(px.size):
        fault, column = book_fault(side[i], px[i], sz[i])
        if fault != FAULT_NONE:
            return fault, i, column
    return OK


# Off the tick grid: price / tick further from a whole number than the risk gate allows a
# limit price to be (engine.risk), so that data which imports is data an order can meet.
GRID_TOLERANCE = 1e-9


@njit(cache=True)
def mark_off_grid_nb(instrument, tick, px, out):
    """Mark in `out` every row whose price is off its instrument's tick grid (`tick` by id);
    how many. Prices that are not positive and finite, and ids without a tick, are other
    checks'."""
    n = 0
    for i in range(px.size):
        k = instrument[i]
        x = px[i]
        if k >= tick.size or not (tick[k] > 0.0) or not (x > 0.0 and x < MAX_PRICE):
            continue
        units = x / tick[k]
        if abs(units - np.round(units)) > GRID_TOLERANCE * max(1.0, abs(units)):
            out[i] = True
            n += 1
    return n


# --- the live screen: every row judged, bad ones marked (none dropped here) -----------------


@njit(cache=True)
def _place_fault(known, ts_lo, ts_hi, ts, instrument):
    """An instrument id outside the table, or ts_event outside [ts_lo, ts_hi]."""
    if instrument >= known.size or not known[instrument]:
        return FAULT_UNKNOWN_INSTRUMENT
    if ts < ts_lo or ts > ts_hi:
        return FAULT_TS_SKEW
    return FAULT_NONE


@njit(cache=True)
def screen_quotes_nb(known, ts_lo, ts_hi, fault, ts_event, instrument, bid_px, ask_px,
                     bid_sz, ask_sz):  # fmt: skip
    """Each row's fault (FAULT_NONE when good) into `fault`; the count of bad rows."""
    bad = 0
    for k in range(ts_event.size):
        f = _place_fault(known, ts_lo, ts_hi, ts_event[k], instrument[k])
        if f == FAULT_NONE:
            f = quote_fault(bid_px[k], ask_px[k], bid_sz[k], ask_sz[k])[0]
        fault[k] = f
        bad += f != FAULT_NONE
    return bad


@njit(cache=True)
def screen_trades_nb(known, ts_lo, ts_hi, fault, ts_event, instrument, px, sz, side):
    """As `screen_quotes_nb`, for trades."""
    bad = 0
    for k in range(ts_event.size):
        f = _place_fault(known, ts_lo, ts_hi, ts_event[k], instrument[k])
        if f == FAULT_NONE:
            f = trade_fault(px[k], sz[k], side[k])[0]
        fault[k] = f
        bad += f != FAULT_NONE
    return bad


@njit(cache=True)
def screen_bars_nb(known, ts_lo, ts_hi, fault, ts_event, instrument, open_, high, low, close,
                   volume):  # fmt: skip
    """As `screen_quotes_nb`, for bars."""
    bad = 0
    for k in range(ts_event.size):
        f = _place_fault(known, ts_lo, ts_hi, ts_event[k], instrument[k])
        if f == FAULT_NONE:
            f = bar_fault(open_[k], high[k], low[k], close[k], volume[k])[0]
        fault[k] = f
        bad += f != FAULT_NONE
    return bad


@njit(cache=True)
def screen_book_nb(known, ts_lo, ts_hi, fault, ts_event, instrument, side, px, sz):
    """As `screen_quotes_nb`, for book deltas."""
    bad = 0
    for k in range(ts_event.size):
        f = _place_fault(known, ts_lo, ts_hi, ts_event[k], instrument[k])
        if f == FAULT_NONE:
            f = book_fault(side[k], px[k], sz[k])[0]
        fault[k] = f
        bad += f != FAULT_NONE
    return bad


@njit(cache=True)
def number_rows_nb(instrument, counters, seq):
    """Number each row within its instrument (`seq`), following on from `counters` (each
    instrument's rows so far, updated): the `seq` of a history made without one."""
    for i in range(instrument.size):
        k = instrument[i]
        counters[k] += 1
        seq[i] = counters[k]


@njit(cache=True)
def mark_backwards_nb(ts_event, instrument, last, bad):
    """Mark rows whose ts_event is below their instrument's last (rows not marked set it;
    `last` is carried from batch to batch, -1 before an instrument's first row)."""
    for i in range(ts_event.size):
        k = instrument[i]
        if ts_event[i] < last[k]:
            bad[i] = True
        else:
            last[k] = ts_event[i]
