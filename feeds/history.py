"""Streaming Parquet history: one file or a hive-partitioned directory, batch by batch.

Rows come out in one deterministic global order, (ts_event, instrument, seq),
whatever the batch size and however the rows are spread over files: each file
is validated as it streams, files overlapping in time are merged, and files
are opened only when the merge reaches their first timestamp, so memory stays
flat in the size of the history.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tickwise.engine.errors import DataError
from tickwise.engine.instruments import Instruments
from tickwise.engine.schemas import KINDS, META_INSTRUMENTS, META_KIND, market_dtype, market_schema

from .validation import Validator, check_schema

DEFAULT_BATCH_ROWS = 65_536


def columns(batch: pa.RecordBatch) -> dict[str, np.ndarray]:
    """Zero-copy numpy views of a batch's columns, by name (what kernels are handed)."""
    return {
        name: col.to_numpy(zero_copy_only=True)
        for name, col in zip(batch.schema.names, batch.columns, strict=True)
    }


@dataclass(frozen=True)
class HistoryFile:
    """One Parquet file of a history, as its footer describes it."""

    path: Path
    rows: int
    ts_min: int | None  # from row-group statistics; None when the file has none
    ts_max: int | None
    partition: Mapping[str, str]  # hive keys of its directories (date=..., instrument=...)


