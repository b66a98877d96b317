"""Order-by-order (MBO, L3) streams made into books: L2 deltas, L1 quotes and trades.

`OrderBooks` keeps the books of every instrument of one stream and applies it chunk by
chunk through the compiled kernel (feeds/book_kernels.py), which stops when it needs room;
this class makes the room (a bigger order table or level pool, or the outputs handed to
the caller) and lets it go on. Memory follows the orders resting at once, not the stream's
length. What the books met that a clean stream never holds (unknown orders, crossed books
repaired, prints without a side) comes back as notes, each with its row.

Prices are integers in units of 1e-9 (Databento's), sizes integers in the source's units
divided by `size_scale`: the kernel adds sizes exactly, and `Derived` gives them back as
floats.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from . import book_kernels as bk

PRICE_SCALE = 1e9  # a price key is the price times this
START_ORDERS = 1 << 12  # slots of the order table at the start (it doubles as needed; small
# enough to stay in a core's cache while few orders rest)
START_LEVELS = 16  # levels per (instrument, side) at the start (each row doubles as needed)
OUT_ROWS = 1 << 16  # rows of each output buffer (grown when one message needs more)
NOTE_NAMES = {
    bk.NOTE_UNKNOWN_ORDER: "unknown order (cancel, delete or fill of an order not resting)",
    bk.NOTE_DUPLICATE_ADD: "add of an order id already resting (taken as a modify)",
    bk.NOTE_CROSSED: "crossed or locked book (the stale levels removed)",
    bk.NOTE_NO_SIDE: "no side (a print without an aggressor, or an order without a side)",
    bk.NOTE_BAD_SIZE: "size not positive (left out)",
    bk.NOTE_BAD_PRICE: "price not positive (left out)",
}


@dataclass(frozen=True)
class Derived:
    """What one stretch of messages made: rows of each kind (their `row` is the message's
    place in the stream), and notes. Views of the books' buffers: valid until the books
    are applied again (copy what must be kept)."""

    deltas: np.ndarray  # bk.DELTA_DTYPE
    quotes: np.ndarray  # bk.QUOTE_DTYPE
    trades: np.ndarray  # bk.TRADE_DTYPE
    notes: np.ndarray  # bk.NOTE_DTYPE

    def copy(self) -> Derived:
        """A copy that outlives the next call of the books."""
        return Derived(
            self.deltas.copy(), self.quotes.copy(), self.trades.copy(), self.notes.copy()
        )


class OrderBooks:
    """The books of one MBO stream, built by `apply(messages)` chunk after chunk."""

    def __init__(self, instruments: int = 1, *, out_rows: int = OUT_ROWS) -> None:
        self.orders = np.zeros(START_ORDERS, dtype=bk.ORDER_DTYPE)
        self.rows = np.zeros(0, dtype=bk.ROW_DTYPE)
        self.pool = np.zeros(0, dtype=bk.LEVEL_DTYPE)
        self.insts = np.zeros(0, dtype=bk.INST_DTYPE)
        self.counters = np.zeros(bk.N_COUNTERS, dtype=np.int64)
        self.deltas = np.zeros(out_rows, dtype=bk.DELTA_DTYPE)
        self.quotes = np.zeros(out_rows, dtype=bk.QUOTE_DTYPE)
        self.trades = np.zeros(out_rows, dtype=bk.TRADE_DTYPE)
        self.notes = np.zeros(out_rows, dtype=bk.NOTE_DTYPE)
        self.messages = 0  # messages applied so far (the next message's row)
        self.note_counts: dict[int, int] = {}
        self._last_times = (0, 0)  # the last message's ts_event and ts_recv
        self._instruments(instruments)

    def apply(self, msgs: np.ndarray) -> Iterator[Derived]:
        """Apply a chunk of messages (bk.MBO_DTYPE, `inst` dense from 0); yields what they
        made, in order, whenever the buffers fill and once at the end."""
        if msgs.dtype != bk.MBO_DTYPE:
            raise TypeError(f"messages must be of dtype {bk.MBO_DTYPE}, not {msgs.dtype}")
        if msgs.size:
            self._instruments(int(msgs["inst"].max()) + 1)
        at = 0
        while True:
            why, at = bk.apply_nb(
                msgs,
                at,
                self.messages,
                self.orders,
                self.rows,
                self.pool,
                self.insts,
                self.counters,
                self.deltas,
                self.quotes,
                self.trades,
                self.notes,
            )
            if why == bk.DONE:
                break
            if why == bk.OUT_FULL:
                if self._used():
                    yield self._flush()
                else:  # (one message needs more rows than a buffer holds: a deep book)
                    self._grow_outputs(int(bk._room_needed(self.rows, msgs[at]["inst"])) * 2)
            elif why == bk.ORDERS_FULL:
                self._rebuild_orders()
            elif why == bk.POOL_FULL:
                self._grow_pool()
        self.messages += msgs.size
        if msgs.size:
            self._last_times = (int(msgs["ts_event"][-1]), int(msgs["ts_recv"][-1]))
        if self._used():
            yield self._flush()

    def finish(self) -> Iterator[Derived]:
        """Close the updates still open at the stream's end (a stream that ends inside an
        event: its last delta is flagged, where a replay looks at the book); yields what
        that made, as made by the stream's last message, at its times."""
        last = max(self.messages - 1, 0)
        while not bk.close_updates_nb(self.rows, self.pool, self.insts, self.counters,
                                      self.deltas, last, *self._last_times):  # fmt: skip
            if self._used():
                yield self._flush()
            else:
                self._grow_outputs(2 * self.insts.size)
        if self._used():
            yield self._flush()

    def levels(self, inst: int, side: int) -> tuple[np.ndarray, np.ndarray]:
        """A side's levels, best first: prices (keys) and sizes."""
        if inst >= self.insts.size:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        n = int(self.rows[inst * 2 + (0 if side == 1 else 1)]["n"])
        px = np.zeros(n, np.int64)
        qty = np.zeros(n, np.int64)
        bk.levels_nb(self.rows, self.pool, inst, side, px, qty)
        return px, qty

    def resting(self) -> np.ndarray:
        """Every order still resting (bk.ORDER_DTYPE): those of the table whose level lives."""
        live = self.orders[self.orders["state"] == bk.SLOT_LIVE]
        keep = np.zeros(live.size, dtype=np.bool_)
        for k, o in enumerate(live):
            keep[k] = bk._resting(self.rows, self.pool, o) >= 0
        return live[keep]

    def _used(self) -> bool:
        c = self.counters
        return bool(c[bk.C_DELTAS] or c[bk.C_QUOTES] or c[bk.C_TRADES] or c[bk.C_NOTES])

    def _flush(self) -> Derived:
        c = self.counters
        out = Derived(
            self.deltas[: c[bk.C_DELTAS]],
            self.quotes[: c[bk.C_QUOTES]],
            self.trades[: c[bk.C_TRADES]],
            self.notes[: c[bk.C_NOTES]],
        )
        for code, count in zip(*np.unique(out.notes["code"], return_counts=True), strict=True):
            self.note_counts[int(code)] = self.note_counts.get(int(code), 0) + int(count)
        c[bk.C_DELTAS : bk.C_NOTES + 1] = 0
        c[bk.C_GEN] += 1
        return out

    def _instruments(self, n: int) -> None:
        """Books for instruments 0..n-1 (rows of START_LEVELS levels for new ones)."""
        have = self.insts.size
        if n <= have:
            return
        insts = np.zeros(n, dtype=bk.INST_DTYPE)
        insts[:have] = self.insts
        self.insts = insts
        rows = np.zeros(2 * n, dtype=bk.ROW_DTYPE)
        rows[: 2 * have] = self.rows
        end = int(self.counters[bk.C_POOL_END])
        new_rows = rows[2 * have :]
        new_rows["cap"] = START_LEVELS
        new_rows["start"] = end + START_LEVELS * np.arange(new_rows.size)
        self.rows = rows
        self.counters[bk.C_POOL_END] = end + START_LEVELS * new_rows.size
        if self.counters[bk.C_POOL_END] > self.pool.size:
            self._grow_pool()

    def _grow_pool(self) -> None:
        """Compact the rows into a pool with room for each to double at least once more."""
        need = int(self.rows["cap"].sum())
        size = max(2 * need, 4 * int(self.rows["cap"].max(initial=START_LEVELS)), 1024)
        pool = np.zeros(size, dtype=bk.LEVEL_DTYPE)
        self.counters[bk.C_POOL_END] = bk.compact_pool_nb(self.rows, self.pool, pool)
        self.pool = pool

    def _rebuild_orders(self) -> None:
        """A table twice the resting orders' need (at least as big as now when mostly
        live), without tombstones or orders removed with their levels."""
        live = int(self.counters[bk.C_LIVE])
        size = self.orders.size
        while live + 1 > bk.MAX_LOAD * size / 2:
            size *= 2
        new = np.zeros(size, dtype=bk.ORDER_DTYPE)
        moved = bk.rebuild_orders_nb(self.orders, new, self.rows, self.pool)
        self.orders = new
        self.counters[bk.C_USED] = moved
        self.counters[bk.C_LIVE] = moved

    def _grow_outputs(self, rows: int) -> None:
        rows = max(rows, self.deltas.size)
        self.deltas = np.zeros(rows, dtype=bk.DELTA_DTYPE)
        self.quotes = np.zeros(rows, dtype=bk.QUOTE_DTYPE)
        self.trades = np.zeros(rows, dtype=bk.TRADE_DTYPE)
        self.notes = np.zeros(rows, dtype=bk.NOTE_DTYPE)
