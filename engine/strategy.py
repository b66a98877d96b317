"""The strategy plugin contract: a small class naming parameters, state and compiled callbacks.

A quant writes `@njit` callbacks at module level and a `Strategy` subclass
that points at them; nothing in `engine/` changes to add one. Strategies are
found by name through the entry-point group `tickwise.strategies`, or loaded
from a file with `path/to/file.py:ClassName`, or from an import path
`package.module:ClassName`.

Callbacks take `(ctx, event, st, p)`: `ctx` is the engine (ask and act with
the functions of `import tickwise as tw`), `event` the record (`q.bid_px`, `t.side`),
`st` the strategy's state arrays by name, `p` its parameters by name.
"""

from __future__ import annotations

import ast
import builtins
import difflib
import hashlib
import importlib
import importlib.util
import inspect
import math
import re
import sys
import textwrap
import types
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from .errors import TickwiseError
from .indicators import new_windows
from .jit import pure_python, python_function
from .schemas import KINDS, TIF_GTC, TIF_IOC

GTC = TIF_GTC  # good till cancelled (the default for limit orders)
IOC = TIF_IOC  # immediate or cancel: fill what can be filled now, cancel the rest

ENTRY_POINT_GROUP = "tickwise.strategies"
CALLBACKS = ("on_quote", "on_trade", "on_bar", "on_book", "on_fill", "on_timer")
_KIND_CALLBACK = {"quotes": "on_quote", "trades": "on_trade", "bars": "on_bar", "book": "on_book"}


class StrategyError(TickwiseError):
    """A strategy that cannot be found, loaded or configured as asked."""


@dataclass(frozen=True)
class Param:
    """A parameter: its default, optional inclusive bounds and what it means.

    Its type (bool, int or float) is the default's type; a value given as text
    (`--param k=v`) is converted to it.
    """

    default: float | int | bool
    low: float | None = None
    high: float | None = None
    doc: str = ""

    @property
    def type(self) -> type:
        return type(self.default)

    def check(self, name: str, value: Any) -> float | int | bool:
        """The value converted to the parameter's type, or a StrategyError saying why not."""
        value = self._convert(name, value)
        if self.type is not bool:
            if isinstance(value, float) and not math.isfinite(value):
                raise StrategyError(f"parameter {name}={value} must be finite")
            if isinstance(value, int) and not -(2**63) <= value < 2**63:
                raise StrategyError(f"parameter {name}={value} does not fit 64 bits")
            if self.low is not None and value < self.low:
                raise StrategyError(f"parameter {name}={value} is below its minimum {self.low}")
            if self.high is not None and value > self.high:
                raise StrategyError(f"parameter {name}={value} is above its maximum {self.high}")
        return value

    def _convert(self, name: str, value: Any) -> float | int | bool:
        kind = self.type
        if isinstance(value, str):
            text = value.strip()
            try:
                if kind is bool:
                    if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError(text)
                    return text.lower() in ("true", "1", "yes")
                return kind(float(text)) if kind is float else int(text)
            except ValueError:
                raise StrategyError(
                    f"parameter {name}={value!r} is not a valid {kind.__name__}"
                ) from None
        if kind is bool and isinstance(value, bool):
            return value
        if kind is int and isinstance(value, int | np.integer) and not isinstance(value, bool):
            return int(value)
        if (
            kind is float
            and isinstance(value, int | float | np.number)
            and not isinstance(value, bool)
        ):
            return float(value)
        raise StrategyError(
            f"parameter {name}={value!r} is a {type(value).__name__}, expected {kind.__name__}"
        )


@dataclass(frozen=True)
class PerInstrument:
    """State with one slot per instrument (or a row of `window` slots, for rolling values).

    `window` is a number or the name of an int parameter that sizes it.
    """

    dtype: type = float
    fill: float = 0.0
    window: int | str | None = None


@dataclass(frozen=True)
class Scalar:
    """A single value of state (a one-element array, so compiled code can update it)."""

    dtype: type = float
    fill: float = 0.0


@dataclass(frozen=True)
class Rolling:
    """A rolling window per instrument (or a single one, `per_instrument=False`) for the
    `engine.indicators` functions; `window` is a number or the name of an int parameter.

    `prices=True` declares a window of the instrument's prices (quote mids, bar closes,
    trade prices): it keeps them as whole half-ticks in exact integer sums, so that its
    means and z-scores decide ties as exact arithmetic does (engine.indicators). A price
    window is per instrument (it needs that instrument's tick)."""

    window: int | str
    per_instrument: bool = True
    prices: bool = False


