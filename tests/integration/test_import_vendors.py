"""`tickwise data import` of Tardis.dev CSV, Binance public-data archives and LOBSTER files,
each on files written in the vendor's documented layout, every field of a few rows checked
by hand."""

from __future__ import annotations

import gzip
import hashlib
import re
import zipfile
from pathlib import Path

import polars as pl
import pytest

from tickwise.cli import main as cli
from tickwise.engine.errors import DataError, TickwiseError
from tickwise.engine.schemas import BOOK_F_CLEAR, BOOK_F_LAST, BOOK_F_SNAPSHOT
from tickwise.feeds.vendors import detect_format
from tickwise.feeds.vendors.pipeline import import_vendor

US = 1_704_067_200_000_000  # 2024-01-01 00:00 UTC in µs
NS = US * 1000

TARDIS_L2 = """\
exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount
binance-futures,BTCUSDT,{t0},{t0},false,bid,42000.1,1.5
binance-futures,BTCUSDT,{t1},{t2},true,bid,42000.0,2.0
binance-futures,BTCUSDT,{t1},{t2},true,bid,41999.9,1.0
binance-futures,BTCUSDT,{t1},{t2},true,ask,42000.2,0.5
binance-futures,BTCUSDT,{t3},{t4},false,bid,42000.0,0
binance-futures,BTCUSDT,{t3},{t4},false,ask,42000.3,0.25
binance-futures,BTCUSDT,{t5},{t6},false,ask,42000.2,0.75
binance-futures,BTCUSDT,{t7},{t8},true,bid,41000.0,3.0
binance-futures,BTCUSDT,{t7},{t8},true,ask,41000.5,4.0
""".format(**{f"t{k}": US + 10 * k for k in range(9)})


def _gz(path: Path, text: str) -> Path:
    with gzip.open(path, "wt") as f:
        f.write(text)
    return path


