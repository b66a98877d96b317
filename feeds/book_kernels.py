"""Order-by-order books, compiled: a stream of MBO (L3) messages becomes L2 deltas, L1 quotes
and trades, one call per chunk.

State (all arrays owned by the caller, so a stream is built chunk by chunk exactly as if
whole):

- `orders`: an open-addressing hash table of resting orders keyed by (instrument, order id),
  linear probing, deleted slots left as tombstones until the table is rebuilt;
- `rows` and `pool`: each (instrument, side) has a row of price levels, a slice of `pool`
  kept sorted by `key` (the price for bids, minus the price for asks) so that the best level
  is always the last one and changes near the top move few levels;
- `insts`: per instrument, the last quote emitted and the book update in progress.

Prices and sizes are integers (prices in units of 1e-9, sizes in the source's units, see
feeds/orderbook.py), so levels add up exactly.

The rules, for every message (documented in docs/data.md):

- add: the order rests at its price; an id already resting is taken as a modify;
- cancel: the order loses `qty` (all of it when `qty` covers it); delete: it is removed;
- modify: the order's price and size are replaced; size 0 removes it; an unknown id is an add;
- fill: a resting order trades `qty` (at most what rests) at its price, and loses it; the
  print's aggressor is the other side;
- trade: a print only (Databento's T: the resting side follows by cancels and modifies);
- clear: every level of the instrument is removed (a delta of size 0 each);
- an order that is not resting (never added, or removed by a repair or a clear) is noted and
  its message does nothing to the book.

A book is looked at only where it is consistent: after a message whose `last` flag is set
(the venue's end of one event). There a crossed or locked book (a bid at or above an ask,
left by a lost message) is repaired: the levels of the side opposite the instrument's latest
add or modify that conflict with it are removed (a delta of size 0 each, and a note with the
row). Then the top of book is compared with the last quote: a quote is emitted when it
changed and both sides have a level.

The kernel stops before a message it cannot finish: an output buffer without room, the
order table too full, or the level pool without space for a row to grow. It returns where
it stopped and why; Python makes room and calls it again from there. Nothing is allocated.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Actions of the kernel's input (each vendor's are mapped onto these in feeds/orderbook.py).
ACT_NONE = 0  # no effect on the book (Databento's F and N)
ACT_ADD = 1
ACT_CANCEL = 2  # the order loses qty
ACT_DELETE = 3  # the order is removed, whatever its size
ACT_MODIFY = 4  # the order's price and size become the message's
ACT_FILL = 5  # the resting order trades qty at its price
ACT_TRADE = 6  # a print at the message's price, size and aggressor side
ACT_CLEAR = 7  # the instrument's book is emptied

# Notes: what the book met that a clean stream never holds. Each is one row of `notes`.
NOTE_UNKNOWN_ORDER = 1  # cancel, delete or fill of an order that is not resting: ignored
NOTE_DUPLICATE_ADD = 2  # add of an id already resting: taken as a modify
NOTE_CROSSED = 3  # crossed or locked book repaired: `count` stale levels removed
NOTE_NO_SIDE = 4  # a print with no aggressor side, or an order with none: left out
NOTE_BAD_SIZE = 5  # an add or modify with a size that is not positive: left out
NOTE_BAD_PRICE = 6  # an add or modify with a price that is not positive: left out

# Why the kernel returned.
DONE = 0  # every message was applied
OUT_FULL = 1  # an output buffer has no room for the next message
ORDERS_FULL = 2  # the order table must grow (or shed its tombstones) first
POOL_FULL = 3  # the level pool has no space for a row that must grow

# Bits of an input message's `flags`.
IN_LAST = 1  # the book is consistent after this message (the venue's event ends here)
IN_SNAPSHOT = 2  # part of a snapshot of the book (passed on to the deltas)

# Bits of an output delta's `flags` (the same as engine/schemas.py BOOK_F_*).
OUT_LAST = 1
OUT_SNAPSHOT = 2

SLOT_EMPTY = 0
SLOT_LIVE = 1
SLOT_DELETED = 2

MAX_LOAD = 0.5  # order table: used and deleted slots above this share, it is rebuilt (a miss,
# which every add makes, probes 2.5 slots at this load, 6 at 0.7)

MBO_DTYPE = np.dtype(
    [
        ("ts_event", "<i8"),
        ("ts_recv", "<i8"),
        ("inst", "<u4"),  # the instrument's index (0..n-1), not the vendor's id
        ("order_id", "<u8"),
        ("px", "<i8"),  # 1e-9 units
        ("qty", "<i8"),
        ("action", "i1"),
        ("side", "i1"),  # +1 bid, -1 ask, 0 none
        ("flags", "u1"),
    ],
    align=True,
)
ORDER_DTYPE = np.dtype(
    [
        ("order_id", "<u8"),
        ("inst", "<u4"),
        ("state", "u1"),
        ("side", "i1"),
        ("px", "<i8"),
        ("qty", "<i8"),
        ("epoch", "<i8"),  # the epoch of the level it rests in (see LEVEL_DTYPE)
    ],
    align=True,
)
# A level is born with a fresh epoch; an order whose level has another epoch (or none) was
# removed with its level by a clear or a repair, and is not resting.
LEVEL_DTYPE = np.dtype(
    [("key", "<i8"), ("qty", "<i8"), ("orders", "<i8"), ("epoch", "<i8")], align=True
)
ROW_DTYPE = np.dtype([("start", "<i8"), ("cap", "<i8"), ("n", "<i8")], align=True)
INST_DTYPE = np.dtype(
    [
        ("quoted", "u1"),  # a quote was emitted and both sides still had a level
        ("bid_px", "<i8"),
        ("ask_px", "<i8"),
        ("bid_qty", "<i8"),
        ("ask_qty", "<i8"),
        ("touch_side", "i1"),  # side of the latest add or modify (what a repair keeps)
        ("open", "u1"),  # deltas emitted since the book was last consistent
        ("open_gen", "<i8"),  # the output generation holding the last of them
        ("open_at", "<i8"),  # and its place there
        ("open_side", "i1"),
        ("open_px", "<i8"),
    ],
    align=True,
)
DELTA_DTYPE = np.dtype(
    [
        ("row", "<i8"),  # the input message that made it
        ("ts_event", "<i8"),
        ("ts_recv", "<i8"),
        ("inst", "<u4"),
        ("side", "i1"),
        ("px", "<i8"),
        ("qty", "<i8"),
        ("flags", "u1"),
    ],
    align=True,
)
QUOTE_DTYPE = np.dtype(
    [
        ("row", "<i8"),
        ("ts_event", "<i8"),
        ("ts_recv", "<i8"),
        ("inst", "<u4"),
        ("bid_px", "<i8"),
        ("ask_px", "<i8"),
        ("bid_qty", "<i8"),
        ("ask_qty", "<i8"),
    ],
    align=True,
)
TRADE_DTYPE = np.dtype(
    [
        ("row", "<i8"),
        ("ts_event", "<i8"),
        ("ts_recv", "<i8"),
        ("inst", "<u4"),
        ("px", "<i8"),
        ("qty", "<i8"),
        ("side", "i1"),
    ],
    align=True,
)
NOTE_DTYPE = np.dtype(
    [("row", "<i8"), ("inst", "<u4"), ("code", "u1"), ("count", "<i8")], align=True
)
# Counters the caller keeps between calls: [0] used slots (live and deleted) of `orders`,
# [1] live orders, [2] the next epoch, [3] the pool's end, [4..7] rows used in the output
# buffers (deltas, quotes, trades, notes), [8] the output generation (bumped at each flush).
# Helpers are inlined by LLVM into the kernels that call them (as the engine's kernels are,
# engine/jit.py): called, they cost a fifth of a message's time.
_inline = njit(cache=True, forceinline=True)

C_USED, C_LIVE, C_EPOCH, C_POOL_END, C_DELTAS, C_QUOTES, C_TRADES, C_NOTES, C_GEN = range(9)
N_COUNTERS = 9


@_inline
def _slot_of(order_id, inst, mask):
    """The first slot to probe for an order (a 64-bit mix of its id and instrument)."""
    h = np.uint64(order_id) * np.uint64(0x9E3779B97F4A7C15)
    h ^= np.uint64(inst) * np.uint64(0xC2B2AE3D27D4EB4F)
    h ^= h >> np.uint64(31)
    return np.int64(h & np.uint64(mask))


@njit(cache=True)
def find_order(orders, order_id, inst):
    """The slot of a live order (instrument, id), or -1."""
    mask = orders.size - 1
    s = _slot_of(order_id, inst, mask)
    while True:
        o = orders[s]
        if o.state == SLOT_EMPTY:
            return -1
        if o.state == SLOT_LIVE and o.order_id == order_id and o.inst == inst:
            return s
        s = (s + 1) & mask


@_inline
def _free_slot(orders, order_id, inst):
    """A slot to put a new order in: the first empty or deleted one on its probe path."""
    mask = orders.size - 1
    s = _slot_of(order_id, inst, mask)
    while orders[s].state == SLOT_LIVE:
        s = (s + 1) & mask
    return s


@_inline
def _lower_bound(pool, start, n, key):
    """The first level of the row at or above `key` (n when none)."""
    lo = 0
    hi = n
    while lo < hi:
        mid = (lo + hi) >> 1
        if pool[start + mid].key < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@_inline
def _row(inst, side):
    return inst * 2 + (0 if side == 1 else 1)


@_inline
def _key(side, px):
    return px if side == 1 else -px


@njit(cache=True)
def level_at(rows, pool, inst, side, px):
    """The pool index of a level, or -1."""
    r = rows[_row(inst, side)]
    key = _key(side, px)
    j = _lower_bound(pool, r.start, r.n, key)
    if j < r.n and pool[r.start + j].key == key:
        return r.start + j
    return -1


@_inline
def _resting(rows, pool, o):
    """The pool index of a live order's level, or -1 when it no longer rests (its level is
    gone, or another with a new epoch took its price)."""
    at = level_at(rows, pool, o.inst, o.side, o.px)
    if at >= 0 and pool[at].epoch == o.epoch:
        return at
    return -1


@_inline
def _emit_delta(deltas, counters, insts, row, m, inst, side, px, qty, snapshot):
    k = counters[C_DELTAS]
    d = deltas[k]
    d.row = row
    d.ts_event = m.ts_event
    d.ts_recv = m.ts_recv
    d.inst = inst
    d.side = side
    d.px = px
    d.qty = qty
    d.flags = OUT_SNAPSHOT if snapshot else 0
    counters[C_DELTAS] = k + 1
    st = insts[inst]
    st.open = 1
    st.open_gen = counters[C_GEN]
    st.open_at = k
    st.open_side = side
    st.open_px = px


@_inline
def _note(notes, counters, row, inst, code, count):
    k = counters[C_NOTES]
    notes[k].row = row
    notes[k].inst = inst
    notes[k].code = code
    notes[k].count = count
    counters[C_NOTES] = k + 1


@_inline
def _change_level(rows, pool, counters, inst, side, px, dqty, dorders):
    """Add `dqty` (and `dorders` orders) to a level, creating or removing it; the level's
    new size and the epoch an order joining it takes."""
    r = rows[_row(inst, side)]
    key = _key(side, px)
    j = _lower_bound(pool, r.start, r.n, key)
    at = r.start + j
    if j < r.n and pool[at].key == key:
        qty = pool[at].qty + dqty
        epoch = pool[at].epoch
        if qty <= 0 or pool[at].orders + dorders <= 0:
            for k in range(at, r.start + r.n - 1):
                pool[k] = pool[k + 1]
            r.n -= 1
            return 0, epoch
        pool[at].qty = qty
        pool[at].orders += dorders
        return qty, epoch
    if dqty <= 0:
        return 0, -1
    for k in range(r.start + r.n, at, -1):  # (room was checked: n < cap)
        pool[k] = pool[k - 1]
    epoch = counters[C_EPOCH]
    counters[C_EPOCH] = epoch + 1
    pool[at].key = key
    pool[at].qty = dqty
    pool[at].orders = dorders
    pool[at].epoch = epoch
    r.n += 1
    return dqty, epoch


@_inline
def _grow_row(rows, pool, counters, inst, side):
    """Give a full row twice its room at the end of the pool (checked to be there)."""
    r = rows[_row(inst, side)]
    if r.n < r.cap:
        return
    start = counters[C_POOL_END]
    for k in range(r.n):
        pool[start + k] = pool[r.start + k]
    r.start = start
    r.cap *= 2
    counters[C_POOL_END] = start + r.cap


@_inline
def _room_to_grow(rows, pool, counters, inst, side):
    r = rows[_row(inst, side)]
    return r.n < r.cap or counters[C_POOL_END] + 2 * r.cap <= pool.size


@_inline
def _remove_order(orders, rows, pool, counters, s, at, deltas, insts, row, m, snapshot, dqty):
    """Take `dqty` from the order in slot `s` (all of it when dqty covers it) and from its
    level, at pool index `at`; emits the level's delta; what was taken."""
    o = orders[s]
    take = o.qty if dqty >= o.qty else dqty
    whole = take == o.qty
    level = pool[at]
    qty = level.qty - take
    if qty <= 0 or (whole and level.orders <= 1):
        r = rows[_row(o.inst, o.side)]
        for k in range(at, r.start + r.n - 1):
            pool[k] = pool[k + 1]
        r.n -= 1
        qty = 0
    else:
        level.qty = qty
        if whole:
            level.orders -= 1
    _emit_delta(deltas, counters, insts, row, m, o.inst, o.side, o.px, qty, snapshot)
    if whole:
        o.state = SLOT_DELETED
        counters[C_LIVE] -= 1
    else:
        o.qty -= take
    return take


