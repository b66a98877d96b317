"""Backtest results: the summary, the run hash, and the files of a result directory.

`run_hash` is a SHA-256 over the bytes of every order event and fill, so two
runs agree exactly or not at all, and a regression shows as a changed hash.
A result directory is written beside its target and renamed into place whole.
"""

from __future__ import annotations

import datetime as dt
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
from tickwise.engine.limits import TRIGGER_SETTINGS
from tickwise.engine.portfolio import total_pnl
from tickwise.engine.schemas import (
    LIQUIDITY_NAMES,
    ORDER_TYPE_NAMES,
    REASON_NAMES,
    SIDE_NAMES,
    STATUS_NAMES,
    STATUS_NEW,
    STATUS_REJECTED,
    TIF_NAMES,
)

from .replay import Backtest
from .report import round_trips, write_report
from .statistics import Curve, statistics


def run_hash(orders: np.ndarray, fills: np.ndarray) -> str:
    """SHA-256 of every order event and fill, in order."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(orders).view(np.uint8))  # the bytes in place, not a copy
    h.update(np.ascontiguousarray(fills).view(np.uint8))
    return h.hexdigest()


def footer_hash(history: Any) -> str:
    """SHA-256 over every file of a history (or of each data set of a merged one): its path
    within the data set and its Parquet footer (schema, row groups, their statistics and
    tickwise's metadata). Cheap (no row is read); a rewrite with other rows changes it (one
    with the same rows, row groups and statistics does not: a sweep's store also keys on
    each file's size and modification time, `trials.data_key`)."""
    h = hashlib.sha256()
    for part in getattr(history, "histories", (history,)):
        for f in part.files:
            meta = pq.read_metadata(f.path)
            h.update(str(f.path.relative_to(part.path.parent)).encode())
            h.update(json.dumps(meta.to_dict(), sort_keys=True, default=str).encode())
    return h.hexdigest()


def data_fingerprint(bt: Backtest, footers: str | None = None) -> dict[str, Any]:
    """What data the run saw: path, kind, rows and a hash of every file's Parquet footer
    (`footers`, when already computed by `footer_hash`); `sources` lists each data set of a
    merged run (one entry otherwise)."""
    histories = getattr(bt.history, "histories", (bt.history,))
    first, last = bt.history.ts_range
    return {
        "path": str(bt.history.path),
        "kind": bt.history.kind,
        "rows": bt.history.rows,
        "files": len(bt.history.files),
        "sources": [
            {"path": str(x.path), "kind": x.kind, "rows": x.rows, "files": len(x.files)}
            for x in histories
        ],
        "ts_first": first,
        "ts_last": last,
        "start": bt.start,  # the window replayed (ns; null: unbounded)
        "end": bt.end,
        "first_event": bt.ts_first,
        "last_event": bt.ts_last,
        "footer_sha256": footers or footer_hash(bt.history),
    }


def summarize(bt: Backtest, footers: str | None = None) -> dict[str, Any]:
    """The numbers of `summary.json` (money in the instruments' price units); `footers`:
    the data's `footer_hash`, when already known."""
    portfolio = bt.session.ctx.portfolio
    final = _final_pnl(bt)
    status = bt.orders["status"]
    guard = bt.session.status()
    stats = performance(bt, final)
    replay_s = max(bt.wall_s - bt.warmup_s, 0.0)
    summary = {
        "strategy": bt.strategy.name(),
        "params": bt.params,
        "config": _jsonable(asdict(bt.config)),
        "data": data_fingerprint(bt, footers),
        "events": bt.events,
        "orders": int(np.count_nonzero(status == STATUS_NEW)),
        "fills": len(bt.fills),
        "rejects": int(np.count_nonzero(status == STATUS_REJECTED))
        + sum(guard["refused_unlogged"].values()),
        "rejects_by_reason": rejects_by_reason(bt.orders, guard["refused_unlogged"]),
        "pnl": final,
        "fees": float(portfolio["fees"].sum()),
        "sharpe": stats["sharpe"]["value"],  # (null: see statistics.sharpe.reason)
        "max_drawdown": stats["max_drawdown"]["value"],
        "statistics": stats,
        "trades": int(stats["round_trips"]),
        "halted": guard["halted"],
        "halt_reason": guard["halt_reason"],
        "halt_ts": guard["halt_ts"],
        "halt": guard,
        "under_lot": _under_lot(bt),
        "run_hash": run_hash(bt.orders, bt.fills),
        # The replay's rate: reading, checking and the loop, without compiling or loading it.
        "events_per_sec": bt.events / replay_s if replay_s > 0 else 0.0,
        "replay_s": replay_s,
        "wall_s": bt.wall_s,
        "warmup_s": bt.warmup_s,
        "tickwise_version": version("tickwise"),
    }
    summary["warnings"] = warnings(summary, bt.config)
    return summary


def _jsonable(value: Any) -> Any:
    """Config values as JSON has them: infinite limits (off) become null."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def rejects_by_reason(orders: np.ndarray, unlogged: dict[str, int]) -> dict[str, int]:
    """How many orders were refused for each reason, most frequent first: those logged in
    `orders`, and those refused while halted or reducing that were only counted."""
    reasons, counts = np.unique(orders["reason"][orders["status"] == STATUS_REJECTED],
                                return_counts=True)  # fmt: skip
    total = {REASON_NAMES.get(r, f"reason {r}"): n
             for r, n in zip(reasons.tolist(), counts.tolist(), strict=True)}  # fmt: skip
    for name, n in unlogged.items():
        if n:
            total[name] = total.get(name, 0) + n
    return dict(sorted(total.items(), key=lambda item: (-item[1], item[0])))


def _under_lot(bt: Backtest) -> dict[str, Any]:
    """How often `trade_to` was asked for a position of less than one lot (so sent nothing
    while flat), and of which
    instrument last."""
    clock = bt.session.ctx.clock[0]
    n = int(clock.under_lot)
    if n == 0:
        return {"count": 0, "instrument": None, "lot_size": None}
    inst = bt.history.instruments[int(clock.under_lot_instrument)]
    return {"count": n, "instrument": inst.symbol, "lot_size": inst.lot_size}


def warnings(summary: dict[str, Any], config: Any) -> list[str]:
    """One line for each thing about the run a person should know before trusting it."""
    out = []
    fees = (config.maker_fee_bps, config.taker_fee_bps, config.maker_fee_per_unit,
            config.taker_fee_per_unit)  # fmt: skip
    if not any(fees) and config.order_latency_us == 0 and config.latency_jitter_us == 0:
        out.append("no fees and no order latency: fills are as good as they can be (set "
                   "[backtest] taker_fee_bps, order_latency_us)")  # fmt: skip
    tried = summary["orders"] + summary["rejects"]
    if tried and summary["rejects"] > tried / 2:
        top, n = next(iter(summary["rejects_by_reason"].items()))
        out.append(f"{summary['rejects']:,} of {tried:,} orders were refused, most as {top} "
                   f"({n:,}): see the rejects by reason")  # fmt: skip
    under = summary.get("under_lot", {})
    if under.get("count"):
        out.append(f"trade_to was asked {under['count']:,} times for a position of less than "
                   f"one lot (latest: {under['instrument']}, lot {under['lot_size']:g}) and sent "
                   "nothing for those: sizes are whole lots")  # fmt: skip
    return out


def outcome(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """What happened, as (label, text) rows for the console and report.html: the rejects by
    reason, the halt (when, why, the value past the limit, what to change), the fault."""
    by_reason = summary["rejects_by_reason"]
    rows = [("rejects by reason", ", ".join(f"{name} {n:,}" for name, n in by_reason.items())
             or "none")]  # fmt: skip
    halt = summary["halt"]
    if not summary["config"]["killswitch"]["enabled"]:
        return [*rows, ("kill switch", "OFF: a research run ([killswitch] enabled = false)")]
    if not halt["halted"]:
        return [*rows, ("kill switch", "not tripped")]
    where = f" on {halt['halt_instrument']}" if halt["halt_instrument"] else ""
    when = dt.datetime.fromtimestamp(halt["halt_ts"] / 1e9, tz=dt.UTC)
    line = f"HALTED by {halt['halt_reason']}{where} at {when:%Y-%m-%d %H:%M:%S.%f} UTC event time"
    if halt["halt_reason"] != "strategy_fault" or not halt["fault"]:
        line += f" ({halt['halt_value']:.6g} past the limit {halt['halt_limit']:.6g})"
    rows.append(("kill switch", line))
    if halt["fault"]:
        rows.append(("strategy fault", halt["fault"]))
    hint = TRIGGER_SETTINGS.get(halt["halt_reason"])
    if hint:
        rows.append(("to change when it trips", hint))
    return rows


def _final_pnl(bt: Backtest) -> float:
    return float(total_pnl(bt.session.ctx))


def curve_of(bt: Backtest, final: float) -> Curve:
    """What the statistics read of a run: its equity curve from flat at the first event to
    the final PnL at the last, its traded notional and its round trips."""
    e = bt.equity
    first, last = bt.ts_first, bt.ts_last
    ts, pnl, gross = e["ts"], e["pnl"], e["gross_exposure"]
    if first is not None and (ts.size == 0 or first < ts[0]):  # flat at the first event
        ts = np.insert(ts, 0, first)
        pnl = np.insert(pnl, 0, 0.0)
        gross = np.insert(gross, 0, 0.0)
    if last is not None and (ts.size == 0 or last > ts[-1]):
        ts = np.append(ts, last)
        pnl = np.append(pnl, final)
        gross = np.append(gross, gross[-1] if gross.size else 0.0)
    elif ts.size:
        pnl = np.append(pnl[:-1], final)
    f = bt.fills
    return Curve(ts.astype(np.int64), pnl.astype(np.float64), gross.astype(np.float64),
                 float(np.sum(np.abs(f["qty"] * f["price"]))), round_trips(bt))  # fmt: skip


def performance(bt: Backtest, final: float) -> dict[str, Any]:
    """The run's statistics (backtest/statistics.py) on its equity curve, from flat at the
    first event to the final PnL at the last."""
    c = bt.config
    return statistics(curve_of(bt, final), period=c.returns_period, calendar=c.calendar,
                      capital=c.capital)  # fmt: skip


UTC_NS = pa.timestamp("ns", tz="UTC")
# Code columns written as their names (dictionary-encoded strings: small, and readable).
LABELS = {"side": SIDE_NAMES, "order_type": ORDER_TYPE_NAMES, "tif": TIF_NAMES,
          "status": STATUS_NAMES, "reason": REASON_NAMES, "liquidity": LIQUIDITY_NAMES}  # fmt: skip


def _labels(codes: np.ndarray, names: dict[int, str], column: str) -> pa.DictionaryArray:
    keys = np.array(sorted(names))
    index = np.clip(np.searchsorted(keys, codes), 0, keys.size - 1)
    if not np.array_equal(keys[index], codes):
        raise ValueError(f"a {column} code without a name: {sorted(set(codes) - set(keys))}")
    return pa.DictionaryArray.from_arrays(pa.array(index.astype(np.int32)),
                                          pa.array([names[k] for k in keys]))  # fmt: skip


def readable(records: np.ndarray, instruments: Any, strategies: dict[int, str]) -> pa.Table:
    """Order, fill or equity records as people read them: times as timestamp[ns, UTC], codes
    as their names, each instrument's symbol beside its id, the strategy by name."""
    symbols = [""] * instruments.known_mask().size
    for inst in instruments:
        symbols[inst.id] = inst.symbol
    out: dict[str, pa.Array] = {}
    for name in records.dtype.names:
        values = np.ascontiguousarray(records[name])
        if name == "ts":
            out[name] = pa.array(values, type=UTC_NS)
        elif name in LABELS:
            out[name] = _labels(values, LABELS[name], name)
        elif name == "strategy":
            known = {**strategies, **{int(v): f"strategy {v}" for v in set(values.tolist())
                                      if int(v) not in strategies}}  # fmt: skip
            out[name] = _labels(values.astype(np.int64), known, name)
        else:
            out[name] = pa.array(values)
        if name == "instrument":
            out["symbol"] = pa.DictionaryArray.from_arrays(
                pa.array(values.astype(np.int32)), pa.array(symbols)
            )
    return pa.table(out)


def _write(table: pa.Table, path: Path) -> None:
    # Ids, times and prices rarely repeat: dictionary encoding only for the named codes.
    named = [f.name for f in table.schema if pa.types.is_dictionary(f.type)]
    pq.write_table(table, path, use_dictionary=named, compression="lz4")


def write_results(bt: Backtest, out: Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Write summary.json, orders/fills/equity.parquet and report.html into `out`."""
    check_target(out, overwrite)
    make_folder(out.parent)
    summary = summarize(bt)
    tmp = temporary_path(out)
    try:
        tmp.mkdir()
        instruments = bt.history.instruments
        strategies = {int(bt.session.ctx.guard[0].strategy): bt.strategy.name()}
        _write(readable(bt.orders, instruments, strategies), tmp / "orders.parquet")
        _write(readable(bt.fills, instruments, strategies), tmp / "fills.parquet")
        _write(readable(bt.equity, instruments, strategies), tmp / "equity.parquet")
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        said = outcome(summary) + [("warning", line) for line in summary["warnings"]]
        write_report(bt, summary, tmp, said)
        publish(tmp, out)
    except BaseException:
        discard(tmp)
        raise
    return summary
