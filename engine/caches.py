"""Where tickwise keeps what it compiles: out of the source tree, in the user's cache folder.

Numba caches compiled code beside each source file unless told otherwise: an
editable install would write it into the repository, an installed one into
site-packages. `use_own_numba_cache` points Numba at `~/.cache/tickwise/numba-<format>`
before anything of ours compiles (and the processes we start inherit it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def cache_root() -> Path:
    """Where tickwise keeps what it compiles: $TICKWISE_CACHE, else ~/.cache/tickwise."""
    return Path(os.environ.get("TICKWISE_CACHE") or Path.home() / ".cache" / "tickwise")


# Numba keys compiled code on a function's source file and argument types, not on the options
# it was compiled with: code compiled under other options of engine/jit.py would be loaded as
# if it were current. A new format gets a folder of its own (a test pins this number to
# those options: change them, and it asks for the next number).
COMPILED_FORMAT = 2


def numba_cache_dir(boundscheck: bool) -> Path:
    """The default Numba cache: apart for bounds-checked code, since Numba's cache does not
    tell checked code from unchecked (a checked run would load unchecked code), and apart
    for each format of compiled code."""
    return cache_root() / f"numba{'-boundscheck' if boundscheck else ''}-{COMPILED_FORMAT}"


def use_own_numba_cache() -> None:
    """Set NUMBA_CACHE_DIR to tickwise's cache unless the user set one of their own; with
    TICKWISE_PURE_PYTHON=1, compile nothing (NUMBA_DISABLE_JIT=1: kernels run as Python,
    for pdb and coverage)."""
    changed = False
    if _flag("TICKWISE_PURE_PYTHON") and not _flag("NUMBA_DISABLE_JIT"):
        os.environ["NUMBA_DISABLE_JIT"] = "1"
        changed = True
    if not os.environ.get("NUMBA_CACHE_DIR"):
        os.environ["NUMBA_CACHE_DIR"] = str(numba_cache_dir(_flag("NUMBA_BOUNDSCHECK")))
        changed = True
    if changed and "numba" in sys.modules:  # imported before us: read the settings again
        sys.modules["numba"].core.config.reload_config()


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip() not in ("", "0")
