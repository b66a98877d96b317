"""Performance statistics of a backtest, computed as a quant would check them by hand.

The equity curve is sampled in event time (every `equity_every_ms`, only
while events arrive), so its steps say nothing about calendar time. The
statistics therefore resample it to periods of the calendar (`returns_period`:
a day by default, or a week, or a month, in UTC): a period's PnL is the last
one seen in it, and its return is the change from the period before that had
any data. Periods without data (weekends of an exchange that closes, holidays)
are skipped, not counted as zero returns. Annualisation uses the periods per
year of the data's calendar: 252 days for markets that close at weekends, 365
for those that trade every day (`calendar = "auto"` decides by whether
weekends hold at least a fifth of the days with data), 52 weeks, 12 months.

With `capital` set, returns are on equity (capital + PnL), compounded; CAGR,
Calmar, drawdown in percent and turnover per year can then be said. Without
it, the ratios are computed on PnL changes in price units (Sharpe and Sortino
are scale-free either way), and what needs capital is null, with that reason.
A statistic that cannot be computed honestly (too few periods, no variation)
is null with the reason, never a number.

Conventions: sample standard deviation (ddof 1), risk-free rate 0, Sortino's
downside deviation the root mean square of the negative returns over all
periods, CAGR over the elapsed calendar time from the first to the last
event (365.25-day years).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tickwise.engine.config import CALENDARS, RETURNS_PERIODS

DAY_NS = 86_400_000_000_000
YEAR_NS = 365.25 * DAY_NS
MIN_PERIODS = 2  # fewer returns than this: no ratio is said
ROUNDING = 1e-9  # returns varying less than this share of their mean: rounding, not risk
_WEEKEND_SHARE = 0.2  # weekend days among days with data, from which a market trades 24/7


@dataclass(frozen=True)
class Curve:
    """What the statistics read: PnL (realised + unrealised - fees, price units) at event
    times (ns, increasing), the gross exposure there, and the run's fills and round trips."""

    ts: np.ndarray  # int64 ns
    pnl: np.ndarray  # float64
    gross: np.ndarray  # float64: sum of |position| x mark at each point
    traded_notional: float  # sum of |qty x price| over every fill
    trip_pnls: np.ndarray  # PnL of each round trip, fees included


def stitch(curves: Sequence[Curve]) -> Curve:
    """Curves of runs that follow one another (each from flat) as one: each run's PnL
    carried on from where the one before ended."""
    offsets = np.cumsum([0.0] + [c.pnl[-1] if c.pnl.size else 0.0 for c in curves[:-1]])
    return Curve(
        np.concatenate([c.ts for c in curves]),
        np.concatenate([c.pnl + o for c, o in zip(curves, offsets, strict=True)]),
        np.concatenate([c.gross for c in curves]),
        float(sum(c.traded_notional for c in curves)),
        np.concatenate([c.trip_pnls for c in curves]),
    )


