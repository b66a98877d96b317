"""A live session's metrics for the desk's Prometheus and Grafana (`tickwise live --metrics`).

prometheus-client serves them over HTTP, in OpenMetrics (or the older text format, as the
scraper asks), from a thread of its own, bound to loopback like every other socket of a
session. Nothing here costs the session anything per event or per batch: counters and
gauges are read from what the session keeps anyway, when a scrape asks for them, and the
three latency histograms are filled from the session's latency rings once per turn of its
clock-driven checks (a millisecond at most), in one vectorised step (`Histogram.catch_up`).

The metric names are a contract: docs/live.md lists them, and the Grafana dashboard and
alert rules in `docs/monitoring/` use only names a session serves (a test checks).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from tickwise.engine.errors import TickwiseError

# Bucket bounds of the latency histograms, seconds: 5 µs to 1 s, about three per decade.
LATENCY_BUCKETS_S = (
    5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1,
    0.25, 0.5, 1.0,
)  # fmt: skip

# Trading states as the gauge tickwise_trading_state carries them.
STATE_VALUES = {"active": 0, "reducing": 1, "halted": 2}


class Histogram:
    """Cumulative bucket counts and the sum of latencies (seconds), filled in bulk from a
    ring of the latest samples (µs) by `catch_up`: a Prometheus histogram that costs one
    numpy call per turn, never a Python call per sample."""

    def __init__(self, bounds_s: tuple[float, ...] = LATENCY_BUCKETS_S) -> None:
        self.bounds_s = bounds_s
        self._bounds_us = np.asarray(bounds_s) * 1e6
        self.counts = np.zeros(len(bounds_s) + 1, dtype=np.int64)  # the last: above every bound
        self.sum_s = 0.0
        self.seen = 0  # samples of the ring already counted

    def catch_up(self, ring: np.ndarray, count: int) -> None:
        """Count the samples (µs) a ring buffer took since the last call: `ring` holds the
        latest of `count` samples, the k-th at `k % ring.size`. Samples the ring no longer
        holds (more than its size between calls) are lost to the histogram, never counted
        twice."""
        fresh = min(count - self.seen, ring.size)
        self.seen = count
        if fresh > 0:
            new = ring[(count - fresh + np.arange(fresh)) % ring.size]
            at = np.searchsorted(self._bounds_us, new, side="left")
            self.counts += np.bincount(at, minlength=self.counts.size)
            self.sum_s += float(new.sum()) / 1e6

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        cumulative = np.cumsum(self.counts)
        buckets = [(_le(b), float(c)) for b, c in zip(self.bounds_s, cumulative[:-1], strict=True)]
        buckets.append(("+Inf", float(cumulative[-1])))
        return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=self.sum_s,
                                     unit="seconds")  # fmt: skip


def _le(bound: float) -> str:
    return repr(float(bound))


@dataclass
class Reading:
    """What a scrape reports: filled by the session (`engine.live.runner`) when asked."""

    info: dict[str, str]
    start_time_s: float
    events: int
    batches: int
    fills: int
    orders_by_status: dict[str, int]
    rejects_by_reason: dict[str, int]
    trips_by_trigger: dict[str, int]
    malformed_by_reason: dict[str, int]
    bad_rows_by_reason: dict[str, int]
    log_events: dict[tuple[str, str], int]  # (event, level) -> count
    feed_gaps: int
    heartbeats: int
    states: dict[str, str]  # "session" and each symbol -> its trading state
    positions: dict[str, float]  # symbol -> quantity
    pnl: dict[str, float]  # symbol -> net PnL (realised + unrealised - fees)
    unrealized: dict[str, float]
    open_orders: int
    feed_age_s: float
    exchange_age_s: float | None  # None: no exchange process
    requests_in_flight: int
    stopping: bool = False  # the session is stopping (its resting orders cancelled: HALTED)
    histograms: dict[str, Histogram] = field(default_factory=dict)


# name -> help; these are what a session serves (and all the dashboard may use).
HISTOGRAMS = {
    "tickwise_feed_to_order_seconds": "from the feed's send time to the orders of that "
    "batch leaving for the exchange (wall clock, per batch that sent orders)",
    "tickwise_order_to_ack_seconds": "round trip of a request to the exchange, from sending "
    "to its reply (wall clock)",
    "tickwise_feed_to_journal_seconds": "from the feed's send time to the message's batch "
    "journaled, per feed message (wall clock; with or without an exchange)",
    "tickwise_batch_seconds": "processing of one batch: the boundary's checks, the compiled "
    "loop, orders out, journal queued (wall clock, per compiled call)",
}


def families(r: Reading) -> Iterator[Metric]:
    """The metric families of one reading."""
    yield InfoMetricFamily("tickwise_session", "the session: strategy, parameters, feed", r.info)
    yield GaugeMetricFamily("tickwise_session_start_time_seconds",
                            "when the session started (Unix time)", r.start_time_s,
                            unit="seconds")  # fmt: skip
    yield _counter("tickwise_events", "market events processed by the compiled loop", r.events)
    yield _counter("tickwise_batches", "feed messages taken (not heartbeats)", r.batches)
    yield _counter("tickwise_fills", "fills booked", r.fills)
    yield _counter("tickwise_feed_gaps", "gaps in the feed's sequence numbers", r.feed_gaps)
    yield _counter("tickwise_feed_heartbeats", "feed heartbeats heard", r.heartbeats)
    yield _labelled(CounterMetricFamily, "tickwise_orders", "order events by status (new: "
                    "sent; rejected by the risk gate or the exchange; cancelled; ...)",
                    "status", r.orders_by_status)  # fmt: skip
    yield _labelled(CounterMetricFamily, "tickwise_rejects", "orders rejected, by reason",
                    "reason", r.rejects_by_reason)  # fmt: skip
    yield _labelled(CounterMetricFamily, "tickwise_trips", "kill-switch trips (changes to a "
                    "stricter trading state), by trigger (manual: a person; a session's stop "
                    "is no trip)", "trigger", r.trips_by_trigger)  # fmt: skip
    yield _labelled(CounterMetricFamily, "tickwise_malformed_messages", "feed messages "
                    "dropped as malformed, by reason", "reason", r.malformed_by_reason)  # fmt: skip
    yield _labelled(CounterMetricFamily, "tickwise_bad_rows", "market rows dropped at the "
                    "boundary, by reason", "reason", r.bad_rows_by_reason)  # fmt: skip
    logged = CounterMetricFamily(
        "tickwise_log_events",
        "events logged (the lines of --log-format), by event and level",
        labels=["event", "level"],
    )
    for (event, level), count in sorted(r.log_events.items()):
        logged.add_metric([event, level], count)
    yield logged
    yield _labelled(GaugeMetricFamily, "tickwise_trading_state", "trading state: 0 active, "
                    "1 reducing, 2 halted (scope: session, or a symbol)", "scope",
                    {k: STATE_VALUES[v] for k, v in r.states.items()})  # fmt: skip
    yield _labelled(GaugeMetricFamily, "tickwise_position", "position, in units (negative: "
                    "short)", "instrument", r.positions)  # fmt: skip
    yield _labelled(GaugeMetricFamily, "tickwise_pnl", "PnL in price units: realised + "
                    "unrealised (marked to the mid) - fees", "instrument", r.pnl)  # fmt: skip
    yield _labelled(GaugeMetricFamily, "tickwise_unrealized_pnl", "open position marked to "
                    "the mid, in price units", "instrument", r.unrealized)  # fmt: skip
    yield GaugeMetricFamily("tickwise_open_orders", "orders working (or on their way)",
                            r.open_orders)  # fmt: skip
    yield GaugeMetricFamily("tickwise_stopping", "1 once the session is stopping (it halts "
                            "to cancel its resting orders: not a trip)",
                            float(r.stopping))  # fmt: skip
    yield GaugeMetricFamily("tickwise_feed_age_seconds", "time since the feed's last message "
                            "or heartbeat", r.feed_age_s, unit="seconds")  # fmt: skip
    if r.exchange_age_s is not None:
        yield GaugeMetricFamily("tickwise_exchange_age_seconds", "time since the exchange's "
                                "last message", r.exchange_age_s, unit="seconds")  # fmt: skip
        yield GaugeMetricFamily("tickwise_requests_in_flight", "requests to the exchange not "
                                "yet answered", r.requests_in_flight)  # fmt: skip
    for name, hist in r.histograms.items():
        yield hist.family(name, HISTOGRAMS[name])


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _labelled(kind: Callable[..., Metric], name: str, documentation: str, label: str,
              values: dict[str, float]) -> Metric:  # fmt: skip
    family = kind(name, documentation, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


class _Collector(Collector):
    def __init__(self, read: Callable[[], Reading | None]) -> None:
        self.read = read

    def collect(self) -> Iterable[Metric]:
        reading = self.read()  # (None: the session is not yet up; an empty scrape)
        return [] if reading is None else list(families(reading))


def parse_address(address: str) -> tuple[str, int]:
    """`HOST:PORT` of a metrics endpoint, refused unless HOST is loopback (127.0.0.1,
    ::1 as [::1], localhost) and PORT a number in 0..65535 (0: any free port)."""
    host, sep, port = address.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65_535:
        raise TickwiseError(f"--metrics: got {address!r}; give HOST:PORT, e.g. 127.0.0.1:9464")
    loopback = host == "localhost"
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if not loopback:
        raise TickwiseError(
            f"--metrics binds to loopback only (127.0.0.1, [::1] or localhost), as the "
            f"session's other sockets; got {host!r} (a Prometheus elsewhere scrapes through "
            "a local agent or proxy)"
        )
    return host, int(port)


class MetricsServer:
    """Serves `read()`'s metrics over HTTP at `address` (HOST:PORT, loopback) until closed."""

    def __init__(self, address: str, read: Callable[[], Reading | None]) -> None:
        host, port = parse_address(address)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(read))
        try:
            self._server, self._thread = start_http_server(port, host, self.registry)
        except OSError as exc:
            raise TickwiseError(f"cannot serve metrics on {address}: {exc.strerror or exc}"
                                ) from None  # fmt: skip
        bound_host, bound_port = self._server.server_address[:2]
        shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
        self.address = f"{shown}:{bound_port}"
        self.url = f"http://{self.address}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