@_inline
def _rest(orders, rows, pool, counters, deltas, insts, row, m, snapshot):
    """Put the message's order on the book (its row has room, the table a slot)."""
    qty, epoch = _change_level(rows, pool, counters, m.inst, m.side, m.px, m.qty, 1)
    s = _free_slot(orders, m.order_id, m.inst)
    o = orders[s]
    if o.state == SLOT_EMPTY:
        counters[C_USED] += 1
    o.state = SLOT_LIVE
    o.order_id = m.order_id
    o.inst = m.inst
    o.side = m.side
    o.px = m.px
    o.qty = m.qty
    o.epoch = epoch
    counters[C_LIVE] += 1
    insts[m.inst].touch_side = m.side
    _emit_delta(deltas, counters, insts, row, m, m.inst, m.side, m.px, qty, snapshot)


@_inline
def _clear(rows, pool, deltas, counters, insts, row, m, inst, snapshot):
    """Remove every level of an instrument (its orders stop resting: their epochs die)."""
    for side in (1, -1):
        r = rows[_row(inst, side)]
        for j in range(r.n - 1, -1, -1):
            key = pool[r.start + j].key
            _emit_delta(
                deltas, counters, insts, row, m, inst, side, key if side == 1 else -key, 0, snapshot
            )
        r.n = 0


