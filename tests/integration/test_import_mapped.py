"""`tickwise data import --format mbo`: a venue's own order-by-order CSV, by column mapping."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from tickwise.cli import main as cli
from tickwise.engine.errors import DataError, TickwiseError
from tickwise.feeds.vendors.mapped import parse_mapping
from tickwise.feeds.vendors.pipeline import import_vendor

VENUE = """\
time,sym,id,what,dir,price,qty
2024-01-05T09:00:00.000000001Z,XYZ,1,ADD,buy,100.5,10
2024-01-05T09:00:00.000000002Z,XYZ,2,add,sell,100.75,4
2024-01-05T09:00:00.000000003Z,ABC,3,add,B,20.25,1.5
2024-01-05T09:00:00.000000003Z,ABC,4,add,S,20.5,2.25
2024-01-05T09:00:00.000000004Z,XYZ,2,trade,,,1
2024-01-05T09:00:00.000000005Z,XYZ,1,modify,buy,100.5,7
2024-01-05T09:00:00.000000006Z,XYZ,1,delete,,,
2024-01-05T09:00:00.000000007Z,ABC,,clear,,,
"""
MAP = ["--map", "ts_event=time", "--map", "symbol=sym", "--map", "order_id=id",
       "--map", "action=what", "--map", "side=dir", "--map", "size=qty"]  # fmt: skip
T = 1_704_445_200_000_000_000  # 2024-01-05 09:00 UTC


def test_a_venues_order_events_become_book_quotes_and_trades(tmp_path: Path) -> None:
    source = tmp_path / "venue.csv"
    source.write_text(VENUE)
    out = tmp_path / "l3"
    argv = ["data", "import", str(source), "--format", "mbo", *MAP, "--out", str(out)]
    assert cli(argv) == 0
    book = pl.read_parquet(out / "book.parquet")
    # Instruments are numbered in the order met: XYZ 0, ABC 1.
    assert book.select("ts_event", "instrument", "side", "px", "sz", "flags").rows() == [
        (T + 1, 0, 1, 100.5, 10.0, 1),
        (T + 2, 0, -1, 100.75, 4.0, 1),
        (T + 3, 1, 1, 20.25, 1.5, 1),
        (T + 3, 1, -1, 20.5, 2.25, 1),
        (T + 4, 0, -1, 100.75, 3.0, 1),
        (T + 5, 0, 1, 100.5, 7.0, 1),
        (T + 6, 0, 1, 100.5, 0.0, 1),
        (T + 7, 1, 1, 20.25, 0.0, 0),
        (T + 7, 1, -1, 20.5, 0.0, 1),
    ]
    quotes = pl.read_parquet(out / "quotes.parquet")
    assert quotes.select(
        "ts_event", "instrument", "bid_px", "ask_px", "bid_sz", "ask_sz"
    ).rows() == [
        (T + 2, 0, 100.5, 100.75, 10.0, 4.0),
        (T + 3, 1, 20.25, 20.5, 1.5, 2.25),
        (T + 4, 0, 100.5, 100.75, 10.0, 3.0),
        (T + 5, 0, 100.5, 100.75, 7.0, 3.0),
    ]
    trades = pl.read_parquet(out / "trades.parquet")
    assert trades.select("ts_event", "instrument", "px", "sz", "side").rows() == [
        (T + 4, 0, 100.75, 1.0, 1)  # (the resting sell was hit: a buyer took it)
    ]
    symbols = pl.read_parquet_schema(out / "book.parquet")
    assert list(symbols) == [
        "ts_event",
        "ts_recv",
        "instrument",
        "seq",
        "side",
        "px",
        "sz",
        "flags",
    ]


def test_rows_that_cannot_be_read_stop_the_import_or_go_to_bad_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    source = tmp_path / "venue.csv"
    lines = VENUE.splitlines()
    lines[3] = lines[3].replace("add", "replace")  # line 4: an action no one knows
    lines[5] = lines[5].replace("trade,,,1", "trade,,,lots")  # line 6: a size that is no number
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "l3"
    argv = ["data", "import", str(source), "--format", "mbo", *MAP, "--out", str(out)]
    assert cli(argv) == 1
    err = capsys.readouterr().err
    assert "venue.csv: line 4: action is 'replace'; expected one of add" in err
    assert not out.exists()
    bad = tmp_path / "bad.csv"
    assert cli([*argv, "--bad-rows", str(bad)]) == 0
    refused = pl.read_csv(bad)
    assert refused.select("line", "reason").rows() == [
        (4, "action is 'replace'; expected one of add, modify, delete, cancel, trade, clear"),
        (6, "size is empty or not a number"),
    ]
    printed = capsys.readouterr().out
    assert "set aside 2 bad rows" in printed
    # Order 3 never rested: the clear of ABC removes order 4's level alone.
    book = pl.read_parquet(out / "book.parquet")
    assert book.filter(pl.col("instrument") == 1).select("px", "sz").rows() == [
        (20.5, 2.25),
        (20.5, 0.0),
    ]


def test_a_missing_column_and_a_bad_mapping_are_one_line_each(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    source = tmp_path / "venue.csv"
    source.write_text(VENUE)
    assert (
        cli(["data", "import", str(source), "--format", "mbo", "--out", str(tmp_path / "o")]) == 1
    )
    err = capsys.readouterr().err
    assert "no column for ts_event (column 'ts_event'), symbol (column 'symbol')" in err
    assert "--map FIELD=COLUMN" in err
    with pytest.raises(TickwiseError, match="'colour' is not a field"):
        parse_mapping(["colour=red"])
    with pytest.raises(TickwiseError, match="write FIELD=COLUMN"):
        parse_mapping(["order_id"])
    assert cli(["data", "import", str(source), "--format", "csv", "--map", "a=b", "--kind",
                "quotes", "--out", str(tmp_path / "o")]) == 1  # fmt: skip
    assert "--map is for vendor formats" in capsys.readouterr().err


def test_a_parquet_source_names_its_rows_by_row(tmp_path: Path) -> None:
    source = tmp_path / "venue.parquet"
    frame = pl.read_csv(VENUE.encode(), infer_schema=False)
    frame = frame.with_columns(pl.when(pl.int_range(pl.len()) == 2).then(pl.lit("bogus"))
                               .otherwise(pl.col("what")).alias("what"))  # fmt: skip
    frame.write_parquet(source)
    bad = tmp_path / "bad.csv"
    argv = ["data", "import", str(source), "--format", "mbo", *MAP, "--out",
            str(tmp_path / "o"), "--bad-rows", str(bad)]  # fmt: skip
    assert cli(argv) == 0
    assert pl.read_csv(bad).select("row").to_series().to_list() == [3]


def test_a_mapped_column_that_is_not_there_and_quotes_going_back_are_refused(
    tmp_path: Path,
) -> None:
    source = tmp_path / "venue.csv"
    source.write_text(VENUE)
    mapping = parse_mapping([*MAP[1::2], "ts_recv=recvv"])  # (a misspelt column)
    with pytest.raises(DataError, match="--map ts_recv=recvv: no column 'recvv'"):
        import_vendor([source], tmp_path / "o", fmt="mbo", options={"mapping": mapping})
    back = tmp_path / "back.csv"
    back.write_text(
        "ts_event,symbol,order_id,action,side,price,size\n"
        "0,X,1,add,buy,100,1\n1,X,2,add,sell,101,1\n5,X,3,add,buy,100.5,1\n"
        "2,X,4,add,sell,100.75,1\n"
    )
    with pytest.raises(DataError, match="line 5: ts_event goes back in time"):
        import_vendor([back], tmp_path / "q", fmt="mbo", to=["quotes"], tick_size=0.25)
