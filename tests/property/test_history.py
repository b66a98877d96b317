"""The reader: one deterministic order and content, whatever the batch size or file layout."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickwise.engine.errors import DataError
from tickwise.engine.schemas import QUOTE_DTYPE
from tickwise.feeds.history import columns, open_history
from tickwise.feeds.store import HistoryWriter

from ..conftest import make_synth, simple_instruments, table_of, write_rows
from ..unit.test_validation import quotes

KINDS = ("quotes", "trades", "bars", "book")
NEAR_CLOSE = dt.datetime(2024, 1, 2, 20, 59, 59, tzinfo=dt.UTC)  # data spill into the next day


@pytest.fixture(scope="module")
def histories(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, pa.Table]]:
    """Each kind as one file, with its rows read whole as the reference."""
    root = tmp_path_factory.mktemp("kinds")
    out = {}
    for kind in KINDS:
        path = make_synth(
            root / f"{kind}.parquet",
            kind=kind,
            rows=6_000,
            instruments=3,
            seed=5,
            rate=200.0 if kind == "bars" else 1000.0,
        )
        out[kind] = (path, pq.read_table(path))
    return out


@given(kind=st.sampled_from(KINDS), batch_size=st.integers(1, 7_000))
def test_content_and_order_do_not_depend_on_batch_size(histories, kind: str, batch_size: int):
    path, whole = histories[kind]
    batches = list(open_history(path).batches(batch_size))
    assert all(b.num_rows == batch_size for b in batches[:-1])
    assert 0 < batches[-1].num_rows <= batch_size
    assert table_of(batches).equals(whole.combine_chunks().cast(batches[0].schema))


@pytest.mark.parametrize("kind", KINDS)
def test_hive_directory_reads_in_the_same_order_as_one_file(tmp_path: Path, kind: str) -> None:
    rows = 3_000 if kind == "bars" else 8_000
    common = dict(kind=kind, rows=rows, instruments=4, seed=9, start=NEAR_CLOSE)
    single = make_synth(tmp_path / "one.parquet", **common)
    hive = make_synth(tmp_path / "hive", partition=True, **common)
    files = sorted(hive.rglob("*.parquet"))
    assert len({f.parent.parent.name for f in files}) >= 2, "expected several date partitions"
    assert len(files) >= 8
    for batch_size in (1_000, 4_096):
        a = table_of(open_history(single).batches(batch_size))
        b = table_of(open_history(hive).batches(batch_size))
        assert a.equals(b)


@given(
    owners=st.lists(st.integers(0, 3), min_size=60, max_size=60),
    batch_size=st.integers(1, 70),
)
def test_rows_spread_over_files_merge_back_in_global_order(tmp_path_factory, owners, batch_size):
    """However rows are dealt out to files (each file in order), the merge restores the order."""
    root = tmp_path_factory.mktemp("merge")
    q = quotes(60, instruments=3)
    q["ts_event"] = q["ts_event"][0] + np.arange(60) // 3 * 3_000_000  # ties across instruments
    owners = np.array(owners)
    for f in np.unique(owners):
        write_rows(root / f"part-{f}.parquet", "quotes", q[owners == f], simple_instruments())
    merged = table_of(open_history(root).batches(batch_size))
    cols = {n: merged.column(n).to_numpy() for n in q.dtype.names}
    for name in q.dtype.names:
        np.testing.assert_array_equal(cols[name], q[name])


def test_files_open_only_when_the_merge_reaches_them(tmp_path: Path) -> None:
    """A day's file is not opened (not even validated) before the merge needs its rows."""
    hive = make_synth(
        tmp_path / "hive",
        kind="quotes",
        rows=4_000,
        instruments=2,
        seed=1,
        partition=True,
        start=NEAR_CLOSE,
    )
    last_day = sorted(hive.glob("date=*"))[-1]
    victim = next(last_day.rglob("*.parquet"))
    table = pq.read_table(victim)
    px = table.column("ask_px").to_numpy().copy()
    px[0] = -1.0
    idx = table.schema.get_field_index("ask_px")
    pq.write_table(table.set_column(idx, table.schema.field(idx), pa.array(px)), victim)
    reader = open_history(hive).batches(100)
    first = next(reader)  # the first day streams fine
    assert first.num_rows == 100
    with pytest.raises(DataError, match=f"{victim}: row 0: ask_px is -1.0"):
        for _ in reader:
            pass


@given(
    records=st.lists(
        st.tuples(
            st.integers(0, 2),  # instrument
            st.integers(1, 5_000),  # time step (ns)
            st.floats(0.01, 1e6),  # bid
            st.floats(0.0, 1e3),  # spread
            st.floats(0.0, 1e9),  # bid size
            st.floats(0.0, 1e9),  # ask size
        ),
        min_size=1,
        max_size=300,
    ),
    batch_size=st.integers(1, 400),
)
def test_quotes_round_trip_through_parquet_exactly(tmp_path_factory, records, batch_size):
    q = np.zeros(len(records), dtype=QUOTE_DTYPE)
    seq = {0: 0, 1: 0, 2: 0}
    ts = 1_700_000_000_000_000_000
    for row, (inst, step, bid, spread, bsz, asz) in zip(q, records, strict=True):
        ts += step
        seq[inst] += 1
        row["ts_event"], row["ts_recv"], row["instrument"], row["seq"] = ts, ts + 7, inst, seq[inst]
        row["bid_px"], row["ask_px"], row["bid_sz"], row["ask_sz"] = bid, bid + spread, bsz, asz
    path = tmp_path_factory.mktemp("rt") / "q.parquet"
    with HistoryWriter(path, "quotes", simple_instruments(), overwrite=True) as writer:
        arrays = [pa.array(q[n]) for n in QUOTE_DTYPE.names]
        writer.write(pa.RecordBatch.from_arrays(arrays, names=list(QUOTE_DTYPE.names)))
    batches = list(open_history(path).batches(batch_size))
    got = np.concatenate(
        [np.rec.fromarrays(list(columns(b).values()), dtype=QUOTE_DTYPE) for b in batches]
    )
    np.testing.assert_array_equal(got, q)


