"""Backtest results: the summary, the run hash, and the files of a result directory.

`run_hash` is a SHA-256 over the bytes of every order event and fill, so two
runs agree exactly or not at all, and a regression shows as a changed hash.
A result directory is written beside its target and renamed into place whole.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tickwise.engine.atomic import check_target, discard, make_folder, publish, temporary_path
from tickwise.engine.portfolio import total_pnl
from tickwise.engine.schemas import (
    EQUITY_SCHEMA,
    FILL_SCHEMA,
    ORDER_SCHEMA,
    STATUS_NEW,
    STATUS_REJECTED,
    record_batch,
)

from .replay import Backtest
from .report import trade_stats, write_report

# Sharpe is annualised as if the equity step repeated over 252 sessions of 6.5 hours.
_TRADING_SECONDS_PER_YEAR = 252 * 6.5 * 3600


def run_hash(orders: np.ndarray, fills: np.ndarray) -> str:
    """SHA-256 of every order event and fill, in order."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(orders).view(np.uint8))  # the bytes in place, not a copy
    h.update(np.ascontiguousarray(fills).view(np.uint8))
    return h.hexdigest()


def max_drawdown(pnl: np.ndarray) -> float:
    """The largest fall of PnL from a previous peak (a positive number; 0 if none)."""
    if pnl.size == 0:
        return 0.0
    peaks = np.maximum.accumulate(np.maximum(pnl, 0.0))
    return float(np.max(peaks - pnl))


def sharpe(pnl: np.ndarray, step_s: float) -> float:
    """Annualised Sharpe ratio of the PnL changes between equity samples (0 if undefined)."""
    changes = np.diff(np.concatenate([[0.0], pnl]))
    if changes.size < 2 or not np.std(changes) > 0:
        return 0.0
    per_year = _TRADING_SECONDS_PER_YEAR / step_s
    return float(np.mean(changes) / np.std(changes) * math.sqrt(per_year))


def data_fingerprint(bt: Backtest) -> dict[str, Any]:
    """What data the run saw: path, kind, rows and a hash of every file's Parquet footer."""
    h = hashlib.sha256()
    for f in bt.history.files:
        meta = pq.read_metadata(f.path)
        h.update(str(f.path.relative_to(bt.history.path.parent)).encode())
        h.update(json.dumps(meta.to_dict(), sort_keys=True, default=str).encode())
    first, last = bt.history.ts_range
    return {
        "path": str(bt.history.path),
        "kind": bt.history.kind,
        "rows": bt.history.rows,
        "files": len(bt.history.files),
        "ts_first": first,
        "ts_last": last,
        "footer_sha256": h.hexdigest(),
    }


def summarize(bt: Backtest) -> dict[str, Any]:
    """The numbers of `summary.json` (money in the instruments' price units)."""
    portfolio = bt.session.ctx.portfolio
    final = _final_pnl(bt)
    curve = np.append(bt.equity["pnl"], final)
    status = bt.orders["status"]
    guard = bt.session.status()
    return {
        "strategy": bt.strategy.name(),
        "params": bt.params,
        "config": _jsonable(asdict(bt.config)),
        "data": data_fingerprint(bt),
        "events": bt.events,
        "orders": int(np.count_nonzero(status == STATUS_NEW)),
        "fills": len(bt.fills),
        "rejects": int(np.count_nonzero(status == STATUS_REJECTED)),
        "pnl": final,
        "fees": float(portfolio["fees"].sum()),
        "sharpe": sharpe(curve, bt.config.equity_every_ms / 1000.0),
        "max_drawdown": max_drawdown(curve),
        "trades": trade_stats(bt)["round_trips"],
        "halted": guard["halted"],
        "halt_reason": guard["halt_reason"],
        "halt_ts": guard["halt_ts"],
        "halt": guard,
        "run_hash": run_hash(bt.orders, bt.fills),
        "events_per_sec": bt.events / bt.wall_s if bt.wall_s > 0 else 0.0,
        "wall_s": bt.wall_s,
        "warmup_s": bt.warmup_s,
        "tickwise_version": version("tickwise"),
    }


def _jsonable(value: Any) -> Any:
    """Config values as JSON has them: infinite limits (off) become null."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _final_pnl(bt: Backtest) -> float:
    return float(total_pnl(bt.session.ctx))


def _write(records: np.ndarray, schema: pa.Schema, path: Path) -> None:
    table = pa.Table.from_batches([record_batch(records, schema)])
    # Order ids, times and prices rarely repeat: dictionary encoding only costs time here.
    pq.write_table(table, path, use_dictionary=False, compression="lz4")


def write_results(bt: Backtest, out: Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Write summary.json, orders/fills/equity.parquet and report.html into `out`."""
    check_target(out, overwrite)
    make_folder(out.parent)
    summary = summarize(bt)
    tmp = temporary_path(out)
    try:
        tmp.mkdir()
        _write(bt.orders, ORDER_SCHEMA, tmp / "orders.parquet")
        _write(bt.fills, FILL_SCHEMA, tmp / "fills.parquet")
        _write(bt.equity, EQUITY_SCHEMA, tmp / "equity.parquet")
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        write_report(bt, summary, tmp)
        publish(tmp, out)
    except BaseException:
        discard(tmp)
        raise
    return summary