class History:
    """A Parquet history of one kind, opened for streaming.

    `path` is a `.parquet` file or a directory searched recursively for them
    (hive `key=value` folders supply columns a file lacks). Every file must
    carry tickwise metadata (kind and instrument table), as files written by
    `tickwise data synth` and `tickwise data import` do.
    """

    def __init__(self, path: str | Path, kind: str | None = None) -> None:
        self.path = Path(path)
        if kind is not None and kind not in KINDS:
            raise DataError(f"unknown data kind {kind!r}; expected one of {', '.join(KINDS)}")
        if not self.path.exists():
            raise DataError(f"{self.path}: no such file or directory")
        paths = [self.path]
        if self.path.is_dir():
            # Hidden entries (a writer's temporary files) are not part of the history.
            paths = [
                p
                for p in sorted(self.path.rglob("*.parquet"))
                if not any(part.startswith(".") for part in p.relative_to(self.path).parts)
            ]
        if not paths:
            raise DataError(f"{self.path}: no .parquet files found")
        described = [self._describe(p) for p in paths]
        _, first_kind, first_instruments = described[0]
        self.kind: str = kind or first_kind
        self.instruments: Instruments = first_instruments
        self.files: list[HistoryFile] = []
        for info, file_kind, instruments in described:
            if file_kind != self.kind:
                raise DataError(f"{info.path}: holds {file_kind}, not {self.kind}")
            if instruments != self.instruments:
                raise DataError(
                    f"{info.path}: its instruments table differs from the one in {paths[0]}; "
                    "all files of a history must share one table"
                )
            self.files.append(info)
        self.rows = sum(f.rows for f in self.files)
        self.schema = market_schema(self.kind)

    def _describe(self, p: Path) -> tuple[HistoryFile, str, Instruments]:
        try:
            pf = pq.ParquetFile(p)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{p}: not a readable Parquet file: {exc}") from None
        meta = pf.schema_arrow.metadata or {}
        file_kind = kind_of(p, meta)
        partition = _partition_keys(p.relative_to(self.path) if self.path.is_dir() else Path())
        check_schema(pf.schema_arrow, file_kind, str(p), partition)
        instruments = Instruments.from_json(meta[META_INSTRUMENTS], str(p))
        ts_min, ts_max = _ts_range(pf)
        return (
            HistoryFile(p, pf.metadata.num_rows, ts_min, ts_max, partition),
            file_kind,
            instruments,
        )

    @property
    def ts_range(self) -> tuple[int | None, int | None]:
        """First and last ts_event (ns) from the files' statistics, without reading rows."""
        mins = [f.ts_min for f in self.files if f.ts_min is not None]
        maxs = [f.ts_max for f in self.files if f.ts_max is not None]
        return (min(mins) if mins else None, max(maxs) if maxs else None)

    def batches(self, batch_size: int = DEFAULT_BATCH_ROWS, start: int | None = None,
                end: int | None = None, *, check_grid: bool = False,
                ) -> Iterator[pa.RecordBatch]:  # fmt: skip
        """Record batches of exactly `batch_size` rows (the last may be shorter), validated,
        in (ts_event, instrument, seq) order, of the rows with `start` <= ts_event < `end`
        (ns; None: unbounded; files wholly outside are not read). Raises `DataError` at the
        first bad row; `check_grid` also at the first price off its tick grid (`data
        inspect` checks it, as import did).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if start is not None and end is not None and not start < end:
            raise DataError(f"the start ({start}) must be before the end ({end})")
        lo = -(2**63) if start is None else start
        hi = 2**63 - 1 if end is None else end
        inside = [
            i for i, f in enumerate(self.files)
            if f.ts_max is None or f.ts_min is None or (f.ts_max >= lo and f.ts_min < hi)
        ]  # fmt: skip
        order = sorted(
            inside,
            key=lambda i: (
                self.files[i].ts_min if self.files[i].ts_min is not None else -(2**63),
                i,
            ),
        )
        streams = deque(
            _FileStream(self.files[i], i, self.kind, self.instruments, batch_size, check_grid)
            for i in order
        )
        merged = _merge(streams, self.kind)
        if start is not None or end is not None:
            merged = _window(merged, lo, hi)
        return _rechunk(merged, batch_size)


def kind_of(path: Path, meta: Mapping[bytes, bytes]) -> str:
    """The kind a tickwise file's schema metadata names; DataError when it carries no
    tickwise metadata (kind and instruments) or names an unknown kind."""
    if META_KIND not in meta or META_INSTRUMENTS not in meta:
        raise DataError(
            f"{path}: no tickwise metadata (kind, instruments); "
            "bring the data in with `tickwise data import`"
        )
    kind = meta[META_KIND].decode()
    if kind not in KINDS:
        raise DataError(f"{path}: unknown data kind {kind!r} in metadata")
    return kind


def open_history(path: str | Path, kind: str | None = None) -> History:
    """Open a Parquet history for streaming (see `History`)."""
    return History(path, kind)


def _partition_keys(relative: Path) -> dict[str, str]:
    keys = {}
    for part in relative.parts[:-1]:
        key, eq, value = part.partition("=")
        if eq:
            keys[key] = value
    return keys


def _ts_range(pf: pq.ParquetFile) -> tuple[int | None, int | None]:
    col = pf.schema_arrow.get_field_index("ts_event")
    if col < 0 or pf.metadata.num_row_groups == 0:
        return None, None
    lo, hi = [], []
    for g in range(pf.metadata.num_row_groups):
        stats = pf.metadata.row_group(g).column(col).statistics
        if stats is None or not stats.has_min_max:
            return None, None
        lo.append(stats.min)
        hi.append(stats.max)
    return min(lo), max(hi)


class _FileStream:
    """One file's validated batches, and the merge cursor over the current one."""

    def __init__(
        self, info: HistoryFile, index: int, kind: str, instruments: Instruments, batch_size: int,
        check_grid: bool = False,
    ) -> None:  # fmt: skip
        self.info = info
        self.index = index
        self.ts_min = info.ts_min if info.ts_min is not None else -(2**63)
        self._batch_size = batch_size
        self._iter: Generator[pa.RecordBatch, None, None] | None = None
        self._schema = market_schema(kind)
        self._has_seq = "seq" in market_dtype(kind).names
        self.validator = Validator(kind, instruments, str(info.path), check_grid=check_grid)
        self.batch: pa.RecordBatch | None = None
        self.pos = 0

    def open(self) -> None:
        # pyarrow's default pre-buffering reads whole column chunks of the file ahead
        # and keeps them: memory would grow with the file. Off, it stays flat.
        pf = pq.ParquetFile(self.info.path, pre_buffer=False)
        names = [n for n in self._schema.names if pf.schema_arrow.get_field_index(n) >= 0]
        if _ONE_THREAD.is_set():
            self._iter = (b for b in pf.iter_batches(batch_size=self._batch_size, columns=names,
                                                     use_threads=False))  # fmt: skip
            return
        self._iter = _read_ahead(
            lambda: pf.iter_batches(batch_size=self._batch_size, columns=names), depth=2
        )

    def close(self) -> None:
        if self._iter is not None:
            self._iter.close()

    def fill(self) -> bool:
        """Make sure a current batch with unread rows exists; False when the file is done."""
        while self.batch is None or self.pos >= self.batch.num_rows:
            assert self._iter is not None
            raw = next(self._iter, None)
            if raw is None:
                return False
            self.batch = self._conform(raw)
            self.pos = 0
            cols = columns(self.batch)
            self.validator.check(cols)
            self.ts = cols["ts_event"]
            self.inst = cols["instrument"]
            self.seq = cols["seq"] if self._has_seq else None
        return True

    def _conform(self, raw: pa.RecordBatch) -> pa.RecordBatch:
        self.validator.check_nulls(raw)
        arrays = []
        for field in self._schema:
            idx = raw.schema.get_field_index(field.name)
            if idx >= 0:
                arrays.append(raw.column(idx))
            else:  # a hive partition key stands in for the column
                arrays.append(self._constant(field, raw.num_rows))
        return pa.RecordBatch.from_arrays(arrays, schema=self._schema)

    def _constant(self, field: pa.Field, rows: int) -> pa.Array:
        value = self.info.partition[field.name]
        try:
            scalar = pa.scalar(int(value), type=field.type)
        except (ValueError, pa.ArrowException):
            raise DataError(
                f"{self.info.path}: partition key {field.name}={value!r} "
                f"is not a valid {field.type}"
            ) from None
        return pa.repeat(scalar, rows)

    def last_key(self) -> tuple[int, int, int]:
        n = self.batch.num_rows - 1
        return int(self.ts[n]), int(self.inst[n]), int(self.seq[n]) if self.seq is not None else 0

    def count_upto(self, key: tuple[int, int, int]) -> int:
        """How many unread rows have (ts_event, instrument, seq) <= `key` (rows are sorted)."""
        ts = self.ts[self.pos :]
        lo = int(np.searchsorted(ts, key[0], side="left"))
        hi = int(np.searchsorted(ts, key[0], side="right"))
        if hi == lo:
            return lo
        inst = self.inst[self.pos + lo : self.pos + hi].astype(np.int64)
        tie = inst < key[1]
        if self.seq is not None:
            seq = self.seq[self.pos + lo : self.pos + hi]
            tie |= (inst == key[1]) & (seq <= np.uint64(key[2]))
        else:
            tie |= inst == key[1]
        return lo + int(np.count_nonzero(tie))

    def take(self, n: int) -> pa.RecordBatch:
        out = self.batch.slice(self.pos, n)
        self.pos += n
        return out


