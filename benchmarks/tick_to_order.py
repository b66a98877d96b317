"""Tick-to-order latency of a live session trading through the paper exchange, beside its floor.

Ours, three processes over tcp (or ipc) loopback: a feed (tickwise's Publisher: quote
batches of N rows at a steady rate, each stamped with its send time), the
paper exchange (`tickwise exchange`), and the live engine (`run_live` with a
gateway, in this process) running `benchmarks/ping.py` (one market order per
quote). The engine measures, per batch, the feed's send time to the batch's
orders leaving it (tick-to-order), and each request's round trip to the
exchange's reply (its ack). Everything a session does is on: risk gate, kill
switch, journal (written in the background), control socket.

The floor, measured in the same run: the same hops (feed -> engine ->
exchange -> engine) with bare pyzmq processes doing no work: a feed sending
frames of the same sizes at the same rate, an engine relay (here) sending a
request of the orders' size for each market message, and an exchange relay
answering each request with frames of the reply's size. The same two
intervals are taken at the same points.

Percentiles come from HDR histograms (1 ns .. 60 s, 3 significant digits).
Run: `python benchmarks/tick_to_order.py [--quick]`.
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from tickwise.engine.config import SessionConfig
from tickwise.engine.errors import TickwiseError
from tickwise.engine.limits import RiskLimits
from tickwise.engine.live.journal import replay_journal
from tickwise.engine.live.runner import run_live
from tickwise.engine.schemas import ORDER_DTYPE, QUOTE_DTYPE, REASON_NAMES, STATUS_REJECTED
from tickwise.feeds import wire
from tickwise.feeds.synth import Market, SynthConfig, make_instruments
from tickwise.feeds.transport import Publisher

try:
    from .harness import percentiles
except ImportError:  # run as a script
    from harness import percentiles  # type: ignore[no-redef]

PING = str(Path(__file__).with_name("ping.py")) + ":Ping"
TICKWISE = str(Path(sys.executable).with_name("tickwise"))
# Batches per second, by rows per batch: a steady live feed, each batch served before the next
# comes (64-event batches: 3,200 quotes and orders a second through the exchange). At 1,000
# one-event batches a second the three processes' work outgrows these 2 vCPUs and the
# figures measure queueing, not latency.
RATES = {1: 200.0, 64: 50.0}
PERCENTILES = (50.0, 90.0, 99.0, 99.9)
TARGETS = {50.0: 1.5, 99.0: 2.0}  # ours / floor at most, per percentile (the issue's)
_SEND_TS = struct.Struct("<q")
_SEND_TS_AT = 24  # where the wire header keeps send_ts
# Orders leave as fast as quotes come: no throttle, no open-order cap in the way, and a buy
# may leave while the previous sell still works (it fills at the next quote).
CONFIG = SessionConfig(
    risk=RiskLimits(max_orders_per_sec=0, max_open_orders=100_000, self_trade_prevention=False)
)


def _quotes(rows: int) -> dict[str, np.ndarray]:
    market = Market(SynthConfig(kind="quotes", rows=rows, instruments=1, seed=3))
    batches = list(market.batches())
    return {n: np.concatenate([b.column(n).to_numpy() for b in batches]) for n in QUOTE_DTYPE.names}


def frame_sizes(rows: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(header, body) bytes of a quotes message and of an orders message of `rows` rows."""
    quotes = wire.encode(
        "quotes", {n: np.zeros(rows, QUOTE_DTYPE[n]) for n in QUOTE_DTYPE.names}, 1
    )
    orders = wire.encode(
        "orders", {n: np.zeros(rows, ORDER_DTYPE[n]) for n in ORDER_DTYPE.names}, 1
    )
    return (len(quotes[0]), quotes[1].nbytes), (len(orders[0]), orders[1].nbytes)


# --- the processes ------------------------------------------------------------------------------


def role_feed(bind: str, rows: int, count: int, rate: float, bare: bool, subscribers: int) -> None:
    """Publish `count` batches of `rows` quotes at `rate` a second (bare: frames only)."""
    quotes = _quotes(rows * count)
    (head_len, body_len), _ = frame_sizes(rows)
    publisher = Publisher(bind, heartbeat_ms=100.0)
    print(publisher.endpoint, flush=True)
    if not publisher.wait_for_subscriber(300.0, subscribers):
        raise SystemExit("no subscriber came")
    time.sleep(0.5)  # (the subscriptions settle)
    head = bytearray(head_len)
    body = bytes(body_len)
    start = time.monotonic_ns()
    period = 1e9 / rate
    for k in range(count):
        publisher.idle(start + int(k * period))
        if bare:
            _SEND_TS.pack_into(head, _SEND_TS_AT, time.time_ns())
            publisher.socket.send_multipart([bytes(head), body])
            continue
        now = time.time_ns()
        batch = {n: a[k * rows : (k + 1) * rows] for n, a in quotes.items()}
        batch["ts_event"] = batch["ts_recv"] = np.full(rows, now, dtype=np.int64)
        publisher.publish("quotes", batch)
    publisher.heartbeat()
    publisher.close()


