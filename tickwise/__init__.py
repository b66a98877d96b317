"""tickwise: a low-latency trading and decision engine.

ZeroMQ market data drive Numba-compiled strategy kernels over Arrow buffers; a
deterministic backtester replays Parquet history through the same kernels; a
kill switch halts automated orders on abnormal conditions.
"""

import os as _os
import sys as _sys
from pathlib import Path as _Path

__version__ = "0.1.0"


def cache_root() -> _Path:
    """Where tickwise keeps what it compiles: $TICKWISE_CACHE, else ~/.cache/tickwise."""
    return _Path(_os.environ.get("TICKWISE_CACHE") or _Path.home() / ".cache" / "tickwise")


def numba_cache_dir(boundscheck: bool) -> _Path:
    """The default Numba cache: apart for bounds-checked code, since Numba's cache does not
    tell checked code from unchecked (a checked run would load unchecked code)."""
    return cache_root() / ("numba-boundscheck" if boundscheck else "numba")


# Numba caches compiled code beside each source file unless told otherwise: an editable
# install would write it into the repository, and an installed one into site-packages. Set
# before anything of ours compiles (and passed on to the processes we start); a
# NUMBA_CACHE_DIR of the user's own is kept.
if not _os.environ.get("NUMBA_CACHE_DIR"):
    _checked = _os.environ.get("NUMBA_BOUNDSCHECK", "").strip() not in ("", "0")
    _os.environ["NUMBA_CACHE_DIR"] = str(numba_cache_dir(_checked))
    if "numba" in _sys.modules:  # imported before us: have it read its settings again
        _sys.modules["numba"].core.config.reload_config()
