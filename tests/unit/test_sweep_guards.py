"""The parts of a sweep that guard its store and its plan: what keys a trial (the code the
strategy imports, the data's files as they are on disk), what the store says when it cannot
reuse its trials, the limits on workers, folds and Ray addresses, and overfitting
statistics that count each point of a search once."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import tickwise as tw
from tickwise.backtest.executors import check_reachable, check_workers, default_workers
from tickwise.backtest.folds import MAX_FOLDS, walk_forward
from tickwise.backtest.results import footer_hash
from tickwise.backtest.search import Objective
from tickwise.backtest.trials import TrialStore, code_files, data_key, strategy_fingerprint
from tickwise.backtest.validation import overfitting
from tickwise.engine.strategy import load_strategy
from tickwise.feeds.merged import open_data

DAY = 86_400_000_000_000

STRATEGY = '''
import numpy as np

import helpers
from rules import limit

import tickwise as tw


@tw.kernel
def on_quote(ctx, q, st, p):
    pass


class Helped(tw.Strategy):
    """Takes its rules from modules beside it."""

    params = {"every": tw.Param(50, 1, 1000, "quotes between decisions")}
    kinds = ("quotes",)
    on_quote = on_quote

    @classmethod
    def check_params(cls, params):
        return helpers.refuse(params) or limit(params)
'''


def test_the_code_a_strategy_imports_keys_its_trials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "helpers.py").write_text("import deeper\n\ndef refuse(p):\n    return None\n")
    (tmp_path / "deeper.py").write_text("X = 1\n")
    (tmp_path / "rules.py").write_text("def limit(p):\n    return None\n")
    (tmp_path / "unused.py").write_text("Y = 1\n")
    (tmp_path / "helped.py").write_text(textwrap.dedent(STRATEGY))
    monkeypatch.syspath_prepend(str(tmp_path))
    cls = load_strategy(f"{tmp_path / 'helped.py'}:Helped")
    names = {Path(f).name for f in code_files(cls)}
    assert names == {"helped.py", "helpers.py", "deeper.py", "rules.py"}  # not numpy's, nor ours
    assert "np" in vars(sys.modules[cls.__module__])  # (numpy reached, and not read)
    before = strategy_fingerprint(cls)
    (tmp_path / "unused.py").write_text("Y = 2\n")
    assert strategy_fingerprint(cls) == before
    for name in ("deeper.py", "rules.py"):
        text = (tmp_path / name).read_text()
        (tmp_path / name).write_text(text + "# edited\n")
        assert strategy_fingerprint(cls) != before, name
        (tmp_path / name).write_text(text)
        assert strategy_fingerprint(cls) == before


def test_data_rewritten_in_place_with_the_same_footer_keys_new_trials(
    tmp_path: Path, quotes_file: Path
) -> None:
    data = tmp_path / "q.parquet"
    shutil.copyfile(quotes_file, data)
    history = open_data(data)
    footers = footer_hash(history)
    before = data_key(history, footers)
    assert data_key(history, footers) == before
    st = data.stat()
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000))  # (a rewrite, same bytes)
    assert footer_hash(open_data(data)) == footers  # the footer alone cannot tell
    assert data_key(history, footers) != before


def test_the_store_says_what_changed_when_its_trials_cannot_be_reused(tmp_path: Path) -> None:
    store = TrialStore(tmp_path / "trials.sqlite")
    try:
        assert store.seen("e1", "s1", "d1") is None  # (a new store)
        store.put("k", {"status": "ok"})
        assert store.seen("e1", "s1", "d1") is None  # (the same code and data)
        assert store.seen("e1", "s2", "d1") == ("the store's 1 trial ran with another version "
                                                "of the strategy's code: none is reused (they "
                                                "are kept, for that version)")  # fmt: skip
        assert "of tickwise's engine and the data:" in store.seen("e2", "s3", "d2")
        assert store.seen("e1", "s1", "d1") is None  # (back to a version it holds)
    finally:
        store.close()
    old = tmp_path / "old.sqlite"  # a store from before the versions were recorded
    store = TrialStore(old)
    store.db.execute("DROP TABLE seen")
    store.put("k", {"status": "ok"})
    store.close()
    store = TrialStore(old)
    try:
        said = "the store's 1 trial came from an earlier tickwise: none is reused (they are kept)"
        assert store.seen("e1", "s1", "d1") == said
    finally:
        store.close()


def test_more_local_workers_than_cpus_are_refused_and_ray_may_have_more() -> None:
    cpus = default_workers()
    check_workers(cpus, "local")
    check_workers(cpus + 1, "ray")  # (a cluster's CPUs are not this machine's)
    with pytest.raises(tw.TickwiseError, match=f"give at most {cpus}"):
        check_workers(cpus + 1, "local")
    with pytest.raises(tw.TickwiseError, match="at least 1"):
        check_workers(0, "ray")


def test_a_walk_forward_of_more_than_max_folds_is_refused_before_any_is_made() -> None:
    assert len(walk_forward(0, 1_000 * DAY - 1, DAY, DAY)) == 999
    said = "walk-forward over 1,000 days by steps of 1h makes 23,976 folds; at most 1,000"
    with pytest.raises(tw.TickwiseError, match=said):
        walk_forward(0, 1_000 * DAY - 1, DAY, 3_600_000_000_000)
    assert len(walk_forward(0, MAX_FOLDS * DAY, DAY, DAY)) == MAX_FOLDS


def test_a_ray_address_where_nothing_listens_is_refused_at_once() -> None:
    with socket.socket() as s:  # a port nothing listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        with pytest.raises(tw.TickwiseError, match=f"--address 127.0.0.1:{port}: no Ray answers"):
            check_reachable(f"127.0.0.1:{port}", wait_s=2.0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        check_reachable(f"127.0.0.1:{s.getsockname()[1]}", wait_s=2.0)
    for bad in ("localhost", "host:port", ":6379", "host:\u00b2", "host:99999"):
        with pytest.raises(tw.TickwiseError, match="write auto or HOST:PORT"):
            check_reachable(bad)


def _row(point: int, pnl: list[float]) -> dict:
    ends = [(d + 1) * DAY - 1 for d in range(len(pnl))]
    returns = np.diff([0.0, *pnl])
    sharpe = float(returns.mean() / returns.std(ddof=1))
    return {"status": "ok", "params": {"window": point}, "periods": [ends, pnl],
            "sharpe": sharpe}  # fmt: skip


def test_a_point_drawn_twice_by_a_search_counts_once_in_the_overfitting_statistics() -> None:
    rng = np.random.default_rng(3)
    rows = [_row(p, np.cumsum(rng.normal(0.1 * p, 1.0, 40)).tolist()) for p in range(6)]
    once = overfitting(rows, Objective("sharpe"), tw.SessionConfig())
    twice = overfitting(rows + rows[2:5], Objective("sharpe"), tw.SessionConfig())
    assert once["trials"] == twice["trials"] == 6
    assert once["deflated_sharpe"] == twice["deflated_sharpe"]
    assert once["pbo"] == twice["pbo"]
