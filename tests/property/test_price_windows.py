"""Windows of prices against exact rational arithmetic: on any grid, their means, deviations
and z-scores compare (with each other, with thresholds) exactly as the exact values do, ties
included, and what they return depends only on the values they hold."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tickwise.engine.indicators import (
    _PER_UNIT,
    new_windows,
    rolling_count,
    rolling_max,
    rolling_mean,
    rolling_min,
    rolling_push,
    rolling_std,
    rolling_zscore,
)

# Ticks of every kind: decimal cents, coarse, crypto's 1e-8 and ticks larger than one unit.
TICKS = ["0.01", "0.5", "0.25", "1", "5", "0.00000001"]
THRESHOLDS = [Fraction(2), Fraction(1, 2), Fraction(3, 2), Fraction(1), Fraction(1, 10)]

# Windows (in quanta above the lowest) whose last value is exactly at z = t; their mirror
# images are at -t. Found by searching every window of up to 8 values in 0..3.
TIES = {
    (0, 0, 0, 0, 1): 2,
    (0, 0, 1, 1, 1, 3): 2,
    (0, 0, 0, 1, 1, 1, 2, 3): 2,
    (0, 0, 0, 2, 1): Fraction(1, 2),
    (0, 0, 0, 1, 0): Fraction(-1, 2),
    (0, 0, 0, 0, 0, 0, 3, 1): Fraction(1, 2),
    (0, 0, 1, 2, 2, 2, 2, 3): Fraction(3, 2),
    (0, 1, 2, 2, 2, 2, 3, 0): Fraction(-3, 2),
    (0, 0, 1, 1): 1,
    (0, 1, 1, 0): -1,
}


def exact_z_sign(values: list[Fraction], t: Fraction) -> int | None:
    """The sign of z - t for the last value of `values` in exact arithmetic (None: no spread)."""
    m = len(values)
    mean = sum(values) / m
    var = sum((v - mean) ** 2 for v in values) / m
    if var == 0:
        return None
    d = values[-1] - mean  # z - t has the sign of d - t sqrt(var)
    sd, st_ = (d > 0) - (d < 0), (t > 0) - (t < 0)
    if sd != st_:
        return 1 if sd > st_ else -1
    square = (d * d > t * t * var) - (d * d < t * t * var)
    return square * sd


def sign(x: float) -> int:
    return int(x > 0) - int(x < 0)


def price(quanta: int, tick: Fraction) -> tuple[float, Fraction]:
    """A price of whole half-ticks as a strategy sees it (the mid of a bid and an ask on the
    grid, as floats) and as the decimal it is."""
    bid_ticks = quanta // 2
    bid = float(bid_ticks * tick)
    ask = float((quanta - bid_ticks) * tick)
    return 0.5 * (bid + ask), quanta * tick / 2


def check_window(win: np.ndarray, row: int, held: list[Fraction], x: float) -> None:
    """Every comparison a strategy makes of row's results is the exact one."""
    m = len(held)
    mean = sum(held) / m
    assert rolling_count(win, row) == m
    assert abs(Fraction(rolling_mean(win, row)) - mean) <= abs(mean) * Fraction(2, 2**52)
    if win[row, _PER_UNIT].is_integer():  # (a decimal grid: the price is k / that, rounded once)
        assert rolling_max(win, row) == float(max(held))
        assert rolling_min(win, row) == float(min(held))
    std = Fraction(rolling_std(win, row))
    var = sum((v - mean) ** 2 for v in held) / m
    assert abs(std * std - var) <= var * Fraction(8, 2**52)
    z = rolling_zscore(win, row, x)
    for t in THRESHOLDS:
        for threshold in (t, -t):
            exact = exact_z_sign(held, threshold)
            if exact is None:
                assert np.isnan(z)
            else:
                assert sign(z - float(threshold)) == exact, (held, threshold, z)


@settings(max_examples=200, deadline=None)
@given(
    tick=st.sampled_from(TICKS),
    base=st.integers(1, 10**12),
    tie=st.sampled_from(sorted(TIES)),
    mirrored=st.booleans(),
    scale=st.integers(1, 200_000),
    nudge=st.sampled_from([-1, 0, 0, 1]),
    history=st.lists(st.integers(-60, 60), max_size=40),
)
def test_zscores_compare_with_thresholds_as_exact_arithmetic_does(
    tick, base, tie, mirrored, scale, nudge, history
) -> None:
    # A window of random prices, then one exactly at a threshold (scaled, mirrored) or a
    # quantum away from it (nudged): near ties and ties, about any price on any grid.
    tick = Fraction(tick)
    offsets = [(-v if mirrored else v) * scale for v in tie]
    offsets[-1] += nudge
    m = len(tie)
    win = new_windows(2, m, np.array([float(tick)] * 2))
    held: list[Fraction] = []
    for q in [base + h for h in history] + [base + o for o in offsets]:
        x, exact = price(q, tick)
        rolling_push(win, 1, x)
        held = [*held, exact][-m:]
        check_window(win, 1, held, x)
    assert rolling_count(win, 0) == 0  # (rows are apart)
    if nudge == 0:
        t = Fraction(TIES[tie]) * (-1 if mirrored else 1)
        assert rolling_zscore(win, 1, x) == float(t)  # the tie is the threshold, exactly


