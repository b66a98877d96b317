"""A live session: market data in over ZeroMQ, the compiled loop per received batch, the
kill switch driven also by the clock, the journal and the control socket.

Per received batch, Python stamps when it arrived (ts_recv), runs the
session's compiled loop over it (the same loop as a backtest), sends the
orders and cancels it produced, journals them (durable before the next
batch) and answers control requests.

Where orders go: with a gateway (`tickwise exchange` at its endpoint) they
leave over ZeroMQ and the exchange's replies and reports (acks, fills,
cancellations) come back into the session's loop, where the strategy hears
of its fills; the session reconciles them with what it sent. Without one,
they fill in the loop's own simulated exchange against the live market,
with the configured fee and latency models (paper trading in process).

Between batches it watches what the loop cannot see: the feed silent (no
message or heartbeat for `stale_feed_ms`: `stale_feed`), batches lost on the
wire (`seq_gap`), the exchange silent or a request unanswered
(`gateway_lost`), and replies or reports that do not fit what was sent
(`reconcile`).

A stop (SIGINT, SIGTERM, `seconds` or an idle feed when asked) cancels the
resting orders (waiting for the exchange to confirm), commits the journal
and returns a summary.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from tickwise.backtest.replay import BacktestConfig, make_session
from tickwise.feeds import wire
from tickwise.feeds.transport import Subscriber

from .control import DEFAULT_ENDPOINT, ControlServer
from .errors import TickwiseError
from .gateway import Gateway
from .instruments import Instruments
from .journal import Journal
from .schemas import ORDER_DTYPE, STATUS_NEW, STATUS_REJECTED
from .session import Session
from .strategy import load_strategy

_LATENCY_KEEP = 1 << 20  # the latest per-batch latencies kept for percentiles
_GROUP = 256  # most batches between two commits of the journal
STOP_WAIT_S = 2.0  # at a stop, how long to wait for the exchange to confirm the cancels
_WATCH_NS = 1_000_000  # the clock-driven checks and the control socket, at most this often


@dataclass
class LiveSummary:
    """What a live session did, for people and for tests."""

    batches: int = 0
    events: int = 0
    orders: int = 0
    rejects: int = 0
    fills: int = 0
    heartbeats: int = 0
    gaps: int = 0
    malformed: dict[str, int] = field(default_factory=dict)
    pnl: float = 0.0
    status: dict[str, Any] = field(default_factory=dict)  # the kill switch as the stop found it
    stopped_by: str = ""
    cancelled_on_stop: int = 0  # resting orders the stop cancelled
    left_open: int = 0  # orders the exchange had not confirmed gone when the session ended
    wall_s: float = 0.0
    # Per batch, from the feed's send time to the batch's orders being out (journaled), µs.
    latency_us: dict[str, float] = field(default_factory=dict)
    # With an exchange: the feed's send time to the batch's orders leaving (per batch that
    # sent any), and a request's round trip to its reply, µs.
    tick_to_order_us: dict[str, float] = field(default_factory=dict)
    round_trip_us: dict[str, float] = field(default_factory=dict)
    gateway: dict[str, Any] = field(default_factory=dict)
    # The latest samples behind those two (µs), for benchmarks' histograms.
    tick_to_order_samples: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    round_trip_samples: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)


class _Rates:
    """Orders per second over the last few seconds of wall clock."""

    def __init__(self, span_s: float = 5.0) -> None:
        self.span_s = span_s
        self.points: deque[tuple[float, int]] = deque()

    def note(self, count: int) -> None:
        now = time.monotonic()
        if not self.points or now - self.points[-1][0] >= 0.25:
            self.points.append((now, count))
        while len(self.points) > 2 and now - self.points[1][0] > self.span_s:
            self.points.popleft()

    def per_second(self, count: int) -> float:
        if not self.points:
            return 0.0
        since, before = self.points[0]
        elapsed = time.monotonic() - since
        return (count - before) / elapsed if elapsed > 0 else 0.0


class _Ring:
    """The latest latencies (µs), for percentiles."""

    def __init__(self, size: int = _LATENCY_KEEP) -> None:
        self.values = np.empty(size)
        self.count = 0

    def add(self, value_us: float) -> None:
        self.values[self.count % self.values.size] = value_us
        self.count += 1

    def percentiles(self) -> dict[str, float]:
        return _percentiles(self.values, self.count)

    def samples(self) -> np.ndarray:
        return self.values[: min(self.count, self.values.size)].copy()


def run_live(
    strategy_spec: str,
    feed: str,
    instruments: Instruments,
    params: dict[str, Any] | None = None,
    config: BacktestConfig | None = None,
    *,
    journal_dir: Path,
    control: str = DEFAULT_ENDPOINT,
    gateway: str | None = None,
    gateway_heartbeat_ms: float = 100.0,
    seconds: float | None = None,
    until_idle_s: float | None = None,
    on_ready: Callable[[str], None] | None = None,
    group: int = _GROUP,
) -> LiveSummary:
    """Run a live session until SIGINT/SIGTERM, `seconds` of wall clock, or, with
    `until_idle_s`, that long without any message after the first batch. Up to `group`
    batches already waiting run under one journal commit.

    Without `gateway`, orders fill in the loop's own simulated exchange (paper trading in
    process); with it, they go to the exchange process there (`tickwise exchange`), and
    what it reports comes back into the session."""
    if group < 1:
        raise TickwiseError(f"group must be at least 1, got {group}")
    for name, value in (("seconds", seconds), ("until_idle_s", until_idle_s)):
        if value is not None and not value > 0:
            raise TickwiseError(f"{name} must be positive, got {value}")
    config = config or BacktestConfig()
    kill = config.killswitch
    strategy = load_strategy(strategy_spec)
    session = make_session(strategy, instruments, params, config)
    if gateway is not None:
        session.trade_through_gateway()
    # No tick pays for compiling, nor a person's kill, nor a trip seen between batches.
    session.warm_up(strategy.kinds, reports=gateway is not None, controls=True)
    if gateway is not None:
        wire.encode_orders(np.zeros(0, ORDER_DTYPE), 0)  # (and no order either)
    summary = LiveSummary()
    latencies = _Ring()
    tick_to_order = _Ring()
    rates = _Rates()
    with (
        Subscriber(feed) as sub,
        Journal(journal_dir, instruments, background=True) as journal,
        _linked(gateway, gateway_heartbeat_ms) as gw,
    ):
        link = _Link(session, journal, gw, summary, tick_to_order)

        def extra_status() -> dict[str, Any]:
            extra = {
                "batches": summary.batches, "feed_gaps": len(sub.gaps),
                "malformed": dict(sub.malformed), "latency_us": latencies.percentiles(),
                "orders_sent": summary.orders, "fills": summary.fills,
                "orders_per_s": rates.per_second(summary.orders),
            }  # fmt: skip
            if gw is not None:
                extra["tick_to_order_us"] = tick_to_order.percentiles()
                extra["round_trip_us"] = gw.round_trip_percentiles()
                extra["gateway"] = _gateway_status(gw)
            return extra

        server = ControlServer(
            session, control, extra_status=extra_status,
            on_command=lambda cmd, req: journal.event(time.time_ns(), cmd, req),
        )  # fmt: skip
        poller = zmq.Poller()
        poller.register(sub.socket, zmq.POLLIN)
        if gw is not None:
            poller.register(gw.socket, zmq.POLLIN)
        try:
            if on_ready:
                on_ready(server.endpoint)
            began = time.monotonic()
            gaps_seen = 0
            watch = _Watch(session, journal, sub, gw, link, kill, summary, rates)
            next_watch = 0
            stop: list[str] = []  # set by SIGINT/SIGTERM: the loop ends at its next turn
            try:
                with stop_on_signals(stop):
                    while not stop:
                        ready = dict(poller.poll(20))
                        # Every batch already waiting, then one commit for them all (a commit
                        # costs the journal's writer four fsyncs, more than a batch of the loop).
                        sent = []
                        while sub.socket in ready and len(sent) < group:
                            message = sub.receive(0)
                            if message is None:
                                break
                            if message.is_heartbeat:
                                continue
                            if message.schema not in strategy.kinds:
                                raise TickwiseError(
                                    f"{strategy.name()} trades on {', '.join(strategy.kinds)}; "
                                    f"the feed sends {message.schema}"
                                )
                            link.market(message)
                            sent.append(message.send_ts)
                            watch.stale_tripped = False
                        if gw is not None:
                            link.reports()
                        if len(sub.gaps) > gaps_seen:  # (before anything more is sent)
                            lost = sum(g.last - g.first + 1 for g in sub.gaps[gaps_seen:])
                            gaps_seen = len(sub.gaps)
                            session.trip("seq_gap", lost, 0.0)
                            journal.event(time.time_ns(), "seq_gap", {"batches_lost": lost})
                            link.flush()
                        if journal.pending:
                            journal.commit()  # (its writer makes it durable, in order)
                        done = time.time_ns()
                        for send_ts in sent:
                            latencies.add((done - send_ts) / 1e3)
                            summary.batches += 1
                        # What the clock and people drive, every millisecond at most: the
                        # turns of a busy feed stay short.
                        now = time.monotonic_ns()
                        if now < next_watch:
                            continue
                        next_watch = now + _WATCH_NS
                        watch.turn()
                        server.serve(0)
                        link.flush()  # what a person's command or a trip sent (cancels)
                        if journal.pending:
                            journal.commit()
                        if seconds is not None and time.monotonic() - began >= seconds:
                            summary.stopped_by = f"{seconds:g} s passed"
                            break
                        silent = sub.silent_for_ns()
                        if (
                            until_idle_s is not None
                            and summary.batches
                            and silent > until_idle_s * 1e9
                        ):
                            summary.stopped_by = f"the feed idle for {until_idle_s:g} s"
                            break
            except KeyboardInterrupt:  # (run from a thread other than main)
                summary.stopped_by = "a signal"
            if stop:
                summary.stopped_by = stop[0]
            # A clean stop: no order left resting, everything journaled. (The summary keeps
            # the kill switch as it was: halting to cancel is the stop's, not a person's.)
            summary.status = session.status()
            summary.cancelled_on_stop = session.open_orders
            if session.open_orders:
                session.halt()
                journal.event(time.time_ns(), "stop", {"cancelled": summary.cancelled_on_stop})
            link.flush()
            if gw is not None:
                link.settle(STOP_WAIT_S)
            summary.left_open = session.open_orders
            if journal.pending:
                journal.commit()
            summary.wall_s = time.monotonic() - began
        finally:
            server.close()
        summary.heartbeats = sub.heartbeats
        summary.gaps = len(sub.gaps)
        summary.malformed = dict(sub.malformed)
        if gw is not None:
            summary.round_trip_us = gw.round_trip_percentiles()
            summary.round_trip_samples = gw.round_trip_samples()
            summary.gateway = _gateway_status(gw)
    summary.pnl = session.pnl()
    summary.latency_us = latencies.percentiles()
    summary.tick_to_order_us = tick_to_order.percentiles()
    summary.tick_to_order_samples = tick_to_order.samples()
    return summary


class _Watch:
    """What a live session watches between batches: malformed feed messages (journaled), a
    silent feed (`stale_feed`), a lost exchange (`gateway_lost`), replies or reports that
    do not fit (`reconcile`), and its heartbeats to the exchange."""

    def __init__(self, session: Session, journal: Journal, sub: Subscriber, gw: Gateway | None,
                 link: _Link, kill: Any, summary: LiveSummary, rates: _Rates) -> None:  # fmt: skip
        self.session, self.journal, self.sub, self.gw, self.link = session, journal, sub, gw, link
        self.stale_ns = kill.stale_feed_ms * 1e6 if kill.stale_feed_ms else 0.0
        self.gateway_timeout_ms = kill.gateway_timeout_ms
        self.ack_timeout_ms = kill.ack_timeout_ms
        self.summary, self.rates = summary, rates
        self.malformed_seen = 0
        self.stale_tripped = False
        self.gateway_tripped = False

    def turn(self) -> None:
        session, journal, sub, gw = self.session, self.journal, self.sub, self.gw
        self.rates.note(self.summary.orders)
        bad = sum(sub.malformed.values())
        if bad > self.malformed_seen:  # counted, dropped, and journaled
            journal.event(time.time_ns(), "malformed", {
                "count": bad - self.malformed_seen,
                "latest": list(sub.recent_malformed)[-(bad - self.malformed_seen):],
            })  # fmt: skip
            self.malformed_seen = bad
        silent = sub.silent_for_ns()
        if self.stale_ns and silent > self.stale_ns and not self.stale_tripped:
            session.trip("stale_feed", silent / 1e6, self.stale_ns / 1e6)
            journal.event(time.time_ns(), "stale_feed", {"silent_ms": silent / 1e6})
            self.stale_tripped = True
        if gw is None:
            return
        gw.heartbeat_if_quiet()
        lost = gw.lost(self.gateway_timeout_ms, self.ack_timeout_ms)
        if lost and not self.gateway_tripped:
            session.trip("gateway_lost", lost[0], lost[1])
            journal.event(time.time_ns(), "gateway_lost",
                          {"waited_ms": lost[0], "bound_ms": lost[1]})  # fmt: skip
        self.gateway_tripped = bool(lost)
        self.link.check_gateway()


class _Link:
    """Moves a live session's batches and orders: market batches through the loop, its
    orders and cancels to the exchange (when there is one), the exchange's reports back
    into the loop; all of it journaled."""

    def __init__(self, session: Session, journal: Journal, gw: Gateway | None,
                 summary: LiveSummary, tick_to_order: _Ring) -> None:  # fmt: skip
        self.session = session
        self.journal = journal
        self.gw = gw
        self.summary = summary
        self.tick_to_order = tick_to_order
        self.mismatches_seen = 0
        self.lost_reports_seen = 0

    def market(self, message: Any) -> None:
        """One market batch: stamped on arrival, through the loop, orders out, journaled."""
        columns = dict(message.columns)
        if "ts_recv" in columns:  # when this engine received it: the feed latency it sees
            columns["ts_recv"] = np.full(message.rows, time.time_ns(), dtype=np.int64)
        result = self.session.on_batch(message.schema, columns)
        self.summary.events += result.events
        self._out(result, message.send_ts)

    def _out(self, result: Any, feed_send_ts: int | None = None) -> None:
        """Send what the loop produced to the exchange first (latency), then journal it."""
        status = result.orders["status"]
        self.summary.orders += int(np.count_nonzero(status == STATUS_NEW))
        self.summary.rejects += int(np.count_nonzero(status == STATUS_REJECTED))
        self.summary.fills += len(result.fills)
        cancels = None
        if self.gw is not None:
            cancels = self.session.cancel_requests()
            new = result.orders[status == STATUS_NEW]
            if new.size or cancels.size:
                rows = np.concatenate([new, cancels]) if cancels.size else new
                left = self.gw.send(rows)
                if feed_send_ts is not None and new.size:
                    self.tick_to_order.add((left - feed_send_ts) / 1e3)
        self.journal.add(result.orders, result.fills)
        if cancels is not None and cancels.size:
            self.journal.add(cancels, result.fills[:0])

    def flush(self) -> None:
        """Send and journal what kernels logged between batches (a halt's cancels)."""
        self._out(self.session.drain_logs())

    def reports(self, limit: int = 1_024) -> None:
        """Apply what the exchange sent (replies, fills, cancellations), as it came."""
        assert self.gw is not None
        for _ in range(limit):
            message = self.gw.receive()
            if message is None:
                return
            if message.is_heartbeat:
                continue
            if message.schema == "fills":
                result = self.session.on_fills(message.columns)
            elif message.schema == "orders":
                result = self.session.on_order_reports(message.columns)
            else:
                self.gw.mismatches.append(f"the exchange sent {message.schema}")
                continue
            if self.session.mismatched.size:
                rows = self.session.mismatched[:20].tolist()
                self.journal.event(time.time_ns(), "reconcile", {
                    "report": message.schema, "seq": message.seq, "rows": rows,
                    "ids": message.columns["order_id" if message.schema == "fills" else "id"][
                        self.session.mismatched[:20]].tolist(),
                })  # fmt: skip
            self._out(result)  # the strategy may have answered its fills with orders

    def check_gateway(self) -> None:
        """Replies that did not fit their request, or reports lost on the way: the engine
        no longer knows what the exchange holds, so the kill switch trips (`reconcile`)."""
        assert self.gw is not None
        gw = self.gw
        if len(gw.mismatches) > self.mismatches_seen:
            news = gw.mismatches[self.mismatches_seen :]
            self.mismatches_seen = len(gw.mismatches)
            self.session.trip("reconcile", len(news), 0.0)
            self.journal.event(time.time_ns(), "reconcile", {"replies": news[:20]})
        if gw.lost_reports > self.lost_reports_seen:
            lost = gw.lost_reports - self.lost_reports_seen
            self.lost_reports_seen = gw.lost_reports
            self.session.trip("reconcile", lost, 0.0)
            self.journal.event(time.time_ns(), "reconcile", {"exchange_messages_lost": lost})

    def settle(self, wait_s: float) -> None:
        """At a stop: wait (up to `wait_s`) for the exchange to confirm every order gone."""
        assert self.gw is not None
        until = time.monotonic() + wait_s
        while self.session.open_orders and time.monotonic() < until:
            if self.gw.socket.poll(20, zmq.POLLIN):
                self.reports()
            self.flush()
            self.gw.heartbeat_if_quiet()  # (or the exchange cancels them for silence)


@contextmanager
def _linked(endpoint: str | None, heartbeat_ms: float) -> Iterator[Gateway | None]:
    if endpoint is None:
        yield None
        return
    gw = Gateway(endpoint, heartbeat_ms=heartbeat_ms)
    try:
        yield gw
    finally:
        gw.close()


def _gateway_status(gw: Gateway) -> dict[str, Any]:
    return {
        "endpoint": gw.endpoint, "requests": gw.requests, "replies": gw.replies,
        "in_flight": len(gw.in_flight), "heard": gw.heard_anything,
        "silent_ms": (time.monotonic_ns() - gw.last_heard_ns) / 1e6,
        "mismatches": len(gw.mismatches), "lost_reports": gw.lost_reports,
    }  # fmt: skip


@contextmanager
def stop_on_signals(stop: list[str]) -> Iterator[None]:
    """SIGINT and SIGTERM ask the loop to stop at its next turn (they never interrupt a batch
    between the loop and the journal, which would lose what the session already did)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # (signal handlers belong to the main thread; a caller elsewhere stops us)
        return

    def ask(signum: int, frame: object) -> None:
        stop.append("a signal")

    previous = {s: signal.signal(s, ask) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _percentiles(latencies: np.ndarray, n: int) -> dict[str, float]:
    if n == 0:
        return {}
    kept = latencies[: min(n, latencies.size)]
    p50, p90, p99, p999 = np.percentile(kept, [50, 90, 99, 99.9])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "p99.9": float(p999)}
