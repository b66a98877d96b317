"""The import of vendors' files: read, make books, check, order and write, in flat memory.

1. Each source file is read in chunks by its format's reader (feeds/vendors/*.py), in the
   order given; order-by-order messages go through the compiled books (feeds/orderbook.py)
   and come out as L2 deltas, L1 quotes and trades.
2. The rows of each kind asked for (`to`) are staged in a Parquet file with their places
   (file and line or record); whether they already are in the global order (ts_event,
   instrument, then the source's order) is followed as they pass.
3. A kind whose rows are not in that order is sorted by DuckDB, out of core, ties kept in
   the source's order; what an order book makes is refused where its ts_event goes back
   for its instrument, so a sort never reorders it.
4. The rows are numbered (`seq`), checked with the same compiled checks as replay (values,
   the tick grid, the order) and written; several kinds make a folder of kinds, which
   replays merged (feeds/merged.py).

Without `bad_rows` the first refused row stops the import, naming its file and place, and
nothing is written; with it, every refused row goes to that CSV with its file, place and
reason, and the rest is imported. What the books met (unknown orders, crossed books
repaired) and what a format's rules left out are counted and told, with the first places.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tickwise.engine.atomic import check_target, discard, make_folder, publish, temporary_path
from tickwise.engine.errors import DataError, TickwiseError
from tickwise.engine.instruments import Instrument as Spec
from tickwise.engine.instruments import Instruments
from tickwise.engine.schemas import KINDS, market_dtype, market_schema

from .. import validation_kernels as vk
from ..importer import check_out, number_rows, sql_quoted
from ..orderbook import NOTE_NAMES, PRICE_SCALE, Derived, OrderBooks
from ..store import HistoryWriter
from ..validation import Validator
from . import MBO, Symbols, detect_format, readers

CHUNK_ROWS = 500_000
SORT_MEMORY = "512MB"  # DuckDB's memory for a sort; beyond it, it spills to disk
EXAMPLES = 5  # places kept of each kind of note
_SRC = "_src"  # the source file's index among those given
_PLACE = "_place"  # the row's place in it
BOOK_KINDS = ("book", "quotes", "trades")  # what order-by-order messages can become


@dataclass
class Note:
    """Rows of one kind of trouble: how many, and the first few places."""

    count: int = 0
    places: list[str] = field(default_factory=list)


class _Notes(dict):
    """Notes by what they are (`Note`s), each with the first places; with a path, every
    note of the books also goes to that CSV (file, place, note, count), which appears when
    the import is complete."""

    def __init__(self, path: Path | None, place: str) -> None:
        super().__init__()
        self.path = path
        self._tmp: Path | None = None
        self._file = None
        self._csv = None
        if path is not None:
            make_folder(path.parent)
            self._tmp = temporary_path(path)
            self._file = open(self._tmp, "w", newline="", encoding="utf-8")  # noqa: SIM115
            self._csv = csv.writer(self._file)
            self._csv.writerow(["file", place, "note", "count"])

    def add(self, why: str, source: Path, place_word: str, place: int, count: int) -> None:
        note = self.setdefault(why, Note())
        note.count += 1
        if len(note.places) < EXAMPLES:
            note.places.append(f"{source}: {place_word} {place:,}")
        if self._csv is not None:
            self._csv.writerow([str(source), place, why, count])

    def publish(self) -> None:
        if self._file is not None and self._tmp is not None and self.path is not None:
            self._file.close()
            self._file = None
            publish(self._tmp, self.path)
            self._tmp = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._tmp is not None:
            discard(self._tmp)


@dataclass(frozen=True)
class VendorImport:
    """What an import wrote."""

    out: Path
    format: str
    rows: dict[str, int]  # rows written, by kind
    paths: dict[str, Path]
    instruments: Instruments
    messages: int  # order-by-order messages read (0 without any)
    wall_s: float
    notes: dict[str, Note]
    bad_rows: int = 0
    bad_rows_path: Path | None = None


def import_vendor(
    sources: Sequence[Path],
    out: Path,
    *,
    fmt: str | None = None,
    to: Sequence[str] | None = None,
    instruments_file: Path | None = None,
    tick_size: float = 0.01,
    lot_size: float = 1.0,
    partition: bool = False,
    overwrite: bool = False,
    bad_rows: Path | None = None,
    notes_path: Path | None = None,
    options: dict | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> VendorImport:
    """Import vendor files (all of one format, `fmt` or as detected) to tickwise Parquet.

    `to` names the kinds to write (by default every kind the files give; order-by-order
    messages give book, quotes and trades). One kind is written to `out` (a file, or a hive
    folder with `partition`); several make `out` a folder of kinds (`quotes.parquet`, ...).
    `notes_path` (CSV) takes every note of the books with its place (unknown orders,
    repairs of crossed books). Instruments are numbered in the order of `instruments_file`
    (CSV: symbol, tick_size, lot_size) and then in the order met; tick and lot sizes come
    from that file, else from the vendor's definitions, else `tick_size` and `lot_size`.
    """
    began = time.perf_counter()
    sources = [Path(s) for s in sources]
    if not sources:
        raise TickwiseError("no source files given")
    for source in sources:
        if not source.is_file():
            raise TickwiseError(f"{source}: no such file")
    check_out(out, sources)
    name = _format(sources, fmt)
    reader = readers()[name](**(options or {}))
    if hasattr(reader, "prepare"):
        reader.prepare(sources)
    kinds_in = _kinds_in(reader, sources)
    kinds = _kinds_out(kinds_in, to, sources)
    check_target(out, overwrite)
    if bad_rows is not None:
        _check_bad_rows_target(bad_rows, sources, out, overwrite)
    if notes_path is not None:
        _check_bad_rows_target(notes_path, sources, out, overwrite, "--notes")
        if bad_rows is not None and notes_path.resolve() == bad_rows.resolve():
            raise TickwiseError(f"--notes {notes_path} is also --bad-rows; name two files")
    symbols = Symbols()
    listed = _read_instruments_file(instruments_file) if instruments_file else {}
    for symbol in listed:
        symbols.index(symbol)
    make_folder(out.parent)
    notes = _Notes(notes_path, reader.place)
    work = temporary_path(out.with_name(out.name + ".import"))
    stages: dict[str, _Stage] = {}
    try:
        work.mkdir()
        with _BadRows(bad_rows, sources, reader.place) as refused:
            stages.update({k: _Stage(work / f"{k}.parquet", k, refused) for k in kinds})
            messages = _read_all(reader, sources, symbols, stages, refused, notes)
            for stage in stages.values():
                stage.close()
            for why, n in reader.notes().items():
                notes.setdefault(why, Note()).count += n
            table = _instruments(symbols, listed, tick_size, lot_size, sources)
            if not any(stage.rows for stage in stages.values()):
                raise DataError(_nothing(sources, stages, notes, refused))
            rows, paths = _write(
                stages, table, out, partition, overwrite, work, refused, chunk_rows
            )
            refused.publish()
            notes.publish()
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            why = "the disk is full" if exc.errno != errno.EFBIG else "File too large"
            raise TickwiseError(f"{out.parent}: the import could not be written ({why}); "
                                "nothing was imported, and what was there is as it was"
                                ) from None  # fmt: skip
        raise
    finally:
        for stage in stages.values():
            stage.abort()
        notes.close()
        discard(work)
    return VendorImport(
        out,
        name,
        rows,
        paths,
        table,
        messages,
        time.perf_counter() - began,
        notes,
        refused.count,
        bad_rows,
    )


def _nothing(
    sources: list[Path], stages: dict[str, _Stage], notes: dict[str, Note], refused: _BadRows
) -> str:
    """Why an import has nothing to write."""
    told = "; ".join(f"{n.count:,} {why}" for why, n in notes.items())
    return (
        f"{sources[0]}{' and the rest' if len(sources) > 1 else ''}: no rows of "
        f"{', '.join(stages)} to import" + (f" ({told})" if told else "") + refused.why_none()
    )


def _format(sources: list[Path], fmt: str | None) -> str:
    known = readers()
    if fmt is not None:
        if fmt not in known:
            raise TickwiseError(
                f"--format {fmt!r} is unknown; choose one of {', '.join(['csv', *known])}"
            )
        return fmt
    found = {s: detect_format(s) for s in sources}
    unknown = [s for s, f in found.items() if f is None]
    if unknown:
        raise TickwiseError(
            f"{unknown[0]}: cannot tell its format from its name or first "
            f"bytes; pass --format ({', '.join(['csv', *known])})"
        )
    kinds = set(found.values())
    if len(kinds) > 1:
        raise TickwiseError(
            f"the sources are of several formats ({', '.join(sorted(kinds))}); "
            "import each format on its own"
        )
    return kinds.pop()


def _kinds_in(reader, sources: list[Path]) -> list[str]:
    found: list[str] = []
    for source in sources:
        for kind in reader.kinds(source):
            for k in BOOK_KINDS if kind == MBO else (kind,):
                if k not in found:
                    found.append(k)
    if not found:
        raise DataError(f"{sources[0]}: holds no market data (only definitions?)")
    return found


def _kinds_out(found: list[str], to: Sequence[str] | None, sources: list[Path]) -> list[str]:
    if not to:
        return [k for k in KINDS if k in found]
    bad = [k for k in to if k not in KINDS]
    if bad:
        raise TickwiseError(f"--to {bad[0]!r} is not a kind; choose from {', '.join(KINDS)}")
    missing = [k for k in to if k not in found]
    if missing:
        raise TickwiseError(
            f"--to {missing[0]}: the sources give {', '.join(found)}, not {missing[0]}"
        )
    return [k for k in KINDS if k in to]


def _check_bad_rows_target(path: Path, sources: list[Path], out: Path, overwrite: bool,
                           flag: str = "--bad-rows") -> None:  # fmt: skip
    if path.suffix.lower() != ".csv":
        raise TickwiseError(f"{flag} {path}: it is written as CSV; name a .csv")
    for other in (*sources, out):
        if path.resolve() == other.resolve():
            raise TickwiseError(f"{flag} {path} is {other}; name another file")
    if out.resolve() in path.resolve().parents:
        raise TickwiseError(f"{flag} {path} is inside the output {out}; name a file outside")
    check_target(path, overwrite)


def _read_all(
    reader,
    sources: list[Path],
    symbols: Symbols,
    stages: dict[str, _Stage],
    refused: _BadRows,
    notes: _Notes,
) -> int:
    """Read every source into the stages; the order-by-order messages read."""
    if hasattr(reader, "definitions"):
        for source in sources:
            if reader.kinds(source) == ():
                reader.definitions(source, symbols)
    books: OrderBooks | None = None
    messages = 0
    for src, source in enumerate(sources):
        for rows in reader.read(source, symbols):
            for place, reason in rows.refused:
                refused.add(src, place, reason, rows.kind, {})
            if rows.kind != MBO:
                if rows.kind in stages:
                    stages[rows.kind].add(rows.cols, src, rows.places)
                continue
            msgs = rows.cols["msgs"]
            if books is None:
                books = OrderBooks()
            first = books.messages
            messages += msgs.size
            for made in books.apply(msgs):
                _stage_derived(made, first, rows.places, src, stages, reader, sources, notes)
            last = (src, rows.places[-1:], books.messages - 1)
    if books is not None:  # (updates still open at the stream's end are closed)
        src, places, first = last
        for made in books.finish():
            _stage_derived(made, first, places, src, stages, reader, sources, notes)
    return messages


def _stage_derived(
    made: Derived,
    first: int,
    places: np.ndarray,
    src: int,
    stages: dict[str, _Stage],
    reader,
    sources: list[Path],
    notes: _Notes,
) -> None:
    """Stage what the books made of one chunk of messages (rows: the messages' places)."""
    scale = float(getattr(reader, "size_scale", 1.0))
    if "book" in stages and made.deltas.size:
        d = made.deltas
        stages["book"].add(
            {
                "ts_event": d["ts_event"],
                "ts_recv": d["ts_recv"],
                "instrument": d["inst"],
                "side": d["side"],
                "px": d["px"] / PRICE_SCALE,
                "sz": d["qty"] / scale,
                "flags": d["flags"],
            },
            src,
            places[d["row"] - first],
            forward=True,
        )
    if "quotes" in stages and made.quotes.size:
        q = made.quotes
        stages["quotes"].add(
            {
                "ts_event": q["ts_event"],
                "ts_recv": q["ts_recv"],
                "instrument": q["inst"],
                "bid_px": q["bid_px"] / PRICE_SCALE,
                "ask_px": q["ask_px"] / PRICE_SCALE,
                "bid_sz": q["bid_qty"] / scale,
                "ask_sz": q["ask_qty"] / scale,
            },
            src,
            places[q["row"] - first],
            forward=True,
        )
    if "trades" in stages and made.trades.size:
        t = made.trades
        stages["trades"].add(
            {
                "ts_event": t["ts_event"],
                "ts_recv": t["ts_recv"],
                "instrument": t["inst"],
                "px": t["px"] / PRICE_SCALE,
                "sz": t["qty"] / scale,
                "side": t["side"],
            },
            src,
            places[t["row"] - first],
            forward=True,
        )
    n = made.notes
    for code, row, count in zip(n["code"].tolist(), n["row"].tolist(), n["count"].tolist(),
                                strict=True):  # fmt: skip
        notes.add(NOTE_NAMES[code], sources[src], reader.place, int(places[row - first]), count)


class _Stage:
    """The rows of one kind, staged in source order with their places; follows whether
    they are in the global order already."""

    def __init__(self, path: Path, kind: str, refused: _BadRows) -> None:
        self.path = path
        self.kind = kind
        self.refused = refused
        self._last_ts = np.zeros(0, dtype=np.int64)  # (book: each instrument's last ts_event)
        dtype = market_dtype(kind)
        self.names = [n for n in dtype.names if n != "seq"]
        fields = [pa.field(n, pa.from_numpy_dtype(dtype.fields[n][0])) for n in self.names]
        self.schema = pa.schema(
            [*fields, pa.field(_SRC, pa.uint16()), pa.field(_PLACE, pa.uint64())]
        )
        self._writer = pq.ParquetWriter(path, self.schema)
        self.rows = 0
        self.ordered = True
        self._last = (np.iinfo(np.int64).min, -1)

    def add(self, cols: dict[str, np.ndarray], src: int, places: np.ndarray,
            forward: bool = False) -> None:  # fmt: skip
        """Stage rows; book updates, and rows made by the books (`forward`), must not go
        back in time for their instrument (a sort would move them where they are false)."""
        if not len(places):
            return
        cols, places = self._in_time(cols, src, places)
        if (self.kind == "book" or forward) and len(places):
            cols, places = self._forward(cols, src, places)
        n = len(places)
        if not n:
            return
        dtype = market_dtype(self.kind)
        arrays = [pa.array(np.asarray(cols[c], dtype=dtype.fields[c][0])) for c in self.names]
        arrays += [pa.array(np.full(n, src, dtype=np.uint16)), pa.array(places.astype(np.uint64))]
        self._writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
        if self.ordered:
            ts = np.asarray(cols["ts_event"], dtype=np.int64)
            inst = np.asarray(cols["instrument"], dtype=np.int64)
            ts_all = np.r_[self._last[0], ts]
            inst_all = np.r_[self._last[1], inst]
            back = (ts_all[1:] < ts_all[:-1]) | (
                (ts_all[1:] == ts_all[:-1]) & (inst_all[1:] < inst_all[:-1])
            )
            self.ordered = not back.any()
            self._last = (int(ts[-1]), int(inst[-1]))
        self.rows += n

    def _in_time(self, cols: dict[str, np.ndarray], src: int,
                 places: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:  # fmt: skip
        """Rows stamped before 1970 (or undefined: a vendor's sentinel) are refused."""
        bad = np.zeros(len(places), dtype=np.bool_)
        for name in ("ts_event", "ts_recv"):
            if name in cols:
                bad |= np.asarray(cols[name], dtype=np.int64) < 0
        if not bad.any():
            return cols, places
        for r in np.flatnonzero(bad).tolist():
            self.refused.add(src, int(places[r]), "a time before 1970, or none (the vendor's "
                             "undefined time)", self.kind,
                             {n: c[r] for n, c in cols.items()})  # fmt: skip
        return {n: np.asarray(c)[~bad] for n, c in cols.items()}, places[~bad]

    def _forward(self, cols: dict[str, np.ndarray], src: int,
                 places: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:  # fmt: skip
        """Rows whose ts_event goes back for their instrument are refused: the sort would
        move them before rows they followed (a book update would change the book, a quote
        made by the books would show a book it did not follow)."""
        inst = np.asarray(cols["instrument"], dtype=np.int64)
        top = int(inst.max()) + 1
        if top > self._last_ts.size:
            self._last_ts = np.r_[self._last_ts, np.full(top - self._last_ts.size, -1, np.int64)]
        bad = np.zeros(inst.size, dtype=np.bool_)
        vk.mark_backwards_nb(np.asarray(cols["ts_event"], dtype=np.int64), inst, self._last_ts,
                             bad)  # fmt: skip
        if not bad.any():
            return cols, places
        for r in np.flatnonzero(bad).tolist():
            self.refused.add(src, int(places[r]), "ts_event goes back in time for its "
                             "instrument: what an order book makes cannot be put in another "
                             "order", self.kind, {n: c[r] for n, c in cols.items()})  # fmt: skip
        keep = ~bad
        return {n: np.asarray(c)[keep] for n, c in cols.items()}, places[keep]

    def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()

    def abort(self) -> None:
        """Close without a word (the import failed; its folder goes)."""
        with contextlib.suppress(OSError):
            self.close()
        self._writer = None


def _instruments(
    symbols: Symbols,
    listed: dict[str, tuple[float, float]],
    tick: float,
    lot: float,
    sources: list[Path],
) -> Instruments:
    try:
        return Instruments(
            Spec(
                i,
                item.symbol,
                listed[item.symbol][0] if item.symbol in listed else (item.tick_size or tick),
                listed[item.symbol][1] if item.symbol in listed else (item.lot_size or lot),
            )
            for i, item in enumerate(symbols.items)
        )
    except ValueError as exc:
        raise DataError(f"{sources[0]}: {exc}") from None


def _read_instruments_file(path: Path) -> dict[str, tuple[float, float]]:
    """symbol -> (tick, lot) from an instruments CSV (symbol, tick_size, lot_size), each
    value checked; vendor imports number instruments themselves, so an `id` column is
    refused."""
    import polars as pl

    try:
        frame = pl.read_csv(path, infer_schema=False)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise TickwiseError(
            f"{path}: cannot read instruments: {str(exc).splitlines()[0]}"
        ) from None
    missing = {"symbol", "tick_size", "lot_size"} - set(frame.columns)
    if missing:
        raise TickwiseError(f"{path}: instruments file lacks columns {sorted(missing)}")
    if "id" in frame.columns:
        raise TickwiseError(f"{path}: an id column is for --format csv; a vendor import "
                            "numbers instruments in the file's order, then as met")  # fmt: skip
    table: dict[str, tuple[float, float]] = {}
    for line, row in enumerate(frame.iter_rows(named=True), start=2):
        values = []
        for name in ("tick_size", "lot_size"):
            try:
                value = float(row[name])
            except (TypeError, ValueError):
                value = float("nan")
            if not (value > 0 and value < float("inf")):
                shown = "empty" if row[name] in (None, "") else repr(row[name])
                raise TickwiseError(f"{path}: line {line}: {name} is {shown}; expected a "
                                    "positive number")  # fmt: skip
            values.append(value)
        if not row["symbol"]:
            raise TickwiseError(f"{path}: line {line}: symbol is empty")
        table[str(row["symbol"])] = (values[0], values[1])
    return table


def _write(
    stages: dict[str, _Stage],
    table: Instruments,
    out: Path,
    partition: bool,
    overwrite: bool,
    work: Path,
    refused: _BadRows,
    chunk_rows: int,
) -> tuple[dict[str, int], dict[str, Path]]:
    """Sort (where needed), number, check and write every kind; rows and paths by kind."""
    single = len(stages) == 1
    if not single:
        stages = {k: s for k, s in stages.items() if s.rows}  # (kinds the sources lacked)
    target = out if single else temporary_path(out)
    if not single:
        target.mkdir()
    rows: dict[str, int] = {}
    paths: dict[str, Path] = {}
    try:
        for kind, stage in stages.items():
            ordered = stage.path
            if not stage.ordered:
                ordered = work / f"{kind}.sorted.parquet"
                _sort(stage.path, ordered, work)
            path = target if single else target / (kind if partition else f"{kind}.parquet")
            with HistoryWriter(
                path, kind, table, partition=partition, overwrite=overwrite or not single
            ) as writer:
                rows[kind] = _check_and_write(ordered, kind, table, writer, refused, chunk_rows)
            paths[kind] = out if single else out / path.name
        if not single:
            publish(target, out)
    except BaseException:
        if not single:
            discard(target)
        raise
    if not any(rows.values()):
        raise DataError(f"no rows of {', '.join(stages)} to import" + refused.why_none())
    return rows, paths


def _sort(staged: Path, ordered: Path, work: Path) -> None:
    """The staged rows in (ts_event, instrument) order, ties in the source's order (the row
    number in the staged file): DuckDB's sort, which spills to disk beyond SORT_MEMORY."""
    import duckdb  # (imported here: only an import that sorts needs it)

    con = duckdb.connect(
        config={"memory_limit": SORT_MEMORY, "threads": 1, "temp_directory": str(work / "spill")}
    )
    try:
        con.execute(
            f"COPY (SELECT * EXCLUDE (file_row_number) FROM read_parquet({sql_quoted(staged)}, "
            "file_row_number = true) ORDER BY ts_event, instrument, file_row_number) "
            f"TO {sql_quoted(ordered)} (FORMAT parquet)"
        )
    except duckdb.Error as exc:
        raise TickwiseError(f"sorting the rows failed: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()


def _check_and_write(
    ordered: Path,
    kind: str,
    table: Instruments,
    writer: HistoryWriter,
    refused: _BadRows,
    chunk_rows: int,
) -> int:
    """Number, check (values, grid, order) and write the ordered rows; the rows written."""
    dtype = market_dtype(kind)
    schema = market_schema(kind)
    validator = Validator(kind, table, "", require_sorted=True, check_grid=True)
    counters = np.zeros(table.known_mask().size, dtype=np.uint64)
    written = 0
    for batch in pq.ParquetFile(ordered, pre_buffer=False).iter_batches(batch_size=chunk_rows):
        cols = {
            n: np.asarray(batch.column(n).to_numpy(), dtype=dtype.fields[n][0])
            for n in dtype.names
            if n != "seq"
        }
        if "seq" in dtype.names:
            cols["seq"] = number_rows(cols["instrument"], counters)
        faults = validator.faults(cols)
        if faults:
            src = batch.column(_SRC).to_numpy()
            place = batch.column(_PLACE).to_numpy()
            keep = np.ones(batch.num_rows, dtype=np.bool_)
            for r, why in faults:
                refused.add(
                    int(src[r]), int(place[r]), why, kind, {n: c[r] for n, c in cols.items()}
                )
                keep[r] = False
            cols = {n: c[keep] for n, c in cols.items()}
        out = pa.RecordBatch.from_arrays([pa.array(cols[n]) for n in schema.names], schema=schema)
        if out.num_rows:
            writer.write(out)
            written += out.num_rows
    return written


class _BadRows:
    """Where refused rows go: without a path the first stops the import (a `DataError`
    naming file and place); with one, each is a line of that CSV (file, place, reason, kind,
    values) and the import goes on. The file appears when complete."""

    def __init__(self, path: Path | None, sources: list[Path], place: str) -> None:
        self.path = path
        self.sources = sources
        self.place = place
        self.count = 0
        self._tmp: Path | None = None
        self._file = None
        self._csv = None

    def __enter__(self) -> _BadRows:
        if self.path is not None:
            make_folder(self.path.parent)
            self._tmp = temporary_path(self.path)
            self._file = open(self._tmp, "w", newline="", encoding="utf-8")
            self._csv = csv.writer(self._file)
            self._csv.writerow(["file", self.place, "reason", "kind", "values"])
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tmp is not None:
            discard(self._tmp)

    def add(self, src: int, place: int, reason: str, kind: str, values: dict) -> None:
        if self._csv is None:
            raise DataError(f"{self.sources[src]}: {self.place} {place:,}: {reason}")
        shown = " ".join(f"{k}={_text(v)}" for k, v in values.items())
        self._csv.writerow([str(self.sources[src]), place, reason, kind, shown])
        self.count += 1

    def why_none(self) -> str:
        if not self.count:
            return ""
        return f"; all {self.count:,} rows were refused, each written to {self.path} with why"

    def publish(self) -> None:
        if self._file is None or self._tmp is None or self.path is None:
            return
        self._file.close()
        self._file = None
        publish(self._tmp, self.path)
        self._tmp = None


def _text(value: object) -> str:
    if isinstance(value, np.floating | float):
        return repr(float(value))
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)
