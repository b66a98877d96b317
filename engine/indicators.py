"""Rolling-window indicators for strategy kernels: mean and deviation in O(1), max and min.

A window is one row per instrument of a float array laid out as
[count, sum, sum of squares, next slot, quanta per unit, anchor, x_0 … x_{w-1}]
(declare it in a strategy's state with `Rolling(window)`). Sums are updated
incrementally and recomputed each time the ring wraps.

A window of prices (`Rolling(window, prices=True)`) holds each price as a whole
number k of quanta of its instrument's grid, a quantum being half a tick (so that
quote mids and bar closes are both on it), and keeps its sums as exact integers:
S = sum(k - A), Q = sum((k - A)^2) about an anchor A (the newest value at each
wrap, so they stay small even for large prices). Nothing is rounded until a result
is asked, and then once per step, so that what exact arithmetic would call a tie
is a tie: equal means are equal floats, and a z-score exactly at a threshold is
the threshold (`rolling_mean`, `rolling_zscore` say how far this holds). A
price off the grid (beyond the tolerance of `_on_grid`) is never quantised: the
row turns to float arithmetic for good (its quanta per unit set to -1).

Other values (a spread, a return) use a window of floats, as before: its result
depends only on the values pushed, never on how batches were cut, and ties are
decided by rounding.
"""

from __future__ import annotations

import numpy as np

from tickwise.engine.jit import cold_kernel, kernel

_COUNT = 0  # values held, at most the window's size
_SUM = 1  # in a price window: of k - anchor, in quanta
_SUMSQ = 2
_NEXT = 3  # the ring slot the next value goes to
_PER_UNIT = 4  # quanta per price unit in a price window; 0 for floats, -1 for a price
# window that met a value off its grid (floats since)
_ANCHOR = 5  # the whole number of quanta the sums are taken about (0 for floats)
HEADER = 6  # slots before the values

# On the grid: within the risk gate's relative tolerance of a whole number of quanta, and
# within a hundredth of one (the relative tolerance alone would take any price of more than
# 5e8 quanta, 60,000 on a 1e-8 tick is 1.2e13). The rounding of a price on the grid is far
# less up to about 2.5e13 quanta; beyond, a price may be taken as off it (floats, then).
GRID_TOLERANCE = 1e-9
GRID_SLACK = 0.01
MAX_QUANTA = 2.0**52  # a price beyond this many quanta is no longer a whole float


def new_windows(rows: int, window: int, tick_sizes: np.ndarray | None = None) -> np.ndarray:
    """Empty windows of `window` values, one per row: of floats, or of prices when
    `tick_sizes` (one per row; NaN or 0 for a row left to floats) gives each row's grid."""
    win = np.zeros((rows, window + HEADER))
    if tick_sizes is not None:
        for i, tick in enumerate(np.asarray(tick_sizes, dtype=float)[:rows]):
            if tick > 0.0 and np.isfinite(tick):
                win[i, _PER_UNIT] = quanta_per_unit(float(tick))
    return win


def quanta_per_unit(tick: float) -> float:
    """Half-ticks per price unit: a whole number when the tick is 1/n or 2/n of a unit (200
    for 0.01, exactly), so that a price is k / that, correctly rounded."""
    per = 2.0 / tick
    n = round(per)
    return float(n) if n >= 1 and abs(per - n) <= 1e-9 * n else per


@kernel
def rolling_push(win, i, x):
    """Append `x` to row i's window, dropping the oldest value once it is full. A price
    window takes x as the nearest whole number of quanta; x off the grid turns the row to
    floats."""
    per_unit = win[i, _PER_UNIT]
    if per_unit > 0.0:
        u = x * per_unit
        k = np.round(u)
        if _on_grid(u, k):
            _push(win, i, k, True)
            return
        _to_floats(win, i, per_unit)
    _push(win, i, x, False)


@kernel
def _on_grid(u, k):
    """Whether u (a price in quanta) is the whole number k, as far as floats tell."""
    return abs(u - k) <= min(GRID_TOLERANCE * max(1.0, abs(k)), GRID_SLACK) and abs(k) <= MAX_QUANTA


@kernel
def _push(win, i, v, grid):
    """Store v (a whole number of quanta when `grid`) and update the sums about the anchor:
    exact integers on the grid, floats otherwise (anchor 0)."""
    w = win.shape[1] - HEADER
    n = win[i, _COUNT]
    k = np.int64(win[i, _NEXT])  # kept, not taken modulo w: a division costs the loop more
    slot = HEADER + k
    if grid and n == 0:
        win[i, _ANCHOR] = v
    anchor = win[i, _ANCHOR]
    if n >= w:
        old = win[i, slot] - anchor
        win[i, _SUM] -= old
        win[i, _SUMSQ] -= old * old
    else:
        win[i, _COUNT] = n + 1
    win[i, slot] = v
    if k == w - 1:  # the ring wrapped: recompute the sums (about the newest value, on the grid)
        win[i, _NEXT] = 0
        if grid:
            anchor = v
            win[i, _ANCHOR] = v
        s = 0.0
        sq = 0.0
        for j in range(HEADER, HEADER + w):
            d = win[i, j] - anchor
            s += d
            sq += d * d
        win[i, _SUM] = s
        win[i, _SUMSQ] = sq
    else:
        win[i, _NEXT] = k + 1
        d = v - anchor
        win[i, _SUM] += d
        win[i, _SUMSQ] += d * d


