"""Importing outside history (CSV, or Parquet without tickwise metadata) through the validation.

The source streams through in chunks (memory stays flat whatever its size):

1. each chunk is cast to the kind's schema and its rows checked, values, the tick grid and
   (without `sort`) each instrument's order, with the same compiled checks as replay;
2. the good rows, each with its line in the source, are staged in a Parquet file beside
   the output, then put in the global (ts_event, instrument, seq) order by DuckDB, which
   sorts out of core (spilling to disk) when the rows are larger than memory;
3. the sorted rows are numbered (`seq`, when the source has none), checked in the global
   order and written atomically.

Every error names the source, the line (CSV) or row, and the fault. Without `bad_rows` the
import stops at the first bad row and writes nothing; with it, each bad row goes to that
CSV file with its line and reason, and the good rows are imported. Without `sort`, an
instrument's rows must already be in time order (rows of different instruments may
interleave); with it, any order is put right, ties kept in the order of the source.
"""

from __future__ import annotations

import csv
import errno
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from tickwise.engine.atomic import check_target, discard, make_folder, publish, temporary_path
from tickwise.engine.errors import DataError, TickwiseError
from tickwise.engine.instruments import Instrument, Instruments
from tickwise.engine.schemas import KINDS, market_dtype, market_schema

from . import validation_kernels as vk
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
# The ISO-8601 forms times may take (T or a space; fractions of a second; Z, an offset, or
# none for UTC; a date alone for midnight UTC).
_ISO_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M%#z",
    "%Y-%m-%d",
)
_LINE = "_line"  # each row's place in the source, carried through the sort
CHUNK_ROWS = 500_000  # rows read, cast and checked at a time
SORT_MEMORY = "1GB"  # DuckDB's memory for the sort; beyond it, it spills to disk


