"""report.html: equity, drawdown, position and trades over price, and the statistics table.

Plotly draws the charts; its script is written once beside the report
(`plotly.min.js`) so the result folder opens offline.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from .replay import Backtest
from .stats import round_trip_pnls

_MAX_MARKERS = 4_000  # trade markers drawn at most (evenly thinned beyond)
_TRADING_SECONDS_PER_YEAR = 252 * 6.5 * 3600
_CSS = (
    "body{font-family:system-ui,sans-serif;margin:24px;color:#222}"
    "table{border-collapse:collapse}"
    "th,td{padding:3px 12px;border-bottom:1px solid #ddd;text-align:left}"
    "td{text-align:right;font-variant-numeric:tabular-nums}"
)


def trade_stats(bt: Backtest) -> dict[str, Any]:
    """Hit rate, turnover and Sortino to go beside the summary."""
    f = bt.fills
    size = bt.history.instruments.known_mask().size
    trips = round_trip_pnls(f["instrument"].astype(np.int64), f["side"].astype(np.float64),
                            f["qty"], f["price"], f["fee"], size)  # fmt: skip
    changes = np.diff(np.concatenate([[0.0], bt.equity["pnl"]]))
    downside = changes[changes < 0]
    step_s = bt.config.equity_every_ms / 1000.0
    sortino = 0.0
    if changes.size > 1 and downside.size and np.sqrt(np.mean(downside**2)) > 0:
        sortino = float(np.mean(changes) / np.sqrt(np.mean(downside**2)))
        sortino *= math.sqrt(_TRADING_SECONDS_PER_YEAR / step_s)
    return {
        "round_trips": int(trips.size),
        "hit_rate": float(np.mean(trips > 0)) if trips.size else 0.0,
        "avg_trip_pnl": float(np.mean(trips)) if trips.size else 0.0,
        "turnover": float(np.sum(f["qty"] * f["price"])),
        "sortino": sortino,
    }


def _price_path(bt: Backtest, instrument: int) -> tuple[np.ndarray, np.ndarray]:
    """The instrument's mark (mid on quotes and books, last price on trades and bars) at
    each equity sample, as the replay recorded it."""
    if bt.marks.size == 0:
        return np.empty(0, dtype=np.int64), np.empty(0)
    px = bt.marks[:, instrument]
    seen = px == px
    return bt.equity["ts"][seen], px[seen]


def _thin(*arrays: np.ndarray, most: int = 5_000) -> tuple[np.ndarray, ...]:
    """Every k-th point so that at most `most` remain (charts need no more)."""
    step = max(1, len(arrays[0]) // most)
    return tuple(a[::step] for a in arrays)


def write_report(bt: Backtest, summary: dict[str, Any], folder: Path) -> None:
    """Write report.html (and plotly.min.js) into `folder`."""
    stats = trade_stats(bt)
    eq = bt.equity
    pnl = eq["pnl"]
    drawdown = pnl - np.maximum.accumulate(np.maximum(pnl, 0.0)) if pnl.size else pnl
    stamps, pnl, drawdown = _thin(eq["ts"], pnl, drawdown)
    when = stamps.astype("datetime64[ns]")
    fills = bt.fills
    top = int(np.bincount(fills["instrument"]).argmax()) if fills.size else 0
    symbol = bt.history.instruments.symbol(top)
    fig = make_subplots(
        rows=4, cols=1, shared_xaxes=True, vertical_spacing=0.04,
        row_heights=[0.3, 0.15, 0.4, 0.15],
        subplot_titles=("PnL (price units, after fees)", "Drawdown",
                        f"{symbol}: price and trades", f"{symbol}: position"),
    )  # fmt: skip
    fig.add_trace(go.Scatter(x=when, y=pnl, name="PnL", line={"width": 1}), row=1, col=1)
    fig.add_trace(go.Scatter(x=when, y=drawdown, name="drawdown", fill="tozeroy",
                             line={"width": 1, "color": "firebrick"}), row=2, col=1)  # fmt: skip
    times, prices = _thin(*_price_path(bt, top))
    fig.add_trace(go.Scatter(x=times.astype("datetime64[ns]"), y=prices, name=f"{symbol} price",
                             line={"width": 1, "color": "gray"}), row=3, col=1)  # fmt: skip
    mine = fills[fills["instrument"] == top]
    step = max(1, mine.size // _MAX_MARKERS)
    for side, name, color, marker in ((1, "buys", "seagreen", "triangle-up"),
                                      (-1, "sells", "crimson", "triangle-down")):  # fmt: skip
        sel = mine[mine["side"] == side][::step]
        fig.add_trace(go.Scatter(x=sel["ts"].astype("datetime64[ns]"), y=sel["price"],
                                 mode="markers", name=name,
                                 marker={"color": color, "symbol": marker, "size": 6}),
                      row=3, col=1)  # fmt: skip
    held, position = _thin(mine["ts"], np.cumsum(mine["side"] * mine["qty"]))
    fig.add_trace(go.Scatter(x=held.astype("datetime64[ns]"), y=position, name="position",
                             line={"shape": "hv", "width": 1}), row=4, col=1)  # fmt: skip
    fig.update_layout(height=1000, margin={"l": 60, "r": 20, "t": 40, "b": 30},
                      template="plotly_white", showlegend=True)  # fmt: skip
    chart = fig.to_html(include_plotlyjs="directory", full_html=False)
    rows = [
        ("PnL (price units, after fees)", f"{summary['pnl']:,.2f}"),
        ("Sharpe (annualised, PnL changes per equity step)", f"{summary['sharpe']:.2f}"),
        ("Sortino (same basis)", f"{stats['sortino']:.2f}"),
        ("max drawdown", f"{summary['max_drawdown']:,.2f}"),
        ("round trips / hit rate", f"{stats['round_trips']:,} / {stats['hit_rate']:.1%}"),
        ("average round trip PnL", f"{stats['avg_trip_pnl']:,.4f}"),
        ("turnover (notional traded)", f"{stats['turnover']:,.2f}"),
        ("fees", f"{summary['fees']:,.2f}"),
        ("orders / fills / rejects",
         f"{summary['orders']:,} / {summary['fills']:,} / {summary['rejects']:,}"),
        ("events / wall clock", f"{summary['events']:,} in {summary['wall_s']:.2f} s"),
        ("run_hash", summary["run_hash"]),
    ]  # fmt: skip
    table = "\n".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows
    )
    params = ", ".join(f"{k}={v}" for k, v in summary["params"].items())
    title = html.escape(summary["strategy"])
    data = summary["data"]
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>tickwise backtest: {title}</title>
<style>{_CSS}</style></head>
<body><h1>{title}</h1>
<p>{html.escape(params)}<br>data: {html.escape(data["path"])}
({data["rows"]:,} {html.escape(data["kind"])} rows)</p>
<table>{table}</table>
{chart}
</body></html>
"""
    (folder / "report.html").write_text(page)
    (folder / "plotly.min.js").write_text(get_plotlyjs())
