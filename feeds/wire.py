"""The wire: one record batch per ZeroMQ message, in two frames.

Frame 1, the header (little-endian, 40 bytes and one offset per column)::

    magic "TW" | version u8 | schema u8 | columns u16 | flags u16 | rows u32 | pad u32
    seq u64 | send_ts i64 (ns, the sender's clock) | body length u64 | offsets u64 x columns

Frame 2, the body: the column buffers back to back, each starting at its
offset (a multiple of 8), in the order of the schema's record dtype.
Two frames, not one per column: every extra frame adds about 8 µs to a round
trip on this hardware (DESIGN.md, "The wire"). A heartbeat is schema 0 with
no columns, no rows and an empty body; it carries the sequence number of the
last batch sent, so a receiver can tell a gap from a silence.

Decoding makes numpy views of the body and an Arrow RecordBatch over the same
memory: nothing is copied. Anything malformed raises `WireError` naming what
is wrong (its `reason` is one of `REASONS`, for counting), never another
exception and never a read outside the frames.
"""

from __future__ import annotations

import functools
import struct
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Final, NamedTuple

import numpy as np
import pyarrow as pa

from tickwise.engine.errors import TickwiseError
from tickwise.engine.schemas import FILL_DTYPE, MARKET_DTYPES, ORDER_DTYPE, arrow_schema

from .wire_kernels import gather_nb, order_body_nb

MAGIC: Final = b"TW"
VERSION: Final = 1
HEARTBEAT: Final = "heartbeat"
# Schema ids on the wire; 0 is the heartbeat. Never renumber: ids are the protocol.
SCHEMA_IDS: Final[dict[str, int]] = {
    HEARTBEAT: 0,
    "quotes": 1,
    "trades": 2,
    "bars": 3,
    "book": 4,
    "orders": 5,
    "fills": 6,
}
SCHEMA_NAMES: Final[dict[int, str]] = {v: k for k, v in SCHEMA_IDS.items()}
DTYPES: Final[dict[str, np.dtype]] = {**MARKET_DTYPES, "orders": ORDER_DTYPE, "fills": FILL_DTYPE}
MAX_ROWS: Final = 1 << 24  # a batch beyond 16 M rows is not a message but a mistake
# The largest frame a tickwise socket takes (ZMQ_MAXMSGSIZE): ZeroMQ disconnects a peer that
# sends more before it is held in memory. 64 MiB holds over a million quotes; a feed sends
# batches of thousands.
MAX_FRAME_BYTES: Final = 64 << 20
ALIGN: Final = 8

_FIXED: Final = struct.Struct("<2sBBHHIIQqQ")  # magic .. body length
_FIXED_SIZE: Final = _FIXED.size  # 40
REASONS: Final = ("frames", "header", "schema", "rows", "size")
# Header flags. An exchange's answer to one request of a client (the orders it accepted or
# refused, the cancels it received), as opposed to what it reports of its own accord.
FLAG_REPLY: Final = 1

_SCHEMAS: Final[dict[str, pa.Schema]] = {name: arrow_schema(dt) for name, dt in DTYPES.items()}
# Per schema: (column name, its dtype), in body order.
_FIELDS: Final[dict[str, tuple[tuple[str, np.dtype], ...]]] = {
    name: tuple((n, dt.fields[n][0]) for n in dt.names) for name, dt in DTYPES.items()
}
_PADDING: Final = bytes(ALIGN)
_OFFSETS: Final = {n: f"<{n}Q" for n in range(1, 32)}  # (a format string made once)
_ITEMSIZES: Final[dict[str, np.ndarray]] = {
    name: np.array([kind.itemsize for _, kind in fields], dtype=np.int64)
    for name, fields in _FIELDS.items()
}


class WireError(TickwiseError):
    """A message that is not a well-formed tickwise batch; `reason` says which check failed."""

    def __init__(self, reason: str, message: str) -> None:
        assert reason in REASONS
        super().__init__(message)
        self.reason = reason


def header_size(columns: int) -> int:
    """Length of the header frame of a message with this many columns."""
    return _FIXED_SIZE + 8 * columns


