"""`tickwise backtest` end to end: a generated multi-instrument file in, every output checked."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tickwise.engine.schemas import EQUITY_DTYPE, FILL_DTYPE, ORDER_DTYPE

from ..conftest import make_synth

TICKWISE = str(Path(sys.executable).with_name("tickwise"))
SUMMARY_KEYS = {
    "events", "orders", "fills", "rejects", "pnl", "fees", "sharpe", "max_drawdown", "trades",
    "halted", "halt_reason", "run_hash", "events_per_sec", "wall_s", "params", "data",
    "replay_s", "warmup_s", "statistics", "rejects_by_reason",
}  # fmt: skip


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([TICKWISE, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synth(tmp_path_factory.mktemp("bt") / "q.parquet", kind="quotes", rows=200_000,
                      instruments=3, seed=4)  # fmt: skip


def test_backtest_writes_every_result_file(tmp_path: Path, data: Path) -> None:
    out = tmp_path / "result"
    config = tmp_path / "throttled.toml"  # (for refused orders to report too)
    config.write_text("[risk]\nmax_orders_per_sec = 2\n")
    done = run("backtest", "--strategy", "mean_reversion", "--data", str(data),
               "--param", "window=50", "--param", "entry_z=1.5", "--config", str(config),
               "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "run_hash" in done.stdout
    assert "events/s" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) >= SUMMARY_KEYS
    assert summary["events"] == 200_000
    assert summary["params"]["window"] == 50
    assert summary["params"]["entry_z"] == 1.5
    assert summary["data"]["rows"] == 200_000
    orders = pq.read_table(out / "orders.parquet")
    fills = pq.read_table(out / "fills.parquet")
    equity = pq.read_table(out / "equity.parquet")
    # Read as written: times in UTC, codes by name, symbols and the strategy by name.
    for table, dtype in ((orders, ORDER_DTYPE), (fills, FILL_DTYPE), (equity, EQUITY_DTYPE)):
        assert table.schema.field("ts").type == pa.timestamp("ns", tz="UTC")
        assert set(dtype.names) <= set(table.schema.names)
    for name in ("side", "order_type", "tif", "status", "reason", "strategy", "symbol"):
        assert pa.types.is_dictionary(orders.schema.field(name).type), name
    assert set(orders.column("strategy").to_pylist()) == {"mean_reversion"}
    status = np.array(orders.column("status").to_pylist())
    assert summary["orders"] == int((status == "new").sum()) > 0
    assert summary["fills"] == fills.num_rows > 0
    # The equity curve is sampled each second of event time and ends near the final PnL.
    ts = equity.column("ts").cast(pa.int64()).to_numpy()
    assert (np.diff(ts) > 0).all()
    assert (ts % 1_000_000_000 == 0).all()
    # Fills only at prices the market showed: every fill is one of the book's best prices.
    quotes = pq.read_table(data)
    shown = set(quotes.column("bid_px").to_pylist()) | set(quotes.column("ask_px").to_pylist())
    assert set(fills.column("price").to_pylist()) <= shown
    report = (out / "report.html").read_text()
    assert "Plotly.newPlot" in report
    assert summary["run_hash"] in report
    assert "hit rate" in report
    assert (out / "plotly.min.js").stat().st_size > 1_000_000  # the report opens offline
    # What happened is said: rejects by reason (orders beyond 2 a second are refused), and
    # statistics a run of 200 s cannot have, with why.
    reasons = np.array(orders.column("reason").to_pylist())[status == "rejected"]
    names, counts = np.unique(reasons, return_counts=True)
    by_reason = {str(r): int(n) for r, n in zip(names, counts, strict=True)}
    assert summary["rejects_by_reason"] == by_reason
    assert sum(by_reason.values()) == summary["rejects"] > 0
    text = " ".join(done.stdout.split())  # (however the table wrapped)
    for name, n in by_reason.items():
        assert f"{name} {n:,}" in text
        assert f"{name} {n:,}" in report
    assert summary["sharpe"] is None
    why = "needs at least 2 1d returns; the run has 1"
    assert summary["statistics"]["sharpe"]["reason"] == why
    assert f"n/a ({why})" in text
    assert "warning: no fees and no order latency" in text  # (the defaults)
    assert "no fees and no order latency" in report
    # The figure handed to Plotly.newPlot: four panels on one time axis, inside the data's span.
    figure = json.loads(report.split("({", 1)[1].rsplit("});</script>", 1)[0].join("{}"))
    first_ms, last_ms = (summary["data"][k] / 1e6 for k in ("ts_first", "ts_last"))
    assert {t["yaxis"] for t in figure["data"]} == {"y", "y2", "y3", "y4"}
    for trace in figure["data"]:
        assert len(trace["x"]) == len(trace["y"]) > 0, trace["name"]
        assert first_ms <= min(trace["x"]) <= max(trace["x"]) <= last_ms, trace["name"]
    for axis in ("yaxis", "yaxis2", "yaxis3", "yaxis4"):
        low, high = figure["layout"][axis]["domain"]
        assert 0.0 <= low < high <= 1.0


def test_run_hash_is_the_same_for_any_batch_size(tmp_path: Path, data: Path) -> None:
    hashes = set()
    for batch in ("65536", "777", "50"):
        out = tmp_path / f"r{batch}"
        done = run("backtest", "--strategy", "sma_cross", "--data", str(data), "--param",
                   "long_short=true", "--batch-size", batch, "--out", str(out))  # fmt: skip
        assert done.returncode == 0, done.stderr
        hashes.add(json.loads((out / "summary.json").read_text())["run_hash"])
        assert (out / "fills.parquet").exists()
    assert len(hashes) == 1


def test_config_file_sets_fees_and_params(tmp_path: Path, data: Path) -> None:
    config = tmp_path / "bt.toml"
    config.write_text("[backtest]\ntaker_fee_bps = 1.0\n[params]\nwindow = 60\n")
    out = tmp_path / "r"
    done = run("backtest", "--strategy", "mean_reversion", "--data", str(data), "--config",
               str(config), "--param", "entry_z=1.0", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["params"]["window"] == 60
    assert summary["config"]["taker_fee_bps"] == 1.0
    fills = pq.read_table(out / "fills.parquet")
    notional = (fills.column("price").to_numpy() * fills.column("qty").to_numpy()).sum()
    assert summary["fees"] == pytest.approx(notional * 1e-4)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategy", "nope"], "unknown strategy 'nope'"),
        (["--strategy", "mean_reversion", "--param", "window=1"], "window=1 is below its minimum"),
        (["--strategy", "mean_reversion", "--param", "window"], "must look like name=value"),
        (["--strategy", "sma_cross", "--batch-size", "0"], "batch_size must be in 1..10000000"),
        (
            ["--strategy", "sma_cross", "--start", "2024-01-03", "--end", "2024-01-02"],
            "--start (2024-01-03T00:00:00+00:00) must be before --end (2024-01-02T00:00:00+00:00)",
        ),
    ],
)
def test_mistakes_are_one_line_and_write_nothing(tmp_path, data, args, message) -> None:
    out = tmp_path / "r"
    done = run("backtest", "--data", str(data), "--out", str(out), *args)
    assert done.returncode == 1
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(
    ("line", "message"),
    [("capital = -5", "capital must be a positive amount, got -5"),
     ('returns_period = "2d"', "returns_period must be one of 1d, 1w, 1mo, got '2d'"),
     ('calendar = "mars"', "calendar must be one of auto, weekdays, 24/7, got 'mars'")],
)  # fmt: skip
def test_a_bad_backtest_setting_names_its_file_and_table(tmp_path, data, line, message) -> None:
    config = tmp_path / "bt.toml"
    config.write_text(f"[backtest]\n{line}\n")
    done = run("backtest", "--strategy", "sma_cross", "--data", str(data), "--config",
               str(config), "--out", str(tmp_path / "r"))  # fmt: skip
    assert done.returncode == 1
    assert f"{config}: [backtest]: {message}" in done.stderr
    assert not (tmp_path / "r").exists()


def test_a_strategy_refuses_data_it_does_not_trade_on(tmp_path: Path) -> None:
    trades = make_synth(tmp_path / "t.parquet", kind="trades", rows=1_000, instruments=2, seed=1)
    done = run("backtest", "--strategy", "mean_reversion", "--data", str(trades),
               "--out", str(tmp_path / "r"))  # fmt: skip
    assert done.returncode == 1
    assert "mean_reversion trades on quotes data" in done.stderr
    assert "holds rows of trades" in done.stderr


def test_an_existing_result_is_kept_without_overwrite(tmp_path: Path, data: Path) -> None:
    out = tmp_path / "r"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    done = run("backtest", "--strategy", "sma_cross", "--data", str(data), "--out", str(out))
    assert done.returncode == 1
    assert "already exists; pass --overwrite" in done.stderr
    assert (out / "keep.txt").read_text() == "mine"


def test_a_halt_is_said_with_its_cause_and_what_to_change(tmp_path: Path, data: Path) -> None:
    """A strategy that raises: the console and report.html say HALTED by strategy_fault with
    the exception and the row, and which setting governs that trigger (the console said
    only `HALTED by strategy_fault (0 past 0)`)."""
    path = tmp_path / "raising.py"
    path.write_text(
        "from tickwise import Strategy, kernel\n"
        "@kernel\n"
        "def on_quote(ctx, q, st, p):\n"
        "    if q.seq == 500:\n"
        "        raise ValueError('the model broke')\n"
        "class Raising(Strategy):\n"
        "    on_quote = on_quote\n"
    )
    out = tmp_path / "result"
    done = run("backtest", "--strategy", f"{path}:Raising", "--data", str(data),
               "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["halt_reason"] == "strategy_fault"
    report = (out / "report.html").read_text()
    for shown in (text, " ".join(report.split())):
        assert "HALTED by strategy_fault" in shown
        assert "ValueError: the model broke (at row" in shown
        assert "[killswitch] strategy_faults = false" in shown
        assert "0 past 0" not in shown


def test_a_run_whose_orders_are_mostly_refused_says_so() -> None:
    from tickwise.backtest.results import warnings
    from tickwise.engine.config import SessionConfig

    summary = {
        "orders": 100,
        "rejects": 4_975,
        "rejects_by_reason": {"bad_qty": 4_900, "halted": 75},
    }
    said = warnings(summary, SessionConfig(taker_fee_bps=0.5))
    assert said == ["4,975 of 5,075 orders were refused, most as bad_qty (4,900): see the "
                    "rejects by reason"]  # fmt: skip
    summary = {"orders": 100, "rejects": 100, "rejects_by_reason": {"bad_qty": 100}}
    assert warnings(summary, SessionConfig(order_latency_us=100.0)) == []


def test_start_and_end_replay_only_the_rows_inside(tmp_path: Path, data: Path) -> None:
    ts = pq.read_table(data, columns=["ts_event"]).column("ts_event").to_numpy()
    start, end = int(ts[50_000]), int(ts[120_000])
    iso = dt.datetime.fromtimestamp(start // 1_000_000_000, tz=dt.UTC).isoformat()
    start = (start // 1_000_000_000) * 1_000_000_000  # (an ISO time to the second)
    out = tmp_path / "window"
    done = run("backtest", "--strategy", "mean_reversion", "--data", str(data), "--start", iso,
               "--end", str(end), "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    inside = (ts >= start) & (ts < end)
    assert summary["events"] == int(inside.sum())
    assert summary["data"]["start"] == start
    assert summary["data"]["end"] == end
    assert summary["data"]["first_event"] == int(ts[inside][0])
    assert summary["data"]["last_event"] == int(ts[inside][-1])
    orders = pq.read_table(out / "orders.parquet").column("ts").cast(pa.int64()).to_numpy()
    assert ((orders >= start) & (orders < end + 1_000_000_000)).all()
    empty = run("backtest", "--strategy", "mean_reversion", "--data", str(data),
                "--start", "2031-01-01", "--out", str(tmp_path / "empty"))  # fmt: skip
    assert empty.returncode != 0
    assert "holds no rows in the window [2031-01-01T00:00:00+00:00, open)" in empty.stderr
    assert "Traceback" not in empty.stderr
    assert not (tmp_path / "empty").exists()
    bad = run("backtest", "--strategy", "mean_reversion", "--data", str(data),
              "--start", "yesterday", "--out", str(tmp_path / "bad"))  # fmt: skip
    assert bad.returncode == 2
    assert "'yesterday' is neither nanoseconds since the epoch nor an ISO 8601 time" in bad.stderr


def test_event_times_read_as_utc_unless_a_zone_is_given() -> None:
    from tickwise.cli.common import event_time

    assert event_time("2024-01-02") == 1_704_153_600_000_000_000
    assert event_time("2024-01-02T01:00:00+01:00") == 1_704_153_600_000_000_000
    assert event_time("2024-01-02T00:00:00.000001") == 1_704_153_600_000_001_000
    assert event_time("1704153600000000007") == 1_704_153_600_000_000_007