@_inline
def _repair(rows, pool, deltas, notes, counters, insts, row, m, inst):
    """Remove the levels that cross the side last added to; how many."""
    bids = rows[_row(inst, 1)]
    asks = rows[_row(inst, -1)]
    removed = 0
    if insts[inst].touch_side == 1:  # the bid is news: asks at or below it are stale
        best_bid = pool[bids.start + bids.n - 1].key
        while asks.n > 0 and -pool[asks.start + asks.n - 1].key <= best_bid:
            px = -pool[asks.start + asks.n - 1].key
            asks.n -= 1
            _emit_delta(deltas, counters, insts, row, m, inst, -1, px, 0, False)
            removed += 1
    else:
        best_ask = -pool[asks.start + asks.n - 1].key
        while bids.n > 0 and pool[bids.start + bids.n - 1].key >= best_ask:
            px = pool[bids.start + bids.n - 1].key
            bids.n -= 1
            _emit_delta(deltas, counters, insts, row, m, inst, 1, px, 0, False)
            removed += 1
    _note(notes, counters, row, inst, NOTE_CROSSED, removed)


@_inline
def _close(rows, pool, deltas, counters, st, inst, row, ts_event, ts_recv):
    """Close an instrument's open update: flag its last delta, or, when an earlier output
    holds that delta, repeat it flagged (the level's size now; made by message `row`)."""
    if st.open_gen == counters[C_GEN]:
        deltas[st.open_at].flags |= OUT_LAST
    else:
        at = level_at(rows, pool, inst, st.open_side, st.open_px)
        k = counters[C_DELTAS]
        d = deltas[k]
        d.row = row
        d.ts_event = ts_event
        d.ts_recv = ts_recv
        d.inst = inst
        d.side = st.open_side
        d.px = st.open_px
        d.qty = pool[at].qty if at >= 0 else 0
        d.flags = OUT_LAST
        counters[C_DELTAS] = k + 1
    st.open = 0


