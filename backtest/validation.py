"""Whether a sweep's best survives: out-of-sample results of walk-forward folds, and the
overfitting statistics of a plain sweep (backtest/overfitting.py).

Both read the trials' rows: each keeps its PnL at the end of every period of
the calendar (`returns_period`) it traded in, so that trials can be compared
period by period without keeping their curves; the test trials of folds keep
their equity curve too, thinned for the report, and stitched here into one
out-of-sample curve: each fold's PnL carried on from where the fold before
ended.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tickwise.engine.config import SessionConfig

from .folds import Fold
from .overfitting import deflated_sharpe_ratio, pbo, sharpe_ratios
from .search import Objective
from .statistics import Curve, period_of, statistics
from .trials import OK

MIN_PERIODS = 4  # PBO: two blocks of two; the deflated Sharpe ratio needs three returns
MAX_SPLITS = 16  # CSCV's S, as Bailey et al. use it; fewer when there are few periods
SAID = ("sharpe", "sortino", "max_drawdown")  # of the out-of-sample curve (period ends)


def _iso(ns: int | None) -> str | None:
    return None if ns is None else dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC).isoformat()


def _returns(rows: Sequence[Mapping[str, Any]], config: SessionConfig) -> np.ndarray:
    """Each trial's return in each period any of them traded (periods x trials): PnL
    changes in price units, or returns on equity with `capital`; a trial's PnL holds from
    its last period on, and is 0 before its first."""
    period = config.returns_period
    labels = [period_of(np.asarray(r["periods"][0], np.int64), period) for r in rows]
    every = np.unique(np.concatenate(labels)) if labels else np.empty(0, np.int64)
    pnl = np.zeros((every.size, len(rows)))
    for j, (mine, r) in enumerate(zip(labels, rows, strict=True)):
        at = np.searchsorted(mine, every, side="right") - 1  # the trial's last period so far
        values = np.asarray(r["periods"][1], float)
        pnl[:, j] = np.where(at >= 0, values[np.clip(at, 0, None)], 0.0)
    before = np.vstack([np.zeros((1, len(rows))), pnl[:-1]])
    if config.capital:
        return (pnl - before) / (config.capital + before)
    return pnl - before


def _point(row: Mapping[str, Any]) -> str:
    """A trial's point of parameters, as a key: a search may draw a point again (its trial
    is then the same one, counted once)."""
    return json.dumps(row["params"], sort_keys=True)


def overfitting(rows: Sequence[Mapping[str, Any]], goal: Objective,
                config: SessionConfig) -> dict[str, Any]:  # fmt: skip
    """The probability of backtest overfitting over the trials that ran to the end, and the
    deflated Sharpe ratio of the best of them by `goal`, each null with the reason when it
    cannot be said."""
    ran, points = [], set()
    for r in rows:  # (in trial order, each point once: its first trial)
        if r["status"] == OK and r.get("periods") and _point(r) not in points:
            points.add(_point(r))
            ran.append(r)
    out: dict[str, Any] = {"trials": len(ran), "period": config.returns_period}
    if len(ran) < 2:
        reason = f"needs at least 2 trials that ran to the end; the sweep has {len(ran)}"
        return out | {"pbo": {"value": None, "reason": reason},
                      "deflated_sharpe": {"value": None, "reason": reason}}  # fmt: skip
    returns = _returns(ran, config)
    out["periods"] = periods = int(returns.shape[0])
    if periods < MIN_PERIODS:
        reason = (f"needs at least {MIN_PERIODS} {config.returns_period} periods; the trials "
                  f"span {periods}")  # fmt: skip
        return out | {"pbo": {"value": None, "reason": reason},
                      "deflated_sharpe": {"value": None, "reason": reason}}  # fmt: skip
    splits = min(MAX_SPLITS, periods // 2) // 2 * 2  # even, at least 2 periods a block
    found = pbo(returns, splits)
    out["pbo"] = {"value": found.pbo, "reason": None, "splits": splits,
                  "combinations": found.n_combinations, "periods_used": found.rows_used,
                  "in_sample": found.in_sample.tolist(),
                  "out_of_sample": found.out_of_sample.tolist()}  # fmt: skip
    values = np.array([r[goal.name] if r.get(goal.name) is not None else np.nan for r in ran])
    sign = 1.0 if goal.maximise else -1.0
    sharpes = sharpe_ratios(returns)
    finite = np.isfinite(sharpes)
    if not np.isfinite(values).any():
        out["deflated_sharpe"] = {"value": None, "reason": f"no trial has a {goal.name}"}
        return out
    best = int(np.nanargmax(sign * values))  # (ties: the first, the lowest trial id)
    if not finite[best]:
        out["deflated_sharpe"] = {"value": None, "reason": "the best trial's returns do not vary"}
    else:
        dsr = deflated_sharpe_ratio(returns[:, best], sharpes[finite])
        out["deflated_sharpe"] = {
            "value": dsr.value, "reason": dsr.reason, "trial_sharpe": dsr.sharpe,
            "expected_max_sharpe": dsr.sr0, "returns": dsr.n, "trials": dsr.n_trials,
        }  # fmt: skip
    return out


def stitched(rows: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The test trials' curves one after another: (ts, PnL, fold), each fold's PnL carried
    on from where the fold before ended."""
    ts, pnl, fold, offset = [], [], [], 0.0
    for r in rows:
        if r.get("role") != "test" or not r.get("curve"):
            continue
        t, p = (np.asarray(x) for x in r["curve"])
        ts.append(t.astype(np.int64))
        pnl.append(p.astype(float) + offset)
        fold.append(np.full(t.size, r["fold"], np.int64))
        offset += float(p[-1]) if p.size else 0.0
    if not ts:
        return np.empty(0, np.int64), np.empty(0), np.empty(0, np.int64)
    return np.concatenate(ts), np.concatenate(pnl), np.concatenate(fold)


