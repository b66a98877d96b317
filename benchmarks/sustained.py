"""The feed rate a live session sustains, beside bare pyzmq relays on the same feed.

Ours: `tickwise feed synth` (4 instruments) publishing at a ladder of rates
into the paper exchange (`tickwise exchange`) and a live session trading
through it (`run_live` in this process: mean_reversion, every guard, the
journal and the control socket on). A rate is sustained when, over the run,
the feed published at least 95 % of it, every quote published reached the
session's loop (its event count equals the rows published, no sequence
gap), the session never halted, and its tick to order (the feed's send time
to the orders leaving, per turn that sent any) stayed under 10 ms at p99.

The floor: the same feed process at the same rates into a bare SUB relay (in
this process) that forwards each message as a one-order request to a bare
ROUTER echo, timed at the same points; sustained on the same terms.

The feed sends each row as soon as it is due (messages as small as the
machine's pace allows: on 2 vCPUs it then takes most of one at 50,000 quotes/s),
or with `packet_us` in packets (a conflation window): each window of that
much event time in one message once it has passed (a row waits at most that
long before it is sent; tick to order counts from the send).

The ladder stops at the first rate not sustained. Run:
`python benchmarks/sustained.py [--quick] [--seconds S] [--packet-us US]`.
"""

from __future__ import annotations

import argparse
import re
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from tickwise.engine.errors import TickwiseError
from tickwise.engine.live.runner import run_live
from tickwise.feeds.synth import Market, SynthConfig, make_instruments

try:
    from .harness import percentiles
    from .tick_to_order import frame_sizes
except ImportError:  # run as a script
    from harness import percentiles  # type: ignore[no-redef]
    from tick_to_order import frame_sizes  # type: ignore[no-redef]

TICKWISE = str(Path(sys.executable).with_name("tickwise"))
TICK_TO_ORDER = str(Path(__file__).with_name("tick_to_order.py"))
# Quotes per second; the top is issue 15's goal, which the bare relays reach on a 2-vCPU machine.
LADDER = (2_500, 5_000, 10_000, 20_000, 35_000, 50_000)
INSTRUMENTS = 4
SEED = 7
P99_BOUND_US = 10_000.0
RATE_SHARE = 0.95  # of the rate asked, the feed must have published
STRATEGY, PARAMS = "mean_reversion", {"window": 1_000, "entry_z": 3.0, "qty": 100.0}
_ROWS_AT, _SEND_TS_AT = 8, 24  # where the wire header keeps the row count and send_ts
_PUBLISHED = re.compile(r"published ([\d,]+) rows .*?: ([\d.]+) s wall clock")


def events_for(quotes_per_s: float, seconds: float) -> float:
    """The `--rate` (market events/s) at which feed synth publishes `quotes_per_s` quotes
    over `seconds`: some events are trades, which a quotes feed does not carry (about 5 % with
    seed 7), and a rung of the ladder is the quotes published."""
    market = Market(SynthConfig(kind="quotes", rows=int(2 * quotes_per_s * seconds),
                                instruments=INSTRUMENTS, seed=SEED, rate=quotes_per_s))  # fmt: skip
    ts = np.concatenate([b.column("ts_event").to_numpy() for b in market.batches()])
    quotes_made = np.count_nonzero(ts < market.start_ns + int(seconds * 1e9)) / seconds
    return quotes_per_s * quotes_per_s / quotes_made


