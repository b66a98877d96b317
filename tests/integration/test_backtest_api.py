"""Backtests through the Python API: bars, hive folders, and what a replay may never do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from tickwise.backtest.replay import run_backtest
from tickwise.backtest.results import write_results
from tickwise.engine.config import SessionConfig
from tickwise.engine.schemas import STATUS_NEW
from tickwise.feeds.history import open_history

from ..conftest import make_synth, table_of


def test_a_bar_strategy_never_fills_inside_its_decision_bar(tmp_path: Path) -> None:
    bars = make_synth(tmp_path / "bars", kind="bars", rows=6_000, instruments=2, seed=2,
                      partition=True)  # fmt: skip
    bt = run_backtest("sma_cross", bars, {"fast": 3, "slow": 8, "long_short": True})
    sent = bt.orders[bt.orders["status"] == STATUS_NEW]
    assert len(bt.fills) > 20
    decided = dict(zip(sent["id"].tolist(), sent["ts"].tolist(), strict=True))
    for fill in bt.fills:
        # ts_event of a bar is its close: a fill belongs to a later bar than the decision.
        assert fill["ts"] >= decided[int(fill["order_id"])] + 60_000_000_000
    # Market orders fill at the next bar's open.
    table = table_of(open_history(bars).batches(10_000))
    opens = set(zip(table.column("ts_event").to_pylist(), table.column("instrument").to_pylist(),
                    table.column("open").to_pylist(), strict=True))  # fmt: skip
    assert all((int(f["ts"]), int(f["instrument"]), float(f["price"])) in opens for f in bt.fills)
    summary = write_results(bt, tmp_path / "result")
    assert summary["fills"] == len(bt.fills)
    assert "Plotly.newPlot" in (tmp_path / "result" / "report.html").read_text()


def test_fills_are_at_the_best_price_shown_at_that_moment(tmp_path: Path) -> None:
    quotes = make_synth(tmp_path / "q.parquet", kind="quotes", rows=100_000, instruments=3, seed=8)
    bt = run_backtest("mean_reversion", quotes, {"window": 30, "entry_z": 1.0, "qty": 100.0},
                      SessionConfig(batch_size=3_333, order_latency_us=150))  # fmt: skip
    table = pq.read_table(quotes)
    inst = table.column("instrument").to_numpy()
    columns = {name: table.column(name).to_numpy() for name in ("ts_event", "bid_px", "ask_px")}
    by_instrument = {i: {n: c[inst == i] for n, c in columns.items()} for i in np.unique(inst)}
    assert len(bt.fills) > 100
    for f in bt.fills:
        mine = by_instrument[f["instrument"]]
        ts = mine["ts_event"]
        shown = mine["ask_px" if f["side"] > 0 else "bid_px"]
        # The market at the fill's time: the last quote at or before it (one at that very
        # nanosecond may be just after it).
        moment = {np.searchsorted(ts, f["ts"], "left") - 1, np.searchsorted(ts, f["ts"]) - 1}
        assert f["price"] in {shown[k] for k in moment if k >= 0}


def test_cash_plus_positions_equals_the_reported_pnl(tmp_path: Path) -> None:
    quotes = make_synth(tmp_path / "q.parquet", kind="quotes", rows=50_000, instruments=2, seed=9)
    bt = run_backtest("sma_cross", quotes, {"fast": 4, "slow": 12, "long_short": True},
                      SessionConfig(taker_fee_bps=0.5))  # fmt: skip
    f = bt.fills
    summary = write_results(bt, tmp_path / "r")
    cash = -(f["side"] * f["qty"] * f["price"]).sum() - f["fee"].sum()
    marks = 0.0
    for i in np.unique(f["instrument"]):
        m = bt.session.ctx.market[i]
        position = (f["side"] * f["qty"])[f["instrument"] == i].sum()
        marks += position * 0.5 * (m["bid_px"] + m["ask_px"])
    assert abs(summary["pnl"] - (cash + marks)) <= 1e-6 * max(1.0, abs(cash))


def test_latency_jitter_is_seeded_and_independent_of_batching(tmp_path: Path) -> None:
    from tickwise.backtest.results import run_hash

    quotes = make_synth(tmp_path / "q.parquet", kind="quotes", rows=60_000, instruments=2, seed=5)
    params = {"window": 30, "entry_z": 1.0, "qty": 100.0}  # whole lots of every instrument

    def hash_for(seed: int, batch: int) -> str:
        config = SessionConfig(batch_size=batch, order_latency_us=300.0,
                                latency_jitter_us=900.0, latency_seed=seed)  # fmt: skip
        bt = run_backtest("mean_reversion", quotes, params, config)
        assert len(bt.fills) > 50
        return run_hash(bt.orders, bt.fills)

    assert hash_for(1, 65_536) == hash_for(1, 999)
    assert hash_for(1, 65_536) != hash_for(2, 65_536)
