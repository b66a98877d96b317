"""A live session's journal is never lost silently: one session per folder, a start that
fails leaves nothing behind, and a commit the disk refuses loses the journal in one line,
counting what it could not keep, without a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tickwise.engine.errors import TickwiseError
from tickwise.engine.live.journal import Journal, journal_events, replay_journal
from tickwise.engine.schemas import FILL_DTYPE, ORDER_DTYPE

from ..conftest import simple_instruments
from ..property.test_journal import holds, rows, write, write_capped


def orders(n: int, first: int = 0) -> np.ndarray:
    out = np.zeros(n, dtype=ORDER_DTYPE)
    out["id"] = np.arange(first, first + n)
    return out


def fills(n: int, first: int = 0) -> np.ndarray:
    out = np.zeros(n, dtype=FILL_DTYPE)
    out["order_id"] = np.arange(first, first + n)
    out["side"], out["qty"], out["price"] = 1, 1.0, 10.0
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_second_journal_on_a_held_folder_is_refused_in_one_line_until_the_first_closes(
    tmp_path: Path,
) -> None:
    first = Journal(tmp_path, simple_instruments(3))
    held = snapshot(tmp_path)
    with pytest.raises(TickwiseError) as refused:
        Journal(tmp_path, simple_instruments(3))
    assert str(refused.value) == (
        f"journal folder {tmp_path} is in use by another session (pid {os.getpid()}); "
        "give each session its own --journal"
    )
    assert snapshot(tmp_path) == held  # (no second segment, LOCK as it was)
    first.close()
    with Journal(tmp_path, simple_instruments(3)) as second:
        assert second.segment == 2
    assert (tmp_path / "LOCK").is_file()
    assert replay_journal(tmp_path).segments == 2  # (replay passes LOCK over)


_HOLDER = """
import sys
from tickwise.engine.instruments import Instrument, Instruments
from tickwise.engine.live.journal import Journal

with Journal(sys.argv[1], Instruments(Instrument(i, f"I{i}", 0.01, 1.0) for i in range(3))):
    print("open", flush=True)
    sys.stdin.readline()
