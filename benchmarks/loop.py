"""The compiled event loop against a bare hand-written @njit loop computing the same signals.

The full loop does everything a backtest needs per event (market state,
matching, fills, portfolio, the strategy, the risk gate, the order log); the
bare loop only computes the strategy's signals from the same column arrays
with the same arithmetic. Both run over the same in-memory batches of a
quotes history (reading Parquet is measured elsewhere), taking turns; the
figure is the ratio of their costs per event. Also measured: what one
`Session.on_batch` call costs in Python beyond the compiled loop itself.

Run as a script: `python benchmarks/loop.py --rows 10000000`.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from numba import njit

from tickwise.engine.indicators import (
    HEADER,
    rolling_full,
    rolling_mean,
    rolling_push,
    rolling_zscore,
)
from tickwise.engine.session import Session
from tickwise.engine.strategy import load_strategy
from tickwise.feeds.history import columns, open_history

try:
    from .data import quotes_file
except ImportError:  # run as a script
    from data import quotes_file  # type: ignore[no-redef]

# The full loop runs as a backtest does: matching, fees and order latency models on.
EXCHANGE = {
    "taker_fee_bps": 1.0,
    "maker_fee_bps": -0.2,
    "taker_fee_per_unit": 0.001,
    "order_latency_ns": 50_000,
    "latency_jitter_ns": 20_000,
    "latency_seed": 1,
}

PARAMS = {
    "sma_cross": {"fast": 10, "slow": 30, "qty": 100.0, "long_short": True},
    "mean_reversion": {"window": 100, "entry_z": 2.0, "exit_z": 0.5, "qty": 100.0},
}


@njit  # not cached: run as a script and as a package module, a cache of one breaks the other
def bare_sma_cross(instrument, bid, ask, fast, slow, prev_diff):
    """Crossovers of the fast and slow mean of the mid, per instrument: how many."""
    crosses = 0
    for k in range(instrument.size):
        i = instrument[k]
        mid = 0.5 * (bid[k] + ask[k])
        rolling_push(fast, i, mid)
        rolling_push(slow, i, mid)
        if not rolling_full(slow, i):
            continue
        diff = rolling_mean(fast, i) - rolling_mean(slow, i)
        prev = prev_diff[i]
        prev_diff[i] = diff
        if prev == prev and ((diff > 0.0 and prev <= 0.0) or (diff < 0.0 and prev >= 0.0)):
            crosses += 1
    return crosses


@njit  # not cached: run as a script and as a package module, a cache of one breaks the other
def bare_mean_reversion(instrument, bid, ask, window, side, entry_z, exit_z):
    """Entries and exits of the z-score rule with a position state per instrument: how many."""
    decisions = 0
    for k in range(instrument.size):
        i = instrument[k]
        mid = 0.5 * (bid[k] + ask[k])
        rolling_push(window, i, mid)
        if not rolling_full(window, i):
            continue
        z = rolling_zscore(window, i, mid)
        if z != z:
            continue
        s = side[i]
        if s == 0:
            if z < -entry_z:
                s = 1
            elif z > entry_z:
                s = -1
        elif (s > 0 and z > -exit_z) or (s < 0 and z < exit_z):
            s = 0
        if s != side[i]:
            decisions += 1
            side[i] = s
    return decisions


def _bare(name: str, batches: list[dict], n_inst: int) -> int:
    p = PARAMS[name]
    count = 0
    if name == "sma_cross":
        fast = np.zeros((n_inst, p["fast"] + HEADER))
        slow = np.zeros((n_inst, p["slow"] + HEADER))
        prev = np.full(n_inst, np.nan)
        for c in batches:
            count += bare_sma_cross(c["instrument"], c["bid_px"], c["ask_px"], fast, slow, prev)
    else:
        window = np.zeros((n_inst, p["window"] + HEADER))
        side = np.zeros(n_inst, dtype=np.int64)
        for c in batches:
            count += bare_mean_reversion(c["instrument"], c["bid_px"], c["ask_px"], window, side,
                                         p["entry_z"], p["exit_z"])  # fmt: skip
    return count


def _full(name: str, batches: list, instruments) -> Session:
    session = Session(load_strategy(name), instruments, PARAMS[name], **EXCHANGE)
    for batch in batches:
        session.on_batch("quotes", batch)
    return session


def compare(rows: int, rounds: int) -> dict:
    """Per-event cost of each strategy's full loop and of its bare signal loop."""
    history = open_history(quotes_file(rows))
    batches = list(history.batches(65_536))
    views = [columns(b) for b in batches]
    n_inst = history.instruments.known_mask().size
    out: dict = {"rows": rows, "rounds": rounds}
    for name in PARAMS:
        warm = Session(load_strategy(name), history.instruments, PARAMS[name], **EXCHANGE)
        warm.warm_up()
        _bare(name, views[:1], n_inst)  # compile the bare loop
        bare_ns, full_ns = [], []
        signals = orders = fills = 0
        for _ in range(rounds):
            t0 = time.perf_counter()
            signals = _bare(name, views, n_inst)
            t1 = time.perf_counter()
            session = _full(name, batches, history.instruments)
            t2 = time.perf_counter()
            bare_ns.append((t1 - t0) / rows * 1e9)
            full_ns.append((t2 - t1) / rows * 1e9)
            orders = int(session.ctx.clock[1] - 1)  # order ids handed out
            fills = int(session.ctx.portfolio["traded"].sum())
        ratios = np.array(full_ns) / np.array(bare_ns)
        out[name] = {
            "bare_ns_per_event_p50": float(np.median(bare_ns)),
            "full_ns_per_event_p50": float(np.median(full_ns)),
            "full_events_per_s_p50": 1e9 / float(np.median(full_ns)),
            "ratio_p10": float(np.percentile(ratios, 10)),
            "ratio_p50": float(np.median(ratios)),
            "ratio_p90": float(np.percentile(ratios, 90)),
            "bare_signals": signals,
            "orders": orders,
            "traded_qty": fills,
        }
    out["batch_call"] = batch_call_overhead(history.instruments)
    return out


