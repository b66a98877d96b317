"""Folds of event time never let a test window (or its embargo) into training."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickwise.backtest.folds import MAX_FOLDS, duration, purged_k_fold, walk_forward
from tickwise.engine.errors import TickwiseError

DAY = 86_400_000_000_000
# Calendars: a first event anywhere in 1970..2100, a span from an hour to three years.
firsts = st.integers(0, 4_000_000_000 * 1_000_000_000)
spans = st.integers(3_600_000_000_000, 3 * 365 * DAY)


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


@given(firsts, spans, st.integers(1, 90), st.integers(1, 30), st.none() | st.integers(1, 30),
       st.booleans())  # fmt: skip
def test_walk_forward_trains_only_before_its_test_and_tests_cover_the_rest(
    first: int,
    span: int,
    train_days: int,
    test_days: int,
    step_days: int | None,
    anchored: bool,
) -> None:
    last = first + span
    train, test = train_days * DAY // 4, test_days * DAY // 4  # (quarter days: many folds)
    step = None if step_days is None else step_days * DAY // 4
    made = -(-(last + 1 - first - train) // (step or test))  # (folds that would fit)
    if made > MAX_FOLDS:  # refused: a plan of that many folds is a mistyped length
        with pytest.raises(TickwiseError, match="folds; at most 1,000"):
            walk_forward(first, last, train, test, step, anchored)
        return
    try:
        folds = walk_forward(first, last, train, test, step, anchored)
    except TickwiseError:
        assert first + train > last  # refused only when no test window fits
        return
    assert len(folds) <= MAX_FOLDS
    for k, fold in enumerate(folds):
        assert fold.number == k
        ((t0, t1),) = fold.train
        ((s0, s1),) = fold.test
        assert first <= t0 < t1 == s0 < s1 <= last + 1  # training ends where the test starts
        assert t1 - t0 == (train + k * (step or test) if anchored else train)
        assert t0 == first if anchored else t0 == first + k * (step or test)
        assert s1 - s0 == min(test, last + 1 - s0)
    assert folds[-1].train[0][1] + (step or test) > last  # no fold left out at the end
    if step is None:  # the test windows follow one another: their curves stitch
        assert all(a.test[0][1] == b.test[0][0] for a, b in itertools.pairwise(folds))


@given(firsts, spans, st.integers(2, 12), st.integers(0, 400 * DAY))
def test_purged_k_fold_keeps_each_test_and_its_embargo_out_of_training(
    first: int, span: int, k: int, embargo: int
) -> None:
    last = first + span
    end = last + 1
    edges = [first + (end - first) * i // k for i in range(k + 1)]
    starved = any(lo - embargo <= first and hi + embargo >= end
                  for lo, hi in itertools.pairwise(edges))  # fmt: skip
    if starved:  # a test window and its embargo cover all the data
        with pytest.raises(TickwiseError, match="nothing to train on"):
            purged_k_fold(first, last, k, embargo)
        return
    folds = purged_k_fold(first, last, k, embargo)
    tests = [f.test[0] for f in folds]
    assert tests[0][0] == first
    assert tests[-1][1] == last + 1
    assert all(a[1] == b[0] for a, b in itertools.pairwise(tests))  # k windows, end to end
    for fold in folds:
        ((lo, hi),) = fold.test
        guarded = (lo - embargo, hi + embargo)
        for window in fold.train:
            assert window[0] < window[1]
            assert not _overlap(window, guarded)
            assert first <= window[0]
            assert window[1] <= last + 1
        # Everything outside the guarded window is trained on.
        covered = sum(b - a for a, b in fold.train)
        assert covered == (max(lo - embargo, first) - first) + (
            last + 1 - min(hi + embargo, last + 1)
        )


@pytest.mark.parametrize(
    ("text", "ns"),
    [("30d", 30 * DAY), ("12h", DAY // 2), ("90m", 5_400_000_000_000), ("45s", 45_000_000_000),
     ("2w", 14 * DAY), ("1.5d", 3 * DAY // 2)],
)  # fmt: skip
def test_lengths_read_as_people_write_them(text: str, ns: int) -> None:
    assert duration(text, "--train") == ns


@pytest.mark.parametrize("text", ["30", "d", "-1d", "3 days", "0d", "1y"])
def test_a_length_without_a_unit_is_refused_by_name(text: str) -> None:
    with pytest.raises(TickwiseError, match="--train"):
        duration(text, "--train")
