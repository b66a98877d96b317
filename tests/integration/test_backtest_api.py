"""Backtests through the Python API: bars, hive folders, and what a replay may never do."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tickwise.backtest.replay import run_backtest
from tickwise.backtest.results import write_results
from tickwise.engine.config import SessionConfig
from tickwise.engine.limits import RiskLimits
from tickwise.engine.schemas import REASON_NAMES, STATUS_NEW
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


def test_statistics_of_daily_bars_are_those_of_the_daily_pnl(tmp_path: Path) -> None:
    """Twenty years of daily bars (one per weekday): the Sharpe in summary.json is the one a
    quant computes by hand from equity.parquet, the daily PnL changes with sqrt(252) (it
    read 27.5 where that gave 0.18, annualising each equity step as a second of trading)."""
    import polars as pl

    from tickwise.engine.schemas import BAR_DTYPE

    from ..conftest import simple_instruments, write_rows

    days = pl.date_range(dt.date(2004, 1, 1), dt.date(2023, 12, 31), "1d", eager=True)
    days = days.filter(days.dt.weekday() <= 5)
    n = len(days)
    rng = np.random.default_rng(4)
    close = np.round(100 * np.exp(np.cumsum(rng.normal(0.0002, 0.011, n))), 2)
    bars = np.zeros(n, BAR_DTYPE)
    bars["ts_event"] = (days.cast(pl.Datetime("ns")).to_numpy().astype(np.int64)
                        + 21 * 3_600_000_000_000)  # the close, 21:00 UTC  # fmt: skip
    bars["open"] = np.concatenate([[close[0]], close[:-1]])
    bars["high"] = np.maximum(bars["open"], close) + 0.01
    bars["low"] = np.minimum(bars["open"], close) - 0.01
    bars["close"] = close
    bars["volume"] = 1_000.0
    data = write_rows(tmp_path / "daily.parquet", "bars", bars, simple_instruments(1))
    bt = run_backtest("sma_cross", data, {"fast": 10, "slow": 50, "qty": 100.0},
                      SessionConfig(capital=100_000.0))  # fmt: skip
    summary = write_results(bt, tmp_path / "result")
    stats = summary["statistics"]
    assert (stats["period"], stats["calendar"]) == ("1d", "weekdays")
    assert stats["periods_per_year"] == 252
    # By hand: flat at the first bar, the last PnL of each UTC day in equity.parquet, and the
    # final PnL at the last bar.
    equity = pl.read_parquet(tmp_path / "result" / "equity.parquet").with_columns(
        pl.col("ts").dt.epoch("ns")
    )
    first_ts, last_ts = int(bars["ts_event"][0]), int(bars["ts_event"][-1])
    curve = pl.concat([
        pl.DataFrame({"ts": [first_ts], "pnl": [0.0]}),
        equity.select("ts", "pnl"),
        pl.DataFrame({"ts": [last_ts], "pnl": [summary["pnl"]]}),
    ])  # fmt: skip
    daily = (curve.with_columns(day=pl.col("ts") // 86_400_000_000_000)
             .group_by("day", maintain_order=True).agg(pl.col("pnl").last()))  # fmt: skip
    value = 100_000.0 + np.concatenate([[0.0], daily["pnl"].to_numpy()])
    r = value[1:] / value[:-1] - 1
    assert len(r) == stats["returns"] == n
    assert summary["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * np.sqrt(252), rel=1e-9)
    assert abs(summary["sharpe"]) < 3  # a random walk has no edge worth 27
    years = (last_ts - first_ts) / (365.25 * 86_400e9)
    assert years > 19.9
    cagr = (value[-1] / 100_000.0) ** (1 / years) - 1
    assert stats["cagr"]["value"] == pytest.approx(100 * cagr, rel=1e-9)
    report = (tmp_path / "result" / "report.html").read_text()
    assert "Sharpe (1d returns on capital 100,000, x252/yr, weekdays calendar)" in report
    # The replay rate leaves out compiling the loop (it counted it: 13 k events/s reported
    # for a run whose replay took one second after a minute of compiling).
    assert summary["replay_s"] == pytest.approx(summary["wall_s"] - summary["warmup_s"])
    assert summary["events_per_sec"] == pytest.approx(n / summary["replay_s"])


def test_a_history_without_rows_is_an_error(tmp_path: Path) -> None:
    from tickwise.engine.errors import TickwiseError
    from tickwise.engine.schemas import QUOTE_DTYPE

    from ..conftest import simple_instruments, write_rows

    data = write_rows(tmp_path / "empty.parquet", "quotes", np.zeros(0, QUOTE_DTYPE),
                      simple_instruments(1))  # fmt: skip
    with pytest.raises(TickwiseError, match="empty.parquet holds no rows: nothing to replay"):
        run_backtest("mean_reversion", data)


def test_results_read_in_polars_and_pandas_with_names_symbols_and_times(tmp_path: Path) -> None:
    """No lookup table needed: sides, statuses, reasons, liquidity and the strategy by name,
    the symbol beside each instrument id, times as UTC timestamps."""
    import pandas as pd
    import polars as pl

    quotes = make_synth(tmp_path / "q.parquet", kind="quotes", rows=20_000, instruments=3, seed=8)
    throttled = SessionConfig(risk=RiskLimits(max_orders_per_sec=1))  # for refused orders too
    bt = run_backtest("mean_reversion", quotes, {"window": 30, "entry_z": 1.0}, throttled)
    write_results(bt, tmp_path / "r")
    symbols = {inst.id: inst.symbol for inst in bt.history.instruments}
    orders = pl.read_parquet(tmp_path / "r" / "orders.parquet")
    fills = pd.read_parquet(tmp_path / "r" / "fills.parquet")
    assert orders.schema["ts"] == pl.Datetime("ns", "UTC")
    assert str(fills["ts"].dtype) == "datetime64[ns, UTC]"
    assert set(orders["side"].cast(pl.String)) == {"buy", "sell"}
    assert set(orders["strategy"].cast(pl.String)) == {"mean_reversion"}
    assert {"new", "rejected"} <= set(orders["status"].cast(pl.String))
    rejected = orders.filter(pl.col("status") == "rejected")
    assert set(rejected["reason"].cast(pl.String)) <= set(REASON_NAMES.values()) - {"none"}
    assert set(fills["liquidity"].astype(str)) <= {"maker", "taker"}
    for frame in (orders.to_pandas(), fills):
        assert (frame["symbol"].astype(str) == frame["instrument"].map(symbols)).all()
    # The same rows as the engine's records, in the same order.
    assert orders["id"].to_list() == bt.orders["id"].tolist()
    first = pd.Timestamp(int(bt.fills["ts"][0]), unit="ns", tz="UTC")
    assert fills["ts"].iloc[0] == first
    assert fills["side"].iloc[0] == ("buy" if bt.fills["side"][0] > 0 else "sell")


def test_a_crypto_lot_of_1e_8_trades_whole_lots_and_is_exactly_flat(tmp_path: Path) -> None:
    """mean_reversion with qty=0.01 on an instrument quoted in lots of 1e-8: in floats,
    positions kept residue (3.5e-18) and trade_to chased it with orders of 1e-17, refused
    as bad_qty by the thousand until the reject rate halted the run."""
    from tickwise.backtest.stats import fill_lots
    from tickwise.engine.instruments import Instrument, Instruments
    from tickwise.feeds.store import HistoryWriter
    from tickwise.feeds.synth import Market, SynthConfig

    market = Market(SynthConfig(kind="quotes", rows=300_000, instruments=1, seed=11))
    coin = Instruments([Instrument(0, "BTC-USD", 0.01, 1e-8)])
    path = tmp_path / "btc.parquet"
    with HistoryWriter(path, "quotes", coin) as writer:
        for batch in market.batches():
            writer.write(batch)
    bt = run_backtest("mean_reversion", path, {"qty": 0.01, "allow_short": True})
    summary = write_results(bt, tmp_path / "result")
    assert summary["rejects_by_reason"] == {}
    assert not summary["halted"]
    assert len(bt.fills) > 100
    lots = fill_lots(bt.fills, np.array([1e-8]))
    assert np.all(lots % 1_000_000 == 0)  # every fill a whole multiple of 0.01
    held = np.cumsum(bt.fills["side"].astype(np.int64) * lots)
    assert np.count_nonzero(held == 0) > 10  # flat again and again,
    assert bt.session.ctx.portfolio[0]["lots"] == held[-1]  # and the engine agrees exactly


def test_asking_trade_to_for_less_than_a_lot_sends_nothing_and_is_said(tmp_path: Path) -> None:
    """mean_reversion's default qty of 1 on SYN1, whose lot is 100: nothing to send, once
    refused by the thousand as bad_qty; now nothing is sent, and the summary says why."""
    quotes = make_synth(tmp_path / "q.parquet", kind="quotes", rows=20_000, instruments=2, seed=8)
    bt = run_backtest("mean_reversion", quotes, {"window": 30, "entry_z": 1.0})
    summary = write_results(bt, tmp_path / "r")
    assert not np.any(bt.orders["instrument"] == 1)  # (lot 100: qty 1 is no lot)
    assert np.any(bt.orders["instrument"] == 0)
    assert summary["rejects_by_reason"] == {}
    assert summary["under_lot"]["count"] > 0
    assert summary["under_lot"]["instrument"] == "SYN1"
    said = [w for w in summary["warnings"] if w.startswith("trade_to was asked")]
    assert len(said) == 1
    assert "SYN1, lot 100" in said[0]
