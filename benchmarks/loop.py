"""The compiled event loop against a bare hand-written @njit loop computing the same signals.

The full loop does everything a backtest needs per event (market state,
matching, fills, portfolio, the strategy, the risk gate, the order log); the
bare loop only computes the strategy's signals from the same column arrays
with the same arithmetic. Both run over the same in-memory batches of a
quotes history (reading Parquet is measured elsewhere), taking turns; the
figure is the ratio of their costs per event. sma_cross, which also trades
bars, is measured over a history of one-minute bars the same way. Also
measured: what one `Session.on_batch` call costs in Python beyond the
compiled loop itself.

Run as a script: `python benchmarks/loop.py --rows 10000000` (`--kind bars`: sma_cross on bars).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from numba import njit

from tickwise import load_strategy
from tickwise.engine.indicators import (
    new_windows,
    rolling_full,
    rolling_mean,
    rolling_push,
    rolling_std,
    rolling_zscore,
)
from tickwise.engine.session import Session
from tickwise.feeds.history import columns, open_history

try:
    from .data import bars_file, quotes_file
except ImportError:  # run as a script
    from data import bars_file, quotes_file  # type: ignore[no-redef]

# The full loop runs as a backtest does: matching, fees and order latency models on.
EXCHANGE = {
    "taker_fee_bps": 1.0,
    "maker_fee_bps": -0.2,
    "taker_fee_per_unit": 0.001,
    "order_latency_ns": 50_000,
    "latency_jitter_ns": 20_000,
    "latency_seed": 1,
}

# Every built-in strategy, trading whole lots of every synthetic instrument (lots 1 and 100).
PARAMS = {
    "sma_cross": {"fast": 10, "slow": 30, "qty": 100.0, "long_short": True},
    "mean_reversion": {"window": 100, "entry_z": 2.0, "exit_z": 0.5, "qty": 100.0},
    "obi_market_maker": {
        "qty": 100.0,
        "max_position": 1_000.0,
        "half_spread_ticks": 2,
        "imbalance_ticks": 1.0,
        "inventory_ticks": 1.0,
        "levels": 1,
        "requote_ticks": 2,
    },
    "pairs": {
        "leg_a": 0,
        "leg_b": 2,
        "beta": 1.0,
        "window": 100,
        "entry_z": 2.0,
        "exit_z": 0.5,
        "qty": 100.0,
    },
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
def bare_sma_cross_bars(instrument, close, fast, slow, prev_diff):
    """Crossovers of the fast and slow mean of the bars' closes, per instrument: how many."""
    crosses = 0
    for k in range(instrument.size):
        i = instrument[k]
        price = close[k]
        rolling_push(fast, i, price)
        rolling_push(slow, i, price)
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


@njit  # not cached: run as a script and as a package module, a cache of one breaks the other
def bare_obi_quotes(instrument, bid, ask, bid_sz, ask_sz, tick, half_spread, skew, requote,
                    quoted_bid, quoted_ask):  # fmt: skip
    """The market maker's quotes from the best sizes' imbalance (flat inventory), on the tick
    grid and never crossing: how many times a side's wanted price moved enough to requote."""
    requotes = 0
    for k in range(instrument.size):
        i = instrument[k]
        b = bid[k]
        a = ask[k]
        t = tick[i]
        total = bid_sz[k] + ask_sz[k]
        imbalance = (bid_sz[k] - ask_sz[k]) / total if total > 0.0 else 0.0
        centre = 0.5 * (b + a) + skew * imbalance * t
        my_bid = min(np.floor((centre - half_spread * t) / t + 1e-9) * t, a - t)
        my_ask = max(np.ceil((centre + half_spread * t) / t - 1e-9) * t, b + t)
        if abs(my_bid - quoted_bid[i]) >= requote * t - 1e-12:
            quoted_bid[i] = my_bid
            requotes += 1
        if abs(my_ask - quoted_ask[i]) >= requote * t - 1e-12:
            quoted_ask[i] = my_ask
            requotes += 1
    return requotes


@njit  # not cached: run as a script and as a package module, a cache of one breaks the other
def bare_pairs(instrument, bid, ask, leg_a, leg_b, beta, mids, window, side, entry_z, exit_z):
    """The z-score rule on the spread of two legs' last mids: how many times the side moved."""
    decisions = 0
    for k in range(instrument.size):
        i = instrument[k]
        if i != leg_a and i != leg_b:
            continue
        mids[i] = 0.5 * (bid[k] + ask[k])
        a = mids[leg_a]
        b = mids[leg_b]
        if not (a == a and b == b):
            continue
        spread = a - beta * b
        rolling_push(window, 0, spread)
        if not rolling_full(window, 0):
            continue
        std = rolling_std(window, 0)
        if std <= 0.0:
            continue
        z = (spread - rolling_mean(window, 0)) / std
        s = side[0]
        if s == 0:
            if z > entry_z:
                s = -1
            elif z < -entry_z:
                s = 1
        elif (s > 0 and z > -exit_z) or (s < 0 and z < exit_z):
            s = 0
        if s != side[0]:
            decisions += 1
            side[0] = s
    return decisions