def encode(
    schema: str,
    columns: Mapping[str, np.ndarray] | pa.RecordBatch,
    seq: int,
    send_ts: int | None = None,
    flags: int = 0,
) -> tuple[bytes, np.ndarray]:
    """The two frames of one batch of `schema` rows (`columns` by name, or an Arrow batch of
    the same fields). `send_ts` defaults to now (ns since the epoch); `flags` (FLAG_*) say
    what the batch answers."""
    dtype = _dtype(schema)
    if isinstance(columns, pa.RecordBatch):
        columns = {n: columns.column(n).to_numpy(zero_copy_only=False) for n in dtype.names}
    missing = [n for n in dtype.names if n not in columns]
    if missing:
        raise TickwiseError(f"a {schema} batch needs columns {missing}")
    # The body is the columns' bytes joined, each padded to its alignment: one copy of each
    # column (a strided field of a record array included) and one join.
    parts: list[bytes] = []
    end = 0
    rows = len(columns[dtype.names[0]])
    if rows > MAX_ROWS:
        raise TickwiseError(f"a batch of {rows:,} rows is over the wire's {MAX_ROWS:,}")
    offsets, length = layout(schema, rows)
    for (name, kind), offset in zip(_FIELDS[schema], offsets, strict=True):
        array = columns[name]
        if type(array) is not np.ndarray or array.dtype != kind:
            array = np.asarray(array, dtype=kind)
        if array.ndim != 1 or len(array) != rows:
            raise TickwiseError(
                f"{schema} column {name!r} has {array.size} values where "
                f"{dtype.names[0]!r} has {rows}"
            )
        if offset > end:
            parts.append(_PADDING[: offset - end])
        data = array.tobytes()
        parts.append(data)
        end = offset + len(data)
    body = np.frombuffer(b"".join(parts), dtype=np.uint8)
    header = _header(SCHEMA_IDS[schema], len(offsets), rows, seq, send_ts, length, offsets, flags)
    return header, body


def encode_orders(
    rows: np.ndarray, seq: int, send_ts: int | None = None, flags: int = 0
) -> tuple[bytes, np.ndarray]:
    """The two frames of a batch of ORDER_DTYPE records: the same bytes as `encode("orders",
    ...)` of their columns, written by one compiled call (what a live session sends per
    batch, on its tick-to-order path)."""
    if rows.dtype != ORDER_DTYPE or rows.ndim != 1:
        raise TickwiseError(f"encode_orders takes ORDER_DTYPE records, got {rows.dtype}")
    if rows.size > MAX_ROWS:
        raise TickwiseError(f"a batch of {rows.size:,} rows is over the wire's {MAX_ROWS:,}")
    offsets, length = layout("orders", rows.size)
    body = np.zeros(length, dtype=np.uint8)
    order_body_nb(rows, body, np.asarray(offsets, dtype=np.int64))
    header = _header(SCHEMA_IDS["orders"], len(offsets), rows.size, seq, send_ts, length, offsets,
                     flags)  # fmt: skip
    return header, body


def answer(
    frames: Sequence[Any],
    seq: int,
    columns: Mapping[str, np.ndarray],
    flags: int = 0,
    send_ts: int | None = None,
) -> tuple[bytes, bytearray]:
    """An answer to a well-formed message (already decoded): its rows with `columns`
    replaced, under a new header; one copy of the body, nothing encoded again."""
    head = memoryview(getattr(frames[0], "buffer", frames[0])).cast("B")
    body = bytearray(getattr(frames[1], "buffer", frames[1]))
    _, _, schema_id, ncols, _, rows, _, _, _, length = _FIXED.unpack_from(head)
    offsets = struct.unpack_from(f"<{ncols}Q", head, _FIXED_SIZE)
    for (name, kind), offset in zip(_FIELDS[SCHEMA_NAMES[schema_id]], offsets, strict=True):
        if name in columns:
            np.ndarray((rows,), kind, body, offset)[:] = columns[name]
    return _header(schema_id, ncols, rows, seq, send_ts, length, offsets, flags), body


def heartbeat(seq: int, send_ts: int | None = None) -> tuple[bytes, bytes]:
    """A heartbeat's two frames; `seq` is that of the last batch sent (0: none yet)."""
    return _header(SCHEMA_IDS[HEARTBEAT], 0, 0, seq, send_ts, 0, []), b""


