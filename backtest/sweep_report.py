"""report.html of a sweep: one self-contained page (Plotly's script inlined) to read a sweep.

What it shows: the sweep in numbers (search, trials by outcome, the best, the
overfitting statistics or the out-of-sample total), the best trials; a heatmap
of the first objective over two swept parameters (the best over the others; a
scatter when they are not a grid); parallel coordinates of every trial; in
sample against out of sample (each fold's chosen point, or each CSCV
combination's in-sample best); the walk-forward's stitched out-of-sample
equity; and each fold's chosen parameters (their stability). Figures are
handed to Plotly.js as plain data, as in report.py.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from plotly.offline import get_plotlyjs

from .report import CSS
from .search import Objective

PARAM = "param."
GRID_MOST = 60  # distinct values per axis up to which the heatmap is a grid
SHOWN = 20  # the best trials listed


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _heatmap(rows: Sequence[Mapping[str, Any]], x: str, y: str, o: Objective) -> dict:
    """The objective over parameters x and y: the best over the other parameters."""
    ok = [r for r in rows if r["status"] == "ok" and _finite(r[o.name])]
    title = f"{o.name} ({'max' if o.maximise else 'min'}) over {x} and {y}"
    xs = sorted({r[PARAM + x] for r in ok})
    ys = sorted({r[PARAM + y] for r in ok})
    if len(xs) > GRID_MOST or len(ys) > GRID_MOST:  # not a grid: each trial a point
        trace = {"type": "scattergl", "mode": "markers", "x": [r[PARAM + x] for r in ok],
                 "y": [r[PARAM + y] for r in ok], "marker": {
                     "color": [r[o.name] for r in ok], "colorscale": "Viridis",
                     "showscale": True}}  # fmt: skip
        return {"data": [trace], "layout": _layout(title, x, y)}
    z: list[list[float | None]] = [[None] * len(xs) for _ in ys]
    pick = max if o.maximise else min
    for r in ok:
        i, j = ys.index(r[PARAM + y]), xs.index(r[PARAM + x])
        z[i][j] = r[o.name] if z[i][j] is None else pick(z[i][j], r[o.name])
    trace = {"type": "heatmap", "x": [str(v) for v in xs], "y": [str(v) for v in ys], "z": z,
             "colorscale": "Viridis", "hoverongaps": False}  # fmt: skip
    others = " (the best over the other parameters)" if len(rows) > len(xs) * len(ys) else ""
    return {"data": [trace], "layout": _layout(title + others, x, y)}


def _parallel(rows: Sequence[Mapping[str, Any]], swept: Sequence[str],
              goals: Sequence[Objective]) -> dict:  # fmt: skip
    ok = [r for r in rows if r["status"] == "ok" and all(_finite(r[o.name]) for o in goals)]
    dims = [{"label": n, "values": [float(r[PARAM + n]) for r in ok]} for n in swept]
    dims += [{"label": o.name, "values": [r[o.name] for r in ok]} for o in goals]
    trace = {"type": "parcoords", "dimensions": dims,
             "line": {"color": [r[goals[0].name] for r in ok], "colorscale": "Viridis",
                      "showscale": True}}  # fmt: skip
    return {"data": [trace], "layout": {"title": {"text": "every trial that ran to the end"},
                                        "height": 420}}  # fmt: skip


def _in_out(info: Mapping[str, Any], goal: Objective) -> dict | None:
    """In sample against out of sample: folds' chosen points, or CSCV's combinations."""
    wf = info.get("walk_forward")
    if wf:
        shown = [f for f in wf["folds"] if "in_sample" in f and _finite(f["in_sample"][goal.name])
                 and _finite(f["out_of_sample"][goal.name])]  # fmt: skip
        x = [f["in_sample"][goal.name] for f in shown]
        y = [f["out_of_sample"][goal.name] for f in shown]
        text = [f"fold {f['fold']}" for f in shown]
        title = f"{goal.name}: each fold's chosen point, in sample and on its test window"
    else:
        said = info.get("overfitting", {}).get("pbo", {})
        if said.get("value") is None:
            return None
        x, y, text = said["in_sample"], said["out_of_sample"], None
        title = (f"Sharpe per {info['overfitting']['period']}: each CSCV combination's best in "
                 f"sample, and the same trial out of sample (PBO {said['value']:.2f})")  # fmt: skip
    trace = {"type": "scattergl", "mode": "markers", "x": x, "y": y, "text": text}
    return {"data": [trace], "layout": _layout(title, "in sample", "out of sample")}


def _equity(oos: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict | None:
    ts, pnl, fold = oos
    if ts.size == 0:
        return None
    traces = []
    for k in np.unique(fold):
        mine = fold == k
        traces.append({"type": "scattergl", "mode": "lines", "name": f"fold {int(k)}",
                       "x": (ts[mine] / 1e6).tolist(), "y": pnl[mine].tolist()})  # fmt: skip
    layout = _layout("out of sample: the test windows stitched (PnL, price units, after fees)",
                     "", "PnL")  # fmt: skip
    layout["xaxis"]["type"] = "date"
    return {"data": traces, "layout": layout}


def _stability(info: Mapping[str, Any], swept: Sequence[str]) -> dict | None:
    wf = info.get("walk_forward")
    if not wf:
        return None
    chosen = [f for f in wf["folds"] if "params" in f]
    traces = [{"type": "scatter", "mode": "lines+markers", "name": n,
               "x": [f["fold"] for f in chosen], "y": [f["params"][n] for f in chosen],
               "yaxis": "y" if k == 0 else f"y{k + 1}"}
              for k, n in enumerate(swept)]  # fmt: skip
    layout = _layout("each fold's chosen parameters", "fold", swept[0])
    share = 1.0 / len(swept)
    for k, n in enumerate(swept):
        key = "yaxis" if k == 0 else f"yaxis{k + 1}"
        layout[key] = {"title": {"text": n}, "domain": [k * share + 0.02, (k + 1) * share - 0.02]}
    layout["height"] = 160 + 140 * len(swept)
    return {"data": traces, "layout": layout}


def _layout(title: str, x: str, y: str) -> dict[str, Any]:
    return {"title": {"text": title}, "xaxis": {"title": {"text": x}},
            "yaxis": {"title": {"text": y}}, "height": 460, "template": "plotly_white"}  # fmt: skip


def _summary_rows(info: Mapping[str, Any]) -> list[tuple[str, str]]:
    status = ", ".join(f"{k} {v:,}" for k, v in info["status"].items() if v)
    rows = [("strategy", info["strategy"]), ("data", " + ".join(info["data"])),
            ("search", info["search"] + (f" (seed {info['seed']}, batches of {info['batch']})"
                                         if info["seed"] is not None else "")),
            ("space", ", ".join(f"{k}={v}" for k, v in info["space"].items())),
            ("fixed", ", ".join(f"{k}={v}" for k, v in info["fixed"].items()) or "none"),
            ("objectives", ", ".join(info["objectives"])), ("trials", status)]  # fmt: skip
    best = info["best"]
    if best:
        rows.append(("best", f"trial {best['trial']}: " + ", ".join(
            f"{k}={v}" for k, v in best["params"].items() if k in info["space"])))  # fmt: skip
    said = info.get("overfitting")
    if said:
        for name, label in (("pbo", "probability of backtest overfitting (CSCV)"),
                            ("deflated_sharpe", "deflated Sharpe ratio of the best")):  # fmt: skip
            value = said[name]
            rows.append((label, f"{value['value']:.3f}" if value["value"] is not None
                         else f"n/a ({value['reason']})"))  # fmt: skip
    wf = info.get("walk_forward")
    if wf:
        oos = wf["out_of_sample"]
        sharpe = oos["sharpe"]
        rows.append((f"out of sample ({wf['kind']}, {len(wf['folds'])} folds)",
                     f"PnL {oos['pnl']:,.2f}; Sharpe " + (f"{sharpe['value']:.3f}"
                     if sharpe["value"] is not None else f"n/a ({sharpe['reason']})")))  # fmt: skip
    wall = info.get("trial_wall_s")
    if wall:
        said = f"p50 {wall['p50']:.3f}, p99 {wall['p99']:.3f}, max {wall['max']:.3f}"
        rows.append(("trial wall time (s, trials run by the last call)", said))
    return rows


def _table(rows: Sequence[Sequence[str]], head: Sequence[str] | None = None) -> str:
    out = ["<table>"]
    if head:
        out.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>")
    for r in rows:
        first, *rest = r
        out.append(f"<tr><th>{html.escape(first)}</th>"
                   + "".join(f"<td>{html.escape(c)}</td>" for c in rest) + "</tr>")  # fmt: skip
    return "\n".join([*out, "</table>"])


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.4g}"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def write_sweep_report(path: Path, rows: Sequence[Mapping[str, Any]], info: Mapping[str, Any],
                       goals: Sequence[Objective],
                       oos: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:  # fmt: skip
    """Write the sweep's report to `path` (one file: it opens offline, and can be mailed):
    `rows` are the trial table's, `oos` the stitched out-of-sample curve (ts, PnL, fold).
    With folds, the heatmap and the parallel coordinates show the last fold's training."""
    swept = list(info["space"])
    folds = [r["fold"] for r in rows if r["fold"] is not None]
    last = [r for r in rows if r["role"] != "test" and r["fold"] == (max(folds) if folds
                                                                      else None)]  # fmt: skip
    ranked = sorted((r for r in last if r.get("rank") is not None),
                    key=lambda r: r["rank"])[:SHOWN]  # fmt: skip
    names = [*(o.name for o in goals), "pnl", "fills"]
    names = list(dict.fromkeys(names))
    head = ["trial", "fold", "rank", *swept, *names, "run_hash"]
    best_rows = [[str(r["trial"]), _cell(r["fold"]), str(r["rank"]),
                  *(_cell(r[PARAM + n]) for n in swept), *(_cell(r.get(n)) for n in names),
                  (r.get("run_hash") or "")[:16]] for r in ranked]  # fmt: skip
    heat = _heatmap(last, swept[0], swept[1], goals[0]) if len(swept) >= 2 else None
    if heat and folds:
        heat["layout"]["title"]["text"] += f", on fold {max(folds)}'s training (the last)"
    if not folds:  # (a plain sweep: no fold column)
        head.remove("fold")
        best_rows = [[r[0], *r[2:]] for r in best_rows]
    figures = [
        heat,
        _parallel(last, swept, goals),
        _in_out(info, goals[0]),
        _equity(oos),
        _stability(info, swept),
    ]
    charts = []
    for n, figure in enumerate(f for f in figures if f is not None):
        data = json.dumps(figure, separators=(",", ":"), allow_nan=True).replace("</", "<\\/")
        charts.append(f'<div id="c{n}" style="width:100%"></div>\n<script>(function(f){{'
                      f'Plotly.newPlot("c{n}",f.data,f.layout,{{responsive:true}})}})({data});'
                      "</script>")  # fmt: skip
    title = html.escape(f"tickwise sweep: {info['strategy_name']}")
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>{CSS}</style>
<script>{get_plotlyjs()}</script></head>
<body><h1>{title}</h1>
{_table(_summary_rows(info))}
<h2>the best trials{" of the last fold's training" if folds else ""}</h2>
{_table(best_rows, head)}
{"".join(charts)}
</body></html>
"""
    path.write_text(page)