@_inline
def _settle(rows, pool, deltas, quotes, notes, counters, insts, row, m, inst):
    """The end of one event of an instrument: repair a crossed book, close the update (its
    last delta flagged, repeated when an earlier chunk holds it), emit a changed quote."""
    bids = rows[_row(inst, 1)]
    asks = rows[_row(inst, -1)]
    if (
        bids.n
        and asks.n
        and pool[bids.start + bids.n - 1].key >= -pool[asks.start + asks.n - 1].key
    ):
        _repair(rows, pool, deltas, notes, counters, insts, row, m, inst)
    st = insts[inst]
    if st.open:
        if st.open_gen == counters[C_GEN]:  # (the common case, kept in line)
            deltas[st.open_at].flags |= OUT_LAST
            st.open = 0
        else:
            _close(rows, pool, deltas, counters, st, inst, row, m.ts_event, m.ts_recv)
    if bids.n == 0 or asks.n == 0:
        st.quoted = 0
        return
    bid = pool[bids.start + bids.n - 1]
    ask = pool[asks.start + asks.n - 1]
    if (
        st.quoted
        and st.bid_px == bid.key
        and st.ask_px == -ask.key
        and st.bid_qty == bid.qty
        and st.ask_qty == ask.qty
    ):
        return
    st.quoted = 1
    st.bid_px = bid.key
    st.ask_px = -ask.key
    st.bid_qty = bid.qty
    st.ask_qty = ask.qty
    k = counters[C_QUOTES]
    q = quotes[k]
    q.row = row
    q.ts_event = m.ts_event
    q.ts_recv = m.ts_recv
    q.inst = inst
    q.bid_px = bid.key
    q.ask_px = -ask.key
    q.bid_qty = bid.qty
    q.ask_qty = ask.qty
    counters[C_QUOTES] = k + 1


