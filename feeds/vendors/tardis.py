"""Tardis.dev's CSV datasets (`.csv`, `.csv.gz`), told apart by their header.

| dataset | kinds | columns used (beside symbol, timestamp, local_timestamp) |
|---|---|---|
| incremental_book_L2 | book | is_snapshot, side, price, amount |
| book_snapshot_N | book, quotes | asks[i].price, asks[i].amount, bids[i].price, bids[i].amount |
| quotes | quotes | bid_price, bid_amount, ask_price, ask_amount |
| trades | trades | side, price, amount |

Times are microseconds since the epoch: `timestamp` (the exchange's) becomes ts_event and
`local_timestamp` (Tardis's receipt) ts_recv, both in ns.

incremental_book_L2: `amount` is the level's new absolute size, 0 removes it. A symbol's
book starts at its first snapshot (rows before it are left out and counted: the book they
change is not known); a snapshot that follows updates resets the book (its first row clears
it, BOOK_F_CLEAR). The rows of one message share `local_timestamp`: the last of them is
flagged (BOOK_F_LAST), where the book is consistent.

book_snapshot_N: the book is the N levels shown (a level that leaves them is removed), as
deltas between consecutive snapshots, and the top as quotes where it changed. A side with no
price is empty. trades: side buy is +1 and sell -1 (the aggressor); unknown is left out and
counted. quotes: a row with a side missing is no quote (counted).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl

from tickwise.engine.errors import DataError
from tickwise.engine.schemas import BOOK_F_CLEAR, BOOK_F_LAST, BOOK_F_SNAPSHOT

from .. import book_kernels as bk
from . import Rows, Symbols, Tops
from .tables import Cells, csv_chunks, first_line, header_names, open_binary

US = 1_000  # ns per microsecond
SIZE_SCALE = 1e8  # sizes are kept to 1e-8 between snapshots
MAX_SIZE = 9e10  # (a size of 1e-8 units in 64 bits)
MAX_PRICE = 9e9  # (a price of 1e-9 units in 64 bits)
DEPTH_ROWS = 1 << 16
_BASE = ["exchange", "symbol", "timestamp", "local_timestamp"]
_SIDES = {"bid": 1, "buy": 1, "ask": -1, "sell": -1}
_TRADE_SIDES = {"buy": 1, "sell": -1, "unknown": 0}
_BOOLS = {"true": 1, "false": 0}


def dataset(names: list[str], file_name: str = "") -> str | None:
    """Which Tardis dataset a header (and the file's name, which Tardis makes
    EXCHANGE_DATASET_DATE_SYMBOL.csv.gz) is, or None."""
    have = set(names)
    if not set(_BASE) <= have:
        return None
    if "_liquidations_" in file_name or {"strike_price", "expiration"} & have:
        return "other"  # (liquidations have the trades' columns; options_chain the quotes')
    if {"is_snapshot", "side", "price", "amount"} <= have:
        return "incremental_book_L2"
    if "asks[0].price" in have and "bids[0].price" in have:
        return "book_snapshot"
    if {"ask_amount", "ask_price", "bid_price", "bid_amount"} <= have:
        return "quotes"
    if {"side", "price", "amount"} <= have:
        return "trades"
    return "other"


class TardisReader:
    """Tardis.dev CSV files (one dataset each)."""

    name = "tardis"
    place = "line"
    size_scale = 1.0

    def __init__(self) -> None:
        self._notes: dict[str, int] = {}
        self._path = Path()
        self._started: dict[int, bool] = {}  # incremental_book_L2: each symbol's book known
        self._tops = Tops()  # book_snapshot_N: last quote per instrument
        self._depth_px = np.zeros((0, 2, 1), dtype=np.int64)
        self._depth_qty = np.zeros((0, 2, 1), dtype=np.int64)

    def notes(self) -> dict[str, int]:
        return dict(self._notes)

    def _header(self, path: Path) -> tuple[list[str], str]:
        with open_binary(path) as stream:
            names = header_names(first_line(stream, path))
        kind = dataset(names, path.name)
        if kind is None:
            raise DataError(
                f"{path}: not a Tardis.dev CSV (its header lacks "
                f"{', '.join(n for n in _BASE if n not in names)})"
            )
        if kind == "other":
            raise DataError(
                f"{path}: a Tardis.dev dataset that is not imported; these are: "
                "incremental_book_L2, book_snapshot_N, quotes, trades (not liquidations or "
                "options_chain)"
            )
        return names, kind

    def kinds(self, path: Path) -> tuple[str, ...]:
        return {
            "incremental_book_L2": ("book",),
            "book_snapshot": ("book", "quotes"),
            "quotes": ("quotes",),
            "trades": ("trades",),
        }[self._header(path)[1]]

    def read(self, path: Path, symbols: Symbols) -> Iterator[Rows]:
        names, kind = self._header(path)
        self._path = path
        with open_binary(path) as stream:
            malformed: list[tuple[int, str]] = []
            chunks = csv_chunks(stream, path, names, header=True, malformed=malformed)
            if kind == "incremental_book_L2":
                for rows in self._incremental(chunks, symbols):
                    rows.refused.extend(malformed)
                    malformed.clear()
                    yield rows
                if malformed:
                    yield Rows("book", {}, np.zeros(0, np.uint64), list(malformed))
                return
            for frame, lines in chunks:
                if malformed:  # (rows the reader could not split: told, with the next rows)
                    yield Rows("book", {}, np.zeros(0, np.uint64), list(malformed))
                    malformed.clear()
                cells = Cells(frame)
                sym = frame["symbol"]
                for r in np.flatnonzero(sym.is_null().to_numpy()).tolist():
                    cells.bad.setdefault(r, "symbol is empty")
                ts_event = cells.times("timestamp", US)
                ts_recv = cells.times("local_timestamp", US)
                if kind == "trades":
                    yield self._trades(cells, frame, lines, symbols, ts_event, ts_recv)
                elif kind == "quotes":
                    yield self._quotes(cells, frame, lines, symbols, ts_event, ts_recv)
                else:
                    yield from self._snapshots(
                        cells, frame, names, lines, symbols, ts_event, ts_recv
                    )
            if malformed:
                yield Rows("book", {}, np.zeros(0, np.uint64), list(malformed))

    def _count(self, why: str, n: int) -> None:
        if n:
            self._notes[why] = self._notes.get(why, 0) + n

    def _trades(
        self,
        cells: Cells,
        frame: pl.DataFrame,
        lines: np.ndarray,
        symbols: Symbols,
        ts_event: np.ndarray,
        ts_recv: np.ndarray,
    ) -> Rows:
        px = cells.number("price")
        sz = cells.number("amount")
        side = cells.choice("side", _TRADE_SIDES, what="buy, sell or unknown")
        keep = cells.keep()
        unsided = keep & (side == 0)
        self._count(
            "trades with side unknown (left out: tickwise trades carry their aggressor)",
            int(unsided.sum()),
        )
        pick = keep & (side != 0)
        return Rows(
            "trades",
            {
                "ts_event": ts_event[pick],
                "ts_recv": ts_recv[pick],
                "instrument": symbols.indices(frame["symbol"].to_numpy()[pick]),
                "px": px[pick],
                "sz": sz[pick],
                "side": side[pick],
            },
            lines[pick],
            cells.refused(lines),
        )

    def _quotes(
        self,
        cells: Cells,
        frame: pl.DataFrame,
        lines: np.ndarray,
        symbols: Symbols,
        ts_event: np.ndarray,
        ts_recv: np.ndarray,
    ) -> Rows:
        present = ~(frame["bid_price"].is_null() | frame["ask_price"].is_null()).to_numpy()
        cols = {
            n: cells.number(n, rows=present)
            for n in ("bid_price", "ask_price", "bid_amount", "ask_amount")
        }
        keep = cells.keep()
        self._count(
            "quotes with a side missing (no quote: tickwise quotes have both)",
            int((keep & ~present).sum()),
        )
        pick = keep & present
        return Rows(
            "quotes",
            {
                "ts_event": ts_event[pick],
                "ts_recv": ts_recv[pick],
                "instrument": symbols.indices(frame["symbol"].to_numpy()[pick]),
                "bid_px": cols["bid_price"][pick],
                "ask_px": cols["ask_price"][pick],
                "bid_sz": cols["bid_amount"][pick],
                "ask_sz": cols["ask_amount"][pick],
            },
            lines[pick],
            cells.refused(lines),
        )

    def _incremental(
        self, chunks: Iterator[tuple[pl.DataFrame, np.ndarray]], symbols: Symbols
    ) -> Iterator[Rows]:
        """Book deltas; the last row of each message (rows sharing symbol, local_timestamp
        and is_snapshot) flagged, which needs the next row: a chunk's last message waits
        for the next chunk."""
        held: tuple[pl.DataFrame, np.ndarray] | None = None
        for frame, lines in chunks:
            if held is not None:
                frame = pl.concat([held[0], frame])
                lines = np.concatenate([held[1], lines])
            key = frame.select(
                pl.concat_str(
                    ["symbol", "local_timestamp", "is_snapshot"], separator="|", ignore_nulls=True
                )
            )
            key = key.to_series()
            tail = int(np.flatnonzero((key != key[-1]).to_numpy()).max(initial=-1)) + 1
            if tail == 0:  # (one message so far: hold it all)
                held = (frame, lines)
                continue
            held = (frame[tail:], lines[tail:])
            yield self._deltas(frame[:tail], lines[:tail], symbols)
        if held is not None:
            yield self._deltas(held[0], held[1], symbols)

    def _deltas(self, frame: pl.DataFrame, lines: np.ndarray, symbols: Symbols) -> Rows:
        cells = Cells(frame)
        for r in np.flatnonzero(frame["symbol"].is_null().to_numpy()).tolist():
            cells.bad.setdefault(r, "symbol is empty")
        ts_event = cells.times("timestamp", US)
        ts_recv = cells.times("local_timestamp", US)
        snap = cells.choice("is_snapshot", _BOOLS, what="true or false").astype(np.bool_)
        side = cells.choice("side", _SIDES, what="bid or ask")
        px = cells.number("price")
        sz = cells.number("amount")
        keep = cells.keep()
        inst = np.zeros(frame.height, dtype=np.uint32)
        inst[keep] = symbols.indices(frame["symbol"].to_numpy()[keep])
        key = (
            frame.select(
                pl.concat_str(
                    ["symbol", "local_timestamp", "is_snapshot"], separator="|", ignore_nulls=True
                )
            )
            .to_series()
            .to_numpy()
        )
        # Messages' ends and starts among the rows kept (a refused last row of a message
        # must not take the message's end with it); the chunk holds whole messages.
        kept = np.flatnonzero(keep)
        last = np.zeros(frame.height, dtype=np.bool_)
        start = np.zeros(frame.height, dtype=np.bool_)
        if kept.size:
            k = key[kept]
            last[kept] = np.r_[k[1:] != k[:-1], True]
            start[kept] = np.r_[True, k[1:] != k[:-1]]
        flags = np.where(last, BOOK_F_LAST, 0).astype(np.uint8)
        rows = np.flatnonzero(keep)
        out_keep = np.zeros(frame.height, dtype=np.bool_)
        for i in np.unique(inst[rows]).tolist():
            mine = rows[inst[rows] == i]
            s = snap[mine]
            started = np.logical_or.accumulate(np.r_[self._started.get(i, False), s])[1:]
            self._count(
                "book updates before their symbol's first snapshot (left out: the "
                "book they change is not known)",
                int((~started).sum()),
            )
            flags[mine] |= np.where(s, BOOK_F_SNAPSHOT, 0).astype(np.uint8)
            # Each snapshot message is a whole book: its first row clears the one before.
            flags[mine] |= np.where(s & start[mine], BOOK_F_CLEAR, 0).astype(np.uint8)
            out_keep[mine[started]] = True
            self._started[i] = bool(started[-1])
        pick = out_keep
        return Rows(
            "book",
            {
                "ts_event": ts_event[pick],
                "ts_recv": ts_recv[pick],
                "instrument": inst[pick],
                "side": side[pick],
                "px": px[pick],
                "sz": sz[pick],
                "flags": flags[pick],
            },
            lines[pick],
            cells.refused(lines),
        )

    def _snapshots(
        self,
        cells: Cells,
        frame: pl.DataFrame,
        names: list[str],
        lines: np.ndarray,
        symbols: Symbols,
        ts_event: np.ndarray,
        ts_recv: np.ndarray,
    ) -> Iterator[Rows]:
        depth = 1 + max(int(m.group(1)) for n in names if (m := re.match(r"asks\[(\d+)\]", n)))
        wanted = [f"{side}[{j}].{what}" for j in range(depth) for side in ("asks", "bids")
                  for what in ("price", "amount")]  # fmt: skip
        absent = [n for n in wanted if n not in names]
        if absent:
            raise DataError(f"{self._path}: a book_snapshot_{depth} file lacks the column "
                            f"{absent[0]}")  # fmt: skip
        if self._depth_px.shape[0] and self._depth_px.shape[2] != depth:
            raise DataError(f"{self._path}: book_snapshot_{depth} after book_snapshot_"
                            f"{self._depth_px.shape[2]}: give snapshots of one depth")  # fmt: skip
        px = np.zeros((frame.height, 2, depth), dtype=np.int64)
        qty = np.zeros((frame.height, 2, depth), dtype=np.int64)
        for j in range(depth):
            for s, side in ((0, "bids"), (1, "asks")):
                given = ~frame[f"{side}[{j}].price"].is_null().to_numpy()
                p = cells.number(f"{side}[{j}].price", rows=given)
                a = cells.number(f"{side}[{j}].amount", rows=given)
                for r in np.flatnonzero(given & ~((p > 0) & (p < MAX_PRICE))).tolist():
                    cells.bad.setdefault(r, f"{side}[{j}].price is {float(p[r])!r}; expected a "
                                            f"positive price below {MAX_PRICE:.0e}")  # fmt: skip
                for r in np.flatnonzero(given & ~((a >= 0) & (a < MAX_SIZE))).tolist():
                    cells.bad.setdefault(r, f"{side}[{j}].amount is {float(a[r])!r}; expected an "
                                            f"amount from 0 to {MAX_SIZE:.0e}")  # fmt: skip
                ok = given & (p > 0) & (p < MAX_PRICE) & (a >= 0) & (a < MAX_SIZE)
                px[:, s, j] = np.where(ok, np.rint(p * 1e9), 0)
                qty[:, s, j] = np.where(ok, np.rint(a * SIZE_SCALE), 0)
        keep = cells.keep()
        rows = np.flatnonzero(keep)
        inst = symbols.indices(frame["symbol"].to_numpy()[rows])
        yield Rows("book", {}, np.zeros(0, np.uint64), cells.refused(lines))  # (refused only)
        n_inst = int(inst.max()) + 1 if inst.size else 0
        if n_inst > self._depth_px.shape[0] or self._depth_px.shape[2] != depth:
            grow = max(n_inst, self._depth_px.shape[0])
            px0 = np.zeros((grow, 2, depth), np.int64)
            qty0 = np.zeros((grow, 2, depth), np.int64)
            if self._depth_px.shape[2] == depth:
                px0[: self._depth_px.shape[0]] = self._depth_px
                qty0[: self._depth_qty.shape[0]] = self._depth_qty
            self._depth_px, self._depth_qty = px0, qty0
        sub_px, sub_qty = px[rows], qty[rows]
        out = np.zeros(max(DEPTH_ROWS, 8 * depth), dtype=bk.DELTA_DTYPE)
        at = 0
        while at < rows.size:
            at_next, k = bk.depth_deltas_nb(
                inst, sub_px, sub_qty, at, self._depth_px, self._depth_qty, out
            )
            d = out[:k]
            src = rows[d["row"]]
            yield Rows(
                "book",
                {
                    "ts_event": ts_event[src],
                    "ts_recv": ts_recv[src],
                    "instrument": d["inst"],
                    "side": d["side"],
                    "px": d["px"] / 1e9,
                    "sz": d["qty"] / SIZE_SCALE,
                    "flags": d["flags"],
                },
                lines[src],
            )
            at = at_next
        top = (sub_qty[:, 0, 0] > 0) & (sub_qty[:, 1, 0] > 0)
        changed = self._tops.changes(
            inst, sub_px[:, 0, 0], sub_px[:, 1, 0], sub_qty[:, 0, 0], sub_qty[:, 1, 0], top
        )
        src = rows[changed]
        yield Rows(
            "quotes",
            {
                "ts_event": ts_event[src],
                "ts_recv": ts_recv[src],
                "instrument": inst[changed],
                "bid_px": sub_px[changed, 0, 0] / 1e9,
                "ask_px": sub_px[changed, 1, 0] / 1e9,
                "bid_sz": sub_qty[changed, 0, 0] / SIZE_SCALE,
                "ask_sz": sub_qty[changed, 1, 0] / SIZE_SCALE,
            },
            lines[src],
        )
