"""The journal keeps exactly what was committed: whatever the records, and wherever a crash
cuts its files, replay gives back a whole number of commits, in order, bit for bit."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tickwise.engine.errors import TickwiseError
from tickwise.engine.journal import Journal, replay_journal
from tickwise.engine.schemas import FILL_DTYPE, ORDER_DTYPE

from ..conftest import simple_instruments


@st.composite
def records(draw, dtype: np.dtype, most: int = 6) -> np.ndarray:
    n = draw(st.integers(0, most))
    out = np.zeros(n, dtype=dtype)
    for name in dtype.names:
        out[name] = draw(hnp.arrays(dtype.fields[name][0], n))
    if dtype == FILL_DTYPE:  # booked on replay: fills as the engine makes them
        out["instrument"] = draw(hnp.arrays(np.uint32, n, elements=st.integers(0, 2)))
        out["side"] = draw(hnp.arrays(np.int8, n, elements=st.sampled_from([-1, 1])))
        out["qty"] = draw(hnp.arrays(np.float64, n, elements=st.floats(0.001, 1e6)))
        out["price"] = draw(hnp.arrays(np.float64, n, elements=st.floats(0.0, 1e6)))
        out["fee"] = draw(hnp.arrays(np.float64, n, elements=st.floats(-1e3, 1e3)))
    return out


commits = st.lists(
    st.tuples(records(ORDER_DTYPE), records(FILL_DTYPE), st.integers(0, 2)), max_size=5
)


def write(folder: Path, plan: list) -> None:
    with Journal(folder, simple_instruments(3)) as journal:
        for k, (orders, fills, events) in enumerate(plan):
            journal.add(orders, fills)
            for e in range(events):
                journal.event(1_000 + k, "halt", {"commit": k, "event": e})
            journal.commit()


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plan=commits, data=st.data())
def test_replay_returns_whole_commits_wherever_a_crash_cut_the_files(
    tmp_path_factory: pytest.TempPathFactory, plan, data
) -> None:
    folder = tmp_path_factory.mktemp("journal")
    write(folder, plan)
    # A crash tears at most the stream written last: the commit markers (every other
    # stream is fsynced before its marker is written).
    markers = next(folder.glob("*.commits.arrow"))
    size = markers.stat().st_size
    cut = data.draw(st.integers(0, size))
    os.truncate(markers, cut)
    kept = replay_journal(folder)
    k = kept.commits
    assert k <= len(plan)
    if cut == size:
        assert k == len(plan)
    want_orders = np.concatenate([np.empty(0, ORDER_DTYPE), *(p[0] for p in plan[:k])])
    want_fills = np.concatenate([np.empty(0, FILL_DTYPE), *(p[1] for p in plan[:k])])
    assert same(kept.orders, want_orders)
    assert same(kept.fills, want_fills)
    assert [e["ts"] for e in kept.events] == [1_000 + c for c, p in enumerate(plan[:k])
                                             for _ in range(p[2])]  # fmt: skip


def test_a_new_session_writes_a_new_segment_and_replay_reads_them_all(tmp_path: Path) -> None:
    first = np.zeros(2, dtype=FILL_DTYPE)
    first["instrument"], first["side"], first["qty"], first["price"] = 1, 1, 5.0, 10.0
    second = first.copy()
    second["side"] = -1
    second["price"] = 11.0
    write(tmp_path, [(np.zeros(0, ORDER_DTYPE), first, 0)])
    write(tmp_path, [(np.zeros(0, ORDER_DTYPE), second, 1)])
    replayed = replay_journal(tmp_path)
    assert (replayed.segments, replayed.commits, len(replayed.fills)) == (2, 2, 4)
    position = replayed.summary()["positions"]["I1"]
    assert position["qty"] == 0.0
    assert position["realized"] == 10.0  # bought 2 x 5 at 10, sold 2 x 5 at 11


@pytest.mark.parametrize(
    ("field", "value"),
    [("qty", 0.0), ("qty", -1.0), ("qty", np.nan), ("price", np.inf), ("side", 0),
     ("instrument", 7)],
)  # fmt: skip
def test_a_fill_the_engine_never_makes_is_named_as_damage(
    tmp_path: Path, field: str, value: float
) -> None:
    fills = np.zeros(2, dtype=FILL_DTYPE)
    fills["side"], fills["qty"], fills["price"] = 1, 1.0, 10.0
    fills[1][field] = value
    write(tmp_path, [(np.zeros(0, ORDER_DTYPE), fills, 0)])
    with pytest.raises(TickwiseError, match="committed fill 1 .* is not one the engine makes"):
        replay_journal(tmp_path)


def test_a_damaged_journal_is_named_not_guessed(tmp_path: Path) -> None:
    with pytest.raises(TickwiseError, match="no such journal folder"):
        replay_journal(tmp_path / "nothing")
    with pytest.raises(TickwiseError, match="not a tickwise journal"):
        replay_journal(tmp_path)
    write(tmp_path, [(np.zeros(1, ORDER_DTYPE), np.zeros(0, FILL_DTYPE), 0)])
    orders = next(tmp_path.glob("*.orders.arrow"))
    os.truncate(orders, orders.stat().st_size // 2)  # data lost behind a committed marker
    with pytest.raises(TickwiseError, match="the journal is damaged"):
        replay_journal(tmp_path)
