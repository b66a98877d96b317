"""The journal of a live session: every order event, fill and kill-switch event, durable at
each batch boundary, and its replay into positions.

A journal is a folder of segments, one per session start (`NNNNNN.orders.arrow`,
`.fills.arrow`, `.events.arrow`, `.commits.arrow`: Arrow IPC streams). A segment's streams
are made with their headers (the schema and the instrument table) durable before its first
commit. A commit writes one record batch to each of the first three (empty if nothing
happened), fsyncs them, and only then appends its marker to the commits stream and fsyncs
that: the k-th batch of each stream belongs to the k-th commit, and a batch counts only once
its marker is on disk. A process killed at any instant (SIGKILL included) leaves at worst a
torn last message, which replay passes over: it rebuilds exactly what was committed.
Segments are never appended to after they are closed (nor after a failure), so a torn file
is never written to again; a stream ends at its last commit (Arrow readers take the end of
the file for the end of the stream: there is no end marker to fail to write).

One session writes a folder at a time: a journal holds an exclusive lock on `LOCK` in the
folder (which names its pid) from before its segment is made until `close()`, and a second
session on the folder is refused in one line. The LOCK file stays (replay reads only
segments). A start that fails leaves nothing it made behind: no segment, no LOCK, no folder.

A commit that cannot be made durable (a full disk, a file-size limit, an I/O error, the
folder deleted under the session) loses the journal, never silently and never with a
traceback: `failure` says at once what failed, where and why, in one line; what the failed
commit began is cut off and nothing more is written; `add`, `event` and `commit` only count
in `dropped` what they could not journal, and `flush` and `close` return. The session reads
`failure` and decides. Everything committed before the failure replays exactly. (Only the
disk's errors are caught: a bug, in the writer thread too, is still a traceback.)

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

import errno
import fcntl
import json
import os
import queue
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from tickwise.engine.context import new_context
from tickwise.engine.errors import TickwiseError
from tickwise.engine.instruments import Instruments
from tickwise.engine.jit import cold_kernel
from tickwise.engine.portfolio import apply_fill_nb
from tickwise.engine.quantities import whole_lots_of
from tickwise.engine.schemas import (
    FILL_DTYPE,
    FILL_SCHEMA,
    ORDER_DTYPE,
    ORDER_SCHEMA,
    POSITION_DTYPE,
    STATUS_NEW,
    STATUS_REJECTED,
    impossible_fills,
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
_SCHEMAS = {"orders": ORDER_SCHEMA, "fills": FILL_SCHEMA, "events": EVENT_SCHEMA,
            "commits": COMMIT_SCHEMA}  # fmt: skip
_META_INSTRUMENTS = b"tickwise.instruments"
_LOCK = "LOCK"


class Journal:
    """Appends a session's records to a new segment of the journal folder `folder`, which it
    holds alone until `close()`."""

    def __init__(self, folder: Path, instruments: Instruments, *, background: bool = False,
                 group_ms: float = 5.0) -> None:  # fmt: skip
        if not group_ms >= 0:  # (before any file is made)
            raise TickwiseError(f"group_ms must be 0 or more, got {group_ms}")
        self.folder = Path(folder)
        self.segment = 0
        self.commits = 0
        self._orders: list[np.ndarray] = []
        self._fills: list[np.ndarray] = []
        self._events: list[tuple[int, str, str]] = []
        self._failure: str | None = None
        self._dropped = {"orders": 0, "fills": 0, "events": 0}
        self._dropped_lock = threading.Lock()
        self._bug: BaseException | None = None  # raised in the writer thread, re-raised here
        self._closed = False
        self._queue: queue.Queue | None = None
        self._group_s = group_ms / 1e3
        self._paths: dict[str, Path] = {}
        self._fds: dict[str, int] = {}
        self._lock_fd = -1
        self._made_dirs: list[Path] = []  # what this start made, removed if it fails
        self._made_files: list[Path] = []
        try:
            self._start(instruments, background)
        except OSError as exc:
            self._undo_start()
            raise TickwiseError(f"cannot start the journal in {self.folder}: {exc}") from None
        except BaseException:
            self._undo_start()
            raise

    def _start(self, instruments: Instruments, background: bool) -> None:
        """Take the folder, make the segment's four streams with their headers durable, then
        name this process in LOCK (last: a start that fails leaves an old LOCK as it was)."""
        self._made_dirs = [p for p in (self.folder, *self.folder.parents) if not p.exists()]
        self.folder.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        self.segment = 1 + max((_segment_number(p) for p in self.folder.glob("*.commits.arrow")),
                               default=0)  # fmt: skip
        _check_same_instruments(self.folder, self.segment - 1, instruments)
        for name in _SCHEMAS:
            path = self.folder / f"{self.segment:06d}.{name}.arrow"
            self._fds[name] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            self._paths[name] = path
            self._made_files.append(path)
        meta = {_META_INSTRUMENTS: instruments.to_json()}
        for name, schema in _SCHEMAS.items():
            try:
                _write_all(self._fds[name], schema.with_metadata(meta).serialize())
                os.fsync(self._fds[name])
            except OSError as exc:  # (named: an fd's error is not)
                raise OSError(exc.errno, exc.strerror, str(self._paths[name])) from None
        _fsync_folder(self.folder)
        pid = f"{os.getpid()}\n".encode()
        _write_all(self._lock_fd, pid)
        os.ftruncate(self._lock_fd, len(pid))
        if background:
            self._queue = queue.Queue()
            self._thread = threading.Thread(target=self._writer, name="tickwise-journal",
                                            daemon=True)  # fmt: skip
            self._thread.start()

    def _take_lock(self) -> None:
        """Lock `LOCK` (exclusive, without waiting), or refuse naming the session holding it."""
        path = self.folder / _LOCK
        while True:
            try:
                fd, made = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
                self._made_files.append(path)  # (removed if anything after fails)
            except FileExistsError:
                try:
                    fd, made = os.open(path, os.O_RDWR), False
                except FileNotFoundError:  # (removed meanwhile by a start that failed)
                    continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
                os.close(fd)
                if made:  # (another start locked it first: its lock now, never to be removed)
                    self._made_files.remove(path)
                raise TickwiseError(
                    f"journal folder {self.folder} is in use by another session "
                    f"(pid {holder or 'unknown'}); give each session its own --journal"
                ) from None
            except BaseException:
                os.close(fd)
                raise
            if _same_file(fd, path):
                break
            # A start that failed removed the LOCK we locked: it is no one's lock any more.
            os.close(fd)
            if made:
                self._made_files.remove(path)
        self._lock_fd = fd

    def _undo_start(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        # LOCK too, while still locked: a start that opened it meanwhile sees it gone and
        # makes its own (see `_take_lock`).
        for path in self._made_files:
            with suppress(OSError):
                path.unlink()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
        for folder in self._made_dirs:  # the deepest first
            try:
                folder.rmdir()
            except OSError:  # (not empty: someone else's now)
                break

    @property
    def failure(self) -> str | None:
        """Why the journal is lost (what failed, which file, the OS error), or None."""
        return self._failure

    @property
    def dropped(self) -> dict[str, int]:
        """Rows not made durable since the journal was lost: orders, fills, events."""
        with self._dropped_lock:
            return dict(self._dropped)

    def add(self, orders: np.ndarray, fills: np.ndarray) -> None:
        """Queue a batch's order events and fills for the next commit."""
        if self._failure is not None:
            self._drop(len(orders), len(fills), 0)
            return
        if len(orders):
            self._orders.append(orders)
        if len(fills):
            self._fills.append(fills)

    def event(self, ts: int, what: str, detail: dict[str, Any]) -> None:
        """Queue a kill-switch, control or feed event for the next commit."""
        if self._failure is not None:
            self._drop(0, 0, 1)
            return
        self._events.append((int(ts), what, json.dumps(detail, sort_keys=True, default=str)))

    @property
    def pending(self) -> bool:
        """Whether records are queued for the next commit."""
        return bool(self._orders or self._fills or self._events)

    def commit(self) -> None:
        """Make everything queued durable (one fsync per stream), then mark it committed; in
        the background, hand it to the writer thread (durable shortly, in order). A journal
        lost (`failure`) writes nothing: what was queued is counted in `dropped`."""
        self._raise_bug()
        work = (self._orders, self._fills, self._events)
        self._orders, self._fills, self._events = [], [], []
        if self._failure is not None:
            self._drop(*_rows(*work))
        elif self._queue is None:
            self._commit(*work)
        else:
            self._queue.put(work)

    def flush(self) -> None:
        """Wait until every commit made so far is durable (or, the journal lost, dropped)."""
        if self._queue is not None:
            self._queue.join()
        self._raise_bug()

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
                if work:
                    self._write_group(work)
            except BaseException as exc:  # a bug, not the disk: raised in the session's thread
                self._bug = exc
            finally:
                for _ in taken:
                    self._queue.task_done()

    def _write_group(self, work: list[tuple[list, list, list]]) -> None:
        orders, fills, events = ([r for w in work for r in w[k]] for k in range(3))
        if self._failure is None and self._bug is None:
            self._commit(orders, fills, events)
        else:  # (after a failure nothing is written)
            self._drop(*_rows(orders, fills, events))

    def _raise_bug(self) -> None:
        if self._bug is not None:
            raise self._bug

    def _commit(self, orders_: list[np.ndarray], fills_: list[np.ndarray],
                events_: list[tuple[int, str, str]]) -> None:  # fmt: skip
        orders = np.concatenate([np.empty(0, ORDER_DTYPE), *orders_])
        fills = np.concatenate([np.empty(0, FILL_DTYPE), *fills_])
        events = pa.RecordBatch.from_arrays(
            [pa.array([e[k] for e in events_], type=f.type)
             for k, f in enumerate(EVENT_SCHEMA)], schema=EVENT_SCHEMA,
        )  # fmt: skip
        batches = {"orders": record_batch(orders, ORDER_SCHEMA),
                   "fills": record_batch(fills, FILL_SCHEMA), "events": events}  # fmt: skip
        rows = (len(orders), len(fills), len(events_))
        for name, batch in batches.items():
            if not self._append(name, batch.serialize(), rows):
                return
        marker = {"commit": [self.commits], "wall_ns": [time.time_ns()], "orders": [rows[0]],
                  "fills": [rows[1]], "events": [rows[2]]}  # fmt: skip
        marker_batch = pa.RecordBatch.from_pydict(marker, schema=COMMIT_SCHEMA)
        if self._append("commits", marker_batch.serialize(), rows):
            self.commits += 1

    def _append(self, name: str, data: pa.Buffer, rows: tuple[int, int, int]) -> bool:
        """Append `data` to stream `name` and make it durable; if the disk refuses, cut off
        what was written (a marker not known durable must not count on replay either), lose
        the journal with the commit's `rows` dropped, and say False."""
        fd = self._fds[name]
        start = os.lseek(fd, 0, os.SEEK_CUR)
        try:
            _write_all(fd, data)
            os.fsync(fd)
            if os.fstat(fd).st_nlink == 0:  # written, but to a file no longer in any folder
                raise FileNotFoundError(errno.ENOENT, "deleted while the session ran (its "
                                        "folder removed?)")  # fmt: skip
        except OSError as exc:
            with suppress(OSError):
                os.ftruncate(fd, start)
            self._drop(*rows)
            self._failure = (
                f"the journal lost commit {self.commits} of segment {self.segment}: "
                f"{self._paths[name]}: {exc}"
            )
            return False
        return True

    def _drop(self, orders: int, fills: int, events: int) -> None:
        with self._dropped_lock:
            self._dropped["orders"] += orders
            self._dropped["fills"] += fills
            self._dropped["events"] += events

    def close(self, commit: bool = True) -> None:
        """Commit what is queued (unless told not to), wait for the writer, close the segment
        and give the folder up. A journal lost returns all the same (read `failure`)."""
        if self._closed:
            return
        self._closed = True
        try:
            if commit and self.pending:
                self.commit()
        finally:
            if self._queue is not None:
                self._queue.put(None)
                self._thread.join()
                self._queue = None
            for fd in self._fds.values():
                os.close(fd)
            os.close(self._lock_fd)
        if commit:
            self._raise_bug()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(commit=exc_type is None)