"""


@pytest.mark.timeout(120)
def test_a_journal_held_by_another_process_refuses_ours(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path)], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdin is not None
        assert holder.stdout.readline() == "open\n"
        with pytest.raises(TickwiseError, match=rf"in use by another session \(pid {holder.pid}\)"):
            Journal(tmp_path, simple_instruments(3))
        holder.stdin.write("\n")
        holder.stdin.close()
        assert holder.wait(timeout=60) == 0
    finally:
        holder.kill()
        holder.wait()
    with Journal(tmp_path, simple_instruments(3)) as ours:
        assert ours.segment == 2


def test_a_start_refused_for_want_of_room_leaves_no_folder(tmp_path: Path) -> None:
    folder = tmp_path / "sessions" / "today"
    report = write_capped(folder, [], limit=100, background=False)  # (less than a header)
    assert report["refused"].startswith(f"cannot start the journal in {folder}: [Errno 27]")
    assert "000001.orders.arrow" in report["refused"]
    assert list(tmp_path.iterdir()) == []  # nor the folder above it, made for it


def test_a_start_refused_in_a_used_folder_leaves_exactly_what_was_there(tmp_path: Path) -> None:
    write(tmp_path, [(orders(2), fills(1), 1)])
    (tmp_path / "000002.events.arrow").write_bytes(b"someone else's")  # (in segment 2's way)
    there = snapshot(tmp_path)
    with pytest.raises(TickwiseError, match=r"cannot start the journal in .*File exists"):
        Journal(tmp_path, simple_instruments(3))
    assert snapshot(tmp_path) == there  # (its 000002.orders and .fills made, then removed)
    assert replay_journal(tmp_path).commits == 1


@pytest.mark.timeout(120)
def test_a_file_size_limit_loses_the_journal_in_one_line_and_replay_keeps_what_completed(
    tmp_path: Path,
) -> None:
    plan = [(orders(20, 20 * k), fills(5, 5 * k), 1) for k in range(200)]
    report = write_capped(tmp_path / "journal", plan, limit=30_000, background=False)
    failure = report["failure"]
    assert "File too large" in failure
    assert str(tmp_path / "journal") in failure
    assert "\n" not in failure
    kept = replay_journal(tmp_path / "journal")
    done = report["commits"]
    assert 0 < done == kept.commits < len(plan)
    assert holds(kept, plan[:done])
    assert report["dropped"] == rows(plan[done:])
    # What the failed commit began is cut off: any Arrow reader reads every stream whole.
    streams = {p.name.split(".")[1]: pa.ipc.open_stream(p).read_all()
               for p in (tmp_path / "journal").glob("000001.*.arrow")}  # fmt: skip
    assert sorted(streams) == ["commits", "events", "fills", "orders"]
    assert streams["commits"].num_rows == done


@pytest.mark.timeout(60)
@pytest.mark.parametrize("background", [False, True])
def test_a_folder_deleted_under_the_session_loses_the_journal_at_the_next_commit(
    tmp_path: Path, background: bool
) -> None:
    folder = tmp_path / "journal"
    journal = Journal(folder, simple_instruments(3), background=background)
    journal.add(orders(2), fills(1))
    journal.commit()
    journal.flush()
    assert journal.failure is None
    shutil.rmtree(folder)
    journal.add(orders(3), fills(2))
    journal.event(5, "halt", {"why": "test"})
    journal.commit()
    journal.flush()  # (the writer's wait is bounded: the commit failed, not hung)
    assert journal.failure is not None
    assert "deleted" in journal.failure
    assert str(folder / "000001.orders.arrow") in journal.failure
    assert journal.dropped == {"orders": 3, "fills": 2, "events": 1}
    # Lost: nothing more is written, nothing raises, every row is counted.
    journal.add(orders(4), fills(0))
    journal.event(6, "resume", {})
    journal.commit()
    journal.add(orders(1), fills(1))
    journal.flush()
    journal.close()
    assert journal.dropped == {"orders": 8, "fills": 3, "events": 2}
    assert not folder.exists()


@pytest.mark.parametrize("background", [False, True])
def test_a_bug_while_committing_is_a_traceback_not_a_lost_journal(
    tmp_path: Path, background: bool
) -> None:
    journal = Journal(tmp_path, simple_instruments(3), background=background)
    journal.add(fills(1), fills(1))  # (fills where orders go: a caller's bug)
    if background:
        journal.commit()  # (the writer meets it: the session's next call raises it)
        with pytest.raises(TypeError):
            journal.flush()
    else:
        with pytest.raises(TypeError):
            journal.commit()
    assert journal.failure is None
    journal.close(commit=False)


def test_journal_events_lists_the_committed_events_of_every_segment_in_order(
    tmp_path: Path,
) -> None:
    with Journal(tmp_path, simple_instruments(3)) as journal:
        journal.event(10, "halt", {"reason": "drawdown", "pnl": -5.5})
        journal.commit()
        journal.event(11, "resume", {})
    with Journal(tmp_path, simple_instruments(3)) as journal:
        journal.event(20, "kill", {"by": "ops", "orders": [1, 2]})
        journal.commit()
        journal.event(21, "never", {})
        journal.close(commit=False)
    assert journal_events(tmp_path) == [
        {"ts": 10, "what": "halt", "detail": {"pnl": -5.5, "reason": "drawdown"}},
        {"ts": 11, "what": "resume", "detail": {}},
        {"ts": 20, "what": "kill", "detail": {"by": "ops", "orders": [1, 2]}},
    ]
    with pytest.raises(TickwiseError, match="no such journal folder"):
        journal_events(tmp_path / "nothing")


def test_a_session_of_other_instruments_is_refused_a_used_journal(tmp_path: Path) -> None:
    """Replay books every segment against one instrument table: a session of another table
    would make a healthy journal look damaged. It is refused before it writes anything."""
    folder = tmp_path / "j"
    with Journal(folder, simple_instruments(2)) as journal:
        journal.add(orders(2), fills(1))
    before = snapshot(folder)
    with pytest.raises(TickwiseError, match=r"holds sessions of instruments \['I0', 'I1'\]"):
        Journal(folder, simple_instruments(4))
    assert snapshot(folder) == before
    with Journal(folder, simple_instruments(2)) as journal:  # the same table: a new segment
        journal.add(orders(1, first=10), fills(0))
    assert replay_journal(folder).segments == 2
