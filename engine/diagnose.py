"""A strategy's compile errors said in one paragraph: the file, the line, the rule broken.

Numba reports a mistake in a callback as its own pipeline's story, pages long and
ending in the generated loop that called the callback. What a strategy author
needs is the line of their code and what to do instead. Mistakes that can be
told without compiling are caught before (`engine.strategy.check_code`); this
reads the rest out of Numba's message. An error it cannot place in the user's
code is left as it was: that is a bug of ours, and keeps its traceback.
"""

from __future__ import annotations

import linecache
import re
from pathlib import Path

from tickwise.engine.strategy import Strategy, StrategyError

# (what Numba says, what the rule is): the first that matches explains the error.
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"Untyped global name '(?P<name>\w+)': Cannot determine Numba type of "
            r"<class 'function'>"
        ),
        "calls {name}(), a plain Python function: compiled code calls only kernels; decorate "
        "{name} with @tw.kernel (it then follows the same rules)",
    ),
    (
        re.compile(r"Untyped global name '(?P<name>\w+)'"),
        "uses the global {name}, which compiled code cannot use: a kernel reads numbers, "
        "arrays, kernels and the tickwise API; pass other values in as parameters or state",
    ),
    (
        re.compile(r"Unknown attribute '(?P<name>\w+)' of type Params__"),
        "reads the parameter {name}, which {strategy} does not declare (its parameters: {params})",
    ),
    (
        re.compile(r"Unknown attribute '(?P<name>\w+)' of type State__"),
        "reads the state {name}, which {strategy} does not declare (its state: {state})",
    ),
    (
        re.compile(
            r"Only accept returning of array passed into the function|NRT required|"
            r"resolving callee type: Function\(<(built-in )?function (empty|zeros|ones|"
            r"full|array|arange|copy|concatenate|empty_like|zeros_like)\b"
        ),
        "allocates memory (a new array, list, dict or string): per-event code allocates "
        "nothing; declare the array as state (tw.PerInstrument, tw.Scalar) and write into it",
    ),
    (
        re.compile(r"No implementation of function (?P<name>.+?) found for signature"),
        "calls {name} with arguments of types it does not take",
    ),
)
_AT = re.compile(r"During: (?:typing of|lowering) [^\n]*? at (?P<path>\S+?\.py) \((?P<line>\d+)\)")


def explain(exc: BaseException, strategy: type[Strategy], engine_paths: tuple[Path, ...]
            ) -> StrategyError | None:  # fmt: skip
    """The one-paragraph StrategyError for a compile error in the strategy's code, or None
    when it cannot be placed in the user's code (`engine_paths`: folders that are not)."""
    text = str(exc)
    place = None
    for match in _AT.finditer(text):
        path = Path(match["path"]).resolve()
        if not any(p == path or p in path.parents for p in engine_paths):
            place = (path, int(match["line"]))
            break
    if place is None:
        return None
    what = "breaks a rule of compiled code: " + _first_line(text)
    for pattern, rule in _RULES:
        found = pattern.search(text)
        if found:
            what = rule.format(
                **found.groupdict(), strategy=strategy.__name__,
                params=", ".join(strategy.params) or "none",
                state=", ".join(strategy.state) or "none",
            )  # fmt: skip
            break
    path, line = place
    source = linecache.getline(str(path), line).strip()
    return StrategyError(f"{path}:{line}: {strategy.__name__} {what}\n    {source}")


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Failed in", "During:", "File "))]
    return (useful or lines or ["(no message)"])[0]
