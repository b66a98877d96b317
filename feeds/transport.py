"""Market data over ZeroMQ: a publisher of record batches and a subscriber that checks them.

The publisher binds an XPUB socket (a PUB that also hears subscriptions, so a
replay can wait for its first listener instead of talking to nobody), stamps
each batch with the next sequence number and its send time, and sends a
heartbeat whenever it has been quiet for the heartbeat interval. The
subscriber decodes each message to numpy views without copying, counts and
drops what is malformed (by reason, never raising), and keeps what a kill
switch needs: sequence gaps and how long the feed has been silent.

A subscriber takes every message of the feed: the sequence numbers count all
of them, so taking some kinds only would look like gaps.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import zmq

from tickwise.engine.errors import TickwiseError

from . import wire

DEFAULT_HEARTBEAT_MS = 100.0
_HWM = 100_000  # messages queued per peer before ZeroMQ drops (PUB) or stops reading
_INT64_MAX = (1 << 63) - 1


def _socket(kind: int, endpoint: str, bind: bool, context: zmq.Context | None) -> zmq.Socket:
    ctx = context or zmq.Context.instance()
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        # A frame beyond this disconnects its sender before it reaches memory (a publisher
        # receives subscriptions only: a few bytes each).
        sock.setsockopt(zmq.MAXMSGSIZE, wire.MAX_FRAME_BYTES if not bind else 1 << 16)
        sock.setsockopt(zmq.SNDHWM if bind else zmq.RCVHWM, _HWM)
        if bind:
            sock.bind(endpoint)
        else:
            sock.connect(endpoint)
    except zmq.ZMQError as exc:
        sock.close()
        verb = "bind" if bind else "connect to"
        raise TickwiseError(f"cannot {verb} {endpoint}: {exc}") from None
    return sock


class Publisher:
    """Sends record batches (and heartbeats when idle) on an XPUB socket bound to `endpoint`
    (`tcp://127.0.0.1:*` picks a free port: see `endpoint` afterwards).

    A live feed drops what a slow subscriber cannot take (it sees the gap in the sequence
    numbers); `nodrop=True` waits for it instead, as a replay as fast as possible must."""

    def __init__(
        self,
        endpoint: str,
        *,
        heartbeat_ms: float = DEFAULT_HEARTBEAT_MS,
        nodrop: bool = False,
        context: zmq.Context | None = None,
    ) -> None:
        if not heartbeat_ms > 0:
            raise TickwiseError(f"heartbeat_ms must be positive, got {heartbeat_ms}")
        # A context of its own, ended on close: ending it is what waits for queued messages
        # to go out (a process may exit straight after, without the interpreter's teardown).
        self._context = context or zmq.Context()
        self._own_context = context is None
        try:
            self.socket = _socket(zmq.XPUB, endpoint, True, self._context)
        except TickwiseError:
            if self._own_context:
                self._context.term()
            raise
        self.nodrop = nodrop
        self.socket.setsockopt(zmq.XPUB_NODROP, int(nodrop))
        self.socket.setsockopt(zmq.XPUB_VERBOSE, 1)  # every subscriber's subscription, counted
        self.endpoint: str = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.heartbeat_ns = int(heartbeat_ms * 1e6)
        self.seq = 0  # of the last batch sent
        self.batches = 0
        self.rows = 0
        self.heartbeats = 0
        self._last_sent = time.monotonic_ns()

    def wait_for_subscriber(self, timeout_s: float, count: int = 1) -> bool:
        """Block until `count` subscribers have subscribed (True) or `timeout_s` passes
        (False): an exchange and an engine on one feed must both see its first batch."""
        deadline = time.monotonic() + timeout_s
        seen = 0
        while (left := deadline - time.monotonic()) > 0:
            ready = self.socket.poll(max(1, int(left * 1000)), zmq.POLLIN)
            if ready and self.socket.recv()[:1] == b"\x01":  # subscribed (0: unsubscribed)
                seen += 1
                if seen >= count:
                    return True
        return False

    def publish(
        self,
        kind: str,
        columns: Mapping[str, np.ndarray] | pa.RecordBatch,
        send_ts: int | None = None,
    ) -> int:
        """Send one batch of `kind` rows; returns its sequence number."""
        header, body = wire.encode(kind, columns, self.seq + 1, send_ts)
        # Two sends, not send_multipart (a third of the cost of a small message); small bodies
        # are copied into the message (cheaper than tracking a zero-copy one).
        self.socket.send(header, zmq.SNDMORE)
        self.socket.send(body, copy=len(body) < 65_536)
        self.seq += 1
        self.batches += 1
        self.rows += (
            columns.num_rows
            if isinstance(columns, pa.RecordBatch)
            else len(next(iter(columns.values())))
        )
        self._last_sent = time.monotonic_ns()
        return self.seq

    def heartbeat(self) -> None:
        """Send a heartbeat now (it carries the last batch's sequence number)."""
        self.socket.send_multipart(list(wire.heartbeat(self.seq)))
        self.heartbeats += 1
        self._last_sent = time.monotonic_ns()

    def idle(self, until_ns: int) -> None:
        """Wait until the monotonic clock reads `until_ns`, sending heartbeats on time."""
        while (now := time.monotonic_ns()) < until_ns:
            beat = self._last_sent + self.heartbeat_ns
            if now >= beat:
                self.heartbeat()
                continue
            time.sleep((min(until_ns, beat) - now) / 1e9)

    def close(self) -> None:
        """Close once what is still queued has gone out: with `nodrop`, however long the
        subscribers take (they were promised every message); otherwise up to 2 s (closing at
        once would drop the last batches on a busy machine)."""
        self.socket.close(linger=-1 if self.nodrop else 2_000)
        if self._own_context:
            self._context.term()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def replay(
    publisher: Publisher,
    kind: str,
    batches: Iterable[pa.RecordBatch],
    speed: float | None,
    on_rows: Callable[[int], None] | None = None,
    packet_ns: int = 0,
) -> None:
    """Publish batches in event time: `speed` x real time, or as fast as possible (None).

    In event time, `packet_ns` 0 sends rows once the replay clock passes their ts_event, in
    as few messages as that allows (how many then depends on how busy the machine is). A
    `packet_ns` above 0 sends them in packets (as a venue packs its feed, or a conflating
    feed holds it, for longer): the rows of each window of that much event time (from the
    first row's) go out in one message once the window has passed, so the same data gives
    the same messages on any machine (a batch's end still ends a message), and a row waits
    at most a window at a feed that keeps pace."""
    if speed is not None and not speed > 0:
        raise TickwiseError(f"speed must be positive (or max), got {speed}")
    if packet_ns < 0 or (packet_ns and speed is None):
        raise TickwiseError(
            f"packets need a pace in event time (a speed) and a length of 0 or more, got "
            f"{packet_ns} ns at speed {speed}"
        )
    start_wall = time.monotonic_ns()
    start_data: int | None = None
    for batch in batches:
        if speed is None:
            publisher.publish(kind, batch)
            if on_rows:
                on_rows(batch.num_rows)
            continue
        # Numpy views of the batch's columns, sliced per message: taking each message's
        # columns out of Arrow again would cost more than sending it.
        columns = {n: batch.column(n).to_numpy(zero_copy_only=False) for n in batch.schema.names}
        ts = columns["ts_event"]
        if start_data is None and len(ts):
            start_data = int(ts[0])
        done = 0
        while done < len(ts):
            data_now = start_data + (time.monotonic_ns() - start_wall) * speed
            if packet_ns:
                # The window of the next row to send: its rows once it has passed, else wait.
                end = start_data + ((int(ts[done]) - start_data) // packet_ns + 1) * packet_ns
                end = min(end, _INT64_MAX)  # (the last window of time's end)
                due = int(ts.searchsorted(end, side="left")) if data_now >= end else done
            else:
                end = int(ts[done])
                due = int(ts.searchsorted(data_now, side="right"))
            if due > done:
                publisher.publish(kind, {n: c[done:due] for n, c in columns.items()})
                if on_rows:
                    on_rows(due - done)
                done = due
                continue
            publisher.idle(start_wall + int((end - start_data) / speed))


def rebased(
    batches: Iterable[pa.RecordBatch], shift_ns: int, until_ns: int | None = None
) -> Iterator[pa.RecordBatch]:
    """The batches with their timestamps moved by `shift_ns` (a history played as today's
    market), ending before the first row at or past `until_ns` (after the shift)."""
    for batch in batches:
        arrays = []
        for name in batch.schema.names:
            column = batch.column(name)
            if name in ("ts_event", "ts_recv"):
                column = pa.array(column.to_numpy() + np.int64(shift_ns))
            arrays.append(column)
        moved = pa.RecordBatch.from_arrays(arrays, schema=batch.schema)
        if until_ns is not None:
            ts = moved.column("ts_event").to_numpy()
            end = int(np.searchsorted(ts, until_ns, side="left"))
            if end < len(ts):
                if end:
                    yield moved.slice(0, end)
                return
        yield moved


# Plain ints: pyzmq turns its enum constants back into enums on every call, which costs more
# than receiving a small frame.
_NOBLOCK = int(zmq.NOBLOCK)
_RCVMORE = int(zmq.RCVMORE)


def receive_frames(socket: zmq.Socket, keep: int = 3) -> list[bytes] | None:
    """The frames of the next message waiting on `socket` (None: none is), each as bytes:
    `recv_multipart` at half its cost for a two-frame message. Beyond the first `keep`
    frames the rest are received and dropped: no message of ours has more, and a peer
    sending thousands must not be held in memory (`MAX_FRAME_BYTES` bounds each frame)."""
    try:
        frames = [socket.recv(_NOBLOCK)]
    except zmq.Again:
        return None
    while socket.get(_RCVMORE):
        frame = socket.recv(_NOBLOCK)
        if len(frames) < keep:
            frames.append(frame)
    return frames


@dataclass
class Gap:
    """Batches a subscriber never received: sequence numbers `first` to `last`."""

    first: int
    last: int


@dataclass
class Subscriber:
    """Receives, checks and decodes a feed; counts what was malformed and what was missed."""

    endpoint: str
    context: zmq.Context | None = None
    messages: int = 0
    rows: int = 0
    heartbeats: int = 0
    malformed: Counter = field(default_factory=Counter)  # by WireError reason
    recent_malformed: deque = field(default_factory=lambda: deque(maxlen=100))
    gaps: list[Gap] = field(default_factory=list)
    last_seq: int | None = None
    # False from a gap until a message follows its predecessor in sequence again.
    in_sequence: bool = True
    # Monotonic clock at the last well-formed message: a feed sending only garbage is silent.
    last_heard_ns: int = 0

    def __post_init__(self) -> None:
        self.socket = _socket(zmq.SUB, self.endpoint, False, self.context)
        self.socket.setsockopt(zmq.SUBSCRIBE, b"")
        self.last_heard_ns = time.monotonic_ns()

    def receive(self, timeout_ms: float) -> wire.Message | None:
        """The next well-formed message (a batch or a heartbeat), or None if none came within
        `timeout_ms` or what came was malformed (counted in `malformed`, then dropped)."""
        if timeout_ms > 0 and not self.socket.poll(int(timeout_ms), zmq.POLLIN):
            return None
        packet = self._next()
        return None if packet is None else packet.message()

    def take(self, limit: int, max_bytes: int = wire.MAX_FRAME_BYTES) -> list[wire.Packet]:
        """Every well-formed batch waiting now (up to `limit` messages and about `max_bytes`
        of bodies: a turn's memory is bounded; heartbeats counted and not returned), checked
        but not yet viewed: for `wire.gather`."""
        taken = []
        size = 0
        for _ in range(limit):
            frames = receive_frames(self.socket)
            if frames is None:
                break
            packet = self._checked(frames)
            if packet is not None and not packet.is_heartbeat:
                taken.append(packet)
                size += len(packet.body)
                if size >= max_bytes:
                    break
        return taken

    def _next(self) -> wire.Packet | None:
        frames = receive_frames(self.socket)
        return None if frames is None else self._checked(frames)

    def _checked(self, frames: list[bytes]) -> wire.Packet | None:
        try:
            packet = wire.check(frames)
        except wire.WireError as exc:
            self.malformed[exc.reason] += 1
            self.recent_malformed.append(f"{exc.reason}: {exc}")
            return None
        self.last_heard_ns = time.monotonic_ns()
        self._track(packet)
        return packet

    def _track(self, message: wire.Packet) -> None:
        if message.is_heartbeat:
            self.heartbeats += 1
            if self.last_seq is not None and message.seq > self.last_seq:
                self.gaps.append(Gap(self.last_seq + 1, message.seq))
                self.last_seq = message.seq
                self.in_sequence = False
            return
        self.messages += 1
        self.rows += message.rows
        if self.last_seq is not None and message.seq > self.last_seq + 1:
            self.gaps.append(Gap(self.last_seq + 1, message.seq - 1))
            self.in_sequence = False
        elif self.last_seq is None or message.seq == self.last_seq + 1:
            self.in_sequence = True
        self.last_seq = message.seq

    def silent_for_ns(self) -> int:
        """How long since the last well-formed message (a batch or a heartbeat) arrived."""
        return time.monotonic_ns() - self.last_heard_ns

    def close(self) -> None:
        self.socket.close(linger=0)

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