def role_exchange_relay(bind: str, rows: int) -> None:
    """Answer every request with frames of a reply's size, until told to stop."""
    _, (head_len, body_len) = frame_sizes(rows)
    head, body = bytes(head_len), bytes(body_len)
    with zmq.Context() as ctx, ctx.socket(zmq.ROUTER) as sock:
        sock.bind(bind)
        print(sock.getsockopt_string(zmq.LAST_ENDPOINT), flush=True)
        while True:
            frames = sock.recv_multipart()
            if frames[1] == b"stop":
                return
            sock.send_multipart([frames[0], head, body])


def _spawn(args: list[str]) -> tuple[subprocess.Popen, str]:
    """A process started, and the endpoint it bound (the last word of its first line)."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    endpoint = line.rsplit(" ", 1)[-1]
    if "://" not in endpoint:
        proc.kill()
        raise TickwiseError(f"the live benchmark: {args[:3]} did not start: {line!r}")
    return proc, endpoint


def _endpoints(transport: str, folder: Path) -> dict[str, str]:
    """Where the feed, the exchange and the control socket bind: tcp loopback on free ports,
    or ipc sockets in `folder`."""
    if transport == "tcp":
        return dict.fromkeys(("feed", "exchange", "control"), "tcp://127.0.0.1:*")
    if transport == "ipc":
        return {name: f"ipc://{folder / name}" for name in ("feed", "exchange", "control")}
    raise TickwiseError(f"transport must be tcp or ipc, got {transport!r}")


def _me(*args: str) -> list[str]:
    return [sys.executable, __file__, *args]


# --- the two setups ------------------------------------------------------------------------------


def measure_ours(rows: int, count: int, rate: float, transport: str = "tcp"
                 ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        bind = _endpoints(transport, Path(tmp))
        feed, feed_ep = _spawn(_me("--role", "feed", "--rows", str(rows), "--count", str(count),
                                   "--rate", str(rate), "--subscribers", "2",
                                   "--bind", bind["feed"]))  # fmt: skip
        try:
            summary = _trade(feed_ep, bind, Path(tmp))
        finally:
            feed.wait(30)
    return summary.tick_to_order_samples * 1e3, summary.round_trip_samples * 1e3  # ns


def _trade(feed_ep: str, bind: dict[str, str], folder: Path) -> Any:
    """The exchange and the live session over the feed until it goes quiet: its summary."""
    exchange, gateway = _spawn([TICKWISE, "exchange", "--bind", bind["exchange"], "--feed",
                                feed_ep, "--instruments", "synth:1"])  # fmt: skip
    try:
        summary = run_live(
            PING, feed_ep, make_instruments(1), {"qty": 1.0}, CONFIG,
            journal_dir=folder / "journal", control=bind["control"], gateway=gateway,
            until_idle_s=1.0,
            log_stream=open(folder / "events.log", "w"),  # noqa: SIM115  (not the bench's)
        )  # fmt: skip
    finally:
        exchange.terminate()
        exchange.wait(30)
    if summary.status.get("halted"):
        orders = replay_journal(folder / "journal").orders
        refused = orders[orders["status"] == STATUS_REJECTED]["reason"]
        raise TickwiseError(
            f"the live benchmark: the session halted: {summary.status}; refusals: "
            f"{Counter(REASON_NAMES[int(r)] for r in refused)}"
        )
    return summary


def measure_floor(rows: int, count: int, rate: float, transport: str = "tcp"
                  ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        return _relay(rows, count, rate, _endpoints(transport, Path(tmp)))


def _relay(rows: int, count: int, rate: float, bind: dict[str, str]
           ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The floor's engine relay (here) between its feed and its exchange relay."""
    _, (head_len, body_len) = frame_sizes(rows)
    head, body = bytes(head_len), bytes(body_len)
    relay, relay_ep = _spawn(_me("--role", "exchange-relay", "--rows", str(rows),
                                 "--bind", bind["exchange"]))  # fmt: skip
    feed, feed_ep = _spawn(_me("--role", "feed", "--rows", str(rows), "--count", str(count),
                               "--rate", str(rate), "--subscribers", "1", "--bare",
                               "--bind", bind["feed"]))  # fmt: skip
    tick, trip = np.empty(count), np.empty(count)
    n_tick = n_trip = 0
    sent_at = np.empty(count, dtype=np.int64)
    with zmq.Context() as ctx, ctx.socket(zmq.SUB) as sub, ctx.socket(zmq.DEALER) as deal:
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(feed_ep)
        deal.connect(relay_ep)
        poller = zmq.Poller()
        poller.register(sub, zmq.POLLIN)
        poller.register(deal, zmq.POLLIN)
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 1.0 or n_tick == 0:
            ready = dict(poller.poll(20))
            if sub in ready:
                idle_since = time.monotonic()
                frames = sub.recv_multipart()
                if len(frames[1]):  # (a heartbeat has no body)
                    send_ts = _SEND_TS.unpack_from(frames[0], _SEND_TS_AT)[0]
                    out = time.time_ns()
                    deal.send_multipart([head, body])
                    tick[n_tick] = out - send_ts
                    sent_at[n_tick] = out
                    n_tick += 1
            if deal in ready:
                deal.recv_multipart()
                trip[n_trip] = time.time_ns() - sent_at[n_trip]
                n_trip += 1
        deal.send_multipart([b"stop", b""])
    feed.wait(30)
    relay.wait(30)
    return tick[:n_tick], trip[:n_trip]


