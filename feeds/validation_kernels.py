"""Compiled checks of market-data rows, one call per batch.

Each kernel scans a batch and returns `(fault, row, column)` for the first bad
row, or `(FAULT_NONE, -1, -1)`. Order state (last timestamp and sequence per
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


@njit(cache=True)
def _bad_price(x):
    return not (x > 0.0 and x < np.inf)


@njit(cache=True)
def _bad_size(x):
    return not (x >= 0.0 and x < np.inf)


# Each value check first runs a branch-free pass that the compiler vectorises (the
# common case: nothing wrong), and only looks for the first bad row when there is one.


@njit(cache=True)
def check_quotes_nb(bid_px, ask_px, bid_sz, ask_sz):
    """Prices positive and finite, sizes non-negative and finite, bid not above ask.

    Columns are numbered in the order of the arguments.
    """
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
        if _bad_price(bid_px[i]):
            return FAULT_BAD_PRICE, i, 0
        if _bad_price(ask_px[i]):
            return FAULT_BAD_PRICE, i, 1
        if _bad_size(bid_sz[i]):
            return FAULT_BAD_SIZE, i, 2
        if _bad_size(ask_sz[i]):
            return FAULT_BAD_SIZE, i, 3
        if bid_px[i] > ask_px[i]:
            return FAULT_CROSSED, i, -1
    return OK


@njit(cache=True)
def check_trades_nb(px, sz, side):
    """Price positive and finite, size positive and finite, side +1 or -1."""
    bad = False
    for i in range(px.size):
        bad |= _bad_price(px[i]) | _bad_size(sz[i]) | (sz[i] == 0.0) | (side[i] * side[i] != 1)
    if not bad:
        return OK
    for i in range(px.size):
        if _bad_price(px[i]):
            return FAULT_BAD_PRICE, i, 0
        if _bad_size(sz[i]) or sz[i] == 0.0:
            return FAULT_BAD_SIZE, i, 1
        if side[i] != 1 and side[i] != -1:
            return FAULT_BAD_SIDE, i, 2
    return OK


@njit(cache=True)
def check_bars_nb(open_, high, low, close, volume):
    """OHLC positive and finite, volume non-negative, low <= open, close <= high."""
    for i in range(open_.size):
        if _bad_price(open_[i]):
            return FAULT_BAD_PRICE, i, 0
        if _bad_price(high[i]):
            return FAULT_BAD_PRICE, i, 1
        if _bad_price(low[i]):
            return FAULT_BAD_PRICE, i, 2
        if _bad_price(close[i]):
            return FAULT_BAD_PRICE, i, 3
        if _bad_size(volume[i]):
            return FAULT_BAD_SIZE, i, 4
        lo = min(open_[i], close[i])
        hi = max(open_[i], close[i])
        if low[i] > lo or high[i] < hi:
            return FAULT_BAR_RANGE, i, -1
    return OK


@njit(cache=True)
def check_book_nb(side, px, sz):
    """Side +1 or -1, price positive and finite, size non-negative (0 removes the level)."""
    bad = False
    for i in range(px.size):
        bad |= (side[i] * side[i] != 1) | _bad_price(px[i]) | _bad_size(sz[i])
    if not bad:
        return OK
    for i in range(px.size):
        if side[i] != 1 and side[i] != -1:
            return FAULT_BAD_SIDE, i, 0
        if _bad_price(px[i]):
            return FAULT_BAD_PRICE, i, 1
        if _bad_size(sz[i]):
            return FAULT_BAD_SIZE, i, 2
    return OK
