"""Sweeps between real processes: the same table for any worker count, executor or
interruption; each trial the backtest it names; failures kept as rows."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tickwise as tw
from tickwise.backtest.results import run_hash
from tickwise.backtest.sweep import PARAM

from .processes import TICKWISE

DAY = 86_400_000_000_000
# Measured per trial (times, memory): the only columns that differ from run to run.
MEASURED = ("wall_s", "setup_s", "peak_rss_mib")

# A strategy that trades every `every` quotes and can be made to fail on purpose: its
# kernel raises with fail=1 (a strategy fault: the kill switch halts the trial), its
# Python raises with fail=2 (the trial fails), every=13 is refused by check_params (which
# raises at every=17), and a worker starting the trial every=30 kills itself while the
# marker file says so ("pid:times", pid the sweep's own process, spared).
FRAGILE = '''
import datetime as dt
import json
import os
import signal
import time
from pathlib import Path

import tickwise as tw

MARKER = Path(__file__).with_name("kill-once")


@tw.kernel
def on_quote(ctx, q, st, p):
    i = q.instrument
    st.seen[i] += 1
    if p.fail == 1 and st.seen[i] == 100:
        raise ValueError("fail=1 fails at the 100th quote")
    if st.seen[i] % p.every == 0:
        if tw.position(ctx, i) <= 0:
            tw.buy(ctx, i, tw.lot_size(ctx, i), q.ask_px, tw.IOC)
        else:
            tw.sell(ctx, i, tw.position(ctx, i))


class Fragile(tw.Strategy):
    """Buys and sells back every `every` quotes; fails when told to."""

    params = {
        "every": tw.Param(50, 1, 100_000, "quotes between decisions"),
        "fail": tw.Param(0, 0, 2, "1: the kernel raises; 2: new_state raises"),
        "nap_ms": tw.Param(0.0, 0.0, 600_000.0, "sleep before each trial (ms)"),
    }
    state = {"seen": tw.PerInstrument(int)}
    kinds = ("quotes",)
    on_quote = on_quote

    @classmethod
    def check_params(cls, params):
        if params["every"] == 17:
            raise KeyError("check_params itself fails at every=17")
        return "every=13 is unlucky" if params["every"] == 13 else None

    @classmethod
    def new_state(cls, n_instruments, params, tick_sizes=None):
        time.sleep(params["nap_ms"] / 1000)
        if params["fail"] == 2:
            raise ZeroDivisionError("fail=2 fails in Python")
        if params["every"] == 30 and MARKER.exists():
            pid, _, times = MARKER.read_text().partition(":")
            if pid != str(os.getpid()):  # (not the sweep's own process, warming up)
                left = int(times or 1) - 1
                MARKER.write_text(f"{pid}:{left}") if left else MARKER.unlink()
                os.kill(os.getpid(), signal.SIGKILL)
        return super().new_state(n_instruments, params, tick_sizes)
'''


def fragile(folder: Path) -> str:
    path = folder / "fragile.py"
    path.write_text(textwrap.dedent(FRAGILE))
    return f"{path}:Fragile"


def results(table: pa.Table) -> list[dict]:
    """The table without the measured times, as rows."""
    return table.drop_columns(list(MEASURED)).to_pylist()


def test_a_grid_is_the_same_for_one_and_two_workers_and_each_trial_is_its_backtest(
    tmp_path: Path, quotes_file: Path
) -> None:
    space = {"window": "20:60:20", "entry_z": "1.5,2.5"}
    fixed = {"exit_z": 2.0, "qty": 100.0}  # entry_z 1.5 < exit_z: check_params refuses it
    one = tw.sweep("mean_reversion", quotes_file, space, params=fixed, workers=1,
                   objectives=["pnl"])  # fmt: skip
    two = tw.sweep("mean_reversion", quotes_file, space, params=fixed, workers=2,
                   out=tmp_path / "two", objectives=["pnl"])  # fmt: skip
    assert results(one.table) == results(two.table)
    assert pq.read_table(tmp_path / "two" / "trials.parquet").equals(two.table)
    report = (tmp_path / "two" / "report.html").read_text()
    assert "pnl (max) over window and entry_z" in report  # the heatmap
    assert '"type":"parcoords"' in report
    assert "<script src=" not in report  # one file: Plotly inlined
    rows = one.table.to_pylist()
    assert [(r[PARAM + "window"], r[PARAM + "entry_z"]) for r in rows] == [
        (20, 1.5), (20, 2.5), (40, 1.5), (40, 2.5), (60, 1.5), (60, 2.5)]  # fmt: skip
    invalid = [r for r in rows if r[PARAM + "entry_z"] == 1.5]
    assert all(r["status"] == "invalid" and "exit_z" in r["reason"] for r in invalid)
    assert all(r["run_hash"] is None and r["rank"] is None for r in invalid)
    ran = [r for r in rows if r["status"] == "ok"]
    assert len(ran) == 3
    for r in ran:  # the trial is the backtest of its parameters, to the byte
        bt = tw.run_backtest("mean_reversion", quotes_file,
                             {**fixed, "window": r[PARAM + "window"], "entry_z": 2.5})  # fmt: skip
        assert r["run_hash"] == run_hash(bt.orders, bt.fills)
        assert r["fills"] == len(bt.fills) > 0
    by_pnl = sorted(ran, key=lambda r: (-r["pnl"], r["trial"]))
    assert [r["rank"] for r in by_pnl] == [1, 2, 3]
    assert one.best["trial"] == by_pnl[0]["trial"]


def test_searches_with_a_seed_give_fixed_tables_whatever_the_workers(
    tmp_path: Path, quotes_file: Path
) -> None:
    space = {"window": "10:200", "entry_z": "1:3:0.25", "exit_z": "0,0.5,1"}
    runs = {
        (search, workers): tw.sweep("mean_reversion", quotes_file, space, search=search,
                                    trials=10, seed=4, batch=4, workers=workers,
                                    params={"qty": 100.0}, objectives=["pnl"])
        for search in ("random", "tpe") for workers in (1, 2)
    }  # fmt: skip
    for search in ("random", "tpe"):
        assert results(runs[search, 1].table) == results(runs[search, 2].table)
        rows = runs[search, 1].table.to_pylist()
        assert [r["trial"] for r in rows] == list(range(10))
        for r in rows:
            assert 10 <= r[PARAM + "window"] <= 200
            assert r[PARAM + "entry_z"] in {1 + 0.25 * k for k in range(9)}  # on the step
            assert r[PARAM + "exit_z"] in (0.0, 0.5, 1.0)
    other = tw.sweep("mean_reversion", quotes_file, space, search="random", trials=10, seed=5,
                     workers=1, params={"qty": 100.0}, objectives=["pnl"])  # fmt: skip
    assert results(other.table) != results(runs["random", 1].table)


def test_a_trial_that_fails_is_a_row_and_the_sweep_goes_on(
    tmp_path: Path, quotes_file: Path
) -> None:
    spec = fragile(tmp_path)
    swept = tw.sweep(spec, quotes_file, {"every": "12,13,14", "fail": "0,1,2"}, workers=2,
                     objectives=["fills"], out=tmp_path / "out")  # fmt: skip
    rows = {(r[PARAM + "every"], r[PARAM + "fail"]): r for r in swept.table.to_pylist()}
    assert len(rows) == 9
    assert {rows[13, f]["status"] for f in (0, 1, 2)} == {"invalid"}
    assert rows[13, 0]["reason"] == "every=13 is unlucky"
    for every in (12, 14):
        assert rows[every, 0]["status"] == "ok"
        assert rows[every, 0]["fills"] > 0
        assert rows[every, 1]["status"] == "halted"
        assert "strategy_fault" in rows[every, 1]["reason"]
        assert "100th" in rows[every, 1]["reason"]
        assert rows[every, 1]["run_hash"] is not None  # (its numbers up to the halt)
        assert rows[every, 2]["status"] == "failed"
        assert rows[every, 2]["reason"].startswith("ZeroDivisionError: fail=2 fails in Python")
    assert swept.best["trial"] in (rows[12, 0]["trial"], rows[14, 0]["trial"])
    assert (tmp_path / "out" / "best.toml").exists()


def test_a_worker_killed_during_a_trial_loses_nothing(tmp_path: Path, quotes_file: Path) -> None:
    spec = fragile(tmp_path)
    space = {"every": "10,20,30,40,50"}
    calm = tw.sweep(spec, quotes_file, space, workers=2, objectives=["fills"])
    marker = tmp_path / "kill-once"
    marker.write_text(str(os.getpid()))  # (the sweep's own process warms up: not that one)
    hit = tw.sweep(spec, quotes_file, space, workers=2, objectives=["fills"])
    assert not marker.exists()  # a worker did die running every=30
    assert results(hit.table) == results(calm.table)
    assert {r["status"] for r in hit.table.to_pylist()} == {"ok"}


def test_a_trial_whose_workers_keep_dying_is_a_failed_row_tried_again_next_time(
    tmp_path: Path, quotes_file: Path
) -> None:
    spec = fragile(tmp_path)
    marker = tmp_path / "kill-once"
    marker.write_text(f"{os.getpid()}:2")
    out = tmp_path / "out"
    space = {"every": "20,30,17"}
    hit = tw.sweep(spec, quotes_file, space, workers=1, objectives=["fills"], out=out)
    assert not marker.exists()  # two workers died running every=30
    rows = {r[PARAM + "every"]: r for r in hit.table.to_pylist()}
    assert rows[20]["status"] == "ok"
    assert rows[30]["status"] == "failed"
    assert rows[30]["reason"].startswith("the worker running it died 2 times")
    assert rows[17]["status"] == "failed"
    assert (
        rows[17]["reason"]
        == "check_params raised KeyError: 'check_params itself fails at every=17'"
    )
    again = tw.sweep(spec, quotes_file, space, workers=1, objectives=["fills"], out=out)
    assert again.ran == 1  # only every=30 (a lost worker is no result)
    assert again.table.to_pylist()[1]["status"] == "ok"


def test_a_search_goes_on_when_trials_have_no_value_of_the_objective(quotes_file: Path) -> None:
    swept = tw.sweep("mean_reversion", quotes_file, {"window": "10:100"}, search="tpe",
                     trials=6, batch=3, params={"qty": 100.0}, workers=1)  # fmt: skip
    rows = swept.table.to_pylist()
    assert [r["status"] for r in rows] == ["ok"] * 6
    assert all(r["sharpe"] is None for r in rows)  # (one day of data: no daily returns)
    assert swept.best is None
    assert "have no sharpe" in swept.info["no_best"]


def _stored(store: Path) -> int:
    try:  # (closed at once: the last connection to close checkpoints the store's WAL)
        with closing(sqlite3.connect(store, timeout=1)) as db:
            return db.execute("SELECT count(*) FROM trials").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_a_sweep_killed_halfway_resumes_to_the_same_table(
    tmp_path: Path, quotes_file: Path
) -> None:
    spec = fragile(tmp_path)
    args = [TICKWISE, "sweep", "--strategy", spec, "--data", str(quotes_file),
            "--grid", "every=10:120:10", "--param", "nap_ms=150", "--workers", "1",
            "--objective", "fills"]  # fmt: skip
    out = tmp_path / "killed"
    proc = subprocess.Popen([*args, "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while _stored(out / "trials.sqlite") < 4 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        workers = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    gone = time.monotonic() + 30  # its workers do not outlive it
    while any(Path(f"/proc/{w}").exists() for w in workers) and time.monotonic() < gone:
        time.sleep(0.05)
    assert workers
    assert not [w for w in workers if Path(f"/proc/{w}/status").exists()
                and "zombie" not in Path(f"/proc/{w}/status").read_text()]  # fmt: skip
    done = _stored(out / "trials.sqlite")
    assert 4 <= done < 12
    assert not (out / "trials.parquet").exists()
    again = subprocess.run([*args, "--out", str(out)], capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert f"run now {12 - done} " in again.stdout  # the stored trials were not run again
    whole = subprocess.run([*args, "--out", str(tmp_path / "whole")], capture_output=True,
                           text=True, timeout=300)  # fmt: skip
    assert whole.returncode == 0, whole.stderr
    resumed = pq.read_table(out / "trials.parquet")
    assert results(resumed) == results(pq.read_table(tmp_path / "whole" / "trials.parquet"))
    assert resumed.num_rows == 12


def test_best_toml_replays_the_best_trial(tmp_path: Path, quotes_file: Path) -> None:
    out = tmp_path / "sweep"
    done = subprocess.run(
        [TICKWISE, "sweep", "--strategy", "mean_reversion", "--data", str(quotes_file),
         "--grid", "window=20,40", "--param", "qty=100", "--objective", "pnl",
         "--workers", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    best = next(r for r in pq.read_table(out / "trials.parquet").to_pylist() if r["rank"] == 1)
    replay = subprocess.run(  # (the strategy: best.toml's [live] strategy)
        [TICKWISE, "backtest", "--config", str(out / "best.toml"), "--data", str(quotes_file),
         "--out", str(tmp_path / "bt")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    summary = json.loads((tmp_path / "bt" / "summary.json").read_text())
    assert summary["run_hash"] == best["run_hash"]
    assert summary["params"]["window"] == best[PARAM + "window"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--grid", "windw=1:3:1"], "mean_reversion has no parameter 'windw' to sweep"),
        (["--grid", "window=10:50"], "a grid needs every value: window is a range"),
        (["--grid", "window=10:50:10", "--param", "window=3"], "window: both --param and --grid"),
        (["--grid", "window=1:50:10"], "window=1:50:10: parameter window=1 is below its minimum"),
        (["--grid", "window=1:100:50"], "window=1:100:50: parameter"),  # (no emoji of :100:)
        (["--grid", "window=50:10:10"], "the range must go up"),
        (["--grid", "entry_z=1:2:0"], "the step must be above zero"),
        (["--grid", "window=10:20:2.5"], "window is a whole number"),
        (["--grid", "window=10,20", "--objective", "sharp"], "'sharp' is not a statistic"),
        (["--grid", "window=10,20", "--sampler", "tpe"], "--sampler goes with --trials"),
        (["--grid", "window=10:20", "--trials", "0"], "needs a number of trials (at least 1)"),
        (["--grid", "window=10,20", "--workers", "0"], "--workers must be at least 1"),
        (
            ["--grid", "window=10,20", "--workers", "100000"],
            "--workers 100000: this machine gives this process",
        ),
        (["--grid", "window=10,20", "--trial-timeout", "0"], "--trial-timeout must be a number"),
        (["--grid", "window=10,20", "--train", "1s", "--test", "0.01s"], "folds; at most 1,000"),
        (["--grid", "window=10,20", "--folds", "5000"], "--folds must be from 2 to 1,000"),
        (
            ["--grid", "window=10,20", "--executor", "ray", "--address", "127.0.0.1:9"],
            "--address 127.0.0.1:9: no Ray answers there",
        ),
        (["--grid", "entry_z=1:2:nan"], "a:b:step needs three finite numbers"),
        (["--grid", "entry_z=1:2:1e-99999999"], "more than 10,000,000 values"),
        (
            ["--grid", "window=2:1000000:1", "--grid", "entry_z=0:100:0.01"],
            "a grid of 10,000,989,999 points; at most 10,000,000",
        ),
        (["--grid", "window=10,20", "--start", "9999-12-31"], "beyond what nanoseconds"),
        (["--grid", "window=10,99999999999999999999"], "does not fit 64 bits"),
    ],
)
def test_a_mistyped_sweep_is_one_line_naming_it(
    tmp_path: Path, quotes_file: Path, args: list[str], says: str
) -> None:
    done = subprocess.run(
        [TICKWISE, "sweep", "--strategy", "mean_reversion", "--data", str(quotes_file), *args,
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    assert says in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr


def test_a_sweep_without_a_best_says_why_and_what_to_change(
    tmp_path: Path, quotes_file: Path
) -> None:
    args = [TICKWISE, "sweep", "--strategy", "mean_reversion", "--data", str(quotes_file),
            "--grid", "window=10,20", "--param", "qty=100", "--workers", "1"]  # fmt: skip
    done = subprocess.run([*args, "--out", str(tmp_path / "day")], capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert ("no best trial, so no best.toml: 2 of the 2 trials that ran to the end have no "
            "sharpe: needs at least 2 1d returns; the run has 1") in done.stdout  # fmt: skip
    assert not (tmp_path / "day" / "best.toml").exists()
    stale = tmp_path / "stale.toml"
    stale.write_text("[killswitch]\nstale_feed_ms = 0.001\n")
    done = subprocess.run([*args, "--config", str(stale), "--objective", "pnl", "--out",
                           str(tmp_path / "halted")], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "2 of 2 trials were halted by the kill switch (stale_feed)" in done.stdout
    assert "--no-killswitch, or set [killswitch] stale_feed_ms" in done.stdout


def test_a_plan_that_cannot_fit_max_memory_is_refused_before_it_starts(
    tmp_path: Path, quotes_file: Path
) -> None:
    args = [TICKWISE, "sweep", "--strategy", "mean_reversion", "--data", str(quotes_file),
            "--grid", "window=10,20", "--param", "qty=100", "--workers", "2"]  # fmt: skip
    done = subprocess.run([*args, "--max-memory", "300MiB", "--out", str(tmp_path / "small")],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 1
    assert "--max-memory 0.29 GiB: the sweep needs about" in done.stderr
    assert "not even one fits" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "small").exists()  # refused before anything was written
    done = subprocess.run([*args, "--max-memory", "8GiB", "--out", str(tmp_path / "big")],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    said = json.loads((tmp_path / "big" / "sweep.json").read_text())
    plan = said["memory_plan"]
    assert plan["estimate_bytes"] == plan["sweep_bytes"] + 2 * plan["per_worker_bytes"]
    assert 0 < said["peak_rss_mib"]["worker"] < 8 * 1024  # each trial says its worker's peak
    rows = pq.read_table(tmp_path / "big" / "trials.parquet").to_pylist()
    assert all(r["peak_rss_mib"] > 0 for r in rows)


def test_a_folder_that_is_not_a_sweep_is_refused_untouched(
    tmp_path: Path, quotes_file: Path
) -> None:
    out = tmp_path / "results"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    with pytest.raises(tw.TickwiseError, match="holds summary.json, which is no sweep's"):
        tw.sweep("mean_reversion", quotes_file, {"window": [10, 20]}, out=out, workers=1)
    assert [p.name for p in out.iterdir()] == ["summary.json"]


@pytest.mark.skipif(sys.platform != "linux", reason="a local Ray on Linux")
def test_ray_gives_the_table_local_processes_give_even_when_an_actor_dies(
    tmp_path: Path, quotes_file: Path
) -> None:
    ray = pytest.importorskip("ray")
    spec = fragile(tmp_path)
    space = {"every": "10,20,30,40", "fail": "0,2"}
    local = tw.sweep(spec, quotes_file, space, workers=2, objectives=["fills"])
    marker = tmp_path / "kill-once"
    marker.write_text(str(os.getpid()))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with pytest.raises(tw.TickwiseError, match="3 sweep workers of one CPU each could not"):
            tw.sweep(spec, quotes_file, space, executor="ray", workers=3)  # (never waits)
        on_ray = tw.sweep(spec, quotes_file, space, executor="ray", workers=2,
                          objectives=["fills"])  # fmt: skip
    finally:
        ray.shutdown()
    assert not marker.exists()  # an actor died running every=30, and the trial ran again
    assert results(on_ray.table) == results(local.table)
    assert on_ray.workers == 2


@pytest.fixture(scope="module")
def week(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A week of quotes (2 instruments, one every 20 s): days to walk forward over."""
    from ..conftest import make_synth

    return make_synth(tmp_path_factory.mktemp("week") / "q.parquet", kind="quotes",
                      rows=30_000, instruments=2, seed=6, rate=0.05)  # fmt: skip


