"""One compiled event loop per strategy, written once and cached on disk.

Numba will not cache a function specialised on a jitted function passed as
an argument, so each strategy gets its own copy of `engine/loop.py` in which
the callback names point at the strategy's functions, handed to the copy when
it is imported (`_callbacks`). The copy's file name is a hash of everything
that goes into the compiled code (the loop, every source file of the engine,
feeds and backtest, the contents of the strategy's source files, the names
of the modules its code runs in, the Numba and Python versions), so Numba's
cache next to it is reused exactly while nothing changed, and a change
anywhere produces a new copy. A strategy file that is an installed module is
loaded under the module's name by path too (engine.strategy), so the two ways
share one copy.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import os
import platform
import sys
from pathlib import Path
from types import ModuleType

import numba

from tickwise.engine.caches import cache_root, engine_fingerprint

from . import (
    loop,
)
from .errors import TickwiseError
from .jit import pure_python, python_function
from .strategy import CALLBACKS, Strategy, StrategyError, import_as

# The lines of the loop the generator rewrites, exactly as they stand in `engine/loop.py`: each
# must be there once, or the loop is not specialised at all (a formatter or a rename must not
# leave a strategy with another's callback, or the unguarded variant with its kill switch).
CALLBACK_LINE = "_{name} = ignore  # callback: {name}"
_CALLBACKS = "from tickwise.engine.callbacks import"
_UNGUARDED = {
    "_guard_feed = guard_feed_nb  # guard": f"{_CALLBACKS} unguarded_feed as _guard_feed",
    "_guard_market = guard_market_nb  # guard": f"{_CALLBACKS} unguarded_market as _guard_market",
    "_enforce = enforce_nb  # guard": f"{_CALLBACKS} unguarded_enforce as _enforce",
}
_GUARD_KERNELS = ("guard_feed_nb", "guard_market_nb", "enforce_nb")
SUBSTITUTED = "  # <- substituted by engine.loops"
CALLBACKS_GLOBAL = "_callbacks"  # the strategy's callbacks, set in the copy before it runs
# Loops kept in the cache folder, the most recently used (with its compiled code a loop takes
# about 0.5 MB; a run of the test suite uses 17).
MAX_LOOPS = 64


def cache_dir() -> Path:
    """Where specialised loops live: loops/ in $TICKWISE_CACHE, else in ~/.cache/tickwise."""
    return cache_root() / "loops"


def _callback_origin(strategy: type[Strategy], name: str, fn: object) -> tuple[str, str, Path]:
    py_func = python_function(fn)
    if py_func is fn and not pure_python():
        raise StrategyError(f"{strategy.__name__}.{name} must be a @tw.kernel function")
    module_name, qualname = py_func.__module__, py_func.__qualname__
    module = sys.modules.get(module_name)
    if "." in qualname or module is None or getattr(module, qualname, None) is not fn:
        raise StrategyError(
            f"{strategy.__name__}.{name} ({qualname}) must be a @tw.kernel function defined at "
            "the top level of its module"
        )
    return module_name, qualname, Path(inspect.getfile(py_func))


def specialised_source(
    strategy: type[Strategy], guarded: bool = True, template: str | None = None
) -> str:
    """The loop's source (`template`: engine/loop.py's) with the callbacks of `strategy`
    (and, only for measuring what the kill switch costs, without it). Every rewritten line
    ends with SUBSTITUTED; a template whose marked lines are not exactly as expected, or
    that reads a guard kernel other than through the lines rewritten, is refused."""
    origins = {n: _callback_origin(strategy, n, fn) for n, fn in strategy.callbacks().items()}
    text = Path(loop.__file__).read_text() if template is None else template
    lines = text.splitlines()
    wanted = {CALLBACK_LINE.format(name=n): n for n in CALLBACKS}
    if not guarded:
        wanted.update(dict.fromkeys(_UNGUARDED, "guard"))
    for line in wanted:
        if lines.count(line) != 1:
            raise TickwiseError(
                f"engine/loop.py must have the line {line!r} exactly once (it has it "
                f"{lines.count(line)} times): engine.loops cannot specialise the loop"
            )
    out = []
    for line in lines:
        name = wanted.get(line)
        if name in origins:
            # The strategy's function (handed over at import: `_callbacks`, which names no
            # module), compiled again here as a kernel (see engine.jit).
            line = f"_{name} = kernel({CALLBACKS_GLOBAL}[{name!r}])  # callback: {name}"
            line += SUBSTITUTED
        elif name == "guard":
            line = _UNGUARDED[line] + SUBSTITUTED
        out.append(line)
    out.append(f"# specialised for {strategy.__qualname__}")
    source = "\n".join(out) + "\n"
    _check_guards(source, guarded)
    return source


def _check_guards(source: str, guarded: bool) -> None:
    """The loop reaches the kill switch's kernels through the rewritten lines only: read
    anywhere else, the unguarded variant would keep them."""
    reads: dict[str, int] = dict.fromkeys(_GUARD_KERNELS, 0)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in reads:
            reads[node.id] += 1
    expected = 1 if guarded else 0  # (the rewritten line's own read)
    for kernel, count in reads.items():
        if count != expected:
            raise TickwiseError(
                f"engine/loop.py reads {kernel} {count} times where the generator expects "
                f"{expected}: call it through its rewritten line (`_guard_... = {kernel}  "
                f"# guard`) so that the unguarded variant leaves it out"
            )


def strategy_sources(strategy: type[Strategy]) -> set[Path]:
    """The files whose code a strategy's loop compiles in: the strategy's own file, its
    callbacks' files, and those of the kernels and modules they reach (a helper module
    beside the strategy, say); tickwise's own (hashed apart), installed packages' and the
    standard library's aside."""
    return _reach(strategy)[0]