@dataclass(frozen=True)
class ImportResult:
    """What an import wrote: rows imported, and rows set aside (with `bad_rows`)."""

    path: Path
    kind: str
    rows: int
    instruments: Instruments
    wall_s: float
    bad_rows: int = 0
    bad_rows_path: Path | None = None
    sorted: bool = False


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
    sort: bool = False,
    bad_rows: Path | None = None,
    chunk_rows: int = CHUNK_ROWS,
    sort_memory: str = SORT_MEMORY,
) -> ImportResult:
    """Validate `source` (CSV or Parquet) as `kind` market data and write it to `out`.

    Instruments come from the `instrument` column (integer ids) or the `symbol`
    column (ids given in symbol order), with tick and lot sizes from
    `instruments_file` (CSV: symbol, tick_size, lot_size[, id]) or the defaults.
    `ts_recv` defaults to `ts_event`; `seq` to the row's number within its
    instrument in time order, counting from 1. Times are integer nanoseconds or ISO-8601
    text (UTC). `sort` puts rows in time order first; `bad_rows` (a CSV path) takes every
    refused row with its line and reason instead of stopping at the first.
    """
    began = time.perf_counter()
    if kind not in KINDS:
        raise TickwiseError(f"--kind {kind!r} is unknown; choose one of {', '.join(KINDS)}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    check_target(out, overwrite)
    check_out(out, [source])
    if bad_rows is not None:
        _check_bad_rows_target(bad_rows, source, out, overwrite)
    is_csv = source.suffix.lower() in (".csv", ".gz", ".txt")
    scan = _scan(source, is_csv)
    names = _names(scan, source)
    instruments, symbol_ids = _instruments(scan, names, source, instruments_file, tick_size,
                                           lot_size)  # fmt: skip
    _check_columns(names, kind, source)
    place = (lambda line: f"line {line + 2}") if is_csv else (lambda line: f"row {line}")
    given_seq = "seq" in market_dtype(kind).names and "seq" in names
    make_folder(out.parent)
    work = temporary_path(out.with_name(out.name + ".import"))
    work.mkdir()
    try:
        # Rows already in the global order go through in one pass: read with their types
        # where every value parses, else as text (which names each bad value).
        passes = [] if sort else [_typed_scan(source, is_csv, names, kind), scan]
        for one in passes:
            with _Refused(source, place, bad_rows, names) as refused:
                try:
                    with HistoryWriter(out, kind, instruments, partition=partition,
                                       overwrite=overwrite) as writer:  # fmt: skip
                        rows = _one_pass(one, kind, instruments, symbol_ids, writer, refused,
                                         given_seq, chunk_rows, source)  # fmt: skip
                        if rows == 0:
                            refused.publish()
                            raise DataError(f"{source}: no rows to import" + refused.why_none())
                    refused.publish()
                    return ImportResult(out, kind, rows, instruments,
                                        time.perf_counter() - began, refused.count,
                                        refused.path, sort)  # fmt: skip
                except _UnparsedError:
                    continue
                except _UnorderedError:
                    break  # (instruments interleave out of order: the way that sorts, below)
        with _Refused(source, place, bad_rows, names) as refused:
            staged = work / "staged.parquet"
            n = _stage(scan, kind, instruments, symbol_ids, staged, refused, sort, chunk_rows,
                       source)  # fmt: skip
            if n == 0:
                refused.publish()  # (they are where the error says)
                raise DataError(f"{source}: no rows to import" + refused.why_none())
            ordered = work / "sorted.parquet"
            _sort(staged, ordered, kind, given_seq, work, sort_memory)
            with HistoryWriter(out, kind, instruments, partition=partition,
                               overwrite=overwrite) as writer:  # fmt: skip
                rows = _write_sorted(ordered, kind, instruments, writer, refused,
                                     number=not given_seq, chunk_rows=chunk_rows)  # fmt: skip
                if rows == 0:
                    refused.publish()
                    raise DataError(f"{source}: no rows to import" + refused.why_none())
                refused.publish()
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            why = "the disk is full" if exc.errno != errno.EFBIG else "File too large"
            raise TickwiseError(f"{out.parent}: the import could not be written ({why}); "
                                "nothing was imported, and what was there is as it was"
                                ) from None  # fmt: skip
        raise
    finally:
        discard(work)
    return ImportResult(out, kind, rows, instruments, time.perf_counter() - began,
                        refused.count, refused.path, sort)  # fmt: skip


def check_out(out: Path, sources: Sequence[Path]) -> None:
    """Refuse an output that would replace a source (or a folder holding one), a source
    given twice, or the current folder."""
    if out.name in ("", ".", "..") or out.resolve() in (Path.cwd(), *Path.cwd().parents):
        raise TickwiseError(f"--out {out} is the current folder or above it; name a file or a "
                            "new folder")  # fmt: skip
    seen: dict[Path, Path] = {}
    for source in sources:
        where = source.resolve()
        if where in seen:
            raise TickwiseError(f"{source} is given twice (as {seen[where]}); give each file "
                                "once")  # fmt: skip
        seen[where] = source
        if where == out.resolve() or out.resolve() in where.parents:
            raise TickwiseError(f"--out {out} would replace the source {source}; name "
                                "another place")  # fmt: skip


def _check_bad_rows_target(path: Path, source: Path, out: Path, overwrite: bool) -> None:
    if path.suffix.lower() != ".csv":
        raise TickwiseError(f"--bad-rows {path}: the refused rows are written as CSV; name a .csv")
    for other, what in ((source, "the source"), (out, "the output")):
        if path.resolve() == other.resolve():
            raise TickwiseError(f"--bad-rows {path} is {what}; name another file")
    if out.resolve() in path.resolve().parents:
        raise TickwiseError(f"--bad-rows {path} is inside the output {out}; name a file outside")
    check_target(path, overwrite)


def _scan(source: Path, is_csv: bool) -> pl.LazyFrame:
    if not source.exists():
        raise TickwiseError(f"{source}: no such file")
    scan = pl.scan_csv(source, infer_schema=False) if is_csv else pl.scan_parquet(source)
    return scan.with_row_index(_LINE)


def _names(scan: pl.LazyFrame, source: Path) -> list[str]:
    try:
        return [n for n in scan.collect_schema().names() if n != _LINE]
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"{source}: cannot read: {str(exc).splitlines()[0]}") from None


def _collect(frame: pl.LazyFrame, source: Path) -> pl.DataFrame:
    try:
        return frame.collect(engine="streaming")
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"{source}: cannot read: {str(exc).splitlines()[0]}") from None


def _typed_chunks(scan: pl.LazyFrame, chunk_rows: int, source: Path) -> Iterator[pl.DataFrame]:
    """`_chunks`, where a value that does not parse as its column's type is `_UnparsedError`."""
    try:
        yield from scan.collect_batches(chunk_size=chunk_rows)
    except pl.exceptions.ComputeError:
        raise _UnparsedError from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"{source}: cannot read: {str(exc).splitlines()[0]}") from None


