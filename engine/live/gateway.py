"""A live session's link to an exchange process: requests out, replies and reports in.

One DEALER socket. Each request is one `orders` batch (new orders and cancel
requests); the exchange answers every request with one reply, in order, so
the gateway keeps the requests in flight in a queue and checks each reply
against the oldest: the same order ids, and for each an answer that fits
(an order ACKED or REJECTED, a cancel CANCEL_SENT or refused as unknown).
What the exchange sends of its own accord (fills, cancellations) is handed
to the session, which books it against its own open orders.

The gateway watches the exchange: nothing heard for `timeout_ms`, or a
request unanswered for `ack_timeout_ms`, means it is lost; a gap in its
message sequence means reports were lost. It heartbeats when it has sent
nothing for `heartbeat_ms`, so the exchange can tell it is alive (and
cancel its orders when it is not).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np
import zmq

from tickwise.engine.errors import TickwiseError
from tickwise.engine.schemas import (
    REASON_NAMES,
    REASON_UNKNOWN_ORDER,
    STATUS_ACKED,
    STATUS_CANCEL_SENT,
    STATUS_NAMES,
    STATUS_NEW,
    STATUS_REJECTED,
    impossible_fills,
)
from tickwise.feeds import wire
from tickwise.feeds.transport import receive_frames

_KEEP = 1 << 16  # latest request round trips kept for percentiles


@dataclass
class _InFlight:
    seq: int
    sent_ns: int  # wall clock, when it left
    ids: np.ndarray
    status: np.ndarray  # what was asked per row: NEW or CANCEL_SENT


class Gateway:
    """The engine's side of the order socket."""

    def __init__(self, endpoint: str, *, heartbeat_ms: float = 100.0,
                 context: zmq.Context | None = None) -> None:  # fmt: skip
        if not heartbeat_ms > 0:
            raise TickwiseError(f"heartbeat_ms must be positive, got {heartbeat_ms}")
        self.endpoint = endpoint
        self.heartbeat_ns = int(heartbeat_ms * 1e6)
        self.socket = (context or zmq.Context.instance()).socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 2_000)  # cancels sent at a stop get out
        self.socket.setsockopt(zmq.MAXMSGSIZE, wire.MAX_FRAME_BYTES)
        try:
            self.socket.connect(endpoint)
        except zmq.ZMQError as exc:
            self.socket.close(linger=0)
            raise TickwiseError(f"cannot connect to the exchange at {endpoint}: {exc}") from None
        self.seq = 0  # requests sent
        self.in_seq = 0  # last message sequence number heard from the exchange
        self.in_flight: deque[_InFlight] = deque()
        self.requests = 0
        self.replies = 0
        self.malformed: Counter = Counter()
        self.lost_reports = 0  # exchange messages skipped in its sequence
        self.mismatches: list[str] = []  # replies that did not fit their request
        now = time.monotonic_ns()
        self.last_heard_ns = now  # monotonic
        self.last_sent_ns = now
        self.heard_anything = False
        self.round_trips_us = np.empty(_KEEP)

    def send(self, rows: np.ndarray) -> int:
        """Send one request (ORDER_DTYPE rows: NEW orders, CANCEL_SENT cancels; kept to check
        the reply against, so not to be changed after); the wall clock (ns) just before it
        left."""
        self.seq += 1
        header, body = wire.encode_orders(rows, self.seq)
        sent = time.time_ns()
        self.socket.send_multipart([header, body])
        self.last_sent_ns = time.monotonic_ns()
        self.in_flight.append(_InFlight(self.seq, sent, rows["id"], rows["status"]))
        self.requests += 1
        return sent

    def receive(self) -> wire.Message | None:
        """The next message from the exchange if one is waiting (a heartbeat, a reply or a
        report), else None. Malformed ones are counted and dropped."""
        frames = receive_frames(self.socket)
        if frames is None:
            return None
        arrived = time.time_ns()
        try:
            message = wire.decode(frames)
        except wire.WireError as exc:
            self.malformed[exc.reason] += 1
            return None
        self.last_heard_ns = time.monotonic_ns()
        self.heard_anything = True
        if message.seq > self.in_seq + (0 if message.is_heartbeat else 1):
            self.lost_reports += message.seq - self.in_seq - (0 if message.is_heartbeat else 1)
        self.in_seq = max(self.in_seq, message.seq)
        if message.flags & wire.FLAG_REPLY:
            self._check_reply(message, arrived)
        return message

    def _check_reply(self, message: wire.Message, arrived: int) -> None:
        if not self.in_flight:
            self.mismatches.append(f"a reply (seq {message.seq}) to no request")
            return
        asked = self.in_flight.popleft()
        self.replies += 1
        self.round_trips_us[(self.replies - 1) % _KEEP] = (arrived - asked.sent_ns) / 1e3
        got = message.columns
        if message.schema != "orders" or message.rows != asked.ids.size:
            self.mismatches.append(
                f"request {asked.seq}: {asked.ids.size} rows asked, the reply has {message.rows}"
            )
            return
        status, reason = got["status"], got["reason"]
        refused = status == STATUS_REJECTED
        fits = np.where(
            asked.status == STATUS_NEW,
            (status == STATUS_ACKED) | refused,
            (status == STATUS_CANCEL_SENT) | (refused & (reason == REASON_UNKNOWN_ORDER)),
        )
        wrong = np.flatnonzero((got["id"] != asked.ids) | ~fits)
        if wrong.size:
            self.mismatches.append(
                f"request {asked.seq}: the reply does not fit orders "
                f"{asked.ids[wrong[:5]].tolist()}"
            )

    def heartbeat_if_quiet(self) -> None:
        """A heartbeat if nothing was sent for `heartbeat_ms`."""
        now = time.monotonic_ns()
        if now - self.last_sent_ns >= self.heartbeat_ns:
            header, body = wire.heartbeat(self.seq)
            self.socket.send_multipart([header, body])
            self.last_sent_ns = now

    def lost(self, timeout_ms: float, ack_timeout_ms: float) -> tuple[float, float] | None:
        """(how long, the bound) in ms if the exchange is lost: silent beyond `timeout_ms`,
        or the oldest request unanswered beyond `ack_timeout_ms` (0: that check is off)."""
        silent_ms = (time.monotonic_ns() - self.last_heard_ns) / 1e6
        if timeout_ms and silent_ms > timeout_ms:
            return silent_ms, timeout_ms
        waited_ms = self.oldest_unanswered_ms()
        if ack_timeout_ms and waited_ms > ack_timeout_ms:
            return waited_ms, ack_timeout_ms
        return None

    def oldest_unanswered_ms(self) -> float:
        """How long the oldest request still without its reply has waited (0: none)."""
        if not self.in_flight:
            return 0.0
        return (time.time_ns() - self.in_flight[0].sent_ns) / 1e6

    def round_trip_percentiles(self, most: int | None = None) -> dict[str, float]:
        """Request sent -> its reply received (wall clock, µs): p50/p90/p99/p99.9 of every
        round trip kept, or of the latest `most`."""
        n = min(self.replies, _KEEP, most or _KEEP)
        if n == 0:
            return {}
        at = (self.replies - n + np.arange(n)) % _KEEP
        p = np.percentile(self.round_trips_us[at], [50, 90, 99, 99.9])
        return dict(zip(("p50", "p90", "p99", "p99.9"), map(float, p), strict=True))

    def round_trip_samples(self) -> np.ndarray:
        """The latest round trips kept (µs)."""
        return self.round_trips_us[: min(self.replies, _KEEP)].copy()

    def close(self, linger_ms: int = 2_000) -> None:
        self.socket.close(linger=linger_ms)


def impossible_rows(schema: str, columns: dict[str, np.ndarray], known: np.ndarray) -> np.ndarray:
    """Rows of an exchange's report no engine may book (a bool per row): fills no engine makes
    (`schemas.impossible_fills`); order reports with an unknown status or reason, or a
    quantity not finite and non-negative. Checked before any kernel
    sees the report: a kernel would index or book them as they are."""
    if schema == "fills":
        return impossible_fills(columns, known)
    qty, status, reason = columns["qty"], columns["status"], columns["reason"]
    good = (
        (status >= 0) & (status < len(STATUS_NAMES)) & (reason >= 0)
        & (reason < len(REASON_NAMES)) & np.isfinite(qty) & (qty >= 0)
    )  # fmt: skip
    return ~good