def bare_signals(name: str, batches: list[dict], instruments, kind: str = "quotes") -> int:
    """The strategy's signals alone over the batches' columns (of `kind`): how many it gave."""
    p = PARAMS[name]
    n_inst = instruments.known_mask().size
    count = 0
    if kind == "bars":  # (sma_cross: the one built-in trading bars)
        ticks = instruments.tick_sizes(n_inst)
        fast = new_windows(n_inst, p["fast"], ticks)
        slow = new_windows(n_inst, p["slow"], ticks)
        prev = np.full(n_inst, np.nan)
        for c in batches:
            count += bare_sma_cross_bars(c["instrument"], c["close"], fast, slow, prev)
    elif name == "sma_cross":
        ticks = instruments.tick_sizes(n_inst)  # windows of prices, as the built-in's
        fast = new_windows(n_inst, p["fast"], ticks)
        slow = new_windows(n_inst, p["slow"], ticks)
        prev = np.full(n_inst, np.nan)
        for c in batches:
            count += bare_sma_cross(c["instrument"], c["bid_px"], c["ask_px"], fast, slow, prev)
    elif name == "obi_market_maker":
        tick = np.ones(n_inst)
        for inst in instruments:
            tick[inst.id] = inst.tick_size
        quoted_bid = np.full(n_inst, np.nan)
        quoted_ask = np.full(n_inst, np.nan)
        for c in batches:
            count += bare_obi_quotes(c["instrument"], c["bid_px"], c["ask_px"], c["bid_sz"],
                                     c["ask_sz"], tick, float(p["half_spread_ticks"]),
                                     p["imbalance_ticks"], float(p["requote_ticks"]),
                                     quoted_bid, quoted_ask)  # fmt: skip
    elif name == "pairs":
        mids = np.full(n_inst, np.nan)
        window = new_windows(1, p["window"])  # a spread: floats
        side = np.zeros(1, dtype=np.int64)
        for c in batches:
            count += bare_pairs(c["instrument"], c["bid_px"], c["ask_px"], p["leg_a"],
                                p["leg_b"], p["beta"], mids, window, side, p["entry_z"],
                                p["exit_z"])  # fmt: skip
    else:
        window = new_windows(n_inst, p["window"], instruments.tick_sizes(n_inst))
        side = np.zeros(n_inst, dtype=np.int64)
        for c in batches:
            count += bare_mean_reversion(c["instrument"], c["bid_px"], c["ask_px"], window, side,
                                         p["entry_z"], p["exit_z"])  # fmt: skip
    return count


def _full(session: Session, batches: list, kind: str) -> None:
    for batch in batches:
        session.on_batch(kind, batch)


def compare(rows: int, rounds: int, names: tuple[str, ...] = tuple(PARAMS),
            kind: str = "quotes") -> dict:  # fmt: skip
    """Per-event cost of each strategy's full loop and of its bare signal loop, round by
    round (the two take turns, so noise hits both alike), over a history of `kind`: quotes,
    or (sma_cross only) one-minute bars. On quotes, also `batch_call_overhead`."""
    history = open_history(quotes_file(rows) if kind == "quotes" else bars_file(rows))
    batches = list(history.batches(65_536))
    views = [columns(b) for b in batches]
    out: dict = {"rows": rows, "rounds": rounds, "kind": kind}
    for name in names:
        warm = Session(load_strategy(name), history.instruments, PARAMS[name], **EXCHANGE)
        warm.warm_up((kind,))
        bare_signals(name, views[:1], history.instruments, kind)  # compile the bare loop
        bare_ns, full_ns = [], []
        signals = orders = fills = 0
        for _ in range(rounds):
            # A fresh session each round, made before the clock starts: making one reads and
            # checks the loop's source (engine.loops), ~15 ms that are no event's cost.
            session = Session(load_strategy(name), history.instruments, PARAMS[name], **EXCHANGE)
            t0 = time.perf_counter()
            signals = bare_signals(name, views, history.instruments, kind)
            t1 = time.perf_counter()
            _full(session, batches, kind)
            t2 = time.perf_counter()
            bare_ns.append((t1 - t0) / rows * 1e9)
            full_ns.append((t2 - t1) / rows * 1e9)
            orders = int(session.ctx.clock[0].next_id - 1)  # order ids handed out
            fills = int(session.ctx.portfolio["traded"].sum())
        ratios = np.array(full_ns) / np.array(bare_ns)
        out[name] = {
            "bare_ns": bare_ns,
            "full_ns": full_ns,
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
    if kind == "quotes":
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
        "on_batch_ns": wrapped,
        "compiled_call_ns": direct,
        "on_batch_us_p50": float(np.median(w)),
        "on_batch_us_p99": float(np.percentile(w, 99)),
        "compiled_call_us_p50": float(np.median(d)),
        "compiled_call_us_p99": float(np.percentile(d, 99)),
    }


def print_report(r: dict) -> None:
    what = "quotes" if r["kind"] == "quotes" else "one-minute bars"
    print(
        f"compiled loop vs bare @njit signal loop: {r['rows']:,} {what} (8 instruments) in "
        f"memory, batches of 65,536, {r['rounds']} rounds taking turns, wall clock; full loop "
        f"with matching, fees (taker 1 bps + 0.001/unit, maker -0.2 bps) and order latency "
        f"(50 us + up to 20 us seeded jitter)"
    )
    for name in (n for n in PARAMS if n in r):
        s = r[name]
        print(
            f"  {name:15s} full loop {s['full_ns_per_event_p50']:6.1f} ns/event "
            f"({s['full_events_per_s_p50'] / 1e6:5.1f} M events/s), bare "
            f"{s['bare_ns_per_event_p50']:5.1f} ns/event; ratio p10 {s['ratio_p10']:.2f} "
            f"p50 {s['ratio_p50']:.2f} p90 {s['ratio_p90']:.2f}; "
            f"{s['bare_signals']:,} signals, {s['orders']:,} orders, "
            f"{s['traded_qty']:,.0f} units traded"
        )
    if "batch_call" not in r:
        return
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
    parser.add_argument("--kind", choices=("quotes", "bars"), default="quotes")
    args = parser.parse_args()
    names = tuple(PARAMS) if args.kind == "quotes" else ("sma_cross",)
    print_report(compare(args.rows, args.rounds, names, args.kind))
