"""Sweeps: how trials per second scale with workers, and what a trial costs in a sweep.

Every trial is `mean_reversion` over the quotes history of `benchmarks/data.py`
with matching, fees and order latency on (backtest.py's settings), each with a
window of its own, as a sweep's trials are. Measured in the steady state:
the executors are started and have run a trial per worker before any round
(their one-off start is in `sweep.json`'s timings, not here); rounds take
turns:

- scaling: the same trials through one worker and through two (local
  processes, or Ray actors); the floor is twice the one-worker rate, so the
  ratio is how far two workers fall short of doubling it.
- overhead: the same trials through one local worker (a process: the task
  pickled out, the row back over a pipe, the trial's own bookkeeping) against
  replaying them in this process with a warm loop and summarising them as a
  backtest does, both decoding Parquet on one thread as sweep workers do (a
  replay alone decodes the next batch on another CPU meanwhile: 1.3 CPUs).

Run as a script: `python benchmarks/sweep.py --rows 10000000`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tickwise.backtest.executors import make_executor
from tickwise.backtest.replay import replay
from tickwise.backtest.results import footer_hash, summarize
from tickwise.backtest.trials import Plan, Task, TrialWorker
from tickwise.engine.strategy import load_strategy
from tickwise.feeds.history import read_on_one_thread

try:
    from .backtest import CONFIG, PARAMS
    from .data import quotes_file
except ImportError:  # run as a script
    from data import quotes_file  # type: ignore[no-redef]

    from backtest import CONFIG, PARAMS  # type: ignore[no-redef]

STRATEGY = "mean_reversion"


def tasks(count: int, first_window: int = 60) -> list[Task]:
    """`count` trials of distinct windows (as a sweep's)."""
    cls = load_strategy(STRATEGY)
    out = []
    for k in range(count):
        params = cls.resolve_params({**PARAMS, "window": first_window + k})
        out.append(Task(f"bench-{first_window + k}", params))
    return out


def _rate(run: Callable[[list[Task]], object], batch: list[Task]) -> float:
    began = time.perf_counter()
    run(batch)
    return len(batch) / (time.perf_counter() - began)


def _through(executor: Any) -> Callable[[list[Task]], object]:
    def run(batch: list[Task]) -> object:
        rows = [row for _, row in executor.run(batch)]
        bad = [r for r in rows if r["status"] != "ok"]
        if bad:
            raise RuntimeError(f"a benchmark trial did not run to the end: {bad[0]}")
        return rows

    return run


def scaling(executor: str, rows: int, trials: int, rounds: int) -> dict[str, list[float]]:
    """Trials per second through one worker and through two, taking turns (each executor
    started and warm before its round is timed, and closed after: on Ray, the actors of
    one would hold the CPUs the other needs)."""
    plan = Plan(STRATEGY, (str(quotes_file(rows)),), CONFIG)
    ray = None
    if executor == "ray":
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR")  # fmt: skip
    try:
        out: dict[str, list[float]] = {"one": [], "two": []}
        for r in range(rounds):
            batch = tasks(trials, first_window=60 + r * trials)
            for name in ("one", "two") if r % 2 == 0 else ("two", "one"):
                workers = 1 if name == "one" else 2
                ex = make_executor(executor, plan, workers, None)
                try:
                    _through(ex)(tasks(workers, first_window=40))  # (each worker warm)
                    out[name].append(_rate(_through(ex), batch))
                finally:
                    ex.close()
        return out
    finally:
        if ray is not None:
            ray.shutdown()


def overhead(rows: int, trials: int, rounds: int) -> dict[str, list[float]]:
    """Trials per second through one local worker against the same backtests in process,
    both reading Parquet on one thread (as every sweep worker does: each keeps to one CPU).
    This process reads so from then on."""
    read_on_one_thread()
    data = quotes_file(rows)
    plan = Plan(STRATEGY, (str(data),), CONFIG)
    local = TrialWorker(plan)  # (the strategy and the data, opened once, as a worker has them)
    footers = footer_hash(local.history)

    def in_process(batch: Sequence[Task]) -> object:
        return [summarize(replay(local.strategy, local.history, t.params, CONFIG), footers)
                for t in batch]  # fmt: skip

    one = make_executor("local", plan, 1, None)
    try:
        warm = tasks(1, first_window=40)
        _through(one)(warm)
        in_process(warm)
        out: dict[str, list[float]] = {"sweep": [], "process": []}
        for r in range(rounds):
            batch = tasks(trials, first_window=60 + r * trials)
            order = ((("sweep", _through(one)), ("process", in_process)) if r % 2 == 0
                     else (("process", in_process), ("sweep", _through(one))))  # fmt: skip
            for name, run in order:
                out[name].append(_rate(run, batch))
        return out
    finally:
        one.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for name in ("local", "ray"):
        r = scaling(name, args.rows, args.trials, args.rounds)
        print(name, "scaling (two/one):", [b / a for a, b in zip(r["one"], r["two"], strict=True)])
    r = overhead(args.rows, args.trials, args.rounds)
    print("overhead (process/sweep):",
          [p / s for s, p in zip(r["sweep"], r["process"], strict=True)])  # fmt: skip


if __name__ == "__main__":
    main()


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants, from /proc."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:  # (gone meanwhile)
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
        todo.extend(int(c) for c in children)
    return total


def memory(rows: int, trials: int, workers: int = 2) -> dict[str, float]:
    """Peak resident memory (bytes) of a `tickwise sweep` command and its workers over
    `trials` trials of `rows` quotes, sampled every 50 ms from /proc, and its wall time."""
    data = quotes_file(rows)
    tickwise = str(Path(sys.executable).with_name("tickwise"))
    with tempfile.TemporaryDirectory() as tmp:
        command = [tickwise, "sweep", "--strategy", STRATEGY, "--data", str(data),
                   "--grid", f"window=20:{20 + trials - 1}:1", "--param", "qty=100",
                   "--workers", str(workers), "--out", str(Path(tmp) / "sweep")]  # fmt: skip
        began = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, _tree_rss(proc.pid))
            time.sleep(0.05)
        wall = time.perf_counter() - began
        if proc.returncode != 0:
            raise RuntimeError(f"the sweep failed: {proc.stderr.read().decode()[-500:]}")
        return {"peak_bytes": float(peak), "wall_s": wall}
