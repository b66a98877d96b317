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
from typing import IO, Any

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
from tickwise.engine.live.events import EventLog, iso_time, open_log_file
from tickwise.engine.live.gateway import Gateway, impossible_rows
from tickwise.engine.live.journal import Journal
from tickwise.engine.live.metrics import (
    HISTOGRAMS,
    STATE_VALUES,
    Histogram,
    MetricsServer,
    Reading,
    parse_address,
)
from tickwise.engine.live.vitals import BadRowRate, Vitals, holding
from tickwise.engine.schemas import (
    FILL_DTYPE,
    LIQUIDITY_NAMES,
    MARKET_DTYPES,
    QUOTE_DTYPE,
    REASON_NAMES,
    SIDE_NAMES,
    STATUS_NAMES,
    STATUS_NEW,
    STATUS_REJECTED,
    TRIP_NAMES,
)
from tickwise.engine.session import Session
from tickwise.engine.states import STATE_NAMES, states_of
from tickwise.engine.strategy import load_strategy
from tickwise.feeds import wire
from tickwise.feeds.screen import Screen
from tickwise.feeds.transport import Subscriber

_LATENCY_KEEP = 1 << 20  # the latest per-batch latencies kept for percentiles
_GROUP = 256  # most feed messages taken in one turn (one commit of the journal)
STOP_WAIT_S = 2.0  # at a stop, how long to wait for the exchange to confirm the cancels
_WATCH_NS = 1_000_000  # the clock-driven checks and the control socket, at most this often
_BAD_EVENT_NS = 100_000_000  # bad rows journaled at most this often
_SECOND_NS = 1_000_000_000
_STATUS_NS = 250_000_000  # latency percentiles for status worked out at most this often
STATUS_SAMPLES = 10_000  # latencies a status's percentiles are of: the latest
_LOG_EVERY_NS = 1_000_000_000  # bad rows and malformed messages logged at most this often
SILENT_FEED_MS = 1_000.0  # a feed silent this long is said (when stale_feed_ms is off)
REJECT_STORM = 10  # rejects within a second that make a reject storm (said, not a trip)
REJECT_CALM_S = 5.0  # a storm is over after this long without a reject
FILLS_KEPT = 50  # recent fills a status shows
WORKING_SHOWN = 100  # working orders a status lists (newest first)
TRIPS_KEPT = 1_000  # changes of trading state a stop summary lists
# What labelled counters are served with from the start (at 0): every trigger but a stop, and
# every reason of a reject.
_TRIGGERS = tuple(t for t in TRIP_NAMES.values() if t not in ("none", "stop"))
_REJECT_REASONS = tuple(r for c, r in REASON_NAMES.items() if c)
FLATTEN_RETRY_S = 0.2  # a flatten not yet flat sends again once its orders are done ...
FLATTEN_ATTEMPTS = 10  # ... this many times at most, then says what is left
# The unit of a trip's value and limit, by trigger (engine.killswitch, engine.risk).
TRIP_UNITS = {
    "max_drawdown": " (price units)", "stale_feed": " ms", "seq_gap": " messages lost",
    "feed_latency": " ms", "reject_rate": " rejects/s", "runaway": " repeats",
    "gateway_lost": " ms", "bad_data": " rows/s", "reconcile": " rows",
}  # fmt: skip


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
    # Positions still open at the end (symbol -> quantity, average price, unrealised PnL),
    # and every change of trading state of the session, resumed ones too, in order.
    positions_left: dict[str, dict[str, float]] = field(default_factory=dict)
    trips: list[dict[str, Any]] = field(default_factory=list)
    # The latest per-batch processing times and per-message feed send -> journaled times (µs).
    batch_samples: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    latency_samples: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    status_answers: int = 0  # control requests answered (`status`, `top`, commands)
    events_logged: dict[str, int] = field(default_factory=dict)  # by event name
    alerts_not_sent: int = 0  # events the alert command failed on, or never got
    lines_dropped: int = 0  # log lines a stalled stderr or log file could not take
    log_file_failure: str | None = None


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

    def recent_percentiles(self, most: int = STATUS_SAMPLES) -> dict[str, float]:
        """Percentiles of the latest `most` values only: what a status shows (a percentile
        of a full ring, a million values, takes tens of ms the session would wait)."""
        n = min(self.count, self.values.size, most)
        if n == 0:
            return {}
        at = (self.count - n + np.arange(n)) % self.values.size
        return _percentiles(self.values[at], n)

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
    log_format: str = "text",
    log_file: Path | None = None,
    log_stream: IO[str] | None = None,
    on_event: str | None = None,
    metrics: str | None = None,
) -> LiveSummary:
    """Run a live session until SIGINT/SIGTERM, `seconds` of wall clock, or, with
    `until_idle_s`, that long without any message after the first batch. Every market message
    already waiting (up to `group`) runs through the loop together, in one compiled call per
    run of one kind, under one journal commit.

    Without `gateway`, orders fill in the loop's own simulated exchange (paper trading in
    process); with it, they go to the exchange process there (`tickwise exchange`), and
    what it reports comes back into the session. The journal records who started it
    (`operator`, the OS user by default). A journal that can no longer be written
    trips `journal_lost` and stops the session (`summary.journal_failure` says why).

    Events (`engine.live.events`) are logged one line each to `log_stream` (stderr) as
    `log_format` text or json, and to `log_file`; `on_event` is a shell command run with
    each event's JSON on stdin. `metrics` (HOST:PORT, loopback) serves Prometheus metrics
    (`engine.live.metrics`)."""
    if group < 1:
        raise TickwiseError(f"group must be at least 1, got {group}")
    for name, value in (("seconds", seconds), ("until_idle_s", until_idle_s)):
        if value is not None and not value > 0:
            raise TickwiseError(f"{name} must be positive, got {value}")
    if log_format not in ("text", "json"):
        raise TickwiseError(f"--log-format: got {log_format!r}; allowed: text, json")
    if on_event is not None and not on_event.strip():
        raise TickwiseError("--on-event needs a command (it gets each event's JSON on stdin)")
    if metrics is not None:
        parse_address(metrics)  # (refused before anything compiles)
    if log_file is not None:
        try:
            open_log_file(log_file).close()
        except OSError as exc:
            raise TickwiseError(f"--log-file {log_file}: {exc.strerror or exc}") from None
    who = default_operator() if operator is None else check_operator(operator)
    config = config or SessionConfig()
    if not config.killswitch.enabled:
        raise TickwiseError(
            "[killswitch] enabled = false is for research backtests; a live session always "
            "runs with the kill switch (switch single triggers off instead)"
        )
    started_ns = time.time_ns()
    strategy = load_strategy(strategy_spec)
    session = make_session(strategy, instruments, params, config)
    if gateway is not None:
        session.trade_through_gateway()
    # No tick pays for compiling, nor a person's kill, nor a trip seen between batches.
    warming = time.perf_counter()
    session.warm_up(strategy.kinds, reports=gateway is not None, controls=True)
    wire.warm_up()  # (nor a message, nor an order)
    Screen(instruments).good("quotes", _no_quotes(), 0)  # (nor the boundary's check)
    warm_s = time.perf_counter() - warming
    summary = LiveSummary()
    # Everything that can refuse the start comes before the journal, which is opened last:
    # a refused start leaves no segment behind.
    with contextlib.ExitStack() as stack:
        sub = stack.enter_context(Subscriber(feed))
        gw = stack.enter_context(_linked(gateway, gateway_heartbeat_ms))
        server = ControlServer(session, control)
        stack.callback(server.close)
        link_box: list[_Link] = []
        scraped = None
        if metrics is not None:
            scraped = MetricsServer(metrics, lambda: link_box[0].reading() if link_box else None)
            stack.callback(scraped.close)
        journal = stack.enter_context(Journal(journal_dir, instruments, background=True))
        events = EventLog(journal, log_format=log_format, stream=log_stream, log_file=log_file,
                          on_event=on_event)  # fmt: skip
        stack.callback(events.close)
        about = {
            "strategy": strategy.name(), "params": session.params, "feed": feed,
            "gateway": gateway, "control": server.endpoint, "pid": os.getpid(),
            "operator": who, "metrics": scraped.url if scraped else None,
            "started_ns": started_ns,
        }  # fmt: skip
        link = _Link(session, journal, gw, sub, summary, config, events, about)
        link_box.append(link)
        where = f"orders to {gateway}" if gateway else "orders filled in process"
        events.emit("start", f"{strategy.name()} {_params_text(session.params)} on {feed}, "
                    f"{where}, control on {server.endpoint}"
                    + (f", metrics on {scraped.url}" if scraped else "")
                    + f", operator {who}", ts=started_ns, **about)  # fmt: skip
        events.emit("warmed_up", f"compiled code loaded and run once in {warm_s:.2f} s (wall "
                    "clock): no tick pays for compiling", seconds=round(warm_s, 3))  # fmt: skip
        watch = _Watch(link, config.killswitch)
        session.outside_conditions = watch.holding
        session.outside_faults = watch.faults
        if config.feed_latency_us < 0:  # (a replay's clock is its data's: kept as it is)
            session.clock = time.time_ns
        server.extra_status = link.status
        server.on_command = link.command
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
    summary.batch_samples = link.batch_us.samples()
    summary.latency_samples = link.latencies.samples()
    summary.status_answers = server.answered
    summary.events_logged = dict(events.counts)
    summary.alerts_not_sent = events.alerts_not_sent
    summary.lines_dropped = events.lines_dropped
    summary.log_file_failure = events.log_file_failure
    return summary


