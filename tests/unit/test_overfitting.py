"""The deflated Sharpe ratio against the worked example of its paper, and the probability of
backtest overfitting against a combinatorially symmetric cross-validation worked by hand
and against a plain reimplementation (polars ranks); the null results with their reasons;
bad input refused by name."""

from __future__ import annotations

import itertools
import math

import numpy as np
import polars as pl
import pytest

from tickwise.backtest.overfitting import (
    deflated_sharpe_ratio,
    expected_max_sharpe,
    pbo,
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


# The probability of backtest overfitting

# Four blocks of one period each (rows), three trials (columns); scored by their mean.
BLOCKS = np.array([[1.0, 3.0, 3.0], [1.0, 2.0, 2.0], [3.0, 0.0, 1.0], [2.0, 1.0, 3.0]])


def mean(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=0)


def test_cscv_worked_by_hand_on_four_blocks() -> None:
    # In-sample blocks | in-sample means (best)       | out-of-sample means (its rank of 3)
    # 0,1 | 1, 2.5, 2.5: tie, the lowest index, 1       | 2.5, 0.5, 2: 0.5 lowest, rank 1
    # 0,2 | 2, 1.5, 2: tie, trial 0                     | 1.5, 1.5, 2.5: tied lowest, rank 1.5
    # 0,3 | 1.5, 2, 3: trial 2                          | 2, 1, 1.5: the middle, rank 2
    # 1,2 | 2, 1, 1.5: trial 0                          | 1.5, 2, 3: rank 1
    # 1,3 | 1.5, 1.5, 2.5: trial 2                      | 2, 1.5, 2: tied highest, rank 2.5
    # 2,3 | 2.5, 0.5, 2: trial 0                        | 1, 2.5, 2.5: rank 1
    # w = rank / 4 and logit log(w / (1 - w)): rank 1 -> log(1/3), 1.5 -> log(3/5),
    # 2 -> 0, 2.5 -> log(5/3). Five of six are <= 0.
    result = pbo(BLOCKS, 4, metric=mean)
    assert result.n_combinations == math.comb(4, 2) == 6
    third, three_fifths = math.log(1 / 3), math.log(3 / 5)
    expected = [third, three_fifths, 0.0, third, -three_fifths, third]
    assert result.logits == pytest.approx(expected, abs=1e-15)
    assert result.pbo == 5 / 6
    assert result.best.tolist() == [1, 0, 2, 0, 2, 0]
    assert result.in_sample.tolist() == [2.5, 2.0, 3.0, 2.0, 2.5, 2.5]
    assert result.out_of_sample.tolist() == [0.5, 1.5, 1.5, 1.5, 2.0, 1.0]
    assert (result.n_splits, result.rows_used) == (4, 4)


def test_an_in_sample_tie_goes_to_the_lowest_trial_index() -> None:
    # Blocks 0 and 1 in sample: trials 1 and 2 tie at 2.5 and differ out of sample (0.5, 2):
    # trial 1 is taken, rank 1 (trial 2 would have ranked 2, logit 0). Blocks 0 and 2:
    # trials 0 and 2 tie at 2, trial 0 is taken.
    result = pbo(BLOCKS, 4, metric=mean)
    assert result.best[:2].tolist() == [1, 0]
    assert result.logits[0] == pytest.approx(math.log(1 / 3))
    swapped = pbo(BLOCKS[:, [0, 2, 1]], 4, metric=mean)  # trial 2 now comes first
    assert swapped.best[0] == 1  # (the former trial 2)
    assert swapped.logits[0] == 0.0


def plain_cscv(m: np.ndarray, n_splits: int) -> tuple[float, list[float]]:
    """CSCV written out directly: the oldest rows that do not fill a block dropped, mean and
    sample standard deviation per half, the first maximum in sample, polars' average rank
    out of sample."""
    m = m[m.shape[0] % n_splits :]
    blocks = np.split(m, n_splits)
    logits = []
    for inside in itertools.combinations(range(n_splits), n_splits // 2):
        train = np.vstack([blocks[b] for b in inside])
        test = np.vstack([blocks[b] for b in range(n_splits) if b not in inside])
        best = int(np.argmax(train.mean(axis=0) / train.std(axis=0, ddof=1)))
        ranks = pl.Series(test.mean(axis=0) / test.std(axis=0, ddof=1)).rank("average")
        w = ranks[best] / (m.shape[1] + 1)
        logits.append(math.log(w / (1 - w)))
    return float(np.mean(np.array(logits) <= 0)), logits


def test_pbo_of_sharpe_ratios_agrees_with_cscv_written_out() -> None:
    rng = np.random.default_rng(11)
    m = rng.normal(0.0002, 0.01, size=(99, 7))  # 99 rows in 6 blocks: the 3 oldest dropped
    m[:, 3] += 0.002  # one trial with an edge
    expected_pbo, expected_logits = plain_cscv(m, 6)
    result = pbo(m, 6)
    assert result.rows_used == 96
    assert result.n_combinations == 20
    assert result.logits == pytest.approx(expected_logits, abs=1e-12)
    assert result.pbo == expected_pbo


def test_a_trial_that_never_trades_scores_zero_and_still_ranks() -> None:
    rng = np.random.default_rng(5)
    m = rng.normal(0.0, 0.01, size=(40, 4))
    m[:, 2] = 0.0
    assert sharpe_ratios(m)[2] == 0.0
    assert np.isfinite(pbo(m, 4).logits).all()


def test_the_result_cannot_be_edited() -> None:
    result = pbo(BLOCKS, 4, metric=mean)
    with pytest.raises(ValueError, match="read-only"):
        result.logits[0] = 1.0


@pytest.mark.parametrize(
    ("performance", "n_splits", "message"),
    [
        (np.zeros((8, 3)), 3, "n_splits must be even and at least 2, got 3"),
        (np.zeros((8, 3)), 0, "n_splits must be even and at least 2, got 0"),
        (np.zeros((8, 3)), 4.0, "n_splits must be an even integer, got 4.0"),
        (np.zeros((6, 3)), 8, "n_splits 8 is more than the 6 periods"),
        (np.zeros((8, 1)), 4, "at least 2 trials \\(columns\\), got 1"),
        (np.zeros(8), 4, "must be a 2-D array \\(periods x trials\\), got shape \\(8,\\)"),
        (np.zeros((3, 2)), 2, "needs at least 2 periods in each half; 2 blocks of 1 leave 1"),
    ],
)
def test_bad_input_is_refused_naming_what_is_wrong(performance, n_splits, message) -> None:
    with pytest.raises(ValueError, match=message):
        pbo(performance, n_splits)


def test_a_nan_is_refused_naming_its_row_and_trial() -> None:
    m = np.zeros((8, 3))
    m[5, 2] = np.nan
    with pytest.raises(ValueError, match="performance holds nan at row 5, trial 2"):
        pbo(m, 4)


def test_a_metric_that_does_not_score_every_trial_is_refused() -> None:
    with pytest.raises(ValueError, match="one value per trial \\(3\\), gave shape \\(\\)"):
        pbo(BLOCKS, 4, metric=lambda x: x.mean())
    with pytest.raises(ValueError, match="metric gave NaN for trial 1 over blocks \\(0, 1\\)"):
        pbo(BLOCKS, 4, metric=lambda x: np.array([1.0, np.nan, 0.0]))
