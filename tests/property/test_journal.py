"""The journal keeps exactly what was committed: whatever the records, and wherever a crash
cuts its files or the disk runs out of room, replay gives back a whole number of commits, in
order, bit for bit, and a journal lost counts every row it could not keep."""

from __future__ import annotations

import json
import os
import pickle
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tickwise.engine.errors import TickwiseError
from tickwise.engine.live.journal import Journal, journal_events, replay_journal
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
        lots = draw(hnp.arrays(np.int64, n, elements=st.integers(1, 10**6)))
        out["qty"] = lots * 1.0  # whole lots (1.0 each, simple_instruments)
        out["price"] = draw(hnp.arrays(np.float64, n, elements=st.floats(0.001, 1e6)))
        out["fee"] = draw(hnp.arrays(np.float64, n, elements=st.floats(-1e3, 1e3)))
        out["liquidity"] = draw(hnp.arrays(np.int8, n, elements=st.sampled_from([0, 1])))
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


# `write` in a process of its own whose files may grow to `limit` bytes at most (a disk out
# of room, as the kernel's RLIMIT_FSIZE makes one: write() fails with EFBIG past it).
_CAPPED = """
import json, pickle, sys
from tickwise.engine.errors import TickwiseError
from tickwise.engine.live.journal import Journal

folder, background = sys.argv[1], sys.argv[2] == "1"
instruments, plan = pickle.loads(sys.stdin.buffer.read())
try:
    journal = Journal(folder, instruments, background=background, group_ms=0.0)
except TickwiseError as exc:
    print(json.dumps({"refused": str(exc)}))
    raise SystemExit(0)
with journal:
    for k, (orders, fills, events) in enumerate(plan):
        journal.add(orders, fills)
        for e in range(events):
            journal.event(1_000 + k, "halt", {"commit": k, "event": e})
        journal.commit()
print(json.dumps({"failure": journal.failure, "dropped": journal.dropped,
                  "commits": journal.commits}))
"""


def write_capped(folder: Path, plan: list, limit: int, background: bool) -> dict:
    """What the capped process reports: its journal's failure, dropped and commits, or why its
    start was refused. It must end cleanly: no traceback, exit code 0."""
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    proc = subprocess.run(
        [sys.executable, "-c", _CAPPED, str(folder), "1" if background else "0"],
        input=pickle.dumps((simple_instruments(3), plan)),
        capture_output=True,
        timeout=120,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard)),
    )
    assert (proc.returncode, proc.stderr.decode()) == (0, "")
    return json.loads(proc.stdout)


def rows(plan: list) -> dict[str, int]:
    return {"orders": sum(len(p[0]) for p in plan), "fills": sum(len(p[1]) for p in plan),
            "events": sum(p[2] for p in plan)}  # fmt: skip


def holds(kept, plan: list) -> bool:
    """Whether replay gave back exactly the commits of `plan`, bit for bit."""
    return (
        same(kept.orders, np.concatenate([np.empty(0, ORDER_DTYPE), *(p[0] for p in plan)]))
        and same(kept.fills, np.concatenate([np.empty(0, FILL_DTYPE), *(p[1] for p in plan)]))
        and [e["ts"] for e in kept.events] == [1_000 + c for c, p in enumerate(plan)
                                               for _ in range(p[2])]
    )  # fmt: skip


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
    assert journal_events(folder) == [
        {"ts": e["ts"], "what": e["what"], "detail": json.loads(e["detail"])} for e in kept.events
    ]


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plan=commits, background=st.booleans(), data=st.data())
def test_a_journal_lost_at_any_commit_replays_exactly_the_commits_before_it(
    tmp_path_factory: pytest.TempPathFactory, plan, background: bool, data
) -> None:
    base = tmp_path_factory.mktemp("capped")
    write(base / "uncapped", plan)
    largest = max(p.stat().st_size for p in (base / "uncapped").glob("*.arrow"))
    folder = base / "journal"
    report = write_capped(folder, plan, data.draw(st.integers(0, largest)), background)
    if "refused" in report:  # no room even for the streams' headers
        assert f"cannot start the journal in {folder}" in report["refused"]
        assert not folder.exists()
        return
    kept = replay_journal(folder)
    assert kept.commits == report["commits"]
    # Whatever the limit cut, replay holds the first j commits and `dropped` every row after.
    # (In the background the writer groups commits: j is not its count of commits.)
    cuts = [j for j in range(len(plan) + 1)
            if holds(kept, plan[:j]) and report["dropped"] == rows(plan[j:])]  # fmt: skip
    assert cuts
    if not background:
        assert report["commits"] in cuts
    if report["failure"] is None:
        assert len(plan) in cuts
    else:
        assert "File too large" in report["failure"]
        assert "\n" not in report["failure"]


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