def _params_text(params: dict[str, Any]) -> str:
    return "(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")"


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
                link.check_flatten()
                link.flush()  # what a person's command or a trip sent (cancels, a flatten)
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
    session, summary, events = link.session, link.summary, link.events
    link.stopping = True
    summary.status = session.status()
    summary.cancelled_on_stop = session.open_orders
    if session.open_orders:
        session.trip("stop", summary.cancelled_on_stop, 0.0)
        events.emit("stop", f"stopping ({summary.stopped_by}): cancelling "
                    f"{summary.cancelled_on_stop:,} resting order(s)",
                    cancelled=summary.cancelled_on_stop)  # fmt: skip
    link.flush()
    if link.gw is not None:
        link.settle(STOP_WAIT_S)
    summary.left_open = session.open_orders
    link.transitions()
    summary.positions_left = link.positions_open()
    summary.trips = list(link.trip_history)
    held = ", ".join(f"{sym} {p['qty']:,.10g} @ {p['avg_px']:,.10g}"
                     for sym, p in summary.positions_left.items())  # fmt: skip
    automatic = [t for t in summary.trips if t["trigger"] not in ("manual", "stop")]
    events.emit("end", f"stopped by {summary.stopped_by}: {summary.events:,} events, "
                f"{summary.orders:,} orders, {summary.fills:,} fills, PnL {session.pnl():,.2f} "
                f"(price units); positions left open: {held or 'none'}; kill-switch trips: "
                f"{len(automatic)}" + (f" ({_trips_text(automatic)})" if automatic else ""),
                "warning" if summary.positions_left or summary.left_open else "info",
                stopped_by=summary.stopped_by, events=summary.events, orders=summary.orders,
                fills=summary.fills, left_open=summary.left_open,
                state=session.status()["state"], positions_left=summary.positions_left,
                trips=summary.trips[-50:])  # fmt: skip
    link.commit()
    link.journal.flush()


