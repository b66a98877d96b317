"""Quantities are whole lots inside the engine: fills that sum to zero leave exactly zero on
any lot, no order for less than one lot is ever made, and PnL and fees agree with an exact
Decimal computation to the cent."""

from __future__ import annotations

import math
from decimal import Decimal, getcontext
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from tickwise import load_strategy
from tickwise.engine.context import new_context
from tickwise.engine.instruments import Instrument, Instruments
from tickwise.engine.limits import KillSwitch, RiskLimits
from tickwise.engine.market import apply_quote_nb
from tickwise.engine.matching import _fill
from tickwise.engine.portfolio import pnl, position
from tickwise.engine.quantities import MAX_LOTS, lots_toward_zero, whole_lots, whole_lots_of
from tickwise.engine.schemas import (
    LIQ_MAKER,
    LIQ_TAKER,
    REASON_BAD_QTY,
    STATUS_NEW,
    STATUS_REJECTED,
)
from tickwise.engine.session import Session

from ..scripted import PLAN_ROWS, plan

SCRIPTED = f"{Path(__file__).parent.parent / 'scripted.py'}:Scripted"
LOTS = ("1e-8", "0.001", "0.01", "1", "100")  # as a person writes them
T0 = 1_700_000_000_000_000_000
MS = 1_000_000


def as_typed(k: int, lot: str) -> float:
    """k lots in units, as a person types the decimal: the float nearest k x lot."""
    return float(Decimal(k) * Decimal(lot))


def session(lot: str) -> Session:
    instruments = Instruments([Instrument(0, "X", 0.01, float(lot))])
    return Session(load_strategy(SCRIPTED), instruments, risk=RiskLimits.off(),
                   killswitch=KillSwitch.off())  # fmt: skip


def deep_quotes(n: int, size: float) -> dict[str, np.ndarray]:
    """n quotes 100.00/100.01 showing `size` units a side: every market order fills whole."""
    ts = T0 + np.arange(1, n + 1, dtype=np.int64) * MS
    return {
        "ts_event": ts, "ts_recv": ts, "instrument": np.zeros(n, np.uint32),
        "seq": np.arange(1, n + 1, dtype=np.uint64),
        "bid_px": np.full(n, 100.0), "ask_px": np.full(n, 100.01),
        "bid_sz": np.full(n, size), "ask_sz": np.full(n, size),
    }  # fmt: skip


# --- the conversion itself ------------------------------------------------------------------


@given(lot=st.sampled_from(LOTS), k=st.integers(1, MAX_LOTS))
def test_a_whole_number_of_lots_typed_as_a_decimal_is_that_number(lot, k) -> None:
    qty = as_typed(k, lot)
    assert whole_lots(qty, float(lot)) == k
    assert whole_lots_of(np.array([qty]), np.array([float(lot)]))[0] == k
    assert lots_toward_zero(qty, float(lot)) == k
    assert lots_toward_zero(-qty, float(lot)) == -k


@given(lot=st.sampled_from(LOTS), k=st.integers(0, 2**40), frac=st.floats(0.01, 0.99))
def test_anything_between_two_whole_lots_is_refused_or_rounded_toward_zero(lot, k, frac) -> None:
    qty = float((Decimal(k) + Decimal(frac)) * Decimal(lot))
    assert whole_lots(qty, float(lot)) == -1
    assert whole_lots_of(np.array([qty]), np.array([float(lot)]))[0] == -1
    assert lots_toward_zero(qty, float(lot)) == k  # a difference under one lot is nothing
    assert lots_toward_zero(-qty, float(lot)) == -k


@given(qty=st.sampled_from([0.0, -1.0, math.nan, math.inf, -math.inf, 1e300]))
def test_no_quantity_that_is_not_a_positive_finite_number_of_lots_converts(qty) -> None:
    assert whole_lots(qty, 0.01) == -1
    assert whole_lots_of(np.array([qty]), np.array([0.01]))[0] == -1


# --- through the engine ---------------------------------------------------------------------


@st.composite
def round_trips(draw):
    """A lot, and market orders of whole lots (up to 2**30 each) whose last one brings the
    position back to zero; quantities typed as decimals."""
    lot = draw(st.sampled_from(LOTS))
    signed = draw(st.lists(st.integers(-(2**30), 2**30).filter(bool), min_size=1,
                           max_size=PLAN_ROWS - 1))  # fmt: skip
    total = sum(signed)
    if total:
        signed.append(-total)
    return lot, signed


