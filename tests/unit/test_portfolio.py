"""Position accounting: exact under partial fills and flips; equal to cash plus position marked."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickwise.engine.context import new_context
from tickwise.engine.market import apply_quote_nb
from tickwise.engine.portfolio import apply_fill_nb, pnl, unrealized_pnl

from ..conftest import simple_instruments

BUY, SELL = 1, -1


def fresh():
    return new_context(simple_instruments(1))


def test_adding_averages_reducing_realises_and_flipping_reopens_at_the_fill() -> None:
    ctx = fresh()
    p = ctx.portfolio
    apply_fill_nb(ctx, 0, BUY, 10, 100.0, 0.0)
    apply_fill_nb(ctx, 0, BUY, 10, 110.0, 0.0)
    assert (p[0]["lots"], p[0]["avg_px"], p[0]["realized"]) == (20.0, 105.0, 0.0)
    apply_fill_nb(ctx, 0, SELL, 5, 120.0, 0.0)  # partial close: +5 x 15
    assert (p[0]["lots"], p[0]["avg_px"], p[0]["realized"]) == (15.0, 105.0, 75.0)
    apply_fill_nb(ctx, 0, SELL, 25, 90.0, 0.0)  # closes 15 at -15 each, opens 10 short at 90
    assert (p[0]["lots"], p[0]["avg_px"], p[0]["realized"]) == (-10.0, 90.0, -150.0)
    apply_fill_nb(ctx, 0, BUY, 10, 80.0, 1.5)  # short covered 10 lower: +100, fee 1.5
    assert (p[0]["lots"], p[0]["avg_px"], p[0]["realized"]) == (0.0, 0.0, -50.0)
    assert p[0]["fees"] == 1.5
    assert p[0]["traded"] == 60.0
    assert pnl(ctx, 0) == -51.5


def test_open_position_is_marked_to_the_mid() -> None:
    ctx = fresh()
    apply_fill_nb(ctx, 0, SELL, 4, 50.0, 0.0)
    assert unrealized_pnl(ctx, 0) == 0.0  # nothing to mark with yet
    apply_quote_nb(ctx, 0, 1, 48.0, 48.5, 1.0, 1.0)
    assert unrealized_pnl(ctx, 0) == pytest.approx(4.0 * (50.0 - 48.25))


fills = st.lists(
    st.tuples(
        st.sampled_from([BUY, SELL]),
        st.integers(1, 500),  # lots
        st.integers(1, 100_000),  # price in cents
        st.integers(0, 300),  # fee in cents
    ),
    min_size=1,
    max_size=60,
)


@given(fills=fills, mark_cents=st.integers(1, 100_000))
def test_pnl_equals_cash_of_all_fills_plus_the_position_marked(fills, mark_cents) -> None:
    ctx = fresh()
    cash = 0.0
    position = 0.0
    for side, lots, cents, fee_cents in fills:
        qty, px, fee = float(lots), cents / 100, fee_cents / 100  # (the lot is 1)
        apply_fill_nb(ctx, 0, side, lots, px, fee)
        cash -= side * qty * px + fee
        position += side * qty
    mark = mark_cents / 100
    apply_quote_nb(ctx, 0, 1, mark, mark, 1.0, 1.0)
    assert ctx.portfolio[0]["lots"] == position
    expected = cash + position * mark
    assert math.isclose(pnl(ctx, 0), expected, rel_tol=1e-9, abs_tol=1e-6)
