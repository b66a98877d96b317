"""The compiled loop is deterministic: the same events give the same orders and fills whatever
the batch size, and a restored snapshot continues exactly as the original did."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickwise import load_strategy
from tickwise.engine.session import Session
from tickwise.feeds.history import open_history

from ..conftest import make_synth

PARAMS = {
    "mean_reversion": {"window": 40, "entry_z": 1.5, "exit_z": 0.2, "qty": 200.0},
    "sma_cross": {"fast": 5, "slow": 20, "qty": 300.0, "long_short": True},
}


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory):
    # 10,000 quotes: thousands of orders and fills, and a batch size of 1 still runs in ~4 s.
    path = make_synth(tmp_path_factory.mktemp("loop") / "q.parquet", kind="quotes", rows=10_000,
                      instruments=3, seed=21)  # fmt: skip
    return open_history(path)


def run(history, name: str, batch_size: int):
    s = Session(load_strategy(name), history.instruments, PARAMS[name])
    s.warm_up(("quotes",))
    results = [s.on_batch("quotes", b) for b in history.batches(batch_size)]
    orders = np.concatenate([r.orders for r in results])
    fills = np.concatenate([r.fills for r in results])
    return orders, fills, s


@pytest.fixture(scope="module")
def reference(history):
    return {name: run(history, name, 65_536) for name in PARAMS}


@settings(max_examples=12)
@given(name=st.sampled_from(sorted(PARAMS)), batch_size=st.integers(1, 9_000))
def test_orders_and_fills_do_not_depend_on_batch_size(history, reference, name, batch_size):
    orders, fills, s = run(history, name, batch_size)
    ref_orders, ref_fills, ref_session = reference[name]
    assert len(ref_fills) > 10  # the strategy really trades on this data
    assert orders.tobytes() == ref_orders.tobytes()
    assert fills.tobytes() == ref_fills.tobytes()
    assert s.ctx.portfolio.tobytes() == ref_session.ctx.portfolio.tobytes()


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_snapshot_and_restore_give_the_same_subsequent_orders(history, name: str) -> None:
    s = Session(load_strategy(name), history.instruments, PARAMS[name])
    batches = list(history.batches(1_500))
    for b in batches[:3]:
        s.on_batch("quotes", b)
    snap = s.snapshot()
    first = [s.on_batch("quotes", b) for b in batches[3:]]
    for b in batches[:2]:  # move the session somewhere else entirely
        s.on_batch("quotes", b)
    s.restore(snap)
    second = [s.on_batch("quotes", b) for b in batches[3:]]
    for a, b in zip(first, second, strict=True):
        assert a.orders.tobytes() == b.orders.tobytes()
        assert a.fills.tobytes() == b.fills.tobytes()
    assert sum(len(r.orders) for r in first) > 0


def test_a_strategy_file_in_tmp_path_runs_like_a_built_in(tmp_path: Path, history) -> None:
    """The built-in mean_reversion, copied to a user file, gives the same orders."""
    import tickwise.strategies.mean_reversion as builtin

    path = tmp_path / "my_reversion.py"
    path.write_text(Path(builtin.__file__).read_text())
    mine = Session(load_strategy(f"{path}:MeanReversion"), history.instruments,
                   PARAMS["mean_reversion"])  # fmt: skip
    theirs = Session(load_strategy("mean_reversion"), history.instruments, PARAMS["mean_reversion"])
    for b in history.batches(10_000):
        assert (
            mine.on_batch("quotes", b).orders.tobytes()
            == theirs.on_batch("quotes", b).orders.tobytes()
        )


def test_the_readme_example_strategy_loads_and_trades(tmp_path: Path, history) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = next(b for b in readme.split("```python")[1:] if "class Momentum" in b)
    path = tmp_path / "momentum.py"
    path.write_text(block.split("```")[0])
    s = Session(load_strategy(f"{path}:Momentum"), history.instruments, {"band": 0.0001})
    s.warm_up(("quotes",))
    fills = np.concatenate([s.on_batch("quotes", b).fills for b in history.batches(8_192)])
    assert len(fills) > 10
