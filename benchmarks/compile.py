"""What a strategy author waits for after an edit: compiling the edited strategy's loop.

Each round, in a fresh process (as `tickwise backtest` after saving a file): a copy of
`mean_reversion` with one comment changed, loaded by path, its quotes loop compiled (the
engine's kernels come from the cache: they did not change). The floor, in a fresh process
too, taking turns: Numba compiling a bare `@njit` loop of the same strategy's signals,
written anew each round and calling the same cached rolling-window kernels (what compiling
anything at all costs on this machine). Both are timed around the compile alone, the
interpreter's start aside.

Run as a script: `python benchmarks/compile.py --rounds 3`.
"""

from __future__ import annotations

import argparse
import inspect
import json
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

try:
    from . import loop as bench_loop
except ImportError:  # run as a script
    import loop as bench_loop  # type: ignore[no-redef]

STRATEGY = Path(__file__).resolve().parents[1] / "strategies" / "mean_reversion.py"

_EDITED = """
import sys, time
import tickwise as tw
from tickwise.engine.session import Session
from tickwise.feeds.synth import make_instruments
strategy = tw.load_strategy(sys.argv[1])
session = Session(strategy, make_instruments(8), {})
began = time.perf_counter()
session.warm_up(("quotes",))
print(time.perf_counter() - began)
"""

_BARE = """
import sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
import bare_module
instrument = np.zeros(4, dtype=np.uint32)
bid = np.full(4, 99.0)
ask = np.full(4, 101.0)
window = np.zeros((8, 104))
side = np.zeros(8, dtype=np.int64)
began = time.perf_counter()
bare_module.bare_mean_reversion(instrument, bid, ask, window, side, 2.0, 0.5)
print(time.perf_counter() - began)
"""


def _seconds(script: str, *args: str) -> float:
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                          text=True, timeout=900, check=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"compile benchmark failed: {done.stderr[-2000:]}")
    return float(done.stdout.splitlines()[-1])


def edit_compile(rounds: int) -> dict[str, list[float]]:
    """Seconds to compile an edited strategy's loop, and a bare loop, per round."""
    ours: list[float] = []
    floor: list[float] = []
    bare = inspect.getsource(bench_loop.bare_mean_reversion)
    with tempfile.TemporaryDirectory(prefix="tickwise-compile-") as tmp:
        folder = Path(tmp)
        _seconds(_EDITED, f"{STRATEGY}:MeanReversion")  # the engine's kernels, in the cache
        for k in range(rounds):
            marker = f"# edit {uuid.uuid4().hex}\n"  # new code: a new loop, compiled
            strategy = folder / f"edited_{k}.py"
            strategy.write_text(STRATEGY.read_text() + marker)
            ours.append(_seconds(_EDITED, f"{strategy}:MeanReversion"))
            module = folder / f"bare_{k}"
            module.mkdir()
            source = (
                "from numba import njit\n"
                "from tickwise.engine.indicators import rolling_full, rolling_push, "
                "rolling_zscore\n\n\n" + bare + marker
            )
            (module / "bare_module.py").write_text(source)
            floor.append(_seconds(_BARE, str(module)))
    return {"ours_s": ours, "floor_s": floor}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(edit_compile(args.rounds), indent=2))


if __name__ == "__main__":
    main()