def _chunks(scan: pl.LazyFrame, chunk_rows: int, source: Path) -> Iterator[pl.DataFrame]:
    try:
        yield from scan.collect_batches(chunk_size=chunk_rows)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"{source}: cannot read: {str(exc).splitlines()[0]}") from None


def _check_columns(names: list[str], kind: str, source: Path) -> None:
    expected = market_dtype(kind).names
    have = set(names) | ({"ts_recv"} if "ts_event" in names else set()) | {"seq", "instrument"}
    missing = [n for n in expected if n not in have]
    if missing:
        raise DataError(
            f"{source}: missing columns {missing} for {kind}; expected {list(expected)}"
        )


def _instruments(
    scan: pl.LazyFrame, names: list[str], source: Path, table_file: Path | None, tick: float,
    lot: float,
) -> tuple[Instruments, dict[str, int] | None]:  # fmt: skip
    """The instrument table, and (when rows name symbols) each symbol's id."""
    listed: dict[str, tuple[float, float, int | None]] = {}
    if table_file is not None:
        listed = _read_instruments_file(table_file)
    if "symbol" in names:
        found = _collect(scan.select(pl.col("symbol").cast(pl.String).drop_nulls().unique()),
                         source)  # fmt: skip
        symbols = sorted(found["symbol"].to_list())
        unknown = [s for s in symbols if listed and s not in listed]
        if unknown:
            raise DataError(f"{source}: symbols {unknown[:5]} are not in {table_file}")
        try:
            table = Instruments(_spec(n, s, listed, tick, lot) for n, s in enumerate(symbols))
        except ValueError as exc:
            raise DataError(f"{source}: {exc}") from None
        return table, {inst.symbol: inst.id for inst in table}
    if "instrument" not in names:
        raise DataError(f"{source}: needs an 'instrument' (integer id) or 'symbol' column")
    ids = _collect(scan.select(pl.col("instrument").cast(pl.Int64, strict=False).drop_nulls()
                               .unique()), source)["instrument"]  # fmt: skip
    ids = ids.filter((ids >= 0) & (ids < 2**32)).sort()
    by_id = {v[2]: (s, v[0], v[1]) for s, v in listed.items() if v[2] is not None}
    try:
        table = Instruments(
            Instrument(i, *by_id.get(i, (f"ID{i}", tick, lot))) for i in ids.to_list()
        )
    except ValueError as exc:
        raise DataError(f"{source}: {exc}") from None
    return table, None


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


class _Refused:
    """Where refused rows go. Without a path the first one stops the import, a `DataError`
    naming its line; with one, each is written there (CSV: its line, or row for a Parquet
    source, the reason, then the row's values as text) and the import goes on. The file
    appears when complete. Rows are written in the order found: the source's order, then
    any refused once in time order (with their values as typed)."""

    def __init__(self, source: Path, place: Callable[[int], str], path: Path | None,
                 names: list[str]) -> None:  # fmt: skip
        self.source = source
        self.place = place
        self.path = path
        self.names = names
        self.count = 0
        self._tmp: Path | None = None
        self._file = None
        self._csv = None

    def __enter__(self) -> _Refused:
        if self.path is not None:
            make_folder(self.path.parent)
            self._tmp = temporary_path(self.path)
            self._file = open(self._tmp, "w", newline="", encoding="utf-8")
            self._csv = csv.writer(self._file)
            self._csv.writerow([self.place(0).split(" ", 1)[0], "reason", *self.names])
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tmp is not None:
            discard(self._tmp)  # (published already when all went well)

    def add(self, lines: np.ndarray, reasons: list[str], values: pl.DataFrame) -> None:
        """Refuse rows: their places in the source (0-based), why, and their values."""
        if not len(lines):
            return
        if self._csv is None:
            first = int(np.argmin(lines))
            raise DataError(f"{self.source}: {self.place(int(lines[first]))}: {reasons[first]}")
        text = values.select(
            [
                pl.col(n).cast(pl.String) if n in values.columns else pl.lit("").alias(n)
                for n in self.names
            ]
        )
        for line, reason, row in zip(lines.tolist(), reasons, text.iter_rows(), strict=True):
            self._csv.writerow([self.place(line).split(" ", 1)[1], reason, *row])
        self.count += len(lines)

    def why_none(self) -> str:
        """Why nothing is left to import, when rows were refused."""
        if not self.count:
            return ""
        return f": all {self.count:,} rows were refused, each written to {self.path} with why"

    def publish(self) -> None:
        """Put the file of refused rows in place (its header alone when none was refused,
        so that a file left by an earlier import is never taken for this one's)."""
        if self._file is None or self._tmp is None or self.path is None:
            return
        self._file.close()
        self._file = None
        publish(self._tmp, self.path)
        self._tmp = None