@_inline
def _print(trades, counters, row, m, px, qty, side):
    k = counters[C_TRADES]
    t = trades[k]
    t.row = row
    t.ts_event = m.ts_event
    t.ts_recv = m.ts_recv
    t.inst = m.inst
    t.px = px
    t.qty = qty
    t.side = side
    counters[C_TRADES] = k + 1


@_inline
def _room_needed(rows, inst):
    """Output rows one message can need: its own two deltas and a repeat, a quote, a print,
    notes, and (for a clear or a repair) every level of the instrument."""
    return 6 + rows[_row(inst, 1)].n + rows[_row(inst, -1)].n


@njit(cache=True)
def apply_nb(
    msgs, start, first_row, orders, rows, pool, insts, counters, deltas, quotes, trades, notes
):
    """Apply messages from `start` on; returns (why it stopped, the next message). `first_row`
    numbers the chunk's first message in the stream (the `row` of what it makes)."""
    grow_at = np.int64(MAX_LOAD * orders.size)
    for i in range(start, msgs.size):
        m = msgs[i]
        inst = m.inst
        need = _room_needed(rows, inst)
        if (
            counters[C_DELTAS] + need > deltas.size
            or counters[C_QUOTES] + 1 > quotes.size
            or counters[C_TRADES] + 1 > trades.size
            or counters[C_NOTES] + 3 > notes.size  # (a note of its own, of a duplicate, a repair)
        ):
            return OUT_FULL, i
        act = m.action
        row = first_row + i
        snapshot = (m.flags & IN_SNAPSHOT) != 0
        placing = act in (ACT_ADD, ACT_MODIFY)
        if placing and counters[C_USED] + 1 > grow_at:
            return ORDERS_FULL, i
        if placing and m.side in (1, -1) and not _room_to_grow(rows, pool, counters, inst, m.side):
            return POOL_FULL, i
        if placing:
            s = find_order(orders, m.order_id, inst)
            at = _resting(rows, pool, orders[s]) if s >= 0 else -1
            if s >= 0 and at < 0:
                orders[s].state = SLOT_DELETED  # (removed with its level before)
                counters[C_LIVE] -= 1
                s = -1
            if s >= 0 and act == ACT_ADD:
                _note(notes, counters, row, inst, NOTE_DUPLICATE_ADD, 1)
            if m.side != 1 and m.side != -1:
                _note(notes, counters, row, inst, NOTE_NO_SIDE, 1)
            elif m.qty < 0 or (m.qty == 0 and act == ACT_ADD):
                _note(notes, counters, row, inst, NOTE_BAD_SIZE, 1)
            elif m.px <= 0 and m.qty > 0:
                _note(notes, counters, row, inst, NOTE_BAD_PRICE, 1)
            else:
                if s >= 0:
                    o = orders[s]
                    if o.side == m.side and o.px == m.px and m.qty > 0:  # (same level)
                        qty, _ = _change_level(
                            rows, pool, counters, inst, o.side, o.px, m.qty - o.qty, 0
                        )
                        o.qty = m.qty
                        insts[inst].touch_side = m.side
                        _emit_delta(
                            deltas, counters, insts, row, m, inst, o.side, o.px, qty, snapshot
                        )
                        s = -2
                    else:
                        _remove_order(
                            orders,
                            rows,
                            pool,
                            counters,
                            s,
                            at,
                            deltas,
                            insts,
                            row,
                            m,
                            snapshot,
                            o.qty,
                        )
                if s != -2 and m.qty > 0:
                    _grow_row(rows, pool, counters, inst, m.side)
                    _rest(orders, rows, pool, counters, deltas, insts, row, m, snapshot)
        elif act in (ACT_CANCEL, ACT_DELETE, ACT_FILL):
            s = find_order(orders, m.order_id, inst)
            at = _resting(rows, pool, orders[s]) if s >= 0 else -1
            if s >= 0 and at < 0:
                orders[s].state = SLOT_DELETED
                counters[C_LIVE] -= 1
                s = -1
            if s < 0:
                _note(notes, counters, row, inst, NOTE_UNKNOWN_ORDER, 1)
            elif act == ACT_FILL:
                o = orders[s]
                px = o.px
                side = o.side
                take = _remove_order(
                    orders,
                    rows,
                    pool,
                    counters,
                    s,
                    at,
                    deltas,
                    insts,
                    row,
                    m,
                    snapshot,
                    m.qty if m.qty > 0 else 0,
                )
                if take > 0:
                    _print(trades, counters, row, m, px, take, -side)
            else:
                whole = orders[s].qty if act == ACT_DELETE else m.qty
                _remove_order(
                    orders,
                    rows,
                    pool,
                    counters,
                    s,
                    at,
                    deltas,
                    insts,
                    row,
                    m,
                    snapshot,
                    whole if whole > 0 else 0,
                )
        elif act == ACT_TRADE:
            if m.side != 1 and m.side != -1:
                _note(notes, counters, row, inst, NOTE_NO_SIDE, 1)
            elif m.qty <= 0:
                _note(notes, counters, row, inst, NOTE_BAD_SIZE, 1)
            elif m.px <= 0:
                _note(notes, counters, row, inst, NOTE_BAD_PRICE, 1)
            else:
                _print(trades, counters, row, m, m.px, m.qty, m.side)
        elif act == ACT_CLEAR:
            _clear(rows, pool, deltas, counters, insts, row, m, inst, snapshot)
        if m.flags & IN_LAST:
            _settle(rows, pool, deltas, quotes, notes, counters, insts, row, m, inst)
    return DONE, msgs.size


