"""Instruments: the map from the small integer ids in market data to symbols, tick and lot sizes.

A tickwise Parquet file carries its instrument table as JSON in its schema
metadata, so a file is self-describing and a hive-partitioned directory of such
files needs no side table.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .errors import DataError
from .schemas import INSTRUMENT_DTYPE

# Kernels index per-instrument state by id, so ids must be dense small integers.
MAX_INSTRUMENT_ID = 1_000_000


def unit_divisor(lot: float) -> float:
    """n when `lot` is 1/n of a unit (0.01: 100, 1e-8: 100,000,000), else 0. Whole lots are
    then turned into units as lots / n, the float nearest the decimal a person writes (3
    lots of 0.1 are 0.3, where 3 x 0.1 is 0.30000000000000004); see engine.quantities."""
    if not lot > 0.0:
        return 0.0
    per = 1.0 / lot
    n = round(per)
    return float(n) if n >= 1 and abs(per - n) <= 1e-9 * n else 0.0


@dataclass(frozen=True)
class Instrument:
    """One tradable instrument: its id in market data, symbol, price tick and quantity lot."""

    id: int
    symbol: str
    tick_size: float
    lot_size: float

    def __post_init__(self) -> None:
        if not 0 <= self.id < MAX_INSTRUMENT_ID:
            raise ValueError(f"instrument id {self.id} is outside 0..{MAX_INSTRUMENT_ID - 1}")
        if not self.symbol:
            raise ValueError(f"instrument {self.id} has an empty symbol")
        for name in ("tick_size", "lot_size"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"instrument {self.symbol}: {name} must be positive, got {value}")


class Instruments:
    """An immutable instrument table, ordered by id, with unique ids and symbols."""

    def __init__(self, items: Iterable[Instrument]) -> None:
        self._items = tuple(sorted(items, key=lambda inst: inst.id))
        ids = [inst.id for inst in self._items]
        symbols = [inst.symbol for inst in self._items]
        if len(set(ids)) != len(ids):
            raise ValueError("instrument ids must be unique")
        if len(set(symbols)) != len(symbols):
            raise ValueError("instrument symbols must be unique")
        self._by_id = {inst.id: inst for inst in self._items}

    def __iter__(self) -> Iterator[Instrument]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, instrument_id: int) -> Instrument:
        return self._by_id[instrument_id]

    def __contains__(self, instrument_id: object) -> bool:
        return instrument_id in self._by_id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Instruments) and self._items == other._items

    def __hash__(self) -> int:
        return hash(self._items)

    def __repr__(self) -> str:
        return f"Instruments({', '.join(i.symbol for i in self._items)})"

    def symbol(self, instrument_id: int) -> str:
        """The symbol of an id, or `#id` for an id the table does not know."""
        inst = self._by_id.get(instrument_id)
        return inst.symbol if inst else f"#{instrument_id}"

    def by_symbol(self, symbol: str) -> Instrument:
        """Look an instrument up by symbol; a clear error when it is not in the table."""
        for inst in self._items:
            if inst.symbol == symbol:
                return inst
        raise KeyError(f"unknown symbol {symbol!r}; known: {', '.join(self.symbols())}")

    def symbols(self) -> list[str]:
        """Symbols in id order."""
        return [inst.symbol for inst in self._items]

    def known_mask(self) -> np.ndarray:
        """A bool array indexed by id: True where the id is in the table (what kernels check)."""
        size = (self._items[-1].id + 1) if self._items else 0
        mask = np.zeros(size, dtype=np.bool_)
        mask[[inst.id for inst in self._items]] = True
        return mask

    def lot_sizes(self) -> np.ndarray:
        """Each id's lot as a float array indexed by id (NaN where no instrument has it)."""
        lots = np.full(self.known_mask().size, np.nan)
        lots[[inst.id for inst in self._items]] = [inst.lot_size for inst in self._items]
        return lots

    def tick_sizes(self, size: int | None = None) -> np.ndarray:
        """Each id's tick as a float array indexed by id, `size` long (by default up to the
        largest id), NaN where no instrument has it."""
        ticks = np.full(self.known_mask().size if size is None else size, np.nan)
        for inst in self._items:
            if inst.id < ticks.size:
                ticks[inst.id] = inst.tick_size
        return ticks

    def to_records(self) -> np.ndarray:
        """The table as records for kernels (ids, ticks and lots; symbols stay in Python)."""
        out = np.empty(len(self._items), dtype=INSTRUMENT_DTYPE)
        out["id"] = [i.id for i in self._items]
        out["tick_size"] = [i.tick_size for i in self._items]
        out["lot_size"] = [i.lot_size for i in self._items]
        out["unit_div"] = [unit_divisor(i.lot_size) for i in self._items]
        return out

    def to_json(self) -> bytes:
        """The metadata form stored in every tickwise Parquet file."""
        rows = [
            {"id": i.id, "symbol": i.symbol, "tick_size": i.tick_size, "lot_size": i.lot_size}
            for i in self._items
        ]
        return json.dumps(rows, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes, source: str) -> Instruments:
        """Parse the metadata form; `source` names the file in the error if it is malformed."""
        try:
            rows = json.loads(raw)
            return cls(
                Instrument(
                    int(r["id"]), str(r["symbol"]), float(r["tick_size"]), float(r["lot_size"])
                )
                for r in rows
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{source}: malformed instruments table in metadata: {exc}") from None
