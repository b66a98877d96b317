"""Searching a space with Optuna: random, TPE, CMA-ES, NSGA-II.

The sampler is asked for a fixed number of points at a time (`batch`), they
run in parallel, and their results are told back in trial order before the
next batch is asked for. What the sampler sees therefore depends on the seed
and the results alone, never on how many workers ran them or which finished
first: the same seed gives the same trials for 1, 2 or 64 workers, and a
resumed sweep asks the sampler the same questions again, answering those
already stored from the store.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tickwise.engine.errors import TickwiseError

from .space import Dimension, Space

SAMPLERS = ("random", "tpe", "cmaes", "nsga2")


@dataclass(frozen=True)
class Objective:
    """A summary statistic to maximise or minimise (`sharpe`, `max_drawdown:min`)."""

    name: str
    maximise: bool = True

    @property
    def direction(self) -> str:
        return "maximize" if self.maximise else "minimize"

    def text(self) -> str:
        return f"{self.name}:{'max' if self.maximise else 'min'}"


def parse_objective(text: str, known: Sequence[str]) -> Objective:
    """`name` or `name:max|min`, where name is one of `known` (the trial table's numbers)."""
    name, _, direction = text.strip().partition(":")
    if name not in known:
        raise TickwiseError(f"--objective {text!r}: {name!r} is not a statistic of a trial; "
                            f"one of {', '.join(known)}")  # fmt: skip
    if direction not in ("", "max", "min"):
        raise TickwiseError(f"--objective {text!r}: the direction is max or min")
    return Objective(name, direction != "min")


def _optuna() -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def distribution(d: Dimension) -> Any:
    """The Optuna distribution of a dimension: stepped and continuous ranges keep their
    order (so TPE and CMA-ES can use it), lists are categories."""
    dist = _optuna().distributions
    if d.step is not None:
        if d.type is int:
            return dist.IntDistribution(int(d.low), int(d.high), step=int(d.step))
        return dist.FloatDistribution(float(d.low), float(d.high), step=float(d.step))
    if d.values is not None:
        return dist.CategoricalDistribution(list(d.values))
    if d.type is int:
        return dist.IntDistribution(int(d.low), int(d.high), log=d.log)
    return dist.FloatDistribution(float(d.low), float(d.high), log=d.log)


SIGNIFICANT = 6  # digits kept of a value drawn from a continuous range (of its width, or log)


def snap(d: Dimension, value: Any) -> Any:
    """A sampled value as the dimension writes it: on a decimal step exactly (Optuna adds
    steps in binary floating point), in the parameter's type; drawn from a continuous range,
    to `SIGNIFICANT` digits of the range's width (of the value itself on a log range), within
    the range, so that the trial table, best.toml and the report show the value the trial
    ran with (0.123457 in 0:1, 100000.123457 in 100000:100001), not 0.30000000000000004."""
    if d.step is not None and d.type is float:
        k = round((value - float(d.low)) / float(d.step))
        return float(Decimal(repr(float(d.low))) + k * Decimal(repr(float(d.step))))
    if d.type is int:
        return int(value)
    if d.type is bool:
        return bool(value)
    if d.values is None and d.low is not None and d.high is not None:
        low, high = float(d.low), float(d.high)
        if d.log:
            kept = float(f"{float(value):.{SIGNIFICANT}g}")
        else:
            kept = round(float(value), SIGNIFICANT - 1 - math.floor(math.log10(high - low)))
        return min(max(kept, low), high)
    return float(value)


def make_sampler(name: str, seed: int, n_objectives: int) -> Any:
    """A seeded sampler by name; NSGA-II is for several objectives, CMA-ES for one."""
    samplers = _optuna().samplers
    if name not in SAMPLERS:
        raise TickwiseError(f"--sampler {name!r}: one of {', '.join(SAMPLERS)}")
    if name == "cmaes" and n_objectives > 1:
        raise TickwiseError("--sampler cmaes optimises one objective; for several use nsga2")
    if name == "random":
        return samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return samplers.TPESampler(seed=seed)
    if name == "cmaes":
        with warnings.catch_warnings():  # (Optuna warns about its own defaults here)
            warnings.simplefilter("ignore")
            return samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    return samplers.NSGAIISampler(seed=seed)


Told = Sequence[float | None] | None  # a trial's objective values (None: failed or invalid)


def search(space: Space, sampler: Any, objectives: Sequence[Objective], trials: int,
           batch: int, run: Callable[[list[dict[str, Any]]], list[Told]]) -> None:  # fmt: skip
    """Ask `sampler` for `trials` points, `batch` at a time; `run(points)` runs them and
    returns each point's objective values in order (None where the trial failed or was
    invalid), which are told back before the next batch is asked for."""
    optuna = _optuna()
    dists = {d.name: distribution(d) for d in space.dimensions}
    dims = {d.name: d for d in space.dimensions}
    study = optuna.create_study(directions=[o.direction for o in objectives], sampler=sampler)
    asked = 0
    while asked < trials:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            asks = [study.ask(dists) for _ in range(min(batch, trials - asked))]
        points = [{n: snap(dims[n], t.params[n]) for n in dims} for t in asks]
        for ask, told in zip(asks, run(points), strict=True):
            values = None if told is None or None in told else [float(v) for v in told]
            if values is None or not all(math.isfinite(v) for v in values):
                study.tell(ask, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(ask, values if len(values) > 1 else values[0])
        asked += len(asks)
