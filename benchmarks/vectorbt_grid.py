"""The SMA-cross grid against vectorbt, the fastest grid in Python, on the same bars.

The grid: `fast` 5..50 by 5 x `slow` 20..200 by 20 (100 points; the 10 with
fast >= slow are refused by sma_cross's check_params, so 90 run), long or
flat, 100 units (a whole lot of every synthetic instrument), no fees, over
the 1,000,000 one-minute bars of 8 instruments of `benchmarks/data.py`.

- tickwise: `tw.sweep` as a user calls it (two local workers, the kill switch
  off as for research), timed from the call to its return: worker start,
  every trial reading the bars from Parquet, the loop, the statistics.
- vectorbt (a benchmark-only dependency, `pip install '.[bench]'`): the bars
  read from Parquet into a frame of closes (time x instrument), `MA.run` for
  each window over every instrument, the crossings (fast > slow after
  fast <= slow on the bar before, as sma_cross decides), and one broadcast
  `Portfolio.from_signals` over the 720 columns, then the closed trades
  counted per column; numba warmed first, as ours is.

The fill conventions differ and are documented: sma_cross fills a bar's
decision at the next bar's open, vectorbt (by default) at the signal bar's
close; prices do not change the count of round trips, except a signal on an
instrument's last bar (vectorbt fills it, tickwise cannot). Averages are
compared exactly in tickwise (windows of prices) and in floating point in
vectorbt, so an exact tie of the two averages can be a cross in one and not
in the other: the case says how many points agree.

Run as a script: `python benchmarks/vectorbt_grid.py`.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow.parquet as pq

import tickwise as tw

try:
    from .data import bars_file
except ImportError:  # run as a script
    from data import bars_file  # type: ignore[no-redef]

ROWS = 1_000_000
FAST = list(range(5, 51, 5))
SLOW = list(range(20, 201, 20))
QTY = 100.0
RESEARCH = replace(tw.SessionConfig(), killswitch=replace(tw.KillSwitch(), enabled=False))


def points() -> list[tuple[int, int]]:
    """The grid's points that sma_cross runs (fast < slow), in the sweep's trial order."""
    return [(f, s) for f in FAST for s in SLOW if f < s]


def ours(workers: int = 2) -> tuple[float, dict[tuple[int, int], int]]:
    """The sweep's wall time (s) and each point's round trips."""
    data = bars_file(ROWS)
    began = time.perf_counter()
    swept = tw.sweep("sma_cross", data, {"fast": "5:50:5", "slow": "20:200:20"},
                     params={"qty": QTY}, config=RESEARCH, objectives=["pnl"],
                     workers=workers)  # fmt: skip
    wall = time.perf_counter() - began
    rows = swept.table.to_pylist()
    if any(r["status"] not in ("ok", "invalid") for r in rows):
        raise RuntimeError("a benchmark trial did not run to the end")
    trades = {(r["param.fast"], r["param.slow"]): r["trades"] for r in rows if r["status"] == "ok"}
    return wall, trades


def _crossings(fast: np.ndarray, slow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entries (fast > slow after fast <= slow on the bar before) and exits (fast < slow
    after fast >= slow), as sma_cross decides them; NaN (a window not yet full) is neither."""
    before = np.zeros((1, fast.shape[1]), bool)
    entries = (fast > slow) & np.vstack([before, (fast <= slow)[:-1]])
    exits = (fast < slow) & np.vstack([before, (fast >= slow)[:-1]])
    return entries, exits


def _trades(close: Any, entries: np.ndarray, exits: np.ndarray, points: int) -> np.ndarray:
    """Closed round trips per (point, instrument) of vectorbt's broadcast portfolio."""
    import vectorbt as vbt

    prices = np.tile(close.to_numpy(), points)
    pf = vbt.Portfolio.from_signals(prices, entries, exits, size=QTY, init_cash=np.inf,
                                    fees=0.0, freq="1min")  # fmt: skip
    return np.asarray(pf.trades.closed.count()).reshape(points, close.shape[1])


def _vectorbt(close: Any, grid: list[tuple[int, int]]) -> np.ndarray:
    """Closed round trips per (point, instrument): vectorbt's moving averages (floating
    point), the crossings, vectorbt's portfolio."""
    import vectorbt as vbt

    fast = vbt.MA.run(close, window=[f for f, _ in grid]).ma.to_numpy()
    slow = vbt.MA.run(close, window=[s for _, s in grid]).ma.to_numpy()
    return _trades(close, *_crossings(fast, slow), len(grid))