class _UnorderedError(Exception):
    """Rows came out of the global order: the one-pass import gives way to the sort."""


class _UnparsedError(Exception):
    """A value did not parse as its column's type: the rows are read again as text."""


def _typed_scan(source: Path, is_csv: bool, names: list[str], kind: str) -> pl.LazyFrame:
    """The source read with each column of the kind in its type (what a CSV parser does
    fastest; `_UnparsedError` where a value will not)."""
    if not is_csv:
        return pl.scan_parquet(source).with_row_index(_LINE)
    dtype = market_dtype(kind)
    types = {n: _POLARS_TYPES[dtype.fields[n][0]] for n in dtype.names if n in names}
    for n in _TIME_COLUMNS:
        if n in types:
            types[n] = pl.Int64
    return pl.scan_csv(source, infer_schema=False, schema_overrides=types).with_row_index(_LINE)


def _one_pass(scan: pl.LazyFrame, kind: str, instruments: Instruments,
              symbol_ids: dict[str, int] | None, writer: HistoryWriter, refused: _Refused,
              given_seq: bool, chunk_rows: int, source: Path) -> int:  # fmt: skip
    """Import rows that already come in the global order (ts_event, instrument[, seq]) in
    one pass: cast, check, number and write each chunk. Raises `_UnorderedError` at the first
    good row out of that order (then nothing of this pass is kept). Returns the rows
    written."""
    dtype = market_dtype(kind)
    schema = market_schema(kind)
    values = Validator(kind, instruments, str(source), require_sorted=False, check_grid=True)
    ordered = Validator(kind, instruments, str(source), require_sorted=True)
    counters = np.zeros(instruments.known_mask().size, dtype=np.uint64)
    last: tuple[int, ...] | None = None
    written = 0
    for chunk in _typed_chunks(scan, chunk_rows, source):
        typed, bad = _cast_chunk(chunk, kind, symbol_ids)
        ok = np.ones(chunk.height, dtype=np.bool_)
        ok[list(bad)] = False
        cols = {n: typed[n].to_numpy() for n in typed.columns}
        if bad:
            cols = {n: c[ok] for n, c in cols.items()}
        held = np.flatnonzero(ok)
        faults = values.faults(cols, order=False)
        if faults:
            bad.update((int(held[r]), why) for r, why in faults)
            keep = np.ones(held.size, dtype=np.bool_)
            keep[[r for r, _ in faults]] = False
            cols = {n: c[keep] for n, c in cols.items()}
            held = held[keep]
        last = _in_order(cols, given_seq, last)
        if "seq" in dtype.names and not given_seq:
            cols["seq"] = number_rows(cols["instrument"], counters)
        faults = ordered.faults(cols)  # (repeated or backward seq, when the source has one)
        if faults:
            bad.update((int(held[r]), why) for r, why in faults)
            keep = np.ones(held.size, dtype=np.bool_)
            keep[[r for r, _ in faults]] = False
            cols = {n: c[keep] for n, c in cols.items()}
        if bad:
            rows = np.array(sorted(bad))
            refused.add(chunk[_LINE].to_numpy()[rows], [bad[r] for r in rows.tolist()],
                        chunk[rows])  # fmt: skip
        batch = pa.RecordBatch.from_arrays([pa.array(cols[n]) for n in schema.names],
                                           schema=schema)  # fmt: skip
        if batch.num_rows:
            writer.write(batch)
            written += batch.num_rows
    return written


def _in_order(cols: dict[str, np.ndarray], given_seq: bool,
              last: tuple[int, ...] | None) -> tuple[int, ...] | None:  # fmt: skip
    """Check that a chunk's rows follow `last` (the previous chunk's last key) in the global
    order; raise `_UnorderedError` if not. The chunk's own last key."""
    ts = cols["ts_event"]
    if not ts.size:
        return last
    inst = cols["instrument"].astype(np.int64)
    keys = [ts, inst] + ([cols["seq"].astype(np.int64)] if given_seq else [])
    if last is not None:
        keys = [np.r_[v, k] for v, k in zip(last, keys, strict=True)]
    # Each row against the one before: greater in the first key that differs, or all equal.
    decided = np.zeros(keys[0].size - 1, dtype=np.bool_)
    for k in keys:
        a, b = k[:-1], k[1:]
        if (~decided & (b < a)).any():
            raise _UnorderedError
        decided |= b > a
    return tuple(int(k[-1]) for k in keys)


