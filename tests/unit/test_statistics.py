"""Statistics of a backtest against independent computations on known series: a constant
daily return, a known daily series sampled many times a day (minute samples must give the
daily figures), weekly and monthly periods, the calendar (weekdays, 24/7, an FX week), too
short a run, runs without capital, and drawdown durations."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickwise.backtest.statistics import DAY_NS, YEAR_NS, Curve, calendar_of, statistics

START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)  # a Monday
MINUTE_NS = 60_000_000_000


def days(n: int, *, weekends: bool) -> list[dt.datetime]:
    out, day = [], START
    while len(out) < n:
        if weekends or day.weekday() < 5:
            out.append(day)
        day += dt.timedelta(days=1)
    return out


def ns(t: dt.datetime) -> int:
    return int(t.timestamp()) * 1_000_000_000


def curve(ts: list[int] | np.ndarray, pnl: list[float] | np.ndarray, trips=()) -> Curve:
    ts = np.asarray(ts, dtype=np.int64)
    return Curve(ts, np.asarray(pnl, dtype=float), np.ones(ts.size), 0.0, np.asarray(trips, float))


def value(stats: dict, name: str) -> float:
    assert stats[name]["reason"] is None, stats[name]
    return stats[name]["value"]


def test_a_constant_daily_return_compounds_to_its_cagr_and_has_no_sharpe() -> None:
    r, capital, n = 0.001, 1_000_000.0, 300
    closes = [ns(d) + 20 * 3_600_000_000_000 for d in days(n, weekends=False)]
    equity = capital * (1 + r) ** np.arange(1, n + 1)
    stats = statistics(curve(closes, equity - capital), capital=capital)
    assert stats["calendar"] == "weekdays"
    assert stats["periods_per_year"] == 252
    assert stats["returns"] == n
    years = (closes[-1] - closes[0]) / YEAR_NS
    assert value(stats, "cagr") == pytest.approx(100 * (((1 + r) ** n) ** (1 / years) - 1))
    assert value(stats, "volatility") == pytest.approx(0.0, abs=1e-12)
    assert stats["sharpe"]["value"] is None
    assert stats["sharpe"]["reason"] == "the 1d returns do not vary"
    assert stats["sortino"]["reason"] == "no 1d return was negative"
    assert value(stats, "max_drawdown") == 0.0
    assert stats["calmar"]["reason"] == "the equity never fell from a peak"


def daily_frame(closes: list[dt.datetime], returns: np.ndarray, capital: float) -> pl.DataFrame:
    equity = capital * np.cumprod(1 + returns)
    return pl.DataFrame({"t": closes, "equity": equity})


def independent(frame: pl.DataFrame, capital: float, every: str, per_year: float) -> dict:
    """Sharpe, Sortino and volatility computed the plain way with polars: the last equity of
    each period, its percent change (from the capital for the first), sqrt(periods/year)."""
    closes = frame.sort("t").group_by_dynamic("t", every=every).agg(pl.col("equity").last())
    equity = np.concatenate([[capital], closes["equity"].to_numpy()])
    r = equity[1:] / equity[:-1] - 1
    sd = r.std(ddof=1)
    downside = math.sqrt(np.mean(np.minimum(r, 0) ** 2))
    return {
        "sharpe": r.mean() / sd * math.sqrt(per_year),
        "sortino": r.mean() / downside * math.sqrt(per_year),
        "volatility": sd * math.sqrt(per_year),
        "returns": r.size,
    }


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(14, 400), per_day=st.integers(1, 30),
       weekends=st.booleans())  # fmt: skip
def test_minute_samples_give_the_statistics_of_the_daily_closes(seed, n, per_day, weekends):
    rng = np.random.default_rng(seed)
    capital = 100_000.0
    returns = rng.normal(0.0005, 0.01, n)
    closes = [d + dt.timedelta(hours=20) for d in days(n, weekends=weekends)]
    daily = daily_frame(closes, returns, capital)
    # The same days seen minute by minute: intraday moves that end at each day's close.
    ts, equity = [], []
    before = capital
    for close, end in zip(closes, daily["equity"].to_numpy(), strict=True):
        path = np.linspace(before, end, per_day + 1)[1:] + rng.normal(0, 50, per_day)
        path[-1] = end
        ts += [ns(close) - (per_day - 1 - k) * MINUTE_NS for k in range(per_day)]
        equity += list(path)
        before = end
    stats = statistics(curve(ts, np.asarray(equity) - capital), capital=capital)
    per_year = 365 if weekends else 252
    assert stats["calendar"] == ("24/7" if weekends else "weekdays")
    want = independent(daily, capital, "1d", per_year)
    assert stats["returns"] == want["returns"] == n
    for name in ("sharpe", "sortino", "volatility"):
        assert value(stats, name) == pytest.approx(want[name], rel=1e-9), name


@pytest.mark.parametrize(("period", "every", "per_year"), [("1w", "1w", 52), ("1mo", "1mo", 12)])
def test_weekly_and_monthly_returns_are_those_of_the_calendar(period, every, per_year) -> None:
    rng = np.random.default_rng(7)
    capital = 50_000.0
    closes = [d + dt.timedelta(hours=16) for d in days(500, weekends=False)]
    daily = daily_frame(closes, rng.normal(0.0003, 0.012, len(closes)), capital)
    ts = [ns(t) for t in closes]
    stats = statistics(curve(ts, daily["equity"].to_numpy() - capital), period=period,
                       capital=capital)  # fmt: skip
    want = independent(daily, capital, every, per_year)
    assert stats["periods_per_year"] == per_year
    assert stats["returns"] == want["returns"]
    for name in ("sharpe", "sortino", "volatility"):
        assert value(stats, name) == pytest.approx(want[name], rel=1e-9), name


def test_without_capital_the_ratios_are_on_pnl_changes_and_the_rest_says_why() -> None:
    rng = np.random.default_rng(3)
    closes = [ns(d) for d in days(60, weekends=False)]
    pnl = np.cumsum(rng.normal(10.0, 100.0, 60))
    stats = statistics(curve(closes, pnl))
    changes = np.diff(np.concatenate([[0.0], pnl]))
    assert stats["basis"] == "PnL changes in price units"
    assert value(stats, "sharpe") == pytest.approx(
        changes.mean() / changes.std(ddof=1) * math.sqrt(252), rel=1e-12
    )
    for name in ("cagr", "calmar", "max_drawdown_pct", "turnover_per_year"):
        assert stats[name] == {"value": None, "reason": "needs [backtest] capital"}
    # The ratios do not depend on the size traded.
    scaled = statistics(curve(closes, 7.5 * pnl))
    assert value(scaled, "sharpe") == pytest.approx(value(stats, "sharpe"), rel=1e-12)


def test_seventeen_minutes_of_quotes_have_no_annualised_ratio() -> None:
    t0 = ns(START) + 14 * 3_600_000_000_000
    ts = t0 + np.arange(1_020) * 1_000_000_000
    pnl = np.cumsum(np.random.default_rng(1).normal(0, 1, ts.size))
    stats = statistics(curve(ts, pnl), capital=10_000.0)
    reason = "needs at least 2 1d returns; the run has 1"
    for name in ("sharpe", "sortino", "volatility", "cagr", "calmar"):
        assert stats[name] == {"value": None, "reason": reason}, name
    assert stats["max_drawdown"]["value"] >= 0  # what can be said is said


def test_the_calendar_is_the_data_s() -> None:
    weekdays = np.array([ns(d) for d in days(30, weekends=False)])
    assert calendar_of(weekdays) == "weekdays"
    assert calendar_of(np.array([ns(d) for d in days(30, weekends=True)])) == "24/7"
    # An FX week: Sunday 22:00 UTC to Friday 22:00 UTC; Sundays hold 1 day in 6.
    sundays = np.array([ns(d) - 2 * 3_600_000_000_000 for d in days(30, weekends=False)
                        if d.weekday() == 0])  # fmt: skip
    assert calendar_of(np.sort(np.concatenate([weekdays, sundays]))) == "weekdays"
    forced = statistics(curve(weekdays, np.arange(30.0) ** 1.1), calendar="24/7")
    assert forced["calendar"] == "24/7"
    assert forced["periods_per_year"] == 365


def test_drawdown_depth_and_duration_from_peak_to_recovery() -> None:
    day = [ns(d) for d in days(12, weekends=True)]
    pnl = [10, 30, 25, 5, 0, 12, 20, 28, 31, 33, 33, 40]  # peak 30 on day 1, regained day 8
    stats = statistics(curve(day, pnl), capital=100.0)
    assert value(stats, "max_drawdown") == 30
    assert value(stats, "max_drawdown_days") == 7
    assert value(stats, "max_drawdown_pct") == pytest.approx(100 * 30 / 130)
    unrecovered = statistics(curve(day[:6], pnl[:6]))
    assert value(unrecovered, "max_drawdown_days") == 4  # still below at the end


def test_hit_rate_turnover_and_exposure() -> None:
    ts = np.array([ns(d) for d in days(10, weekends=False)])
    c = Curve(ts, np.zeros(10), np.array([0, 1, 1, 0, 0, 2, 2, 2, 0, 0.0]), 5_000.0,
              np.array([1.0, -2.0, 3.0, 0.0]))  # fmt: skip
    stats = statistics(c, capital=1_000.0)
    assert value(stats, "hit_rate") == 0.5  # a round trip at exactly 0 did not win
    assert value(stats, "exposure") == 0.5
    assert value(stats, "turnover") == 5_000.0
    years = (ts[-1] - ts[0]) / YEAR_NS
    assert value(stats, "turnover_per_year") == pytest.approx(5.0 / years)


def test_ruin_is_said_not_computed() -> None:
    ts = [ns(d) for d in days(10, weekends=False)]
    stats = statistics(curve(ts, [-50, -120, -90, 0, 0, 0, 0, 0, 0, 0]), capital=100.0)
    assert stats["sharpe"]["value"] is None
    assert "fell to zero or below" in stats["sharpe"]["reason"]


def test_a_day_is_utc_midnight_to_midnight() -> None:
    late = ns(START) + DAY_NS - 1
    stats = statistics(curve([ns(START), late, late + 1], [1.0, 2.0, 3.0]))
    assert stats["returns"] == 2