def _rows(orders: list[np.ndarray], fills: list[np.ndarray], events: list) -> tuple[int, ...]:
    return sum(map(len, orders)), sum(map(len, fills)), len(events)


def _write_all(fd: int, data: pa.Buffer | bytes) -> None:
    view = memoryview(data)
    while view:  # (a write cut short by a full disk or a size limit: the rest raises)
        view = view[os.write(fd, view) :]


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def _check_same_instruments(folder: Path, last: int, instruments: Instruments) -> None:
    """A journal folder holds sessions of one instrument table: the positions it replays are
    booked against it. A session trading another is refused before it writes anything."""
    if last < 1:
        return
    _, meta = _read_stream(folder / f"{last:06d}.orders.arrow", 0)
    if not meta or _META_INSTRUMENTS not in meta:
        return  # (damaged: replay says so)
    held = Instruments.from_json(meta[_META_INSTRUMENTS], str(folder))
    if held != instruments:
        raise TickwiseError(
            f"journal folder {folder} holds sessions of instruments {held.symbols()}; this "
            f"session trades {instruments.symbols()}: give it its own --journal"
        )


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
class _Committed:
    """The committed batches of every segment of a journal, stream by stream, in order."""

    batches: dict[str, list[pa.RecordBatch]]
    instruments_json: bytes | None
    segments: int
    commits: int


