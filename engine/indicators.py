"""Rolling-window indicators for strategy kernels: mean and deviation in O(1), max and min.

A window is one row per instrument of a float array laid out as
[count, sum, sum of squares, next slot, x_0 … x_{w-1}] (declare it in a strategy's state
with `Rolling(window)`). Sums are updated incrementally and recomputed
exactly each time the ring wraps, so rounding never drifts and the result
depends only on the values pushed, never on how batches were cut.
"""

from __future__ import annotations

import numpy as np

from tickwise.engine.jit import kernel

_COUNT = 0  # values held, at most the window's size
_SUM = 1
_SUMSQ = 2
_NEXT = 3  # the ring slot the next value goes to
HEADER = 4  # slots before the values


@kernel
def rolling_push(win, i, x):
    """Append `x` to row i's window, dropping the oldest value once it is full."""
    w = win.shape[1] - HEADER
    n = win[i, _COUNT]
    k = np.int64(win[i, _NEXT])  # kept, not taken modulo w: a division costs the loop more
    slot = HEADER + k
    if n >= w:
        old = win[i, slot]
        win[i, _SUM] -= old
        win[i, _SUMSQ] -= old * old
    else:
        win[i, _COUNT] = n + 1
    win[i, slot] = x
    if k == w - 1:  # the ring wrapped: recompute the sums exactly
        win[i, _NEXT] = 0
        s = 0.0
        sq = 0.0
        for j in range(HEADER, HEADER + w):
            v = win[i, j]
            s += v
            sq += v * v
        win[i, _SUM] = s
        win[i, _SUMSQ] = sq
    else:
        win[i, _NEXT] = k + 1
        win[i, _SUM] += x
        win[i, _SUMSQ] += x * x


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
    """Mean of the values held (NaN when empty)."""
    m = rolling_count(win, i)
    return win[i, _SUM] / m if m > 0 else np.nan


@kernel
def rolling_std(win, i):
    """Population standard deviation of the values held (NaN when empty)."""
    m = rolling_count(win, i)
    if m == 0:
        return np.nan
    mean = win[i, _SUM] / m
    return np.sqrt(max(0.0, win[i, _SUMSQ] / m - mean * mean))


@kernel
def rolling_zscore(win, i, x):
    """(x - mean) / std of the values held: how many deviations `x` is from their mean. NaN
    until the window holds a value, and while the values do not vary (std 0)."""
    m = win[i, _COUNT]
    s = win[i, _SUM]
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
    return best


@kernel
def rolling_min(win, i):
    """The smallest value held (NaN when empty). O(window) per call, as `rolling_max`."""
    best = np.nan
    for j in range(HEADER, HEADER + rolling_count(win, i)):
        v = win[i, j]
        if not v >= best:
            best = v
    return best
