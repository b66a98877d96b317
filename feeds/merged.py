"""Several histories replayed as one: quotes and trades (or any kinds) in one global order.

A backtest that sees only quotes never sees the prints that move a resting
order up its queue; one that sees quotes and trades side by side in separate
runs sees neither in the right order. Here each data set streams as a
`History` does (validated, in flat memory) and the streams are merged by the
global order extended across data sets: (ts_event, instrument, data set, seq),
the data sets in the order given (in a folder of kinds: quotes, trades, book).
At one ts_event, an instrument's events of the first data set come before those
of the next, so an L2 update (its deltas share a ts_event) is never cut by a
quote or a print. Python works out the order of a whole chunk with numpy and
hands it to the compiled loop (`Session.on_merged`), which dispatches each
event to its kind's code: no Python runs per event.

One data set per kind (a kind's files go in one history: a folder of
partitions), and no bars beside finer kinds: a bar is stamped at its close but
summarises the minute before it, so a resting order would fill at a low the
market touched before the order existed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tickwise.engine.errors import DataError
from tickwise.engine.instruments import Instruments
from tickwise.engine.schemas import KIND_CODES, KINDS

from .history import DEFAULT_BATCH_ROWS, History, HistoryFile, columns, kind_of


@dataclass(frozen=True)
class MergedBatch:
    """Events of several kinds in their global order: event m is row `rows[m]` of
    `parts[kind]` for the kind whose code (schemas.KIND_CODES) is `kinds[m]`."""

    parts: dict[str, pa.RecordBatch]
    kinds: np.ndarray  # uint8
    rows: np.ndarray  # int64
    ts_event: np.ndarray  # int64, each event's time (for the replay's first and last)

    @property
    def num_rows(self) -> int:
        return int(self.kinds.size)


class MergedHistory:
    """Histories of one or more kinds, streamed together in one global order.

    Their instrument tables must agree where they overlap (the same id is the
    same symbol, tick and lot); the run knows the union of them.
    """

    def __init__(self, histories: Sequence[History]) -> None:
        if len(histories) < 2:
            raise ValueError("a merged history needs at least two data sets")
        self.histories = tuple(histories)
        self.path = Path(" + ".join(str(h.path) for h in histories))  # (for messages)
        self.kinds: tuple[str, ...] = tuple(dict.fromkeys(h.kind for h in histories))
        self.kind = " + ".join(self.kinds)
        self.instruments = _union(histories)
        self.files: list[HistoryFile] = [f for h in histories for f in h.files]
        self.rows = sum(h.rows for h in histories)

    @property
    def ts_range(self) -> tuple[int | None, int | None]:
        """First and last ts_event (ns) over every data set, from the files' statistics."""
        firsts = [h.ts_range[0] for h in self.histories if h.ts_range[0] is not None]
        lasts = [h.ts_range[1] for h in self.histories if h.ts_range[1] is not None]
        return (min(firsts) if firsts else None, max(lasts) if lasts else None)

    def batches(self, batch_size: int = DEFAULT_BATCH_ROWS, start: int | None = None,
                end: int | None = None) -> Iterator[MergedBatch]:  # fmt: skip
        """Merged batches of at most `batch_size` events, of the rows with
        `start` <= ts_event < `end` (ns; None: unbounded), each data set validated as it
        streams. The events, and so a replay's results, do not depend on `batch_size`."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        streams = [_Cursor(h.batches(batch_size, start, end), h.kind, n)
                   for n, h in enumerate(self.histories)]  # fmt: skip
        try:
            yield from _merge(streams, batch_size)
        finally:
            for stream in streams:
                stream.close()


def open_data(paths: str | Path | Sequence[str | Path]) -> History | MergedHistory:
    """The data of a run: one history, or several merged (paths given, or a folder whose
    entries hold different kinds, e.g. quotes.parquet beside a trades/ partition folder)."""
    if isinstance(paths, str | Path):
        paths = [paths]
    if not paths:
        raise DataError("no data given")
    histories: list[History] = []
    for path in paths:
        histories.extend(_open_path(Path(path)))
    if len(histories) == 1:
        return histories[0]
    _check_sets(histories)
    return MergedHistory(histories)


def _check_sets(histories: Sequence[History]) -> None:
    """Data sets that can run together: each file once, one data set per kind, no bars
    beside finer kinds."""
    seen: dict[Path, int] = {}
    for n, h in enumerate(histories):
        for f in h.files:
            first = seen.setdefault(f.path.resolve(), n)
            if first != n:
                raise DataError(
                    f"{f.path}: given twice (in {histories[first].path} and in {h.path}); "
                    "give each file once"
                )
    kinds: dict[str, Path] = {}
    for h in histories:
        if h.kind in kinds:
            raise DataError(
                f"{kinds[h.kind]} and {h.path} both hold {h.kind}: give one data set per kind "
                "(a folder of partitions holds many files of one kind)"
            )
        kinds[h.kind] = h.path
    if "bars" in kinds and len(kinds) > 1:
        raise DataError(
            f"{kinds['bars']}: bars cannot run beside {', '.join(k for k in kinds if k != 'bars')}"
            ": a bar summarises the minute before its time, so resting orders would fill at "
            "prices the market touched before they existed; replay bars alone"
        )


def _open_path(path: Path) -> list[History]:
    """One history, or the histories of a folder's entries when they differ in kind (in
    the order of KINDS, then of names)."""
    if not path.is_dir():
        return [History(path)]
    entries = [p for p in sorted(path.iterdir()) if not p.name.startswith(".")]
    kinds = {p: _kinds_in(p) for p in entries}
    found = set().union(*kinds.values()) if kinds else set()
    if len(found) < 2:
        return [History(path)]
    for entry, held in kinds.items():
        if len(held) > 1:
            raise DataError(
                f"{entry}: holds {' and '.join(sorted(held))}; in a folder of kinds each "
                "entry must hold one kind"
            )
    ordered = sorted((p for p in entries if kinds[p]),
                     key=lambda p: (KINDS.index(next(iter(kinds[p]))), p.name))  # fmt: skip
    return [History(p) for p in ordered]


def _kinds_in(path: Path) -> set[str]:
    """The kinds the Parquet files under `path` say they hold (read from their footers)."""
    files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
    found = set()
    for f in files:
        if f.suffix != ".parquet" or any(
            part.startswith(".") for part in f.relative_to(path.parent).parts
        ):
            continue
        try:
            meta = pq.read_schema(f).metadata or {}
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{f}: not a readable Parquet file: {exc}") from None
        found.add(kind_of(f, meta))
    return found


def _union(histories: Sequence[History]) -> Instruments:
    """Every data set's instruments; an id or symbol that two tables describe differently
    is an error naming both."""
    seen: dict[int, tuple] = {}
    for h in histories:
        for inst in h.instruments:
            if inst.id in seen and seen[inst.id][0] != inst:
                other, where = seen[inst.id]
                raise DataError(
                    f"{h.path}: instrument {inst.id} is {inst} here and {other} in {where}; "
                    "data sets run together must agree on their instruments"
                )
            seen.setdefault(inst.id, (inst, h.path))
    try:
        return Instruments(inst for inst, _ in seen.values())
    except ValueError as exc:  # a symbol two ids share
        raise DataError(
            f"{', '.join(str(h.path) for h in histories)}: instrument tables disagree: {exc}"
        ) from None


class _Cursor:
    """One data set's stream of batches and the unread rows of the current one."""

    def __init__(self, batches: Iterator[pa.RecordBatch], kind: str, position: int) -> None:
        self._batches = batches
        self.kind = kind
        self.position = position
        self.batch: pa.RecordBatch | None = None
        self.pos = 0

    def fill(self) -> bool:
        """A current batch with unread rows; False when the data set is done."""
        while self.batch is None or self.pos >= self.batch.num_rows:
            batch = next(self._batches, None)
            if batch is None:
                return False
            self.batch, self.pos = batch, 0
            cols = columns(batch)
            self.ts = cols["ts_event"]
            self.inst = cols["instrument"].astype(np.int64)
            seq = cols.get("seq")
            self.seq = np.zeros(batch.num_rows, np.uint64) if seq is None else seq
        return True

    def last_key(self) -> tuple[int, int, int, int]:
        n = self.batch.num_rows - 1
        return int(self.ts[n]), int(self.inst[n]), self.position, int(self.seq[n])

    def count_upto(self, key: tuple[int, int, int, int]) -> int:
        """How many unread rows sort at or before `key` (the rows are in order)."""
        ts, inst, seq = self.ts[self.pos :], self.inst[self.pos :], self.seq[self.pos :]
        lo = int(np.searchsorted(ts, key[0], side="left"))
        hi = int(np.searchsorted(ts, key[0], side="right"))
        if hi == lo:
            return lo
        i, s = inst[lo:hi], seq[lo:hi]
        before = i < key[1]
        if self.position < key[2]:
            before |= i == key[1]
        elif self.position == key[2]:
            before |= (i == key[1]) & (s <= np.uint64(key[3]))
        return lo + int(np.count_nonzero(before))

    def take(self, n: int) -> pa.RecordBatch:
        out = self.batch.slice(self.pos, n)
        self.pos += n
        return out

    def close(self) -> None:
        close = getattr(self._batches, "close", None)
        if close is not None:
            close()


