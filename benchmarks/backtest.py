"""`tickwise backtest` throughput: the whole command as a user runs it, and the replay alone.

The whole command is timed from process start to exit (reading Parquet,
validating, the loop, writing results and report), twice per round, taking
turns: held to one CPU (the issue's "one core": Parquet's decoding threads
share it with the loop) and free to use every CPU. The replay alone is
`run_backtest` in-process, with matching, fees and order latency on. Both use
`mean_reversion` on the quotes history of `benchmarks/data.py`.

Run as a script: `python benchmarks/backtest.py --rows 10000000`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tickwise.backtest.replay import run_backtest
from tickwise.engine.config import SessionConfig
from tickwise.feeds.history import columns, open_history

try:
    from .data import quotes_file
    from .loop import PARAMS as BARE_PARAMS
    from .loop import bare_signals
except ImportError:  # run as a script
    from data import quotes_file  # type: ignore[no-redef]
    from loop import PARAMS as BARE_PARAMS  # type: ignore[no-redef]
    from loop import bare_signals  # type: ignore[no-redef]

CONFIG = SessionConfig(taker_fee_bps=0.5, maker_fee_bps=0.1, order_latency_us=200.0,
                        latency_jitter_us=100.0, latency_seed=1)  # fmt: skip
PARAMS = {"window": 100, "entry_z": 2.0, "exit_z": 0.5, "qty": 100.0}  # whole lots everywhere


def config_file_text() -> str:
    """CONFIG as the command reads it: the [backtest] table (the other tables are left out:
    their defaults apply)."""
    tables = ("risk", "killswitch", "live")
    return "[backtest]\n" + "\n".join(
        f"{k} = {getattr(CONFIG, k)!r}"
        for k in CONFIG.__dataclass_fields__
        if k not in tables and getattr(CONFIG, k) is not None  # (None: left out, as TOML has it)
    ).replace("'", '"')


def measure(rows: int, rounds: int) -> dict:
    data = quotes_file(rows)
    tickwise = str(Path(sys.executable).with_name("tickwise"))
    config_toml = config_file_text()
    # The command trades as the replay below does (the defaults trade 1 unit, which these
    # instruments' lots refuse: a reject storm, a halt and millions of refusals to write).
    params = [a for k, v in PARAMS.items() for a in ("--param", f"{k}={v}")]
    history = open_history(data)
    views = [columns(b) for b in history.batches(65_536)]  # the bare loop's data, in memory
    assert {k: BARE_PARAMS["mean_reversion"][k] for k in PARAMS} == PARAMS  # the same rule
    bare_signals("mean_reversion", views[:1], history.instruments)  # compile it
    one_cpu = min(os.sched_getaffinity(0))
    whole, free, replay, bare = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "bt.toml"
        cfg.write_text(config_toml + "\n")
        run_backtest("mean_reversion", data, PARAMS, CONFIG)  # compile or load the loop once
        for r in range(rounds):
            timed = {}
            for pinned in (r % 2 == 0, r % 2 == 1):  # who goes first alternates
                command = [tickwise, "backtest", "--strategy", "mean_reversion", "--data",
                           str(data), *params, "--config", str(cfg),
                           "--out", str(Path(tmp) / f"r{r}-{pinned}")]  # fmt: skip
                pin = (lambda: os.sched_setaffinity(0, {one_cpu})) if pinned else None
                t0 = time.perf_counter()
                subprocess.run(command, check=True, capture_output=True, preexec_fn=pin)
                timed[pinned] = time.perf_counter() - t0
            whole.append(timed[True])
            free.append(timed[False])
            bt = run_backtest("mean_reversion", data, PARAMS, CONFIG)
            t2 = time.perf_counter()
            bare_signals("mean_reversion", views, history.instruments)
            bare.append(time.perf_counter() - t2)
            replay.append(bt.wall_s - bt.warmup_s)
    w, f, r_, b = np.array(whole), np.array(free), np.array(replay), np.array(bare)
    return {
        "rows": rows,
        "rounds": rounds,
        "whole_s": whole,
        "replay_s": replay,
        "bare_s": bare,
        "whole_s_p50": float(np.median(w)),
        "whole_s_p10": float(np.percentile(w, 10)),
        "whole_s_p90": float(np.percentile(w, 90)),
        "whole_events_per_s_p50": rows / float(np.median(w)),
        "whole_all_cpus_s_p50": float(np.median(f)),
        "whole_all_cpus_events_per_s_p50": rows / float(np.median(f)),
        "replay_s_p50": float(np.median(r_)),
        "replay_events_per_s_p50": rows / float(np.median(r_)),
        "bare_events_per_s_p50": rows / float(np.median(b)),
        "whole_over_bare_p10": float(np.percentile(w / b, 10)),
        "whole_over_bare_p50": float(np.median(w / b)),
        "whole_over_bare_p90": float(np.percentile(w / b, 90)),
        "replay_over_bare_p50": float(np.median(r_ / b)),
    }


def print_report(r: dict) -> None:
    print(
        f"tickwise backtest, mean_reversion, {r['rows']:,} quotes, fees and latency on, "
        f"{r['rounds']} rounds, wall clock (p50)"
    )
    print(
        f"  whole command (process start to exit) on one CPU: {r['whole_s_p50']:.2f} s "
        f"(p10 {r['whole_s_p10']:.2f}, p90 {r['whole_s_p90']:.2f}) = "
        f"{r['whole_events_per_s_p50'] / 1e6:.1f} M events/s (target >= 5)"
    )
    print(
        f"  whole command free to use every CPU: {r['whole_all_cpus_s_p50']:.2f} s = "
        f"{r['whole_all_cpus_events_per_s_p50'] / 1e6:.1f} M events/s"
    )
    print(
        f"  replay alone (read + validate + loop): {r['replay_s_p50']:.2f} s = "
        f"{r['replay_events_per_s_p50'] / 1e6:.1f} M events/s"
    )
    print(
        f"  bare @njit z-score signal loop over the same quotes in memory (same run): "
        f"{r['bare_events_per_s_p50'] / 1e6:.1f} M events/s; cost ratio whole command / bare "
        f"p10 {r['whole_over_bare_p10']:.1f} p50 {r['whole_over_bare_p50']:.1f} p90 "
        f"{r['whole_over_bare_p90']:.1f}, replay / bare p50 {r['replay_over_bare_p50']:.1f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print_report(measure(args.rows, args.rounds))
