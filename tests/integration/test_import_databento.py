"""`tickwise data import` of Databento DBN files: the vendor's samples, files written by the
vendor's encoder, and the command's errors."""

from __future__ import annotations

import random
import re
from pathlib import Path

import databento_dbn as dbn
import numpy as np
import polars as pl
import pytest
import zstandard

from tests.vendor_files import ES_ID, T0, ReferenceBook, mbo_record, write_dbn
from tickwise.cli import main as cli
from tickwise.engine.errors import DataError
from tickwise.feeds import book_kernels as bk
from tickwise.feeds.vendors import Symbols
from tickwise.feeds.vendors.databento import DatabentoReader, _layout, _metadata, _open, _records
from tickwise.feeds.vendors.pipeline import import_vendor

SAMPLES = Path(__file__).parent.parent / "data" / "databento"


def _decoded(path: Path) -> list:
    compression = dbn.Compression.ZSTD if path.suffix == ".zst" else dbn.Compression.NONE
    decoder = dbn.DBNDecoder(compression=compression, upgrade_policy=dbn.VersionUpgradePolicy.AS_IS)
    decoder.write(path.read_bytes())
    return decoder.decode()[1:]


@pytest.mark.parametrize(
    "name", sorted(p.name for p in SAMPLES.glob("*.dbn*") if "definition" not in p.name)
)
def test_the_reader_decodes_databentos_samples_as_databento_dbn_does(name: str) -> None:
    path = SAMPLES / name
    with _open(path) as stream:
        meta = _metadata(stream, path)
        schema = str(meta.schema.value)
        dtype, _ = _layout(schema, bool(meta.ts_out))
        ours = np.concatenate(list(_records(stream, dtype, path)) or [np.zeros(0, dtype)])
    theirs = _decoded(path)
    assert ours.size == len(theirs)
    for rec, obj in zip(ours, theirs, strict=True):
        for field in dtype.names:
            if field.startswith("_") or field == "length":
                continue
            want = getattr(obj, field)
            want = want.value if hasattr(want, "value") else want
            got = rec[field]
            if isinstance(got, bytes):
                got = got.decode()
            assert got == (want if not isinstance(want, str) else want[:1]) or (
                field == "rtype" and int(got) == int(want)
            ), (field, got, want)