@settings(max_examples=60, deadline=None)
@given(case=round_trips())
def test_fills_that_sum_to_zero_leave_a_position_of_exactly_zero(case) -> None:
    lot, signed = case
    s = session(lot)
    plan(s.state, [(e + 1, 1 if k > 0 else -1, as_typed(abs(k), lot), math.nan)
                   for e, k in enumerate(signed)])  # fmt: skip
    r = s.on_batch("quotes", deep_quotes(len(signed) + 1, 1e12))
    assert np.all(r.orders["status"] == STATUS_NEW), r.orders
    assert len(r.fills) >= len(signed)
    assert s.ctx.portfolio[0]["lots"] == 0
    assert position(s.ctx, 0) == 0.0  # exactly: no residue, on any lot
    assert s.ctx.portfolio[0]["qty"] == 0.0  # (the units kept beside the lots, for marking)
    assert s.ctx.portfolio[0]["avg_px"] == 0.0
    # The plain floats the fills carry would not all have summed to zero:
    # (0.01 + 0.01 + 0.01 - 0.03 is 6.9e-18) -- the engine does not add those.


@st.composite
def targets(draw):
    lot = draw(st.sampled_from(LOTS))
    scale = float(lot) * draw(st.sampled_from([0.3, 1.0, 7.0, 1_000.0]))
    values = draw(st.lists(st.floats(-50.0, 50.0), min_size=1, max_size=PLAN_ROWS))
    return lot, [v * scale for v in values]


@settings(max_examples=60, deadline=None)
@given(case=targets())
def test_trade_to_sends_whole_lots_only_and_reaches_the_target_rounded_toward_zero(case) -> None:
    lot, goals = case
    s = session(lot)
    plan(s.state, [(e + 1, 2, goal, math.nan) for e, goal in enumerate(goals)])
    quotes = deep_quotes(len(goals) + 1, 1e12)
    for e in range(len(goals) + 1):
        r = s.on_batch("quotes", {c: v[e : e + 1] for c, v in quotes.items()})
        sent = r.orders[r.orders["status"] == STATUS_NEW]
        assert np.all(whole_lots_of(sent["qty"], np.full(len(sent), float(lot))) >= 1), sent
        assert not np.any(r.orders["status"] == STATUS_REJECTED), r.orders
        if e:  # the market order sent at the event before filled at this one's quote
            want = lots_toward_zero(goals[e - 1], float(lot))
            assert s.ctx.portfolio[0]["lots"] == want
            assert s.ctx.portfolio[0]["qty"] == as_typed(want, lot)  # (the decimal's float)


@settings(max_examples=30, deadline=None)
@given(lot=st.sampled_from(LOTS), k=st.integers(1, 10_000), frac=st.floats(0.05, 0.95))
def test_an_order_for_part_of_a_lot_is_refused_never_sent(lot, k, frac) -> None:
    s = session(lot)
    qty = float((Decimal(k - 1) + Decimal(frac)) * Decimal(lot))  # from part of one lot up
    plan(s.state, [(1, 1, qty, math.nan), (2, -1, qty, 100.0)])
    r = s.on_batch("quotes", deep_quotes(3, 1e12))
    assert list(r.orders["status"]) == [STATUS_REJECTED, STATUS_REJECTED]
    assert list(r.orders["reason"]) == [REASON_BAD_QTY, REASON_BAD_QTY]
    assert len(r.fills) == 0


def test_a_level_showing_less_than_a_lot_is_not_taken() -> None:
    """Sizes in market data are in units; the part of a level beyond its last whole lot
    cannot be traded, so a market order takes whole lots only (and an IOC cancels the rest)."""
    s = session("100")
    quotes = deep_quotes(3, 250.0)  # 2.5 lots shown
    plan(s.state, [(1, 1, 500.0, math.nan)])
    r = s.on_batch("quotes", quotes)
    assert list(r.fills["qty"]) == [200.0]
    assert s.ctx.portfolio[0]["lots"] == 2


# --- PnL and fees against Decimal -----------------------------------------------------------


@njit(cache=False)
def _book(ctx, side, lots, px, liquidity):
    """Each fill through the matching's own booking (fee included), one open order each."""
    for r in range(side.size):
        o = ctx.open_orders[0]
        o.id = r + 1
        o.instrument = 0
        o.side = side[r]
        o.price = px[r]
        o.lots = lots[r]
        o.filled = 0
        ctx.clock[0].n_open = 1
        ctx.inst_open[0] = 1
        ctx.clock[0].n_fill_log = 0
        _fill(ctx, 0, lots[r], px[r], liquidity[r], r + 1)