RESEARCH = replace(tw.SessionConfig(), killswitch=replace(tw.KillSwitch(), enabled=False))


def test_walk_forward_tests_each_fold_on_what_follows_with_its_best_training_point(
    tmp_path: Path, week: Path
) -> None:
    space = {"window": "20,60", "entry_z": "1.5,2.5"}
    kw = {"params": {"qty": 100.0}, "config": RESEARCH, "objectives": ["pnl"],
          "train": 2 * DAY, "test": DAY}  # fmt: skip
    one = tw.sweep("mean_reversion", week, space, workers=1, **kw)
    two = tw.sweep("mean_reversion", week, space, workers=2, out=tmp_path / "wf", **kw)
    assert results(one.table) == results(two.table)
    rows = one.table.to_pylist()
    folds = two.info["walk_forward"]["folds"]
    assert len(folds) >= 4
    oos, tested = 0.0, 0
    for fold in folds:
        train = [r for r in rows if r["fold"] == fold["fold"] and r["role"] == "train"]
        tests = [r for r in rows if r["fold"] == fold["fold"] and r["role"] == "test"]
        assert len(train) == 4
        if not tests:  # nothing trained (the market was shut): nothing chosen, no test
            assert "reason" in fold
            assert {r["status"] for r in train} == {"failed"}
            continue
        (test,) = tests
        if test["status"] == "failed":  # a weekend: the synthetic market is shut
            assert "holds no rows in the window" in test["reason"]
            assert test["start"].weekday() >= 4
            continue
        tested += 1
        assert all(r["end"] == test["start"] for r in train)  # training stops where it tests
        assert test["end"] - test["start"] <= dt.timedelta(days=1)
        (best,) = [r for r in train if r["rank"] == 1]
        assert fold["chosen_trial"] == best["trial"]
        assert (test[PARAM + "window"], test[PARAM + "entry_z"]) == (
            best[PARAM + "window"], best[PARAM + "entry_z"])  # fmt: skip
        point = {"qty": 100.0, "window": test[PARAM + "window"],
                 "entry_z": test[PARAM + "entry_z"]}  # fmt: skip
        bt = tw.run_backtest("mean_reversion", week, point, RESEARCH, start=_ns(test["start"]),
                             end=_ns(test["end"]))  # fmt: skip
        assert test["run_hash"] == run_hash(bt.orders, bt.fills)  # the test window alone
        oos += test["pnl"]
    assert tested >= 3
    curve = pq.read_table(tmp_path / "wf" / "oos_equity.parquet")
    assert curve["pnl"][-1].as_py() == pytest.approx(oos, abs=1e-6)
    assert curve["fold"].to_pylist() == sorted(curve["fold"].to_pylist())
    said = json.loads((tmp_path / "wf" / "sweep.json").read_text())["walk_forward"]
    assert said["out_of_sample"]["pnl"] == pytest.approx(oos, abs=1e-6)
    last = max(f["fold"] for f in folds)
    assert two.best["params"] == folds[last]["params"]  # best.toml: what to trade next
    report = (tmp_path / "wf" / "report.html").read_text()
    for chart in ("the test windows stitched", "each fold's chosen parameters",
                  "each fold's chosen point, in sample and on its test window",
                  f"on fold {last}'s training"):  # fmt: skip
        assert chart in report


