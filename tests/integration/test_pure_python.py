"""TICKWISE_PURE_PYTHON=1: the same loop and callbacks run as plain Python, so that a quant
can step through a callback with pdb or measure coverage on small data, and get the very
orders and fills the compiled loop gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tickwise import run_backtest
from tickwise.backtest.results import write_results
from tickwise.feeds.synth import SynthConfig, synth

PARAMS = {"window": 20, "entry_z": 1.0}

_PURE = """
import json, sys
import numba
import tickwise as tw
from tickwise.backtest.results import write_results
callback = tw.load_strategy("mean_reversion").on_quote
assert callback is tw.engine.jit.python_function(callback), "a callback was compiled"
code = callback.__code__
lines = set()

def trace(frame, event, arg):  # what pdb and coverage stand on
    if frame.f_code is code:
        lines.add(frame.f_lineno)
    return trace

sys.settrace(trace)
bt = tw.run_backtest("mean_reversion", sys.argv[1], json.loads(sys.argv[2]))
sys.settrace(None)
summary = write_results(bt, __import__("pathlib").Path(sys.argv[3]))
print(json.dumps({"jit_off": bool(numba.config.DISABLE_JIT), "run_hash": summary["run_hash"],
                  "orders": summary["orders"], "lines": len(lines)}))
"""


def test_pure_python_runs_the_callbacks_as_python_with_the_compiled_loop_s_results(
    tmp_path: Path,
) -> None:
    data = tmp_path / "q.parquet"
    synth(SynthConfig(rows=3_000, instruments=2, seed=1), data)
    compiled = write_results(run_backtest("mean_reversion", data, PARAMS), tmp_path / "jit")
    env = {**os.environ, "TICKWISE_PURE_PYTHON": "1"}
    env.pop("NUMBA_DISABLE_JIT", None)
    done = subprocess.run(
        [sys.executable, "-c", _PURE, str(data), json.dumps(PARAMS), str(tmp_path / "py")],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    pure = json.loads(done.stdout.splitlines()[-1])
    assert pure["jit_off"]
    assert pure["orders"] == compiled["orders"] > 0
    assert pure["run_hash"] == compiled["run_hash"]
    assert pure["lines"] >= 5  # the callback's own lines ran, one by one, under the tracer