def decimal_books(lot: str, side, lots, cents, liquidity, fees: dict[str, str], mark: Decimal):
    """Average-cost books in exact decimals: (realised, fees, total PnL at `mark`)."""
    getcontext().prec = 60
    pos, avg, realized, paid = 0, Decimal(0), Decimal(0), Decimal(0)
    unit = Decimal(lot)
    for sd, n, c, liq in zip(side.tolist(), lots.tolist(), cents.tolist(), liquidity.tolist(),
                             strict=True):  # fmt: skip
        px = Decimal(c) / 100
        kind = "taker" if liq == LIQ_TAKER else "maker"
        rate = px * Decimal(fees[f"{kind}_bps"]) / 10_000 + Decimal(fees[f"{kind}_unit"])
        paid += n * unit * rate
        if pos == 0 or (pos > 0) == (sd > 0):
            avg = (avg * abs(pos) + px * n) / (abs(pos) + n)
            pos += sd * n
        else:
            closed = min(n, abs(pos))
            realized += closed * unit * (px - avg) * (1 if pos > 0 else -1)
            pos += sd * n
            if n > closed:
                avg = px
            elif pos == 0:
                avg = Decimal(0)
    return realized, paid, realized + pos * unit * (mark - avg) - paid


@settings(max_examples=5, deadline=None)
@given(lot=st.sampled_from(LOTS), seed=st.integers(0, 2**32 - 1))
def test_pnl_and_fees_agree_with_decimal_arithmetic_to_the_cent_over_100k_fills(lot, seed):
    rng = np.random.default_rng(seed)
    n = 100_000
    side = rng.choice(np.array([1, -1], np.int8), n)
    lots = rng.integers(1, 1_000, n).astype(np.int64) * max(1, int(0.01 / float(lot)))
    cents = rng.integers(9_000, 11_000, n)  # a price near 100 on a 0.01 grid
    liquidity = rng.choice(np.array([LIQ_MAKER, LIQ_TAKER], np.int8), n)
    fees = {"maker_bps": "-0.5", "taker_bps": "2.5", "maker_unit": "0", "taker_unit": "0.001"}
    ctx = new_context(Instruments([Instrument(0, "X", 0.01, float(lot))]))
    f = ctx.fees[0]
    f.maker_bps, f.taker_bps = float(fees["maker_bps"]), float(fees["taker_bps"])
    f.maker_per_unit, f.taker_per_unit = float(fees["maker_unit"]), float(fees["taker_unit"])
    _book(ctx, side, lots, cents / 100, liquidity)
    mark = Decimal(int(cents[-1])) / 100
    apply_quote_nb(ctx, 0, T0, float(mark), float(mark), 1.0, 1.0)
    realized, paid, total = decimal_books(lot, side, lots, cents, liquidity, fees, mark)
    p = ctx.portfolio[0]
    assert p["lots"] == int(np.sum(side.astype(np.int64) * lots))
    cent = Decimal("0.01")
    assert abs(Decimal(float(p["realized"])) - realized) < cent, (p["realized"], realized)
    assert abs(Decimal(float(p["fees"])) - paid) < cent, (p["fees"], paid)
    assert abs(Decimal(pnl(ctx, 0)) - total) < cent, (pnl(ctx, 0), total)


@settings(max_examples=40, deadline=None)
@given(lot=st.sampled_from(("0.1", "0.01", "0.001", "1e-8")), k=st.integers(1, 10**6))
def test_whole_lots_go_out_as_the_decimal_a_person_wrote_and_meet_limits_set_in_it(lot, k):
    """3 lots of 0.1 are recorded as 0.3 (not 0.30000000000000004), and an order of exactly
    max_order_qty passes the gate."""
    qty = as_typed(k, lot)
    risk = RiskLimits(max_order_qty=qty, max_notional=qty * 100.01, max_open_orders=10,
                      price_collar_pct=math.inf, reference_max_age_ms=math.inf,
                      max_orders_per_sec=0, self_trade_prevention=False,
                      runaway_repeats=0)  # fmt: skip
    s = Session(load_strategy(SCRIPTED), Instruments([Instrument(0, "X", 0.01, float(lot))]),
                risk=risk, killswitch=KillSwitch.off())  # fmt: skip
    plan(s.state, [(1, 1, qty, math.nan)])
    r = s.on_batch("quotes", deep_quotes(2, 1e12))
    assert list(r.orders["status"]) == [STATUS_NEW], r.orders
    assert r.orders["qty"][0] == qty
    assert r.fills["qty"][0] == qty
    assert position(s.ctx, 0) == qty
