"""Rolling windows against numpy over the values they should hold, after any pushes (to the
precision running sums of values and squares keep)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tickwise.engine.indicators import (
    HEADER,
    rolling_count,
    rolling_full,
    rolling_max,
    rolling_mean,
    rolling_min,
    rolling_push,
    rolling_std,
    rolling_zscore,
)


@settings(max_examples=200, deadline=None)
@given(
    width=st.integers(1, 12),
    pushes=st.lists(
        st.tuples(st.integers(0, 2), st.floats(-1e3, 1e3, allow_nan=False)), max_size=80
    ),
)
def test_a_window_holds_the_last_values_pushed_and_their_moments(width, pushes) -> None:
    win = np.zeros((3, width + HEADER))
    held: dict[int, list[float]] = {0: [], 1: [], 2: []}
    largest = dict.fromkeys(held, 1.0)
    for row, x in pushes:
        rolling_push(win, row, x)
        held[row] = (held[row] + [x])[-width:]
        values = np.array(held[row])
        assert rolling_count(win, row) == len(values)
        assert rolling_full(win, row) == (len(values) == width)
        assert rolling_max(win, row) == values.max()  # exactly: no arithmetic, a choice
        assert rolling_min(win, row) == values.min()
        # Running sums carry the rounding of every value that passed through them since they
        # were last recomputed: digits below the largest square pushed are not kept.
        largest[row] = max(largest[row], x * x)
        scale = largest[row]
        assert abs(rolling_mean(win, row) - values.mean()) <= 1e-12 * np.sqrt(scale) * width
        assert abs(rolling_std(win, row) ** 2 - values.var()) <= 1e-12 * scale * width
        z = rolling_zscore(win, row, x)
        if values.var() > 1e-6 * scale:  # spread well above what the sums can resolve
            assert np.isclose(z, (x - values.mean()) / values.std(), rtol=1e-6, atol=1e-6)
        elif values.var() == 0.0 and len(values) == 1:
            assert np.isnan(z)  # one value: no spread to measure by
    for row in held:
        if not held[row]:
            assert rolling_count(win, row) == 0
            assert np.isnan(rolling_mean(win, row))
            assert np.isnan(rolling_std(win, row))
            assert np.isnan(rolling_max(win, row))
            assert np.isnan(rolling_min(win, row))