# --- percentiles and the report --------------------------------------------------------------


def _hdr(samples_ns: np.ndarray, skip: int) -> dict[str, float]:
    """HDR percentiles (µs) of the samples after the first `skip`, and their count."""
    return percentiles(samples_ns[skip:], 1e3) | {"n": int(samples_ns[skip:].size)}


def measure(seconds: float = 10.0, rates: dict[int, float] | None = None,
            transports: tuple[str, ...] = ("tcp",)) -> dict:  # fmt: skip
    result: dict[str, Any] = {"seconds": seconds, "setups": []}
    for transport in transports:
        for rows, rate in (rates or RATES).items():
            result["setups"].append(_setup(seconds, rows, rate, transport))
    return result


def _to_ack(tick_ns: np.ndarray, trip_ns: np.ndarray) -> np.ndarray:
    """Tick to ack per batch: its tick to order plus its request's round trip. Each batch
    sends exactly one request (ping orders on every quote, and cancels nothing until the
    stop, whose requests come last), so the two line up one to one."""
    if trip_ns.size < tick_ns.size:
        raise TickwiseError(f"the live benchmark: {tick_ns.size} batches sent orders but only "
                            f"{trip_ns.size} requests were answered")  # fmt: skip
    return tick_ns + trip_ns[: tick_ns.size]


def _setup(seconds: float, rows: int, rate: float, transport: str) -> dict[str, Any]:
    """Ours, then the floor, of one batch size and rate over one transport."""
    count = int(seconds * rate)
    skip = int(rate * 0.5)  # the first half second: connections and caches warming
    ours_tick, ours_trip = measure_ours(rows, count, rate, transport)
    floor_tick, floor_trip = measure_floor(rows, count, rate, transport)
    entry: dict[str, Any] = {"transport": transport, "rows": rows, "rate_per_s": rate}
    for what, ours, floor in (("tick_to_order_us", ours_tick, floor_tick),
                              ("round_trip_us", ours_trip, floor_trip),
                              ("tick_to_ack_us", _to_ack(ours_tick, ours_trip),
                               _to_ack(floor_tick, floor_trip))):  # fmt: skip
        e = entry[what] = {"ours": _hdr(ours, skip), "floor": _hdr(floor, skip)}
        e["ratio"] = {f"p{p:g}": e["ours"][f"p{p:g}"] / e["floor"][f"p{p:g}"]
                      for p in PERCENTILES}  # fmt: skip
    return entry


def print_report(r: dict) -> None:
    print(
        f"tick-to-order over loopback, {r['seconds']:g} s per setup; wall clock; "
        "HDR percentiles in µs (first 0.5 s left out); floor: bare pyzmq relays, same hops"
    )
    for entry in r["setups"]:
        print(f"  {entry['transport']}: {entry['rows']}-event batches at "
              f"{entry['rate_per_s']:g} batches/s:")  # fmt: skip
        for what, label in (("tick_to_order_us", "feed send -> orders out"),
                            ("round_trip_us", "request -> exchange reply"),
                            ("tick_to_ack_us", "feed send -> ack back")):  # fmt: skip
            e = entry[what]
            cells = "  ".join(
                f"p{p:g} {e['ours'][f'p{p:g}']:7.1f} / {e['floor'][f'p{p:g}']:6.1f} "
                f"= {e['ratio'][f'p{p:g}']:4.2f}x"
                for p in PERCENTILES
            )
            print(f"    {label:26s} ours / floor: {cells}  (n {e['ours']['n']})")
            verdict = ", ".join(
                f"p{p:g} {e['ratio'][f'p{p:g}']:.2f}x "
                f"{'<=' if e['ratio'][f'p{p:g}'] <= t else '>'} {t:g}x"
                for p, t in TARGETS.items()
            )
            print(f"      target: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=("feed", "exchange-relay"), default=None)
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--rate", type=float, default=1_000.0, help="(a feed process's)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every setup's rate")
    parser.add_argument("--subscribers", type=int, default=1)
    parser.add_argument("--bare", action="store_true")
    parser.add_argument("--bind", default="tcp://127.0.0.1:*")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="3 s per setup")
    parser.add_argument("--transport", action="append", choices=("tcp", "ipc"), default=[],
                        help="tcp (loopback) or ipc; repeatable (default: tcp)")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    if args.role == "feed":
        role_feed(args.bind, args.rows, args.count, args.rate, args.bare, args.subscribers)
        return
    if args.role == "exchange-relay":
        role_exchange_relay(args.bind, args.rows)
        return
    rates = {rows: rate * args.scale for rows, rate in RATES.items()}
    result = measure(3.0 if args.quick else args.seconds, rates, tuple(args.transport or ["tcp"]))
    print_report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