def _read_committed(folder: Path) -> _Committed:
    if not folder.is_dir():
        raise TickwiseError(f"{folder}: no such journal folder")
    segments = sorted(folder.glob("*.commits.arrow"), key=_segment_number)
    if not segments:
        raise TickwiseError(f"{folder}: not a tickwise journal (no *.commits.arrow segment)")
    out = _Committed({name: [] for name in _STREAMS}, None, len(segments), 0)
    for marker_path in segments:
        prefix = marker_path.name.removesuffix(".commits.arrow")
        markers, _ = _read_stream(marker_path, 1 << 62)
        done = sum(b.num_rows for b in markers)
        out.commits += done
        for name in _STREAMS:
            batches, meta = _read_stream(folder / f"{prefix}.{name}.arrow", done)
            if len(batches) < done:
                raise TickwiseError(
                    f"{folder / f'{prefix}.{name}.arrow'}: {len(batches)} batches for "
                    f"{done} commits; the journal is damaged"
                )
            out.batches[name] += batches
            if meta and _META_INSTRUMENTS in meta:
                if out.instruments_json is None:
                    out.instruments_json = meta[_META_INSTRUMENTS]
                elif meta[_META_INSTRUMENTS] != out.instruments_json:
                    raise TickwiseError(
                        f"{folder}: segment {prefix} was written for other instruments than "
                        "the segments before it; a journal folder holds one session's "
                        "instruments (give each session its own --journal)"
                    )
    return out


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
    committed = _read_committed(folder)
    if committed.instruments_json is None:
        raise TickwiseError(f"{folder}: the journal carries no instrument table")
    instruments = Instruments.from_json(committed.instruments_json, str(folder))
    parts = committed.batches
    orders = [_records(b, ORDER_DTYPE) for b in parts["orders"]]
    fill_rows = np.concatenate([np.empty(0, FILL_DTYPE),
                                *(_records(b, FILL_DTYPE) for b in parts["fills"])])  # fmt: skip
    lots = _check_fills(fill_rows, instruments, folder)
    ctx = new_context(instruments)
    _book_fills(ctx, fill_rows["instrument"].astype(np.int64), fill_rows["side"].astype(np.int64),
                lots, fill_rows["price"], fill_rows["fee"])  # fmt: skip
    return Replayed(
        instruments=instruments,
        orders=np.concatenate([np.empty(0, ORDER_DTYPE), *orders]),
        fills=fill_rows,
        events=[row for b in parts["events"] for row in b.to_pylist()],
        positions=ctx.portfolio.copy(),
        segments=committed.segments,
        commits=committed.commits,
    )