def _stage(scan: pl.LazyFrame, kind: str, instruments: Instruments,
           symbol_ids: dict[str, int] | None, staged: Path, refused: _Refused, sort: bool,
           chunk_rows: int, source: Path) -> int:  # fmt: skip
    """Cast and check the source chunk by chunk; stage its good rows (with their lines) in
    `staged`. Without `sort`, each instrument's rows must be in time order as they come.
    Returns the rows staged."""
    dtype = market_dtype(kind)
    number = "seq" in dtype.names
    validator = Validator(kind, instruments, str(source), require_sorted=False, check_grid=True)
    counters = np.zeros(instruments.known_mask().size, dtype=np.uint64)
    fields = [pa.field(n, pa.from_numpy_dtype(dtype.fields[n][0])) for n in dtype.names]
    schema = pa.schema([*fields, pa.field(_LINE, pa.uint64())])
    staged_rows = 0
    with pq.ParquetWriter(staged, schema) as writer:
        for chunk in _chunks(scan, chunk_rows, source):
            typed, bad = _cast_chunk(chunk, kind, symbol_ids)
            cast_ok = np.ones(chunk.height, dtype=np.bool_)
            cast_ok[list(bad)] = False
            cols = {n: typed[n].to_numpy()[cast_ok] for n in typed.columns}
            if number and "seq" not in cols:
                cols["seq"] = number_rows(cols["instrument"], counters)
            faults = validator.faults(cols, order=not sort)
            if faults:  # (rows of the chunk that did cast, numbered among themselves)
                held = np.flatnonzero(cast_ok)
                bad.update((int(held[r]), why) for r, why in faults)
                keep = np.ones(len(cols[_LINE]), dtype=np.bool_)
                keep[[r for r, _ in faults]] = False
                cols = {n: c[keep] for n, c in cols.items()}
            if bad:
                rows = np.array(sorted(bad))
                refused.add(chunk[_LINE].to_numpy()[rows], [bad[r] for r in rows.tolist()],
                            chunk[rows])  # fmt: skip
            batch = pa.RecordBatch.from_arrays([pa.array(cols[f.name]) for f in schema],
                                               schema=schema)  # fmt: skip
            writer.write_batch(batch)
            staged_rows += batch.num_rows
    return staged_rows


def number_rows(instrument: np.ndarray, counters: np.ndarray) -> np.ndarray:
    """Each row's number within its instrument, following on from `counters` (updated)."""
    seq = np.empty(instrument.size, dtype=np.uint64)
    vk.number_rows_nb(instrument, counters, seq)
    return seq


