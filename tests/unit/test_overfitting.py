"""The deflated Sharpe ratio against the worked example of its paper and moments computed
by polars; the null results with their reasons; bad input refused by name."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from tickwise.backtest.overfitting import (
    deflated_sharpe_ratio,
    expected_max_sharpe,
    probabilistic_sharpe_ratio,
    sharpe_ratios,
)

# The deflated Sharpe ratio


def test_the_papers_numerical_example_deflates_an_annual_sharpe_of_2_5_to_0_9004() -> None:
    # Bailey and López de Prado (2014), "The Deflated Sharpe Ratio", section "A numerical
    # example": 100 trials whose annualised Sharpe ratios have variance 1/2; the best shows
    # an annualised 2.5 over 5 years of daily returns (T = 1250, 250 a year), skewness -3,
    # kurtosis 10. Per period: SR0 ~ 0.1132, SR ~ 0.1581, DSR ~ 0.9004: not significant at
    # 95%. (Figures of the paper, to the 4 decimals it prints.)
    sr0 = expected_max_sharpe(100, 0.5 / 250)
    sr = 2.5 / math.sqrt(250)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    assert sr == pytest.approx(0.1581, abs=5e-5)
    assert probabilistic_sharpe_ratio(sr, sr0, 1250, -3.0, 10.0) == pytest.approx(0.9004, abs=5e-5)


def test_the_psr_of_normal_returns_is_the_textbook_z_score() -> None:
    # Skewness 0 and kurtosis 3: the standard error of the Sharpe ratio is
    # sqrt((1 + SR^2 / 2) / (n - 1)) (Lo 2002), and PSR the normal CDF of the distance.
    sr, benchmark, n = 0.12, 0.05, 500
    z = (sr - benchmark) / math.sqrt((1 + sr * sr / 2) / (n - 1))
    expected = 0.5 * (1 + math.erf(z / math.sqrt(2)))
    assert probabilistic_sharpe_ratio(sr, benchmark, n, 0.0, 3.0) == pytest.approx(expected)
    assert probabilistic_sharpe_ratio(benchmark, benchmark, n, -1.0, 8.0) == 0.5


def test_negative_skew_and_fat_tails_lower_the_psr_of_a_positive_sharpe() -> None:
    normal = probabilistic_sharpe_ratio(0.1, 0.0, 250, 0.0, 3.0)
    assert probabilistic_sharpe_ratio(0.1, 0.0, 250, -2.0, 3.0) < normal
    assert probabilistic_sharpe_ratio(0.1, 0.0, 250, 0.0, 12.0) < normal


def test_the_expected_maximum_grows_with_trials_and_with_their_spread() -> None:
    assert expected_max_sharpe(10, 1.0) < expected_max_sharpe(100, 1.0)
    assert expected_max_sharpe(100, 1.0) < expected_max_sharpe(1000, 1.0)
    assert expected_max_sharpe(100, 4.0) == pytest.approx(2 * expected_max_sharpe(100, 1.0))
    assert expected_max_sharpe(100, 0.0) == 0.0


def test_an_excess_kurtosis_or_too_few_returns_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="add 3 to an excess kurtosis"):
        probabilistic_sharpe_ratio(0.1, 0.0, 250, 0.0, 0.0)
    with pytest.raises(ValueError, match="at least 2 returns, got n=1"):
        probabilistic_sharpe_ratio(0.1, 0.0, 1, 0.0, 3.0)
    with pytest.raises(ValueError, match="at least 2 trials, got 1"):
        expected_max_sharpe(1, 1.0)
    with pytest.raises(ValueError, match="must be a variance"):
        expected_max_sharpe(10, -1.0)


def test_the_dsr_of_a_sweep_reads_its_moments_as_polars_does() -> None:
    rng = np.random.default_rng(7)
    sweep = rng.standard_t(4, size=(750, 30)) * 0.01 + 0.0004
    best = int(np.argmax(sharpe_ratios(sweep)))
    dsr = deflated_sharpe_ratio(sweep[:, best], sharpe_ratios(sweep))

    returns = pl.Series(sweep[:, best])
    trials = pl.DataFrame(sweep).select(pl.all().mean() / pl.all().std(ddof=1)).row(0)
    sharpe = returns.mean() / returns.std(ddof=1)
    skew = returns.skew(bias=True)
    kurtosis = returns.kurtosis(fisher=False, bias=True)
    var = pl.Series(trials).var(ddof=1)
    assert dsr.reason is None
    assert (dsr.n, dsr.n_trials) == (750, 30)
    assert dsr.sharpe == pytest.approx(sharpe)
    assert dsr.skew == pytest.approx(skew)
    assert dsr.kurtosis == pytest.approx(kurtosis)
    assert dsr.var_sharpe == pytest.approx(var)
    assert dsr.sr0 == pytest.approx(expected_max_sharpe(30, var))
    assert dsr.value == pytest.approx(
        probabilistic_sharpe_ratio(sharpe, dsr.sr0, 750, skew, kurtosis)
    )


def test_fewer_independent_trials_deflate_less() -> None:
    rng = np.random.default_rng(3)
    sweep = rng.normal(0.0005, 0.01, size=(500, 50))
    best = sweep[:, int(np.argmax(sharpe_ratios(sweep)))]
    all_trials = deflated_sharpe_ratio(best, sharpe_ratios(sweep))
    clustered = deflated_sharpe_ratio(best, sharpe_ratios(sweep), n_trials=5)
    assert clustered.n_trials == 5
    assert clustered.var_sharpe == all_trials.var_sharpe
    assert clustered.sr0 < all_trials.sr0
    assert clustered.value > all_trials.value


@pytest.mark.parametrize(
    ("returns", "sharpes", "n_trials", "reason"),
    [
        ([0.01, -0.02, 0.03], [0.1], None, "needs at least 2 trials; got 1"),
        ([0.01, -0.02, 0.03], [0.1, 0.2], 1, "needs at least 2 trials; got 1"),
        ([0.01, -0.02, 0.03], [0.1], 10, "needs the Sharpe ratios of at least 2 trials; got 1"),
        ([0.01, -0.02], [0.1, 0.2], None, "needs at least 3 returns of the best trial; got 2"),
        ([0.01, -0.02, 0.03], [0.2, 0.2, 0.2], None, "the trials' Sharpe ratios do not vary"),
        ([0.001] * 20, [0.1, 0.2], None, "the best trial's returns do not vary"),
    ],
)
def test_a_dsr_that_cannot_be_said_is_none_with_its_reason(returns, sharpes, n_trials, reason):
    dsr = deflated_sharpe_ratio(np.array(returns), np.array(sharpes), n_trials=n_trials)
    assert dsr.value is None
    assert str(dsr.reason).startswith(reason)


def test_a_dsr_of_returns_with_nan_is_refused_naming_where() -> None:
    with pytest.raises(ValueError, match="returns_of_best holds nan at position 2"):
        deflated_sharpe_ratio(np.array([0.1, 0.2, np.nan, 0.3]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="sharpe_of_trials holds inf at position 0"):
        deflated_sharpe_ratio(np.array([0.1, 0.2, 0.3]), np.array([np.inf, 0.2]))
