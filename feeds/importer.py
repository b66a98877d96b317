"""Importing outside history (CSV, or Parquet without tickwise metadata) through the validation.

The source is read whole (import is a one-off; replay is what streams), cast
to the kind's schema, checked row by row with the same compiled validation as
replay, put in the global (ts_event, instrument, seq) order and written
atomically. Every error names the source, the line (CSV) or row, and the fault.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from tickwise.engine.atomic import check_target
from tickwise.engine.errors import DataError, TickwiseError
from tickwise.engine.instruments import Instrument, Instruments
from tickwise.engine.schemas import KINDS, SORT_KEYS, market_dtype

from .history import columns
from .store import HistoryWriter
from .validation import Validator

_POLARS_TYPES = {
    np.dtype("<i8"): pl.Int64,
    np.dtype("<u8"): pl.UInt64,
    np.dtype("<u4"): pl.UInt32,
    np.dtype("i1"): pl.Int8,
    np.dtype("u1"): pl.UInt8,
    np.dtype("<f8"): pl.Float64,
}
_TIME_COLUMNS = ("ts_event", "ts_recv")


@dataclass(frozen=True)
class ImportResult:
    """What an import wrote."""

    path: Path
    kind: str
    rows: int
    instruments: Instruments
    wall_s: float


def import_history(
    source: Path,
    kind: str,
    out: Path,
    *,
    instruments_file: Path | None = None,
    tick_size: float = 0.01,
    lot_size: float = 1.0,
    partition: bool = False,
    overwrite: bool = False,
) -> ImportResult:
    """Validate `source` (CSV or Parquet) as `kind` market data and write it to `out`.

    Instruments come from the `instrument` column (integer ids) or the `symbol`
    column (ids given in symbol order), with tick and lot sizes from
    `instruments_file` (CSV: symbol, tick_size, lot_size[, id]) or the defaults.
    `ts_recv` defaults to `ts_event`; `seq` to the row's number within its
    instrument, counting from 1. Times are integer nanoseconds or ISO-8601 text (UTC).
    """
    began = time.perf_counter()
    if kind not in KINDS:
        raise TickwiseError(f"--kind {kind!r} is unknown; choose one of {', '.join(KINDS)}")
    check_target(out, overwrite)
    is_csv = source.suffix.lower() in (".csv", ".gz", ".txt")
    frame = _read(source, is_csv)
    where = (lambda row: f"line {row + 2}") if is_csv else (lambda row: f"row {row}")
    instruments, frame = _instruments(frame, source, instruments_file, tick_size, lot_size)
    table = _to_schema(frame, kind, source, where)
    batch = table.combine_chunks().to_batches()[0] if table.num_rows else None
    if batch is None:
        raise DataError(f"{source}: no rows to import")
    validator = Validator(kind, instruments, str(source), where, require_sorted=False)
    validator.check_nulls(batch)
    validator.check(columns(batch))
    cols = columns(batch)
    order = np.lexsort(tuple(cols[k] for k in reversed(SORT_KEYS[kind])))  # stable
    batch = batch.take(pa.array(order))
    with HistoryWriter(out, kind, instruments, partition=partition, overwrite=overwrite) as writer:
        writer.write(batch)
    return ImportResult(out, kind, batch.num_rows, instruments, time.perf_counter() - began)


def _read(source: Path, is_csv: bool) -> pl.DataFrame:
    if not source.exists():
        raise TickwiseError(f"{source}: no such file")
    try:
        if is_csv:
            return pl.read_csv(source, infer_schema=False)
        return pl.read_parquet(source)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"{source}: cannot read: {str(exc).splitlines()[0]}") from None


def _instruments(
    frame: pl.DataFrame, source: Path, table_file: Path | None, tick: float, lot: float
) -> tuple[Instruments, pl.DataFrame]:
    listed: dict[str, tuple[float, float, int | None]] = {}
    if table_file is not None:
        listed = _read_instruments_file(table_file)
    if "symbol" in frame.columns:
        symbols = sorted(frame["symbol"].drop_nulls().unique().to_list())
        unknown = [s for s in symbols if listed and s not in listed]
        if unknown:
            raise DataError(f"{source}: symbols {unknown[:5]} are not in {table_file}")
        try:
            table = Instruments(_spec(n, s, listed, tick, lot) for n, s in enumerate(symbols))
        except ValueError as exc:
            raise DataError(f"{source}: {exc}") from None
        mapping = pl.DataFrame(
            {"symbol": table.symbols(), "instrument": [i.id for i in table]},
            schema={"symbol": pl.String, "instrument": pl.UInt32},
        )
        frame = frame.with_row_index("_row").join(mapping, on="symbol", how="left")
        return table, frame.sort("_row").drop("_row", "symbol")
    if "instrument" not in frame.columns:
        raise DataError(f"{source}: needs an 'instrument' (integer id) or 'symbol' column")
    raw_ids = frame["instrument"].cast(pl.Int64, strict=False).drop_nulls().unique().sort()
    by_id = {v[2]: (s, v[0], v[1]) for s, v in listed.items() if v[2] is not None}
    try:
        table = Instruments(
            Instrument(i, *by_id.get(i, (f"ID{i}", tick, lot))) for i in raw_ids.to_list()
        )
    except ValueError as exc:
        raise DataError(f"{source}: {exc}") from None
    return table, frame


def _spec(
    n: int, symbol: str, listed: dict[str, tuple[float, float, int | None]], tick: float, lot: float
) -> Instrument:
    tick_size, lot_size, listed_id = listed.get(symbol, (tick, lot, None))
    return Instrument(n if listed_id is None else listed_id, symbol, tick_size, lot_size)


def _read_instruments_file(path: Path) -> dict[str, tuple[float, float, int | None]]:
    try:
        frame = pl.read_csv(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise TickwiseError(
            f"{path}: cannot read instruments: {str(exc).splitlines()[0]}"
        ) from None
    missing = {"symbol", "tick_size", "lot_size"} - set(frame.columns)
    if missing:
        raise TickwiseError(f"{path}: instruments file lacks columns {sorted(missing)}")
    has_id = "id" in frame.columns
    return {
        str(r["symbol"]): (
            float(r["tick_size"]),
            float(r["lot_size"]),
            int(r["id"]) if has_id else None,
        )
        for r in frame.iter_rows(named=True)
    }


def _to_schema(frame: pl.DataFrame, kind: str, source: Path, where) -> pa.Table:
    dtype = market_dtype(kind)
    names = dtype.names
    if "ts_recv" in names and "ts_recv" not in frame.columns and "ts_event" in frame.columns:
        frame = frame.with_columns(pl.col("ts_event").alias("ts_recv"))
    missing = [n for n in names if n not in frame.columns and n != "seq"]
    if missing:
        raise DataError(f"{source}: missing columns {missing} for {kind}; expected {list(names)}")
    out = {}
    for name in names:
        if name == "seq" and name not in frame.columns:
            continue
        out[name] = _cast(frame[name], _POLARS_TYPES[dtype.fields[name][0]], name, source, where)
    result = pl.DataFrame(out)
    if "seq" in names and "seq" not in frame.columns:
        seq = pl.int_range(1, pl.len() + 1, dtype=pl.UInt64).over("instrument")
        result = result.with_columns(seq.alias("seq"))
    return result.select(names).to_arrow()


def _cast(series: pl.Series, target: pl.DataType, name: str, source: Path, where) -> pl.Series:
    original = series
    if name in _TIME_COLUMNS and series.dtype == pl.String:
        as_int = series.cast(pl.Int64, strict=False)
        if as_int.null_count() == series.null_count():
            series = as_int
        else:
            parsed = series.str.to_datetime(time_unit="ns", time_zone="UTC", strict=False)
            series = parsed.dt.epoch("ns")
    elif name in _TIME_COLUMNS and isinstance(series.dtype, pl.Datetime):
        series = series.dt.epoch("ns")
    cast = series.cast(target, strict=False)
    bad = cast.is_null()
    if bad.any():
        row = int(bad.arg_max())
        value = original[row]
        shown = "empty" if value is None else repr(value)
        raise DataError(f"{source}: {where(row)}: {name} is {shown}; expected {target}")
    return cast.alias(name)