def _sort(staged: Path, ordered: Path, kind: str, given_seq: bool, work: Path,
          memory: str) -> None:  # fmt: skip
    """Put the staged rows in the global order, ties in the order of the source: DuckDB's
    sort, which spills to disk (in `work`) beyond `memory`."""
    keys = ["ts_event", "instrument", *(["seq"] if given_seq else []), _LINE]
    import duckdb  # (imported here: only an import that sorts needs it)

    con = duckdb.connect(config={"memory_limit": memory, "threads": 1,  # (memory: bounded)
                                 "temp_directory": str(work / "spill")})  # fmt: skip
    try:
        con.execute(
            f"COPY (SELECT * FROM read_parquet({sql_quoted(staged)}) ORDER BY {', '.join(keys)}) "
            f"TO {sql_quoted(ordered)} (FORMAT parquet)"
        )
    except duckdb.Error as exc:
        raise TickwiseError(f"sorting the rows failed: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()


def sql_quoted(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _write_sorted(ordered: Path, kind: str, instruments: Instruments, writer: HistoryWriter,
                  refused: _Refused, *, number: bool, chunk_rows: int) -> int:  # fmt: skip
    """Number (when the source had no seq), check in the global order and write the sorted
    rows; the rows written."""
    dtype = market_dtype(kind)
    schema = market_schema(kind)
    validator = Validator(kind, instruments, "", require_sorted=True)
    counters = np.zeros(instruments.known_mask().size, dtype=np.uint64)
    written = 0
    for batch in pq.ParquetFile(ordered, pre_buffer=False).iter_batches(batch_size=chunk_rows):
        cols = {n: np.asarray(batch.column(n).to_numpy(), dtype=dtype.fields[n][0])
                for n in dtype.names}  # fmt: skip
        lines = batch.column(_LINE).to_numpy()
        if number and "seq" in dtype.names:
            cols["seq"] = number_rows(cols["instrument"], counters)
        faults = validator.faults(cols)
        if faults:
            rows = np.array([r for r, _ in faults])
            values = {n: c[rows] for n, c in cols.items()}
            if "symbol" in refused.names:
                values["symbol"] = np.array([instruments.symbol(int(i)) if int(i) in instruments
                                             else "" for i in values["instrument"]])  # fmt: skip
            refused.add(lines[rows], [m for _, m in faults], pl.DataFrame(values))
            keep = np.ones(lines.size, dtype=np.bool_)
            keep[rows] = False
            cols = {n: c[keep] for n, c in cols.items()}
        out = pa.RecordBatch.from_arrays([pa.array(cols[n]) for n in schema.names], schema=schema)
        if out.num_rows:
            writer.write(out)
            written += out.num_rows
    return written


def _cast_chunk(chunk: pl.DataFrame, kind: str, symbol_ids: dict[str, int] | None,
                ) -> tuple[pl.DataFrame, dict[int, str]]:  # fmt: skip
    """The chunk in the kind's types (with its lines), and the rows that would not cast,
    each with the first column's reason."""
    dtype = market_dtype(kind)
    frame = chunk
    bad: dict[int, str] = {}
    if symbol_ids is not None:
        symbol = frame["symbol"].cast(pl.String)
        for row in np.flatnonzero(symbol.is_null().to_numpy()).tolist():
            bad.setdefault(row, "symbol is empty")
        ids = symbol.replace_strict(symbol_ids, default=None, return_dtype=pl.UInt32)
        frame = frame.with_columns(ids.alias("instrument"))
    if "ts_recv" in dtype.names and "ts_recv" not in frame.columns:
        frame = frame.with_columns(pl.col("ts_event").alias("ts_recv"))
    out = {}
    for name in dtype.names:
        if name == "seq" and name not in frame.columns:
            continue
        target = _POLARS_TYPES[dtype.fields[name][0]]
        out[name] = _cast(frame[name], target, name, bad)
    out[_LINE] = chunk[_LINE].cast(pl.UInt64)
    return pl.DataFrame(out), bad


def time_ns(series: pl.Series) -> pl.Series:
    """Times as integer nanoseconds since the epoch (UTC), null where a value is none:
    integers as they are, datetimes, and text as an integer or ISO-8601 in one of the forms
    of `_ISO_FORMATS` (each value on its own: named, not guessed, as a guess would be made
    afresh per chunk). Only the values that are not integers are parsed as dates."""
    if isinstance(series.dtype, pl.Datetime):
        return series.dt.epoch("ns")
    if series.dtype != pl.String:
        return series.cast(pl.Int64, strict=False)
    as_int = series.cast(pl.Int64, strict=False)
    text = (as_int.is_null() & series.is_not_null()).to_numpy()
    if not text.any():
        return as_int.alias(series.name)
    rows = np.flatnonzero(text)
    rest = series.gather(rows)
    parsed = [
        rest.str.to_datetime(format=f, time_unit="ns", time_zone="UTC", strict=False).dt.epoch("ns")
        for f in _ISO_FORMATS
    ]
    found = pl.select(pl.coalesce(*parsed)).to_series()
    return as_int.scatter(rows, found).alias(series.name)


def _cast(series: pl.Series, target: pl.DataType, name: str, bad: dict[int, str]) -> pl.Series:
    """`series` as `target`; each row that will not cast is noted in `bad` (the first reason
    of a row stays) and holds a zero."""
    original = series
    expected = str(target)
    if series.dtype == pl.String:  # (as a typed read does: " 1.5" is 1.5)
        series = series.str.strip_chars()
    if name in _TIME_COLUMNS:
        series = time_ns(series)
        expected = "integer ns or an ISO-8601 time"
    cast = series.cast(target, strict=False)
    failed = cast.is_null()
    if failed.any():
        rows = np.flatnonzero(failed.to_numpy())
        for row, value in zip(rows.tolist(), original.gather(rows).to_list(), strict=True):
            shown = "empty" if value is None else repr(value)
            bad.setdefault(row, f"{name} is {shown}; expected {expected}")
        cast = cast.fill_null(0)
    return cast.alias(name)
