"""The simulated exchange on hand-made markets: each case's fills are known in advance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tickwise import load_strategy
from tickwise.engine.limits import KillSwitch, RiskLimits
from tickwise.engine.schemas import (
    BOOK_F_LAST,
    LIQ_MAKER,
    LIQ_TAKER,
    STATUS_CANCELLED,
    TIF_IOC,
)
from tickwise.engine.session import Session

from ..conftest import simple_instruments
from ..scripted import plan

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
SCRIPTED = f"{Path(__file__).parent.parent / 'scripted.py'}:Scripted"
NAN = np.nan


def scripted(rows: list[tuple], **options) -> Session:
    """A Scripted session; the risk gate and kill switch are off (tested on their own)."""
    options.setdefault("risk", RiskLimits.off())
    options.setdefault("killswitch", KillSwitch.off())
    s = Session(load_strategy(SCRIPTED), simple_instruments(1), **options)
    plan(s.state, rows)
    return s


def quotes(rows: list[tuple[float, float, float, float]], start: int = 0) -> dict:
    """(bid, ask, bid size, ask size) per quote, 1 ms apart from T0 + start ms."""
    bid, ask, bid_sz, ask_sz = (np.array(c, dtype=float) for c in zip(*rows, strict=True))
    n = len(rows)
    ts = T0 + (start + np.arange(n)) * MS
    return {"ts_event": ts, "ts_recv": ts, "instrument": np.zeros(n, np.uint32),
            "seq": start + np.arange(n, dtype=np.uint64) + 1, "bid_px": bid, "ask_px": ask,
            "bid_sz": bid_sz, "ask_sz": ask_sz}  # fmt: skip


def trades(rows: list[tuple[float, float]], start: int) -> dict:
    """(price, size) per print, 1 ms apart from T0 + start ms."""
    px, sz = (np.array(c, dtype=float) for c in zip(*rows, strict=True))
    n = len(rows)
    ts = T0 + (start + np.arange(n)) * MS
    return {"ts_event": ts, "ts_recv": ts, "instrument": np.zeros(n, np.uint32),
            "seq": start + np.arange(n, dtype=np.uint64) + 1, "px": px, "sz": sz,
            "side": np.ones(n, np.int8)}  # fmt: skip


def fills(result) -> list[tuple]:
    f = result.fills
    return list(zip(((f["ts"] - T0) / MS).tolist(), f["price"].tolist(), f["qty"].tolist(),
                    f["liquidity"].tolist(), strict=True))  # fmt: skip


def cancelled(result) -> list[float]:
    return result.orders[result.orders["status"] == STATUS_CANCELLED]["qty"].tolist()


def test_a_market_order_takes_the_size_shown_and_cancels_the_rest() -> None:
    s = scripted([(1, +1, 150, NAN)])
    r = s.on_batch("quotes", quotes([(9.99, 10.01, 100, 100), (9.98, 10.00, 500, 500)]))
    assert fills(r) == [(0.0, 10.01, 100.0, LIQ_TAKER)]
    assert cancelled(r) == [50.0]


def test_two_orders_in_one_step_do_not_take_the_same_liquidity() -> None:
    s = scripted([(1, +1, 80, NAN), (1, +1, 80, 10.01, TIF_IOC)])
    r = s.on_batch("quotes", quotes([(9.99, 10.01, 100, 100), (9.99, 10.01, 100, 100)]))
    assert fills(r) == [(0.0, 10.01, 80.0, LIQ_TAKER), (0.0, 10.01, 20.0, LIQ_TAKER)]
    assert cancelled(r) == [60.0]


def book(levels: list[tuple[int, float, float]], ms: int = 0) -> dict:
    """One L2 update of (side, price, size) deltas at T0 + ms, the last flagged as such."""
    n = len(levels)
    side, px, sz = (np.array(c) for c in zip(*levels, strict=True))
    flags = np.zeros(n, np.uint8)
    flags[-1] = BOOK_F_LAST
    return {"ts_event": np.full(n, T0 + ms * MS), "ts_recv": np.full(n, T0 + ms * MS),
            "instrument": np.zeros(n, np.uint32), "seq": ms * 100 + np.arange(n, dtype=np.uint64),
            "side": side.astype(np.int8), "px": px.astype(float), "sz": sz.astype(float),
            "flags": flags}  # fmt: skip


LADDER = [(1, 9.99, 100), (1, 9.98, 100), (-1, 10.01, 100), (-1, 10.02, 100), (-1, 10.03, 100)]


@pytest.mark.parametrize(
    ("order", "expected", "rest"),
    [
        ((1, +1, 250, NAN), [(10.01, 100.0), (10.02, 100.0), (10.03, 50.0)], []),
        ((1, +1, 250, 10.02, TIF_IOC), [(10.01, 100.0), (10.02, 100.0)], [50.0]),
        ((1, -1, 150, NAN), [(9.99, 100.0), (9.98, 50.0)], []),
    ],
)
def test_orders_walk_the_book_up_to_their_limit(order, expected, rest) -> None:
    s = scripted([order])
    r = s.on_batch("book", book(LADDER))
    r2 = s.on_batch("book", book([(1, 9.97, 10)], ms=1))
    assert [(px, q) for _, px, q, _ in fills(r2)] == expected
    assert all(liq == LIQ_TAKER for *_, liq in fills(r2))
    assert cancelled(r2) == rest
    assert len(r.fills) == 0


def test_a_resting_limit_joins_the_queue_and_moves_up_as_the_level_shrinks() -> None:
    s = scripted([(1, +1, 10, 9.99)])
    queue = []
    steps = [
        (9.99, 10.01, 100, 100),  # it joins behind the 100 shown at 9.99
        (9.99, 10.01, 60, 100),  # 40 ahead of it traded or cancelled
        (9.99, 10.01, 80, 100),  # 20 joined behind it: no change
        (9.98, 10.01, 300, 100),  # its level is gone: it is now the best bid
        (9.98, 9.99, 300, 50),  # the ask reaches its price: every bid at 9.99 traded
    ]
    results = []
    for ms, step in enumerate(steps):
        results.append(s.on_batch("quotes", quotes([step], start=ms)))
        open_rows = s.ctx.open_orders[: s.ctx.clock[0].n_open]
        queue.append([None if q != q else q for q in open_rows["queue"].tolist()])
    # Sent at the 1st quote, it is in flight (queue unknown) until the 2nd: it arrives
    # behind 100, and the 2nd quote shows only 60 left at its price.
    assert queue == [[None], [60.0], [60.0], [0.0], []]
    assert fills(results[-1]) == [(4.0, 9.99, 10.0, LIQ_MAKER)]


def test_prints_at_its_price_fill_it_once_the_queue_ahead_is_used_up() -> None:
    s = scripted([(1, -1, 30, 10.01)])
    s.on_batch("quotes", quotes([(9.99, 10.01, 100, 70), (9.99, 10.01, 100, 70)]))
    assert s.ctx.open_orders["queue"][0] == 70.0
    r = s.on_batch("trades", trades([(10.01, 50), (10.00, 99), (10.01, 40), (10.01, 40)], 2))
    # 50 of the 70 ahead traded; a print below its price is not at it; 40 more: 20 ahead
    # then 20 for it; the next 40: 10 for it (it is done).
    assert fills(r) == [(4.0, 10.01, 20.0, LIQ_MAKER), (5.0, 10.01, 10.0, LIQ_MAKER)]


def test_on_trades_alone_a_resting_limit_fills_only_when_printed_through() -> None:
    s = scripted([(1, +1, 5, 9.95)])
    r = s.on_batch("trades", trades([(10.0, 1), (9.96, 1), (9.95, 100), (9.96, 1), (9.94, 1)], 0))
    # It rests from the 2nd print (no book: its queue is unknown, so a print at 9.95 may
    # not have reached it); the print at 9.94 went through its price.
    assert fills(r) == [(4.0, 9.95, 5.0, LIQ_MAKER)]


def test_maker_and_taker_fees_in_basis_points_and_per_unit() -> None:
    s = scripted([(1, +1, 10, NAN), (1, -1, 10, 10.05)], taker_fee_bps=2.0,
                 maker_fee_bps=-0.5, taker_fee_per_unit=0.01, maker_fee_per_unit=0.002)  # fmt: skip
    r = s.on_batch("quotes", quotes([(9.99, 10.01, 100, 100), (10.04, 10.06, 100, 100),
                                     (10.05, 10.07, 100, 100)]))  # fmt: skip
    assert fills(r) == [(0.0, 10.01, 10.0, LIQ_TAKER), (2.0, 10.05, 10.0, LIQ_MAKER)]
    assert r.fills["fee"].tolist() == pytest.approx(
        [10 * (10.01 * 2e-4 + 0.01), 10 * (10.05 * -0.5e-4 + 0.002)], rel=1e-12
    )
    assert s.ctx.portfolio[0]["fees"] == pytest.approx(r.fills["fee"].sum())


def test_bar_orders_fill_at_the_next_open_or_when_the_range_touches_the_limit() -> None:
    n = 4
    ts = T0 + np.arange(1, n + 1) * 60_000 * MS
    bars = {"ts_event": ts, "instrument": np.zeros(n, np.uint32),
            "open": np.array([10.0, 10.2, 10.1, 9.9]), "high": np.array([10.3, 10.4, 10.2, 10.0]),
            "low": np.array([9.9, 10.1, 9.95, 9.8]), "close": np.array([10.2, 10.1, 10.0, 9.9]),
            "volume": np.full(n, 1e3)}  # fmt: skip
    # Decided on bar 1: a market buy (bar 2's open) and a buy limit at 10.0 that bar 1's
    # low went through but bar 2's range never reaches; bar 3's does.
    s = scripted([(1, +1, 1, NAN), (1, +1, 2, 10.0)])
    r = s.on_batch("bars", bars)
    assert [(round(ms / 60_000), px, q) for ms, px, q, _ in fills(r)] == [
        (2, 10.2, 1.0),
        (3, 10.0, 2.0),
    ]


def test_a_constant_feed_latency_delays_what_the_strategy_sees() -> None:
    s = scripted([(1, +1, 1, NAN)], feed_latency_ns=1_500_000)
    r = s.on_batch("quotes", quotes([(9.99, 10.01, 1, 1), (10.09, 10.11, 1, 1),
                                     (10.19, 10.21, 1, 1)]))  # fmt: skip
    assert r.orders["ts"].tolist() == [T0 + 1_500_000]  # seen 1.5 ms after it happened
    assert fills(r) == [(1.5, 10.11, 1.0, LIQ_TAKER)]  # the market at 1.5 ms


def test_what_one_order_took_is_not_there_for_the_next_on_levels_of_part_lots() -> None:
    """Levels showing 1.5 lots: an order takes the whole lot of each, and what it walked past
    (the half lot too) is gone for the next order in the same step."""
    ladder = [(1, 9.99, 100), (-1, 10.01, 1.5), (-1, 10.02, 1.5), (-1, 10.03, 5)]
    s = scripted([(1, +1, 3, NAN), (1, +1, 5, NAN)])
    s.on_batch("book", book(ladder))
    r = s.on_batch("book", book([(1, 9.97, 10)], ms=1))
    got = fills(r)
    assert sum(q for _, px, q, _ in got if px == 10.03) <= 5, got
    assert sorted((px, q) for _, px, q, _ in got) == [(10.01, 1.0), (10.02, 1.0), (10.03, 1.0),
                                                      (10.03, 4.0)]  # fmt: skip