def _header(
    schema_id: int, columns: int, rows: int, seq: int, send_ts: int | None, length: int,
    offsets: Sequence[int], flags: int = 0,
) -> bytes:  # fmt: skip
    stamp = time.time_ns() if send_ts is None else send_ts
    try:
        fixed = _FIXED.pack(MAGIC, VERSION, schema_id, columns, flags, rows, 0, seq, stamp, length)
    except struct.error:
        raise TickwiseError(
            f"a header needs seq in 0..2**64-1, send_ts in -2**63..2**63-1 and flags in "
            f"0..65535, got seq {seq}, send_ts {stamp}, flags {flags}"
        ) from None
    return fixed + struct.pack(f"<{columns}Q", *offsets)


@dataclass(frozen=True)
class Message:
    """A decoded message: its header's fields and, for a batch, its columns as read-only
    numpy views of the body frame (which they keep alive)."""

    schema: str
    seq: int
    send_ts: int
    rows: int
    columns: dict[str, np.ndarray]
    flags: int = 0

    @property
    def is_heartbeat(self) -> bool:
        return self.schema == HEARTBEAT

    @cached_property
    def batch(self) -> pa.RecordBatch:
        """The same columns as an Arrow RecordBatch over the same memory (no copy)."""
        if self.is_heartbeat:
            raise TickwiseError("a heartbeat carries no batch")
        schema = _SCHEMAS[self.schema]
        arrays = [
            pa.Array.from_buffers(field.type, self.rows, [None, pa.py_buffer(self.columns[n])])
            for n, field in zip(schema.names, schema, strict=True)
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=schema)


class Packet(NamedTuple):
    """A message that passed every check, its columns not yet viewed: its header's fields and
    its body. A receiver taking many messages at once joins their columns in one pass
    (`gather`) rather than viewing each message's first. (A tuple: made per message.)"""

    schema: str
    seq: int
    send_ts: int
    rows: int
    flags: int
    offsets: tuple[int, ...]
    body: Any  # the body frame: bytes, a memoryview or a zmq Frame's buffer
    canonical: bool  # laid out as tickwise lays out a batch (`layout`)

    @property
    def is_heartbeat(self) -> bool:
        return self.schema == HEARTBEAT

    def message(self) -> Message:
        """The same message with its columns as read-only views of the body (no copy)."""
        if self.is_heartbeat:
            return Message(HEARTBEAT, self.seq, self.send_ts, 0, {}, self.flags)
        body = np.frombuffer(self.body, dtype=np.uint8)
        writable = body.flags.writeable  # (views of a read-only frame are read-only already)
        columns = {}
        rows = self.rows
        for (field, kind), offset in zip(_FIELDS[self.schema], self.offsets, strict=True):
            view = body[offset : offset + rows * kind.itemsize].view(kind)
            if writable:
                view.flags.writeable = False
            columns[field] = view
        return Message(self.schema, self.seq, self.send_ts, rows, columns, self.flags)


def decode(frames: Sequence[Any]) -> Message:
    """Check and decode a received message (its frames as bytes, memoryviews or zmq Frames)."""
    return check(frames).message()


def check(frames: Sequence[Any]) -> Packet:
    """Check a received message (its frames as bytes, memoryviews or zmq Frames) without
    viewing its columns: a WireError naming what is wrong, or its Packet."""
    if len(frames) != 2:
        raise WireError("frames", f"a message has 2 frames (header, body), this one {len(frames)}")
    head, body = frames
    if type(head) is not bytes or type(body) is not bytes:  # (what a socket gives: as it is)
        try:
            head, body = (memoryview(getattr(f, "buffer", f)).cast("B") for f in frames)
        except (TypeError, ValueError) as exc:  # not bytes-like, or not contiguous
            raise WireError("frames", f"a frame is not a contiguous byte buffer ({exc})") from None
    if len(head) < _FIXED_SIZE:
        raise WireError("header", f"a header has {_FIXED_SIZE}+ bytes, this one {len(head)}")
    fields = _FIXED.unpack_from(head)
    magic, version, schema_id, ncols, flags, rows, _pad, seq, send_ts, length = fields
    if magic != MAGIC or version != VERSION:
        raise WireError("header", f"not a tickwise v{VERSION} header (magic {magic!r}, v{version})")
    if len(head) != header_size(ncols):
        raise WireError(
            "header", f"a header of {ncols} columns has {header_size(ncols)} bytes, not {len(head)}"
        )
    name = SCHEMA_NAMES.get(schema_id)
    if name is None:
        raise WireError("schema", f"unknown schema id {schema_id}")
    if name == HEARTBEAT:
        if ncols or rows or length or len(body):
            raise WireError("schema", "a heartbeat has no columns, rows or body")
        return Packet(HEARTBEAT, seq, send_ts, 0, flags, (), body, True)
    dtype = DTYPES[name]
    if ncols != len(dtype.names):
        raise WireError("schema", f"{name} has {len(dtype.names)} columns, the header says {ncols}")
    if rows > MAX_ROWS:
        raise WireError("rows", f"{rows:,} rows is over the wire's {MAX_ROWS:,}")
    if length != len(body):
        raise WireError("size", f"the header says a body of {length} bytes, it has {len(body)}")
    offsets = struct.unpack_from(_OFFSETS[ncols], head, _FIXED_SIZE)
    expected, end = layout(name, rows)
    canonical = offsets == expected and end <= length  # (what tickwise sends)
    if not canonical:
        _check_offsets(name, rows, offsets, length)
    return Packet(name, seq, send_ts, rows, flags, offsets, body, canonical)