def test_an_mbo_file_becomes_book_quotes_and_trades(tmp_path: Path) -> None:
    tick = 250_000_000  # 0.25, ES's tick, in 1e-9 units
    px = 4_700 * 10**9
    hour = 3_600 * 10**9
    snap = dbn.F_SNAPSHOT
    # The day's snapshot, as Databento writes it: a clear, then each resting order with the
    # time it was placed (old, in priority order, not in time order), all received at T0.
    recs = [
        mbo_record(T0 - 10, bk.ACT_CLEAR, 0, 0, dbn.UNDEF_PRICE, 0, flags=snap, recv=T0 - 1000),
        mbo_record(T0 - hour, bk.ACT_ADD, 1, 11, px, 5, flags=snap, recv=T0 - 1000),
        mbo_record(
            T0 - 2 * hour, bk.ACT_ADD, -1, 12, px + tick, 3, flags=snap | dbn.F_LAST, recv=T0 - 1000
        ),
        mbo_record(T0 + 100, bk.ACT_ADD, 1, 13, px, 2),
        mbo_record(T0 + 200, bk.ACT_TRADE, -1, 0, px, 4, flags=0),  # a seller takes 4 of 7
        mbo_record(T0 + 200, bk.ACT_NONE, 1, 11, px, 4, flags=0),  # (F: no effect)
        mbo_record(T0 + 200, bk.ACT_CANCEL, 1, 11, px, 4),  # the fill's cancel; event ends
        mbo_record(T0 + 300, bk.ACT_MODIFY, -1, 12, px + 2 * tick, 3),
    ]
    recs[5] = dbn.MBOMsg(
        publisher_id=1,
        instrument_id=ES_ID,
        ts_event=T0 + 200,
        order_id=11,
        price=px,
        size=4,
        action=dbn.Action.FILL,
        side=dbn.Side.BID,
        ts_recv=T0 + 1200,
        flags=0,
    )
    source = write_dbn(tmp_path / "es.mbo.dbn.zst", "mbo", recs, compress=True)
    out = tmp_path / "es"
    assert cli(["data", "import", str(source), "--tick-size", "0.25", "--out", str(out)]) == 0
    book = pl.read_parquet(out / "book.parquet")
    assert book.select(
        "ts_event", "ts_recv", "instrument", "seq", "side", "px", "sz", "flags"
    ).rows() == [
        # (stamped when the snapshot was taken; the snapshot's first row, and its last)
        (T0 - 1000, T0 - 1000, 0, 1, 1, 4700.0, 5.0, 2),
        (T0 - 1000, T0 - 1000, 0, 2, -1, 4700.25, 3.0, 3),
        (T0 + 100, T0 + 1100, 0, 3, 1, 4700.0, 7.0, 1),
        (T0 + 200, T0 + 1200, 0, 4, 1, 4700.0, 3.0, 1),
        (T0 + 300, T0 + 1300, 0, 5, -1, 4700.25, 0.0, 0),
        (T0 + 300, T0 + 1300, 0, 6, -1, 4700.5, 3.0, 1),
    ]
    quotes = pl.read_parquet(out / "quotes.parquet")
    assert quotes.select("ts_event", "seq", "bid_px", "ask_px", "bid_sz", "ask_sz").rows() == [
        (T0 - 1000, 1, 4700.0, 4700.25, 5.0, 3.0),
        (T0 + 100, 2, 4700.0, 4700.25, 7.0, 3.0),
        (T0 + 200, 3, 4700.0, 4700.25, 3.0, 3.0),
        (T0 + 300, 4, 4700.0, 4700.5, 3.0, 3.0),
    ]
    trades = pl.read_parquet(out / "trades.parquet")
    assert trades.select("ts_event", "ts_recv", "seq", "px", "sz", "side").rows() == [
        (T0 + 200, T0 + 1200, 1, 4700.0, 4.0, -1)
    ]
    meta = pl.read_parquet_schema(out / "quotes.parquet")
    assert list(meta) == [
        "ts_event",
        "ts_recv",
        "instrument",
        "seq",
        "bid_px",
        "ask_px",
        "bid_sz",
        "ask_sz",
    ]
    inspect = cli(["data", "inspect", str(out / "book.parquet")])
    assert inspect == 0


def _session(seed: int, n: int) -> list[tuple[int, int, int, int, int, bool]]:
    """A random order stream near one price: (action, side, id, px, qty, last)."""
    rng = random.Random(seed)
    live: list[int] = []
    out = []
    next_id = 1
    for _ in range(n):
        r = rng.random()
        last = rng.random() < 0.7
        if not live or r < 0.5:
            side = rng.choice((1, -1))
            px = (4700 * 4 + (-rng.randint(0, 6) if side == 1 else rng.randint(1, 7))) * 250_000_000
            out.append((bk.ACT_ADD, side, next_id, px, rng.randint(1, 9), last))
            live.append(next_id)
            next_id += 1
        elif r < 0.8:
            oid = live.pop(rng.randrange(len(live)))
            out.append((bk.ACT_CANCEL, 0, oid, 0, 1000, last))
        else:
            oid = rng.choice(live)
            out.append((bk.ACT_MODIFY, 0, oid, 0, rng.randint(1, 9), last))
    return out