@settings(max_examples=200, deadline=None)
@given(
    tick=st.sampled_from(TICKS),
    base=st.integers(1, 10**12),
    sizes=st.sampled_from([(1, 2), (2, 3), (2, 4), (3, 6), (4, 5), (5, 10), (10, 50)]),
    moves=st.lists(st.integers(-2, 2), min_size=60, max_size=200),
)
def test_means_of_two_windows_compare_as_exact_arithmetic_does(tick, base, sizes, moves) -> None:
    # A walk of few levels: the two means are often exactly equal.
    tick = Fraction(tick)
    fast, slow = sizes
    wins = [new_windows(1, n, np.array([float(tick)])) for n in sizes]
    held: list[Fraction] = []
    level = base
    for move in moves:
        level += move
        x, exact = price(level, tick)
        held = [*held, exact][-slow:]
        for win in wins:
            rolling_push(win, 0, x)
        a, b = sum(held[-fast:]) / len(held[-fast:]), sum(held) / len(held)
        got = rolling_mean(wins[0], 0) - rolling_mean(wins[1], 0)
        assert sign(got) == (a > b) - (a < b)
        assert rolling_min(wins[1], 0) <= rolling_mean(wins[1], 0) <= rolling_max(wins[1], 0)


@settings(max_examples=200, deadline=None)
@given(
    tick=st.sampled_from(TICKS),
    base=st.integers(1, 10**9),
    width=st.integers(1, 12),
    walk=st.lists(st.integers(-5_000, 5_000), min_size=1, max_size=80),
)
def test_a_price_window_returns_what_its_values_alone_give(tick, base, width, walk) -> None:
    # Exact sums forget the values that left: a window fed a long history and one fed only
    # the values it holds return the same floats, bit for bit (so do batch cuts).
    ticks = np.array([float(Fraction(tick))])
    quanta = base + np.cumsum(walk)
    prices = [price(int(q), Fraction(tick))[0] for q in quanta]
    long_fed = new_windows(1, width, ticks)
    for x in prices:
        rolling_push(long_fed, 0, x)
    fresh = new_windows(1, width, ticks)
    for x in prices[-width:]:
        rolling_push(fresh, 0, x)
    x = prices[-1]
    for fn in (rolling_mean, rolling_std, rolling_max, rolling_min):
        assert np.array_equal(fn(long_fed, 0), fn(fresh, 0), equal_nan=True)
    assert np.array_equal(
        rolling_zscore(long_fed, 0, x), rolling_zscore(fresh, 0, x), equal_nan=True
    )


def test_a_price_off_the_grid_turns_its_row_to_floats_without_quantising_it() -> None:
    win = new_windows(2, 4, np.array([0.01, 0.01]))
    values = [100.01, 100.02, 100.0149, 100.03, 100.05]  # 100.0149 is off a 0.01 grid
    for x in values:
        rolling_push(win, 0, x)
        rolling_push(win, 1, 100.0)
    held = np.array(values[-4:])
    assert win[0, _PER_UNIT] == -1.0  # floats from then on
    assert win[1, _PER_UNIT] == 200.0  # (only its own row)
    assert abs(rolling_mean(win, 0) - held.mean()) <= 1e-12
    assert abs(rolling_std(win, 0) - held.std()) <= 1e-9
    assert rolling_max(win, 0) == 100.05
    assert rolling_min(win, 0) == 100.0149  # as pushed, not rounded to the grid
    assert rolling_mean(win, 1) == 100.0
    assert rolling_std(win, 1) == 0.0


def test_a_large_price_a_fraction_of_a_tick_off_is_off_the_grid() -> None:
    # 60,000 on a 1e-8 tick is 1.2e13 quanta: a relative tolerance alone would take a price
    # 0.3 tick off as on the grid, and round it there.
    win = new_windows(1, 3, np.array([1e-8]))
    for x in (60_000.0, 60_000.00000001, 0.5 * (60_000.00000001 + 60_000.00000002)):
        rolling_push(win, 0, x)
    assert win[0, _PER_UNIT] == 2e8  # on the grid, mid included
    rolling_push(win, 0, 60_000.000000003)
    assert win[0, _PER_UNIT] == -1.0
    assert rolling_max(win, 0) == 60_000.000000015
