"""A backtest through a generated flash crash: the kill switch halts in the event that crosses
the price-jump threshold, resting orders are cancelled and no automated order follows; the
same market without the crash trades to the end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tickwise.feeds.synth import FlashCrash

from ..conftest import make_synth

TICKWISE = str(Path(sys.executable).with_name("tickwise"))
CRASH = FlashCrash(at_s=120.0, drop_pct=9.0, down_s=20.0, recover_s=60.0)
PARAMS = ["--param", "window=40", "--param", "entry_z=1.5", "--param", "qty=100"]


@pytest.fixture(scope="module")
def markets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("crash")
    common = {"kind": "quotes", "rows": 300_000, "instruments": 2, "seed": 11}
    return {
        "crash": make_synth(folder / "crash.parquet", episodes=(CRASH,), **common),
        "calm": make_synth(folder / "calm.parquet", **common),
    }


def backtest(data: Path, out: Path, *extra: str) -> dict:
    done = subprocess.run([TICKWISE, "backtest", "--strategy", "mean_reversion", "--data",
                           str(data), *PARAMS, *extra, "--out", str(out)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads((out / "summary.json").read_text()) | {"stdout": done.stdout}


def test_the_crash_halts_trading_in_the_event_that_crosses_the_threshold(markets, tmp_path):
    config = tmp_path / "session.toml"
    config.write_text("[killswitch]\nprice_jump_pct = 3.0\nprice_jump_window_ms = 30000\n")
    summary = backtest(markets["crash"], tmp_path / "r", "--config", str(config))
    assert summary["halted"] is True
    assert summary["halt_reason"] == "price_jump"
    assert "HALTED by price_jump" in summary["stdout"]
    data = pq.read_table(markets["crash"])
    ts, recv = data.column("ts_event").to_numpy(), data.column("ts_recv").to_numpy()
    inst, bid, ask = (data.column(c).to_numpy() for c in ("instrument", "bid_px", "ask_px"))
    halt_ts = summary["halt_ts"]
    start = ts[0] + int(CRASH.at_s * 1e9)
    assert start < halt_ts < start + int(CRASH.down_s * 1e9)  # during the fall
    # The halting event is the first whose mid is more than 3 % off its 30 s extremes.
    k = int(np.flatnonzero(ts == halt_ts)[0])
    mine = (inst == inst[k]) & (ts > halt_ts - 30_000_000_000) & (ts <= halt_ts)
    mids = 0.5 * (bid + ask)
    move = max(mids[mine].max() - mids[k], mids[k] - mids[mine].min()) / mids[k] * 100
    assert move > 3.0
    assert summary["halt"]["halt_value"] == pytest.approx(move, rel=0.02)
    orders = pq.read_table(tmp_path / "r" / "orders.parquet")
    status = np.array(orders.column("status").to_pylist())
    sent_ts = orders.column("ts").cast(pa.int64()).to_numpy()
    assert (sent_ts[status == "new"] <= recv[:k].max()).all()  # none from that event on
    # Nor did the strategy try: it trades through `trade_to`, which asks the trading state.
    assert np.count_nonzero((status == "rejected") & (sent_ts > recv[k])) == 0
    # Every unit of every order filled or cancelled: none left working after the halt.
    fills = pq.read_table(tmp_path / "r" / "fills.parquet")
    filled: dict[int, float] = {}
    for oid, qty in zip(*(fills.column(c).to_pylist() for c in ("order_id", "qty")), strict=True):
        filled[oid] = filled.get(oid, 0.0) + qty
    ids, qtys = orders.column("id").to_numpy(), orders.column("qty").to_numpy()
    cancelled = dict(zip(ids[status == "cancelled"].tolist(),
                         qtys[status == "cancelled"].tolist(), strict=True))  # fmt: skip
    for oid, qty in zip(ids[status == "new"].tolist(), qtys[status == "new"].tolist(),
                        strict=True):  # fmt: skip
        assert filled.get(oid, 0.0) + cancelled.get(oid, 0.0) == pytest.approx(qty)


def test_the_same_market_without_the_crash_trades_to_the_end(markets, tmp_path):
    config = tmp_path / "session.toml"
    config.write_text("[killswitch]\nprice_jump_pct = 3.0\nprice_jump_window_ms = 30000\n")
    summary = backtest(markets["calm"], tmp_path / "r", "--config", str(config))
    assert summary["halted"] is False
    assert summary["halt_reason"] is None
    assert "not tripped" in summary["stdout"]
    fills = pq.read_table(tmp_path / "r" / "fills.parquet").column("ts").cast(pa.int64()).to_numpy()
    last = pq.read_table(markets["calm"]).column("ts_event").to_numpy()[-1]
    assert fills.max() > last - 20_000_000_000  # still trading in the last 20 s


def test_bad_risk_settings_are_one_line_and_write_nothing(markets, tmp_path):
    config = tmp_path / "session.toml"
    config.write_text("[risk]\nmax_position = -1\n")
    done = subprocess.run([TICKWISE, "backtest", "--strategy", "mean_reversion", "--data",
                           str(markets["calm"]), "--config", str(config), "--out",
                           str(tmp_path / "r")], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 1
    assert "[risk]" in done.stderr
    assert "max_position must be positive" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_a_research_run_without_the_kill_switch_trades_through_the_crash(markets, tmp_path):
    """`--no-killswitch` (research only): the same crash and thresholds, no halt, and the
    console and summary say the kill switch was off; a live session refuses it."""
    config = tmp_path / "session.toml"
    config.write_text("[killswitch]\nprice_jump_pct = 3.0\nprice_jump_window_ms = 30000\n")
    summary = backtest(markets["crash"], tmp_path / "r", "--config", str(config),
                       "--no-killswitch")  # fmt: skip
    assert summary["halted"] is False
    assert summary["config"]["killswitch"]["enabled"] is False
    assert "OFF: a research run ([killswitch] enabled = false)" in " ".join(
        summary["stdout"].split()
    )
    data = pq.read_table(markets["crash"])
    start = data.column("ts_event").to_numpy()[0] + int((CRASH.at_s + CRASH.down_s) * 1e9)
    fills = pq.read_table(tmp_path / "r" / "fills.parquet").column("ts").cast(pa.int64()).to_numpy()
    assert (fills > start).any()  # it kept trading after the fall
    config.write_text("[killswitch]\nenabled = false\n")
    live = subprocess.run([TICKWISE, "live", "--strategy", "mean_reversion", "--config",
                           str(config), "--journal", str(tmp_path / "j"), "--instruments",
                           "synth:2", "--seconds", "1"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert live.returncode != 0
    assert "a live session always runs with the kill switch" in live.stderr
    assert "Traceback" not in live.stderr
