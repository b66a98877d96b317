"""Each contract fault is caught, and the error names the file, the row and the fault."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tickwise.engine.errors import DataError
from tickwise.engine.schemas import BAR_DTYPE, QUOTE_DTYPE, TRADE_DTYPE, market_schema
from tickwise.feeds.history import open_history
from tickwise.feeds.store import tickwise_schema

from ..conftest import simple_instruments, table_of, write_rows


def quotes(n: int = 40, instruments: int = 3) -> np.ndarray:
    """Valid quotes: instruments take turns, one row per ms, seq per instrument."""
    q = np.zeros(n, dtype=QUOTE_DTYPE)
    q["ts_event"] = 1_700_000_000_000_000_000 + np.arange(n) * 1_000_000
    q["ts_recv"] = q["ts_event"] + 50_000
    q["instrument"] = np.arange(n) % instruments
    q["seq"] = np.arange(n) // instruments + 1
    q["bid_px"] = 100.0
    q["ask_px"] = 100.01
    q["bid_sz"] = 5.0
    q["ask_sz"] = 7.0
    return q


def read_all(path: Path, batch_size: int = 7) -> pa.Table:
    return table_of(open_history(path).batches(batch_size))


def set_(field: str, value):
    def apply(q: np.ndarray, row: int) -> None:
        q[field][row] = value

    return apply


def both_prices(value: float):
    def apply(q: np.ndarray, row: int) -> None:
        q["bid_px"][row] = q["ask_px"][row] = value

    return apply


def ts_backwards(q: np.ndarray, row: int) -> None:
    # Same instrument as two rows before, at an earlier time than it: goes backwards
    # for the instrument (and for the file), at `row`.
    q["instrument"][row] = q["instrument"][row - 2]
    q["ts_event"][row] = q["ts_event"][row - 2] - 1
    q["seq"][row] = q["seq"][row - 2] + 1000


def duplicate_seq(q: np.ndarray, row: int) -> None:
    q["seq"][row] = q["seq"][row - 3]


def seq_backwards(q: np.ndarray, row: int) -> None:
    q["seq"][row] = q["seq"][row - 3] - 1 if q["seq"][row - 3] > 1 else 0


QUOTE_FAULTS = {
    "nan bid": (set_("bid_px", np.nan), "bid_px is NaN; prices must be positive"),
    "negative ask": (set_("ask_px", -1.5), "ask_px is -1.5; prices must be positive"),
    "zero bid": (set_("bid_px", 0.0), "bid_px is 0.0; prices must be positive"),
    "inf size": (set_("bid_sz", np.inf), "bid_sz is inf; sizes must be non-negative"),
    # Finite, but beyond any market: a running sum of PnL over it goes to infinity.
    "huge prices": (both_prices(1e300), "bid_px is 1e+300; prices must be positive and below"),
    "huge size": (set_("ask_sz", 1e19), "ask_sz is 1e+19; sizes must be non-negative and below"),
    "negative size": (set_("ask_sz", -2.0), "ask_sz is -2.0; sizes must be non-negative"),
    "crossed": (set_("bid_px", 100.02), "crossed quote: bid_px 100.02 > ask_px 100.01"),
    "unknown instrument": (set_("instrument", 9), "instrument id 9 is not in the instruments"),
    "ts backwards": (ts_backwards, "ts_event goes backwards for instrument"),
    "duplicate seq": (duplicate_seq, "duplicate seq"),
    "seq backwards": (seq_backwards, "seq goes backwards"),
}


@pytest.mark.parametrize("fault", list(QUOTE_FAULTS))
@pytest.mark.parametrize("row", [3, 17, 39])
def test_quote_fault_names_file_row_and_fault(tmp_path: Path, fault: str, row: int) -> None:
    q = quotes()
    inject, message = QUOTE_FAULTS[fault]
    inject(q, row)
    path = write_rows(tmp_path / "bad.parquet", "quotes", q, simple_instruments())
    with pytest.raises(DataError) as err:
        read_all(path)
    assert str(err.value).startswith(f"{path}: row {row}: ")
    assert message in str(err.value)


def test_rows_out_of_global_order_are_named(tmp_path: Path) -> None:
    q = quotes()
    # Swap the timestamps of rows 10 and 11 (different instruments, each still in order).
    q["ts_event"][10], q["ts_event"][11] = q["ts_event"][11], q["ts_event"][10]
    path = write_rows(tmp_path / "bad.parquet", "quotes", q, simple_instruments())
    with pytest.raises(DataError, match=r"row 11: rows are not in \(ts_event, instrument, seq\)"):
        read_all(path)


def test_trade_side_and_size_faults(tmp_path: Path) -> None:
    t = np.zeros(10, dtype=TRADE_DTYPE)
    t["ts_event"] = np.arange(10) + 1
    t["instrument"] = 0
    t["seq"] = np.arange(10) + 1
    t["px"] = 10.0
    t["sz"] = 1.0
    t["side"] = 1
    t["side"][4] = 0
    path = write_rows(tmp_path / "t.parquet", "trades", t, simple_instruments())
    with pytest.raises(DataError, match="row 4: side is 0; expected 1 \\(buy\\) or -1 \\(sell\\)"):
        read_all(path)
    t["side"][4] = -1
    t["sz"][6] = 0.0
    write_rows(path, "trades", t, simple_instruments())
    with pytest.raises(DataError, match="row 6: sz is 0.0; sizes must be positive"):
        read_all(path)


def test_bar_range_and_duplicate_bar_faults(tmp_path: Path) -> None:
    b = np.zeros(6, dtype=BAR_DTYPE)
    b["ts_event"] = (np.arange(6) + 1) * 60_000_000_000
    b["open"], b["high"], b["low"], b["close"], b["volume"] = 10.0, 11.0, 9.0, 10.5, 100.0
    b["high"][2] = 10.2  # below the close
    path = write_rows(tmp_path / "b.parquet", "bars", b, simple_instruments())
    with pytest.raises(DataError, match="row 2: bar high/low do not enclose open/close"):
        read_all(path)
    b["high"][2] = 11.0
    b["ts_event"][4] = b["ts_event"][3]
    write_rows(path, "bars", b, simple_instruments())
    with pytest.raises(DataError, match="row 4: duplicate bar for instrument 0 \\(I0\\)"):
        read_all(path)


def _plain_parquet(path: Path, table: pa.Table, instruments=None) -> Path:
    meta = tickwise_schema("quotes", instruments or simple_instruments()).metadata
    pq.write_table(table.replace_schema_metadata(meta), path)
    return path


def test_wrong_column_type_is_named(tmp_path: Path) -> None:
    q = quotes()
    table = pa.table({n: q[n] for n in QUOTE_DTYPE.names})
    table = table.set_column(4, "bid_px", pa.array(q["bid_px"].astype(np.float32)))
    path = _plain_parquet(tmp_path / "f32.parquet", table)
    with pytest.raises(DataError, match="column 'bid_px' is float, expected double"):
        open_history(path)


def test_missing_column_is_named(tmp_path: Path) -> None:
    q = quotes()
    table = pa.table({n: q[n] for n in QUOTE_DTYPE.names if n != "ask_sz"})
    path = _plain_parquet(tmp_path / "missing.parquet", table)
    with pytest.raises(DataError, match="missing column 'ask_sz'"):
        open_history(path)


def test_null_value_is_named_with_its_row(tmp_path: Path) -> None:
    q = quotes()
    cols = {n: pa.array(q[n]) for n in QUOTE_DTYPE.names}
    values = q["ask_px"].tolist()
    values[12] = None
    cols["ask_px"] = pa.array(values, type=pa.float64())
    path = _plain_parquet(tmp_path / "null.parquet", pa.table(cols))
    with pytest.raises(DataError, match="row 12: ask_px is null"):
        read_all(path)


def test_file_without_tickwise_metadata_points_at_import(tmp_path: Path) -> None:
    q = quotes()
    path = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({n: q[n] for n in QUOTE_DTYPE.names}), path)
    with pytest.raises(DataError, match="no tickwise metadata.*tickwise data import"):
        open_history(path)


def test_not_parquet_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.parquet"
    path.write_text("not parquet")
    with pytest.raises(DataError, match="junk.parquet: not a readable Parquet file"):
        open_history(path)


def test_asking_for_the_wrong_kind_is_named(quotes_file: Path) -> None:
    with pytest.raises(DataError, match="holds quotes, not trades"):
        open_history(quotes_file, kind="trades")


def test_fault_in_a_hive_partition_names_that_file(tmp_path: Path) -> None:
    from ..conftest import make_synth

    root = make_synth(
        tmp_path / "hive", kind="quotes", rows=3000, instruments=3, seed=2, partition=True
    )
    victim = sorted(root.rglob("*.parquet"))[1]
    table = pq.read_table(victim)
    px = table.column("bid_px").to_numpy().copy()
    px[5] = np.nan
    table = table.set_column(table.schema.get_field_index("bid_px"), "bid_px", pa.array(px))
    pq.write_table(table.cast(market_schema("quotes").with_metadata(table.schema.metadata)), victim)
    with pytest.raises(DataError, match=f"{victim}: row 5: bid_px is NaN"):
        read_all(root, batch_size=100)


def test_files_of_one_history_must_share_kind_and_instruments(tmp_path: Path) -> None:
    from ..conftest import make_synth

    make_synth(tmp_path / "a" / "q.parquet", kind="quotes", rows=100, instruments=2, seed=1)
    make_synth(tmp_path / "a" / "r.parquet", kind="quotes", rows=100, instruments=3, seed=1)
    with pytest.raises(
        DataError, match=r"r.parquet: its instruments table differs from .*q.parquet"
    ):
        open_history(tmp_path / "a")
    make_synth(tmp_path / "b" / "q.parquet", kind="quotes", rows=100, instruments=2, seed=1)
    make_synth(tmp_path / "b" / "t.parquet", kind="trades", rows=100, instruments=2, seed=1)
    with pytest.raises(DataError, match="t.parquet: holds trades, not quotes"):
        open_history(tmp_path / "b")


def test_inspect_names_the_first_price_off_the_tick_grid_and_replay_does_not_look(
    tmp_path: Path,
) -> None:
    """A 0.02 tick on 0.01-grid data: inspect says where it breaks (as import refuses it),
    while a replay, which trusts files that passed, reads it."""
    from tickwise.engine.instruments import Instrument, Instruments
    from tickwise.feeds.inspection import inspect_history

    q = quotes()
    q["ask_px"][::2] = 100.02  # (on both grids)
    coarse = Instruments(Instrument(i, f"I{i}", 0.02, 1.0) for i in range(3))
    path = write_rows(tmp_path / "q.parquet", "quotes", q, coarse)
    report = inspect_history(path)
    assert not report.valid
    assert (
        report.fault == f"{path}: row 1: ask_px 100.01 is off instrument 1 (I1)'s tick grid of 0.02"
    )
    assert report.rows_checked == 0  # (the batch holding the fault is not counted)
    assert read_all(path).num_rows == len(q)
    fine = write_rows(tmp_path / "f.parquet", "quotes", q, simple_instruments(3))
    assert inspect_history(fine).valid