@njit(cache=True)
def rebuild_orders_nb(old, new, rows, pool):
    """Move the resting orders of `old` into the empty table `new` (tombstones and orders
    removed with their levels are left behind); how many moved."""
    mask = new.size - 1
    moved = 0
    for i in range(old.size):
        o = old[i]
        if o.state != SLOT_LIVE or _resting(rows, pool, o) < 0:
            continue
        s = _slot_of(o.order_id, o.inst, mask)
        while new[s].state != SLOT_EMPTY:
            s = (s + 1) & mask
        new[s] = o
        moved += 1
    return moved


@njit(cache=True)
def compact_pool_nb(rows, old, new):
    """Copy every row into `new`, back to back with its capacity; the new pool's end."""
    end = 0
    for r in range(rows.size):
        row = rows[r]
        for k in range(row.n):
            new[end + k] = old[row.start + k]
        row.start = end
        end += row.cap
    return end


@njit(cache=True)
def levels_nb(rows, pool, inst, side, px_out, qty_out):
    """Copy a side's levels, best first, into the outputs; how many."""
    r = rows[_row(inst, side)]
    for j in range(r.n):
        level = pool[r.start + r.n - 1 - j]
        px_out[j] = level.key if side == 1 else -level.key
        qty_out[j] = level.qty
    return r.n


