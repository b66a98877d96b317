"""How likely the best of many trials is a fluke: the deflated Sharpe ratio.

A sweep tries many variants on one history and keeps the best; the best Sharpe ratio is
the largest of many noisy estimates, inflated by the search itself. The answer:

- The deflated Sharpe ratio (DSR; Bailey and López de Prado, "The Deflated Sharpe Ratio:
  Correcting for Selection Bias, Backtest Overfitting and Non-Normality", Journal of
  Portfolio Management 40(5), 2014, pp. 94-107): the probability that the best trial's
  true Sharpe ratio beats the one the best of N trials without skill is expected to show,
  given its track length, skewness and kurtosis.

Conventions: Sharpe ratios are per period (not annualised): mean / sample standard
deviation (ddof 1), risk-free rate 0, as in `statistics.py`. Skewness and kurtosis are the
moment ratios m3 / m2^1.5 and m4 / m2^2 (population moments; the kurtosis is NOT excess:
3 for normal returns). What cannot be said honestly is None with the reason.
"""

from __future__ import annotations

import math
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