def batch_call_overhead(instruments, calls: int = 20_000) -> dict:
    """Microseconds per `Session.on_batch` call on a one-row batch, and per direct call of the
    compiled loop with the same arrays (the floor: Numba's dispatch)."""
    session = Session(load_strategy("mean_reversion"), instruments, PARAMS["mean_reversion"])
    session.warm_up()
    one = {
        "ts_event": np.array([1_700_000_000_000_000_000]),
        "ts_recv": np.array([1_700_000_000_000_000_000]),
        "instrument": np.array([0], dtype=np.uint32),
        "seq": np.array([1], dtype=np.uint64),
        "bid_px": np.array([100.0]),
        "ask_px": np.array([100.01]),
        "bid_sz": np.array([5.0]),
        "ask_sz": np.array([5.0]),
    }
    session.on_batch("quotes", one)
    args = [a.view() for a in one.values()]
    for a in args:
        a.flags.writeable = False
    run = session._runners["quotes"]
    wrapped, direct = [], []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        session.on_batch("quotes", one)
        t1 = time.perf_counter_ns()
        run(session.ctx, session._st, session._p, session._subscribed, 0, *args)
        t2 = time.perf_counter_ns()
        wrapped.append(t1 - t0)
        direct.append(t2 - t1)
    w, d = np.array(wrapped) / 1e3, np.array(direct) / 1e3
    return {
        "calls": calls,
        "on_batch_us_p50": float(np.median(w)),
        "on_batch_us_p99": float(np.percentile(w, 99)),
        "compiled_call_us_p50": float(np.median(d)),
        "compiled_call_us_p99": float(np.percentile(d, 99)),
    }


def print_report(r: dict) -> None:
    print(
        f"compiled loop vs bare @njit signal loop: {r['rows']:,} quotes (8 instruments) in "
        f"memory, batches of 65,536, {r['rounds']} rounds taking turns, wall clock; full loop "
        f"with matching, fees (taker 1 bps + 0.001/unit, maker -0.2 bps) and order latency "
        f"(50 us + up to 20 us seeded jitter)"
    )
    for name in PARAMS:
        s = r[name]
        print(
            f"  {name:15s} full loop {s['full_ns_per_event_p50']:6.1f} ns/event "
            f"({s['full_events_per_s_p50'] / 1e6:5.1f} M events/s), bare "
            f"{s['bare_ns_per_event_p50']:5.1f} ns/event; ratio p10 {s['ratio_p10']:.2f} "
            f"p50 {s['ratio_p50']:.2f} p90 {s['ratio_p90']:.2f} (target <= 3); "
            f"{s['bare_signals']:,} signals, {s['orders']:,} orders, "
            f"{s['traded_qty']:,} units traded"
        )
    b = r["batch_call"]
    print(
        f"  Session.on_batch on a 1-row batch: p50 {b['on_batch_us_p50']:.1f} us, p99 "
        f"{b['on_batch_us_p99']:.1f} us; the compiled loop called directly: p50 "
        f"{b['compiled_call_us_p50']:.1f} us, p99 {b['compiled_call_us_p99']:.1f} us "
        f"({b['calls']:,} calls each)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print_report(compare(args.rows, args.rounds))
