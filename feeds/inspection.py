"""Inspecting a history: its schema, size, instruments, time range and validation verdict."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tickwise.engine.errors import DataError

from .history import DEFAULT_BATCH_ROWS, columns, open_history


@dataclass(frozen=True)
class InstrumentStats:
    """Rows and time range of one instrument in a history."""

    id: int
    symbol: str
    tick_size: float
    lot_size: float
    rows: int
    ts_first: int | None
    ts_last: int | None
    px_low: float | None  # lowest price seen (bid, trade, bar low or book level)
    px_high: float | None  # highest price seen (ask, trade, bar high or book level)


# The columns whose minimum and maximum give an instrument's price range, per kind.
PRICE_RANGE_COLUMNS = {
    "quotes": ("bid_px", "ask_px"),
    "trades": ("px", "px"),
    "bars": ("low", "high"),
    "book": ("px", "px"),
}


@dataclass(frozen=True)
class Inspection:
    """Everything `tickwise data inspect` reports. `fault` is None when the data are valid."""

    path: str
    kind: str
    files: int
    rows: int
    schema: list[tuple[str, str]]
    instruments: list[InstrumentStats]
    ts_first: int | None
    ts_last: int | None
    rows_checked: int
    fault: str | None
    wall_s: float

    @property
    def valid(self) -> bool:
        return self.fault is None

    def to_dict(self) -> dict:
        """A JSON-ready form."""
        return asdict(self) | {"valid": self.valid}


def inspect_history(
    path: str | Path,
    *,
    batch_size: int = DEFAULT_BATCH_ROWS,
    on_rows: Callable[[int], None] | None = None,
) -> Inspection:
    """Stream the whole history once, validating every row and counting per instrument.

    A file that cannot be opened as a history raises `DataError`; a fault found
    while streaming is reported in `Inspection.fault` with what was counted so far.
    """
    began = time.perf_counter()
    history = open_history(path)
    instruments = history.instruments
    size = instruments.known_mask().size
    counts = np.zeros(size, dtype=np.int64)
    first = np.full(size, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(size, np.iinfo(np.int64).min, dtype=np.int64)
    low = np.full(size, np.inf)
    high = np.full(size, -np.inf)
    low_col, high_col = PRICE_RANGE_COLUMNS[history.kind]
    fault = None
    checked = 0
    try:
        for batch in history.batches(batch_size, check_grid=True):
            cols = columns(batch)
            inst, ts = cols["instrument"], cols["ts_event"]
            counts += np.bincount(inst, minlength=size)
            np.minimum.at(first, inst, ts)
            np.maximum.at(last, inst, ts)
            np.minimum.at(low, inst, cols[low_col])
            np.maximum.at(high, inst, cols[high_col])
            checked += batch.num_rows
            if on_rows:
                on_rows(batch.num_rows)
    except DataError as exc:
        fault = str(exc)
    stats = [
        InstrumentStats(
            i.id,
            i.symbol,
            i.tick_size,
            i.lot_size,
            int(counts[i.id]),
            int(first[i.id]) if counts[i.id] else None,
            int(last[i.id]) if counts[i.id] else None,
            float(low[i.id]) if counts[i.id] else None,
            float(high[i.id]) if counts[i.id] else None,
        )
        for i in instruments
    ]
    ts_first, ts_last = history.ts_range
    return Inspection(
        path=str(history.path),
        kind=history.kind,
        files=len(history.files),
        rows=history.rows,
        schema=[(f.name, str(f.type)) for f in history.schema],
        instruments=stats,
        ts_first=ts_first,
        ts_last=ts_last,
        rows_checked=checked,
        fault=fault,
        wall_s=time.perf_counter() - began,
    )
