"""Quotes and trades replayed together: one compiled loop over both kinds in their global
order, the same events as the per-kind loops a live session runs, and prints that reach the
queue model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tickwise import load_strategy
from tickwise.backtest.replay import run_backtest
from tickwise.backtest.results import run_hash
from tickwise.engine.config import SessionConfig
from tickwise.engine.errors import TickwiseError
from tickwise.engine.schemas import KIND_CODES, LIQ_MAKER, QUOTE_DTYPE, TRADE_DTYPE
from tickwise.engine.session import Session
from tickwise.feeds.merged import open_data

from ..conftest import UNGUARDED, make_synth, simple_instruments
from ..scripted import plan
from .test_cli_backtest import run

MAKER = "obi_market_maker"  # rests quotes at the touch: prints move it up its queue
PARAMS = {"qty": 100.0, "max_position": 1_000.0}  # (SYN1 trades in lots of 100)
NAMES = {code: kind for kind, code in KIND_CODES.items()}
SCRIPTED = f"{Path(__file__).parent.parent / 'scripted.py'}:Scripted"
T0 = 1_700_000_000_000_000_000


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("day")
    return {
        kind: make_synth(root / f"{kind}.parquet", kind=kind, rows=rows, instruments=2, seed=3)
        for kind, rows in (("quotes", 40_000), ("trades", 20_000))
    }


def session(instruments) -> Session:
    s = Session(load_strategy(MAKER), instruments, PARAMS)
    s.warm_up(("quotes", "trades"))
    s.warm_up(("quotes", "trades"), merged=True)
    return s


def merged_run(paths: list[Path], batch_size: int) -> tuple[np.ndarray, np.ndarray, Session]:
    history = open_data(paths)
    s = session(history.instruments)
    results = [s.on_merged(b.parts, b.kinds, b.rows) for b in history.batches(batch_size)]
    return (np.concatenate([r.orders for r in results]),
            np.concatenate([r.fills for r in results]), s)  # fmt: skip


def test_the_merged_loop_runs_the_per_kind_loops_events(day) -> None:
    """The same events fed kind run by kind run to the loops a live session uses (Python per
    run of one kind: fine in a test) give byte-identical orders and fills."""
    history = open_data([day["quotes"], day["trades"]])
    s = session(history.instruments)
    orders, fills = [], []
    runs = 0
    for batch in history.batches(65_536):
        cuts = np.flatnonzero(np.diff(batch.kinds)) + 1
        runs += cuts.size + 1
        for events in np.split(np.arange(batch.num_rows), cuts):
            kind = NAMES[int(batch.kinds[events[0]])]
            result = s.on_batch(kind, batch.parts[kind].take(pa.array(batch.rows[events])))
            orders.append(result.orders)
            fills.append(result.fills)
    assert runs > 1_000  # the kinds interleave
    in_turn = np.concatenate(orders), np.concatenate(fills)
    merged_orders, merged_fills, merged = merged_run([day["quotes"], day["trades"]], 65_536)
    assert merged_fills.size > 1_000
    assert merged_orders.tobytes() == in_turn[0].tobytes()
    assert merged_fills.tobytes() == in_turn[1].tobytes()
    assert not merged.status()["halted"]  # each kind numbers its own seq: no false gap


def test_merged_results_do_not_depend_on_batch_size(day) -> None:
    paths = [day["quotes"], day["trades"]]
    hashes = {run_hash(*merged_run(paths, size)[:2]) for size in (65_536, 1_000, 7)}
    assert len(hashes) == 1


def test_prints_fill_resting_orders_that_quotes_alone_never_reach(day) -> None:
    config = SessionConfig()
    alone = run_backtest(MAKER, day["quotes"], PARAMS, config)
    both = run_backtest(MAKER, [day["quotes"], day["trades"]], PARAMS, config)
    made = [int(np.count_nonzero(bt.fills["liquidity"] == LIQ_MAKER)) for bt in (alone, both)]
    assert made[1] > 500  # resting orders met by prints
    assert made[1] > 100 * made[0]
    assert both.events == alone.events + 20_000


def test_a_gap_in_one_kind_trips_while_the_other_runs_in_sequence() -> None:
    inst = simple_instruments(1)
    s = session(inst)
    n = 6
    q = np.zeros(n, dtype=QUOTE_DTYPE)
    q["ts_event"] = q["ts_recv"] = 1_700_000_000_000_000_000 + np.arange(n) * 1_000_000
    q["seq"] = np.arange(1, n + 1)
    q["bid_px"], q["ask_px"], q["bid_sz"], q["ask_sz"] = 100.0, 100.01, 5.0, 5.0
    t = np.zeros(3, dtype=TRADE_DTYPE)
    t["ts_event"] = t["ts_recv"] = q["ts_event"][[1, 3, 5]]
    t["seq"] = (1, 2, 4)  # the trade with seq 3 never came
    t["px"], t["sz"], t["side"] = 100.0, 1.0, 1
    kinds = np.array([0, 0, 1, 0, 0, 1, 0, 0, 1], dtype=np.uint8)
    rows = np.array([0, 1, 0, 2, 3, 1, 4, 5, 2])
    s.on_merged({"quotes": {k: q[k] for k in q.dtype.names},
                 "trades": {k: t[k] for k in t.dtype.names}}, kinds, rows)  # fmt: skip
    status = s.status()
    assert status["halt_reason"] == "seq_gap"
    assert status["halt_ts"] == int(t["ts_event"][2])


def test_an_order_whose_first_event_is_a_print_joins_the_queue_shown_by_the_quotes() -> None:
    """A buy at the bid, 50 shown ahead of it, reaches the exchange before a print of 1 at its
    price: it rests behind the 50 (the print takes 1 of them), as it would had a quote come
    first; it is not filled by the print as a taker."""
    s = Session(load_strategy(SCRIPTED), simple_instruments(1), order_latency_ns=100_000,
                **UNGUARDED)  # fmt: skip
    plan(s.state, [(1, +1, 1.0, 100.0)])  # at the first event: buy 1 at 100.00
    s.warm_up(("quotes", "trades"), merged=True)
    q = np.zeros(2, dtype=QUOTE_DTYPE)
    q["ts_event"] = q["ts_recv"] = T0 + np.array([0, 2_000_000])
    q["seq"] = (1, 2)
    q["bid_px"], q["ask_px"], q["bid_sz"], q["ask_sz"] = 100.0, 100.01, 50.0, 50.0
    t = np.zeros(1, dtype=TRADE_DTYPE)
    t["ts_event"] = t["ts_recv"] = T0 + 1_000_000
    t["seq"], t["px"], t["sz"], t["side"] = 1, 100.0, 1.0, -1
    result = s.on_merged({"quotes": {k: q[k] for k in q.dtype.names},
                          "trades": {k: t[k] for k in t.dtype.names}},
                         np.array([0, 1, 0], np.uint8), np.array([0, 0, 1]))  # fmt: skip
    assert result.fills.size == 0
    assert s.ctx.open_orders[0]["queue"] == 49.0


def test_merged_events_are_checked_before_the_loop_sees_them() -> None:
    s = Session(load_strategy(MAKER), simple_instruments(1), PARAMS)
    q = np.zeros(2, dtype=QUOTE_DTYPE)
    parts = {"quotes": {k: q[k] for k in q.dtype.names}}
    with pytest.raises(TickwiseError, match=r"rows 0\.\.2 of 2 quotes rows"):
        s.on_merged(parts, np.zeros(2, np.uint8), np.array([0, 2]))
    with pytest.raises(TickwiseError, match="unknown kind codes"):
        s.on_merged(parts, np.array([0, 9], np.uint8), np.array([0, 1]))
    parts["quotes"]["bid_px"] = np.zeros(1)  # a column shorter than the others
    with pytest.raises(TickwiseError, match="the quotes columns differ in length"):
        s.on_merged(parts, np.zeros(2, np.uint8), np.array([0, 1]))
    with pytest.raises(TickwiseError, match="the quotes batch's columns differ in length"):
        s.on_batch("quotes", parts["quotes"])


def test_the_command_line_takes_data_sets_or_a_folder_of_kinds(tmp_path: Path, day) -> None:
    folder = tmp_path / "day"
    folder.mkdir()
    for path in day.values():
        (folder / path.name).write_bytes(path.read_bytes())
    hashes = []
    for data in (["--data", str(day["quotes"]), "--data", str(day["trades"])],
                 ["--data", str(folder)]):  # fmt: skip
        out = tmp_path / f"out{len(hashes)}"
        done = run("backtest", "--strategy", MAKER, *data, "--param", "qty=100",
                   "--param", "max_position=1000", "--out", str(out))  # fmt: skip
        assert done.returncode == 0, done.stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["events"] == 60_000
        assert summary["data"]["kind"] == "quotes + trades"
        assert [s["kind"] for s in summary["data"]["sources"]] == ["quotes", "trades"]
        hashes.append(summary["run_hash"])
    assert hashes[0] == hashes[1]
