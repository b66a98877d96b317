"""Vendors' history in: each format's reader turns its files into chunks of tickwise rows.

A reader yields `Rows`: a chunk of one kind (quotes, trades, bars, book deltas, or order-
by-order messages for the compiled book, feeds/orderbook.py), each row with its place in the
source file, so that a refused row can be named by file and line. Readers check what the
format promises (headers, record types, checksums) and convert values; the rules of the data
contract itself (prices, order, the tick grid) are checked once, for every format, by the
import (feeds/vendors/pipeline.py) with the same compiled checks as replay.

Instruments are numbered in the order they are met (`Symbols`); the import renumbers them in
symbol order when it writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from tickwise.engine.errors import DataError

MBO = "mbo"  # the kind of order-by-order messages (feeds/book_kernels.py MBO_DTYPE)


@dataclass
class Rows:
    """A chunk of one kind from one source file.

    `cols` maps the kind's column names to arrays (for "mbo", one structured array under
    "msgs"); `instrument` (or the messages' `inst`) is the index given by `Symbols`, and
    `seq` is absent (the import numbers rows). `places` are the rows' places in the file as
    a person counts them (line 1 is a CSV's header, record 1 a DBN file's first record), as
    the reader's `place` names them. `refused` holds rows the reader could not read: (place,
    why).
    """

    kind: str
    cols: dict[str, np.ndarray]
    places: np.ndarray
    refused: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class Instrument:
    """What a reader learnt of an instrument: its symbol, and tick and lot sizes when the
    source gives them (None: the user's table or the defaults decide)."""

    symbol: str
    tick_size: float | None = None
    lot_size: float | None = None


@dataclass
class Symbols:
    """Instruments in the order met: `index(symbol)` gives each its number, the same across
    all the files of one import."""

    items: list[Instrument] = field(default_factory=list)
    _by_symbol: dict[str, int] = field(default_factory=dict)

    def index(
        self, symbol: str, tick_size: float | None = None, lot_size: float | None = None
    ) -> int:
        """The number of `symbol` (a new one when first met); sizes given fill in unknown ones."""
        at = self._by_symbol.get(symbol)
        if at is None:
            at = len(self.items)
            self._by_symbol[symbol] = at
            self.items.append(Instrument(symbol))
        item = self.items[at]
        if item.tick_size is None and tick_size is not None:
            item.tick_size = tick_size
        if item.lot_size is None and lot_size is not None:
            item.lot_size = lot_size
        return at

    def indices(self, symbols: np.ndarray) -> np.ndarray:
        """The numbers of an array of symbols (any dtype `str()` names), as uint32."""
        uniq, first, inverse = np.unique(symbols, return_index=True, return_inverse=True)
        table = np.zeros(uniq.size, dtype=np.uint32)
        for k in np.argsort(first).tolist():  # (new ones numbered in the order met)
            table[k] = self.index(str(uniq[k]))
        return table[inverse.reshape(-1)]


class Tops:
    """The last quote of each instrument of a stream of tops of book (MBP-1, bookTicker,
    snapshots): `changes` marks the tops that make a quote, as the books do for order-by-
    order data: both sides there, and changed since the last quote or since a side was
    missing."""

    def __init__(self) -> None:
        self._last = np.zeros((0, 4), dtype=np.int64)
        self._shown = np.zeros(0, dtype=np.bool_)

    def changes(
        self,
        inst: np.ndarray,
        bid_px: np.ndarray,
        ask_px: np.ndarray,
        bid_qty: np.ndarray,
        ask_qty: np.ndarray,
        whole: np.ndarray,
    ) -> np.ndarray:
        """Which rows make a quote (rows are in the stream's order; prices and sizes as
        integers)."""
        from .. import book_kernels as bk

        n = int(inst.max()) + 1 if inst.size else 0
        if n > self._shown.size:
            grow = n - self._shown.size
            self._last = np.concatenate([self._last, np.zeros((grow, 4), np.int64)])
            self._shown = np.concatenate([self._shown, np.zeros(grow, np.bool_)])
        keep = np.zeros(inst.size, dtype=np.bool_)
        bk.top_changes_nb(inst.astype(np.int64), bid_px.astype(np.int64),
                          ask_px.astype(np.int64), bid_qty.astype(np.int64),
                          ask_qty.astype(np.int64), whole.astype(np.bool_), self._last,
                          self._shown, keep)  # fmt: skip
        return keep


class Reader(Protocol):
    """One format: reads a file into chunks of rows."""

    name: str
    place: str  # what a row's place is called in errors ("line", "record", "row")

    def kinds(self, path: Path) -> tuple[str, ...]:
        """The kinds this file gives (before any order-by-order messages become books)."""
        ...

    def read(self, path: Path, symbols: Symbols) -> Iterator[Rows]:
        """The file's rows, chunk by chunk, in the file's order."""
        ...

    def notes(self) -> dict[str, int]:
        """Rows the format's rules left out, by why (told to the user, never silent)."""
        ...


def readers() -> dict[str, type]:
    """Every vendor format by name."""
    from .binance import BinanceReader
    from .databento import DatabentoReader
    from .lobster import LobsterReader
    from .mapped import MappedReader
    from .tardis import TardisReader

    return {
        "databento": DatabentoReader,
        "tardis": TardisReader,
        "binance": BinanceReader,
        "lobster": LobsterReader,
        "mbo": MappedReader,
    }


def detect_format(path: Path) -> str | None:
    """The format a file's name, first bytes or header make unambiguous, or None."""
    from .lobster import _NAME as LOBSTER_NAME
    from .tables import first_line, header_names, open_binary
    from .tardis import dataset

    name = path.name.lower()
    if name.endswith((".dbn", ".dbn.zst")):
        return "databento"
    if name.endswith(".zip"):
        return "binance"
    if LOBSTER_NAME.match(path.name):
        return "lobster"
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if head[:3] == b"DBN":
        return "databento"
    if name.endswith((".csv", ".csv.gz")):
        with open_binary(path) as stream:
            names = header_names(first_line(stream, path))
        if dataset(names) is not None:
            return "tardis"
    return None