def _merge(pending: deque[_FileStream], kind: str) -> Iterator[pa.RecordBatch]:
    """Merge time-sorted file streams into one (ts_event, instrument, seq)-sorted stream.

    Files are opened in order of their first timestamp and only once the merge
    reaches it. Each step emits every buffered row up to the smallest "last
    buffered key" of the open files: no row still unread can sort before those.
    """
    active: list[_FileStream] = []
    try:
        yield from _merge_open(pending, active, kind)
    finally:
        for stream in active:
            stream.close()


def _merge_open(
    pending: deque[_FileStream], active: list[_FileStream], kind: str
) -> Iterator[pa.RecordBatch]:
    has_seq = "seq" in market_dtype(kind).names
    while True:
        for stream in [s for s in active if not s.fill()]:
            stream.close()
            active.remove(stream)
        if pending and (not active or pending[0].ts_min <= min(int(s.ts[-1]) for s in active)):
            stream = pending.popleft()
            stream.open()
            active.append(stream)
            continue
        if not active:
            return
        if len(active) == 1 and not pending:
            stream = active[0]
            yield stream.take(stream.batch.num_rows - stream.pos)
            continue
        horizon = min(s.last_key() for s in active)
        pieces = []
        for stream in sorted(active, key=lambda s: s.index):
            n = stream.count_upto(horizon)
            if n:
                pieces.append((stream.index, stream.take(n)))
        if len(pieces) == 1:
            yield pieces[0][1]
            continue
        merged = pa.concat_batches([p for _, p in pieces])
        cols = columns(merged)
        source = np.repeat([i for i, _ in pieces], [p.num_rows for _, p in pieces])
        keys = (
            (source, cols["seq"], cols["instrument"], cols["ts_event"])
            if has_seq
            else (source, cols["instrument"], cols["ts_event"])
        )
        yield merged.take(pa.array(np.lexsort(keys)))


def _window(batches: Generator, lo: int, hi: int) -> Iterator[pa.RecordBatch]:
    """The rows with lo <= ts_event < hi of a stream in ts_event order (zero-copy slices);
    the stream is left as soon as it passes `hi`."""
    try:
        for batch in batches:
            ts = batch.column("ts_event").to_numpy()
            first, last = np.searchsorted(ts, (lo, hi))
            if last > first:
                yield batch.slice(first, last - first)
            if last < ts.size:
                return
    finally:
        batches.close()  # (the files still open are closed now, not when collected)


def _rechunk(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
    """Re-cut a stream of batches into batches of exactly `size` rows (the last may be short).

    A batch that already has `size` rows passes through as a zero-copy slice;
    only batches that straddle input boundaries are copied together.
    """
    held: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        while batch.num_rows:
            if not held and batch.num_rows >= size:
                yield batch.slice(0, size)
                batch = batch.slice(size)
                continue
            need = size - rows
            held.append(batch.slice(0, need))
            rows += min(need, batch.num_rows)
            batch = batch.slice(need)
            if rows == size:
                yield pa.concat_batches(held)
                held, rows = [], 0
    if held:
        yield pa.concat_batches(held)


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = object()
_ONE_THREAD = threading.Event()  # set: histories decode on the reading thread alone


def read_on_one_thread() -> None:
    """Decode Parquet on the thread that reads it, from now on in this process: for a
    process that is one of many workers (a sweep's), each of which should keep to one CPU.
    (Otherwise the next batch decodes on other threads while the current one is used: a
    single replay then takes more than one CPU, and workers on every CPU contend for them.)"""
    import pyarrow as pa

    _ONE_THREAD.set()
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)


def _read_ahead(produce: Callable[[], Iterator], depth: int) -> Generator:
    """Iterate `produce()` in a background thread, up to `depth` items ahead.

    Parquet decoding releases the GIL, so the next batch decodes while the
    caller validates and uses the current one. Errors re-raise in the caller;
    closing the generator stops the thread.
    """
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in produce():
                if not put(item):
                    return
            put(_END)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(_Failure(exc))

    thread = threading.Thread(target=run, name="tickwise-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join()
