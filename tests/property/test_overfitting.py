"""Invariants of the deflated Sharpe ratio: a probability, only lowered by more trials."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from tickwise.backtest.overfitting import deflated_sharpe_ratio, sharpe_ratios


@given(
    st.integers(0, 2**32 - 1),
    st.integers(3, 200),
    st.integers(2, 60),
    st.integers(2, 500),
)
def test_the_dsr_is_a_probability_that_more_trials_only_lower(seed, n, trials, more) -> None:
    rng = np.random.default_rng(seed)
    sweep = rng.normal(0.0005, 0.01, size=(n, trials))
    sharpes = sharpe_ratios(sweep)
    best = sweep[:, int(np.argmax(sharpes))]
    few = deflated_sharpe_ratio(best, sharpes)
    many = deflated_sharpe_ratio(best, sharpes, n_trials=trials + more)
    for dsr in (few, many):
        assert (dsr.value is None) == (dsr.reason is not None)
        assert dsr.value is None or 0.0 <= dsr.value <= 1.0
    if few.value is not None:
        assert many.value <= few.value
