"""Order-by-order events from any CSV or Parquet file, by a column mapping.

For venues that publish their own L3 feeds: each row is one event of one order. The
columns are found by the names below, or by the user's mapping (`--map order_id=id`):

| field | what | required |
|---|---|---|
| ts_event | event time: integer ns, or ISO-8601 text (UTC) | yes |
| ts_recv | receive time, the same way | no (ts_event) |
| symbol | the instrument's symbol | yes |
| order_id | the order's id (unsigned integer) | for add, modify, delete, cancel, trade |
| action | add, modify, delete, cancel, trade or clear (any case) | yes |
| side | buy, bid, b, 1 or +1; sell, ask, a, s or -1 | for add and modify |
| price | the order's price (decimal) | for add and modify |
| size | the order's size, or what a cancel or trade takes (decimal) | but for delete, clear |

Every row is one event: the book is consistent after each. A trade names the resting order
it executes against (it loses `size` and a print is made at its price, the aggressor on the
other side); a trade whose order is unknown is noted and makes no print. Prices are kept to
1e-9 and sizes to 1e-8.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl

from tickwise.engine.errors import DataError, TickwiseError

from .. import book_kernels as bk
from ..importer import time_ns
from . import MBO, Rows, Symbols

FIELDS = ("ts_event", "ts_recv", "symbol", "order_id", "action", "side", "price", "size")
REQUIRED = ("ts_event", "symbol", "action")
SIZE_SCALE = 1e8
CHUNK_ROWS = 500_000
ACTIONS = {
    "add": bk.ACT_ADD,
    "modify": bk.ACT_MODIFY,
    "delete": bk.ACT_DELETE,
    "cancel": bk.ACT_CANCEL,
    "trade": bk.ACT_FILL,
    "clear": bk.ACT_CLEAR,
}
SIDES = {
    "buy": 1,
    "bid": 1,
    "b": 1,
    "1": 1,
    "+1": 1,
    "sell": -1,
    "ask": -1,
    "a": -1,
    "s": -1,
    "-1": -1,
}


def parse_mapping(items: list[str] | None) -> dict[str, str]:
    """`field=column` items (from `--map`) as a dict, every field known and named once."""
    mapping: dict[str, str] = {}
    for item in items or []:
        target, sep, column = item.partition("=")
        target, column = target.strip(), column.strip()
        if not sep or not target or not column:
            raise TickwiseError(f"--map {item!r}: write FIELD=COLUMN, e.g. order_id=id")
        if target not in FIELDS:
            raise TickwiseError(
                f"--map {item!r}: {target!r} is not a field; the fields are {', '.join(FIELDS)}"
            )
        if target in mapping:
            raise TickwiseError(f"--map names {target} twice")
        mapping[target] = column
    return mapping


class MappedReader:
    """Order-by-order events in a CSV or Parquet file, columns found through a mapping."""

    name = "mbo"
    place = "line"
    size_scale = SIZE_SCALE

    def __init__(self, mapping: dict[str, str] | None = None) -> None:
        self.mapped = dict(mapping or {})  # (what the user named: each must be a column)
        self.mapping = {f: self.mapped.get(f, f) for f in FIELDS}

    def prepare(self, sources: list[Path]) -> None:
        """Rows are told by line in CSV files, by row in Parquet files."""
        if all(s.suffix.lower() == ".parquet" for s in sources):
            self.place = "row"

    def kinds(self, path: Path) -> tuple[str, ...]:
        return (MBO,)

    def notes(self) -> dict[str, int]:
        return {}

    def read(self, path: Path, symbols: Symbols) -> Iterator[Rows]:
        is_csv = path.suffix.lower() != ".parquet"
        scan = pl.scan_csv(path, infer_schema=False) if is_csv else pl.scan_parquet(path)
        try:
            names = scan.collect_schema().names()
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise DataError(f"{path}: cannot read: {str(exc).splitlines()[0]}") from None
        absent = [f"{f}={c}" for f, c in self.mapped.items() if c not in names]
        if absent:
            raise DataError(f"{path}: --map {absent[0]}: no column {absent[0].split('=', 1)[1]!r}"
                            f"; the columns are {', '.join(names)}")  # fmt: skip
        columns = {f: c for f, c in self.mapping.items() if c in names}
        for f, c in columns.items():
            kind = scan.collect_schema()[c]
            if f in ("ts_event", "ts_recv") and kind == pl.Date:
                raise DataError(f"{path}: column {c!r} ({f}) holds dates, not times")
        missing = [f"{f} (column {self.mapping[f]!r})" for f in REQUIRED if f not in columns]
        if missing:
            raise DataError(
                f"{path}: no column for {', '.join(missing)}; map one with --map FIELD=COLUMN"
            )
        first = 2 if is_csv else 1  # (line 1 is the header)
        selected = scan.select([pl.col(c).alias(f) for f, c in columns.items()])
        try:
            for chunk in selected.collect_batches(chunk_size=CHUNK_ROWS):
                places = np.arange(first, first + chunk.height, dtype=np.uint64)
                first += chunk.height
                yield self._messages(chunk, places, symbols)
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise DataError(f"{path}: cannot read: {str(exc).splitlines()[0]}") from None

    def _messages(self, chunk: pl.DataFrame, places: np.ndarray, symbols: Symbols) -> Rows:
        n = chunk.height
        bad: dict[int, str] = {}

        def need(name: str, values: pl.Series, rows_needing: np.ndarray) -> None:
            for r in np.flatnonzero(values.is_null().to_numpy() & rows_needing).tolist():
                bad.setdefault(r, f"{name} is empty or not a number")

        action_text = chunk["action"].cast(pl.String).str.strip_chars().str.to_lowercase()
        action = action_text.replace_strict(ACTIONS, default=None, return_dtype=pl.Int8)
        for r in np.flatnonzero(action.is_null().to_numpy()).tolist():
            shown = action_text[r]
            bad.setdefault(
                r,
                f"action is {shown!r}; expected one of {', '.join(ACTIONS)}"
                if shown
                else "action is empty",
            )
        act = action.fill_null(bk.ACT_NONE).to_numpy()
        orderly = act != bk.ACT_CLEAR
        placing = (act == bk.ACT_ADD) | (act == bk.ACT_MODIFY)
        ts_event = time_ns(chunk["ts_event"])
        need("ts_event", ts_event, np.ones(n, np.bool_))
        ts_recv = time_ns(chunk["ts_recv"]) if "ts_recv" in chunk.columns else ts_event
        need("ts_recv", ts_recv, np.ones(n, np.bool_))
        symbol = chunk["symbol"].cast(pl.String)
        need("symbol", symbol, np.ones(n, np.bool_))
        order_id = _column(chunk, "order_id", pl.UInt64)
        need("order_id", order_id, orderly)
        price = _column(chunk, "price", pl.Float64)
        need("price", price, placing)
        size = _column(chunk, "size", pl.Float64)
        need("size", size, orderly & (act != bk.ACT_DELETE))
        side_text = (
            chunk["side"].cast(pl.String).str.strip_chars().str.to_lowercase()
            if "side" in chunk.columns
            else pl.Series([None] * n, dtype=pl.String)
        )
        side = side_text.replace_strict(SIDES, default=None, return_dtype=pl.Int8)
        for r in np.flatnonzero(side.is_null().to_numpy() & placing).tolist():
            bad.setdefault(r, f"side is {side_text[r]!r}; expected buy or sell")
        px = price.fill_null(0.0).to_numpy()
        sz = size.fill_null(0.0).to_numpy()
        for r in np.flatnonzero(placing & ~((px > 0) & np.isfinite(px) & (px < 9e9))).tolist():
            bad.setdefault(r, f"price is {float(px[r])!r}; expected a positive price below 9e9")
        for r in np.flatnonzero(orderly & ~((sz >= 0) & np.isfinite(sz) & (sz < 9e10))).tolist():
            bad.setdefault(r, f"size is {float(sz[r])!r}; expected a size from 0 to 9e10")
        keep = np.ones(n, dtype=np.bool_)
        keep[list(bad)] = False
        msgs = np.zeros(int(keep.sum()), dtype=bk.MBO_DTYPE)
        msgs["ts_event"] = ts_event.fill_null(0).to_numpy()[keep]
        msgs["ts_recv"] = ts_recv.fill_null(0).to_numpy()[keep]
        msgs["inst"] = symbols.indices(symbol.fill_null("").to_numpy()[keep])
        msgs["order_id"] = order_id.fill_null(0).to_numpy()[keep]
        msgs["px"] = np.rint(px[keep] * 1e9).astype(np.int64)
        msgs["qty"] = np.rint(sz[keep] * SIZE_SCALE).astype(np.int64)
        msgs["action"] = act[keep]
        msgs["side"] = side.fill_null(0).to_numpy()[keep]
        msgs["flags"] = bk.IN_LAST
        refused = [(int(places[r]), why) for r, why in sorted(bad.items())]
        return Rows(MBO, {"msgs": msgs}, places[keep], refused)


def _column(chunk: pl.DataFrame, name: str, dtype: pl.DataType) -> pl.Series:
    """A column as `dtype`, null where a value will not convert (an id with a fraction
    too: a cast would drop it)."""
    if name not in chunk.columns:
        return pl.Series(name, [None] * chunk.height, dtype=dtype)
    series = chunk[name]
    if series.dtype == pl.String:
        series = series.str.strip_chars()
    cast = series.cast(dtype, strict=False)
    if dtype.is_integer() and series.dtype.is_float():
        cast = pl.select(pl.when(series == series.floor()).then(cast)).to_series()
    return cast
