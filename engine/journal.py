"""The journal of a live session: every order event, fill and kill-switch event, durable at
each batch boundary, and its replay into positions.

A journal is a folder of segments, one per session start (`NNNNNN.orders.arrow`,
`.fills.arrow`, `.events.arrow`, `.commits.arrow`: Arrow IPC streams). A commit
writes one record batch to each of the first three (empty if nothing
happened), flushes and fsyncs them, and only then appends its marker to the
commits stream and fsyncs that: the k-th batch of each stream belongs to the
k-th commit, and a batch counts only once its marker is on disk. A process
killed at any instant (SIGKILL included) leaves at worst a torn last message,
which replay passes over: it rebuilds exactly what was committed. Segments
are never appended to after they are closed, so a torn file is never
written to again.

A live session commits in the background (`background=True`): `commit()`
hands what is queued to a writer thread and returns, so the fsyncs (four
per commit, ~0.2 ms each on this machine's disk) never delay the next
market batch or an exchange's reply. The writer makes them durable in
order, grouping those that come within `group_ms` of the last into one
(what a busy session commits per batch would otherwise keep the disk and a
CPU busy with fsyncs): a batch's records are durable at most `group_ms`
plus one commit's fsyncs after it. `flush()` waits for them all.

Replay books the fills through the engine's own portfolio kernel, so the
positions it rebuilds are the session's to the last bit.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa

from tickwise.engine.jit import cold_kernel

from .context import new_context
from .errors import TickwiseError
from .instruments import Instruments
from .portfolio import apply_fill_nb
from .schemas import (
    FILL_DTYPE,
    FILL_SCHEMA,
    ORDER_DTYPE,
    ORDER_SCHEMA,
    POSITION_DTYPE,
    STATUS_NEW,
    STATUS_REJECTED,
    record_batch,
)

EVENT_SCHEMA = pa.schema(
    [
        pa.field("ts", pa.int64(), nullable=False),  # event time (ns) of what happened
        pa.field("what", pa.string(), nullable=False),  # e.g. "halt", "resume", "malformed"
        pa.field("detail", pa.string(), nullable=False),  # JSON
    ]
)
COMMIT_SCHEMA = pa.schema(
    [
        pa.field("commit", pa.int64(), nullable=False),  # 0, 1, 2 ... within the segment
        pa.field("wall_ns", pa.int64(), nullable=False),  # when it became durable
        pa.field("orders", pa.int64(), nullable=False),  # rows in this commit
        pa.field("fills", pa.int64(), nullable=False),
        pa.field("events", pa.int64(), nullable=False),
    ]
)
_STREAMS = ("orders", "fills", "events")
_META_INSTRUMENTS = b"tickwise.instruments"


class Journal:
    """Appends a session's records to a new segment of the journal folder `folder`."""

    def __init__(self, folder: Path, instruments: Instruments, *, background: bool = False,
                 group_ms: float = 5.0) -> None:  # fmt: skip
        if not group_ms >= 0:  # (before any file is made)
            raise TickwiseError(f"group_ms must be 0 or more, got {group_ms}")
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TickwiseError(f"cannot create the journal folder {self.folder}: {exc}") from None
        self.segment = 1 + max((_segment_number(p) for p in self.folder.glob("*.commits.arrow")),
                               default=0)  # fmt: skip
        meta = {_META_INSTRUMENTS: instruments.to_json()}
        self._files: dict[str, IO[bytes]] = {}
        self._writers: dict[str, pa.ipc.RecordBatchStreamWriter] = {}
        self._schemas: dict[str, pa.Schema] = {}
        for name, schema in (("orders", ORDER_SCHEMA), ("fills", FILL_SCHEMA),
                             ("events", EVENT_SCHEMA), ("commits", COMMIT_SCHEMA)):  # fmt: skip
            path = self.folder / f"{self.segment:06d}.{name}.arrow"
            f = open(path, "xb")  # noqa: SIM115 (closed in close())
            self._files[name] = f
            self._schemas[name] = schema.with_metadata(meta)
            self._writers[name] = pa.ipc.new_stream(f, self._schemas[name])
        _fsync_folder(self.folder)
        self.commits = 0
        self._orders: list[np.ndarray] = []
        self._fills: list[np.ndarray] = []
        self._events: list[tuple[int, str, str]] = []
        self._failure: BaseException | None = None
        self._queue: queue.Queue | None = None
        self._group_s = group_ms / 1e3
        if background:
            self._queue = queue.Queue()
            self._thread = threading.Thread(target=self._writer, name="tickwise-journal",
                                            daemon=True)  # fmt: skip
            self._thread.start()

    def add(self, orders: np.ndarray, fills: np.ndarray) -> None:
        """Queue a batch's order events and fills for the next commit."""
        if len(orders):
            self._orders.append(orders)
        if len(fills):
            self._fills.append(fills)

    def event(self, ts: int, what: str, detail: dict[str, Any]) -> None:
        """Queue a kill-switch, control or feed event for the next commit."""
        self._events.append((int(ts), what, json.dumps(detail, sort_keys=True, default=str)))

    @property
    def pending(self) -> bool:
        """Whether records are queued for the next commit."""
        return bool(self._orders or self._fills or self._events)

    def commit(self) -> None:
        """Make everything queued durable (one fsync per stream), then mark it committed; in
        the background, hand it to the writer thread (durable shortly, in order)."""
        self._raise_failure()
        work = (self._orders, self._fills, self._events)
        self._orders, self._fills, self._events = [], [], []
        if self._queue is None:
            self._commit(*work)
        else:
            self._queue.put(work)

    def flush(self) -> None:
        """Wait until every commit made so far is durable."""
        if self._queue is not None:
            self._queue.join()
        self._raise_failure()

    def _writer(self) -> None:
        """Commits in order; those queued while one was being written go together as one
        (what a session commits per turn can come faster than four fsyncs)."""
        assert self._queue is not None
        done = False
        last = 0.0
        while not done:
            taken = [self._queue.get()]
            wait = last + self._group_s - time.monotonic()
            if wait > 0 and taken[0] is not None:
                time.sleep(wait)  # (what comes meanwhile joins this commit)
            last = time.monotonic()
            while True:
                try:
                    taken.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            done = taken[-1] is None
            work = [w for w in taken if w is not None]
            try:
                if work and self._failure is None:  # (after a failure nothing is written)
                    self._commit(
                        [o for w in work for o in w[0]],
                        [f for w in work for f in w[1]],
                        [e for w in work for e in w[2]],
                    )
            except BaseException as exc:  # handed to the session at its next commit
                self._failure = exc
            finally:
                for _ in taken:
                    self._queue.task_done()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise TickwiseError(
                f"the journal in {self.folder} could not be written: {self._failure}"
            ) from self._failure

    def _commit(self, orders_: list[np.ndarray], fills_: list[np.ndarray],
                events_: list[tuple[int, str, str]]) -> None:  # fmt: skip
        orders = np.concatenate([np.empty(0, ORDER_DTYPE), *orders_])
        fills = np.concatenate([np.empty(0, FILL_DTYPE), *fills_])
        events = pa.RecordBatch.from_arrays(
            [pa.array([e[k] for e in events_], type=f.type)
             for k, f in enumerate(EVENT_SCHEMA)], schema=EVENT_SCHEMA,
        )  # fmt: skip
        self._write("orders", record_batch(orders, ORDER_SCHEMA))
        self._write("fills", record_batch(fills, FILL_SCHEMA))
        self._write("events", events)
        marker = {"commit": [self.commits], "wall_ns": [time.time_ns()], "orders": [len(orders)],
                  "fills": [len(fills)], "events": [len(events_)]}  # fmt: skip
        self._write("commits", pa.RecordBatch.from_pydict(marker, schema=COMMIT_SCHEMA))
        self.commits += 1

    def _write(self, name: str, batch: pa.RecordBatch) -> None:
        writer, f = self._writers[name], self._files[name]
        writer.write_batch(batch.replace_schema_metadata(self._schemas[name].metadata))
        f.flush()
        os.fsync(f.fileno())

    def close(self, commit: bool = True) -> None:
        """Commit what is queued (unless told not to), wait for the writer, close the segment;
        a commit that could not be written is raised (when committing)."""
        try:
            if commit and self.pending:
                self.commit()
        finally:
            if self._queue is not None:
                self._queue.put(None)
                self._thread.join()
                self._queue = None
            for name in self._writers:
                self._writers[name].close()
                self._files[name].close()
        if commit:
            self._raise_failure()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(commit=exc_type is None)


