"""The risk gate over random markets, random orders and random limits: no order that breaks
a limit ever leaves, and once halted no automated order leaves at all."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tickwise import load_strategy
from tickwise.engine.limits import KillSwitch, RiskLimits
from tickwise.engine.schemas import REASON_HALTED, STATUS_NEW, STATUS_REJECTED
from tickwise.engine.session import Session

from ..conftest import simple_instruments
from ..scripted import plan
from .test_matching import markets, plans

SCRIPTED = f"{Path(__file__).parent.parent / 'scripted.py'}:Scripted"
INF = math.inf


@st.composite
def limits(draw) -> RiskLimits:
    def maybe(strategy):
        return draw(st.one_of(st.just(INF), strategy))

    return RiskLimits(
        max_order_qty=maybe(st.integers(1, 300)),
        max_notional=maybe(st.integers(10, 3_000)),
        max_position=maybe(st.integers(1, 500)),
        max_gross_exposure=INF,
        max_open_orders=draw(st.integers(1, 6)),
        price_collar_pct=maybe(st.floats(0.01, 3.0)),
        reference_max_age_ms=INF,
        max_orders_per_sec=draw(st.integers(0, 5)),
        self_trade_prevention=False,
        runaway_repeats=0,
    )


@st.composite
def cases(draw):
    quotes = draw(markets())
    return quotes, draw(plans(len(quotes["ts_event"]))), draw(limits())


def submission_events(rows: list[tuple], n: int) -> list[int]:
    """The event (0-based) of each order submission, in id order (cancels take no id)."""
    events = []
    for e in range(1, n + 1):
        events += [e - 1 for row in rows if row[0] == e and row[1] != 0]
    return events


@settings(max_examples=150)
@given(case=cases())
def test_no_order_that_breaks_a_limit_ever_leaves(case) -> None:
    quotes, rows, risk = case
    n = len(quotes["ts_event"])
    s = Session(load_strategy(SCRIPTED), simple_instruments(1), risk=risk,
                killswitch=KillSwitch.off())  # fmt: skip
    plan(s.state, rows)
    orders = []
    for k in range(n):  # event by event, to look at the state after each
        r = s.on_batch("quotes", {c: v[k : k + 1] for c, v in quotes.items()})
        orders.append(r.orders)
        assert s.ctx.clock[0].n_open <= risk.max_open_orders
        assert abs(s.ctx.portfolio[0]["lots"]) <= risk.max_position
    orders = np.concatenate(orders)
    event_of = submission_events(rows, n)
    sent = orders[orders["status"] == STATUS_NEW]
    refused = orders[orders["status"] == STATUS_REJECTED]
    event(f"orders sent: {min(len(sent), 3)}+, refused: {min(len(refused), 3)}+")
    for o in sent:
        e = event_of[int(o["id"]) - 1]
        mid = 0.5 * (quotes["bid_px"][e] + quotes["ask_px"][e])
        assert o["qty"] <= risk.max_order_qty
        if o["price"] == o["price"]:  # limit
            assert abs(o["price"] - mid) <= mid * risk.price_collar_pct / 100 * (1 + 1e-9)
            assert o["qty"] * o["price"] <= risk.max_notional * (1 + 1e-12)
        else:
            touch = quotes["ask_px"][e] if o["side"] > 0 else quotes["bid_px"][e]
            assert abs(touch - mid) <= mid * risk.price_collar_pct / 100 * (1 + 1e-9)
            assert o["qty"] * touch <= risk.max_notional * (1 + 1e-12)
    per_sec = int(risk.max_orders_per_sec)
    if per_sec:
        ts = sent["ts"]  # in the order they left
        assert all(ts[j] - ts[j - per_sec] >= 1_000_000_000 for j in range(per_sec, len(ts)))


@settings(max_examples=60)
@given(quotes=markets(), halt_at=st.integers(0, 20), data=st.data())
def test_after_a_halt_no_automated_order_leaves(quotes, halt_at, data) -> None:
    n = len(quotes["ts_event"])
    rows = data.draw(plans(n))
    s = Session(load_strategy(SCRIPTED), simple_instruments(1), risk=RiskLimits.off(),
                killswitch=KillSwitch.off())  # fmt: skip
    plan(s.state, rows)
    cut = min(halt_at, n)
    s.on_batch("quotes", {c: v[:cut] for c, v in quotes.items()})
    s.halt()
    r = s.on_batch("quotes", {c: v[cut:] for c, v in quotes.items()})
    assert (r.orders["status"] != STATUS_NEW).all()
    refused = r.orders[r.orders["status"] == STATUS_REJECTED]
    assert (refused["reason"] == REASON_HALTED).all()
    assert len(refused) <= 1  # the first refusal under the halt is logged; the rest counted
    assert s.ctx.clock[0].n_open == 0  # every resting order cancelled by the halt
    assert s.status()["halted"]  # latched
