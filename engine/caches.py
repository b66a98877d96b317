"""Where tickwise keeps what it compiles: out of the source tree, in the user's cache folder.

Numba caches compiled code beside each source file unless told otherwise: an
editable install would write it into the repository, an installed one into
site-packages. `use_own_numba_cache` points Numba at a folder of
`~/.cache/tickwise` named for the engine's code (below) before anything of ours
compiles (and the processes we start inherit it).

Numba checks a cached function against its own source file only, while a kernel
carries the code of the kernels it calls from other files (they are inlined):
after a change to `risk.py`, the kill switch's cached kernels in `killswitch.py`
would still run the old gate. So compiled code lives in a folder named by a hash
of every source file of the engine, the feeds and the backtester: any change
compiles everything again, once, and the folders of the few engine versions
used last are kept.

Numba's cache is not safe for processes writing it at once (numba#10128): a
writer reads the index, takes the next free file number and writes the index
back, so two processes compiling different overloads of one kernel can take
the same number, and the index then sends one signature to the other's code.
That code is loaded and called with the wrong types (a typing error at best, a
segmentation fault at worst), and every later run loads it again. Test workers,
sweep workers and a live session's processes compile the engine's kernels for
different strategies at the same time, so `lock_numba_cache_index` makes each
write of an index a critical section (an exclusive `flock` on a file beside
the index; readers take it shared) and refuses an entry whose code is not of
the signature it is filed under.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.abc
import importlib.util
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

KEEP_VERSIONS = 4  # compiled code of this many engine versions is kept (the most recent)


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
    tell checked code from unchecked (a checked run would load unchecked code), for each
    format of compiled code, and for each version of the engine's code."""
    kind = f"numba{'-boundscheck' if boundscheck else ''}-{COMPILED_FORMAT}"
    return cache_root() / kind / engine_fingerprint()


@cache
def engine_fingerprint(root: Path | None = None) -> str:
    """A hash of the contents of every source file of engine/, feeds/ and backtest/ under
    `root` (this installation's by default: the code compiled kernels are made of), for
    naming the cache of their compiled code."""
    root = root or Path(__file__).resolve().parent.parent  # engine/.. : engine, feeds, ...
    h = hashlib.sha256()
    for package in ("engine", "feeds", "backtest"):
        for path in sorted((root / package).rglob("*.py")):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def prune_versions(folder: Path, keep: int = KEEP_VERSIONS) -> None:
    """Remove the compiled code of all but the `keep` engine versions used last (each
    version's folder is touched when a process starts with it)."""
    try:
        versions = sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    except FileNotFoundError:
        return
    for old in versions[keep:]:
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)


@contextmanager
def _index_lock(index_path: str, exclusive: bool) -> Iterator[None]:
    """Hold a lock on the cache index at `index_path` (a `.lock` file beside it): exclusive
    for a writer, shared for a reader. Where the lock file cannot be made (no cache folder
    yet, a read-only one) nobody can be writing there, and nothing is locked."""
    fd = -1
    for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):  # (flock works on either)
        try:
            fd = os.open(index_path + ".lock", flags, 0o644)
            break
        except OSError:
            continue
    try:
        if fd >= 0:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        if fd >= 0:
            os.close(fd)  # releases the lock


def _filed_right(key: Any, data: Any) -> bool:
    """Whether cached `data` (a reduced compile result: its fourth item is its signature)
    holds the code of the signature `key` files it under (an argument tuple, a signature
    or its text, as given to `Dispatcher.compile`). Other kinds of cached data (of cfuncs,
    ufuncs), or a key of another shape, are not judged: the entry is taken as Numba would."""
    if not (isinstance(data, tuple) and len(data) > 3 and hasattr(data[3], "args")):
        return True
    try:
        from numba.core import sigutils

        args = key[0] if isinstance(key[0], tuple) else sigutils.normalize_signature(key[0])[0]
        return tuple(data[3].args) == tuple(args)
    except Exception:  # (never fail a load over this check)
        return True


def lock_numba_cache_index() -> None:
    """Make Numba's on-disk cache safe for processes compiling at once (see the module's
    docstring): a write of an index and its data is done under an exclusive lock, a read
    under a shared one, and an entry filed under the wrong signature is treated as missing
    (compiled again, and filed right). Installed once per process, before anything
    compiles: at once if Numba is loaded, else as Numba's cache module loads (importing
    tickwise must not load Numba: `tickwise kill` answers at once)."""
    caching = sys.modules.get("numba.core.caching")
    if caching is not None:
        _lock_index_files(caching)
    elif not any(isinstance(f, _LockOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _LockOnImport())


class _LockOnImport(importlib.abc.MetaPathFinder):
    """Locks Numba's cache index (`_lock_index_files`) as soon as its module has loaded."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "numba.core.caching":
            return None
        sys.meta_path.remove(self)  # (once; and the search below must not find us again)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            run(module)
            _lock_index_files(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _lock_index_files(caching: Any) -> None:
    files = caching.IndexDataCacheFile
    if getattr(files, "_tickwise_locked", False):
        return
    save, load = files.save, files.load

    def locked_save(self: Any, key: Any, data: Any) -> None:
        with _index_lock(self._index_path, exclusive=True):
            save(self, key, data)

    def locked_load(self: Any, key: Any) -> Any:
        with _index_lock(self._index_path, exclusive=False):
            data = load(self, key)
        return data if data is None or _filed_right(key, data) else None

    files.save, files.load = locked_save, locked_load
    files._tickwise_locked = True


def use_own_numba_cache() -> None:
    """Set NUMBA_CACHE_DIR to tickwise's cache unless the user set one of their own; with
    TICKWISE_PURE_PYTHON=1, compile nothing (NUMBA_DISABLE_JIT=1: kernels run as Python,
    for pdb and coverage). Either way, Numba's cache is made safe for concurrent processes
    (lock_numba_cache_index)."""
    lock_numba_cache_index()
    changed = False
    if _flag("TICKWISE_PURE_PYTHON") and not _flag("NUMBA_DISABLE_JIT"):
        os.environ["NUMBA_DISABLE_JIT"] = "1"
        changed = True
    if not os.environ.get("NUMBA_CACHE_DIR"):
        folder = numba_cache_dir(_flag("NUMBA_BOUNDSCHECK"))
        os.environ["NUMBA_CACHE_DIR"] = str(folder)
        changed = True
        try:
            folder.mkdir(parents=True, exist_ok=True)
            os.utime(folder)  # in use now: pruning keeps the versions used last
            prune_versions(folder.parent)
        except OSError:  # a read-only home: Numba says so when it tries to write
            pass
    if changed and "numba" in sys.modules:  # imported before us: read the settings again
        sys.modules["numba"].core.config.reload_config()


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip() not in ("", "0")
