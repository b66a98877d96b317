"""The simulated exchange over random markets and random orders: it never fills at a price
the market did not offer, it conserves cash and position, every unit of every order is
accounted for, and batching changes nothing."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tickwise import load_strategy
from tickwise.engine.portfolio import total_pnl
from tickwise.engine.schemas import LIQ_MAKER, LIQ_TAKER, STATUS_CANCELLED, STATUS_NEW, TIF_IOC
from tickwise.engine.session import Session

from ..conftest import simple_instruments
from ..scripted import PLAN_ROWS, plan

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
SCRIPTED = f"{Path(__file__).parent.parent / 'scripted.py'}:Scripted"
TICK = 0.01


@st.composite
def markets(draw):
    """Quotes of one instrument: a random walk on the tick grid, strictly increasing times."""
    n = draw(st.integers(3, 60))
    steps = draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n))
    bid_ticks = 1_000 + np.cumsum(steps)
    spread = np.array(draw(st.lists(st.integers(1, 3), min_size=n, max_size=n)))
    gaps = np.array(draw(st.lists(st.integers(1, 3_000_000), min_size=n, max_size=n)))
    ts = T0 + np.cumsum(gaps)
    sizes = st.lists(st.integers(1, 300), min_size=n, max_size=n)
    return {
        "ts_event": ts,
        "ts_recv": ts + np.array(draw(st.lists(st.integers(0, 500_000), min_size=n, max_size=n))),
        "instrument": np.zeros(n, np.uint32),
        "seq": np.arange(1, n + 1, dtype=np.uint64),
        "bid_px": np.round(bid_ticks * TICK, 2),
        "ask_px": np.round((bid_ticks + spread) * TICK, 2),
        "bid_sz": np.array(draw(sizes), dtype=float),
        "ask_sz": np.array(draw(sizes), dtype=float),
    }


@st.composite
def plans(draw, n: int):
    """Up to PLAN_ROWS actions: market, limit (GTC or IOC, either side of the touch), cancel."""
    rows = []
    for r in range(draw(st.integers(1, PLAN_ROWS))):
        at = draw(st.integers(1, n))
        if r and draw(st.integers(0, 4)) == 0:
            rows.append((at, 0, draw(st.integers(0, r - 1)), np.nan))
            continue
        side = draw(st.sampled_from([1, -1]))
        qty = draw(st.integers(1, 400))
        if draw(st.booleans()):
            rows.append((at, side, qty, np.nan))
        else:
            px = round((1_000 + draw(st.integers(-8, 8))) * TICK, 2)
            rows.append((at, side, qty, px, draw(st.sampled_from([0, TIF_IOC]))))
    return rows


@st.composite
def cases(draw):
    quotes = draw(markets())
    return {
        "quotes": quotes,
        "plan": draw(plans(len(quotes["ts_event"]))),
        "latency": draw(st.sampled_from([0, 1, 700_000, 2_000_000])),
        "jitter": draw(st.sampled_from([0, 1_500_000])),
        "cuts": sorted(draw(st.sets(st.integers(1, len(quotes["ts_event"]) - 1), max_size=6))),
    }


def replay(case, cuts):
    s = Session(load_strategy(SCRIPTED), simple_instruments(1), taker_fee_bps=1.0,
                maker_fee_per_unit=-0.001, order_latency_ns=case["latency"],
                latency_jitter_ns=case["jitter"], latency_seed=7)  # fmt: skip
    plan(s.state, case["plan"])
    bounds = [0, *cuts, len(case["quotes"]["ts_event"])]
    results = [
        s.on_batch("quotes", {k: v[a:b] for k, v in case["quotes"].items()})
        for a, b in itertools.pairwise(bounds)
    ]
    orders = np.concatenate([r.orders for r in results])
    fills = np.concatenate([r.fills for r in results])
    return s, orders, fills


@settings(max_examples=150)
@given(case=cases())
def test_fills_are_offered_conserved_and_independent_of_batching(case) -> None:
    s, orders, fills = replay(case, [])
    q = case["quotes"]

    # Batching changes nothing.
    _, orders2, fills2 = replay(case, case["cuts"])
    assert orders.tobytes() == orders2.tobytes()
    assert fills.tobytes() == fills2.tobytes()

    sent = {int(o["id"]): o for o in orders[orders["status"] == STATUS_NEW]}
    event(f"taker fills: {bool((fills['liquidity'] == LIQ_TAKER).any())}")
    event(f"maker fills: {bool((fills['liquidity'] == LIQ_MAKER).any())}")
    for f in fills:
        o = sent[int(f["order_id"])]
        buying = f["side"] > 0
        # The market at the fill's time: the last quote at or before it.
        at = np.searchsorted(q["ts_event"], f["ts"], side="right") - 1
        assert at >= 0, "filled before the market showed anything"
        ask, bid = q["ask_px"][at], q["bid_px"][at]
        if f["liquidity"] == LIQ_TAKER:
            # An order reaching the exchange at the very nanosecond of a quote meets the
            # market before that quote (orders first on ties): either state is "that moment".
            moment = {at, np.searchsorted(q["ts_event"], f["ts"], side="left") - 1} - {-1}
            shown = [
                (
                    (q["ask_px"] if buying else q["bid_px"])[m],
                    (q["ask_sz"] if buying else q["bid_sz"])[m],
                )
                for m in moment
            ]
            assert any(f["price"] == px and f["qty"] <= sz for px, sz in shown)
        else:
            assert f["liquidity"] == LIQ_MAKER
            assert f["price"] == o["price"]
            assert (ask <= f["price"]) if buying else (bid >= f["price"])  # reached its limit
        if o["price"] == o["price"]:
            assert (f["price"] <= o["price"]) if buying else (f["price"] >= o["price"])
        assert f["ts"] >= o["ts"]

    # Every unit of every order: filled, cancelled or still open.
    open_rows = s.ctx.open_orders[: s.ctx.clock[0].n_open]
    # (and the per-instrument counts the matching step trusts to skip empty tables agree)
    counts = np.bincount(open_rows["instrument"], minlength=s.ctx.inst_open.size)
    assert (s.ctx.inst_open == counts).all()
    for oid, o in sent.items():
        filled = fills["qty"][fills["order_id"] == oid].sum()
        gone = orders["qty"][(orders["id"] == oid) & (orders["status"] == STATUS_CANCELLED)].sum()
        left = (  # (whole lots of 1)
            open_rows["lots"][open_rows["id"] == oid] - open_rows["filled"][open_rows["id"] == oid]
        )
        assert abs(filled + gone + left.sum() - o["qty"]) < 1e-9
        if o["tif"] == TIF_IOC:  # never rests: gone, or still on its way at the data's end
            assert (open_rows["status"][open_rows["id"] == oid] == STATUS_NEW).all()

    # Cash + position marked at the mid is the portfolio's PnL.
    signed = fills["side"] * fills["qty"]
    cash = -(signed * fills["price"]).sum() - fills["fee"].sum()
    position = signed.sum()
    assert s.ctx.portfolio[0]["lots"] == position
    mid = 0.5 * (q["bid_px"][-1] + q["ask_px"][-1])
    assert abs(total_pnl(s.ctx) - (cash + position * mid)) < 1e-6