class Strategy:
    """Base class of strategy plugins. Subclasses set the class attributes below."""

    params: ClassVar[dict[str, Param]] = {}
    state: ClassVar[dict[str, PerInstrument | Scalar | Rolling]] = {}
    # Subscriptions: which record kinds the strategy is called on, and which instruments
    # (ids or symbols; None for all). The market state of every instrument is kept anyway.
    kinds: ClassVar[tuple[str, ...]] = ("quotes",)
    instruments: ClassVar[tuple[int | str, ...] | None] = None
    on_quote: ClassVar[Any] = None
    on_trade: ClassVar[Any] = None
    on_bar: ClassVar[Any] = None
    on_book: ClassVar[Any] = None
    on_fill: ClassVar[Any] = None
    # `on_timer(ctx, now, st, p)` runs every `timer_ms` of event time (a number, or the
    # name of a parameter), before the first event at or after each multiple of it.
    on_timer: ClassVar[Any] = None
    timer_ms: ClassVar[float | str | None] = None

    @classmethod
    def name(cls) -> str:
        """The registered name: the class name in snake case unless `strategy_name` is set."""
        explicit = cls.__dict__.get("strategy_name")
        return explicit or re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()

    @classmethod
    def summary(cls) -> str:
        """The first line of the docstring."""
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    @classmethod
    def callbacks(cls) -> dict[str, Any]:
        """The compiled callbacks the class points at, by name (missing ones left out)."""
        return {name: getattr(cls, name) for name in CALLBACKS if getattr(cls, name) is not None}

    @classmethod
    def validate(cls) -> None:
        """Check the class itself: kinds known, a callback for each kind, state well formed."""
        label = f"strategy {cls.__name__}"
        unknown = [k for k in cls.kinds if k not in KINDS]
        if unknown or not cls.kinds:
            raise StrategyError(f"{label}: kinds {unknown or '()'} invalid; use {', '.join(KINDS)}")
        for kind in cls.kinds:
            if getattr(cls, _KIND_CALLBACK[kind]) is None:
                raise StrategyError(
                    f"{label} subscribes to {kind} but sets no {_KIND_CALLBACK[kind]}"
                )
        if (cls.on_timer is None) != (cls.timer_ms is None):
            raise StrategyError(f"{label}: on_timer and timer_ms go together")
        if isinstance(cls.timer_ms, str) and cls.timer_ms not in cls.params:
            raise StrategyError(f"{label}: timer_ms {cls.timer_ms!r} is not a parameter")
        for name, spec in cls.state.items():
            window = getattr(spec, "window", None)
            if isinstance(window, str) and (
                window not in cls.params or cls.params[window].type is not int
            ):
                raise StrategyError(f"{label}: state {name} window {window!r} is not an int param")
            if isinstance(spec, Rolling) and spec.prices and not spec.per_instrument:
                raise StrategyError(
                    f"{label}: state {name} is a window of prices, so it must be per instrument "
                    "(each has its tick); a window of other values (a spread) sets prices=False"
                )

    @classmethod
    def resolve_params(cls, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults overlaid with `overrides`, each checked; unknown names are refused."""
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(cls.params))
        if unknown:
            known = ", ".join(cls.params) or "none"
            raise StrategyError(
                f"{cls.name()} has no parameter {', '.join(unknown)}; its parameters: {known}"
            )
        params = {
            name: spec.check(name, overrides.get(name, spec.default))
            for name, spec in cls.params.items()
        }
        problem = cls.check_params(params)
        if problem:
            raise StrategyError(f"{cls.name()}: {problem}")
        return params

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> str | None:
        """Override to check parameters against each other; return what is wrong, or None."""
        return None

    @classmethod
    def timer_ns(cls, params: Mapping[str, Any]) -> int:
        """The timer period in nanoseconds (0 without a timer)."""
        if cls.timer_ms is None:
            return 0
        ms = params[cls.timer_ms] if isinstance(cls.timer_ms, str) else cls.timer_ms
        if not ms > 0:
            raise StrategyError(f"{cls.name()}: timer_ms must be positive, got {ms}")
        return round(ms * 1_000_000)

    @classmethod
    def new_state(
        cls,
        n_instruments: int,
        params: Mapping[str, Any],
        tick_sizes: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Fresh state arrays, sized for `n_instruments` ids; `tick_sizes` (by id, NaN for an
        id without an instrument) is what windows of prices need."""
        arrays = {}
        for name, spec in cls.state.items():
            window = getattr(spec, "window", None)
            if isinstance(window, str):
                window = params[window]
            if window is not None and window < 1:
                raise StrategyError(f"{cls.name()}: state {name} needs a window of at least 1")
            if isinstance(spec, Rolling):
                if spec.prices and tick_sizes is None:
                    raise StrategyError(
                        f"{cls.name()}: state {name} is a window of prices; new_state needs the "
                        "instruments' tick sizes"
                    )
                rows = n_instruments if spec.per_instrument else 1
                ticks = tick_sizes if spec.prices else None
                arrays[name] = new_windows(rows, int(window), ticks)
                continue
            if isinstance(spec, Scalar):
                shape: tuple[int, ...] = (1,)
            elif window is None:
                shape = (n_instruments,)
            else:
                shape = (n_instruments, int(window))
            arrays[name] = np.full(shape, spec.fill, dtype=spec.dtype)
        return arrays


# --- checking a strategy's code before compiling it -----------------------------------------

_RECORDS = {"on_quote": "q", "on_trade": "t", "on_bar": "b", "on_book": "d", "on_fill": "f",
            "on_timer": "now"}  # fmt: skip


def _where(fn: Any, node: ast.AST | None = None) -> str:
    """file:line of a function (or of a node of its source, as parsed by `_tree`)."""
    code = fn.__code__
    line = code.co_firstlineno + (node.lineno - 1 if node is not None else 0)
    return f"{code.co_filename}:{line}"


def _tree(fn: Any) -> ast.FunctionDef | None:
    """The function's own definition, parsed from its source (None without a source)."""
    try:
        source = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return None
    node = ast.parse(source).body[0]
    return node if isinstance(node, ast.FunctionDef) else None


def check_code(cls: type[Strategy]) -> None:
    """What can be told of a strategy's callbacks without compiling them, each mistake as a
    StrategyError naming the file, the line and the rule: a callback taking other than
    (ctx, record, st, p); a parameter or state read that the class does not declare; a
    `tw.name` the public API does not have; a plain Python function called from a kernel."""
    tickwise = sys.modules["tickwise"]  # (the face, loaded with any of tickwise's modules)
    pure = pure_python()
    face = set(tickwise.__all__)
    label = cls.__name__
    for name, kernel_fn in cls.callbacks().items():
        fn = python_function(kernel_fn)
        args = list(inspect.signature(fn).parameters.values())
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        if len(args) != 4 or any(a.kind not in positional or a.default is not a.empty
                                 for a in args):  # fmt: skip
            wanted = f"(ctx, {_RECORDS[name]}, st, p)"
            raise StrategyError(
                f"{_where(fn, _tree(fn))}: {label}.{name} must take {wanted}; {fn.__name__} takes "
                f"({', '.join(a.name for a in args)})"
            )
        tree = _tree(fn)
        if tree is None:
            continue
        st_name, p_name = args[2].name, args[3].name
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)):
                continue
            owner, attr = node.value.id, node.attr
            if owner == p_name and attr not in cls.params:
                known = ", ".join(cls.params) or "none"
                raise StrategyError(
                    f"{_where(fn, node)}: {label}.{name} reads {p_name}.{attr}, but {label} has "
                    f"no parameter {attr!r} (its parameters: {known})"
                )
            if owner == st_name and attr not in cls.state:
                known = ", ".join(cls.state) or "none"
                raise StrategyError(
                    f"{_where(fn, node)}: {label}.{name} reads {st_name}.{attr}, but {label} "
                    f"declares no state {attr!r} (its state: {known})"
                )
    for fn in _kernels_of(cls):
        tree = _tree(fn)
        if tree is None:
            continue
        local = {a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)} | {
            n.id
            for n in ast.walk(tree)
            if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Name)
                and isinstance(node.ctx, ast.Load)
                and not (
                    node.id in local or node.id in fn.__globals__ or hasattr(builtins, node.id)
                )
            ):
                raise StrategyError(
                    f"{_where(fn, node)}: {fn.__name__} uses {node.id}, which is defined "
                    "neither in the function nor in its module"
                )
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                module = fn.__globals__.get(node.value.id)
                if module is tickwise and node.attr not in face:
                    close = difflib.get_close_matches(node.attr, face, n=1)
                    hint = f" (did you mean {node.value.id}.{close[0]}?)" if close else ""
                    raise StrategyError(
                        f"{_where(fn, node)}: {fn.__name__} uses {node.value.id}.{node.attr}, "
                        f"which is not part of tickwise's strategy API{hint}"
                    )
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                target = fn.__globals__.get(node.func.id)
                # (in pure Python nothing is compiled, and a kernel is a plain function too)
                if isinstance(target, types.FunctionType) and _users_code(target) and not pure:
                    raise StrategyError(
                        f"{_where(fn, node)}: {fn.__name__} calls {node.func.id}(), a plain "
                        "Python function: compiled code calls only kernels. Decorate "
                        f"{node.func.id} with @tw.kernel (it then follows the same rules)"
                    )