def test_tardis_incremental_book_starts_at_a_snapshot_and_a_later_snapshot_resets_it(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    source = _gz(
        tmp_path / "binance-futures_incremental_book_L2_2024-01-01_BTCUSDT.csv.gz", TARDIS_L2
    )
    assert detect_format(source) == "tardis"
    out = tmp_path / "book.parquet"
    assert (
        cli(
            [
                "data",
                "import",
                str(source),
                "--tick-size",
                "0.1",
                "--lot-size",
                "0.001",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    snap, last, clear = BOOK_F_SNAPSHOT, BOOK_F_LAST, BOOK_F_CLEAR
    rows = pl.read_parquet(out).select("ts_event", "ts_recv", "side", "px", "sz", "flags").rows()
    assert rows == [
        # line 2 (before the first snapshot) is left out; lines 3-5 are one message
        (NS + 10_000, NS + 20_000, 1, 42000.0, 2.0, snap | clear),
        (NS + 10_000, NS + 20_000, 1, 41999.9, 1.0, snap),
        (NS + 10_000, NS + 20_000, -1, 42000.2, 0.5, snap | last),
        (NS + 30_000, NS + 40_000, 1, 42000.0, 0.0, 0),
        (NS + 30_000, NS + 40_000, -1, 42000.3, 0.25, last),
        (NS + 50_000, NS + 60_000, -1, 42000.2, 0.75, last),
        (NS + 70_000, NS + 80_000, 1, 41000.0, 3.0, snap | clear),
        (NS + 70_000, NS + 80_000, -1, 41000.5, 4.0, snap | last),
    ]
    printed = capsys.readouterr().out
    assert "note: 1 book updates before their symbol's first snapshot" in printed


def test_tardis_quotes_trades_and_snapshots(tmp_path: Path) -> None:
    t = [US + k for k in range(4)]
    quotes = _gz(
        tmp_path / "q.csv.gz",
        (
            "exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount\n"
            f"deribit,BTC-PERPETUAL,{t[0]},{t[1]},10,42000.5,42000,20\n"
            f"deribit,BTC-PERPETUAL,{t[2]},{t[3]},,,42000,20\n"
        ),
    )
    result = import_vendor([quotes], tmp_path / "q.parquet", tick_size=0.5)
    assert pl.read_parquet(result.out).select(
        "ts_event", "ts_recv", "bid_px", "ask_px", "bid_sz", "ask_sz"
    ).rows() == [(t[0] * 1000, t[1] * 1000, 42000.0, 42000.5, 20.0, 10.0)]
    assert (
        result.notes["quotes with a side missing (no quote: tickwise quotes have both)"].count == 1
    )
    trades = tmp_path / "t.csv"
    trades.write_text(
        "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"
        f"bitmex,XBTUSD,{t[0]},{t[1]},a1,buy,42000.5,100\n"
        f"bitmex,XBTUSD,{t[2]},{t[3]},a2,sell,42000,50\n"
        f"bitmex,XBTUSD,{t[2]},{t[3]},a3,unknown,42000,5\n"
    )
    result = import_vendor([trades], tmp_path / "t.parquet", tick_size=0.5)
    assert pl.read_parquet(result.out).select("ts_event", "px", "sz", "side").rows() == [
        (t[0] * 1000, 42000.5, 100.0, 1),
        (t[2] * 1000, 42000.0, 50.0, -1),
    ]
    snaps = tmp_path / "s.csv"
    head = (
        "exchange,symbol,timestamp,local_timestamp,asks[0].price,asks[0].amount,"
        "bids[0].price,bids[0].amount,asks[1].price,asks[1].amount,bids[1].price,"
        "bids[1].amount\n"
    )
    snaps.write_text(
        head
        + f"ftx,ETH-PERP,{t[0]},{t[1]},101,1,100,2,102,3,99,4\n"
        + f"ftx,ETH-PERP,{t[2]},{t[3]},101,1,100,5,,,99,4\n"
    )
    result = import_vendor([snaps], tmp_path / "s", tick_size=1)
    book = pl.read_parquet(result.paths["book"]).select("ts_event", "side", "px", "sz", "flags")
    assert book.rows() == [
        (t[0] * 1000, 1, 100.0, 2.0, 0),
        (t[0] * 1000, 1, 99.0, 4.0, 0),
        (t[0] * 1000, -1, 101.0, 1.0, 0),
        (t[0] * 1000, -1, 102.0, 3.0, BOOK_F_LAST),
        (t[2] * 1000, 1, 100.0, 5.0, 0),
        (t[2] * 1000, -1, 102.0, 0.0, BOOK_F_LAST),
    ]
    assert pl.read_parquet(result.paths["quotes"]).select("bid_px", "ask_px", "bid_sz").rows() == [
        (100.0, 101.0, 2.0),
        (100.0, 101.0, 5.0),
    ]


def _binance(
    folder: Path, name: str, rows: list[str], header: str | None = None, checksum: bool = True
) -> Path:
    path = folder / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(
            name.replace(".zip", ".csv"),
            ((header + "\n") if header else "") + "\n".join(rows) + "\n",
        )
    if checksum:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        (folder / (name + ".CHECKSUM")).write_text(f"{digest}  {name}\n")
    return path


def test_binance_trades_in_ms_and_in_us_and_the_aggressor_from_is_buyer_maker(
    tmp_path: Path,
) -> None:
    ms = 1_704_067_200_000
    spot = _binance(
        tmp_path,
        "BTCUSDT-aggTrades-2024-01-01.zip",
        [
            f"1,42000.10,0.5,10,11,{ms},True,True",
            f"2,42000.20,0.25,12,12,{ms + 1},False,True",
        ],
    )
    later = _binance(
        tmp_path,
        "BTCUSDT-aggTrades-2025-01-01.zip",
        [
            f"3,42000.30,1.0,13,13,{(ms + 2) * 1000 + 7},false,true",  # (µs since 2025)
        ],
    )
    futures = _binance(
        tmp_path,
        "ETHUSDT-trades-2024-01-01.zip",
        [
            f"5,2300.5,3,6901.5,{ms},false",
        ],
        header="id,price,qty,quote_qty,time,is_buyer_maker",
    )
    result = import_vendor(
        [spot, later, futures], tmp_path / "t.parquet", tick_size=0.01, lot_size=0.001
    )
    rows = pl.read_parquet(result.out).select("ts_event", "instrument", "px", "sz", "side").rows()
    assert rows == [
        (ms * 10**6, 0, 42000.1, 0.5, -1),  # a buyer that made: a seller took it
        (ms * 10**6, 1, 2300.5, 3.0, 1),
        ((ms + 1) * 10**6, 0, 42000.2, 0.25, 1),
        ((ms + 2) * 10**6 + 7000, 0, 42000.3, 1.0, 1),
    ]
    assert [i.symbol for i in result.instruments] == ["BTCUSDT", "ETHUSDT"]


def test_binance_book_ticker_and_klines(tmp_path: Path) -> None:
    ms = 1_704_067_200_000
    ticker = _binance(
        tmp_path,
        "BTCUSDT-bookTicker-2024-01-01.zip",
        [f"100,42000.0,1.5,42000.1,2.5,{ms},{ms + 3}"],
        header="update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,"
        "transaction_time,event_time",
    )
    result = import_vendor([ticker], tmp_path / "q.parquet", tick_size=0.1, lot_size=0.1)
    assert pl.read_parquet(result.out).select(
        "ts_event", "ts_recv", "bid_px", "ask_px", "bid_sz", "ask_sz"
    ).rows() == [(ms * 10**6, (ms + 3) * 10**6, 42000.0, 42000.1, 1.5, 2.5)]
    klines = _binance(
        tmp_path,
        "BTCUSDT-1m-2024-01-01.zip",
        [
            f"{ms},42000,42010,41990,42005,12.5,{ms + 59_999},525000,100,6,252000,0",
            f"{ms + 60_000},42005,42006,42001,42002,1.5,{ms + 119_999},63000,10,1,42000,0",
        ],
    )
    result = import_vendor([klines], tmp_path / "b.parquet", tick_size=1)
    assert pl.read_parquet(result.out).select(
        "ts_event", "open", "high", "low", "close", "volume"
    ).rows() == [
        ((ms + 60_000) * 10**6, 42000.0, 42010.0, 41990.0, 42005.0, 12.5),
        ((ms + 120_000) * 10**6, 42005.0, 42006.0, 42001.0, 42002.0, 1.5),
    ]


def test_binance_checksum_mismatch_and_truncated_archives_are_one_line_each(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    ms = 1_704_067_200_000
    good = _binance(
        tmp_path,
        "BTCUSDT-trades-2024-01-01.zip",
        [f"{k},42000,1,42000,{ms + k},true,true" for k in range(2000)],
    )
    data = good.read_bytes()
    good.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # one bit off
    assert cli(["data", "import", str(good), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "checksum mismatch" in err
    assert len(err.strip().splitlines()) == 1
    (tmp_path / "BTCUSDT-trades-2024-01-01.zip.CHECKSUM").unlink()
    good.write_bytes(data[: len(data) // 2])
    assert cli(["data", "import", str(good), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "not a readable zip archive" in err
    assert len(err.strip().splitlines()) == 1
    odd = _binance(tmp_path, "BTCUSDT-trades-2024-01-02.zip", ["1,42000,1,42000,123456789012345,x"])
    with pytest.raises(DataError, match=r"line 1: time is 123456789012345: neither milliseconds"):
        import_vendor([odd], tmp_path / "o")


LOBSTER_MESSAGES = """\
34200.000000001,1,11,100,1000000,1
34200.5,1,12,50,1000100,-1
34201.25,4,12,20,1000100,-1
34201.5,5,0,10,1000200,1
34202,3,11,100,1000000,1
34203,6,0,500,1000050,1
"""
# After each message: ask px, ask size, bid px, bid size (one level).
LOBSTER_BOOK = """\
9999999999,0,1000000,100
1000100,50,1000000,100
1000100,30,1000000,100
1000100,30,1000000,100
1000100,30,-9999999999,0
1000100,30,-9999999999,0
"""


def test_lobster_messages_alone_become_books_and_with_the_orderbook_file_its_book(
    tmp_path: Path,
) -> None:
    messages = tmp_path / "AAPL_2012-06-21_34200000_57600000_message_1.csv"
    messages.write_text(LOBSTER_MESSAGES)
    book = tmp_path / "AAPL_2012-06-21_34200000_57600000_orderbook_1.csv"
    book.write_text(LOBSTER_BOOK)
    assert detect_format(messages) == "lobster"
    t0 = 1_340_285_400_000_000_000  # 2012-06-21 09:30 New York (EDT) = 13:30 UTC
    alone = import_vendor([messages], tmp_path / "alone", tick_size=0.01)
    trades = pl.read_parquet(alone.paths["trades"]).select("ts_event", "px", "sz", "side")
    assert trades.rows() == [
        (t0 + 1_250_000_000, 100.01, 20.0, 1),  # a visible sell executed: a buyer took it
        (t0 + 1_500_000_000, 100.02, 10.0, -1),  # a hidden buy executed: a seller took it
    ]
    quotes = pl.read_parquet(alone.paths["quotes"]).select(
        "ts_event", "bid_px", "ask_px", "bid_sz", "ask_sz"
    )
    assert quotes.rows() == [
        (t0 + 500_000_000, 100.0, 100.01, 100.0, 50.0),
        (t0 + 1_250_000_000, 100.0, 100.01, 100.0, 30.0),
    ]
    assert alone.notes["cross (auction) trades (left out: no aggressor)"].count == 1
    both = import_vendor([messages, book], tmp_path / "both", tick_size=0.01)
    assert pl.read_parquet(both.paths["quotes"]).equals(pl.read_parquet(alone.paths["quotes"]))
    assert pl.read_parquet(both.paths["trades"]).equals(pl.read_parquet(alone.paths["trades"]))
    deltas = pl.read_parquet(both.paths["book"]).select("ts_event", "side", "px", "sz")
    assert deltas.rows() == [
        (t0 + 1, 1, 100.0, 100.0),
        (t0 + 500_000_000, -1, 100.01, 50.0),
        (t0 + 1_250_000_000, -1, 100.01, 30.0),
        (t0 + 2_000_000_000, 1, 100.0, 0.0),
    ]
    with pytest.raises(DataError, match="needs its message file"):
        import_vendor([book], tmp_path / "x")
    book.write_text(LOBSTER_BOOK + "1000100,30,-9999999999,0\n")
    with pytest.raises(DataError, match="has more rows than"):
        import_vendor([messages, book], tmp_path / "y", tick_size=0.01)
    assert re.match(r".*_orderbook_1\.csv$", book.name)


def test_the_command_offers_every_vendor_format() -> None:
    from tickwise.cli.data import FORMATS
    from tickwise.feeds.vendors import readers

    assert set(FORMATS) == set(readers())


def test_lobster_crosses_unknown_orders_masked_hidden_sides_and_a_second_day(
    tmp_path: Path,
) -> None:
    """A cross has a negative id and is counted; an execution of an order resting before the
    file began is still a print; from 2014-07-14 a hidden execution's side is masked (left
    out); a second day's file starts from a cleared book."""
    day1 = tmp_path / "MSFT_2015-03-02_34200000_57600000_message_1.csv"
    day1.write_text(
        "34200.1,4,999,30,450000,-1\n"  # (order 999 rested before 9:30: a print all the same)
        "34200.2,5,0,10,450100,1\n"  # (hidden, 2015: side masked)
        "34200.3,6,-1,5000,450050,1\n"  # (the opening cross)
        "34200.4,1,1,100,449900,1\n"
        "34200.5,1,2,100,450200,-1\n"
    )
    day2 = tmp_path / "MSFT_2015-03-03_34200000_57600000_message_1.csv"
    day2.write_text("34200.1,1,7,40,451000,1\n34200.2,1,8,10,451100,-1\n")
    result = import_vendor([day1, day2], tmp_path / "m", tick_size=0.01)
    t1 = 1_425_306_600_000_000_000  # 2015-03-02 09:30 New York (EST) = 14:30 UTC
    t2 = t1 + 86_400 * 10**9
    trades = pl.read_parquet(result.paths["trades"]).select("ts_event", "px", "sz", "side")
    assert trades.rows() == [(t1 + 100_000_000, 45.0, 30.0, 1)]
    assert result.notes["cross (auction) trades (left out: no aggressor)"].count == 1
    assert (
        result.notes["hidden executions (left out: from 2014-07-14 Nasdaq masks their side)"].count
        == 1
    )
    assert result.notes["unknown order (cancel, delete or fill of an order not resting)"].count == 1
    book = pl.read_parquet(result.paths["book"]).select("ts_event", "side", "px", "sz")
    assert book.rows() == [
        (t1 + 400_000_000, 1, 44.99, 100.0),
        (t1 + 500_000_000, -1, 45.02, 100.0),
        (t2 + 100_000_000, 1, 44.99, 0.0),  # (the new day clears what the last one left)
        (t2 + 100_000_000, -1, 45.02, 0.0),
        (t2 + 100_000_000, 1, 45.1, 40.0),
        (t2 + 200_000_000, -1, 45.11, 10.0),
    ]
    bad = tmp_path / "AAPL_2012-13-45_34200000_57600000_message_1.csv"
    bad.write_text("34200.1,1,1,1,1,1\n")
    with pytest.raises(DataError, match="2012-13-45 in the file name is not a date"):
        import_vendor([bad], tmp_path / "x")


def test_tardis_snapshots_each_reset_the_book_and_other_datasets_are_refused(
    tmp_path: Path,
) -> None:
    source = tmp_path / "deribit_incremental_book_L2_2024-01-01_BTC-PERPETUAL.csv"
    source.write_text(
        "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount\n"
        f"deribit,BTC-PERPETUAL,{US},{US},true,bid,100,1\n"
        f"deribit,BTC-PERPETUAL,{US + 1},{US + 1},true,bid,99,1\n"
        f"deribit,BTC-PERPETUAL,{US + 2},{US + 2},true,ask,101,1\n"
    )
    rows = pl.read_parquet(import_vendor([source], tmp_path / "b.parquet", tick_size=1).out)
    snap, last, clear = BOOK_F_SNAPSHOT, BOOK_F_LAST, BOOK_F_CLEAR
    assert rows["flags"].to_list() == [snap | clear | last] * 3
    liquidations = tmp_path / "bitmex_liquidations_2024-01-01_XBTUSD.csv"
    liquidations.write_text(
        "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"
        f"bitmex,XBTUSD,{US},{US},x,buy,42000,5\n"
    )
    with pytest.raises(DataError, match="not imported; these are"):
        import_vendor([liquidations], tmp_path / "l.parquet")
    options = tmp_path / "deribit_options_chain_2024-01-01_OPTIONS.csv"
    options.write_text(
        "exchange,symbol,timestamp,local_timestamp,type,strike_price,expiration,"
        "bid_price,bid_amount,ask_price,ask_amount\n"
        f"deribit,BTC-5JAN24-40000-C,{US},{US},call,40000,{US},0.05,1,0.06,1\n"
    )
    with pytest.raises(DataError, match="not imported; these are"):
        import_vendor([options], tmp_path / "o.parquet")
    huge = tmp_path / "s.csv"
    huge.write_text(
        "exchange,symbol,timestamp,local_timestamp,asks[0].price,asks[0].amount,"
        "bids[0].price,bids[0].amount\n"
        f"binance,PEPEUSDT,{US},{US},0.000001,95000000000,0.0000009,1000\n"
    )
    with pytest.raises(DataError, match=r"line 2: asks\[0\]\.amount is 95000000000.0; expected"):
        import_vendor([huge], tmp_path / "h")


def test_binance_times_beyond_2262_and_a_damaged_member_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    late = _binance(tmp_path, "BTCUSDT-trades-2024-01-03.zip",
                    ["1,42000,1,42000,9300000000000,true,true"])  # fmt: skip
    with pytest.raises(DataError, match="after 2262"):
        import_vendor([late], tmp_path / "o")
    rows = [f"{k},42000,1,42000,{1_704_067_200_000 + k},true,true" for k in range(5000)]
    damaged = _binance(tmp_path, "BTCUSDT-trades-2024-01-04.zip", rows, checksum=False)
    data = bytearray(damaged.read_bytes())
    data[len(data) // 3] ^= 0xFF  # (inside the compressed member)
    damaged.write_bytes(bytes(data))
    assert cli(["data", "import", str(damaged), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "BTCUSDT-trades-2024-01-04.zip" in err
    assert len(err.strip().splitlines()) == 1


def test_hostile_inputs_are_refused_by_name_and_nothing_is_lost(tmp_path: Path) -> None:
    """What an adversary's trial found, one case each."""
    head = "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount\n"
    rows = [f"x,S,{US},{US},true,bid,100,1", f"x,S,{US + 1},{US + 1},false,bid,100,2",
            f"x,S,{US + 1},{US + 1},false,ask,101,abc", f"x,S,{US + 2},{US + 2},false,ask,102,1",
            f"x,S,{US + 3},{US + 3},false,ask,103,1,extra"]  # fmt: skip
    source = tmp_path / "l2.csv"
    source.write_text("\ufeff" + head + "\n".join(rows) + "\n")  # (a byte-order mark too)
    bad = tmp_path / "bad.csv"
    result = import_vendor([source], tmp_path / "b.parquet", tick_size=1, bad_rows=bad)
    book = pl.read_parquet(result.out).select("ts_event", "px", "sz", "flags").rows()
    # The message of lines 3-4 lost its last row: line 3 now ends it.
    assert book == [
        (NS, 100.0, 1.0, BOOK_F_SNAPSHOT | BOOK_F_CLEAR | BOOK_F_LAST),
        (NS + 1000, 100.0, 2.0, BOOK_F_LAST),
        (NS + 2000, 102.0, 1.0, BOOK_F_LAST),
    ]
    refused = pl.read_csv(bad).select("line", "reason").rows()
    assert refused[0] == (4, "amount is 'abc'; expected a number")
    assert "a row of 9 fields, not 8" in refused[1][1]
    assert "extra" in refused[1][1]
    # --out must not replace a source, nor a folder holding one; a source is given once.
    with pytest.raises(TickwiseError, match="would replace the source"):
        import_vendor([source], tmp_path, overwrite=True)
    with pytest.raises(TickwiseError, match="would replace the source"):
        import_vendor([source], source, overwrite=True)
    with pytest.raises(TickwiseError, match="given twice"):
        import_vendor([source, tmp_path / "." / "l2.csv"], tmp_path / "o")
    # An instruments file's values are checked, and ids are for --format csv.
    table = tmp_path / "i.csv"
    table.write_text("symbol,tick_size,lot_size\nS,,1\n")
    with pytest.raises(TickwiseError, match=r"i\.csv: line 2: tick_size is empty"):
        import_vendor([source], tmp_path / "o", instruments_file=table)
    table.write_text("symbol,tick_size,lot_size,id\nS,1,1,7\n")
    with pytest.raises(TickwiseError, match="an id column is for --format csv"):
        import_vendor([source], tmp_path / "o", instruments_file=table)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.parquet", "bad.csv", "i.csv",
                                                         "l2.csv"]  # fmt: skip


def test_lobster_a_second_days_orderbook_file_removes_what_the_first_day_left(
    tmp_path: Path,
) -> None:
    files = []
    for day, (bid, ask) in (("2012-06-21", (1000000, 1000100)), ("2012-06-22", (1000200, 1000300))):
        msg = tmp_path / f"AAPL_{day}_34200000_57600000_message_1.csv"
        msg.write_text(f"34200.1,1,1,10,{bid},1\n34200.2,1,2,10,{ask},-1\n")
        book = tmp_path / f"AAPL_{day}_34200000_57600000_orderbook_1.csv"
        book.write_text(f"9999999999,0,{bid},10\n{ask},10,{bid},10\n")
        files += [msg, book]
    result = import_vendor(files, tmp_path / "b", to=["book"], tick_size=0.01)
    levels: dict = {}
    for side, px, sz in pl.read_parquet(result.out).select("side", "px", "sz").rows():
        if sz:
            levels[(side, px)] = sz
        else:
            levels.pop((side, px), None)
    assert levels == {(1, 100.02): 10.0, (-1, 100.03): 10.0}  # (day 1's levels removed)