def _oos_statistics(tests: Sequence[Mapping[str, Any]], config: SessionConfig) -> dict:
    """Statistics of the stitched out-of-sample PnL at the end of each period."""
    ends, pnl, offset = [], [], 0.0
    for r in tests:
        if not r.get("periods"):
            continue
        ends.append(np.asarray(r["periods"][0], np.int64))
        pnl.append(np.asarray(r["periods"][1], float) + offset)
        offset = float(pnl[-1][-1]) if pnl[-1].size else offset
    if not ends:
        return {name: {"value": None, "reason": "no test window ran"} for name in SAID}
    ts = np.concatenate(ends)
    curve = Curve(ts, np.concatenate(pnl), np.zeros(ts.size), 0.0, np.empty(0))
    stats = statistics(curve, period=config.returns_period, calendar=config.calendar,
                       capital=config.capital)  # fmt: skip
    return {name: stats[name] for name in SAID}


def walk_forward_summary(folds: Sequence[Fold], rows: Sequence[Mapping[str, Any]],
                         goals: Sequence[Objective], config: SessionConfig,
                         how: Mapping[str, Any]) -> dict[str, Any]:  # fmt: skip
    """`how` the folds were made, then each fold's windows, chosen trial and parameters, in
    and out of sample; the out-of-sample total over the stitched test windows."""
    out = dict(how)
    ids = {id(r): n for n, r in enumerate(rows)}
    tests = [r for r in rows if r.get("role") == "test"]
    shown = []
    for fold in folds:
        train_rows = [r for r in rows if r["fold"] == fold.number and r["role"] == "train"]
        test_row = next((r for r in tests if r["fold"] == fold.number), None)
        chosen = rows[test_row["chosen"]] if test_row is not None else None
        entry = {
            "fold": fold.number,
            "train": [[_iso(a), _iso(b)] for a, b in fold.train],
            "test": [[_iso(a), _iso(b)] for a, b in fold.test],
            "trials": len(train_rows),
        }
        if test_row is None:
            entry["reason"] = "no training trial ran to the end with a value of the objective"
        else:
            entry |= {
                "chosen_trial": test_row["chosen"],
                "test_trial": ids[id(test_row)],
                "params": test_row["params"],
                "in_sample": {o.name: chosen[o.name] for o in goals},
                "out_of_sample": {o.name: test_row.get(o.name) for o in goals},
                "test_status": test_row["status"],
                "test_reason": test_row.get("reason"),
                "test_pnl": test_row.get("pnl"),
            }
        shown.append(entry)
    out["folds"] = shown
    out["out_of_sample"] = {"pnl": float(sum(r.get("pnl") or 0.0 for r in tests)),
                            "test_trials": len(tests),
                            **_oos_statistics(tests, config)}  # fmt: skip
    return out