def _exact(close: Any, grid: list[tuple[int, int]], tick: float = 0.01) -> np.ndarray:
    """As `_vectorbt`, but with the averages compared exactly (sums of whole ticks, cross
    multiplied), as sma_cross compares them, and without the trades closed on the last bar
    (next-open fills): what differs from `_vectorbt` is only ties and that bar."""
    ticks = np.rint(close.to_numpy() / tick).astype(np.int64)
    if not np.allclose(ticks * tick, close.to_numpy(), rtol=0, atol=tick * 1e-6):
        raise RuntimeError("the closes are not on the tick grid")
    sums = np.vstack([np.zeros((1, ticks.shape[1]), np.int64), np.cumsum(ticks, axis=0)])
    n = ticks.shape[0]

    def rolling(window: int) -> np.ndarray:  # sum of the last `window` closes; -1: not full
        out = np.full((n, ticks.shape[1]), -1, np.int64)
        out[window - 1 :] = sums[window:] - sums[:-window]
        return out

    fast_cols, slow_cols = [], []
    for f, s in grid:
        fs, ss = rolling(f), rolling(s)
        full = ss >= 0
        # fast mean - slow mean, as fs * s - ss * f (exact); NaN until the slow window is full
        fast_cols.append(np.where(full, (fs * s - ss * f).astype(float), np.nan))
        slow_cols.append(np.where(full, 0.0, np.nan))
    fast, slow = np.hstack(fast_cols), np.hstack(slow_cols)
    entries, exits = _crossings(fast, slow)
    # An exit on an instrument's last bar: vectorbt fills it at that close, sma_cross at the
    # next open, which never comes. Those are the one convention that changes a count.
    last = exits[-1].reshape(len(grid), close.shape[1])
    return _trades(close, entries, exits, len(grid)) - last


def _closes() -> Any:
    """The bars' closes as a frame, time x instrument."""
    table = pq.read_table(bars_file(ROWS), columns=["ts_event", "instrument", "close"])
    close = table.to_pandas().pivot(index="ts_event", columns="instrument", values="close")
    return close.astype(float).ffill()  # (every instrument has a bar every minute)


def exact_counts() -> dict[tuple[int, int], int]:
    """Each point's round trips through vectorbt's portfolio, the crossings found exactly
    and the last bar's exits left out (they would fill after the data)."""
    grid = points()
    counts = _exact(_closes(), grid)
    return {p: int(n) for p, n in zip(grid, counts.sum(axis=1), strict=True)}


def theirs() -> tuple[float, dict[tuple[int, int], int]]:
    """vectorbt's wall time (s), from reading the bars, and each point's round trips."""
    grid = points()
    began = time.perf_counter()
    counts = _vectorbt(_closes(), grid)
    wall = time.perf_counter() - began
    return wall, {p: int(n) for p, n in zip(grid, counts.sum(axis=1), strict=True)}


def warm() -> None:
    """Compile (or load) both sides' code first: neither is timed compiling."""
    import pandas as pd

    close = pd.DataFrame(np.linspace(100.0, 101.0, 400).reshape(200, 2))
    _vectorbt(close, [(5, 20)])


def measure(rounds: int) -> dict[str, Any]:
    """Rounds taking turns: each side's wall time, and the points whose counts agree."""
    warm()
    ours(workers=2)  # (the loop compiled or loaded once, and the bars in the page cache)
    out: dict[str, Any] = {"ours": [], "theirs": [], "agree": 0, "points": 0, "differ": []}
    for r in range(rounds):
        for side in ("ours", "theirs") if r % 2 == 0 else ("theirs", "ours"):
            wall, trades = ours() if side == "ours" else theirs()
            out[side].append(wall)
            out[f"{side}_trades"] = trades
    a, b = out.pop("ours_trades"), out.pop("theirs_trades")
    exact = exact_counts()
    out["points"] = len(a)
    out["agree"] = sum(a[p] == b[p] for p in a)
    out["agree_exact"] = sum(a[p] == exact[p] for p in a)
    out["differ"] = [(p, a[p], b[p], exact[p]) for p in a if a[p] != exact[p]]
    return out


def main() -> None:
    r = measure(rounds=2)
    print(f"tickwise sweep {r['ours']} s; vectorbt {r['theirs']} s; {r['agree']}/"
          f"{r['points']} points with the same round trips; {r['differ'][:10]}")  # fmt: skip


if __name__ == "__main__":
    main()
