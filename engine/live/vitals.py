"""What a live session sees of the world outside its compiled loop, and what a resume waits for.

The loop judges what its events show (loss, price jumps, gaps within the
data). What only the clock and the sockets show is judged here, between
batches: a feed that fell silent (`stale_feed`), messages lost on the wire
(`seq_gap`), an exchange that went quiet or left a request unanswered
(`gateway_lost`), bad rows from outside beyond their rate (`bad_data`), a
journal that can no longer be written (`journal_lost`). The same readings
say whether such a condition still holds, so that a person's resume is
refused until each has cleared: the feed heard again, the exchange heard
again and every request answered and every cancel the kill switch sent
confirmed (after `reconcile` too: the session then knows again what the
exchange holds of its orders; its positions are its own booking, which a
person checks against the exchange's), the bad rows stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tickwise.engine.limits import KillSwitch

_SECOND_NS = 1_000_000_000


@dataclass(frozen=True)
class Vitals:
    """One reading of a live session's surroundings (what `holding` judges)."""

    feed_silent_ms: float  # since the feed's last well-formed message (batch or heartbeat)
    feed_in_sequence: bool  # False from a lost message until one arrives in sequence
    exchange: bool  # the session trades through an exchange process
    exchange_silent_ms: float = 0.0  # since the exchange's last message
    oldest_unanswered_ms: float = 0.0  # the oldest request still without its reply (0: none)
    requests_in_flight: int = 0  # requests sent and not yet answered
    unconfirmed_cancels: int = 0  # orders whose cancel is not yet confirmed (in scope)
    bad_rows_last_s: int = 0  # rows dropped at the boundary within the last second
    journal_failure: str | None = None


def holding(v: Vitals, kill: KillSwitch, data_only: bool = False) -> list[str]:
    """The conditions outside the loop that still hold, one clause each (none: a resume may
    go ahead as far as they are concerned). Triggers switched off are not judged.
    `data_only`: only those that say the feed or the exchange cannot be trusted now (what
    refuses a person's flatten), not requests or cancels merely on their way."""
    clauses = []
    if v.journal_failure is not None:
        clauses.append(f"the journal is lost ({v.journal_failure}); the session must stop")
    if kill.stale_feed_ms and v.feed_silent_ms > kill.stale_feed_ms:
        clauses.append(
            f"the feed has been silent for {v.feed_silent_ms:,.0f} ms "
            f"(stale_feed_ms {kill.stale_feed_ms:g})"
        )
    if kill.seq_gap and not v.feed_in_sequence:
        clauses.append("no feed message has arrived in sequence since messages were lost")
    if v.exchange and kill.gateway_timeout_ms and v.exchange_silent_ms > kill.gateway_timeout_ms:
        clauses.append(
            f"the exchange has been silent for {v.exchange_silent_ms:,.0f} ms "
            f"(gateway_timeout_ms {kill.gateway_timeout_ms:g})"
        )
    if v.exchange and kill.ack_timeout_ms and v.oldest_unanswered_ms > kill.ack_timeout_ms:
        clauses.append(
            f"a request to the exchange has been unanswered for {v.oldest_unanswered_ms:,.0f} "
            f"ms (ack_timeout_ms {kill.ack_timeout_ms:g}; if the exchange restarted, it never "
            "will be: stop the session and start it again)"
        )
    if v.exchange and v.requests_in_flight and not data_only:
        clauses.append(
            f"{v.requests_in_flight} request(s) to the exchange not yet answered: what it holds "
            "is not known until they are"
        )
    if v.unconfirmed_cancels and not data_only:
        clauses.append(
            f"{v.unconfirmed_cancels} cancelled order(s) not yet confirmed gone"
            + (" by the exchange" if v.exchange else "")
        )
    if kill.max_bad_rows_per_sec and v.bad_rows_last_s > kill.max_bad_rows_per_sec:
        clauses.append(
            f"{v.bad_rows_last_s} bad rows in the last second (max_bad_rows_per_sec "
            f"{kill.max_bad_rows_per_sec:g})"
        )
    return clauses


class BadRowRate:
    """Rows dropped at the boundary per second of wall clock (a fixed one-second window)."""

    def __init__(self) -> None:
        self.window_ns = 0
        self.count = 0
        self.previous = 0  # the whole count of the window before

    def add(self, rows: int) -> None:
        self._roll()
        self.count += rows

    def last_second(self) -> int:
        """Bad rows in the current window, or the one before if this one has just begun."""
        self._roll()
        return max(self.count, self.previous)

    def _roll(self) -> None:
        now = time.monotonic_ns()
        if now - self.window_ns >= _SECOND_NS:
            self.previous = self.count if now - self.window_ns < 2 * _SECOND_NS else 0
            self.window_ns = now
            self.count = 0