def calendar_of(ts: np.ndarray) -> str:
    """'24/7' when weekends (UTC) hold at least a fifth of the days with data, else
    'weekdays' (a Sunday-evening FX open does not make a market trade at weekends)."""
    days = np.unique(ts // DAY_NS)
    if days.size == 0:
        return "weekdays"
    weekend = ((days + 3) % 7) >= 5  # day 0 (1970-01-01) was a Thursday: Monday is 0
    return "24/7" if np.mean(weekend) >= _WEEKEND_SHARE else "weekdays"


def periods_per_year(period: str, calendar: str) -> float:
    """How many periods of `period` a year holds on `calendar` ('weekdays' or '24/7')."""
    if period == "1d":
        return 365.0 if calendar == "24/7" else 252.0
    return {"1w": 52.0, "1mo": 12.0}[period]


def period_of(ts: np.ndarray, period: str) -> np.ndarray:
    """The calendar period (UTC) each time falls in, as an increasing integer label."""
    days = ts // DAY_NS
    if period == "1d":
        return days
    if period == "1w":
        return (days + 3) // 7  # weeks from Monday
    months = ts.astype("datetime64[ns]").astype("datetime64[M]")
    return months.astype(np.int64)


def period_pnl(ts: np.ndarray, pnl: np.ndarray, period: str) -> tuple[np.ndarray, np.ndarray]:
    """The last time and PnL seen in each period with data."""
    label = period_of(ts, period)
    last = np.flatnonzero(np.diff(label, append=label[-1] + 1) != 0) if ts.size else label
    return ts[last], pnl[last]


def _null(reason: str) -> dict[str, Any]:
    return {"value": None, "reason": reason}


def _said(value: float) -> dict[str, Any]:
    return {"value": float(value), "reason": None}


def _drawdown(ts: np.ndarray, values: np.ndarray) -> tuple[float, float, int]:
    """The deepest fall from a running peak (in value and as a share of the peak), and the
    longest time (ns) from a peak until it was regained (or until the end)."""
    peaks = np.maximum.accumulate(values)
    fall = peaks - values
    share = float(np.max(np.where(peaks > 0, fall / np.where(peaks > 0, peaks, 1.0), 0.0)))
    under = np.concatenate([[False], fall > 0, [False]]).astype(np.int8)
    edges = np.diff(under)
    begins = np.flatnonzero(edges == 1)  # first point below a peak
    ends = np.flatnonzero(edges == -1)  # first point back at a peak (n: never)
    longest = 0
    if begins.size:
        last = values.size - 1
        longest = int(np.max(ts[np.minimum(ends, last)] - ts[np.maximum(begins - 1, 0)]))
    return float(np.max(fall)), share, longest


def statistics(curve: Curve, *, period: str = "1d", calendar: str = "auto",
               capital: float | None = None) -> dict[str, Any]:  # fmt: skip
    """Every statistic of `summary.json`'s `statistics`, each {value, reason}, and how they
    were measured (period, calendar, periods per year, basis, number of returns)."""
    if period not in RETURNS_PERIODS:
        raise ValueError(f"returns_period must be one of {RETURNS_PERIODS}, got {period!r}")
    if calendar not in CALENDARS:
        raise ValueError(f"calendar must be one of {', '.join(CALENDARS)}, got {calendar!r}")
    used = calendar_of(curve.ts) if calendar == "auto" else calendar
    per_year = periods_per_year(period, used)
    # Flat at the first event, before anything traded: the first period's change is from 0.
    ts = np.concatenate([curve.ts[:1], curve.ts])
    pnl = np.concatenate([[0.0], curve.pnl])
    ends = period_pnl(curve.ts, curve.pnl, period)[1] if curve.ts.size else curve.pnl
    marks = np.concatenate([[0.0], ends])
    basis = "returns on capital" if capital else "PnL changes in price units"
    out: dict[str, Any] = {
        "period": period,
        "calendar": used,
        "periods_per_year": per_year,
        "basis": basis,
        "capital": capital,
        "returns": int(ends.size),
    }
    ruined = False
    if capital:
        equity = capital + marks
        ruined = bool(np.any(equity <= 0))
        x = equity[1:] / equity[:-1] - 1.0 if not ruined else np.empty(0)
    else:
        x = np.diff(marks)
    short = f"needs at least {MIN_PERIODS} {period} returns; the run has {ends.size}"
    if ruined:
        short = f"equity (capital {capital:g} + PnL) fell to zero or below"
    if x.size < MIN_PERIODS:
        sharpe = sortino = volatility = _null(short)
    else:
        sd = float(np.std(x, ddof=1))
        mean = float(np.mean(x))
        volatility = _said(sd * math.sqrt(per_year))
        if not sd > ROUNDING * abs(mean):  # (a constant return still wobbles in binary)
            sharpe = _null(f"the {period} returns do not vary")
        else:
            sharpe = _said(mean / sd * math.sqrt(per_year))
        downside = math.sqrt(float(np.mean(np.minimum(x, 0.0) ** 2)))
        sortino = (_said(mean / downside * math.sqrt(per_year)) if downside > 0
                   else _null(f"no {period} return was negative"))  # fmt: skip
    out |= {"sharpe": sharpe, "sortino": sortino, "volatility": volatility}

    if curve.ts.size:
        fall, _, longest = _drawdown(ts, pnl)
        out["max_drawdown"] = _said(fall)
        out["max_drawdown_days"] = _said(longest / DAY_NS)
    else:
        out["max_drawdown"] = out["max_drawdown_days"] = _null("the run has no equity sample")
    years = float(curve.ts[-1] - curve.ts[0]) / YEAR_NS if curve.ts.size else 0.0
    no_capital = "needs [backtest] capital"
    if not capital:
        out["max_drawdown_pct"] = out["cagr"] = out["calmar"] = _null(no_capital)
        out["turnover_per_year"] = _null(no_capital)
    else:
        _, share, _ = _drawdown(ts, capital + pnl)
        out["max_drawdown_pct"] = _said(100.0 * share)
        final = capital + float(pnl[-1])
        if ruined or x.size < MIN_PERIODS or years <= 0:
            out["cagr"] = out["calmar"] = _null(short)
        else:
            cagr = (final / capital) ** (1.0 / years) - 1.0
            out["cagr"] = _said(100.0 * cagr)
            out["calmar"] = (_said(cagr / share) if share > 0
                             else _null("the equity never fell from a peak"))  # fmt: skip
        out["turnover_per_year"] = (
            _said(curve.traded_notional / capital / years) if years > 0
            else _null("the run spans no time")
        )  # fmt: skip
    trips = curve.trip_pnls
    out["round_trips"] = int(trips.size)
    out["hit_rate"] = (_said(float(np.mean(trips > 0))) if trips.size
                       else _null("no round trip closed"))  # fmt: skip
    out["turnover"] = _said(curve.traded_notional)
    out["exposure"] = (_said(float(np.mean(curve.gross > 0))) if curve.gross.size
                       else _null("the run has no equity sample"))  # fmt: skip
    return out


def _text(stat: dict[str, Any], fmt: str) -> str:
    return fmt.format(stat["value"]) if stat["reason"] is None else f"n/a ({stat['reason']})"


def describe(stats: dict[str, Any]) -> list[tuple[str, str]]:
    """The statistics as (label, text) rows for people: each label says how the number was
    measured; a statistic that could not be computed reads 'n/a (why)'."""
    on = (f"{stats['period']} returns on capital {stats['capital']:,.0f}" if stats["capital"]
          else f"{stats['period']} PnL changes, price units")  # fmt: skip
    yearly = f"x{stats['periods_per_year']:g}/yr, {stats['calendar']} calendar"
    money = "%" if stats["capital"] else " price units"
    scale = 100.0 if stats["capital"] else 1.0
    vol = stats["volatility"]
    vol = {**vol, "value": vol["value"] * scale} if vol["reason"] is None else vol
    return [
        (f"Sharpe ({on}, {yearly})", _text(stats["sharpe"], "{:.2f}")),
        ("Sortino (same basis)", _text(stats["sortino"], "{:.2f}")),
        ("volatility (annualised, same basis)", _text(vol, "{:,.2f}" + money)),
        ("CAGR", _text(stats["cagr"], "{:.2f}%")),
        ("max drawdown (price units)", _text(stats["max_drawdown"], "{:,.2f}")),
        ("max drawdown (% of peak equity)", _text(stats["max_drawdown_pct"], "{:.2f}%")),
        ("longest drawdown (days, peak to recovery)", _text(stats["max_drawdown_days"], "{:.1f}")),
        ("Calmar (CAGR / max drawdown)", _text(stats["calmar"], "{:.2f}")),
        ("hit rate (round trips that won)", _text(stats["hit_rate"], "{:.1%}")),
        ("turnover (notional traded, price units)", _text(stats["turnover"], "{:,.2f}")),
        ("turnover (x capital per year)", _text(stats["turnover_per_year"], "{:.2f}")),
        ("exposure (share of samples with a position)", _text(stats["exposure"], "{:.1%}")),
    ]
