"""LOBSTER's Nasdaq order-book files: TICKER_DATE_START_END_message_LEVEL.csv, and beside it
(when given too) ..._orderbook_LEVEL.csv, whose row k is the book after message k.

Message columns (no header): time (seconds after midnight, New York time, the date from the
file name), type, order id, size, price (dollars x 10,000) and direction (1 buy, -1 sell:
the side of the limit order the message is about). Types:

| type | what | becomes |
|---|---|---|
| 1 | a new limit order | add |
| 2 | part of an order cancelled | cancel of `size` |
| 3 | an order deleted | delete |
| 4 | a visible order executed | a fill of it: a print, the aggressor the other side |
| 5 | a hidden order executed | a print (the aggressor the side opposite `direction`) |
| 6 | a cross (auction) trade | left out (no aggressor), counted |
| 7 | a trading halt or resume | left out, counted |

With the message file alone, its events are made into books (feeds/orderbook.py); orders
resting before the file starts are not in it, so their cancels and executions are noted as
unknown orders. With the orderbook file too, the book (the LEVEL levels shown; empty levels
are LOBSTER's dummy prices) and quotes come from it, exact from the first row, and the
trades from the messages.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl

from tickwise.engine.errors import DataError

from .. import book_kernels as bk
from . import MBO, Rows, Symbols, Tops
from .tables import Cells, csv_chunks, open_binary

PRICE_UNIT = 100_000  # LOBSTER's 1e-4 dollars in 1e-9 units
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
DUMMY = 9_999_999_999  # the price of an empty level in an orderbook file
MAX_PRICE = 90_000_000_000_000  # (x 10,000: $9e9; beyond, 1e-9 units overflow 64 bits)
DEPTH_ROWS = 1 << 16
_NAME = re.compile(
    r"^(?P<ticker>[^_]+)_(?P<date>\d{4}-\d{2}-\d{2})_(?P<start>\d+)_(?P<end>\d+)_"
    r"(?P<what>message|orderbook)_(?P<level>\d+)\.csv$"
)
_MESSAGE = ["time", "type", "order_id", "size", "price", "direction"]
# Types 0-7 as the book's actions: an execution takes its size from the resting order (its
# print is made from the message, `_messages`); hidden executions, crosses and halts leave the
# book alone.
_ACTIONS = np.array(
    [
        bk.ACT_NONE,
        bk.ACT_ADD,
        bk.ACT_CANCEL,
        bk.ACT_DELETE,
        bk.ACT_CANCEL,
        bk.ACT_NONE,
        bk.ACT_NONE,
        bk.ACT_NONE,
    ],
    dtype=np.int8,
)
HIDDEN_SIDE_MASKED = dt.date(2014, 7, 14)  # from this day a hidden execution's side is "buy"


def parse_name(path: Path) -> re.Match:
    m = _NAME.match(path.name)
    if m is None:
        raise DataError(
            f"{path}: not a LOBSTER file name (TICKER_DATE_START_END_message_LEVEL"
            ".csv or ..._orderbook_LEVEL.csv)"
        )
    return m


def partner(path: Path) -> Path:
    """The orderbook file of a message file, or the message file of an orderbook file."""
    m = parse_name(path)
    other = "orderbook" if m.group("what") == "message" else "message"
    return path.with_name(path.name.replace(f"_{m.group('what')}_", f"_{other}_"))


class LobsterReader:
    """LOBSTER message files, with their orderbook files when given."""

    name = "lobster"
    place = "line"
    size_scale = 1.0

    def __init__(self) -> None:
        self._notes: dict[str, int] = {}
        self._sources: set[Path] = set()
        self._tops = Tops()
        self._depth: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # last levels shown

    def prepare(self, sources: list[Path]) -> None:
        """Pair message and orderbook files among the sources."""
        self._sources = {s.resolve() for s in sources}
        for s in sources:
            if (
                parse_name(s).group("what") == "orderbook"
                and partner(s).resolve() not in self._sources
            ):
                raise DataError(
                    f"{s}: an orderbook file needs its message file, "
                    f"{partner(s).name}, among the sources"
                )

    def notes(self) -> dict[str, int]:
        return dict(self._notes)

    def _paired(self, path: Path) -> bool:
        return partner(path).resolve() in self._sources

    def kinds(self, path: Path) -> tuple[str, ...]:
        if parse_name(path).group("what") == "orderbook":
            return ()  # (read with its message file)
        return ("book", "quotes", "trades") if self._paired(path) else (MBO, "trades")

    def _count(self, why: str, n: int) -> None:
        if n:
            self._notes[why] = self._notes.get(why, 0) + n

    def read(self, path: Path, symbols: Symbols) -> Iterator[Rows]:
        m = parse_name(path)
        if m.group("what") == "orderbook":
            return
        index = symbols.index(m.group("ticker"))
        try:
            day = dt.date.fromisoformat(m.group("date"))
        except ValueError:
            raise DataError(f"{path}: {m.group('date')} in the file name is not a date") from None
        midnight = dt.datetime.combine(day, dt.time(), tzinfo=NEW_YORK)
        base = int(midnight.timestamp()) * 10**9
        masked = day >= HIDDEN_SIDE_MASKED
        paired = self._paired(path)
        level = int(m.group("level"))
        with open_binary(path) as stream:
            # (a row that will not split stops the import: skipped, it would shift every
            # message against its row of the orderbook file)
            messages = csv_chunks(stream, path, _MESSAGE, header=False)
            if not paired:
                first = True
                for frame, lines in messages:
                    book, trades = self._messages(frame, lines, index, base, masked)
                    if first and book.cols["msgs"].size:  # (a new day: the last one's book
                        book = _cleared(book, index)  # is cleared)
                        first = False
                    yield book
                    yield trades
                return
            book_names = [
                f"{s}_{k}_{c}"
                for k in range(1, level + 1)
                for s, c in (("ask", "px"), ("ask", "sz"), ("bid", "px"), ("bid", "sz"))
            ]
            other = partner(path)
            with open_binary(other) as book_stream:
                books = csv_chunks(book_stream, other, book_names, header=False)
                state = self._depth.get(index)
                if state is None or state[0].shape[2] != level:
                    if state is not None:
                        raise DataError(f"{path}: {level} levels, but an earlier file of "
                                        f"{m.group('ticker')} has {state[0].shape[2]}: give "
                                        "files of one depth")  # fmt: skip
                    state = (np.zeros((1, 2, level), np.int64), np.zeros((1, 2, level), np.int64))
                    self._depth[index] = state  # (kept: the next day's book follows this one's)
                carry: pl.DataFrame | None = None  # (book rows read past the messages)
                for frame, lines in messages:
                    book_msgs, trades = self._messages(frame, lines, index, base, masked)
                    trades.refused = book_msgs.refused  # (rows refused are told, not lost)
                    yield trades
                    refused = {place for place, _ in book_msgs.refused}
                    need = frame.height
                    parts = [] if carry is None else [carry]
                    have = 0 if carry is None else carry.height
                    while have < need:
                        got = next(books, None)
                        if got is None:
                            raise DataError(
                                f"{other}: has fewer rows than {path.name} (line "
                                f"{int(lines[0]) + have:,} has no book)"
                            )
                        parts.append(got[0])
                        have += got[0].height
                    block = pl.concat(parts)
                    carry = block[need:] if block.height > need else None
                    yield from self._book(block[:need], frame, lines, index, base, level, state,
                                          refused, other)  # fmt: skip
                if carry is not None or next(books, None) is not None:
                    raise DataError(f"{other}: has more rows than {path.name}")

    def _times(self, cells: Cells, base: int) -> np.ndarray:
        """Seconds after midnight (decimal text, to the ns) as epoch ns."""
        parts = cells.frame["time"].str.strip_chars().str.split_exact(".", 1).struct.unnest()
        whole = parts["field_0"].cast(pl.Int64, strict=False)
        frac = parts["field_1"].fill_null("").str.pad_end(9, "0").str.slice(0, 9)
        frac_ns = frac.cast(pl.Int64, strict=False)
        failed = (whole.is_null() | frac_ns.is_null()).to_numpy()
        for r in np.flatnonzero(failed).tolist():
            cells.bad.setdefault(
                r, f"time is {cells.frame['time'][r]!r}; expected seconds after midnight"
            )
        return base + whole.fill_null(0).to_numpy() * 10**9 + frac_ns.fill_null(0).to_numpy()

    def _messages(self, frame: pl.DataFrame, lines: np.ndarray, index: int, base: int,
                  masked: bool) -> tuple[Rows, Rows]:  # fmt: skip
        """A chunk of messages: the book's events (order-by-order), and the prints (made
        from the messages themselves: an execution of an order resting before the file began
        is a print too)."""
        cells = Cells(frame)
        ts = self._times(cells, base)
        kind = cells.number("type", pl.Int8)
        for r in np.flatnonzero((kind < 1) | (kind > 7)).tolist():
            cells.bad.setdefault(r, f"type is {frame['type'][r]!r}; expected 1 to 7")
        order_id = cells.number("order_id", pl.Int64)
        for r in np.flatnonzero((order_id < 0) & (kind != 6)).tolist():  # (crosses: -1 .. -4)
            cells.bad.setdefault(r, f"order_id is {order_id[r]}; expected an id from 0")
        size = cells.number("size", pl.Int64)
        price = cells.number("price", pl.Int64)
        for r in np.flatnonzero((np.abs(price) >= MAX_PRICE) | (size < 0)).tolist():
            cells.bad.setdefault(r, f"price {price[r]} or size {size[r]} is beyond any")
        direction = cells.choice("direction", {"1": 1, "-1": -1}, what="1 or -1")
        keep = cells.keep()
        k = kind[keep].astype(np.int64)
        d = direction[keep].astype(np.int8)
        self._count("cross (auction) trades (left out: no aggressor)", int((k == 6).sum()))
        self._count("trading halt messages (type 7)", int((k == 7).sum()))
        msgs = np.zeros(int(keep.sum()), dtype=bk.MBO_DTYPE)
        msgs["ts_event"] = ts[keep]
        msgs["ts_recv"] = ts[keep]
        msgs["inst"] = index
        msgs["order_id"] = np.where(k == 6, 0, order_id[keep])
        msgs["px"] = price[keep] * PRICE_UNIT
        msgs["qty"] = size[keep]
        msgs["action"] = _ACTIONS[np.clip(k, 0, 7)]
        msgs["side"] = d
        msgs["flags"] = bk.IN_LAST
        places = lines[keep]
        book = Rows(MBO, {"msgs": msgs}, places, cells.refused(lines))
        # Prints: a visible execution's aggressor is opposite the order; a hidden one's too,
        # where its direction is told (Nasdaq masks it as a buy from 2014-07-14).
        visible = k == 4
        hidden = k == 5
        if masked:
            self._count("hidden executions (left out: from 2014-07-14 Nasdaq masks their "
                        "side)", int(hidden.sum()))  # fmt: skip
            hidden[:] = False
        pick = visible | hidden
        trades = Rows("trades", {
            "ts_event": ts[keep][pick], "ts_recv": ts[keep][pick],
            "instrument": np.full(int(pick.sum()), index, np.uint32),
            "px": msgs["px"][pick] / 1e9, "sz": msgs["qty"][pick].astype(np.float64),
            "side": (-d[pick]).astype(np.int8),
        }, places[pick])  # fmt: skip
        return book, trades

    def _book(
        self,
        book: pl.DataFrame,
        frame: pl.DataFrame,
        lines: np.ndarray,
        index: int,
        base: int,
        level: int,
        state: tuple[np.ndarray, np.ndarray],
        refused: set[int],
        path: Path,
    ) -> Iterator[Rows]:
        """The book rows of a chunk of messages (row k the book after message k): deltas
        between the levels shown, and quotes. Rows of refused messages are passed over (the
        next row's levels carry their change); a row that will not read is refused."""
        cells = Cells(book)
        ts = self._times(Cells(frame), base)
        px = np.zeros((book.height, 2, level), np.int64)
        qty = np.zeros((book.height, 2, level), np.int64)
        for k in range(1, level + 1):
            for s, side in ((0, "bid"), (1, "ask")):
                p = cells.number(f"{side}_{k}_px", pl.Int64)
                q = cells.number(f"{side}_{k}_sz", pl.Int64)
                empty = (np.abs(p) >= DUMMY) | (q <= 0)
                for r in np.flatnonzero(~empty & (np.abs(p) >= MAX_PRICE)).tolist():
                    cells.bad.setdefault(r, f"{side}_{k}_px is {p[r]}: beyond any price")
                px[:, s, k - 1] = np.where(empty | (np.abs(p) >= MAX_PRICE), 0, p * PRICE_UNIT)
                qty[:, s, k - 1] = np.where(empty, 0, q)
        bad = [(place, f"{path.name}: {why}") for place, why in cells.refused(lines)]
        keep = cells.keep() & ~np.isin(lines, np.array(sorted(refused), dtype=np.uint64))
        yield Rows("book", {}, np.zeros(0, np.uint64), bad)  # (what will not read, told)
        rows = np.flatnonzero(keep)
        px, qty, ts, lines = px[rows], qty[rows], ts[rows], lines[rows]
        inst = np.full(rows.size, 0, dtype=np.uint32)
        out = np.zeros(max(DEPTH_ROWS, 8 * level), dtype=bk.DELTA_DTYPE)
        at = 0
        while at < rows.size:
            at_next, n = bk.depth_deltas_nb(inst, px, qty, at, state[0], state[1], out)
            d = out[:n]
            r = d["row"]
            yield Rows(
                "book",
                {
                    "ts_event": ts[r],
                    "ts_recv": ts[r],
                    "instrument": np.full(n, index, np.uint32),
                    "side": d["side"],
                    "px": d["px"] / 1e9,
                    "sz": d["qty"].astype(np.float64),
                    "flags": d["flags"],
                },
                lines[r],
            )
            at = at_next
        top = (qty[:, 0, 0] > 0) & (qty[:, 1, 0] > 0)
        changed = self._tops.changes(np.full(rows.size, index, np.uint32), px[:, 0, 0],
                                     px[:, 1, 0], qty[:, 0, 0], qty[:, 1, 0], top)  # fmt: skip
        yield Rows(
            "quotes",
            {
                "ts_event": ts[changed],
                "ts_recv": ts[changed],
                "instrument": np.full(int(changed.sum()), index, np.uint32),
                "bid_px": px[changed, 0, 0] / 1e9,
                "ask_px": px[changed, 1, 0] / 1e9,
                "bid_sz": qty[changed, 0, 0].astype(np.float64),
                "ask_sz": qty[changed, 1, 0].astype(np.float64),
            },
            lines[changed],
        )


def _cleared(book: Rows, index: int) -> Rows:
    """The book's events with a clear of the instrument first (a new file: a new day)."""
    msgs = book.cols["msgs"]
    clear = np.zeros(1, dtype=bk.MBO_DTYPE)
    clear["ts_event"] = msgs["ts_event"][0] if msgs.size else 0
    clear["ts_recv"] = clear["ts_event"]
    clear["inst"] = index
    clear["action"] = bk.ACT_CLEAR
    clear["flags"] = bk.IN_LAST
    places = np.r_[book.places[:1] if book.places.size else np.ones(1, np.uint64), book.places]
    return Rows(
        MBO, {"msgs": np.concatenate([clear, msgs])}, places.astype(np.uint64), book.refused
    )
