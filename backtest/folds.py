"""Folds of event time for walk-forward analysis and purged k-fold cross-validation.

Walk-forward: each fold trains on a window and tests on the window right after
it. Rolling, the training window slides by `step` (the test's length by
default) and keeps its length; anchored, it starts at the first event and
grows. The test windows follow one another, so their results stitch into one
out-of-sample curve. The last test window may be shorter than the others (the
data end inside it); a fold whose window would start after the data is not
made.

Purged k-fold (López de Prado, "Advances in Financial Machine Learning",
Wiley 2018, ch. 7): the data's time span is cut into `k` equal windows; each is
the test of one fold, trained on all the others but the `embargo` on each side
of the test window (a position opened just before the test, or a window of
prices reaching into it, would otherwise carry test data into training). Its
training is then one or two windows, run as separate backtests and joined.

Windows are [start, end) in ns of event time; a fold never lets any of its
test window, nor the embargo around it, into its training (a property test).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tickwise.engine.errors import TickwiseError

Window = tuple[int, int]  # [start, end) ns of event time
MAX_FOLDS = 1_000  # more folds than this is a mistyped length, not a plan

_UNITS = {"s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000,
          "d": 86_400_000_000_000, "w": 7 * 86_400_000_000_000}  # fmt: skip


@dataclass(frozen=True)
class Fold:
    """One fold: the windows it trains on and the windows it is judged on."""

    number: int
    train: tuple[Window, ...]
    test: tuple[Window, ...]


def duration(text: str, flag: str) -> int:
    """A length of event time from the command line (`30d`, `12h`, `90m`, `45s`, `2w`) in ns."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not found:
        raise TickwiseError(f"{flag} {text!r}: a length such as 30d, 12h, 90m, 45s or 2w")
    ns = round(float(found[1]) * _UNITS[found[2]])
    if ns <= 0:
        raise TickwiseError(f"{flag} {text!r} must be longer than nothing")
    return ns


def _show(ns: int) -> str:
    """A length of time as a person writes it (the largest unit it is a whole number of)."""
    for unit in "wdhms":
        if ns % _UNITS[unit] == 0:
            return f"{ns // _UNITS[unit]}{unit}"
    return f"{ns / _UNITS['s']:g}s"


def walk_forward(first: int, last: int, train: int, test: int, step: int | None = None,
                 anchored: bool = False) -> list[Fold]:  # fmt: skip
    """The folds over events from `first` to `last` (ns, inclusive): training windows of
    `train` (anchored: from `first`, growing by `step`), each followed by a test window of
    `test`; `step` (default `test`) between one fold and the next."""
    step = test if step is None else step
    if min(train, test, step) <= 0:
        raise TickwiseError("--train, --test and --step must be longer than nothing")
    end = last + 1
    count = -(-(end - first - train) // step)  # (folds whose training ends before the data)
    if count > MAX_FOLDS:
        days = (end - first) / _UNITS["d"]
        raise TickwiseError(f"walk-forward over {days:,.4g} days by steps of {_show(step)} makes "
                            f"{count:,} folds; at most {MAX_FOLDS:,} (a longer --test or "
                            "--step)")  # fmt: skip
    folds = []
    k = 0
    while True:
        lo = first + k * step
        train_end = first + train + k * step
        if train_end >= end:
            break
        window = (first if anchored else lo, train_end)
        folds.append(Fold(k, (window,), ((train_end, min(train_end + test, end)),)))
        k += 1
    if not folds:
        span = (end - first) / _UNITS["d"]
        raise TickwiseError(f"the data span {span:.3g} days: no room for a test window after "
                            f"--train {train / _UNITS['d']:.3g} days")  # fmt: skip
    return folds


def purged_k_fold(first: int, last: int, k: int, embargo: int = 0) -> list[Fold]:
    """`k` folds over events from `first` to `last` (ns, inclusive): each tests one of k
    equal windows and trains on the rest, less `embargo` on each side of its test."""
    if not 2 <= k <= MAX_FOLDS:
        raise TickwiseError(f"--folds must be from 2 to {MAX_FOLDS:,}, got {k}")
    if embargo < 0:
        raise TickwiseError("--embargo cannot be negative")
    end = last + 1
    if end - first < k:
        raise TickwiseError(f"the data span {end - first} ns: too short for {k} folds")
    edges = [first + (end - first) * i // k for i in range(k + 1)]
    folds = []
    for i in range(k):
        lo, hi = edges[i], edges[i + 1]
        train = tuple(w for w in ((first, lo - embargo), (hi + embargo, end)) if w[0] < w[1])
        if not train:
            raise TickwiseError(f"--embargo leaves fold {i} nothing to train on")
        folds.append(Fold(i, train, ((lo, hi),)))
    return folds
