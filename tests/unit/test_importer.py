"""CSV import: validated like replay, sorted into the global order, all or nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tickwise.engine.errors import DataError, TickwiseError
from tickwise.feeds.history import open_history
from tickwise.feeds.importer import import_history

from ..conftest import table_of

GOOD = """ts_event,symbol,bid_px,ask_px,bid_sz,ask_sz
2024-01-02T14:30:00.000000100Z,MSFT,370.10,370.12,3,4
2024-01-02T14:30:00.000000200Z,MSFT,370.11,370.12,1,4
2024-01-02T14:30:00.000000050Z,AAPL,185.20,185.21,2,2
2024-01-02T14:30:00.000000300Z,AAPL,185.21,185.23,5,6
"""


def write(tmp_path: Path, text: str, name: str = "in.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_import_sorts_maps_symbols_and_fills_defaults(tmp_path: Path) -> None:
    src = write(tmp_path, GOOD)
    result = import_history(src, "quotes", tmp_path / "out.parquet", tick_size=0.01)
    assert result.rows == 4
    history = open_history(result.path)
    assert history.instruments.symbols() == ["AAPL", "MSFT"]
    t = table_of(history.batches(3))
    assert t.column("ts_event").to_pylist() == [
        1704205800000000050,
        1704205800000000100,
        1704205800000000200,
        1704205800000000300,
    ]
    assert t.column("instrument").to_pylist() == [0, 1, 1, 0]
    assert t.column("seq").to_pylist() == [1, 1, 2, 2]  # per instrument, in file order
    assert t.column("ts_recv").to_pylist() == t.column("ts_event").to_pylist()


def test_instrument_file_sets_ids_ticks_and_lots(tmp_path: Path) -> None:
    table = write(
        tmp_path,
        "symbol,tick_size,lot_size,id\nMSFT,0.01,100,7\nAAPL,0.01,1,3\n",
        "instruments.csv",
    )
    result = import_history(
        write(tmp_path, GOOD), "quotes", tmp_path / "o.parquet", instruments_file=table
    )
    inst = open_history(result.path).instruments
    assert inst.by_symbol("MSFT").id == 7
    assert inst.by_symbol("MSFT").lot_size == 100
    assert inst.by_symbol("AAPL").id == 3


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda rows: rows.__setitem__(3, rows[3].replace("185.20", "nan")),
            "line 4: bid_px is NaN",
        ),
        (
            lambda rows: rows.__setitem__(2, rows[2].replace("370.11", "abc")),
            "line 3: bid_px is 'abc'; expected Float64",
        ),
        (
            lambda rows: rows.__setitem__(2, rows[2].replace("370.11,370.12", "370.13,370.12")),
            "line 3: crossed quote: bid_px 370.13 > ask_px 370.12",
        ),
        (
            lambda rows: rows.__setitem__(2, rows[2].replace(".000000200Z", ".000000010Z")),
            "line 3: ts_event goes backwards for instrument 1 (MSFT)",
        ),
        (
            lambda rows: rows.__setitem__(4, rows[4].replace(",5,6", ",5,")),
            "line 5: ask_sz is empty",
        ),
        (
            lambda rows: rows.__setitem__(1, rows[1].replace("2024-01-02T", "yesterday ")),
            "line 2: ts_event is 'yesterday",
        ),
        (
            lambda rows: rows.__setitem__(2, rows[2].replace("370.11", "370.115")),
            "line 3: bid_px 370.115 is off instrument 1 (MSFT)'s tick grid of 0.01",
        ),
    ],
)
def test_bad_csv_names_the_line_and_writes_nothing(tmp_path: Path, edit, message: str) -> None:
    rows = GOOD.splitlines()
    edit(rows)
    src = write(tmp_path, "\n".join(rows) + "\n")
    out = tmp_path / "out.parquet"
    with pytest.raises(DataError) as err:
        import_history(src, "quotes", out)
    assert str(err.value).startswith(f"{src}: ")
    assert message in str(err.value)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_failed_import_keeps_the_existing_output(tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    import_history(write(tmp_path, GOOD), "quotes", out)
    before = out.read_bytes()
    bad = write(tmp_path, GOOD.replace("185.20", "-1"), "bad.csv")
    with pytest.raises(DataError, match="bid_px is -1.0"):
        import_history(bad, "quotes", out, overwrite=True)
    assert out.read_bytes() == before


def test_missing_columns_are_listed(tmp_path: Path) -> None:
    src = write(tmp_path, "ts_event,symbol,bid_px\n1,A,1.0\n")
    with pytest.raises(DataError, match=r"missing columns \['ask_px', 'bid_sz', 'ask_sz'\]"):
        import_history(src, "quotes", tmp_path / "o.parquet")


def test_trades_with_integer_ids_and_ns_times(tmp_path: Path) -> None:
    src = write(
        tmp_path,
        "ts_event,ts_recv,instrument,seq,px,sz,side\n"
        "10,12,0,1,5.5,2,1\n11,13,2,1,7.25,1,-1\n12,15,0,2,5.6,3,-1\n",
    )
    result = import_history(src, "trades", tmp_path / "t.parquet")
    history = open_history(result.path)
    assert [i.id for i in history.instruments] == [0, 2]
    t = table_of(history.batches(10))
    np.testing.assert_array_equal(t.column("side").to_numpy(), [1, -1, -1])
    assert pq.read_schema(result.path).field("side").type == "int8"


def test_import_refuses_to_overwrite_without_the_flag(tmp_path: Path) -> None:
    out = tmp_path / "o.parquet"
    import_history(write(tmp_path, GOOD), "quotes", out)
    with pytest.raises(TickwiseError, match="already exists; pass --overwrite"):
        import_history(write(tmp_path, GOOD), "quotes", out)


def test_a_price_off_the_tick_grid_is_refused_on_import(tmp_path: Path) -> None:
    """A 0.02 tick on 0.01-grid data imported as valid, and then every limit order at the
    touch was refused as bad_price: the grid is part of the data contract."""
    with pytest.raises(DataError, match=r"line 3: bid_px 370.11 is off instrument 1 \(MSFT\)'s"):
        import_history(write(tmp_path, GOOD), "quotes", tmp_path / "o.parquet", tick_size=0.02)
    header = "ts_event,symbol,bid_px,ask_px,bid_sz,ask_sz\n"
    even = header + "1,M,370.1,370.12,3,4\n2,M,370.14,370.2,1,4\n"
    result = import_history(write(tmp_path, even, "even.csv"), "quotes", tmp_path / "e.parquet",
                            tick_size=0.02)  # fmt: skip
    assert result.rows == 2


SHUFFLED = """ts_event,symbol,bid_px,ask_px,bid_sz,ask_sz
2024-01-02T14:30:00.000000300Z,AAPL,185.21,185.23,5,6
2024-01-02T14:30:00.000000200Z,MSFT,370.11,370.12,1,4
2024-01-02T14:30:00.000000100Z,MSFT,370.10,370.12,3,4
2024-01-02T14:30:00.000000200Z,MSFT,370.11,370.13,2,4
2024-01-02T14:30:00.000000050Z,AAPL,185.20,185.21,2,2
"""


def test_without_sort_rows_out_of_time_order_are_refused_at_the_first(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="line 4: ts_event goes backwards for instrument 1"):
        import_history(write(tmp_path, SHUFFLED), "quotes", tmp_path / "o.parquet")


@pytest.mark.parametrize("chunk_rows", [1_000, 2])  # read whole, and two rows at a time
def test_sort_puts_a_raw_file_in_time_order_stably(tmp_path: Path, chunk_rows) -> None:
    out = tmp_path / "o.parquet"
    result = import_history(write(tmp_path, SHUFFLED), "quotes", out, sort=True,
                            chunk_rows=chunk_rows)  # fmt: skip
    assert (result.rows, result.bad_rows) == (5, 0)
    t = table_of(open_history(out).batches(10))
    assert t.column("ts_event").to_pylist() == [
        1704205800000000050, 1704205800000000100, 1704205800000000200,
        1704205800000000200, 1704205800000000300,
    ]  # fmt: skip
    assert t.column("ask_px").to_pylist() == [185.21, 370.12, 370.12, 370.13, 185.23]  # stable
    assert t.column("seq").to_pylist() == [1, 1, 2, 3, 2]  # numbered in time order


def test_bad_rows_are_set_aside_with_line_and_reason_and_the_rest_imported(
    tmp_path: Path,
) -> None:
    import polars as pl

    rows = GOOD.splitlines()
    rows[2] = rows[2].replace("370.11,370.12", "370.13,370.12")  # crossed
    rows[3] = rows[3].replace("185.20", "abc")  # not a number
    rows.append("2024-01-02T14:30:00.000000400Z,MSFT,370.11,370.12,,4")  # empty size
    rows.append("2024-01-02T14:30:00.000000010Z,MSFT,370.11,370.12,1,4")  # backwards
    out, bad = tmp_path / "o.parquet", tmp_path / "bad.csv"
    result = import_history(write(tmp_path, "\n".join(rows) + "\n"), "quotes", out,
                            bad_rows=bad)  # fmt: skip
    assert (result.rows, result.bad_rows) == (2, 4)
    refused = pl.read_csv(bad, infer_schema=False)
    assert refused["line"].to_list() == ["3", "4", "6", "7"]
    reasons = refused["reason"].to_list()
    assert "crossed quote" in reasons[0]
    assert "bid_px is 'abc'" in reasons[1]
    assert "bid_sz is empty" in reasons[2]
    assert "ts_event goes backwards" in reasons[3]
    assert refused["bid_px"].to_list()[1] == "abc"  # the row as it was written
    t = table_of(open_history(out).batches(10))
    assert t.column("ts_event").to_pylist() == [1704205800000000100, 1704205800000000300]


def test_bad_rows_with_sort_keeps_late_rows_and_names_lines_of_the_source(tmp_path: Path) -> None:
    import polars as pl

    rows = SHUFFLED.splitlines()
    rows[2] = rows[2].replace("370.11", "0")  # line 3: a price of zero
    out, bad = tmp_path / "o.parquet", tmp_path / "bad.csv"
    result = import_history(write(tmp_path, "\n".join(rows) + "\n"), "quotes", out, sort=True,
                            bad_rows=bad, chunk_rows=2)  # fmt: skip
    assert (result.rows, result.bad_rows) == (4, 1)
    refused = pl.read_csv(bad, infer_schema=False)
    assert refused["line"].to_list() == ["3"]
    assert "bid_px is 0.0" in refused["reason"][0]


def test_the_bad_rows_file_holds_its_header_alone_when_every_row_is_good(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    result = import_history(write(tmp_path, GOOD), "quotes", tmp_path / "o.parquet", bad_rows=bad)
    assert result.bad_rows == 0
    assert bad.read_text() == "line,reason,ts_event,symbol,bid_px,ask_px,bid_sz,ask_sz\n"


def test_when_every_row_is_refused_they_are_where_the_error_says(tmp_path: Path) -> None:
    rows = GOOD.replace("2024-01-02T", "someday ")
    bad, out = tmp_path / "bad.csv", tmp_path / "o.parquet"
    with pytest.raises(DataError, match=f"all 4 rows were refused, each written to {bad}"):
        import_history(write(tmp_path, rows), "quotes", out, bad_rows=bad)
    assert len(bad.read_text().splitlines()) == 5
    assert not out.exists()


@pytest.mark.parametrize("chunk_rows", [1, 2, 4])
def test_integer_and_iso_times_may_mix_however_the_file_is_read(tmp_path: Path, chunk_rows):
    text = (
        "ts_event,instrument,px,sz,side\n1704205800000000000,0,1.5,1,1\n"
        "2024-01-02T14:30:01Z,0,1.5,1,1\n1704205802000000000,0,1.5,1,1\nlater,0,1.5,1,1\n"
    )
    bad = tmp_path / "bad.csv"
    result = import_history(write(tmp_path, text), "trades", tmp_path / "t.parquet",
                            bad_rows=bad, chunk_rows=chunk_rows)  # fmt: skip
    assert (result.rows, result.bad_rows) == (3, 1)
    assert "line 5" not in bad.read_text()  # (the file names lines without the word)
    assert "5,ts_event is 'later'; expected integer ns or an ISO-8601 time" in bad.read_text()


def test_sort_of_more_rows_than_its_memory_spills_and_keeps_every_row(tmp_path: Path) -> None:
    """The sort is out of core: given 32 MB for 800,000 rows (53 MB as staged), it spills
    to disk and gives the same rows in the same order as an in-memory sort."""
    import polars as pl

    rng = np.random.default_rng(3)
    n = 800_000
    ts = rng.integers(0, 10**9, n)
    frame = pl.DataFrame({
        "ts_event": ts, "instrument": rng.integers(0, 7, n),
        "px": 100 + rng.integers(0, 500, n) / 100, "sz": rng.integers(1, 9, n).astype(float),
        "side": rng.choice([1, -1], n),
    })  # fmt: skip
    src = tmp_path / "raw.csv"
    frame.write_csv(src)
    out = tmp_path / "t.parquet"
    result = import_history(src, "trades", out, sort=True, chunk_rows=100_000, sort_memory="32MB")
    assert result.rows == n
    got = pl.read_parquet(out)
    want = frame.with_row_index("line").sort(["ts_event", "instrument", "line"])
    assert got["ts_event"].to_list() == want["ts_event"].to_list()
    assert got["px"].to_list() == want["px"].to_list()  # ties in the source's order


@pytest.mark.parametrize("chunk_rows", [1, 3])
def test_iso_times_in_any_listed_form_parse_however_the_file_is_read(tmp_path: Path, chunk_rows):
    text = (
        "ts_event,instrument,px,sz,side\n2024-01-02T14:30:00Z,0,1.5,1,1\n"
        "2024-01-02T14:30:00.5Z,0,1.5,1,1\n2024-01-02 14:30:01,0,1.5,1,1\n"
        "2024-01-02T15:30:02+01:00,0,1.5,1,1\n"
    )
    out = tmp_path / "t.parquet"
    result = import_history(write(tmp_path, text), "trades", out, chunk_rows=chunk_rows)
    assert result.rows == 4
    assert table_of(open_history(out).batches(10)).column("ts_event").to_pylist() == [
        1704205800000000000, 1704205800500000000, 1704205801000000000, 1704205802000000000,
    ]  # fmt: skip


def test_a_bad_rows_file_inside_the_output_is_refused_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "hive"
    with pytest.raises(TickwiseError, match="is inside the output"):
        import_history(write(tmp_path, GOOD), "quotes", out, partition=True,
                       bad_rows=out / "bad.csv")  # fmt: skip
    assert not out.exists()


def test_values_with_spaces_import_alike_in_order_and_out_of_order(tmp_path: Path) -> None:
    """The one-pass import reads values with their types (which allows spaces around a
    number); the sorting import reads them as text: both take " 100.25" as 100.25."""
    head = "ts_event,symbol,bid_px,ask_px,bid_sz,ask_sz\n"
    ordered = tmp_path / "a.csv"
    ordered.write_text(head + "1000,ES, 100.25, 100.5,1,1\n2000,ES,100.25,100.5 ,1,1\n")
    unordered = tmp_path / "b.csv"
    unordered.write_text(head + "2000,ES,100.25,100.5 ,1,1\n1000,ES, 100.25, 100.5,1,1\n")
    a = import_history(ordered, "quotes", tmp_path / "a.parquet", tick_size=0.25)
    b = import_history(unordered, "quotes", tmp_path / "b.parquet", tick_size=0.25, sort=True)
    assert a.rows == b.rows == 2
    assert pq.read_table(a.path).equals(pq.read_table(b.path))


def test_an_import_never_replaces_its_own_source(tmp_path: Path) -> None:
    source = tmp_path / "q.csv"
    source.write_text("ts_event,symbol,bid_px,ask_px,bid_sz,ask_sz\n1,ES,100.25,100.5,1,1\n")
    with pytest.raises(TickwiseError, match="would replace the source"):
        import_history(source, "quotes", source, overwrite=True)
    with pytest.raises(TickwiseError, match="would replace the source"):
        import_history(source, "quotes", tmp_path, overwrite=True)
    assert source.read_text().startswith("ts_event")
