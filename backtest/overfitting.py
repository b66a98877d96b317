"""How likely the best of many trials is a fluke: the deflated Sharpe ratio and the
probability of backtest overfitting.

A sweep tries many variants on one history and keeps the best; the best Sharpe ratio is
the largest of many noisy estimates, inflated by the search itself. Two answers:

- The deflated Sharpe ratio (DSR; Bailey and López de Prado, "The Deflated Sharpe Ratio:
  Correcting for Selection Bias, Backtest Overfitting and Non-Normality", Journal of
  Portfolio Management 40(5), 2014, pp. 94-107): the probability that the best trial's
  true Sharpe ratio beats the one the best of N trials without skill is expected to show,
  given its track length, skewness and kurtosis.
- The probability of backtest overfitting (PBO; Bailey, Borwein, López de Prado and Zhu,
  "The Probability of Backtest Overfitting", Journal of Computational Finance 20(4), 2017,
  pp. 39-69): by combinatorially symmetric cross-validation, how often the trial best in
  sample ranks at or below the median of all trials out of sample.

Conventions: Sharpe ratios are per period (not annualised): mean / sample standard
deviation (ddof 1), risk-free rate 0, as in `statistics.py`. Skewness and kurtosis are the
moment ratios m3 / m2^1.5 and m4 / m2^2 (population moments; the kurtosis is NOT excess:
3 for normal returns). What cannot be said honestly is None with the reason.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from .statistics import ROUNDING

EULER_GAMMA = 0.5772156649015329  # the Euler-Mascheroni constant
_NORMAL = NormalDist()


def sharpe_ratios(returns: np.ndarray) -> np.ndarray:
    """Each column's per-period Sharpe ratio: mean / sample standard deviation (ddof 1).
    A column that does not vary (as `statistics.py` says it) has 0 if its mean is 0 (it
    did nothing) and +-inf otherwise (a gain without risk beats any with it), so that every
    trial can still be ranked."""
    x = np.asarray(returns, dtype=float)
    return _ratio(x.mean(axis=0), x.std(axis=0, ddof=1))


def _ratio(mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    varies = sd > ROUNDING * np.abs(mean)  # (a constant return still wobbles in binary)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(varies, mean / sd, np.where(mean == 0, 0.0, np.copysign(np.inf, mean)))


# The deflated Sharpe ratio


def probabilistic_sharpe_ratio(
    sr: float, sr_benchmark: float, n: int, skew: float, kurtosis: float
) -> float:
    """The probability that the true Sharpe ratio exceeds `sr_benchmark`, given a Sharpe
    ratio `sr` measured on `n` returns with that skewness and (plain, not excess) kurtosis
    (PSR, as in Bailey and López de Prado 2014). Both ratios per period, not annualised:
    fat tails and negative skew widen the estimate's error, so they lower the probability."""
    if n < 2:
        raise ValueError(f"the PSR needs at least 2 returns, got n={n}")
    if kurtosis < 1:
        raise ValueError(
            f"kurtosis must be the plain kurtosis (3 for normal returns, never below 1), got "
            f"{kurtosis!r}: add 3 to an excess kurtosis"
        )
    spread = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr * sr
    if not spread > 0:
        raise ValueError(
            f"1 - skew*SR + (kurtosis-1)/4*SR^2 is {spread!r} for SR={sr!r}, skew={skew!r}, "
            f"kurtosis={kurtosis!r}: the Sharpe ratio's error has no spread"
        )
    return _NORMAL.cdf((sr - sr_benchmark) * math.sqrt(n - 1) / math.sqrt(spread))


def expected_max_sharpe(n_trials: int, var_sharpe: float) -> float:
    """The Sharpe ratio the best of `n_trials` independent trials is expected to show when
    none has skill (true Sharpe 0), their estimates spread with variance `var_sharpe`
    (Bailey and López de Prado 2014: an extreme-value approximation with the
    Euler-Mascheroni constant). Per period when `var_sharpe` is."""
    if n_trials < 2:
        raise ValueError(f"the expected maximum needs at least 2 trials, got {n_trials}")
    if not var_sharpe >= 0:
        raise ValueError(f"var_sharpe must be a variance (>= 0), got {var_sharpe!r}")
    z = (1.0 - EULER_GAMMA) * _NORMAL.inv_cdf(1.0 - 1.0 / n_trials) + EULER_GAMMA * (
        _NORMAL.inv_cdf(1.0 - 1.0 / (n_trials * math.e))
    )
    return math.sqrt(var_sharpe) * z


@dataclass(frozen=True)
class DeflatedSharpe:
    """The deflated Sharpe ratio of a sweep's best trial and what it was computed from.

    `value` is a probability (0.95 or more: the best trial's Sharpe ratio is unlikely to be
    the search's luck alone, at 95%), or None with the `reason`. `sharpe`, `sr0` and
    `var_sharpe` are per period; `kurtosis` is plain (3 for normal returns)."""

    value: float | None
    reason: str | None
    sharpe: float | None  # the best trial's Sharpe ratio
    sr0: float | None  # the benchmark: the expected maximum Sharpe ratio without skill
    n: int  # returns of the best trial
    skew: float | None
    kurtosis: float | None
    n_trials: int
    var_sharpe: float | None  # variance (ddof 1) of the trials' Sharpe ratios