def test_quotes_from_mbo_equal_mbp1_of_the_same_session_at_every_event(tmp_path: Path) -> None:
    """The top of book rebuilt from order-by-order data is the vendor's MBP-1 at every event:
    MBP-1 written (record by record, as Databento derives it) from the same session."""
    stream = _session(7, 3000)
    ref = ReferenceBook()
    sides: dict[int, tuple[int, int]] = {}
    mbo, mbp1 = [], []
    for k, (act, side, oid, px, qty, last) in enumerate(stream):
        if act == bk.ACT_MODIFY:  # (a modify carries the order's side and price)
            side, px = sides[oid]
        if act == bk.ACT_ADD:
            sides[oid] = (side, px)
        ts = T0 + 1000 * k
        flags = dbn.F_LAST if last else 0
        mbo.append(mbo_record(ts, act, side, oid, px, qty, flags=flags))
        ref.apply(act, side, oid, px, qty, last)
        top = ref.top()
        bid_px, ask_px, bid_sz, ask_sz = top if top else (dbn.UNDEF_PRICE,) * 2 + (0, 0)
        if top is None:
            bids, asks = ref.levels(1), ref.levels(-1)
            bid_px, bid_sz = bids[0] if bids else (dbn.UNDEF_PRICE, 0)
            ask_px, ask_sz = asks[0] if asks else (dbn.UNDEF_PRICE, 0)
        level = dbn.BidAskPair(bid_px=bid_px, ask_px=ask_px, bid_sz=bid_sz, ask_sz=ask_sz)
        mbp1.append(
            dbn.MBP1Msg(
                publisher_id=1,
                instrument_id=ES_ID,
                ts_event=ts,
                price=px if px else dbn.UNDEF_PRICE,
                size=qty,
                action=dbn.Action.ADD,
                side=dbn.Side.NONE,
                depth=0,
                ts_recv=ts + 1000,
                flags=flags,
                levels=level,
            )
        )
    a = write_dbn(tmp_path / "s.mbo.dbn", "mbo", mbo)
    b = write_dbn(tmp_path / "s.mbp-1.dbn.zst", "mbp-1", mbp1, compress=True)
    from_mbo = import_vendor([a], tmp_path / "from_mbo", to=["quotes"], tick_size=0.25)
    from_mbp1 = import_vendor([b], tmp_path / "from_mbp1", to=["quotes"], tick_size=0.25)
    x = pl.read_parquet(from_mbo.out)
    y = pl.read_parquet(from_mbp1.out)
    assert x.height > 300
    assert x.equals(y)


