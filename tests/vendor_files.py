"""Vendor files for tests, written by the vendor's own encoder where there is one, and a
plain-Python order book that follows the documented rules (docs/data.md) one order at a time.

The book here is the test's reference: a dict of orders, levels summed afresh whenever they
are looked at, no hashing, no sorted pool. The compiled book (feeds/book_kernels.py) must
agree with it at every event.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import databento_dbn as dbn
import zstandard

from tickwise.feeds import book_kernels as bk

ES_ID = 5482
DAY = dt.date(2024, 1, 5)
T0 = 1_704_441_600_000_000_000  # 2024-01-05 08:00:00 UTC, in ns


def write_dbn(
    path: Path,
    schema: str,
    records: list,
    symbols: dict[str, int] | None = None,
    *,
    compress: bool = False,
) -> Path:
    """A DBN file of `records` (databento_dbn record objects) by the package's encoder, its
    metadata mapping each raw symbol to its instrument id for the day."""
    symbols = symbols or {"ESH4": ES_ID}
    mappings = [
        SimpleNamespace(
            raw_symbol=s,
            intervals=[
                SimpleNamespace(start_date=DAY, end_date=DAY + dt.timedelta(days=1), symbol=str(i))
            ],
        )
        for s, i in symbols.items()
    ]
    meta = dbn.Metadata(
        dataset="GLBX.MDP3",
        start=T0,
        stype_in=dbn.SType.RAW_SYMBOL,
        stype_out=dbn.SType.INSTRUMENT_ID,
        schema=dbn.Schema(schema),
        symbols=list(symbols),
        mappings=mappings,
        end=T0 + 86_400 * 10**9,
    )
    data = meta.encode() + b"".join(bytes(r) for r in records)
    if compress:
        data = zstandard.ZstdCompressor().compress(data)
    path.write_bytes(data)
    return path


_DBN_ACTIONS = {
    bk.ACT_ADD: dbn.Action.ADD,
    bk.ACT_CANCEL: dbn.Action.CANCEL,
    bk.ACT_MODIFY: dbn.Action.MODIFY,
    bk.ACT_CLEAR: dbn.Action.CLEAR,
    bk.ACT_TRADE: dbn.Action.TRADE,
    bk.ACT_NONE: dbn.Action.NONE,
}
_DBN_SIDES = {1: dbn.Side.BID, -1: dbn.Side.ASK, 0: dbn.Side.NONE}


def mbo_record(
    ts: int,
    action: int,
    side: int,
    order_id: int,
    px: int,
    qty: int,
    instrument_id: int = ES_ID,
    flags: int = dbn.F_LAST,
    recv: int | None = None,
) -> dbn.MBOMsg:
    """One Databento MBO record (px in 1e-9 units; received 1 µs after `ts` unless told)."""
    return dbn.MBOMsg(
        publisher_id=1,
        instrument_id=instrument_id,
        ts_event=ts,
        order_id=order_id,
        price=px,
        size=qty,
        action=_DBN_ACTIONS[action],
        side=_DBN_SIDES[side],
        ts_recv=ts + 1000 if recv is None else recv,
        flags=flags,
        sequence=0,
    )


@dataclass
class Order:
    side: int
    px: int
    qty: int


@dataclass
class ReferenceBook:
    """The documented rules, order by order (one instrument)."""

    orders: dict[int, Order] = field(default_factory=dict)
    touch: int = 0
    notes: list[int] = field(default_factory=list)
    trades: list[tuple[int, int, int]] = field(default_factory=list)  # (px, qty, side)

    def levels(self, side: int) -> list[tuple[int, int]]:
        """(price, size) best first."""
        sums: dict[int, int] = {}
        for o in self.orders.values():
            if o.side == side:
                sums[o.px] = sums.get(o.px, 0) + o.qty
        return sorted(sums.items(), reverse=side == 1)

    def top(self) -> tuple[int, int, int, int] | None:
        bids, asks = self.levels(1), self.levels(-1)
        if not bids or not asks:
            return None
        return bids[0][0], asks[0][0], bids[0][1], asks[0][1]

    def apply(
        self, action: int, side: int, order_id: int, px: int, qty: int, last: bool = True
    ) -> None:
        if action in (bk.ACT_ADD, bk.ACT_MODIFY):
            known = order_id in self.orders
            if known and action == bk.ACT_ADD:
                self.notes.append(bk.NOTE_DUPLICATE_ADD)
            if side not in (1, -1):
                self.notes.append(bk.NOTE_NO_SIDE)
            elif qty < 0 or (qty == 0 and action == bk.ACT_ADD):
                self.notes.append(bk.NOTE_BAD_SIZE)
            elif px <= 0 and qty > 0:
                self.notes.append(bk.NOTE_BAD_PRICE)
            else:
                self.orders.pop(order_id, None)
                if qty > 0:
                    self.orders[order_id] = Order(side, px, qty)
                    self.touch = side
        elif action in (bk.ACT_CANCEL, bk.ACT_DELETE, bk.ACT_FILL):
            o = self.orders.get(order_id)
            if o is None:
                self.notes.append(bk.NOTE_UNKNOWN_ORDER)
            else:
                take = o.qty if action == bk.ACT_DELETE else min(max(qty, 0), o.qty)
                o.qty -= take
                if o.qty == 0:
                    del self.orders[order_id]
                if action == bk.ACT_FILL and take > 0:
                    self.trades.append((o.px, take, -o.side))
        elif action == bk.ACT_TRADE:
            if side not in (1, -1):
                self.notes.append(bk.NOTE_NO_SIDE)
            elif qty <= 0:
                self.notes.append(bk.NOTE_BAD_SIZE)
            elif px <= 0:
                self.notes.append(bk.NOTE_BAD_PRICE)
            else:
                self.trades.append((px, qty, side))
        elif action == bk.ACT_CLEAR:
            self.orders.clear()
        if last:
            self._repair()

    def _repair(self) -> None:
        bids, asks = self.levels(1), self.levels(-1)
        if not bids or not asks or bids[0][0] < asks[0][0]:
            return
        if self.touch == 1:
            stale = {id_ for id_, o in self.orders.items() if o.side == -1 and o.px <= bids[0][0]}
        else:
            stale = {id_ for id_, o in self.orders.items() if o.side == 1 and o.px >= asks[0][0]}
        for id_ in stale:
            del self.orders[id_]
        self.notes.append(bk.NOTE_CROSSED)