def _kernels_of(cls: type[Strategy]) -> list[Any]:
    """The Python functions of the kernels a strategy's module defines (its callbacks and
    their helpers)."""
    module = sys.modules.get(cls.__module__)
    callbacks = [python_function(fn) for fn in cls.callbacks().values()]
    found = {id(fn): fn for fn in callbacks}
    for value in vars(module).values() if module else ():
        py_func = getattr(value, "py_func", None)
        if py_func is not None and py_func.__module__ == cls.__module__:
            found[id(py_func)] = py_func
    return list(found.values())


def _users_code(fn: types.FunctionType) -> bool:
    """Whether a plain function is the user's (not a library's, which compiled code may call
    when Numba knows it, as numpy's)."""
    top = fn.__module__.partition(".")[0] if fn.__module__ else ""
    path = Path(fn.__code__.co_filename)
    return top not in sys.stdlib_module_names and "site-packages" not in path.parts


# --- finding strategies -------------------------------------------------------------------


def registered() -> dict[str, type[Strategy]]:
    """Strategies registered through the `tickwise.strategies` entry-point group, by name."""
    found = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plugin must not hide the others
            raise StrategyError(f"strategy {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
        found[ep.name] = cls
    return dict(sorted(found.items()))


def load_strategy(spec: str) -> type[Strategy]:
    """A strategy class from a registered name, `file.py:Class` or `package.module:Class`."""
    if ":" not in spec:
        table = registered()
        if spec not in table:
            raise StrategyError(
                f"unknown strategy {spec!r}; registered: {', '.join(table) or 'none'} "
                "(or give path/to/file.py:ClassName)"
            )
        cls = table[spec]
    else:
        where, _, class_name = spec.rpartition(":")
        module = _load_file(Path(where)) if where.endswith(".py") else _import(where)
        cls = getattr(module, class_name, None)
        if cls is None:
            raise StrategyError(f"{where} defines no {class_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise StrategyError(f"{spec} is not a tickwise Strategy subclass")
    cls.validate()
    check_code(cls)
    return cls


def _import(module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise StrategyError(f"cannot import {module_name}: {exc}") from None


def _load_file(path: Path) -> Any:
    """Import a strategy file under a stable module name (so compiled code can be cached):
    the name it is installed under when it is a registered plugin's module (the same
    compiled loop by path as by name), else one made from its contents."""
    if not path.is_file():
        raise StrategyError(f"{path}: no such strategy file")
    path = path.resolve()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        module_name = ep.value.partition(":")[0]
        try:
            spec = importlib.util.find_spec(module_name)
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.origin and Path(spec.origin).resolve() == path:
            return _import(module_name)
    # Named by its contents: an edited file is new code under a new name (never the module
    # loaded before the edit), and a copy elsewhere is the same code under the same name
    # (one compiled loop: Numba's cached code names the modules it runs in).
    digest = hashlib.sha1(path.read_bytes()).hexdigest()[:10]
    stem = re.sub(r"\W", "_", path.stem)
    name = f"tickwise_user_{stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    # Its folder joins the import path (after everything else, so it never shadows a
    # module), as running the file would: a strategy may import a module beside it.
    if str(path.parent) not in sys.path:
        sys.path.append(str(path.parent))
    try:
        return import_as(name, path)
    except Exception as exc:
        raise StrategyError(f"{path}: failed to load: {type(exc).__name__}: {exc}") from exc


def import_as(name: str, path: Path, given: Mapping[str, Any] | None = None) -> ModuleType:
    """Import the Python file at `path` as module `name` (in sys.modules, where compiled code
    finds it again; taken out again when running the file fails), with the names `given`
    already defined in it."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    module.__dict__.update(given or {})
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
