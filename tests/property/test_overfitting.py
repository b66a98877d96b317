"""Invariants of the probability of backtest overfitting (a probability over C(S, S/2)
combinations, blind to the order of the trials, 0 when one trial is best everywhere, about
one half for noise) and of the deflated Sharpe ratio (a probability, lowered by trials)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tickwise.backtest.overfitting import deflated_sharpe_ratio, pbo, sharpe_ratios


@st.composite
def sweeps(draw, max_trials: int = 6) -> tuple[np.ndarray, int]:
    """A (periods x trials) matrix of small returns, ties and flat trials included, and an
    even number of splits with at least 2 periods in each half."""
    n_splits = draw(st.sampled_from([2, 4, 6, 8]))
    periods = draw(st.integers(max(n_splits, 4), 40))
    trials = draw(st.integers(2, max_trials))
    values = st.floats(-0.05, 0.05, allow_nan=False) | st.sampled_from([0.0, 0.01, -0.01])
    return draw(arrays(np.float64, (periods, trials), elements=values)), n_splits


def noise(seed: int, periods: int, trials: int) -> np.ndarray:
    """Continuous returns: ties between trials have probability 0."""
    return np.random.default_rng(seed).normal(0.0, 0.01, size=(periods, trials))


@given(sweeps())
def test_pbo_is_a_share_of_c_s_s_half_combinations(sweep) -> None:
    m, n_splits = sweep
    result = pbo(m, n_splits)
    n = math.comb(n_splits, n_splits // 2)
    assert result.n_combinations == n
    assert result.logits.shape == result.best.shape == result.in_sample.shape == (n,)
    assert 0.0 <= result.pbo <= 1.0
    assert result.pbo == np.count_nonzero(result.logits <= 0) / n
    # ranks from 1 to N: logits between log(1/N) and log(N)
    bound = math.log(m.shape[1]) + 1e-12
    assert np.all(np.abs(result.logits) <= bound)


@given(st.integers(0, 2**32 - 1), st.integers(2, 12), st.sampled_from([2, 4, 6]))
def test_the_order_of_the_trials_does_not_change_pbo(seed, trials, n_splits) -> None:
    m = noise(seed, 36, trials)
    order = np.random.default_rng(seed + 1).permutation(trials)
    result, permuted = pbo(m, n_splits), pbo(m[:, order], n_splits)
    assert permuted.pbo == result.pbo
    assert np.array_equal(permuted.logits, result.logits)
    assert np.array_equal(order[permuted.best], result.best)
    # (numpy adds a column in an order set by its place in memory: equal to the last bits)
    assert np.allclose(permuted.out_of_sample, result.out_of_sample, rtol=1e-9, atol=1e-12)


@given(
    st.integers(0, 2**32 - 1),
    st.lists(st.floats(0.0, 0.01), min_size=1, max_size=8),
    st.sampled_from([2, 4, 6, 8]),
)
def test_a_trial_best_in_every_block_is_never_overfit(seed, handicaps, n_splits) -> None:
    # Every trial rides one common noise (each consecutive pair differs: it always varies),
    # trial 0 with the highest mean: its Sharpe ratio is the highest over any set of rows.
    periods = 4 * n_splits
    wiggle = np.random.default_rng(seed).uniform(-0.004, 0.004, periods)
    common = wiggle + 0.01 * (-1.0) ** np.arange(periods)
    means = 0.002 - np.array([0.0, *(0.0005 + h for h in handicaps)])
    result = pbo(common[:, None] + means[None, :], n_splits)
    assert result.pbo == 0.0
    assert np.all(result.best == 0)
    assert result.logits == pytest.approx(math.log(len(means)))


@given(st.integers(0, 2**32 - 1), st.integers(2, 9), st.sampled_from([2, 4, 6, 8]))
def test_the_sharpe_fast_path_agrees_with_the_metric_path(seed, trials, n_splits) -> None:
    m = noise(seed, 48, trials) + 0.001
    fast = pbo(m, n_splits)
    plain = pbo(m, n_splits, metric=lambda x: sharpe_ratios(x))
    assert np.array_equal(fast.best, plain.best)
    assert np.array_equal(fast.logits, plain.logits)
    assert np.allclose(fast.in_sample, plain.in_sample, rtol=1e-9, atol=1e-12)
    assert np.allclose(fast.out_of_sample, plain.out_of_sample, rtol=1e-9, atol=1e-12)


def test_pure_noise_over_many_trials_is_overfit_about_half_the_time() -> None:
    # No trial has skill: the in-sample best is a random one out of sample, at or below
    # the median half the time. One matrix's combinations overlap, so average 30 of them.
    rng = np.random.default_rng(20240518)
    shares = [pbo(rng.normal(0.0, 0.01, size=(240, 40)), 8).pbo for _ in range(30)]
    assert 0.35 < float(np.mean(shares)) < 0.65


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