def _merge(streams: list[_Cursor], batch_size: int) -> Iterator[MergedBatch]:
    """Each step takes, from every data set, the rows up to the smallest last buffered key:
    no row still unread can sort before them. Their order comes from one lexsort."""
    active = list(streams)
    while True:
        active = [s for s in active if s.fill()]
        if not active:
            return
        horizon = min(s.last_key() for s in active)
        taken = [(s, s.take(s.count_upto(horizon))) for s in active]
        taken = [(s, piece) for s, piece in taken if piece.num_rows]
        yield from _ordered(taken, batch_size)


def _ordered(taken: list[tuple[_Cursor, pa.RecordBatch]], batch_size: int
             ) -> Iterator[MergedBatch]:  # fmt: skip
    """The pieces taken in one step, as batches of events in their global order."""
    by_kind: dict[str, list[pa.RecordBatch]] = {}
    kind, row, ts, inst, seq, position = [], [], [], [], [], []
    for stream, piece in taken:
        held = by_kind.setdefault(stream.kind, [])
        offset = sum(p.num_rows for p in held)
        held.append(piece)
        cols = columns(piece)
        n = piece.num_rows
        kind.append(np.full(n, KIND_CODES[stream.kind], np.uint8))
        row.append(np.arange(offset, offset + n, dtype=np.int64))
        ts.append(cols["ts_event"])
        inst.append(cols["instrument"])
        seq.append(cols["seq"] if "seq" in cols else np.zeros(n, np.uint64))
        position.append(np.full(n, stream.position, np.int64))
    parts = {k: v[0] if len(v) == 1 else pa.concat_batches(v) for k, v in by_kind.items()}
    ts_all = np.concatenate(ts)
    order = np.lexsort((np.concatenate(seq), np.concatenate(position), np.concatenate(inst),
                        ts_all))  # fmt: skip
    kinds, rows, ts_all = np.concatenate(kind)[order], np.concatenate(row)[order], ts_all[order]
    for first in range(0, order.size, batch_size):
        cut = slice(first, first + batch_size)
        yield MergedBatch(parts, kinds[cut], rows[cut], ts_all[cut])
