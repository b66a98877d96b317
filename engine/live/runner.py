"""A live session: market data in over ZeroMQ, the compiled loop per turn, the kill switch
driven also by the clock, the journal and the control socket.

Each turn, Python takes every message waiting on the feed, stamps when it
arrived (ts_recv), checks every row at the boundary (`feeds.screen`: an
instrument id outside the table, a price or size that breaks the data
contract, a time too far from the clock: counted by reason, journaled,
dropped; too many trip `bad_data`), runs the good rows of consecutive
messages of one kind through the session's compiled loop in one call (the
same loop as a backtest), sends the orders and cancels it produced, journals
them and answers control requests. Market kinds the strategy does not take
are counted and ignored.

Where orders go: with a gateway (`tickwise exchange` at its endpoint) they
leave over ZeroMQ and the exchange's replies and reports (acks, fills,
cancellations) come back into the session's loop, where the strategy hears
of its fills; the session reconciles them with what it sent. Without one,
they fill in the loop's own simulated exchange against the live market,
with the configured fee and latency models (paper trading in process).

Between batches it watches what the loop cannot see (`engine.live.vitals`): the
feed silent (no message or heartbeat for `stale_feed_ms`: `stale_feed`),
batches lost on the wire (`seq_gap`), the exchange silent or a request
unanswered (`gateway_lost`), replies or reports that do not fit what was sent
(`reconcile`), and the journal (`journal_lost`: the session stops). Every
change of trading state is journaled as it happens, with its cause; a
person's resume is refused while any condition behind a trigger still holds.

A stop (SIGINT, SIGTERM, `seconds` or an idle feed when asked) cancels the
resting orders (waiting for the exchange to confirm), commits the journal
and returns a summary.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from tickwise.engine.config import SessionConfig, make_session
from tickwise.engine.errors import TickwiseError
from tickwise.engine.instruments import Instruments
from tickwise.engine.limits import KillSwitch
from tickwise.engine.live.control import (
    DEFAULT_ENDPOINT,
    ControlServer,
    check_operator,
    default_operator,
)
from tickwise.engine.live.gateway import Gateway, impossible_rows
from tickwise.engine.live.journal import Journal
from tickwise.engine.live.vitals import BadRowRate, Vitals, holding
from tickwise.engine.schemas import MARKET_DTYPES, QUOTE_DTYPE, STATUS_NEW, STATUS_REJECTED
from tickwise.engine.session import Session
from tickwise.engine.strategy import load_strategy
from tickwise.feeds import wire
from tickwise.feeds.screen import Screen
from tickwise.feeds.transport import Subscriber

_LATENCY_KEEP = 1 << 20  # the latest per-batch latencies kept for percentiles
_GROUP = 256  # most feed messages taken in one turn (one commit of the journal)
STOP_WAIT_S = 2.0  # at a stop, how long to wait for the exchange to confirm the cancels
_WATCH_NS = 1_000_000  # the clock-driven checks and the control socket, at most this often
_BAD_EVENT_NS = 100_000_000  # bad rows journaled at most this often
_STATUS_NS = 250_000_000  # latency percentiles for status worked out at most this often


@dataclass
class LiveSummary:
    """What a live session did, for people and for tests."""

    batches: int = 0  # feed messages taken (not heartbeats)
    loop_calls: int = 0  # compiled calls that ran them (consecutive ones of a kind as one)
    events: int = 0
    orders: int = 0
    rejects: int = 0
    fills: int = 0
    heartbeats: int = 0
    gaps: int = 0
    malformed: dict[str, int] = field(default_factory=dict)
    bad_rows: dict[str, int] = field(default_factory=dict)  # dropped at the boundary, by reason
    ignored: dict[str, int] = field(default_factory=dict)  # rows of kinds the strategy skips
    pnl: float = 0.0
    status: dict[str, Any] = field(default_factory=dict)  # the kill switch as the stop found it
    stopped_by: str = ""
    cancelled_on_stop: int = 0  # resting orders the stop cancelled
    left_open: int = 0  # orders the exchange had not confirmed gone when the session ended
    wall_s: float = 0.0
    journal_failure: str | None = None  # why the journal could not be written (it stopped)
    not_journaled: dict[str, int] = field(default_factory=dict)  # rows lost with it
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

    def add_many(self, values_us: np.ndarray) -> None:
        at = (self.count + np.arange(values_us.size)) % self.values.size
        self.values[at] = values_us
        self.count += values_us.size

    def percentiles(self) -> dict[str, float]:
        return _percentiles(self.values, self.count)

    def samples(self) -> np.ndarray:
        return self.values[: min(self.count, self.values.size)].copy()


def run_live(
    strategy_spec: str,
    feed: str,
    instruments: Instruments,
    params: dict[str, Any] | None = None,
    config: SessionConfig | None = None,
    *,
    journal_dir: Path,
    control: str = DEFAULT_ENDPOINT,
    gateway: str | None = None,
    gateway_heartbeat_ms: float = 100.0,
    seconds: float | None = None,
    until_idle_s: float | None = None,
    on_ready: Callable[[str], None] | None = None,
    group: int = _GROUP,
    operator: str | None = None,
) -> LiveSummary:
    """Run a live session until SIGINT/SIGTERM, `seconds` of wall clock, or, with
    `until_idle_s`, that long without any message after the first batch. Every market message
    already waiting (up to `group`) runs through the loop together, in one compiled call per
    run of one kind, under one journal commit.

    Without `gateway`, orders fill in the loop's own simulated exchange (paper trading in
    process); with it, they go to the exchange process there (`tickwise exchange`), and
    what it reports comes back into the session. The journal records who started it
    (`operator`, the OS user by default). A journal that can no longer be written
    trips `journal_lost` and stops the session (`summary.journal_failure` says why)."""
    if group < 1:
        raise TickwiseError(f"group must be at least 1, got {group}")
    for name, value in (("seconds", seconds), ("until_idle_s", until_idle_s)):
        if value is not None and not value > 0:
            raise TickwiseError(f"{name} must be positive, got {value}")
    who = default_operator() if operator is None else check_operator(operator)
    config = config or SessionConfig()
    if not config.killswitch.enabled:
        raise TickwiseError(
            "[killswitch] enabled = false is for research backtests; a live session always "
            "runs with the kill switch (switch single triggers off instead)"
        )
    strategy = load_strategy(strategy_spec)
    session = make_session(strategy, instruments, params, config)
    if gateway is not None:
        session.trade_through_gateway()
    # No tick pays for compiling, nor a person's kill, nor a trip seen between batches.
    session.warm_up(strategy.kinds, reports=gateway is not None, controls=True)
    wire.warm_up()  # (nor a message, nor an order)
    Screen(instruments).good("quotes", _no_quotes(), 0)  # (nor the boundary's check)
    summary = LiveSummary()
    # Everything that can refuse the start comes before the journal, which is opened last:
    # a refused start leaves no segment behind.
    with contextlib.ExitStack() as stack:
        sub = stack.enter_context(Subscriber(feed))
        gw = stack.enter_context(_linked(gateway, gateway_heartbeat_ms))
        server = ControlServer(session, control)
        stack.callback(server.close)
        journal = stack.enter_context(Journal(journal_dir, instruments, background=True))
        journal.event(time.time_ns(), "start", {
            "strategy": strategy.name(), "params": session.params, "feed": feed,
            "gateway": gateway, "control": server.endpoint, "pid": os.getpid(),
            "operator": who,
        })  # fmt: skip
        link = _Link(session, journal, gw, sub, summary, config)
        watch = _Watch(link, config.killswitch)
        session.outside_conditions = watch.holding
        if config.feed_latency_us < 0:  # (a replay's clock is its data's: kept as it is)
            session.clock = time.time_ns
        server.extra_status = link.status
        server.on_command = lambda cmd, detail: journal.event(time.time_ns(), cmd, detail)
        if on_ready:
            on_ready(server.endpoint)
        try:
            _turn_until_stopped(link, watch, server, seconds, until_idle_s, group)
        except BaseException:  # a bug: nothing automated may go on working without the session
            _emergency_stop(link)
            raise
        with stop_on_signals([]):  # (a second Ctrl-C must not cut the stop short)
            watch.last_look()
            _stop(link)
    summary.journal_failure = journal.failure
    summary.not_journaled = dict(journal.dropped) if journal.failure else {}
    summary.heartbeats = sub.heartbeats
    summary.gaps = len(sub.gaps)
    summary.malformed = dict(sub.malformed)
    summary.bad_rows = dict(link.screen.bad)
    summary.ignored = dict(link.ignored)
    if gw is not None:
        summary.round_trip_us = gw.round_trip_percentiles()
        summary.round_trip_samples = gw.round_trip_samples()
        summary.gateway = _gateway_status(gw)
    summary.pnl = session.pnl()
    summary.latency_us = link.latencies.percentiles()
    summary.tick_to_order_us = link.tick_to_order.percentiles()
    summary.tick_to_order_samples = link.tick_to_order.samples()
    return summary


def _turn_until_stopped(link: _Link, watch: _Watch, server: ControlServer, seconds: float | None,
                        until_idle_s: float | None, group: int) -> None:  # fmt: skip
    """The session's turns: everything waiting on the feed, then the exchange's reports, then
    a commit; every millisecond at most, what the clock and people drive."""
    summary, sub, gw = link.summary, link.sub, link.gw
    poller = zmq.Poller()
    poller.register(sub.socket, zmq.POLLIN)
    if gw is not None:
        poller.register(gw.socket, zmq.POLLIN)
    began = time.monotonic()
    next_watch = 0
    stop: list[str] = []  # set by SIGINT/SIGTERM: the loop ends at its next turn
    try:
        with stop_on_signals(stop):
            while not stop:
                ready = dict(poller.poll(20))
                if sub.socket in ready:
                    link.market(sub, group)
                if gw is not None and gw.socket in ready:
                    link.reports()
                link.gaps()
                link.commit()
                # What the clock and people drive, every millisecond at most: the turns of a
                # busy feed stay short.
                now = time.monotonic_ns()
                if now < next_watch:
                    continue
                next_watch = now + _WATCH_NS
                if watch.turn():
                    stop.append("the journal was lost")
                    break
                server.serve(0)
                link.flush()  # what a person's command or a trip sent (cancels)
                link.commit()
                if seconds is not None and time.monotonic() - began >= seconds:
                    summary.stopped_by = f"{seconds:g} s passed"
                    break
                silent = sub.silent_for_ns()
                if until_idle_s is not None and summary.batches and silent > until_idle_s * 1e9:
                    summary.stopped_by = f"the feed idle for {until_idle_s:g} s"
                    break
    except KeyboardInterrupt:  # (run from a thread other than main)
        summary.stopped_by = "a signal"
    if stop:
        summary.stopped_by = stop[0]
    summary.wall_s = time.monotonic() - began


def _stop(link: _Link) -> None:
    """A clean stop: no order left resting, everything journaled that can be. (The summary
    keeps the kill switch as it was: halting to cancel is the stop's, not a person's.)"""
    session, summary = link.session, link.summary
    summary.status = session.status()
    summary.cancelled_on_stop = session.open_orders
    if session.open_orders:
        session.trip("stop", summary.cancelled_on_stop, 0.0)
        link.journal.event(time.time_ns(), "stop", {"cancelled": summary.cancelled_on_stop})
    link.flush()
    if link.gw is not None:
        link.settle(STOP_WAIT_S)
    summary.left_open = session.open_orders
    link.transitions()
    link.journal.event(time.time_ns(), "end", {
        "stopped_by": summary.stopped_by, "events": summary.events, "orders": summary.orders,
        "fills": summary.fills, "left_open": summary.left_open, "state": session.status()["state"],
    })  # fmt: skip
    link.commit()
    link.journal.flush()


def _emergency_stop(link: _Link) -> None:
    """The session is ending on an error: halt, and send the cancels of its resting orders
    (waiting briefly for the exchange), before the error is raised."""
    with contextlib.suppress(Exception), stop_on_signals([]):
        link.session.trip("stop", link.session.open_orders, 0.0)
        link.flush()
        if link.gw is not None:
            link.settle(STOP_WAIT_S)
        link.transitions()
        link.commit()  # (what was sent is journaled: the journal's exit commits nothing)
        link.journal.flush()


class _Watch:
    """What a live session watches between batches: malformed feed messages and bad rows
    (journaled; too many bad rows trip `bad_data`), a silent feed (`stale_feed`), a lost
    exchange (`gateway_lost`), replies or reports that do not fit (`reconcile`), the journal
    (`journal_lost`), and its heartbeats to the exchange. `holding` says which of these
    conditions still hold, for a resume."""

    def __init__(self, link: _Link, kill: KillSwitch) -> None:
        self.link, self.kill = link, kill
        self.stale_ns = kill.stale_feed_ms * 1e6 if kill.stale_feed_ms else 0.0
        self.malformed_seen = 0
        self.bad_seen = 0
        self.next_bad_event = 0
        self.stale_tripped = False
        self.gateway_tripped = False

    def turn(self) -> bool:
        """One look around; True when the journal is lost (the session must stop)."""
        link = self.link
        session, journal, sub, gw = link.session, link.journal, link.sub, link.gw
        link.rates.note(link.summary.orders)
        if journal.failure is not None:
            session.trip("journal_lost", 0.0, 0.0)
            link.transitions()
            return True
        bad = sum(sub.malformed.values())
        if bad > self.malformed_seen:  # counted, dropped, and journaled
            journal.event(time.time_ns(), "malformed", {
                "count": bad - self.malformed_seen,
                "latest": list(sub.recent_malformed)[-(bad - self.malformed_seen):],
            })  # fmt: skip
            self.malformed_seen = bad
        self._bad_rows()
        silent = sub.silent_for_ns()
        if self.stale_ns and silent > self.stale_ns:
            if not self.stale_tripped:
                session.trip("stale_feed", silent / 1e6, self.stale_ns / 1e6)
                self.stale_tripped = True
        else:
            self.stale_tripped = False
        if gw is not None:
            gw.heartbeat_if_quiet()
            lost = gw.lost(self.kill.gateway_timeout_ms, self.kill.ack_timeout_ms)
            if lost and not self.gateway_tripped:
                session.trip("gateway_lost", lost[0], lost[1])
            self.gateway_tripped = bool(lost)
            link.check_gateway()
        link.transitions()
        return False

    def last_look(self) -> None:
        """At a stop: journal what is still to journal (bad rows of the last 100 ms)."""
        self.next_bad_event = 0
        self._bad_rows()

    def _bad_rows(self) -> None:
        """New bad rows journaled (at most every 100 ms: a steady stream of them must not
        flood the journal), and their rate judged."""
        link = self.link
        dropped = link.screen.dropped + link.bad_reports
        now = time.monotonic_ns()
        if dropped == self.bad_seen or now < self.next_bad_event:
            return
        self.next_bad_event = now + _BAD_EVENT_NS
        link.journal.event(time.time_ns(), "bad_data", {
            "rows": dropped - self.bad_seen, "by_reason": dict(link.screen.bad),
            "bad_reports": link.bad_reports, "latest": list(link.screen.samples),
        })  # fmt: skip
        link.screen.samples.clear()
        self.bad_seen = dropped
        limit = self.kill.max_bad_rows_per_sec
        rate = link.bad_rate.last_second()
        if limit and rate > limit:
            link.session.trip("bad_data", rate, limit)

    def vitals(self, instrument: int = -1) -> Vitals:
        """What the session sees outside its loop now (cancels: of one instrument, or all)."""
        link = self.link
        gw = link.gw
        now = time.monotonic_ns()
        return Vitals(
            feed_silent_ms=link.sub.silent_for_ns() / 1e6,
            feed_in_sequence=link.sub.in_sequence,
            exchange=gw is not None,
            exchange_silent_ms=(now - gw.last_heard_ns) / 1e6 if gw is not None else 0.0,
            oldest_unanswered_ms=gw.oldest_unanswered_ms() if gw is not None else 0.0,
            requests_in_flight=len(gw.in_flight) if gw is not None else 0,
            unconfirmed_cancels=link.session.unconfirmed_cancels(instrument),
            bad_rows_last_s=link.bad_rate.last_second(),
            journal_failure=link.journal.failure,
        )

    def holding(self, instrument: int) -> list[str]:
        """The conditions outside the loop that still hold (for `Session.resume`)."""
        return holding(self.vitals(instrument), self.kill)


class _Link:
    """Moves a live session's batches and orders: market data from the feed through the
    boundary's checks and the loop, its orders and cancels to the exchange (when there is
    one), the exchange's reports back into the loop; all of it journaled."""

    def __init__(self, session: Session, journal: Journal, gw: Gateway | None, sub: Subscriber,
                 summary: LiveSummary, config: SessionConfig) -> None:  # fmt: skip
        self.session = session
        self.journal = journal
        self.gw = gw
        self.sub = sub
        self.summary = summary
        self.kinds = session.strategy.kinds
        # The clock is the wall clock, or with a feed latency set the data's own (a replay).
        self.screen = Screen(session.instruments, config.killswitch.max_ts_skew_ms * 1e6,
                             config.killswitch.max_ts_ahead_ms * 1e6,
                             wall_clock=config.feed_latency_us < 0)  # fmt: skip
        self.known = session.instruments.known_mask()
        self.journal_tripped = False
        self.bad_rate = BadRowRate()
        self.bad_reports = 0  # exchange report rows no engine may book
        self.ignored: Counter[str] = Counter()  # rows of market kinds the strategy does not take
        self.latencies = _Ring()
        self.tick_to_order = _Ring()
        self.rates = _Rates()
        self.mismatches_seen = 0
        self.lost_reports_seen = 0
        self.gaps_seen = 0
        self.percentiles_due = 0
        self.percentiles: dict[str, Any] = {}

    def market(self, sub: Subscriber, group: int) -> None:
        """Every market message waiting (up to `group`), as few compiled calls as their kinds
        allow: consecutive messages of one kind run as one batch."""
        if self.journal.failure is not None and not self.journal_tripped:
            # (before anything more is sent: the watch stops the session at its next look)
            self.session.trip("journal_lost", 0.0, 0.0)
            self.journal_tripped = True
            self.flush()
        for run in wire.runs(sub.take(group)):
            self._run(run)

    def _run(self, packets: Sequence[wire.Packet]) -> None:
        """Messages of one kind: stamped on arrival, checked at the boundary, through the
        loop as one batch, orders out, journaled."""
        kind = packets[0].schema
        rows = sum(p.rows for p in packets)
        if kind not in MARKET_DTYPES:  # (an `orders` batch on a feed: not market data)
            self.screen.wrong_kind(kind, rows)
            self.bad_rate.add(rows)
        elif kind not in self.kinds:  # a feed may carry kinds this strategy does not take
            if not self.ignored[kind]:
                self.journal.event(time.time_ns(), "ignored", {"kind": kind, "takes": self.kinds})
            self.ignored[kind] += rows
        else:
            columns = wire.gather(packets)
            now = time.time_ns()
            if "ts_recv" in columns:  # when this engine received it: the feed latency it sees
                columns["ts_recv"] = np.full(rows, now, dtype=np.int64)
            before = self.screen.dropped
            good = self.screen.good(kind, columns, now)
            self.bad_rate.add(self.screen.dropped - before)
            result = self.session.on_batch(kind, good)
            self.summary.loop_calls += 1
            self.summary.events += result.events
            self._out(result, min(p.send_ts for p in packets))
        sent = np.fromiter((p.send_ts for p in packets), dtype=np.int64, count=len(packets))
        self.latencies.add_many((time.time_ns() - sent) / 1e3)
        self.summary.batches += len(packets)

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
        self.transitions()

    def transitions(self) -> None:
        """Journal every change of trading state the session made since the last call."""
        for change in self.session.take_transitions():
            self.journal.event(change["ts"], "transition", change)

    def flush(self) -> None:
        """Send and journal what kernels logged between batches (a halt's cancels)."""
        self._out(self.session.drain_logs())

    def commit(self) -> None:
        if self.journal.pending:
            self.journal.commit()  # (its writer makes it durable, in order)

    def gaps(self) -> None:
        """Feed messages lost on the wire trip `seq_gap` (before anything more is sent)."""
        sub = self.sub
        if len(sub.gaps) > self.gaps_seen:
            lost = sum(g.last - g.first + 1 for g in sub.gaps[self.gaps_seen :])
            self.gaps_seen = len(sub.gaps)
            self.session.trip("seq_gap", lost, 0.0)
            self.journal.event(time.time_ns(), "seq_gap", {"batches_lost": lost})
            self.flush()

    def reports(self, limit: int = 1_024) -> None:
        """Apply what the exchange sent (replies, fills, cancellations), as it came; rows no
        engine may book are dropped, and trip `reconcile`."""
        assert self.gw is not None
        known = self.known
        for _ in range(limit):
            message = self.gw.receive()
            if message is None:
                return
            if message.is_heartbeat:
                continue
            if message.schema not in ("fills", "orders"):
                self.gw.mismatches.append(f"the exchange sent {message.schema}")
                continue
            columns = message.columns
            impossible = impossible_rows(message.schema, columns, known)
            if impossible.any():
                self.bad_reports += int(impossible.sum())
                self.bad_rate.add(int(impossible.sum()))
                self.gw.mismatches.append(
                    f"{int(impossible.sum())} {message.schema} rows (seq {message.seq}) with "
                    "impossible values"
                )
                columns = {name: values[~impossible] for name, values in columns.items()}
            if message.schema == "fills":
                result = self.session.on_fills(columns)
            else:
                result = self.session.on_order_reports(columns)
            if self.session.mismatched.size:
                rows = self.session.mismatched[:20].tolist()
                self.journal.event(time.time_ns(), "reconcile", {
                    "report": message.schema, "seq": message.seq, "rows": rows,
                    "ids": columns["order_id" if message.schema == "fills" else "id"][
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

    def status(self) -> dict[str, Any]:
        """What only the live session knows, for `tickwise status`. Latency percentiles are
        worked out at most every 250 ms: a burst of status requests must not hold up the
        session (a percentile of a million samples takes tens of ms)."""
        summary, sub, gw = self.summary, self.sub, self.gw
        now = time.monotonic_ns()
        if now >= self.percentiles_due:
            self.percentiles_due = now + _STATUS_NS
            self.percentiles = {"latency_us": self.latencies.percentiles()}
            if gw is not None:
                self.percentiles["tick_to_order_us"] = self.tick_to_order.percentiles()
                self.percentiles["round_trip_us"] = gw.round_trip_percentiles()
        extra = {
            "batches": summary.batches, "feed_gaps": len(sub.gaps),
            "malformed": dict(sub.malformed), "bad_rows": dict(self.screen.bad),
            "bad_reports": self.bad_reports, "ignored": dict(self.ignored),
            "orders_sent": summary.orders, "fills": summary.fills,
            "orders_per_s": self.rates.per_second(summary.orders),
            "journal_failure": self.journal.failure, **self.percentiles,
        }  # fmt: skip
        if gw is not None:
            extra["gateway"] = _gateway_status(gw)
        return extra


def _no_quotes() -> dict[str, np.ndarray]:
    return {n: np.empty(0, QUOTE_DTYPE[n]) for n in QUOTE_DTYPE.names}


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