@cold_kernel
def _to_floats(win, i, per_unit):
    """Turn row i of a price window into a window of floats (prices, their sums)."""
    w = win.shape[1] - HEADER
    m = np.int64(win[i, _COUNT])
    s = 0.0
    sq = 0.0
    for j in range(HEADER, HEADER + w):
        v = win[i, j] / per_unit
        win[i, j] = v
        if j - HEADER < m:
            s += v
            sq += v * v
    win[i, _SUM] = s
    win[i, _SUMSQ] = sq
    win[i, _PER_UNIT] = -1.0
    win[i, _ANCHOR] = 0.0


@kernel
def rolling_count(win, i):
    """How many values the window holds (at most its size)."""
    return np.int64(win[i, _COUNT])


@kernel
def rolling_full(win, i):
    """True once the window holds as many values as its size."""
    return win[i, _COUNT] >= win.shape[1] - HEADER


@kernel
def rolling_mean(win, i):
    """Mean of the values held (NaN when empty).

    In a price window it is RN(RN(N / m) / p), N = m A + S the exact sum in quanta and p
    the quanta per unit: the same float for means equal in exact arithmetic (of windows of
    any sizes on one grid) while |N| < 2^53, and never in the wrong order for unequal ones
    of m1 and m2 values (which differ by a part in m1 m2 |N/m| at least, the two roundings
    of each by two parts in 2^53) while m1 m2 |N/m| < 2^51: for means of 10 and 50 prices,
    below 4.5e12 quanta (22.5e9 on a 0.01 tick, but only 22,500 on a 1e-8 tick). Equal
    prices on a decimal grid have that price as their mean."""
    m = rolling_count(win, i)
    if m == 0:
        return np.nan
    per_unit = win[i, _PER_UNIT]
    if per_unit > 0.0:
        return (win[i, _ANCHOR] * m + win[i, _SUM]) / m / per_unit
    return win[i, _SUM] / m


@kernel
def rolling_std(win, i):
    """Population standard deviation of the values held (NaN when empty). In a price window
    sqrt(b) / m / p, with b = m Q - S^2 (m^2 times the variance in quanta^2) exact."""
    m = rolling_count(win, i)
    if m == 0:
        return np.nan
    s = win[i, _SUM]
    per_unit = win[i, _PER_UNIT]
    if per_unit > 0.0:
        return np.sqrt(max(0.0, m * win[i, _SUMSQ] - s * s)) / m / per_unit
    mean = s / m
    return np.sqrt(max(0.0, win[i, _SUMSQ] / m - mean * mean))


@kernel
def rolling_zscore(win, i, x):
    """(x - mean) / std of the values held: how many deviations `x` is from their mean. NaN
    until the window holds a value, and while the values do not vary (std 0).

    In a price window, with x on the grid (k quanta), z = a / sqrt(b) where a = m (k - A)
    - S and b = m Q - S^2 are exact integers. At an exact tie with a threshold t = p/r in
    lowest terms (2, 0.5, 1.5, 0.1), sqrt(b) is a whole number, so z is the float of t
    exactly (`z > 2.0` is false at z = 2). Near a tie, z compares with t as the exact value
    does: the two differ by at least a part in 3 p^2 b, the rounding of sqrt, the division
    and of t by at most three parts in 2^53. Both hold while m D < 2^26, D the largest
    |k - A| over the window and x (so that a and b are exact), and p^2 b < 2^49 (b is m^2
    times the variance in quanta^2). For t = 2 and a window of 100 mids on a 0.01 tick: a
    standard deviation under 118,632 quanta (593.16) and D under 671,088 quanta (3,355.44).
    """
    m = win[i, _COUNT]
    s = win[i, _SUM]
    per_unit = win[i, _PER_UNIT]
    if per_unit > 0.0:
        u = x * per_unit
        k = np.round(u)
        if not _on_grid(u, k):
            k = u  # (x off the grid: as near as floats get)
        spread = m * win[i, _SUMSQ] - s * s
        if not spread > 0.0:
            return np.nan
        return (m * (k - win[i, _ANCHOR]) - s) / np.sqrt(spread)
    spread = m * win[i, _SUMSQ] - s * s  # m^2 x the variance: the same in one division less
    if not spread > 0.0:
        return np.nan
    return (m * x - s) / np.sqrt(spread)


@kernel
def rolling_max(win, i):
    """The largest value held (NaN when empty). O(window) per call: it scans the values,
    so that pushing stays O(1) for every window whether or not its extremes are asked."""
    best = np.nan
    for j in range(HEADER, HEADER + rolling_count(win, i)):
        v = win[i, j]
        if not v <= best:  # (the first value, and every larger one)
            best = v
    return _price(win, i, best)


@kernel
def rolling_min(win, i):
    """The smallest value held (NaN when empty). O(window) per call, as `rolling_max`."""
    best = np.nan
    for j in range(HEADER, HEADER + rolling_count(win, i)):
        v = win[i, j]
        if not v >= best:
            best = v
    return _price(win, i, best)


@kernel
def _price(win, i, v):
    """A value held, as the caller pushed it: a price for quanta, else itself."""
    per_unit = win[i, _PER_UNIT]
    return v / per_unit if per_unit > 0.0 else v
