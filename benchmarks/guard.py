"""What the guardrail costs, and how fast it acts.

1. Per event: `mean_reversion`'s full loop with every kill-switch check and
   pre-trade limit on (set high enough never to trip here) against the same
   loop compiled without the kill switch and with the limits off, over the same
   quotes in memory, taking turns. The ratio is what the guard adds.
2. Per order: the pre-trade gate alone, called in a compiled loop, with every
   limit on and with every limit off.
3. Time to halt: a flash crash in generated data; the kill switch must halt in
   the event whose mid first crosses the price-jump threshold (recomputed here
   from the data with the switch's own window), zero events later.

Run as a script: `python benchmarks/guard.py --rows 10000000`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from numba import njit

from tickwise import load_strategy
from tickwise.backtest.replay import run_backtest
from tickwise.engine.config import SessionConfig
from tickwise.engine.context import JUMP_BUCKETS, new_context
from tickwise.engine.limits import KillSwitch, RiskLimits
from tickwise.engine.market import apply_quote_nb
from tickwise.engine.risk import gate_nb
from tickwise.engine.schemas import ORD_LIMIT
from tickwise.engine.session import Session
from tickwise.feeds.history import open_history
from tickwise.feeds.synth import FlashCrash, SynthConfig, make_instruments, synth

try:
    from .data import quotes_file
    from .loop import EXCHANGE
except ImportError:  # run as a script
    from data import quotes_file  # type: ignore[no-redef]
    from loop import EXCHANGE  # type: ignore[no-redef]

PARAMS = {"window": 100, "entry_z": 2.0, "exit_z": 0.5, "qty": 100.0}
# Every check on, none tripping on these data: what a cautious desk would run.
GUARD_RISK = RiskLimits(max_order_qty=1e9, max_notional=1e12, max_position=1e9,
                        max_gross_exposure=1e15, max_open_orders=1_000,
                        price_collar_pct=5.0, max_orders_per_sec=100_000)  # fmt: skip
GUARD_KILL = KillSwitch(max_loss=1e12, max_drawdown=1e12, price_jump_pct=50.0,
                        price_jump_sigmas=1e6, stale_feed_ms=60_000.0,
                        max_feed_latency_ms=1_000.0, max_rejects_per_sec=1e6)  # fmt: skip


def per_event(rows: int, rounds: int) -> dict:
    history = open_history(quotes_file(rows))
    batches = list(history.batches(65_536))
    strategy = load_strategy("mean_reversion")

    def session(guarded: bool) -> Session:
        guard = (
            {"risk": GUARD_RISK, "killswitch": GUARD_KILL}
            if guarded
            else {"risk": RiskLimits.off(), "killswitch": KillSwitch.off()}
        )
        return Session(strategy, history.instruments, PARAMS, guarded=guarded, **EXCHANGE, **guard)

    for guarded in (True, False):
        session(guarded).warm_up(("quotes",))
    on, off = [], []
    trips = orders = 0
    for r in range(rounds):
        turns = ((True, on), (False, off))
        for guarded, times in turns if r % 2 == 0 else turns[::-1]:  # who goes first alternates
            s = session(guarded)
            t0 = time.perf_counter()
            for b in batches:
                s.on_batch("quotes", b)
            times.append((time.perf_counter() - t0) / rows * 1e9)
            if guarded:
                trips, orders = int(s.ctx.guard[0].trips), int(s.ctx.clock[0].next_id - 1)
    ratio = np.array(on) / np.array(off)
    return {
        "rows": rows,
        "rounds": rounds,
        "guarded_ns": on,
        "unguarded_ns": off,
        "guarded_ns_p50": float(np.median(on)),
        "unguarded_ns_p50": float(np.median(off)),
        "ratio_p10": float(np.percentile(ratio, 10)),
        "ratio_p50": float(np.median(ratio)),
        "ratio_p90": float(np.percentile(ratio, 90)),
        "trips": trips,
        "orders": orders,
    }


@njit  # not cached: run as a script and as a package module, a cache of one breaks the other
def _gate(ctx, n):
    """n passes through the pre-trade gate (checks and bookkeeping, as an order pays them) of
    limit orders alternating side, size and price, 20 us apart on a quote kept fresh (so
    that neither the throttle, the runaway check nor the reference's age refuse them); how
    many passed."""
    passed = 0
    for k in range(n):
        ctx.clock[0].recv += 20_000
        ctx.market[0].ts = ctx.clock[0].recv
        side = 1 if k & 1 else -1
        price = 100.0 - side * 0.01 * (1 + (k & 7))
        lots = 1 + (k & 3)  # (the lot is 1)
        if gate_nb(ctx, 0, side, float(lots), lots, price, ORD_LIMIT) == 0:
            passed += 1
    return passed


def per_order(orders: int, rounds: int) -> dict:
    """Per order, on a fresh session each round (a refused order costs less than one that
    passes every check: a session halted by a reject storm would flatter the gate)."""
    instruments = make_instruments(8)  # the benchmark histories' instruments
    settings = {"on": GUARD_RISK, "off": RiskLimits.off()}
    times: dict[str, list[float]] = {name: [] for name in settings}
    passed = dict.fromkeys(settings, 0)
    for r in range(rounds + 1):
        for name in settings if r % 2 == 0 else list(settings)[::-1]:  # taking turns
            ctx = new_context(instruments, risk=settings[name], killswitch=GUARD_KILL)
            ctx.clock[0].recv = 1_700_000_000_000_000_000
            apply_quote_nb(ctx, 0, ctx.clock[0].recv, 99.99, 100.01, 500.0, 500.0)
            t0 = time.perf_counter()
            passed[name] = _gate(ctx, orders)
            if r:  # (the first round compiles)
                times[name].append((time.perf_counter() - t0) / orders * 1e9)
    out: dict = {}
    for name, ns in times.items():
        out[f"gate_{name}_ns"] = ns
        out[f"gate_{name}_ns_p50"] = float(np.median(ns))
        out[f"gate_{name}_ns_p90"] = float(np.percentile(ns, 90))
        out[f"gate_{name}_passed"] = passed[name]
    out["orders"] = orders
    return out


@njit  # not cached: run as a script and as a package module, a cache of one breaks the other
def _first_crossing(ts, instrument, mid, width, pct):
    """Index of the first event whose mid is more than pct % away from the extremes of its
    instrument's price-jump window (the current bucket and the 15 before it), or -1."""
    n_inst = instrument.max() + 1
    lo = np.full((n_inst, JUMP_BUCKETS), np.inf)
    hi = np.full((n_inst, JUMP_BUCKETS), -np.inf)
    current = np.zeros(n_inst, dtype=np.int64)
    for k in range(ts.size):
        i = instrument[k]
        b = ts[k] // width
        if b != current[i]:
            steps = b - current[i] if current[i] != 0 else JUMP_BUCKETS
            for s in range(1, min(steps, JUMP_BUCKETS) + 1):
                lo[i, (current[i] + s) % JUMP_BUCKETS] = np.inf
                hi[i, (current[i] + s) % JUMP_BUCKETS] = -np.inf
            current[i] = b
        slot = b % JUMP_BUCKETS
        lo[i, slot] = min(lo[i, slot], mid[k])
        hi[i, slot] = max(hi[i, slot], mid[k])
        move = max(hi[i].max() - mid[k], mid[k] - lo[i].min()) / mid[k] * 100.0
        if move > pct:
            return k
    return -1


def time_to_halt(rows: int = 1_000_000) -> dict:
    crash = FlashCrash(at_s=300.0, drop_pct=9.0, down_s=20.0, recover_s=60.0)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "crash.parquet"
        synth(SynthConfig(kind="quotes", rows=rows, instruments=4, seed=3, episodes=(crash,)),
              data)  # fmt: skip
        kill = KillSwitch(price_jump_pct=3.0, price_jump_window_ms=30_000.0)
        bt = run_backtest("mean_reversion", data, PARAMS, SessionConfig(killswitch=kill))
        columns = {}
        for batch in open_history(data).batches(1 << 20):
            for name in ("ts_event", "instrument", "bid_px", "ask_px"):
                columns.setdefault(name, []).append(batch.column(name).to_numpy())
        ts, inst, bid, ask = (np.concatenate(columns[n]) for n in
                              ("ts_event", "instrument", "bid_px", "ask_px"))  # fmt: skip
    status = bt.session.status()
    crossing = _first_crossing(ts, inst.astype(np.int64), 0.5 * (bid + ask),
                               np.int64(kill.price_jump_window_ms * 1e6 / JUMP_BUCKETS),
                               3.0)  # fmt: skip
    halted_at = int(np.searchsorted(ts, status["halt_ts"]))
    sent = bt.orders[bt.orders["status"] == 0]
    return {
        "halt_reason": status["halt_reason"],
        "crossing_event": int(crossing),
        "halt_event": halted_at,
        "events_later": halted_at - int(crossing),
        "orders_after_halt": int((sent["ts"] > status["halt_ts"] + 10**9).sum()),
        "move_pct": status["halt_value"],
    }


def print_report(e: dict, o: dict, h: dict) -> None:
    added = (e["ratio_p50"] - 1.0) * 100
    print(
        f"guard per event: mean_reversion, {e['rows']:,} quotes in memory, {e['rounds']} rounds "
        f"taking turns, wall clock; every check on ({e['trips']} trips, {e['orders']:,} orders)"
    )
    print(
        f"  guarded {e['guarded_ns_p50']:.1f} ns/event, without the kill switch and limits "
        f"{e['unguarded_ns_p50']:.1f} ns/event; ratio p10 {e['ratio_p10']:.3f} p50 "
        f"{e['ratio_p50']:.3f} p90 {e['ratio_p90']:.3f}: {added:+.1f} % (target < +15 %)"
    )
    print(
        f"guard per order: pre-trade gate in a compiled loop, {o['orders']:,} limit orders on a "
        f"fresh session per round: every limit on {o['gate_on_ns_p50']:.1f} ns/order (p90 "
        f"{o['gate_on_ns_p90']:.1f}, {o['gate_on_passed']:,} passed), all off "
        f"{o['gate_off_ns_p50']:.1f} ns/order (p90 {o['gate_off_ns_p90']:.1f})"
    )
    print(
        f"time to halt: {h['halt_reason']} on a generated 9 % flash crash (threshold 3 % in "
        f"30 s): the mid crossed at event #{h['crossing_event']:,}, halted at event "
        f"#{h['halt_event']:,}: {h['events_later']} events later; automated orders after the "
        f"halt: {h['orders_after_halt']}"
    )


def measure(rows: int, rounds: int) -> tuple[dict, dict, dict]:
    return per_event(rows, rounds), per_order(1_000_000, rounds), time_to_halt()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print_report(*measure(args.rows, args.rounds))
