"""Compiled code is cached under the user's cache folder, never in the source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tickwise.engine import jit
from tickwise.engine.caches import COMPILED_FORMAT, engine_fingerprint, prune_versions
from tickwise.feeds import validation_kernels

BESIDE_SOURCE = Path(validation_kernels.__file__).parent / "__pycache__"
VERSION = engine_fingerprint()

_COMPILE = """
import numba
import numpy as np
from tickwise.feeds.validation_kernels import quote_fault
quote_fault(1.0, 2.0, 1.0, 1.0)
print(numba.config.CACHE_DIR)
"""


def _beside_source() -> dict[Path, float]:
    """Numba's index files beside the kernels' source, with their modification times."""
    return {p: p.stat().st_mtime for p in BESIDE_SOURCE.glob("validation_kernels.*.nbi")}


def _run(env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", _COMPILE], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _base_env(tmp_path: Path) -> dict[str, str]:
    gone = ("NUMBA_CACHE_DIR", "TICKWISE_CACHE", "NUMBA_BOUNDSCHECK")
    env = {k: v for k, v in os.environ.items() if k not in gone}
    env["HOME"] = str(tmp_path / "home")
    return env


def test_compiled_kernels_are_cached_in_the_user_s_cache_folder(tmp_path: Path) -> None:
    before = _beside_source()
    cache = tmp_path / "home" / ".cache" / "tickwise" / f"numba-{COMPILED_FORMAT}" / VERSION
    assert _run(_base_env(tmp_path)) == str(cache)
    assert list(cache.rglob("validation_kernels.quote_fault-*.nbi"))
    assert _beside_source() == before


def test_tickwise_cache_and_a_numba_cache_dir_of_the_user_s_are_followed(tmp_path: Path) -> None:
    env = _base_env(tmp_path)
    tw = tmp_path / "tw"
    assert _run({**env, "TICKWISE_CACHE": str(tw)}) == str(
        tw / f"numba-{COMPILED_FORMAT}" / VERSION
    )
    assert _run({**env, "NUMBA_CACHE_DIR": str(tmp_path / "mine")}) == str(tmp_path / "mine")
    # Bounds-checked code is cached apart: Numba's cache does not tell it from unchecked.
    checked = _run({**env, "TICKWISE_CACHE": str(tmp_path / "tw"), "NUMBA_BOUNDSCHECK": "1"})
    assert checked == str(tw / f"numba-boundscheck-{COMPILED_FORMAT}" / VERSION)


def test_a_change_of_compile_options_gets_a_cache_of_its_own() -> None:
    """Numba's cache does not key compiled code on the options it was compiled with: code
    compiled under other options would be loaded as current. Changing engine/jit.py's options
    means a new COMPILED_FORMAT (and a new folder); this pins the two together."""
    assert (jit.KERNEL_OPTIONS, jit.COLD_OPTIONS, COMPILED_FORMAT) == (
        {"cache": True, "_nrt": False, "forceinline": True},
        {"cache": True, "_nrt": False},
        2,
    ), "compile options changed: raise engine.caches.COMPILED_FORMAT and pin the new pair here"


def test_any_change_to_the_engine_s_code_is_a_new_cache_of_compiled_code(tmp_path: Path) -> None:
    """Numba checks a cached kernel against its own file, but a kernel carries the code of
    the kernels it calls from other files: a change anywhere in the engine, the feeds or the
    backtester must compile everything again, never run the kill switch with an old gate."""
    root = Path(validation_kernels.__file__).resolve().parents[1]
    tree = tmp_path / "tree"
    for package in ("engine", "feeds", "backtest"):
        shutil.copytree(root / package, tree / package, ignore=shutil.ignore_patterns("__py*"))
    before = engine_fingerprint.__wrapped__(tree)
    assert before == VERSION  # the same code, wherever it is
    for package, name in (("engine", "risk.py"), ("feeds", "wire.py"), ("backtest", "stats.py")):
        path = tree / package / name
        text = path.read_text()
        path.write_text(text + "# changed\n")
        assert engine_fingerprint.__wrapped__(tree) != before, name
        path.write_text(text)
    assert engine_fingerprint.__wrapped__(tree) == before


def test_the_compiled_code_of_the_engine_versions_used_last_is_kept(tmp_path: Path) -> None:
    folder = tmp_path / "numba-2"
    for n in range(6):
        (folder / f"v{n}").mkdir(parents=True)
        (folder / f"v{n}" / "x.nbi").write_text("x")
        os.utime(folder / f"v{n}", (1_700_000_000 + n, 1_700_000_000 + n))
    prune_versions(folder, keep=4)
    assert sorted(p.name for p in folder.iterdir()) == ["v2", "v3", "v4", "v5"]
