"""Numba's on-disk cache shared by processes compiling at once.

Numba files each compiled overload under the next free number of its function's index,
and two processes saving different overloads at once can take the same number (numba
#10128): the index then sends one signature to the other's code, which later runs are
handed and call with the wrong types (a typing error, or a segmentation fault). Test
workers, sweep workers and a live session's processes do exactly this with the engine's
kernels; engine.caches locks each index while it is written and refuses a misfiled entry.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

KERNEL = """
from numba import njit


@njit(cache=True)
def size(x):
    return x.ndim * 100 + x.itemsize
"""

# Compiles `size` for 30 signatures in an order of its own, from a shared start time.
WORKER = """
import random, sys, time
import numpy as np
import tickwise  # noqa: F401  (installs the lock on Numba's cache)
sys.path.insert(0, sys.argv[3])
import kern

dtypes = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
          np.float32, np.float64]
cases = [(t, nd) for t in dtypes for nd in (1, 2, 3)]
random.Random(int(sys.argv[1])).shuffle(cases)
while time.time() < float(sys.argv[2]):
    time.sleep(0.001)
for t, nd in cases:
    a = np.zeros((1,) * nd, dtype=t)
    got = kern.size(a)
    assert got == nd * 100 + a.itemsize, (t, nd, got)
print("ok")
"""

WORKERS = 4


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONDONTWRITEBYTECODE": "1"}


def _entries(cache: Path) -> list[tuple[str, str]]:
    """(signature filed under, signature of the code in the file) for every cache entry
    (the kernel's module must be importable: its code refers to it)."""
    found = []
    for index in cache.rglob("*.nbi"):
        with index.open("rb") as f:
            pickle.load(f)  # Numba's version
            _stamp, overloads = pickle.loads(f.read())
        for key, name in overloads.items():
            data = pickle.loads((index.parent / name).read_bytes())
            found.append((str(tuple(key[0])), str(tuple(data[3].args))))
    return found


def _finish(worker: subprocess.Popen[str]) -> None:
    out, err = worker.communicate(timeout=300)
    assert worker.returncode == 0, err[-2000:]
    assert out.strip() == "ok"


def _start(tmp_path: Path, cache: Path, seed: int, start: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, str(seed), str(start), str(tmp_path)],
        env=_env(cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_processes_compiling_one_kernel_at_once_file_every_overload_under_its_own_signature(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "kern.py").write_text(textwrap.dedent(KERNEL))
    for round_ in range(2):  # without the lock, most rounds misfile an entry or crash
        cache = tmp_path / f"cache{round_}"
        start = time.time() + 3.0  # every worker imported before the first compile
        workers = [_start(tmp_path, cache, seed, start) for seed in range(WORKERS)]
        for w in workers:
            _finish(w)
        entries = _entries(cache)
        assert len(entries) == 30
        assert [e for e in entries if e[0] != e[1]] == []
        # A process started afterwards loads all of them, and each gives its own answer.
        _finish(_start(tmp_path, cache, 99, 0.0))


def test_an_entry_filed_under_another_signature_is_compiled_again_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache misfiled before the lock (or by a process without it) must not hand out code
    of the wrong types: the entry is refused, compiled again and filed right."""
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "kern.py").write_text(textwrap.dedent(KERNEL))
    cache = tmp_path / "cache"
    _finish(_start(tmp_path, cache, 0, 0.0))
    # Misfile: every signature's entry now names the next one's code (as the race leaves it).
    (index,) = cache.rglob("*.nbi")
    with index.open("rb") as f:
        version = pickle.load(f)
        stamp, overloads = pickle.loads(f.read())
    keys = list(overloads)
    names = [overloads[k] for k in keys]
    misfiled = dict(zip(keys, names[1:] + names[:1], strict=True))
    with index.open("wb") as f:
        pickle.dump(version, f, protocol=-1)
        f.write(pickle.dumps((stamp, misfiled), protocol=-1))
    assert all(a != b for a, b in _entries(cache))

    _finish(_start(tmp_path, cache, 1, 0.0))
    assert [e for e in _entries(cache) if e[0] != e[1]] == []


EAGER = """
from numba import float64, njit


@njit(float64(float64), cache=True)
def typed(x):
    return x + 1.0


@njit("float64(float64)", cache=True)
def texted(x):
    return x * 2.0
"""

RUN_EAGER = """
import sys
import tickwise  # noqa: F401  (installs the lock on Numba's cache)
sys.path.insert(0, sys.argv[1])
import eager
print(eager.typed(1.0), eager.texted(2.0))
"""


def test_kernels_compiled_for_a_signature_given_up_front_load_from_the_cache(
    tmp_path: Path,
) -> None:
    """Any code in a process with tickwise loaded goes through the lock: a signature given
    to `njit` (a type or its text) is a key of another shape, and must load as Numba
    would (once refused as misfiled: compiled again at every run, or an import error)."""
    (tmp_path / "eager.py").write_text(textwrap.dedent(EAGER))
    env = _env(tmp_path / "cache") | {"NUMBA_DEBUG_CACHE": "1"}
    said = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", RUN_EAGER, str(tmp_path)], env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.splitlines()[-1].split() == ["2.0", "4.0"]  # (after Numba's notes)
        said.append(done.stdout + done.stderr)
    assert said[1].count("data loaded from") == 2
    assert "data saved to" not in said[1]