def _finite_vector(values: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {x.shape}")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise ValueError(f"{name} holds {x[bad[0]]} at position {bad[0]}")
    return x


def deflated_sharpe_ratio(
    returns_of_best: np.ndarray, sharpe_of_trials: np.ndarray, *, n_trials: int | None = None
) -> DeflatedSharpe:
    """The DSR of the best trial of a sweep: its PSR against the Sharpe ratio the best of
    the sweep's trials is expected to show without skill, `expected_max_sharpe(N, V)`.

    `returns_of_best`: the best trial's returns, one per period. `sharpe_of_trials`: every
    trial's per-period Sharpe ratio on the same periods, the best included (`sharpe_ratios`
    of the sweep's return matrix); V is their variance. N is their number, or `n_trials`
    when given: the number of independent trials, fewer than the trials when they are
    correlated (for example the number of clusters of correlated trials)."""
    x = _finite_vector(returns_of_best, "returns_of_best")
    trials = _finite_vector(sharpe_of_trials, "sharpe_of_trials")
    n_used = trials.size if n_trials is None else int(n_trials)
    var = float(np.var(trials, ddof=1)) if trials.size >= 2 else None
    sharpe = skew = kurtosis = None
    if x.size >= 3:
        mean, sd = float(np.mean(x)), float(np.std(x, ddof=1))
        if sd > ROUNDING * abs(mean):  # (a constant return still wobbles in binary)
            sharpe = mean / sd
            d = x - mean
            m2 = float(np.mean(d**2))
            skew = float(np.mean(d**3)) / m2**1.5
            kurtosis = float(np.mean(d**4)) / m2**2
    sr0 = expected_max_sharpe(n_used, var) if n_used >= 2 and var is not None else None

    def said(value: float | None, reason: str | None = None) -> DeflatedSharpe:
        return DeflatedSharpe(
            value=value, reason=reason, sharpe=sharpe, sr0=sr0, n=int(x.size), skew=skew,
            kurtosis=kurtosis, n_trials=n_used, var_sharpe=var,
        )  # fmt: skip

    if n_used < 2:
        return said(None, f"needs at least 2 trials; got {n_used}")
    if var is None:
        return said(None, f"needs the Sharpe ratios of at least 2 trials; got {trials.size}")
    if x.size < 3:
        return said(None, f"needs at least 3 returns of the best trial; got {x.size}")
    if not math.sqrt(var) > ROUNDING * abs(float(np.mean(trials))):
        return said(None, "the trials' Sharpe ratios do not vary")
    if sharpe is None:
        return said(None, "the best trial's returns do not vary")
    if not 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2 > 0:
        return said(None, "the best trial's returns take two values: its Sharpe ratio's "
                          "error has no spread")  # fmt: skip
    return said(probabilistic_sharpe_ratio(sharpe, sr0, x.size, skew, kurtosis))


# The probability of backtest overfitting


@dataclass(frozen=True)
class BacktestOverfitting:
    """The probability of backtest overfitting of a sweep, by combinatorially symmetric
    cross-validation, and what a report plots: per combination of in-sample blocks (in the
    order of `itertools.combinations(range(n_splits), n_splits // 2)`), the logit of the
    in-sample best trial's relative rank out of sample, and that trial's metric in and out
    of sample (the performance degradation scatter)."""

    pbo: float  # the share of combinations whose logit is <= 0
    logits: np.ndarray  # lambda = log(w / (1 - w)), w = out-of-sample rank / (trials + 1)
    n_combinations: int  # C(n_splits, n_splits / 2)
    best: np.ndarray  # the in-sample best trial of each combination (column index)
    in_sample: np.ndarray  # its metric in sample
    out_of_sample: np.ndarray  # its metric out of sample
    n_splits: int
    rows_used: int  # the last rows_used periods: a whole number of blocks


def _checked(performance: np.ndarray, n_splits: int) -> np.ndarray:
    m = np.asarray(performance, dtype=float)
    if m.ndim != 2:
        raise ValueError(f"performance must be a 2-D array (periods x trials), got shape "
                         f"{m.shape}")  # fmt: skip
    periods, trials = m.shape
    if trials < 2:
        raise ValueError(f"performance needs at least 2 trials (columns), got {trials}")
    if isinstance(n_splits, bool) or not isinstance(n_splits, int | np.integer):
        raise ValueError(f"n_splits must be an even integer, got {n_splits!r}")
    if n_splits < 2 or n_splits % 2:
        raise ValueError(f"n_splits must be even and at least 2, got {n_splits}")
    if n_splits > periods:
        raise ValueError(f"n_splits {n_splits} is more than the {periods} periods (rows): "
                         f"each block needs at least one")  # fmt: skip
    bad = np.argwhere(~np.isfinite(m))
    if bad.size:
        row, col = (int(i) for i in bad[0])
        raise ValueError(f"performance holds {m[row, col]} at row {row}, trial {col}")
    return m


def _rank_logit(values: np.ndarray, k: int) -> float:
    """The logit of the relative rank of values[k] among values: ranks 1 (lowest) to N,
    ties given their average rank, over N + 1."""
    v = values[k]
    rank = np.count_nonzero(values < v) + (np.count_nonzero(values == v) + 1) / 2.0
    return math.log(rank / (values.size + 1 - rank))


def pbo(
    performance: np.ndarray,
    n_splits: int = 16,
    metric: Callable[[np.ndarray], np.ndarray] = sharpe_ratios,
) -> BacktestOverfitting:
    """The probability that a sweep's in-sample best is overfit (PBO, by CSCV).

    `performance` holds one column per trial and one row per period (returns by default).
    Its rows are cut into `n_splits` contiguous blocks of equal length (the oldest
    `periods % n_splits` rows left out); every choice of half of the blocks is once the
    in-sample set (its rows in time order) and the other half the out-of-sample set. In
    each, `metric` scores every trial (a (rows x trials) array to one value per trial;
    default the Sharpe ratio); the in-sample best (ties: the lowest trial index, so the
    answer is deterministic) gets its out-of-sample rank, ties averaged as the usual rank
    statistic does, so that equal trials share one relative rank w = rank / (N + 1) whatever
    their order, and the logit log(w / (1 - w)) is 0 exactly at the median. PBO is the
    share of logits <= 0: at the median counts as overfit, as in the paper's integral of
    the logits' distribution up to 0. Cost: C(n_splits, n_splits / 2) combinations (12,870
    for the paper's 16), each one pass over the trials."""
    m = _checked(performance, n_splits)
    length = m.shape[0] // n_splits
    m = m[m.shape[0] - length * n_splits :]
    half = n_splits // 2
    combos = list(itertools.combinations(range(n_splits), half))
    if metric is sharpe_ratios:
        if length * half < 2:
            raise ValueError(f"the Sharpe ratio needs at least 2 periods in each half; "
                             f"{n_splits} blocks of {length} leave {length * half}")  # fmt: skip
        score = _block_sharpe(m, n_splits)
    else:
        score = _block_metric(m, n_splits, metric)
    best = np.empty(len(combos), np.int64)
    logits, is_best, oos_best = (np.empty(len(combos)) for _ in range(3))
    for c, blocks in enumerate(combos):
        inside = score(blocks)
        outside = score(tuple(b for b in range(n_splits) if b not in blocks))
        k = int(np.argmax(inside))  # the first of equals: the lowest trial index
        best[c], is_best[c], oos_best[c] = k, inside[k], outside[k]
        logits[c] = _rank_logit(outside, k)
    for a in (best, logits, is_best, oos_best):
        a.flags.writeable = False
    return BacktestOverfitting(
        pbo=float(np.mean(logits <= 0)), logits=logits, n_combinations=len(combos), best=best,
        in_sample=is_best, out_of_sample=oos_best, n_splits=n_splits, rows_used=m.shape[0],
    )  # fmt: skip


def _block_sharpe(m: np.ndarray, n_splits: int) -> Callable[[tuple[int, ...]], np.ndarray]:
    """The Sharpe ratio of every trial over any set of blocks, from each block's sums of
    values and of squares: one pass over the data for all combinations. Values are centred
    on their column's mean first, so the sums do not cancel away the variance."""
    centre = m.mean(axis=0)
    d = (m - centre).reshape(n_splits, -1, m.shape[1])
    s1, s2 = d.sum(axis=1), (d * d).sum(axis=1)
    rows = d.shape[1]

    def score(blocks: tuple[int, ...]) -> np.ndarray:
        n = rows * len(blocks)
        t1, t2 = s1[list(blocks)].sum(axis=0), s2[list(blocks)].sum(axis=0)
        var = np.maximum(t2 - t1 * t1 / n, 0.0) / (n - 1)
        return _ratio(t1 / n + centre, np.sqrt(var))

    return score


def _block_metric(
    m: np.ndarray, n_splits: int, metric: Callable[[np.ndarray], np.ndarray]
) -> Callable[[tuple[int, ...]], np.ndarray]:
    """`metric` of every trial over the rows of a set of blocks, in time order."""
    d = m.reshape(n_splits, -1, m.shape[1])

    def score(blocks: tuple[int, ...]) -> np.ndarray:
        values = np.asarray(metric(d[list(blocks)].reshape(-1, m.shape[1])), dtype=float)
        if values.shape != (m.shape[1],):
            raise ValueError(f"metric must give one value per trial ({m.shape[1]}), gave "
                             f"shape {values.shape}")  # fmt: skip
        if np.isnan(values).any():
            k = int(np.flatnonzero(np.isnan(values))[0])
            raise ValueError(f"metric gave NaN for trial {k} over blocks {blocks}")
        return values

    return score