def _trips_text(trips: list[dict[str, Any]], most: int = 5) -> str:
    said = [f"{t['trigger']} ({t['instrument'] or t['scope']})" for t in trips[-most:]]
    return ", ".join(said) if len(trips) <= most else f"... {', '.join(said)}"


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
        # A silence is said (an event) from the stale threshold, or a second with it off.
        self.silent_said_ns = self.stale_ns or SILENT_FEED_MS * 1e6
        self.malformed_seen = 0
        self.malformed_logged = 0
        self.next_malformed_log = 0
        self.bad_seen = 0
        self.bad_logged = 0
        self.next_bad_event = 0
        self.next_bad_log = 0
        self.stale_tripped = False
        self.gateway_tripped = False
        self.feed_silent_since = 0  # monotonic ns when a silence was said (0: not silent)
        self.exchange_lost = False
        self.rejects = deque[tuple[int, int]]()  # (monotonic ns, rejects so far), last second
        self.storm_since = 0  # rejects count when a storm was said (-1: no storm)
        self.storm = False
        self.last_reject_ns = 0

    def turn(self) -> bool:
        """One look around; True when the journal is lost (the session must stop)."""
        link = self.link
        session, journal, sub, gw = link.session, link.journal, link.sub, link.gw
        link.rates.note(link.summary.orders)
        link.catch_up()
        link.events.pump()
        if journal.failure is not None:
            session.trip("journal_lost", 0.0, 0.0)
            link.transitions()
            link.events.emit("journal_lost", f"the journal in {journal.folder} can no longer "
                             f"be written ({journal.failure}): halted, stopping", "critical",
                             failure=journal.failure)  # fmt: skip
            return True
        self._malformed()
        self._bad_rows()
        self._rejects()
        silent = sub.silent_for_ns()
        if self.stale_ns and silent > self.stale_ns:
            if not self.stale_tripped:
                session.trip("stale_feed", silent / 1e6, self.stale_ns / 1e6)
                self.stale_tripped = True
        else:
            self.stale_tripped = False
        self._silence(silent)
        if gw is not None:
            gw.heartbeat_if_quiet()
            lost = gw.lost(self.kill.gateway_timeout_ms, self.kill.ack_timeout_ms)
            if lost and not self.gateway_tripped:
                session.trip("gateway_lost", lost[0], lost[1])
            self.gateway_tripped = bool(lost)
            self._exchange(lost)
            link.check_gateway()
        link.transitions()
        return False

    def last_look(self) -> None:
        """At a stop: journal what is still to journal (bad rows of the last 100 ms)."""
        self.next_bad_event = 0
        self.next_bad_log = 0
        self.next_malformed_log = 0
        self._malformed()
        self._bad_rows()
        self.link.catch_up()
        self.link.events.pump()

    def _malformed(self) -> None:
        """Malformed feed messages: each journaled (counted, dropped), logged at most once a
        second."""
        link, sub = self.link, self.link.sub
        bad = sum(sub.malformed.values())
        if bad > self.malformed_seen:
            link.journal.event(time.time_ns(), "malformed", {
                "count": bad - self.malformed_seen,
                "latest": list(sub.recent_malformed)[-(bad - self.malformed_seen):],
            })  # fmt: skip
            self.malformed_seen = bad
        now = time.monotonic_ns()
        if bad > self.malformed_logged and now >= self.next_malformed_log:
            self.next_malformed_log = now + _LOG_EVERY_NS
            link.events.emit("malformed", f"{bad - self.malformed_logged:,} malformed feed "
                             f"message(s) dropped (by reason: {_counts_text(sub.malformed)}); "
                             f"latest: {sub.recent_malformed[-1] if sub.recent_malformed else '-'}",
                             "warning", journal=False, count=bad - self.malformed_logged,
                             by_reason=dict(sub.malformed))  # fmt: skip
            self.malformed_logged = bad

    def _bad_rows(self) -> None:
        """New bad rows journaled (at most every 100 ms: a steady stream of them must not
        flood the journal) and logged (at most once a second), and their rate judged."""
        link = self.link
        dropped = link.screen.dropped + link.bad_reports
        now = time.monotonic_ns()
        if dropped > self.bad_logged and now >= self.next_bad_log:
            self.next_bad_log = now + _LOG_EVERY_NS
            reports = f", exchange reports {link.bad_reports:,}" if link.bad_reports else ""
            link.events.emit("bad_data", f"{dropped - self.bad_logged:,} bad row(s) dropped at "
                             f"the boundary (by reason: {_counts_text(link.screen.bad)}"
                             f"{reports})", "warning", journal=False,
                             rows=dropped - self.bad_logged,
                             by_reason=dict(link.screen.bad))  # fmt: skip
            self.bad_logged = dropped
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

    def _rejects(self) -> None:
        """A reject storm (REJECT_STORM rejects within a second) is said once, with the
        reasons, and its end after REJECT_CALM_S without a reject (the kill switch's own
        `max_rejects_per_sec` trips on its own)."""
        link = self.link
        count = link.summary.rejects
        now = time.monotonic_ns()
        if not self.rejects or count != self.rejects[-1][1]:
            self.rejects.append((now, count))
            if len(self.rejects) > 1:
                self.last_reject_ns = now
        while len(self.rejects) > 1 and now - self.rejects[1][0] > _SECOND_NS:
            self.rejects.popleft()  # (the first kept: the latest count a second old or more)
        in_second = count - self.rejects[0][1]
        if not self.storm and in_second >= REJECT_STORM:
            self.storm, self.storm_since = True, count - in_second
            reasons = link.rejects_by_reason()
            link.events.emit("reject_storm", f"{in_second:,} orders rejected within a second "
                             f"(by reason, session so far: {_counts_text(reasons)})", "warning",
                             rejects=in_second, by_reason=reasons)  # fmt: skip
        elif self.storm and now - self.last_reject_ns > REJECT_CALM_S * 1e9:
            self.storm = False
            link.events.emit("rejects_calm", f"no reject for {REJECT_CALM_S:g} s: the storm "
                             f"is over ({count - self.storm_since:,} rejected in it)",
                             rejects=count - self.storm_since)  # fmt: skip

    def _silence(self, silent_ns: int) -> None:
        """The feed silent past the stale threshold (or a second) is said once; its return
        too, with how long it was silent."""
        now = time.monotonic_ns()
        if silent_ns > self.silent_said_ns and self.link.summary.batches:
            if not self.feed_silent_since:
                self.feed_silent_since = now - silent_ns
                self.link.events.emit("feed_silent", f"no message or heartbeat from the feed "
                                      f"for {silent_ns / 1e6:,.0f} ms", "critical"
                                      if self.stale_ns else "warning",
                                      silent_ms=silent_ns / 1e6)  # fmt: skip
        elif self.feed_silent_since and silent_ns < self.silent_said_ns:
            was = (now - silent_ns - self.feed_silent_since) / 1e6
            self.feed_silent_since = 0
            self.link.events.emit("feed_back", f"the feed is heard again after {was:,.0f} ms "
                                  "of silence", silent_ms=was)  # fmt: skip

    def _exchange(self, lost: tuple[float, float] | None) -> None:
        """The exchange lost (silent or a request unanswered past its bound), and back."""
        gw = self.link.gw
        assert gw is not None
        if lost and not self.exchange_lost:
            self.exchange_lost = True
            self.link.events.emit("exchange_lost", f"the exchange at {gw.endpoint} is lost: "
                                  f"{lost[0]:,.0f} ms (limit {lost[1]:,.0f} ms) without an "
                                  "answer", "critical", waited_ms=lost[0],
                                  limit_ms=lost[1])  # fmt: skip
        elif not lost and self.exchange_lost and not gw.in_flight:
            self.exchange_lost = False
            self.link.events.emit("exchange_back", f"the exchange at {gw.endpoint} answers "
                                  "again")  # fmt: skip

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

    def faults(self, instrument: int) -> list[str]:
        """Of those, what says the feed or the exchange cannot be trusted now (for
        `Session.flatten`)."""
        return holding(self.vitals(instrument), self.kill, data_only=True)