def _segment_number(path: Path) -> int:
    try:
        return int(path.name.split(".", 1)[0])
    except ValueError:
        return 0


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)  # the new files' names are durable too
    finally:
        os.close(fd)


def _read_stream(path: Path, limit: int) -> tuple[list[pa.RecordBatch], dict | None]:
    """Up to `limit` whole batches of an IPC stream; a torn tail ends it."""
    batches: list[pa.RecordBatch] = []
    try:
        reader = pa.ipc.open_stream(path)
    except (pa.ArrowInvalid, OSError):
        return batches, None
    meta = reader.schema.metadata
    while len(batches) < limit:
        try:
            batches.append(reader.read_next_batch())
        except StopIteration:
            break
        except (pa.ArrowInvalid, OSError):  # a message cut short by a crash
            break
    return batches, meta


@dataclass
class Replayed:
    """What a journal holds, committed: records in order and the positions they build."""

    instruments: Instruments
    orders: np.ndarray
    fills: np.ndarray
    events: list[dict[str, Any]]
    positions: np.ndarray  # POSITION_DTYPE, indexed by instrument id
    segments: int
    commits: int

    def summary(self) -> dict[str, Any]:
        """Counts and the positions per symbol (what `tickwise journal replay` prints)."""
        status = self.orders["status"]
        return {
            "segments": self.segments,
            "commits": self.commits,
            "orders": int(np.count_nonzero(status == STATUS_NEW)),
            "rejects": int(np.count_nonzero(status == STATUS_REJECTED)),
            "fills": len(self.fills),
            "events": len(self.events),
            "positions": {
                inst.symbol: _position(self.positions[inst.id])
                for inst in self.instruments
                if self.positions[inst.id]["traded"] != 0.0
            },
        }