def test_ohlcv_bars_are_stamped_at_their_close(tmp_path: Path) -> None:
    out = tmp_path / "bars.parquet"
    assert (
        cli(
            [
                "data",
                "import",
                str(SAMPLES / "test_data.ohlcv-1m.v3.dbn.zst"),
                "--tick-size",
                "0.25",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    theirs = _decoded(SAMPLES / "test_data.ohlcv-1m.v3.dbn.zst")
    bars = pl.read_parquet(out)
    assert bars["ts_event"].to_list() == [r.ts_event + 60 * 10**9 for r in theirs]
    assert bars["open"].to_list() == [r.open / 1e9 for r in theirs]
    assert bars["volume"].to_list() == [float(r.volume) for r in theirs]


def test_a_definition_file_gives_symbols_ticks_and_lots(tmp_path: Path) -> None:
    definition = dbn.InstrumentDefMsg(
        publisher_id=1,
        instrument_id=ES_ID,
        ts_event=T0,
        ts_recv=T0,
        min_price_increment=250_000_000,
        display_factor=10**9,
        raw_symbol="ESH4",
        asset="ES",
        security_type="FUT",
        instrument_class=dbn.InstrumentClass.FUTURE,
        security_update_action=dbn.SecurityUpdateAction.ADD,
        min_lot_size_round_lot=100,  # (a round lot: what is usual, not the least tradable)
        min_trade_vol=2,
    )
    other = dbn.InstrumentDefMsg(
        publisher_id=1,
        instrument_id=99,
        ts_event=T0,
        ts_recv=T0,
        min_price_increment=10**7,
        display_factor=10**9,
        raw_symbol="NQH4",
        asset="NQ",
        security_type="FUT",
        instrument_class=dbn.InstrumentClass.FUTURE,
        security_update_action=dbn.SecurityUpdateAction.ADD,
    )  # (defined, but in no file's data: not an instrument of the import)
    defs = write_dbn(tmp_path / "es.definition.dbn", "definition", [other, definition],
                     {"ESH4": ES_ID})  # fmt: skip
    trades = write_dbn(
        tmp_path / "es.trades.dbn",
        "trades",
        [
            dbn.TradeMsg(
                publisher_id=1,
                instrument_id=ES_ID,
                ts_event=T0,
                price=4700_250_000_000,
                size=2,
                action=dbn.Action.TRADE,
                side=dbn.Side.BID,
                depth=0,
                ts_recv=T0 + 5,
                flags=dbn.F_LAST,
            ),
        ],
        {"ignored": 1},
    )
    result = import_vendor([trades, defs], tmp_path / "t.parquet")
    [inst] = list(result.instruments)
    assert (inst.symbol, inst.tick_size, inst.lot_size) == ("ESH4", 0.25, 2.0)
    assert pl.read_parquet(result.out).select("px", "sz", "side").rows() == [(4700.25, 2.0, 1)]


def test_bad_records_stop_the_import_or_go_to_bad_rows(tmp_path: Path) -> None:
    recs = [
        dbn.TradeMsg(
            publisher_id=1,
            instrument_id=ES_ID,
            ts_event=T0 + k,
            price=p,
            size=1,
            action=dbn.Action.TRADE,
            side=dbn.Side.ASK,
            depth=0,
            ts_recv=T0 + k,
            flags=dbn.F_LAST,
        )
        for k, p in enumerate([4700 * 10**9, 4700_100_000_000, 4700_250_000_000])
    ]
    source = write_dbn(tmp_path / "t.trades.dbn", "trades", recs)
    out = tmp_path / "t.parquet"
    with pytest.raises(DataError, match=r"t\.trades\.dbn: record 2: .*tick"):
        import_vendor([source], out, tick_size=0.25)
    assert not out.exists()
    bad = tmp_path / "bad.csv"
    result = import_vendor([source], out, tick_size=0.25, bad_rows=bad)
    assert result.rows == {"trades": 2}
    assert result.bad_rows == 1
    rows = pl.read_csv(bad)
    assert rows.columns == ["file", "record", "reason", "kind", "values"]
    assert rows["record"].to_list() == [2]
    assert "tick" in rows["reason"][0]


def test_broken_files_are_one_line_each(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    good = (SAMPLES / "test_data.mbo.v3.dbn").read_bytes()
    cut = tmp_path / "cut.dbn"
    cut.write_bytes(good[:-10])
    damaged = tmp_path / "damaged.dbn.zst"
    packed = zstandard.ZstdCompressor().compress(good)
    damaged.write_bytes(packed[: len(packed) // 2])
    unknown = tmp_path / "mystery.bin"
    unknown.write_bytes(b"\x00" * 64)
    not_dbn = tmp_path / "fake.dbn"
    not_dbn.write_bytes(b"hello, world")
    lying = tmp_path / "lying.dbn"
    lying.write_bytes(b"DBN\x03\xff\xff\xff\xff" + good[8:])
    cases = {
        cut: "truncated: record 2 is cut short",
        damaged: "truncated: the zstd archive ends inside a frame",
        unknown: "cannot tell its format",
        not_dbn: "not a DBN file",
        lying: "announces 4,294,967,295 bytes of metadata",
    }
    for path, message in cases.items():
        assert cli(["data", "import", str(path), "--out", str(tmp_path / "o")]) != 0
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err
        assert re.search(message, err), err
        assert not (tmp_path / "o").exists()


def test_records_of_another_schema_are_refused(tmp_path: Path) -> None:
    bar = dbn.OHLCVMsg(
        rtype=dbn.RType.OHLCV_1M,
        publisher_id=1,
        instrument_id=ES_ID,
        ts_event=T0,
        open=10**12,
        high=10**12,
        low=10**12,
        close=10**12,
        volume=1,
    )
    source = write_dbn(tmp_path / "mixed.dbn", "mbo", [mbo_record(T0, bk.ACT_ADD, 1, 1, 10**12, 1)])
    source.write_bytes(source.read_bytes() + bytes(bar))  # (56 bytes, as an MBO record)
    with pytest.raises(DataError, match="record 2 is of type 33 and 56 bytes, not a mbo record"):
        import_vendor([source], tmp_path / "o")


def test_symbols_are_numbered_in_the_order_met_across_files(tmp_path: Path) -> None:
    def trades(name: str, ids: list[int]) -> Path:
        return write_dbn(
            tmp_path / name,
            "trades",
            [
                dbn.TradeMsg(
                    publisher_id=1,
                    instrument_id=i,
                    ts_event=T0 + k,
                    price=10**11,
                    size=1,
                    action=dbn.Action.TRADE,
                    side=dbn.Side.BID,
                    depth=0,
                    ts_recv=T0 + k,
                    flags=dbn.F_LAST,
                )
                for k, i in enumerate(ids)
            ],
            {"NQH4": 20, "ESH4": 10},
        )

    result = import_vendor(
        [trades("a.dbn", [20, 10]), trades("b.dbn", [10, 20])], tmp_path / "t.parquet"
    )
    assert [i.symbol for i in result.instruments] == ["NQH4", "ESH4"]
    frame = pl.read_parquet(result.out)
    assert frame.select("ts_event", "instrument").rows() == [
        (T0, 0),
        (T0, 1),
        (T0 + 1, 0),
        (T0 + 1, 1),
    ]
    assert Symbols().indices(np.array(["b", "a", "b"])).tolist() == [0, 1, 0]
    assert DatabentoReader().kinds(SAMPLES / "test_data.tbbo.v3.dbn.zst") == ("trades", "quotes")


def test_mbp10_becomes_book_deltas_between_the_levels_shown(tmp_path: Path) -> None:
    theirs = _decoded(SAMPLES / "test_data.mbp-10.v3.dbn.zst")
    result = import_vendor(
        [SAMPLES / "test_data.mbp-10.v3.dbn.zst"], tmp_path / "es", tick_size=0.25
    )
    book = pl.read_parquet(result.paths["book"])
    first = theirs[0]
    # The first record shows every level: one delta each, the record's last one flagged.
    shown = sorted(
        [(1, lv.bid_px / 1e9, float(lv.bid_sz)) for lv in first.levels]
        + [(-1, lv.ask_px / 1e9, float(lv.ask_sz)) for lv in first.levels]
    )
    rows0 = book.filter(pl.col("ts_event") == first.ts_event)
    assert sorted(rows0.select("side", "px", "sz").rows()) == shown
    assert rows0["flags"].to_list() == [0] * (rows0.height - 1) + [1]
    # Replaying every delta gives the last record's levels.
    levels: dict = {}
    for side, px, sz in book.select("side", "px", "sz").rows():
        if sz:
            levels[(side, px)] = sz
        else:
            levels.pop((side, px), None)
    last = theirs[-1]
    assert levels == {
        **{(1, lv.bid_px / 1e9): float(lv.bid_sz) for lv in last.levels},
        **{(-1, lv.ask_px / 1e9): float(lv.ask_sz) for lv in last.levels},
    }
    quotes = pl.read_parquet(result.paths["quotes"])
    assert quotes.select("bid_px", "ask_px").rows()[-1] == (
        last.levels[0].bid_px / 1e9,
        last.levels[0].ask_px / 1e9,
    )


def test_rows_out_of_time_order_are_sorted_and_book_updates_going_back_are_refused(
    tmp_path: Path,
) -> None:
    """Databento orders records by ts_recv; ts_event may disagree. Prints are put in time
    order; a book update whose ts_event goes back for its instrument cannot be moved without
    changing the book, so it is refused by name."""
    prints = [
        dbn.TradeMsg(publisher_id=1, instrument_id=i, ts_event=T0 + e, price=10**11, size=1,
                     action=dbn.Action.TRADE, side=dbn.Side.BID, depth=0, ts_recv=T0 + 100 + k,
                     flags=dbn.F_LAST)
        for k, (i, e) in enumerate([(10, 5), (20, 3), (10, 7), (20, 4)])
    ]  # fmt: skip
    source = write_dbn(tmp_path / "t.dbn", "trades", prints, {"ESH4": 10, "NQH4": 20})
    result = import_vendor([source], tmp_path / "t.parquet")
    frame = pl.read_parquet(result.out)
    assert frame.select("ts_event", "instrument", "seq").rows() == [
        (T0 + 3, 1, 1), (T0 + 4, 1, 2), (T0 + 5, 0, 1), (T0 + 7, 0, 2)]  # fmt: skip
    px = 4700 * 10**9
    recs = [
        mbo_record(T0 + 10, bk.ACT_ADD, 1, 1, px, 5),
        mbo_record(T0 + 30, bk.ACT_ADD, -1, 2, px + 250_000_000, 5),
        mbo_record(T0 + 20, bk.ACT_ADD, 1, 3, px, 1),  # (received after, stamped before)
    ]
    source = write_dbn(tmp_path / "b.mbo.dbn", "mbo", recs)
    with pytest.raises(DataError, match=r"b\.mbo\.dbn: record 3: ts_event goes back"):
        import_vendor([source], tmp_path / "b", to=["book"], tick_size=0.25)
    bad = tmp_path / "bad.csv"
    result = import_vendor([source], tmp_path / "b", to=["book"], tick_size=0.25, bad_rows=bad)
    assert pl.read_parquet(result.out).select("ts_event", "px", "sz").rows() == [
        (T0 + 10, 4700.0, 5.0), (T0 + 30, 4700.25, 5.0)]  # fmt: skip
    assert pl.read_csv(bad)["record"].to_list() == [3]


def _mbp1(ts: int, bid: int, ask: int, venue: int = 1) -> dbn.MBP1Msg:
    level = dbn.BidAskPair(bid_px=bid, ask_px=ask, bid_sz=5, ask_sz=5)
    return dbn.MBP1Msg(publisher_id=venue, instrument_id=ES_ID, ts_event=ts, price=bid,
                       size=1, action=dbn.Action.ADD, side=dbn.Side.BID, depth=0,
                       ts_recv=ts + 10, flags=dbn.F_LAST, levels=level)  # fmt: skip


def test_a_top_that_comes_back_after_a_side_went_missing_is_quoted_again(tmp_path: Path) -> None:
    bid, ask, none = 4700 * 10**9, 4700_250_000_000, dbn.UNDEF_PRICE
    recs = [_mbp1(T0, bid, ask), _mbp1(T0 + 1, bid, none), _mbp1(T0 + 2, bid, ask),
            _mbp1(T0 + 3, bid, ask)]  # fmt: skip
    source = write_dbn(tmp_path / "t.mbp-1.dbn", "mbp-1", recs)
    result = import_vendor([source], tmp_path / "q.parquet", to=["quotes"], tick_size=0.25)
    assert pl.read_parquet(result.out)["ts_event"].to_list() == [T0, T0 + 2]
    assert result.notes["tops with one side empty (no quote: tickwise quotes have both)"].count == 1


def test_records_of_one_instrument_from_two_venues_are_refused(tmp_path: Path) -> None:
    bid, ask = 4700 * 10**9, 4700_250_000_000
    recs = [_mbp1(T0, bid, ask, venue=39), _mbp1(T0 + 1, bid, ask, venue=40)]
    source = write_dbn(tmp_path / "v.mbp-1.dbn", "mbp-1", recs)
    with pytest.raises(
        DataError, match="record 2: instrument 5482 comes from publishers 39 and 40"
    ):
        import_vendor([source], tmp_path / "q")


def test_a_stream_that_ends_inside_an_event_has_its_last_update_flagged(tmp_path: Path) -> None:
    px = 4700 * 10**9
    recs = [mbo_record(T0, bk.ACT_ADD, 1, 1, px, 5),
            mbo_record(T0 + 1, bk.ACT_ADD, 1, 2, px - 250_000_000, 5, flags=0)]  # fmt: skip
    source = write_dbn(tmp_path / "e.mbo.dbn", "mbo", recs)
    result = import_vendor([source], tmp_path / "b", to=["book"], tick_size=0.25)
    book = pl.read_parquet(result.out).select("ts_event", "px", "sz", "flags").rows()
    assert book == [(T0, 4700.0, 5.0, 1), (T0 + 1, 4699.75, 5.0, 0), (T0 + 1, 4699.75, 5.0, 1)]


def test_every_note_of_the_books_goes_to_the_notes_file_with_its_place(tmp_path: Path) -> None:
    px = 4700 * 10**9
    recs = [mbo_record(T0, bk.ACT_ADD, -1, 1, px + 250_000_000, 5),
            mbo_record(T0 + 1, bk.ACT_CANCEL, 0, 99, 0, 1),  # (never added)
            mbo_record(T0 + 2, bk.ACT_ADD, 1, 2, px + 500_000_000, 1),  # (crosses the ask)
            mbo_record(T0 + 3, bk.ACT_CANCEL, 0, 1, 0, 5)]  # (removed by the repair)  # fmt: skip
    source = write_dbn(tmp_path / "n.mbo.dbn", "mbo", recs)
    notes = tmp_path / "notes.csv"
    argv = ["data", "import", str(source), "--tick-size", "0.25", "--notes", str(notes),
            "--out", str(tmp_path / "o")]  # fmt: skip
    assert cli(argv) == 0
    rows = pl.read_csv(notes).select("record", "note", "count").rows()
    assert [(r, n.split(" (")[0], c) for r, n, c in rows] == [
        (2, "unknown order", 1),
        (3, "crossed or locked book", 1),
        (4, "unknown order", 1),
    ]


def _limit_file_size(size: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def test_an_import_that_cannot_be_written_says_so_in_one_line_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    px = 4700 * 10**9
    recs = [mbo_record(T0 + k, bk.ACT_ADD, 1 if k % 2 else -1, k + 1,
                       px - 250_000_000 * (k % 40) if k % 2 else px + 250_000_000 * (1 + k % 40),
                       1 + k % 7) for k in range(20_000)]  # fmt: skip
    source = write_dbn(tmp_path / "big.mbo.dbn", "mbo", recs)
    out = tmp_path / "out"
    tickwise = str(Path(sys.executable).with_name("tickwise"))
    done = subprocess.run([tickwise, "data", "import", str(source), "--tick-size", "0.25",
                           "--out", str(out)], capture_output=True, text=True, timeout=300,
                          preexec_fn=lambda: _limit_file_size(64 * 1024))  # fmt: skip
    assert done.returncode == 1
    said = done.stderr.strip().splitlines()
    assert said == [f"tickwise: error: {tmp_path}: the import could not be written (File too "
                    "large); nothing was imported, and what was there is as it was"]  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.mbo.dbn"]


def test_undefined_times_and_damaged_definitions_are_refused(tmp_path: Path) -> None:
    undef = dbn.UNDEF_TIMESTAMP
    prints = [
        dbn.TradeMsg(publisher_id=1, instrument_id=ES_ID, ts_event=t, price=10**11, size=1,
                     action=dbn.Action.TRADE, side=dbn.Side.BID, depth=0, ts_recv=T0,
                     flags=dbn.F_LAST)
        for t in (T0, undef)
    ]  # fmt: skip
    source = write_dbn(tmp_path / "t.dbn", "trades", prints)
    with pytest.raises(DataError, match=r"record 2: a time before 1970, or none"):
        import_vendor([source], tmp_path / "t.parquet")
    definition = dbn.InstrumentDefMsg(
        publisher_id=1, instrument_id=ES_ID, ts_event=T0, ts_recv=T0,
        min_price_increment=250_000_000, display_factor=10**9, raw_symbol="ESH4", asset="ES",
        security_type="FUT", instrument_class=dbn.InstrumentClass.FUTURE,
        security_update_action=dbn.SecurityUpdateAction.ADD,
    )  # fmt: skip
    defs = write_dbn(tmp_path / "d.definition.dbn", "definition", [definition])
    whole = defs.read_bytes()
    good = write_dbn(tmp_path / "g.dbn", "trades", prints[:1])
    defs.write_bytes(whole[:-30])
    with pytest.raises(DataError, match=r"d\.definition\.dbn: truncated: record 1 is cut short"):
        import_vendor([good, defs], tmp_path / "o")
    defs.write_bytes(whole + b"\x07" * 40)
    with pytest.raises(DataError, match=r"d\.definition\.dbn: cannot read the definitions"):
        import_vendor([good, defs], tmp_path / "o")
