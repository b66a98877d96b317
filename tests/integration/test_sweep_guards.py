"""Sweeps against what goes wrong around them, between real processes: a trial that never
ends, a second sweep in the same folder, another strategy's folder, code or data changed
under a store, results that cannot be written, a local Ray whose sweep is SIGKILLed."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tickwise as tw
from tickwise.backtest.executors import LocalExecutor, RayExecutor
from tickwise.backtest.results import footer_hash
from tickwise.backtest.sweep import PARAM
from tickwise.backtest.trials import Plan, Task, code_files, data_key
from tickwise.engine.caches import engine_fingerprint
from tickwise.feeds.merged import open_data

from .processes import TICKWISE
from .test_sweep import _stored, fragile


def test_a_trial_that_never_ends_is_stopped_at_the_timeout_and_not_stored(
    tmp_path: Path, quotes_file: Path
) -> None:
    spec = fragile(tmp_path)
    out = tmp_path / "out"
    space = {"nap_ms": "0,60000", "every": "10,20"}  # (a minute's nap: a trial that hangs)
    swept = tw.sweep(spec, quotes_file, space, workers=2, objectives=["fills"], out=out,
                     trial_timeout=15)  # fmt: skip
    rows = swept.table.to_pylist()
    assert [r["status"] for r in rows] == ["ok", "ok", "failed", "failed"]
    for r in rows[2:]:
        assert r[PARAM + "nap_ms"] == 60000
        assert r["reason"] == ("still running after --trial-timeout 15 s, so its worker was "
                               "killed (a loop that never ends?)")  # fmt: skip
    assert _stored(out / "trials.sqlite") == 2  # (a rerun tries the stopped ones again)


def test_a_worker_refuses_code_or_data_changed_since_the_sweep_began(
    tmp_path: Path, quotes_file: Path
) -> None:
    (tmp_path / "copy").mkdir()
    tw.load_strategy(fragile(tmp_path / "copy"))  # (the same contents: loaded as one module)
    spec = fragile(tmp_path)
    data = tmp_path / "q.parquet"
    shutil.copyfile(quotes_file, data)
    cls = tw.load_strategy(spec)
    history = open_data(data)
    key = data_key(history, footer_hash(history))
    began = Plan(spec, (str(data),), tw.SessionConfig(), engine_fingerprint(),
                 tuple(code_files(cls, spec).items()), key)  # fmt: skip
    task = Task("k", {"every": 10, "fail": 0, "nap_ms": 0.0})
    path = Path(spec.rpartition(":")[0])
    path.write_text(path.read_text() + "\n# edited during the sweep\n")
    st = data.stat()
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000))  # (rewritten, same bytes)
    executor = LocalExecutor(began, 1)  # (a worker started after both changed)
    try:
        with pytest.raises(tw.TickwiseError, match=r"a sweep worker could not start: the "
                           r"strategy's code \(fragile.py\) and the data: not what the sweep "
                           r"began with \(changed since"):  # fmt: skip
            list(executor.run([task]))
    finally:
        executor.close()


def test_data_rewritten_in_place_is_swept_again_and_the_store_says_why(
    tmp_path: Path, quotes_file: Path
) -> None:
    spec = fragile(tmp_path)
    data = tmp_path / "q.parquet"
    shutil.copyfile(quotes_file, data)
    out = tmp_path / "out"
    kw = {"workers": 1, "objectives": ["fills"], "out": out}
    first = tw.sweep(spec, data, {"every": "10,20"}, **kw)
    assert (first.ran, first.info["store_note"]) == (2, None)
    shutil.copyfile(quotes_file, data)  # the same rows, footer and size: a new file
    st = data.stat()
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000))  # (even within a clock tick)
    again = tw.sweep(spec, data, {"every": "10,20"}, **kw)
    assert again.ran == 2
    assert again.info["store_note"] == ("the store's 2 trials ran with another version of "
                                        "the data: none is reused (they are kept, for that "
                                        "version)")  # fmt: skip
    third = tw.sweep(spec, data, {"every": "10,20"}, **kw)
    assert (third.ran, third.info["reused"], third.info["store_note"]) == (0, 2, None)


def test_a_folder_holds_one_sweep_at_a_time_and_one_strategy_over_one_data(
    tmp_path: Path, quotes_file: Path
) -> None:
    spec = fragile(tmp_path)
    out = tmp_path / "out"
    args = [TICKWISE, "sweep", "--strategy", spec, "--data", str(quotes_file), "--grid",
            "every=10:400:10", "--param", "nap_ms=1000", "--workers", "1", "--objective",
            "fills", "--out", str(out)]  # fmt: skip
    running = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while _stored(out / "trials.sqlite") < 1 and time.monotonic() < deadline:
            assert running.poll() is None, running.communicate()
            time.sleep(0.02)
        second = subprocess.run(args, capture_output=True, text=True, timeout=120)
    finally:
        running.kill()
        running.wait(timeout=30)
    assert second.returncode == 1
    assert (f"--out {out}: another sweep (pid {running.pid}) is running in it; wait for it "
            "to end, or choose another folder") in second.stderr  # fmt: skip
    assert len(second.stderr.strip().splitlines()) == 1, second.stderr
    tw.sweep(spec, quotes_file, {"every": "10,20"}, workers=1, objectives=["fills"], out=out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(tw.TickwiseError, match=f"--out {out} holds a sweep of fragile over "
                       f"{quotes_file.resolve()}; its results would be replaced"):  # fmt: skip
        tw.sweep("mean_reversion", quotes_file, {"window": "10,20"}, workers=1, out=out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def _limit_file_size(size: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def test_results_that_cannot_be_written_leave_the_ones_before_whole(
    tmp_path: Path, quotes_file: Path
) -> None:
    out = tmp_path / "out"
    args = [TICKWISE, "sweep", "--strategy", "mean_reversion", "--data", str(quotes_file),
            "--grid", "window=20,40", "--param", "qty=100", "--workers", "1", "--out",
            str(out)]  # fmt: skip
    first = subprocess.run([*args, "--objective", "pnl"], capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert first.returncode == 0, first.stderr
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.suffix not in (".sqlite", ".lock")}
    assert len(before["report.html"]) > 1_000_000  # (more than the limit below)
    # A disk that takes no file beyond 512 KiB: the report (MBs) cannot be written.
    full = subprocess.run([*args, "--objective", "fills"], capture_output=True, text=True,
                          timeout=300,
                          preexec_fn=lambda: _limit_file_size(512 * 1024))  # fmt: skip
    assert full.returncode == 1
    assert (f"{out}: the results could not be written: File too large; every trial is stored "
            "in trials.sqlite and the results before are kept") in full.stderr  # fmt: skip
    said = full.stderr.strip().splitlines()  # (the progress lines, then one error)
    assert [line for line in said if "error" in line] == said[-1:], full.stderr
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.suffix not in (".sqlite", ".lock")}
    assert after == before  # (no staging folder left, no file of the new results)
    again = subprocess.run([*args, "--objective", "fills"], capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "run now 0 " in again.stdout  # the trials were stored before the write failed
    assert "by fills:max" in (out / "best.toml").read_text()


def _family(pid: int) -> set[int]:
    """`pid`'s descendants now (Linux /proc)."""
    found, todo = set(), [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            try:
                kids = {int(k) for k in (task / "children").read_text().split()}
            except OSError:
                continue
            todo += list(kids - found)
            found |= kids
    return found


def _alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


@pytest.mark.skipif(sys.platform != "linux", reason="a local Ray on Linux")
def test_a_sweep_killed_on_its_local_ray_leaves_no_ray_process_behind(
    tmp_path: Path, quotes_file: Path
) -> None:
    pytest.importorskip("ray")
    spec = fragile(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [TICKWISE, "sweep", "--strategy", spec, "--data", str(quotes_file), "--grid",
         "every=10:200:10", "--param", "nap_ms=300", "--executor", "ray", "--workers", "1",
         "--objective", "fills", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while _stored(out / "trials.sqlite") < 1 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        family = _family(proc.pid)  # (Ray's head processes, its workers, the watchdog)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert len(family) >= 4, family
    gone = time.monotonic() + 60
    while any(_alive(p) for p in family) and time.monotonic() < gone:
        time.sleep(0.2)
    left = {p: Path(f"/proc/{p}/cmdline").read_bytes()[:80] for p in family if _alive(p)}
    assert not left


@pytest.mark.skipif(sys.platform != "linux", reason="a local Ray on Linux")
def test_on_ray_a_trial_that_never_ends_is_stopped_and_changed_code_is_refused(
    tmp_path: Path, quotes_file: Path
) -> None:
    ray = pytest.importorskip("ray")
    spec = fragile(tmp_path)
    cls = tw.load_strategy(spec)
    history = open_data(quotes_file)
    stale = Plan(spec, (str(quotes_file),), tw.SessionConfig(), engine_fingerprint(),
                 tuple((path, "0" * 64) for path in code_files(cls, spec)),
                 data_key(history, footer_hash(history)))  # fmt: skip
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        executor = RayExecutor(stale, 1, None)
        try:
            said = r"could not start: the strategy's code \(fragile.py\): not what the sweep"
            with pytest.raises(tw.TickwiseError, match=said):
                list(executor.run([Task("k", {"every": 10, "fail": 0, "nap_ms": 0.0})]))
        finally:
            executor.close()
        swept = tw.sweep(spec, quotes_file, {"nap_ms": "0,60000"}, executor="ray", workers=2,
                         objectives=["fills"], trial_timeout=15)  # fmt: skip
    finally:
        ray.shutdown()
    rows = swept.table.to_pylist()
    assert [r["status"] for r in rows] == ["ok", "failed"]
    assert rows[1]["reason"].startswith("still running after --trial-timeout 15 s")
