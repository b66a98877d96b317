"""Points a search draws from a continuous range are written as they ran (a few significant
digits, inside the range); the Pareto front is exactly the trials no other beats in every
objective, and it ranks first."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from tickwise.backtest.search import SIGNIFICANT, Objective, snap
from tickwise.backtest.space import Dimension
from tickwise.backtest.sweep import pareto_front, rank


@given(st.floats(-1e6, 1e6), st.floats(1e-6, 1e6), st.floats(0, 1), st.booleans())
def test_a_drawn_float_keeps_six_digits_of_its_range_and_stays_in_it(
    low: float, width: float, at: float, log: bool
) -> None:
    if log:
        low = abs(low) + 1e-3
    high = low + width
    d = Dimension("x", float, low=low, high=high, log=log)
    drawn = low + at * (high - low)
    value = snap(d, drawn)
    assert low <= value <= high
    if log:  # six significant digits of the value
        assert float(f"{value:.{SIGNIFICANT}g}") == value or value in (low, high)
        assert abs(value - drawn) <= abs(drawn) * 10 ** (1 - SIGNIFICANT)
    else:  # six of the width: a narrow range far from zero keeps its values apart
        unit = 10 ** (math.floor(math.log10(width)) - SIGNIFICANT + 1)
        assert abs(value - drawn) <= unit / 2 * (1 + 1e-9) + abs(drawn) * 1e-15


def test_a_narrow_range_far_from_zero_is_not_collapsed_to_its_ends() -> None:
    d = Dimension("x", float, low=100_000.1, high=100_000.9)
    assert snap(d, 100_000.523456789) == 100_000.523457
    assert snap(Dimension("x", float, low=0.0, high=1.0), 0.1 + 0.2) == 0.3


scores = st.lists(st.tuples(st.integers(-5, 5), st.integers(-5, 5)), min_size=1, max_size=30)


@given(scores, st.lists(st.booleans(), min_size=30, max_size=30))
def test_the_pareto_front_is_what_nothing_beats_in_every_objective_and_ranks_first(
    points: list[tuple[int, int]], ran: list[bool]
) -> None:
    goals = (Objective("pnl"), Objective("max_drawdown", maximise=False))
    rows = [{"status": "ok" if ok else "halted", "pnl": float(a), "max_drawdown": float(b)}
            for (a, b), ok in zip(points, ran, strict=False)]  # fmt: skip
    front = pareto_front(rows, goals)
    ok = [n for n, r in enumerate(rows) if r["status"] == "ok"]

    def beats(m: int, n: int) -> bool:
        a, b = rows[m], rows[n]
        at_least = a["pnl"] >= b["pnl"] and a["max_drawdown"] <= b["max_drawdown"]
        return at_least and (a["pnl"], a["max_drawdown"]) != (b["pnl"], b["max_drawdown"])

    assert front == {n for n in ok if not any(beats(m, n) for m in ok)}
    ranks = rank(rows, goals)
    assert sorted(ranks[n] for n in front) == list(range(1, len(front) + 1))
    assert all(ranks[n] is None for n in range(len(rows)) if n not in ok)
    assert sorted(r for r in ranks if r is not None) == list(range(1, len(ok) + 1))
