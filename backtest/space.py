"""The parameter space of a sweep: what each swept parameter may take, and its points.

A dimension is written as on the command line (`--grid window=50:500:50`):

- `a,b,c`: these values (a list);
- `a:b:step`: from a to b (inclusive when b is on the step) by step; a grid's axis;
- `a:b`: any value from a to b (searches only: a grid needs a step);
- `a:b:log`: any value from a to b, drawn evenly in its logarithm (searches only).

Values take the parameter's type (`Param`) and are checked against its bounds
before anything runs, so a mistyped range is refused with its key, never
discovered trial by trial. Steps are decimal: `0.1:0.3:0.1` is 0.1, 0.2, 0.3,
not 0.30000000000000004. A grid's points are the product of its axes in the
order they were given, the last axis fastest; its trial ids count them so.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from tickwise.engine.errors import TickwiseError
from tickwise.engine.strategy import Param, Strategy, StrategyError

MAX_GRID_POINTS = 10_000_000  # a grid larger than this is a typo, not a plan


class SpaceError(TickwiseError):
    """A swept parameter written in a way that cannot be read or does not fit the strategy."""


@dataclass(frozen=True)
class Dimension:
    """One swept parameter: its values (a list, or a stepped range), or a continuous range
    from `low` to `high` (`log`: drawn evenly in the logarithm)."""

    name: str
    type: type  # int, float or bool: the parameter's
    values: tuple[Any, ...] | None = None  # every value (lists and stepped ranges)
    low: float | int | None = None  # ranges: the bounds, inclusive
    high: float | int | None = None
    step: float | int | None = None  # stepped ranges: the step
    log: bool = False

    @property
    def discrete(self) -> bool:
        return self.values is not None

    def text(self) -> str:
        """The dimension as it would be written on the command line."""
        if self.values is not None and self.step is None:
            return ",".join(_show(v) for v in self.values)
        tail = f":{_show(self.step)}" if self.step is not None else ":log" if self.log else ""
        return f"{_show(self.low)}:{_show(self.high)}{tail}"


def _show(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else repr(value)


def parse_dimension(strategy: type[Strategy], name: str, spec: Any) -> Dimension:
    """A dimension of `strategy`'s parameter `name` from its text (`a:b:step`, `a,b`, `a:b`,
    `a:b:log`) or, from Python, a list, tuple or range of values."""
    param = strategy.params.get(name)
    if param is None:
        known = ", ".join(strategy.params) or "none"
        raise SpaceError(f"{strategy.name()} has no parameter {name!r} to sweep; its "
                         f"parameters: {known}")  # fmt: skip
    where = f"{name}={spec}" if isinstance(spec, str) else f"{name}"
    if not isinstance(spec, str):
        if not isinstance(spec, Sequence | range) or isinstance(spec, bytes):
            raise SpaceError(f"{where}: give a list of values or a text such as 'a:b:step', "
                             f"not a {type(spec).__name__}")  # fmt: skip
        if len(spec) > MAX_GRID_POINTS:
            raise SpaceError(f"{where}: {len(spec):,} values; at most {MAX_GRID_POINTS:,}")
        return _values(strategy, param, name, where, list(spec))
    text = spec.strip()
    if not text:
        raise SpaceError(f"{name}=: no values (write a,b,c or a:b:step)")
    if ":" not in text:
        return _values(strategy, param, name, where, [v.strip() for v in text.split(",")])
    parts = [p.strip() for p in text.split(":")]
    if len(parts) not in (2, 3):
        raise SpaceError(f"{where}: a range is a:b, a:b:step or a:b:log")
    if param.type is bool:
        raise SpaceError(f"{where}: {name} is true or false; list the values (true,false)")
    low, high = (_checked(strategy, param, name, where, p) for p in parts[:2])
    if not low < high:
        raise SpaceError(f"{where}: the range must go up ({parts[0]} is not below {parts[1]})")
    if len(parts) == 2:
        return Dimension(name, param.type, low=low, high=high)
    if parts[2].lower() == "log":
        if not low > 0:
            raise SpaceError(f"{where}: a log range must be above zero")
        return Dimension(name, param.type, low=low, high=high, log=True)
    return _stepped(strategy, param, name, where, parts)


def _values(strategy: type[Strategy], param: Param, name: str, where: str,
            raw: list[Any]) -> Dimension:  # fmt: skip
    if not raw or any(v == "" for v in raw):
        raise SpaceError(f"{where}: an empty value (write a,b,c)")
    values = tuple(_checked(strategy, param, name, where, v) for v in raw)
    if len(set(values)) != len(values):
        raise SpaceError(f"{where}: a value is listed twice")
    return Dimension(name, param.type, values=values)


def _stepped(strategy: type[Strategy], param: Param, name: str, where: str,
             parts: list[str]) -> Dimension:  # fmt: skip
    try:
        low, high, step = (Decimal(p) for p in parts)
    except InvalidOperation:
        raise SpaceError(f"{where}: a:b:step needs three numbers (or a:b:log)") from None
    if not all(x.is_finite() for x in (low, high, step)):
        raise SpaceError(f"{where}: a:b:step needs three finite numbers")
    if not step > 0:
        raise SpaceError(f"{where}: the step must be above zero")
    if param.type is int and any(x != x.to_integral_value() for x in (low, high, step)):
        raise SpaceError(f"{where}: {name} is a whole number, so are its range and step")
    try:
        count = (high - low) / step
        too_many = not count < MAX_GRID_POINTS
    except ArithmeticError:  # (decimal overflow: a step of 1e-99999999)
        too_many = True
    if too_many:
        raise SpaceError(f"{where}: more than {MAX_GRID_POINTS:,} values; use a larger step")
    count = int(count) + 1
    values = tuple(_checked(strategy, param, name, where, str(low + k * step))
                   for k in range(count))  # fmt: skip
    kind = param.type
    return Dimension(name, kind, values=values, low=values[0], high=values[-1],
                     step=kind(step))  # fmt: skip


def _checked(strategy: type[Strategy], param: Param, name: str, where: str, value: Any) -> Any:
    try:
        return param.check(name, value)
    except StrategyError as exc:
        raise SpaceError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class Space:
    """The swept dimensions in the order given; every other parameter is fixed."""

    dimensions: tuple[Dimension, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dimensions)

    def grid_size(self) -> int:
        """How many points the grid has; a SpaceError if a dimension has no step."""
        ranges = [d.name for d in self.dimensions if not d.discrete]
        if ranges:
            raise SpaceError(
                f"a grid needs every value: {', '.join(ranges)} is a range without a step "
                "(write a:b:step, or a list a,b,c; or search it with --random N / --trials N)"
            )
        size = math.prod(len(d.values or ()) for d in self.dimensions)
        if size > MAX_GRID_POINTS:
            raise SpaceError(f"a grid of {size:,} points; at most {MAX_GRID_POINTS:,} (a "
                             "larger step, or a search: --random N / --trials N)")  # fmt: skip
        return size

    def grid(self) -> Iterator[dict[str, Any]]:
        """Every point of the grid, the last dimension fastest."""
        self.grid_size()
        names = self.names
        for combo in itertools.product(*(d.values for d in self.dimensions)):
            yield dict(zip(names, combo, strict=True))


def parse_space(strategy: type[Strategy], specs: Mapping[str, Any]) -> Space:
    """The space of `strategy` from {name: spec} (command line texts or Python values)."""
    if not specs:
        raise SpaceError("nothing to sweep: give at least one parameter (--grid name=a:b:step)")
    return Space(tuple(parse_dimension(strategy, n, s) for n, s in specs.items()))


def parse_assignments(texts: Sequence[str], flag: str) -> dict[str, str]:
    """`name=spec` texts from the command line, in order, each name once."""
    out: dict[str, str] = {}
    for text in texts:
        name, sep, spec = text.partition("=")
        name = name.strip()
        if not sep or not name:
            raise SpaceError(f"{flag} {text!r}: write {flag} name=a:b:step (or name=a,b,c)")
        if name in out:
            raise SpaceError(f"{flag}: {name} is given twice")
        out[name] = spec
    return out