def _check_offsets(name: str, rows: int, offsets: tuple[int, ...], length: int) -> None:
    """Each column aligned, after the one before, and inside the body."""
    end = 0
    for (field, kind), offset in zip(_FIELDS[name], offsets, strict=True):
        if offset % ALIGN or offset < end or offset + rows * kind.itemsize > length:
            raise WireError(
                "size", f"column {field!r} at offset {offset} does not fit a {length}-byte body"
            )
        end = offset + rows * kind.itemsize


@functools.lru_cache(maxsize=4_096)
def layout(schema: str, rows: int) -> tuple[tuple[int, ...], int]:
    """Where tickwise puts each column of a `schema` batch of `rows` rows, and where the body
    ends: the columns back to back, each at the next multiple of 8."""
    offsets = []
    end = 0
    for _, kind in _FIELDS[schema]:
        end = -(-end // ALIGN) * ALIGN
        offsets.append(end)
        end += rows * kind.itemsize
    return tuple(offsets), end


def runs(packets: Sequence[Packet]) -> Iterator[Sequence[Packet]]:
    """The packets in runs of consecutive ones of one schema, in order: what a receiver runs
    through its loop as one batch each."""
    start = 0
    for k in range(1, len(packets) + 1):
        if k == len(packets) or packets[k].schema != packets[start].schema:
            yield packets[start:k]
            start = k


def gather(packets: Sequence[Packet]) -> dict[str, np.ndarray]:
    """The columns of packets of one schema, in order, as one batch: one packet's own views,
    or, for several, one compiled pass copying every column of every body into one buffer
    laid out as the wire lays out a batch of all their rows."""
    if len(packets) == 1:
        return dict(packets[0].message().columns)
    schema = packets[0].schema
    if any(p.schema != schema for p in packets):
        raise TickwiseError("gather takes packets of one schema")
    rows = [p.rows for p in packets]
    total = sum(rows)
    out_offsets, length = layout(schema, total)
    if all(p.canonical for p in packets):
        # One pass: each body's columns where `layout` puts them (the kernel works them out).
        blob = np.frombuffer(b"".join(p.body for p in packets), dtype=np.uint8)
        out = np.empty(length, dtype=np.uint8)
        lengths = np.fromiter((len(p.body) for p in packets), np.int64, len(packets))
        gather_nb(blob, lengths, np.array(rows), _ITEMSIZES[schema], out, np.array(out_offsets))
        return {
            field: out[offset : offset + total * kind.itemsize].view(kind)
            for (field, kind), offset in zip(_FIELDS[schema], out_offsets, strict=True)
        }
    views = [p.message().columns for p in packets]  # (a sender laying columns out its own way)
    return {field: np.concatenate([v[field] for v in views]) for field, _ in _FIELDS[schema]}


def warm_up() -> None:
    """Compile (or load from cache) the wire's kernels, so that no message pays for it."""
    encode_orders(np.zeros(0, ORDER_DTYPE), 0)
    quotes = DTYPES["quotes"]
    packet = check(encode("quotes", {n: np.zeros(1, quotes.fields[n][0]) for n in quotes.names}, 0))
    gather([packet, packet])


def _dtype(schema: str) -> np.dtype:
    try:
        return DTYPES[schema]
    except KeyError:
        raise TickwiseError(
            f"unknown wire schema {schema!r}; expected one of {', '.join(DTYPES)}"
        ) from None