def _position(row: np.void) -> dict[str, float]:
    return {name: float(row[name]) for name in POSITION_DTYPE.names}


def replay_journal(folder: Path) -> Replayed:
    """Read every committed record of the journal in `folder` and rebuild the positions."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TickwiseError(f"{folder}: no such journal folder")
    segments = sorted(folder.glob("*.commits.arrow"), key=_segment_number)
    if not segments:
        raise TickwiseError(f"{folder}: not a tickwise journal (no *.commits.arrow segment)")
    orders, fills, events = [], [], []
    instruments: Instruments | None = None
    commits = 0
    for marker_path in segments:
        prefix = marker_path.name.removesuffix(".commits.arrow")
        markers, _ = _read_stream(marker_path, 1 << 62)
        done = sum(b.num_rows for b in markers)
        commits += done
        parts = {}
        for name in _STREAMS:
            batches, meta = _read_stream(folder / f"{prefix}.{name}.arrow", done)
            if len(batches) < done:
                raise TickwiseError(
                    f"{folder / f'{prefix}.{name}.arrow'}: {len(batches)} batches for "
                    f"{done} commits; the journal is damaged"
                )
            parts[name] = batches
            if meta and _META_INSTRUMENTS in meta and instruments is None:
                instruments = Instruments.from_json(meta[_META_INSTRUMENTS], str(folder))
        orders += [_records(b, ORDER_DTYPE) for b in parts["orders"]]
        fills += [_records(b, FILL_DTYPE) for b in parts["fills"]]
        events += [row for b in parts["events"] for row in b.to_pylist()]
    if instruments is None:
        raise TickwiseError(f"{folder}: the journal carries no instrument table")
    fill_rows = np.concatenate([np.empty(0, FILL_DTYPE), *fills])
    _check_fills(fill_rows, instruments, folder)
    ctx = new_context(instruments)
    _book_fills(ctx, fill_rows["instrument"].astype(np.int64), fill_rows["side"].astype(np.int64),
                fill_rows["qty"], fill_rows["price"], fill_rows["fee"])  # fmt: skip
    return Replayed(
        instruments=instruments,
        orders=np.concatenate([np.empty(0, ORDER_DTYPE), *orders]),
        fills=fill_rows,
        events=events,
        positions=ctx.portfolio.copy(),
        segments=len(segments),
        commits=commits,
    )


def _check_fills(fills: np.ndarray, instruments: Instruments, folder: Path) -> None:
    """Only fills the engine could have made are booked: anything else is damage, named."""
    known = instruments.known_mask()
    inst = fills["instrument"].astype(np.int64)
    good = (
        (fills["qty"] > 0) & np.isfinite(fills["qty"]) & np.isfinite(fills["price"])
        & np.isfinite(fills["fee"]) & np.isin(fills["side"], (-1, 1))
        & (inst < known.size) & known[np.minimum(inst, max(known.size - 1, 0))]
    )  # fmt: skip
    if not good.all():
        k = int(np.flatnonzero(~good)[0])
        f = fills[k]
        raise TickwiseError(
            f"{folder}: committed fill {k} (order {int(f['order_id'])}: instrument "
            f"{int(f['instrument'])}, side {int(f['side'])}, qty {float(f['qty'])}, price "
            f"{float(f['price'])}, fee {float(f['fee'])}) is not one the engine makes; "
            "the journal is damaged"
        )


def _records(batch: pa.RecordBatch, dtype: np.dtype) -> np.ndarray:
    out = np.empty(batch.num_rows, dtype=dtype)
    for name in dtype.names:
        out[name] = batch.column(name).to_numpy()
    return out


@cold_kernel
def _book_fills(ctx, instrument, side, qty, price, fee):
    for k in range(instrument.size):
        apply_fill_nb(ctx, instrument[k], side[k], qty[k], price[k], fee[k])
