"""A live session: market data in over ZeroMQ, the compiled loop per received batch, the
kill switch driven also by the clock, the journal and the control socket.

Per received batch, Python does four things: stamp when it arrived (ts_recv),
run the session's compiled loop over it (the same loop as a backtest: with
the configured fee and latency models, orders fill against this live market
in the loop's simulated exchange: paper trading in process), journal what
the batch produced (durable before the next batch), and answer control
requests. Between batches it watches the feed itself: no message or
heartbeat for `stale_feed_ms` trips `stale_feed`, batches lost on the wire
(a gap in the message sequence) trip `seq_gap`.

A stop (SIGINT, SIGTERM, `seconds` or an idle feed when asked) cancels the
resting orders, commits the journal and returns a summary.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tickwise.backtest.replay import BacktestConfig, make_session
from tickwise.feeds.transport import Subscriber

from .control import DEFAULT_ENDPOINT, ControlServer
from .errors import TickwiseError
from .instruments import Instruments
from .journal import Journal
from .schemas import STATUS_NEW, STATUS_REJECTED, market_dtype
from .strategy import load_strategy

_LATENCY_KEEP = 1 << 20  # the latest per-batch latencies kept for percentiles
_GROUP = 256  # most batches between two commits of the journal


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
    wall_s: float = 0.0
    # Per batch, from the feed's send time to the batch's orders being out (journaled), µs.
    latency_us: dict[str, float] = field(default_factory=dict)


def run_live(
    strategy_spec: str,
    feed: str,
    instruments: Instruments,
    params: dict[str, Any] | None = None,
    config: BacktestConfig | None = None,
    *,
    journal_dir: Path,
    control: str = DEFAULT_ENDPOINT,
    seconds: float | None = None,
    until_idle_s: float | None = None,
    on_ready: Callable[[str], None] | None = None,
    group: int = _GROUP,
) -> LiveSummary:
    """Run a live session until SIGINT/SIGTERM, `seconds` of wall clock, or, with
    `until_idle_s`, that long without any message after the first batch. Up to `group`
    batches already waiting run under one journal commit."""
    if group < 1:
        raise TickwiseError(f"group must be at least 1, got {group}")
    for name, value in (("seconds", seconds), ("until_idle_s", until_idle_s)):
        if value is not None and not value > 0:
            raise TickwiseError(f"{name} must be positive, got {value}")
    config = config or BacktestConfig()
    strategy = load_strategy(strategy_spec)
    session = make_session(strategy, instruments, params, config)
    session.warm_up(strategy.kinds)  # no tick pays for compilation
    stale_ns = config.killswitch.stale_feed_ms * 1e6 if config.killswitch.stale_feed_ms else 0.0
    summary = LiveSummary()
    latencies = np.empty(_LATENCY_KEEP)
    with (
        Subscriber(feed) as sub,
        Journal(journal_dir, instruments) as journal,
    ):
        server = ControlServer(
            session,
            control,
            extra_status=lambda: {"batches": summary.batches, "feed_gaps": len(sub.gaps),
                                  "malformed": dict(sub.malformed),
                                  "latency_us": _percentiles(latencies, summary.batches)},
            on_command=lambda cmd, req: journal.event(time.time_ns(), cmd, req),
        )  # fmt: skip
        try:
            if on_ready:
                on_ready(server.endpoint)
            began = time.monotonic()
            gaps_seen = 0
            malformed_seen = 0
            stale_tripped = False
            stop: list[str] = []  # set by SIGINT/SIGTERM: the loop ends at its next turn
            try:
                with _stop_on_signals(stop):
                    while not stop:
                        # Every batch already waiting, then one commit for them all: a commit
                        # costs four fsyncs, more than a batch of the loop.
                        sent = []
                        message = sub.receive(20)
                        while message is not None:
                            if not message.is_heartbeat:
                                if message.schema not in strategy.kinds:
                                    raise TickwiseError(
                                        f"{strategy.name()} trades on {', '.join(strategy.kinds)}; "
                                        f"the feed sends {message.schema}"
                                    )
                                _run_batch(session, journal, message, summary)
                                sent.append(message.send_ts)
                                stale_tripped = False
                            if len(sent) >= group:
                                break  # (commit now; what waits is read on the next turn)
                            message = sub.receive(0)
                        if journal.pending:
                            journal.commit()  # durable before the next batch is looked at
                        done = time.time_ns()
                        for send_ts in sent:
                            latencies[summary.batches % _LATENCY_KEEP] = (done - send_ts) / 1e3
                            summary.batches += 1
                        if len(sub.gaps) > gaps_seen:
                            lost = sum(g.last - g.first + 1 for g in sub.gaps[gaps_seen:])
                            gaps_seen = len(sub.gaps)
                            session.trip("seq_gap", lost, 0.0)
                            journal.event(time.time_ns(), "seq_gap", {"batches_lost": lost})
                        bad = sum(sub.malformed.values())
                        if bad > malformed_seen:  # counted, dropped, and journaled
                            journal.event(time.time_ns(), "malformed", {
                                "count": bad - malformed_seen,
                                "latest": list(sub.recent_malformed)[-(bad - malformed_seen):],
                            })  # fmt: skip
                            malformed_seen = bad
                        silent = sub.silent_for_ns()
                        if stale_ns and silent > stale_ns and not stale_tripped:
                            session.trip("stale_feed", silent / 1e6, stale_ns / 1e6)
                            journal.event(time.time_ns(), "stale_feed", {"silent_ms": silent / 1e6})
                            stale_tripped = True
                        server.serve(0)
                        if journal.pending:  # a person's command, a trip seen between batches
                            journal.commit()
                        if seconds is not None and time.monotonic() - began >= seconds:
                            summary.stopped_by = f"{seconds:g} s passed"
                            break
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
            result = session.on_batch(strategy.kinds[0], _empty(strategy.kinds[0]))
            journal.add(result.orders, result.fills)
            summary.wall_s = time.monotonic() - began
        finally:
            server.close()
        summary.heartbeats = sub.heartbeats
        summary.gaps = len(sub.gaps)
        summary.malformed = dict(sub.malformed)
    summary.pnl = session.pnl()
    summary.latency_us = _percentiles(latencies, summary.batches)
    return summary


@contextmanager
def _stop_on_signals(stop: list[str]) -> Iterator[None]:
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


def _run_batch(session: Any, journal: Journal, message: Any, summary: LiveSummary) -> None:
    columns = dict(message.columns)
    if "ts_recv" in columns:  # when this engine received it: the feed latency it sees
        columns["ts_recv"] = np.full(message.rows, time.time_ns(), dtype=np.int64)
    result = session.on_batch(message.schema, columns)
    journal.add(result.orders, result.fills)
    summary.events += result.events
    status = result.orders["status"]
    summary.orders += int(np.count_nonzero(status == STATUS_NEW))
    summary.rejects += int(np.count_nonzero(status == STATUS_REJECTED))
    summary.fills += len(result.fills)


def _empty(kind: str) -> dict[str, np.ndarray]:
    dtype = market_dtype(kind)
    return {n: np.empty(0, dtype=dtype.fields[n][0]) for n in dtype.names}


def _percentiles(latencies: np.ndarray, n: int) -> dict[str, float]:
    if n == 0:
        return {}
    kept = latencies[: min(n, latencies.size)]
    p50, p90, p99, p999 = np.percentile(kept, [50, 90, 99, 99.9])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "p99.9": float(p999)}
