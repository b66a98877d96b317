"""report.html: equity, drawdown, position and trades over price, and the statistics table.

Plotly draws the charts; its script is written once beside the report
(`plotly.min.js`) so the result folder opens offline. The page hands the
figure to Plotly.js's `Plotly.newPlot` as plain data (times as epoch
milliseconds on date axes): Plotly's Python figure objects validate every
property and `plotly.io` imports a dataframe layer, which together took longer
than the rest of writing a backtest's results.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from plotly.offline import get_plotlyjs

from .replay import Backtest
from .statistics import describe
from .stats import fill_lots, round_trip_pnls

_MAX_MARKERS = 4_000  # trade markers drawn at most (evenly thinned beyond)
CSS = (
    "body{font-family:system-ui,sans-serif;margin:24px;color:#222}"
    "table{border-collapse:collapse}"
    "th,td{padding:3px 12px;border-bottom:1px solid #ddd;text-align:left}"
    "td{text-align:right;font-variant-numeric:tabular-nums}"
)
# The four stacked panels, top to bottom: their share of the height and the gap between.
_PANELS = (0.3, 0.15, 0.4, 0.15)
_GAP = 0.04
_GRID = "#ebf0f8"  # plotly_white's grid colour


def round_trips(bt: Backtest) -> np.ndarray:
    """The PnL of each round trip of the run (fees included), in the order they closed."""
    f = bt.fills
    lot = np.nan_to_num(bt.history.instruments.lot_sizes(), nan=1.0)
    return round_trip_pnls(f["instrument"].astype(np.int64), f["side"].astype(np.int64),
                           fill_lots(f, lot), lot, f["price"], f["fee"], lot.size)  # fmt: skip


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


def _ms(ts: np.ndarray) -> list[float]:
    """Nanosecond stamps as the epoch milliseconds a Plotly date axis reads."""
    return (ts.astype(np.int64) / 1e6).tolist()


def _figure(bt: Backtest) -> dict[str, Any]:
    """PnL, drawdown, the most traded instrument's price with its trades, and its position,
    stacked on one shared time axis."""
    eq = bt.equity
    pnl = eq["pnl"]
    drawdown = pnl - np.maximum.accumulate(np.maximum(pnl, 0.0)) if pnl.size else pnl
    stamps, pnl, drawdown = _thin(eq["ts"], pnl, drawdown)
    fills = bt.fills
    top = int(np.bincount(fills["instrument"]).argmax()) if fills.size else 0
    symbol = bt.history.instruments.symbol(top)
    titles = ("PnL (price units, after fees)", "Drawdown",
              f"{symbol}: price and trades", f"{symbol}: position")  # fmt: skip

    def line(x: np.ndarray, y: np.ndarray, panel: int, **style: Any) -> dict[str, Any]:
        axis = "y" if panel == 1 else f"y{panel}"
        return {"type": "scatter", "x": _ms(x), "y": y.tolist(), "xaxis": "x", "yaxis": axis,
                **style}  # fmt: skip

    times, prices = _thin(*_price_path(bt, top))
    traces = [
        line(stamps, pnl, 1, name="PnL", line={"width": 1}),
        line(stamps, drawdown, 2, name="drawdown", fill="tozeroy",
             line={"width": 1, "color": "firebrick"}),
        line(times, prices, 3, name=f"{symbol} price", line={"width": 1, "color": "gray"}),
    ]  # fmt: skip
    mine = fills[fills["instrument"] == top]
    step = max(1, mine.size // _MAX_MARKERS)
    for side, name, color, marker in ((1, "buys", "seagreen", "triangle-up"),
                                      (-1, "sells", "crimson", "triangle-down")):  # fmt: skip
        sel = mine[mine["side"] == side][::step]
        traces.append(line(sel["ts"], sel["price"], 3, mode="markers", name=name,
                           marker={"color": color, "symbol": marker, "size": 6}))  # fmt: skip
    lot = bt.history.instruments[top].lot_size
    lots = np.cumsum(mine["side"].astype(np.int64) * fill_lots(mine, np.full(top + 1, lot)))
    held, position = _thin(mine["ts"], lots * lot)  # (in whole lots: flat is exactly 0)
    traces.append(line(held, position, 4, name="position", line={"shape": "hv", "width": 1}))

    layout: dict[str, Any] = {
        "height": 1000, "margin": {"l": 60, "r": 20, "t": 40, "b": 30}, "showlegend": True,
        "paper_bgcolor": "white", "plot_bgcolor": "white", "hovermode": "closest",
        "xaxis": {"type": "date", "anchor": f"y{len(_PANELS)}", "gridcolor": _GRID},
        "annotations": [],
    }  # fmt: skip
    room = 1.0 - _GAP * (len(_PANELS) - 1)
    top_edge = 1.0
    for panel, (share, title) in enumerate(zip(_PANELS, titles, strict=True), start=1):
        bottom = top_edge - share * room
        layout["yaxis" if panel == 1 else f"yaxis{panel}"] = {
            "domain": [max(bottom, 0.0), top_edge], "anchor": "x",
            "gridcolor": _GRID, "zerolinecolor": _GRID,
        }  # fmt: skip
        layout["annotations"].append({
            "text": title, "showarrow": False, "font": {"size": 14},
            "xref": "paper", "x": 0.5, "xanchor": "center",
            "yref": "paper", "y": top_edge, "yanchor": "bottom",
        })  # fmt: skip
        top_edge = bottom - _GAP
    return {"data": traces, "layout": layout}


def write_report(bt: Backtest, summary: dict[str, Any], folder: Path,
                 outcome: Sequence[tuple[str, str]] = ()) -> None:  # fmt: skip
    """Write report.html (and plotly.min.js) into `folder`, with `outcome`'s rows (what
    happened: rejects by reason, the halt) in its table."""
    trips = round_trips(bt)
    # A script literal: JavaScript reads NaN as such; "</" is escaped so no value can end it.
    figure = json.dumps(_figure(bt), separators=(",", ":")).replace("</", "<\\/")
    chart = (
        '<div id="chart" style="width:100%"></div>\n<script src="plotly.min.js"></script>\n'
        f'<script>(function(f){{Plotly.newPlot("chart",f.data,f.layout,{{responsive:true}})}})'
        f"({figure});</script>"
    )
    rows = [
        ("PnL (price units, after fees)", f"{summary['pnl']:,.2f}"),
        *describe(summary["statistics"]),
        ("round trips / average PnL", f"{trips.size:,} / "
         + (f"{np.mean(trips):,.4f}" if trips.size else "n/a (no round trip closed)")),
        ("fees", f"{summary['fees']:,.2f}"),
        ("orders / fills / rejects",
         f"{summary['orders']:,} / {summary['fills']:,} / {summary['rejects']:,}"),
        *outcome,
        ("events / replay (wall clock, without compiling)",
         f"{summary['events']:,} in {summary['replay_s']:.2f} s"),
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
<style>{CSS}</style></head>
<body><h1>{title}</h1>
<p>{html.escape(params)}<br>data: {html.escape(data["path"])}
({data["rows"]:,} {html.escape(data["kind"])} rows)</p>
<table>{table}</table>
{chart}
</body></html>
"""
    (folder / "report.html").write_text(page)
    (folder / "plotly.min.js").write_text(get_plotlyjs())