@njit(cache=True)
def depth_deltas_nb(inst, px, qty, start, prev_px, prev_qty, out):
    """L2 deltas between snapshots of the top levels (market by price, e.g. MBP-10).

    `px`, `qty` are (records, 2, depth): side 0 bids and 1 asks, best first, a level with
    no price holding 0; `prev_*` (instruments, 2, depth) the last snapshot of each
    instrument, updated. For each record from `start` on: a delta (size 0) for every level
    no longer shown, one for every level new or resized, the last of the record's flagged
    OUT_LAST (the book is the levels shown: one that falls out of them is removed). Returns
    (the next record, rows written); stops before a record whose deltas might not fit."""
    depth = px.shape[2]
    k = 0
    for r in range(start, inst.size):
        if k + 4 * depth > out.size:
            return r, k
        i = inst[r]
        first = k
        for s in range(2):
            side = 1 if s == 0 else -1
            for j in range(depth):  # levels gone
                p = prev_px[i, s, j]
                if prev_qty[i, s, j] <= 0:
                    continue
                shown = False
                for jj in range(depth):
                    if px[r, s, jj] == p and qty[r, s, jj] > 0:
                        shown = True
                        break
                if not shown:
                    out[k].row = r
                    out[k].inst = i
                    out[k].side = side
                    out[k].px = p
                    out[k].qty = 0
                    out[k].flags = 0
                    k += 1
            for j in range(depth):  # levels new or resized
                p = px[r, s, j]
                q = qty[r, s, j]
                if q <= 0:
                    continue
                before = 0
                for jj in range(depth):
                    if prev_px[i, s, jj] == p and prev_qty[i, s, jj] > 0:
                        before = prev_qty[i, s, jj]
                        break
                if before != q:
                    out[k].row = r
                    out[k].inst = i
                    out[k].side = side
                    out[k].px = p
                    out[k].qty = q
                    out[k].flags = 0
                    k += 1
            for j in range(depth):
                prev_px[i, s, j] = px[r, s, j]
                prev_qty[i, s, j] = qty[r, s, j]
        if k > first:
            out[k - 1].flags = OUT_LAST
    return inst.size, k


@njit(cache=True)
def close_updates_nb(rows, pool, insts, counters, deltas, row, ts_event, ts_recv):
    """At the stream's end, close every update still open (a stream that ends inside an
    event): its last delta is flagged, or repeated flagged (as made by message `row`, the
    stream's last, at its times) when an earlier output holds it. Returns False when the
    deltas buffer has no room for them all (nothing is done)."""
    need = 0
    for i in range(insts.size):
        need += insts[i].open
    if counters[C_DELTAS] + need > deltas.size:
        return False
    for i in range(insts.size):
        st = insts[i]
        if st.open:
            _close(rows, pool, deltas, counters, st, i, row, ts_event, ts_recv)
    return True


@njit(cache=True)
def top_changes_nb(inst, bid_px, ask_px, bid_qty, ask_qty, whole, last, shown, keep):
    """Mark the tops of book that make a quote: `whole` ones (both sides there) that differ
    from their instrument's last quote, or follow a top with a side missing. `last`
    (instruments, 4) and `shown` (instruments) carry each instrument's last quote and
    whether it still stands, from call to call; rows not `whole` end it."""
    for i in range(inst.size):
        k = inst[i]
        if not whole[i]:
            shown[k] = False
            continue
        if (shown[k] and last[k, 0] == bid_px[i] and last[k, 1] == ask_px[i]
                and last[k, 2] == bid_qty[i] and last[k, 3] == ask_qty[i]):  # fmt: skip
            continue
        keep[i] = True
        shown[k] = True
        last[k, 0] = bid_px[i]
        last[k, 1] = ask_px[i]
        last[k, 2] = bid_qty[i]
        last[k, 3] = ask_qty[i]