class _Link:
    """Moves a live session's batches and orders: market data from the feed through the
    boundary's checks and the loop, its orders and cancels to the exchange (when there is
    one), the exchange's reports back into the loop; all of it journaled."""

    def __init__(self, session: Session, journal: Journal, gw: Gateway | None, sub: Subscriber,
                 summary: LiveSummary, config: SessionConfig, events: EventLog | None = None,
                 about: dict[str, Any] | None = None) -> None:  # fmt: skip
        self.session = session
        self.journal = journal
        self.events = events or EventLog(journal, stream=open(os.devnull, "w"))  # noqa: SIM115
        self.about = about or {}
        self.started_ns = int(self.about.get("started_ns") or time.time_ns())
        self.gw = gw
        self.sub = sub
        self.summary = summary
        self.kinds = session.strategy.kinds
        # The clock is the wall clock, or with a feed latency set the data's own (a replay).
        self.screen = Screen(session.instruments, config.killswitch.max_ts_skew_ms * 1e6,
                             config.killswitch.max_ts_ahead_ms * 1e6,
                             wall_clock=config.feed_latency_us < 0)  # fmt: skip
        self.known = session.instruments.known_mask()
        self.kill = config.killswitch
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
        self.batch_us = _Ring()  # per compiled call: boundary, loop, orders out, journal queued
        # Order events by status and rejects by reason (indexed by their codes).
        self.by_status = np.zeros(max(STATUS_NAMES) + 1, dtype=np.int64)
        self.by_reason = np.zeros(max(REASON_NAMES) + 1, dtype=np.int64)
        self.fills_seen = np.empty(0, dtype=FILL_DTYPE)  # the latest FILLS_KEPT fills
        self.trip_history: deque[dict[str, Any]] = deque(maxlen=TRIPS_KEPT)
        self.trips_by_trigger: Counter[str] = Counter()
        self.histograms = {name: Histogram() for name in HISTOGRAMS}
        self.first_batch = False
        self.flattening: dict[int, dict[str, Any]] = {}  # by scope: flattens not yet flat
        self.jobs = 0  # flattens asked so far (each event of one names its job)
        self.refusals: dict[str, tuple[int, int]] = {}  # command -> (last said, not said since)
        self.stopping = False  # (set at the stop: metrics say so)
        self._ids = {inst.symbol: inst.id for inst in session.instruments}

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
                self.events.emit("ignored", f"the feed sends {kind}, which "
                                 f"{self.session.strategy.name()} does not take "
                                 f"({', '.join(self.kinds)}): counted and ignored", kind=kind,
                                 takes=self.kinds)  # fmt: skip
            self.ignored[kind] += rows
        else:
            began = time.perf_counter_ns()
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
            self.batch_us.add((time.perf_counter_ns() - began) / 1e3)
            if not self.first_batch:
                self.first_batch = True
                self.events.emit("first_batch", f"first market data: {kind}, {rows:,} row(s), "
                                 f"{(time.time_ns() - self.started_ns) / 1e9:,.2f} s after "
                                 "the start", kind=kind, rows=rows)  # fmt: skip
        sent = np.fromiter((p.send_ts for p in packets), dtype=np.int64, count=len(packets))
        self.latencies.add_many((time.time_ns() - sent) / 1e3)
        self.summary.batches += len(packets)

    def _out(self, result: Any, feed_send_ts: int | None = None) -> None:
        """Send what the loop produced to the exchange first (latency), then journal it."""
        status = result.orders["status"]
        if status.size:
            self.by_status += np.bincount(status, minlength=self.by_status.size)[
                : self.by_status.size
            ]
            self.summary.orders = int(self.by_status[STATUS_NEW])
            rejected = int(self.by_status[STATUS_REJECTED]) - self.summary.rejects
            if rejected:
                reasons = result.orders["reason"][status == STATUS_REJECTED]
                self.by_reason += np.bincount(reasons.clip(0, self.by_reason.size - 1),
                                              minlength=self.by_reason.size)  # fmt: skip
                self.summary.rejects += rejected
        if len(result.fills):
            self.summary.fills += len(result.fills)
            self.fills_seen = np.concatenate([self.fills_seen, result.fills])[-FILLS_KEPT:]
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
        """Journal every change of trading state the session made since the last call, and
        log the kill switch's own (a person's are logged as their commands)."""
        for change in self.session.take_transitions():
            self.journal.event(change["ts"], "transition", change)
            self.trip_history.append(change)
            stricter = STATE_VALUES[change["to"]] > STATE_VALUES[change["from"]]
            if stricter and change["trigger"] != "stop":  # (a stop is the session ending)
                self.trips_by_trigger[change["trigger"]] += 1
            if change["trigger"] in ("manual", "stop"):
                continue
            on = f" on {change['instrument']}" if change["instrument"] else ""
            self.events.emit(
                "trip", f"kill switch tripped by {change['trigger']}{on}: "
                f"{self._figures(change)}; {change['scope']} "
                f"{change['from'].upper()} -> {change['to'].upper()}",
                "critical" if change["to"] == "halted" else "warning", journal=False,
                **change,
            )  # fmt: skip

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
            self.events.emit("seq_gap", f"{lost:,} feed message(s) lost on the wire (sequence "
                             f"numbers {sub.gaps[-1].first:,}..{sub.gaps[-1].last:,} missing)",
                             "critical", batches_lost=lost)  # fmt: skip
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
                self.events.emit("reconcile", f"{len(self.session.mismatched):,} {message.schema} "
                                 f"report row(s) from the exchange (seq {message.seq}) do not "
                                 "fit what was sent", "critical", report=message.schema,
                                 seq=message.seq, rows=rows,
                                 ids=columns["order_id" if message.schema == "fills" else "id"][
                                     self.session.mismatched[:20]].tolist())  # fmt: skip
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
            self.events.emit("reconcile", f"{len(news):,} exchange repl(ies) do not fit their "
                             f"request: {news[-1]}", "critical", replies=news[:20])  # fmt: skip
        if gw.lost_reports > self.lost_reports_seen:
            lost = gw.lost_reports - self.lost_reports_seen
            self.lost_reports_seen = gw.lost_reports
            self.session.trip("reconcile", lost, 0.0)
            self.events.emit("reconcile", f"{lost:,} message(s) from the exchange lost on the "
                             "wire: what it holds is not known", "critical",
                             exchange_messages_lost=lost)  # fmt: skip

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
        """What only the live session knows, for `tickwise status` and `top`. Latency
        percentiles are of the latest STATUS_SAMPLES samples, worked out at most every 250
        ms: a status, four a second from `top`, must not hold up the session (a percentile
        of a full ring, a million samples, took tens of ms)."""
        summary, sub, gw = self.summary, self.sub, self.gw
        now = time.monotonic_ns()
        if now >= self.percentiles_due:
            self.percentiles_due = now + _STATUS_NS
            self.percentiles = {
                "latency_us": self.latencies.recent_percentiles(),
                "batch_us": self.batch_us.recent_percentiles(),
            }
            if gw is not None:
                self.percentiles["tick_to_order_us"] = self.tick_to_order.recent_percentiles()
                self.percentiles["round_trip_us"] = gw.round_trip_percentiles(STATUS_SAMPLES)
        about = self.about
        extra = {
            "strategy": about.get("strategy"), "params": about.get("params"),
            "started_by": about.get("operator"), "metrics": about.get("metrics"),
            "started": _iso(self.started_ns), "uptime_s": (time.time_ns() - self.started_ns) / 1e9,
            "batches": summary.batches, "feed_gaps": len(sub.gaps),
            "malformed": dict(sub.malformed), "bad_rows": dict(self.screen.bad),
            "bad_reports": self.bad_reports, "ignored": dict(self.ignored),
            "orders_sent": summary.orders, "fills": summary.fills,
            "orders_by_status": self.orders_by_status(),
            "rejects_by_reason": self.rejects_by_reason(),
            "orders_per_s": self.rates.per_second(summary.orders),
            "journal_failure": self.journal.failure, **self.percentiles,
            "by_instrument": self.by_instrument(),
            "working_orders": self.working_orders(),
            "recent_fills": self.recent_fills(),
            "events_log": self.events.recent_dicts(),
            "feed": {
                "endpoint": about.get("feed"), "silent_ms": sub.silent_for_ns() / 1e6,
                "gaps": len(sub.gaps), "heartbeats": sub.heartbeats,
                "malformed": sum(sub.malformed.values()), "in_sequence": sub.in_sequence,
            },
        }  # fmt: skip
        if gw is not None:
            extra["gateway"] = _gateway_status(gw)
        return extra

    def _figures(self, change: dict[str, Any]) -> str:
        """A trip's value and limit, with their unit."""
        trigger, value, limit = change["trigger"], change["value"], change["limit"]
        unit = TRIP_UNITS.get(trigger, "")
        if trigger == "price_jump":
            unit = "%" if limit == self.kill.price_jump_pct else "sigmas"
        if trigger == "max_loss":
            return f"PnL {value:,.2f} below {limit:,.2f} (price units)"
        if not limit and not value:
            return "no figures"
        return f"value {value:,.6g}{unit}, limit {limit:,.6g}{unit}"

    # --- what people and scrapers read -----------------------------------------------------

    def command(self, cmd: str, detail: dict[str, Any]) -> None:
        """A person's command took effect (or was refused): logged and journaled, naming the
        operator. A flatten starts a job (`check_flatten`) that the event names; a kill or a
        resume ends every flatten still going (the person has taken the lever back)."""
        who = detail.get("operator") or "an unnamed operator"
        scope = detail.get("instrument") or "the session"
        why = f": {detail['reason']}" if detail.get("reason") else ""
        extra: dict[str, Any] = {}
        if cmd == "flatten":
            orders = detail.get("orders") or {}
            said = ", ".join(
                f"{sym} {row['position']:,.10g}"
                + (f" (not sent: {row['refused']})" if row["refused"] else "")
                for sym, row in orders.items()
            )
            state = "REDUCING" if self.session.status()["state"] != "halted" else "HALTED (kept)"
            message = (f"{scope} flattening by {who}{why}: {state}, working orders cancelled, "
                       f"closing {said or 'nothing (flat already)'}")  # fmt: skip
            level = "warning"
            symbol = detail.get("instrument")
            where = -1 if symbol is None else self._ids[symbol]
            if where in self.flattening:
                self._end_flatten(self.flattening[where], "flatten_stopped",
                                  "replaced by a new flatten", "warning")  # fmt: skip
            self.jobs += 1
            extra["job"] = self.jobs
            self.flattening[where] = {
                "job": self.jobs, "scope": where, "began": time.monotonic(),
                "sent": time.monotonic(), "attempts": 1, "closing": list(orders), "who": who,
            }  # fmt: skip
        elif cmd in ("kill", "resume"):
            for job in list(self.flattening.values()):
                self._end_flatten(job, "flatten_stopped", f"ended by {who}'s {cmd}", "warning")
            if cmd == "kill":
                message = f"{scope} {str(detail.get('state')).upper()} by {who}{why}"
                level = "critical"
            else:
                message = f"{scope} resumed to {str(detail.get('state')).upper()} by {who}{why}"
                level = "warning"
        elif cmd.endswith("_refused"):
            # A flood of refused requests (anyone on this machine may send them) is said at
            # most once a second per command: the journal and the alerts stay readable.
            now = time.monotonic_ns()
            last, quiet = self.refusals.get(cmd, (0, 0))
            if now - last < _SECOND_NS:
                self.refusals[cmd] = (last, quiet + 1)
                return
            self.refusals[cmd] = (now, 0)
            more = f" ({quiet:,} more refused in the second before)" if quiet else ""
            message = (f"{cmd.removesuffix('_refused')} by {who} refused: "
                       f"{detail.get('error')}{more}")  # fmt: skip
            level = "warning"
        else:
            message = f"{cmd} by {who}: {scope}{why}"
            level = "warning"
        self.events.emit(cmd, message, level, **detail, **extra)

    def _end_flatten(self, job: dict[str, Any], name: str, why: str, level: str) -> None:
        del self.flattening[job["scope"]]
        where = "the session" if job["scope"] < 0 else self.session.instruments.symbol(job["scope"])
        left = {k: v for k, v in self.positions_open().items() if job["scope"] < 0 or k == where}
        held = ", ".join(f"{k} {v['qty']:,.10g}" for k, v in left.items()) or "nothing"
        self.events.emit(name, f"flatten of {where} {why}; left open: {held}", level,
                         job=job["job"], scope=where, left=left)  # fmt: skip

    def check_flatten(self) -> None:
        """Each person's flatten still going, until its scope is flat: said once flat (with
        its job); while a position is left and nothing of the scope works (IOCs: filled what
        they could; cancels: confirmed), sent again every FLATTEN_RETRY_S, at most
        FLATTEN_ATTEMPTS times; a data fault meanwhile stops it, said with its reason."""
        for job in list(self.flattening.values()):
            self._check_flatten(job)

    def _check_flatten(self, job: dict[str, Any]) -> None:
        scope, session = job["scope"], self.session
        faults = session.data_faults(scope)
        if faults:  # (its orders may never be answered: it ends now, saying why)
            self._end_flatten(job, "flatten_stopped", f"stopped: {'; '.join(faults)}",
                              "critical")  # fmt: skip
            return
        ctx = session.ctx
        lots = ctx.portfolio["lots"] if scope < 0 else ctx.portfolio["lots"][scope : scope + 1]
        working = ctx.open_orders[: session.open_orders]["instrument"]
        working = working.size if scope < 0 else int(np.count_nonzero(working == scope))
        now = time.monotonic()
        where = "the session" if scope < 0 else session.instruments.symbol(scope)
        if not lots.any() and not working:
            del self.flattening[scope]
            took = (now - job["began"]) * 1e3
            state = (
                session.status()["state"] if scope < 0 else STATE_NAMES[int(states_of(ctx)[scope])]
            )
            self.events.emit("flat", f"{where} is flat: {', '.join(job['closing']) or 'nothing'}"
                             f" closed in {took:,.0f} ms (wall clock, {job['attempts']} "
                             f"round(s) of orders); it stays {state.upper()} until a person "
                             "resumes",
                             job=job["job"], scope=where, ms=took,
                             attempts=job["attempts"])  # fmt: skip
            return
        if working or now - job["sent"] < FLATTEN_RETRY_S:
            return
        if job["attempts"] >= FLATTEN_ATTEMPTS:
            self._end_flatten(job, "flatten_incomplete", f"not flat after {job['attempts']} "
                              "round(s) of orders (no liquidity inside the price collar?)",
                              "critical")  # fmt: skip
            return
        try:
            session.flatten(None if scope < 0 else scope)
        except TickwiseError as exc:
            self._end_flatten(job, "flatten_stopped", f"stopped: {exc}", "critical")
            return
        job["attempts"] += 1
        job["sent"] = now
        self.flush()

    def catch_up(self) -> None:
        """Bring the metrics' histograms up to date with the latency rings (each turn of
        the watch: one vectorised step per histogram, nothing per batch)."""
        h = self.histograms
        h["tickwise_feed_to_order_seconds"].catch_up(self.tick_to_order.values,
                                                     self.tick_to_order.count)  # fmt: skip
        h["tickwise_batch_seconds"].catch_up(self.batch_us.values, self.batch_us.count)
        h["tickwise_feed_to_journal_seconds"].catch_up(self.latencies.values,
                                                       self.latencies.count)  # fmt: skip
        if self.gw is not None:
            h["tickwise_order_to_ack_seconds"].catch_up(self.gw.round_trips_us, self.gw.replies)

    def orders_by_status(self) -> dict[str, int]:
        return {STATUS_NAMES[c]: int(n) for c, n in enumerate(self.by_status) if n and c in
                STATUS_NAMES}  # fmt: skip

    def rejects_by_reason(self) -> dict[str, int]:
        return {REASON_NAMES.get(c, f"reason {c}"): int(n) for c, n in enumerate(self.by_reason)
                if n}  # fmt: skip

    def by_instrument(self) -> list[dict[str, Any]]:
        """Each instrument's trading state (and the trigger behind it), position, average
        price, mark and PnL (price units: realised, unrealised at the mark, fees, net)."""
        ctx = self.session.ctx
        states = states_of(ctx)
        rows = []
        for inst in self.session.instruments:
            i = inst.id
            p, m, g = ctx.portfolio[i], ctx.market[i], ctx.inst_guard[i]
            bid, ask = float(m["bid_px"]), float(m["ask_px"])
            mark = 0.5 * (bid + ask) if bid == bid and ask == ask else float(m["last_px"])
            qty, avg = float(p["qty"]), float(p["avg_px"])
            unreal = qty * (mark - avg) if p["lots"] != 0 and mark == mark else 0.0
            realized, fees = float(p["realized"]), float(p["fees"])
            state = int(states[i])
            trigger = None
            if state:
                source = g if g["state"] >= ctx.guard[0]["state"] else ctx.guard[0]
                trigger = TRIP_NAMES.get(int(source["trip"]))
            rows.append({
                "symbol": inst.symbol, "state": STATE_NAMES[state], "trigger": trigger,
                "position": qty, "avg_px": avg if p["lots"] != 0 else None,
                "mark": mark if mark == mark else None, "realized": realized,
                "unrealized": unreal, "fees": fees, "pnl": realized + unreal - fees,
            })  # fmt: skip
        return rows

    def positions_open(self) -> dict[str, dict[str, float]]:
        """Positions not flat: symbol -> qty, avg_px, unrealized (for the stop summary)."""
        return {r["symbol"]: {"qty": r["position"], "avg_px": r["avg_px"],
                              "unrealized": r["unrealized"]}
                for r in self.by_instrument() if r["avg_px"] is not None}  # fmt: skip

    def working_orders(self, most: int = WORKING_SHOWN) -> list[dict[str, Any]]:
        """The orders working now, newest first: side, price (None: market), quantity, what
        is left of it (units), age (wall clock of the session's clock, ms), cancel asked."""
        ctx = self.session.ctx
        table = ctx.open_orders[: self.session.open_orders][::-1][:most]
        if not table.size:
            return []
        inst = ctx.instruments[table["instrument"]]
        div, lot = inst["unit_div"], inst["lot_size"]
        scale = np.where(div > 0, 1.0 / np.where(div > 0, div, 1.0), lot)
        now = self.session.clock() if self.session.clock else int(ctx.clock[0].recv)
        symbol = self.session.instruments.symbol
        return [
            {"id": int(o["id"]), "symbol": symbol(int(o["instrument"])),
             "side": SIDE_NAMES.get(int(o["side"]), "?"),
             "price": float(o["price"]) if o["price"] == o["price"] else None,
             "qty": float(o["lots"] * k), "left": float((o["lots"] - o["filled"]) * k),
             "age_ms": max(0.0, (now - int(o["ts"])) / 1e6), "cancelling": bool(o["cancel_ts"])}
            for o, k in zip(table, scale, strict=True)
        ]  # fmt: skip

    def recent_fills(self) -> list[dict[str, Any]]:
        """The latest fills, oldest first."""
        symbol = self.session.instruments.symbol
        return [
            {"ts": _iso(int(f["ts"])), "symbol": symbol(int(f["instrument"])),
             "side": SIDE_NAMES.get(int(f["side"]), "?"), "price": float(f["price"]),
             "qty": float(f["qty"]), "fee": float(f["fee"]),
             "liquidity": LIQUIDITY_NAMES.get(int(f["liquidity"]), "?"),
             "order_id": int(f["order_id"])}
            for f in self.fills_seen
        ]  # fmt: skip

    def reading(self) -> Reading:
        """What a metrics scrape reports (called from the metrics server's thread: it only
        reads, and copies what it reads)."""
        session, summary, sub, gw = self.session, self.summary, self.sub, self.gw
        rows = self.by_instrument()
        states = {"session": STATE_NAMES[int(session.ctx.guard[0]["state"])]}
        states |= {r["symbol"]: r["state"] for r in rows}
        logged = self.events.counts_by_level()
        about = self.about
        return Reading(
            info={"strategy": str(about.get("strategy")), "params":
                  _params_text(about.get("params") or {}), "feed": str(about.get("feed")),
                  "operator": str(about.get("operator"))},
            start_time_s=self.started_ns / 1e9, events=session.events, batches=summary.batches,
            fills=summary.fills, orders_by_status=dict.fromkeys(STATUS_NAMES.values(), 0)
            | self.orders_by_status(),
            rejects_by_reason=dict.fromkeys(_REJECT_REASONS, 0) | self.rejects_by_reason(),
            trips_by_trigger=dict.fromkeys(_TRIGGERS, 0) | dict(self.trips_by_trigger),
            malformed_by_reason=dict.fromkeys(wire.REASONS, 0) | dict(sub.malformed),
            bad_rows_by_reason=dict(self.screen.bad),
            log_events=logged, feed_gaps=len(sub.gaps), heartbeats=sub.heartbeats,
            states=states, positions={r["symbol"]: r["position"] for r in rows},
            pnl={r["symbol"]: r["pnl"] for r in rows},
            unrealized={r["symbol"]: r["unrealized"] for r in rows},
            open_orders=session.open_orders, feed_age_s=sub.silent_for_ns() / 1e9,
            exchange_age_s=None if gw is None else (time.monotonic_ns() - gw.last_heard_ns) / 1e9,
            requests_in_flight=0 if gw is None else len(gw.in_flight),
            histograms=self.histograms, stopping=self.stopping,
        )  # fmt: skip


def _iso(ts_ns: int) -> str:
    return iso_time(ts_ns)


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())) or "-"


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