def _feed(rate: float, seconds: float, subscribers: int, bind: str, packet_us: float
          ) -> tuple[subprocess.Popen, str]:  # fmt: skip
    proc = subprocess.Popen(
        [TICKWISE, "feed", "synth", "--bind", bind, "--rate", f"{events_for(rate, seconds):g}",
         "--instruments", str(INSTRUMENTS), "--seconds", f"{seconds:g}", "--seed", str(SEED),
         "--subscribers", str(subscribers), "--wait", "300", "--packet-us", f"{packet_us:g}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    return proc, _endpoint(proc, "the feed")


def _endpoint(proc: subprocess.Popen, what: str) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    endpoint = line.rsplit(" ", 1)[-1]
    if "://" not in endpoint:
        proc.kill()
        raise TickwiseError(f"the sustained-rate benchmark: {what} did not start: {line!r}")
    return endpoint


def _published(feed: subprocess.Popen) -> tuple[int, float]:
    """The rows the feed published and its wall time, from its summary."""
    out, err = feed.communicate(timeout=120)
    found = _PUBLISHED.search(out)
    if feed.returncode != 0 or found is None:
        raise TickwiseError(f"the sustained-rate benchmark: the feed failed: {err.strip()}")
    return int(found.group(1).replace(",", "")), float(found.group(2))


def run_ours(rate: float, seconds: float, transport: str = "tcp", packet_us: float = 0.0
             ) -> dict[str, Any]:  # fmt: skip
    """One run of the feed (in packets of `packet_us`, or 0: each row when due), the exchange
    and the session at `rate` for `seconds`, over tcp loopback or ipc. (The strategy trades a
    few hundred times a second at these rates: under the throttle's 1,000, so that what is
    measured is the session, not its risk limits.)"""
    with tempfile.TemporaryDirectory() as tmp:
        bind = _binds(transport, Path(tmp))
        feed, feed_ep = _feed(rate, seconds, 2, bind["feed"], packet_us)
        exchange = subprocess.Popen(
            [TICKWISE, "exchange", "--bind", bind["exchange"], "--feed", feed_ep,
             "--instruments", f"synth:{INSTRUMENTS}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            gateway = _endpoint(exchange, "the exchange")
            summary = run_live(
                STRATEGY, feed_ep, make_instruments(INSTRUMENTS), PARAMS,
                journal_dir=Path(tmp) / "journal", control=bind["control"],
                gateway=gateway, until_idle_s=1.0,
                log_stream=open(Path(tmp) / "events.log", "w"),  # noqa: SIM115  (not the bench's)
            )  # fmt: skip
            rows, wall = _published(feed)
        finally:
            for proc in (exchange, feed):
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(30)
    tick = summary.tick_to_order_samples
    return {
        "rate": rate, "published": rows, "published_per_s": rows / wall, "events": summary.events,
        "messages": summary.batches, "gaps": summary.gaps, "halted": summary.status["halted"],
        "halt_reason": summary.status["halt_reason"],
        "tick_to_order_us": percentiles(tick) if tick.size else {}, "samples": int(tick.size),
        "tick_ns": tick * 1e3,
    }  # fmt: skip


def run_floor(rate: float, seconds: float, transport: str = "tcp", packet_us: float = 0.0
              ) -> dict[str, Any]:  # fmt: skip
    """The same feed at `rate` through the bare relays."""
    tmp = tempfile.TemporaryDirectory()
    bind = _binds(transport, Path(tmp.name))
    feed, feed_ep = _feed(rate, seconds, 1, bind["feed"], packet_us)
    echo = subprocess.Popen([sys.executable, TICK_TO_ORDER, "--role", "exchange-relay", "--rows",
                             "1", "--bind", bind["exchange"]], stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        echo_ep = _endpoint(echo, "the exchange relay")
        rows, ticks = _relay(feed_ep, echo_ep)
        published, wall = _published(feed)
    finally:
        for proc in (echo, feed):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
        tmp.cleanup()
    return {
        "rate": rate, "published": published, "published_per_s": published / wall,
        "events": rows, "gaps": 0, "halted": False, "halt_reason": None,
        "tick_to_order_us": percentiles(ticks / 1e3) if ticks.size else {},
        "samples": int(ticks.size), "tick_ns": ticks,
    }  # fmt: skip


def _relay(feed_ep: str, echo_ep: str) -> tuple[int, np.ndarray]:
    """Forward every feed message as a request until the feed has been quiet for 1 s: the rows
    received, and each message's send -> forward time (ns)."""
    _, (head_len, body_len) = frame_sizes(1)
    request = (bytes(head_len), bytes(body_len))  # frames of a one-order request
    ticks = np.empty(1 << 22)
    n = rows = 0
    with zmq.Context() as ctx, ctx.socket(zmq.SUB) as sub, ctx.socket(zmq.DEALER) as deal:
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.setsockopt(zmq.RCVHWM, 100_000)
        sub.connect(feed_ep)
        deal.connect(echo_ep)
        poller = zmq.Poller()
        poller.register(sub, zmq.POLLIN)
        poller.register(deal, zmq.POLLIN)
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 1.0 or rows == 0:
            ready = dict(poller.poll(20))
            if sub in ready:
                idle_since = time.monotonic()
                while True:
                    try:
                        head, body = sub.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    if not body:  # a heartbeat
                        continue
                    deal.send_multipart(request)
                    if n < ticks.size:
                        ticks[n] = time.time_ns() - struct.unpack_from("<q", head, _SEND_TS_AT)[0]
                        n += 1
                    rows += struct.unpack_from("<I", head, _ROWS_AT)[0]
            if deal in ready:
                while True:
                    try:
                        deal.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
        deal.send_multipart([b"stop", b""])
    return rows, ticks[:n]


def _binds(transport: str, folder: Path) -> dict[str, str]:
    if transport == "tcp":
        return dict.fromkeys(("feed", "exchange", "control"), "tcp://127.0.0.1:*")
    if transport == "ipc":
        return {name: f"ipc://{folder / name}" for name in ("feed", "exchange", "control")}
    raise TickwiseError(f"transport must be tcp or ipc, got {transport!r}")


def sustained(run: dict[str, Any]) -> bool:
    """Whether a run kept up: the feed at its rate, nothing lost, no halt, p99 in bound."""
    p99 = run["tick_to_order_us"].get("p99", np.inf)
    return (
        run["published_per_s"] >= RATE_SHARE * run["rate"]
        and run["events"] == run["published"]
        and run["gaps"] == 0
        and not run["halted"]
        and p99 < P99_BOUND_US
    )


def climb(measure: Any, ladder: tuple[int, ...], seconds: float, say: Any = print,
          packet_us: float = 0.0) -> tuple[float, list[dict[str, Any]]]:  # fmt: skip
    """The highest rate of the ladder sustained (0 if none), and every run, in order."""
    best = 0.0
    runs = []
    for rate in ladder:
        run = measure(rate, seconds, packet_us=packet_us)
        run["sustained"] = sustained(run)
        runs.append(run)
        say(_line(run))
        if not run["sustained"]:
            break
        best = float(rate)
    return best, runs


def _line(run: dict[str, Any]) -> str:
    t = run["tick_to_order_us"]
    p = f"p50 {t['p50']:,.0f} µs, p99 {t['p99']:,.0f} µs" if t else "no samples"
    halted = f", halted by {run['halt_reason']}" if run["halted"] else ""
    return (f"  {run['rate']:>9,.0f}/s asked: published {run['published_per_s']:,.0f}/s, "
            f"{run['events']:,} of {run['published']:,} rows run, {run['gaps']} gaps{halted}; "
            f"tick to order {p} (n {run['samples']:,}): "
            f"{'sustained' if run['sustained'] else 'NOT sustained'}")  # fmt: skip


def measure(quick: bool, seconds: float | None = None, say: Any = print,
            packet_us: float = 0.0) -> dict[str, Any]:  # fmt: skip
    """Ours, then the floor, up the ladder, the feed sending rows in packets of `packet_us`
    of event time (0: each row as soon as it is due)."""
    ladder = LADDER
    seconds = seconds or (10.0 if quick else 30.0)
    sends = f"packets of {packet_us:g} µs" if packet_us else "each row when due"
    say(f"ours: feed synth ({sends}) -> paper exchange + live session, {seconds:g} s a rate")
    ours, ours_runs = climb(run_ours, ladder, seconds, say, packet_us)
    say(f"floor: the same feed -> bare pyzmq relays, {seconds:g} s a rate")
    floor, floor_runs = climb(run_floor, ladder, seconds, say, packet_us)
    return {"seconds": seconds, "ladder": ladder, "ours": ours, "floor": floor,
            "ours_runs": ours_runs, "floor_runs": floor_runs, "packet_us": packet_us}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 s a rate")
    parser.add_argument("--seconds", type=float, default=None, help="a run's length")
    parser.add_argument("--packet-us", type=float, default=0.0,
                        help="the feed's packets, in µs (0: each row when due)")  # fmt: skip
    args = parser.parse_args()
    r = measure(args.quick, args.seconds, packet_us=args.packet_us)
    print(f"highest rate sustained: ours {r['ours']:,.0f} quotes/s, floor {r['floor']:,.0f} "
          f"quotes/s (ladder {', '.join(f'{x:,}' for x in r['ladder'])})")  # fmt: skip


if __name__ == "__main__":
    main()
