"""One compiled event loop per strategy, written once and cached on disk.

Numba will not cache a function specialised on a jitted function passed as
an argument, so each strategy gets its own copy of `engine/loop.py` in which
the callback names point at the strategy's functions. The copy's file name is
a hash of everything that goes into the compiled code (the loop, the engine
kernels, the strategy's source, the Numba and Python versions), so Numba's
cache next to it is reused exactly while nothing changed, and a change
anywhere produces a new copy.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import platform
import sys
from pathlib import Path
from types import ModuleType

import numba

from . import (
    callbacks,
    context,
    indicators,
    jit,
    killswitch,
    limits,
    loop,
    market,
    orders,
    portfolio,
    risk,
    schemas,
)
from .strategy import Strategy, StrategyError

_ENGINE_SOURCES = (
    loop, callbacks, context, indicators, jit, killswitch, limits, market, orders, portfolio,
    risk, schemas,
)  # fmt: skip

# The kill switch's lines of the loop, and what the benchmark-only unguarded variant has.
_CALLBACKS = "from tickwise.engine.callbacks import"
_UNGUARDED = {
    "_guard_feed = guard_feed_nb  # guard": f"{_CALLBACKS} unguarded_feed as _guard_feed",
    "_guard_market = guard_market_nb  # guard": f"{_CALLBACKS} unguarded_market as _guard_market",
    "_enforce = enforce_nb  # guard": f"{_CALLBACKS} unguarded_enforce as _enforce",
}


def cache_dir() -> Path:
    """Where specialised loops live: $TICKWISE_CACHE, else ~/.cache/tickwise."""
    root = os.environ.get("TICKWISE_CACHE") or Path.home() / ".cache" / "tickwise"
    return Path(root) / "loops"


def _callback_origin(strategy: type[Strategy], name: str, fn: object) -> tuple[str, str, Path]:
    py_func = getattr(fn, "py_func", None)
    if py_func is None:
        raise StrategyError(f"{strategy.__name__}.{name} must be an @njit function")
    module_name, qualname = py_func.__module__, py_func.__qualname__
    module = sys.modules.get(module_name)
    if "." in qualname or module is None or getattr(module, qualname, None) is not fn:
        raise StrategyError(
            f"{strategy.__name__}.{name} ({qualname}) must be an @njit function defined at "
            "the top level of its module"
        )
    return module_name, qualname, Path(inspect.getfile(py_func))


def specialised_source(strategy: type[Strategy], guarded: bool = True) -> str:
    """The loop's source with the callbacks of `strategy` (and, only for measuring what the
    kill switch costs, without it)."""
    origins = {n: _callback_origin(strategy, n, fn) for n, fn in strategy.callbacks().items()}
    lines = []
    for line in Path(loop.__file__).read_text().splitlines():
        marker = line.partition("# callback: ")[2].strip()
        if marker in origins:
            # The strategy's function, compiled again here as a kernel (see engine.jit).
            module_name, qualname, _ = origins[marker]
            lines.append(f"from {module_name} import {qualname} as _strategy_{marker}")
            line = f"_{marker} = kernel(_strategy_{marker}.py_func)  # callback: {marker}"
        if not guarded and line in _UNGUARDED:
            line = _UNGUARDED[line]
        lines.append(line)
    lines.append(f"# specialised for {strategy.__module__}.{strategy.__qualname__}")
    return "\n".join(lines) + "\n"


def _fingerprint(strategy: type[Strategy], source: str) -> str:
    h = hashlib.sha256(source.encode())
    files = {Path(inspect.getfile(m)) for m in _ENGINE_SOURCES}
    files.add(Path(inspect.getfile(sys.modules["tickwise.backtest.matching"])))
    files.add(Path(inspect.getfile(strategy)))
    for n, fn in strategy.callbacks().items():
        files.add(_callback_origin(strategy, n, fn)[2])
    for path in sorted(files):
        h.update(str(path).encode())
        h.update(path.read_bytes())
    h.update(f"{numba.__version__} {platform.python_version()}".encode())
    return h.hexdigest()[:20]


def compiled_loop(strategy: type[Strategy], guarded: bool = True) -> ModuleType:
    """The loop module specialised for `strategy` (written and imported on first use).
    `guarded=False` leaves the kill switch out: for benchmarks, and for the paper exchange,
    which only matches other sessions' orders; never for a session that trades."""
    source = specialised_source(strategy, guarded)
    digest = _fingerprint(strategy, source)
    name = f"tickwise_loop_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    if not path.exists():
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(source)
        os.replace(tmp, path)  # atomic: concurrent sessions never read half a file
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