def _reach(strategy: type[Strategy]) -> tuple[set[Path], set[str]]:
    """The files of the user's code a strategy's loop compiles in (`strategy_sources`), and
    the names of the modules that code runs in: Numba's cached code refers to each function's
    module by name (it imports it to rebuild the function's environment)."""
    files: set[Path] = {Path(inspect.getfile(strategy)).resolve()}
    modules: set[str] = {strategy.__module__}
    seen: set[int] = set()
    todo = [python_function(fn) for fn in strategy.callbacks().values()]
    while todo:
        fn = todo.pop()
        if id(fn) in seen or not hasattr(fn, "__code__") or not _users(fn.__module__):
            continue
        seen.add(id(fn))
        files.add(Path(fn.__code__.co_filename).resolve())
        modules.add(fn.__module__)
        for value in fn.__globals__.values():
            if hasattr(value, "py_func"):  # a kernel it may call
                todo.append(value.py_func)
            elif isinstance(value, ModuleType) and _users(value.__name__):
                path = Path(getattr(value, "__file__", None) or "-")
                if path.suffix == ".py" and "site-packages" not in path.resolve().parts:
                    files.add(path.resolve())
                    todo += [v.py_func for v in vars(value).values() if hasattr(v, "py_func")]
    return files, modules


def _users(module_name: str) -> bool:
    """Whether a module is the user's code: not tickwise's engine or face (the built-in
    strategies are users' code like any other), not the standard library."""
    top = module_name.partition(".")[0]
    if top == "tickwise":
        return module_name.startswith("tickwise.strategies.")
    return top not in sys.stdlib_module_names


@functools.cache
def _engine_version() -> str:
    return engine_fingerprint()


def _fingerprint(strategy: type[Strategy], source: str) -> str:
    """A hash of what the loop compiles: its source, the engine's kernels, the contents of the
    strategy's files (not their paths), the modules its code runs in (by name, as Numba's
    cached code refers to them), the versions."""
    h = hashlib.sha256(source.encode())
    h.update(_engine_version().encode())  # every engine source: none can be left out
    files, modules = _reach(strategy)
    for content in sorted(path.read_bytes() for path in files):
        h.update(hashlib.sha256(content).digest())
    h.update(" ".join(sorted(modules)).encode())
    h.update(f"{numba.__version__} {platform.python_version()}".encode())
    return h.hexdigest()[:20]


def compiled_loop(strategy: type[Strategy], guarded: bool = True) -> ModuleType:
    """The loop module specialised for `strategy` (written and imported on first use).
    `guarded=False` leaves the kill switch out: for benchmarks, and for the paper exchange,
    which only matches other sessions' orders; never for a session that trades."""
    source = specialised_source(strategy, guarded)
    digest = _fingerprint(strategy, source)
    name = f"tickwise_loop_{digest}"
    if name in sys.modules:  # (the same code, whichever class of that code compiled it)
        return sys.modules[name]
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    for attempt in range(2):
        try:
            os.utime(path)  # used now: the cache keeps the most recently used
        except FileNotFoundError:
            tmp = path.with_suffix(f".tmp-{os.getpid()}")
            tmp.write_text(source)
            os.replace(tmp, path)  # atomic: concurrent sessions never read half a file
            prune(folder, MAX_LOOPS, _numba_cache())
        try:
            given = {n: python_function(fn) for n, fn in strategy.callbacks().items()}
            return import_as(name, path, {CALLBACKS_GLOBAL: given})
        except FileNotFoundError:  # pruned by another process between the two: write it again
            if attempt:
                raise
    raise AssertionError("unreachable")


def _numba_cache() -> Path | None:
    """NUMBA_CACHE_DIR, where Numba keeps compiled code when it is set (otherwise beside the
    source, in __pycache__)."""
    return Path(numba.config.CACHE_DIR) if numba.config.CACHE_DIR else None


def prune(folder: Path, keep: int, numba_cache: Path | None) -> int:
    """Remove all but the `keep` most recently used loops of `folder`, with their compiled
    code (in folder/__pycache__, or under `numba_cache`: Numba's NUMBA_CACHE_DIR, where a
    folder's files sit in `<folder name>_<hash>/`); returns how many loops were removed."""
    loops = sorted(folder.glob("tickwise_loop_*.py"), key=_mtime, reverse=True)
    caches = [folder / "__pycache__"]
    if numba_cache is not None:
        caches += sorted(numba_cache.glob(f"{folder.name}_*"))
    for old in loops[keep:]:
        for path in [old, *(f for c in caches for f in c.glob(f"{old.stem}.*"))]:
            path.unlink(missing_ok=True)
    return max(0, len(loops) - keep)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # (removed meanwhile)
        return 0.0