def test_purged_k_fold_and_the_overfitting_statistics_are_said(week: Path) -> None:
    space = {"window": "20,60", "entry_z": "1.5,2.5"}
    kw = {"params": {"qty": 100.0}, "config": RESEARCH, "objectives": ["pnl"], "workers": 2}
    k = tw.sweep("mean_reversion", week, space, folds=3, embargo=DAY // 4, **kw)
    rows = k.table.to_pylist()
    tests = [r for r in rows if r["role"] == "test"]
    assert [r["fold"] for r in tests] == [0, 1, 2]
    embargo = dt.timedelta(hours=6)
    for fold in k.info["walk_forward"]["folds"]:  # training never reaches into its test,
        ((lo, hi),) = [[dt.datetime.fromisoformat(t) for t in w] for w in fold["test"]]
        for a, b in ([dt.datetime.fromisoformat(t) for t in w] for w in fold["train"]):
            assert b <= lo - embargo or a >= hi + embargo  # nor the embargo around it
    plain = tw.sweep("mean_reversion", week, space, **kw)
    said = plain.info["overfitting"]
    assert 0.0 <= said["pbo"]["value"] <= 1.0
    assert said["pbo"]["splits"] == min(16, said["periods"] // 2) // 2 * 2
    assert said["deflated_sharpe"]["trials"] == 4
    assert said["deflated_sharpe"]["value"] is None or 0 <= said["deflated_sharpe"]["value"] <= 1


def _ns(when: dt.datetime) -> int:
    return int(pa.scalar(when, pa.timestamp("ns", tz="UTC")).value)
