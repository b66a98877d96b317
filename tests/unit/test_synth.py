"""The synthetic market: deterministic, realistic enough to trade on, one market across kinds."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tickwise.engine.errors import TickwiseError
from tickwise.engine.schemas import BOOK_F_CLEAR, BOOK_F_LAST
from tickwise.feeds import synth as synth_mod
from tickwise.feeds.history import open_history
from tickwise.feeds.synth import (
    FeedGap,
    FlashCrash,
    Market,
    StaleFeed,
    SynthConfig,
    make_instruments,
    parse_episode,
)

from ..conftest import make_synth, table_of

NS = 1_000_000_000
START_NS = int(synth_mod.DEFAULT_START.timestamp()) * NS


def generate(**config) -> pa.Table:
    return table_of(Market(SynthConfig(**config)).batches())


def column_digest(table: pa.Table) -> str:
    h = hashlib.sha256()
    for name in table.column_names:
        h.update(name.encode())
        h.update(table.column(name).to_numpy().tobytes())
    return h.hexdigest()


def test_same_seed_gives_the_same_bytes(tmp_path: Path) -> None:
    a = make_synth(tmp_path / "a.parquet", kind="book", rows=30_000, instruments=3, seed=42)
    b = make_synth(tmp_path / "b.parquet", kind="book", rows=30_000, instruments=3, seed=42)
    c = make_synth(tmp_path / "c.parquet", kind="book", rows=30_000, instruments=3, seed=43)
    assert a.read_bytes() == b.read_bytes()
    assert hashlib.sha256(a.read_bytes()).digest() != hashlib.sha256(c.read_bytes()).digest()


# A change to any of these digests changes every synthetic history: it must be deliberate.
# Digests of the column data (not the file bytes, which also hold the writer's version).
GOLDEN = {
    "quotes": "761dc856025a0e3af4a27e16067f676a38d4062724911e3d924b62f088dfc900",
    "trades": "45f74a751262ba96f02bfec80cd21ee982674bf18edebc5df4840abca43236a1",
    "bars": "302a6dd9630a7394cd39c9cb56e754a12ba32fe0eab400d962d46cfe52e39a7c",
    "book": "35a171e34537777d23bb1d8c79eed39871cb4328294b16927ced7e7246c97c5d",
}


@pytest.mark.parametrize("kind", list(GOLDEN))
def test_generator_output_is_pinned(kind: str) -> None:
    digest = column_digest(generate(kind=kind, rows=5_000, instruments=3, seed=7))
    assert digest == GOLDEN[kind]


def test_output_does_not_depend_on_the_internal_chunk_size(monkeypatch) -> None:
    whole = generate(kind="book", rows=20_000, instruments=5, seed=3)
    monkeypatch.setattr(synth_mod, "CHUNK_ROWS", 1_000)
    chunked = generate(kind="book", rows=20_000, instruments=5, seed=3)
    assert chunked.equals(whole)


@pytest.mark.parametrize("kind", ["quotes", "trades", "bars", "book"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_kind_passes_validation(tmp_path: Path, kind: str, seed: int) -> None:
    rows = 2_000 if kind == "bars" else 20_000
    path = make_synth(tmp_path / "x.parquet", kind=kind, rows=rows, instruments=4, seed=seed)
    read = table_of(open_history(path).batches(4_096))  # raises on any contract fault
    if kind == "book":
        assert rows - 200 < read.num_rows <= rows
        assert read.column("flags")[-1].as_py() & BOOK_F_LAST  # ends on a whole update
    else:
        assert read.num_rows == rows


def test_quotes_look_like_a_market() -> None:
    q = generate(kind="quotes", rows=50_000, instruments=4, seed=1)
    table = make_instruments(4)
    inst = q.column("instrument").to_numpy()
    bid, ask = q.column("bid_px").to_numpy(), q.column("ask_px").to_numpy()
    bsz, asz = q.column("bid_sz").to_numpy(), q.column("ask_sz").to_numpy()
    for i in table:
        mine = inst == i.id
        spread_ticks = np.round((ask[mine] - bid[mine]) / i.tick_size)
        assert spread_ticks.min() >= 1
        assert np.median(spread_ticks) <= 3
        on_grid = bid[mine] / i.tick_size
        np.testing.assert_allclose(on_grid, np.round(on_grid), atol=1e-6)
        lots = np.concatenate([bsz[mine], asz[mine]]) / i.lot_size
        np.testing.assert_array_equal(lots, np.round(lots))
        assert lots.min() >= 1
        assert np.median(lots) < 50
    lat = q.column("ts_recv").to_numpy() - q.column("ts_event").to_numpy()
    assert lat.min() >= 20_000
    assert np.median(lat) < 100_000


def _prevailing_quotes(q: pa.Table) -> dict[tuple[int, int], tuple]:
    """Map (ts_event, instrument) -> quote in force just before that time."""
    keys = {}
    last: dict[int, tuple] = {}
    for ts, inst, bid, ask, bsz, asz in zip(
        *(
            q.column(n).to_pylist()
            for n in ("ts_event", "instrument", "bid_px", "ask_px", "bid_sz", "ask_sz")
        ),
        strict=True,
    ):
        if inst in last:
            keys.setdefault((ts, inst), last[inst])
        last[inst] = (bid, ask, bsz, asz)
    return keys


def test_trades_print_at_the_prevailing_quotes_of_the_same_seed() -> None:
    common = dict(instruments=3, seed=4, rate=500.0)
    q = generate(kind="quotes", rows=30_000, **common)
    t = generate(kind="trades", rows=5_000, **common)
    before = _prevailing_quotes(q)
    t_end = q.column("ts_event")[-1].as_py()
    checked = 0
    for ts, inst, px, sz, side in zip(
        *(t.column(n).to_pylist() for n in ("ts_event", "instrument", "px", "sz", "side")),
        strict=True,
    ):
        if ts > t_end:
            break
        bid, ask, bsz, asz = before[(ts, inst)]
        assert px == (ask if side == 1 else bid)
        assert 0 < sz <= (asz if side == 1 else bsz)
        checked += 1
    assert checked > 1_000


def test_book_deltas_rebuild_the_quotes_of_the_same_seed() -> None:
    common = dict(instruments=3, seed=8, rate=500.0)
    q = generate(kind="quotes", rows=20_000, **common)
    b = generate(kind="book", rows=60_000, **common)
    quote_at = {}
    for ts, inst, *top in zip(
        *(
            q.column(n).to_pylist()
            for n in ("ts_event", "instrument", "bid_px", "ask_px", "bid_sz", "ask_sz")
        ),
        strict=True,
    ):
        quote_at[(ts, inst)] = tuple(top)
    books: dict[int, tuple[dict, dict]] = {}
    compared = 0
    for ts, inst, side, px, sz, flags in zip(
        *(b.column(n).to_pylist() for n in ("ts_event", "instrument", "side", "px", "sz", "flags")),
        strict=True,
    ):
        bids, asks = books.setdefault(inst, ({}, {}))
        if flags & BOOK_F_CLEAR:
            bids.clear()
            asks.clear()
        levels = bids if side == 1 else asks
        if sz == 0:
            del levels[px]  # a removal always names a level that exists
        else:
            levels[px] = sz
        if flags & BOOK_F_LAST and bids and asks:
            best_bid, best_ask = max(bids), min(asks)
            assert best_bid < best_ask, "rebuilt book is crossed"
            assert len(bids) <= 10
            assert len(asks) <= 10
            if (ts, inst) in quote_at:
                assert (best_bid, best_ask, bids[best_bid], asks[best_ask]) == quote_at[(ts, inst)]
                compared += 1
    assert compared > 2_000


def test_bars_aggregate_the_trades_of_the_same_seed() -> None:
    common = dict(instruments=2, seed=6, rate=100.0)
    t = generate(kind="trades", rows=30_000, **common)
    bars = generate(kind="bars", rows=40, **common)
    minute = 60 * NS
    ts, inst = t.column("ts_event").to_numpy(), t.column("instrument").to_numpy()
    px, sz = t.column("px").to_numpy(), t.column("sz").to_numpy()
    compared = 0
    for row in bars.to_pylist():
        end, i = row["ts_event"], row["instrument"]
        if end > ts[-1]:
            break  # the trades stream stops inside this bar
        assert end % minute == 0
        mine = (inst == i) & (ts >= end - minute) & (ts < end)
        assert mine.any()
        assert row["open"] == px[mine][0]
        assert row["close"] == px[mine][-1]
        assert row["high"] == px[mine].max()
        assert row["low"] == px[mine].min()
        assert row["volume"] == pytest.approx(sz[mine].sum())
        compared += 1
    assert compared >= 20


def test_volatility_is_highest_after_the_open() -> None:
    q = generate(kind="quotes", rows=400_000, instruments=1, seed=2, rate=20.0)
    ts = q.column("ts_event").to_numpy()
    mid = np.log((q.column("bid_px").to_numpy() + q.column("ask_px").to_numpy()) / 2)
    first_day = ts < ts[0] + 7 * 3600 * NS
    ts, mid = ts[first_day], mid[first_day]
    since_open = (ts - ts[0]) / NS
    minute = (since_open // 60).astype(int)
    last_in_minute = np.flatnonzero(np.r_[minute[1:] != minute[:-1], True])
    returns = np.diff(mid[last_in_minute])
    minutes = minute[last_in_minute][1:]
    opening = returns[minutes < 20].std()
    midday = returns[(minutes > 150) & (minutes < 250)].std()
    assert opening > 1.5 * midday


def test_flash_crash_drops_and_recovers(tmp_path: Path) -> None:
    crash = FlashCrash(at_s=120, drop_pct=10, down_s=20, recover_s=60, instrument=1)
    q = generate(kind="quotes", rows=200_000, instruments=2, seed=5, episodes=(crash,))
    calm = generate(kind="quotes", rows=200_000, instruments=2, seed=5)
    start = START_NS
    for table, dropped in ((q, True), (calm, False)):
        ts = (table.column("ts_event").to_numpy() - start) / NS
        inst = table.column("instrument").to_numpy()
        mid = (table.column("bid_px").to_numpy() + table.column("ask_px").to_numpy()) / 2
        mine = inst == 1
        before = mid[mine & (ts > 110) & (ts < 120)].mean()
        bottom = mid[mine & (ts > 135) & (ts < 145)].min()
        after = mid[mine & (ts > 205) & (ts < 215)].mean()
        other_bottom = mid[(inst == 0) & (ts > 135) & (ts < 145)].min()
        other_before = mid[(inst == 0) & (ts > 110) & (ts < 120)].mean()
        if dropped:
            assert bottom < before * 0.93
            assert abs(after / before - 1) < 0.03
        else:
            assert bottom > before * 0.97
        assert other_bottom > other_before * 0.97  # the crash targets instrument 1 only


def test_gap_loses_messages_and_stale_freezes_the_sequence() -> None:
    gap = generate(
        kind="quotes", rows=60_000, instruments=2, seed=3, episodes=(FeedGap(at_s=20, seconds=3),)
    )
    stale = generate(
        kind="quotes", rows=60_000, instruments=2, seed=3, episodes=(StaleFeed(at_s=20, seconds=3),)
    )
    for table, seq_jumps in ((gap, True), (stale, False)):
        start = START_NS
        ts = (table.column("ts_event").to_numpy() - start) / NS
        inst = table.column("instrument").to_numpy()
        seq = table.column("seq").to_numpy()
        assert not ((ts >= 20) & (ts < 23)).any()
        for i in (0, 1):
            steps = np.diff(seq[inst == i])
            assert (steps >= 1).all()
            assert (steps.max() > 1) == seq_jumps


def test_book_snapshot_follows_a_gap() -> None:
    b = generate(
        kind="book", rows=60_000, instruments=2, seed=3, episodes=(FeedGap(at_s=5, seconds=1),)
    )
    start = START_NS
    ts = (b.column("ts_event").to_numpy() - start) / NS
    clear = (b.column("flags").to_numpy() & BOOK_F_CLEAR) != 0
    assert clear[ts < 1].sum() == 2  # the opening snapshot, one per instrument
    after = ts >= 6
    first_after = np.flatnonzero(after)[0]
    assert clear[first_after]  # the first message after the gap rebuilds the book
    assert clear[after].sum() == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("crash:at=600,drop_pct=8", FlashCrash(at_s=600, drop_pct=8)),
        (
            "crash:at=1,drop_pct=5,down_s=2,recover_s=3,instrument=1",
            FlashCrash(1, 5, 2, 3, instrument=1),
        ),
        ("gap:at=900,seconds=2", FeedGap(900, 2)),
        ("stale:at=5", StaleFeed(5)),
    ],
)
def test_episode_specs_parse(text: str, expected) -> None:
    assert parse_episode(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("meteor:at=1", "unknown episode 'meteor'"),
        ("crash:drop_pct=5", "missing at=SECONDS"),
        ("gap:at=1,size=3", "bad setting 'size=3'; gap takes at, seconds"),
        ("stale:at=x", "at='x' is not a number"),
    ],
)
def test_bad_episode_specs_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(TickwiseError, match=message):
        parse_episode(text)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"rows": 0}, "--rows must be at least 1"),
        ({"instruments": 0}, "--instruments must be between 1 and 10000"),
        ({"rate": -1.0}, "--rate must be in"),
        ({"kind": "ticks"}, "--kind 'ticks' is unknown"),
        ({"episodes": (FlashCrash(at_s=1, drop_pct=120),)}, "drop_pct must be in"),
        ({"episodes": (FlashCrash(at_s=1, instrument=9),)}, "instrument 9 is not in 0..3"),
        ({"start": dt.datetime(2024, 1, 2)}, "timezone-aware"),
    ],
)
def test_bad_configuration_is_refused(config: dict, message: str) -> None:
    with pytest.raises(TickwiseError, match=message):
        SynthConfig(**({"instruments": 4} | config))


def test_synth_refuses_to_overwrite_and_keeps_the_old_file(tmp_path: Path) -> None:
    path = make_synth(tmp_path / "q.parquet", kind="quotes", rows=1_000, instruments=2, seed=1)
    before = path.read_bytes()
    with pytest.raises(TickwiseError, match="already exists; pass --overwrite"):
        synth_mod.synth(SynthConfig(rows=500, instruments=2, seed=2), path)
    with pytest.raises(TickwiseError, match="already exists; pass --overwrite"):
        synth_mod.synth(SynthConfig(rows=500, instruments=2, seed=2), str(path))  # a str path
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.parquet"]
    assert pq.read_metadata(path).num_rows == 1_000