@given(row=st.integers(0, 5_999), batch_size=st.integers(1, 2_500))
def test_fault_row_is_the_same_whatever_the_batch_size(
    tmp_path_factory, histories, row, batch_size
):
    _, whole = histories["quotes"]
    px = whole.column("bid_sz").to_numpy().copy()
    px[row] = np.nan
    idx = whole.schema.get_field_index("bid_sz")
    bad = tmp_path_factory.mktemp("bad") / "q.parquet"
    pq.write_table(whole.set_column(idx, whole.schema.field(idx), pa.array(px)), bad)
    with pytest.raises(DataError, match=f"row {row}: bid_sz is NaN"):
        for _ in open_history(bad).batches(batch_size):
            pass


def test_hidden_files_in_a_directory_are_skipped_but_a_hidden_folder_is_fine(
    tmp_path: Path, quotes_file: Path
) -> None:
    root = tmp_path / ".cache" / "hist"
    root.mkdir(parents=True)
    (root / "q.parquet").write_bytes(quotes_file.read_bytes())
    (root / ".q.parquet.tmp-123").mkdir()
    (root / ".q.parquet.tmp-123" / "junk.parquet").write_text("half-written")
    (root / ".partial.parquet").write_text("half-written")
    assert len(open_history(root).files) == 1
    assert open_history(root / "q.parquet").rows == 20_000


def test_hive_keys_stand_in_for_columns_the_files_lack(tmp_path: Path, quotes_file: Path) -> None:
    """Files written by other tools often keep the partition key only in the path."""
    whole = pq.read_table(quotes_file)
    root = tmp_path / "hive"
    for inst in range(4):
        part = whole.filter(pc.equal(whole.column("instrument"), inst))
        folder = root / f"instrument={inst}"
        folder.mkdir(parents=True)
        pq.write_table(part.drop_columns(["instrument"]), folder / "data.parquet")
    merged = table_of(open_history(root).batches(5_000))
    assert merged.equals(whole.combine_chunks().cast(merged.schema))


def test_a_bad_partition_key_is_named(tmp_path: Path, quotes_file: Path) -> None:
    folder = tmp_path / "hive" / "instrument=abc"
    folder.mkdir(parents=True)
    pq.write_table(pq.read_table(quotes_file).drop_columns(["instrument"]), folder / "d.parquet")
    with pytest.raises(DataError, match="partition key instrument='abc' is not a valid uint32"):
        next(open_history(tmp_path / "hive").batches(100))


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(KINDS), batch_size=st.integers(1, 7_000),
       cut=st.tuples(st.floats(-0.1, 1.1), st.floats(-0.1, 1.1)))  # fmt: skip
def test_a_time_window_gives_exactly_the_rows_inside_it(histories, kind, batch_size, cut):
    path, whole = histories[kind]
    ts = whole.column("ts_event").to_numpy()
    span = int(ts[-1] - ts[0])
    start, end = sorted(int(ts[0] + c * span) for c in cut)
    if start == end:
        end += 1
    batches = list(open_history(path).batches(batch_size, start, end))
    inside = whole.filter(pc.and_(pc.greater_equal(whole["ts_event"], start),
                                  pc.less(whole["ts_event"], end)))  # fmt: skip
    assert all(b.num_rows == batch_size for b in batches[:-1])
    got = table_of(batches) if batches else inside.slice(0, 0)
    assert got.num_rows == inside.num_rows
    if batches:
        assert got.equals(inside.combine_chunks().cast(batches[0].schema))


def test_a_window_skips_the_files_wholly_outside_it(tmp_path: Path) -> None:
    hive = make_synth(tmp_path / "hive", partition=True, kind="quotes", rows=20_000,
                      instruments=2, seed=3, start=NEAR_CLOSE)  # fmt: skip
    history = open_history(hive)
    lo = max(f.ts_min for f in history.files)  # where the last file to begin begins
    ts = table_of(history.batches(1_000)).column("ts_event").to_numpy()
    outside = [f for f in history.files if f.ts_max < lo]
    assert outside  # (the data spill into the next day: the first day's files end before)
    for f in outside:
        f.path.write_bytes(b"not parquet any more")  # read them and the window fails
    rows = sum(b.num_rows for b in history.batches(1_000, start=lo))
    assert rows == int((ts >= lo).sum())
    with pytest.raises(DataError, match="must be before the end"):
        list(history.batches(1_000, start=5, end=5))