def journal_events(folder: Path) -> list[dict[str, Any]]:
    """The committed events of the journal in `folder`, every segment in order, each as
    {"ts": ns, "what": ..., "detail": {...}} (what `tickwise journal events` prints)."""
    batches = _read_committed(Path(folder)).batches["events"]
    return [{"ts": row["ts"], "what": row["what"], "detail": json.loads(row["detail"])}
            for b in batches for row in b.to_pylist()]  # fmt: skip


def _check_fills(fills: np.ndarray, instruments: Instruments, folder: Path) -> np.ndarray:
    """Only fills the engine could have made are booked: anything else is damage, named.
    Returns each fill's quantity in whole lots."""
    known = instruments.known_mask()
    bad = impossible_fills(fills, known)
    lot = instruments.lot_sizes()
    at = np.minimum(fills["instrument"].astype(np.int64), max(lot.size - 1, 0))
    lots = whole_lots_of(fills["qty"], lot[at] if lot.size else np.full(len(fills), np.nan))
    bad |= lots < 1  # (also a quantity that is no whole number of its instrument's lots)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        f = fills[k]
        raise TickwiseError(
            f"{folder}: committed fill {k} (order {int(f['order_id'])}: instrument "
            f"{int(f['instrument'])}, side {int(f['side'])}, qty {float(f['qty'])}, price "
            f"{float(f['price'])}, fee {float(f['fee'])}) is not one the engine makes; "
            "the journal is damaged"
        )
    return lots


def _records(batch: pa.RecordBatch, dtype: np.dtype) -> np.ndarray:
    out = np.empty(batch.num_rows, dtype=dtype)
    for name in dtype.names:
        out[name] = batch.column(name).to_numpy()
    return out


@cold_kernel
def _book_fills(ctx, instrument, side, lots, price, fee):
    for k in range(instrument.size):
        apply_fill_nb(ctx, instrument[k], side[k], lots[k], price[k], fee[k])
