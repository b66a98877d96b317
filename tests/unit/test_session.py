"""The compiled loop through a Session: strategies on hand-made events whose orders are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tickwise import StrategyError, load_strategy
from tickwise.engine.schemas import (
    LIQ_MAKER,
    LIQ_TAKER,
    ORD_LIMIT,
    ORD_MARKET,
    REASON_BAD_PRICE,
    REASON_BAD_QTY,
    STATUS_CANCELLED,
    STATUS_NEW,
    STATUS_REJECTED,
)
from tickwise.engine.session import Session

from ..conftest import UNGUARDED, simple_instruments

T0 = 1_700_000_000_000_000_000


def quotes(mids, instrument=0, spread=0.02, size=100.0, start=0):
    """A quotes batch: one quote per mid, 1 ms apart, bid/ask around the mid."""
    n = len(mids)
    mids = np.asarray(mids, dtype=float)
    return {
        "ts_event": T0 + (start + np.arange(n)) * 1_000_000,
        "ts_recv": T0 + (start + np.arange(n)) * 1_000_000,
        "instrument": np.full(n, instrument, dtype=np.uint32),
        "seq": start + np.arange(n, dtype=np.uint64) + 1,
        "bid_px": np.round(mids - spread / 2, 2),
        "ask_px": np.round(mids + spread / 2, 2),
        "bid_sz": np.full(n, size),
        "ask_sz": np.full(n, size),
    }


def session(name: str, **params) -> Session:
    s = Session(load_strategy(name), simple_instruments(2), params, **UNGUARDED)
    s.warm_up(("quotes",))
    return s


def new_orders(result):
    return result.orders[result.orders["status"] == STATUS_NEW]


def test_sma_cross_buys_on_the_cross_up_and_sells_on_the_cross_down() -> None:
    s = session("sma_cross", fast=2, slow=3, qty=5.0)
    # mids: 10 10 10 | 11 (fast 10.5 > slow 10.33: cross up) 12 | 9 (fast 10.5 < slow 10.67: down)
    r = s.on_batch("quotes", quotes([10, 10, 10, 11, 12, 9, 9]))
    sent = new_orders(r)
    assert sent["ts"].tolist() == [T0 + 3_000_000, T0 + 5_000_000]
    assert sent["side"].tolist() == [1, -1]
    assert sent["qty"].tolist() == [5.0, 5.0]
    assert (sent["order_type"] == ORD_MARKET).all()
    # Without latency an order reaches the exchange when sent: it takes the far side of the
    # quote the strategy saw (it is matched before the next quote is applied).
    assert r.fills["ts"].tolist() == [T0 + 3_000_000, T0 + 5_000_000]
    assert r.fills["price"].tolist() == [11.01, 8.99]
    assert (r.fills["liquidity"] == LIQ_TAKER).all()
    assert s.ctx.portfolio[0]["lots"] == 0.0
    assert s.ctx.portfolio[0]["realized"] == pytest.approx(5 * (8.99 - 11.01))


def test_sma_cross_long_short_reverses_through_zero() -> None:
    s = session("sma_cross", fast=2, slow=3, qty=1.0, long_short=True)
    r = s.on_batch("quotes", quotes([10, 10, 10, 11, 12, 9, 9]))
    assert new_orders(r)["qty"].tolist() == [1.0, 2.0]  # to +1, then to -1
    assert s.ctx.portfolio[0]["lots"] == -1.0


def test_equal_averages_are_not_a_cross() -> None:
    s = session("sma_cross", fast=2, slow=4)
    r = s.on_batch("quotes", quotes([10, 10, 10, 10, 10, 10]))
    assert r.orders.size == 0


def test_mean_reversion_enters_below_the_band_and_exits_near_the_mean() -> None:
    s = session("mean_reversion", window=4, entry_z=1.5, exit_z=0.1, qty=2.0, allow_short=False)
    # Windows of 10s have no deviation (no signal) until the drop to 6.
    mids = [10, 10, 10, 10, 10, 10, 6, 10, 10, 10]
    r = s.on_batch("quotes", quotes(mids))
    sent = new_orders(r)
    # 7th mid (6): window 10 10 10 6: mean 9, std 1.732, z = -1.73 < -1.5 -> buy 2
    assert sent["ts"].tolist()[0] == T0 + 6_000_000
    assert sent["side"].tolist()[0] == 1
    # 8th mid (10): window 10 10 6 10: mean 9, z = +0.58 > -0.1 -> close
    assert sent["ts"].tolist()[1] == T0 + 7_000_000
    assert sent["side"].tolist()[1] == -1
    assert len(sent) == 2


def test_orders_of_bad_size_or_price_are_rejected_with_their_reason(tmp_path: Path) -> None:
    path = tmp_path / "bad_orders.py"
    path.write_text(
        "from tickwise import Strategy, Param, kernel, buy, sell\n"
        "@kernel\n"
        "def on_quote(ctx, q, st, p):\n"
        "    if q.seq == 1:\n"
        "        buy(ctx, q.instrument, 0.5)\n"  # half a lot
        "        sell(ctx, q.instrument, 1.0, 10.005)\n"  # off the 0.01 tick grid
        "        buy(ctx, q.instrument, 1.0, q.bid_px - 0.05)\n"  # fine: rests
        "class BadOrders(Strategy):\n"
        "    on_quote = on_quote\n"
    )
    s = Session(load_strategy(f"{path}:BadOrders"), simple_instruments(1), **UNGUARDED)
    r = s.on_batch("quotes", quotes([10.0, 10.0]))
    assert r.orders["status"].tolist() == [STATUS_REJECTED, STATUS_REJECTED, STATUS_NEW]
    assert r.orders["reason"].tolist()[:2] == [REASON_BAD_QTY, REASON_BAD_PRICE]
    assert r.orders["order_type"].tolist()[2] == ORD_LIMIT
    assert s.ctx.clock[0].n_open == 1  # one order open, resting below the market


def test_limit_order_rests_then_fills_as_maker_and_ioc_remainder_is_cancelled(tmp_path) -> None:
    path = tmp_path / "limits.py"
    path.write_text(
        "from tickwise import Strategy, kernel, buy, IOC\n"
        "@kernel\n"
        "def on_quote(ctx, q, st, p):\n"
        "    if q.seq == 1:\n"
        "        buy(ctx, q.instrument, 3.0, 9.95)\n"  # rests below the 10.01 ask
        "        buy(ctx, q.instrument, 300.0, 10.5, IOC)\n"  # only 100 shown at the ask
        "class Limits(Strategy):\n"
        "    on_quote = on_quote\n"
    )
    s = Session(load_strategy(f"{path}:Limits"), simple_instruments(1), **UNGUARDED)
    r = s.on_batch("quotes", quotes([10.0, 10.0, 10.0, 9.90]))
    assert r.fills["qty"].tolist() == [100.0, 3.0]
    assert r.fills["price"].tolist() == [10.01, 9.95]
    assert r.fills["liquidity"].tolist() == [LIQ_TAKER, LIQ_MAKER]
    cancelled = r.orders[r.orders["status"] == STATUS_CANCELLED]
    assert cancelled["qty"].tolist() == [200.0]  # the IOC's unfilled rest


def test_warm_up_means_no_batch_compiles() -> None:
    s = session("mean_reversion")
    before = {k: len(f.signatures) for k, f in s._runners.items()}
    s.on_batch("quotes", quotes(np.linspace(10, 11, 500)))
    assert {k: len(f.signatures) for k, f in s._runners.items()} == before


def test_sessions_of_one_strategy_share_one_compiled_loop() -> None:
    # Parameters and state are named tuples, typed by their class: a class per session
    # would be a new type, and every new session would compile (or load) its loop again.
    first = session("mean_reversion", window=20)
    second = session("mean_reversion", window=30, qty=2.0)
    for s in (first, second):
        s.on_batch("quotes", quotes(np.linspace(10, 11, 50)))
    assert type(first._p) is type(second._p)
    assert type(first._st) is type(second._st)
    assert len(first._runners["quotes"].signatures) == 1


@pytest.mark.parametrize(
    ("spec", "params", "message"),
    [
        ("mean_reversion", {"windw": 5}, "has no parameter windw; its parameters: window"),
        ("mean_reversion", {"window": 1}, "window=1 is below its minimum 2"),
        ("mean_reversion", {"window": "ten"}, "window='ten' is not a valid int"),
        ("mean_reversion", {"qty": float("nan")}, "qty=nan must be finite"),
        ("mean_reversion", {"allow_short": "maybe"}, "allow_short='maybe' is not a valid bool"),
        ("mean_reversion", {"exit_z": 3.0}, "exit_z (3.0) must not exceed entry_z (2.0)"),
        ("sma_cross", {"fast": 30, "slow": 10}, "fast (30) must be shorter than slow (10)"),
    ],
)
def test_bad_parameters_are_refused_with_what_is_wrong(spec, params, message) -> None:
    with pytest.raises(StrategyError) as err:
        load_strategy(spec).resolve_params(params)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_strategy", "unknown strategy 'no_such_strategy'; registered: mean_reversion"),
        ("/nowhere/x.py:X", "/nowhere/x.py: no such strategy file"),
        ("tickwise.engine.schemas:Quote", "is not a tickwise Strategy subclass"),
        ("tickwise.nothing_here:X", "cannot import tickwise.nothing_here"),
    ],
)
def test_unloadable_strategies_say_why(spec: str, message: str) -> None:
    with pytest.raises(StrategyError) as err:
        load_strategy(spec)
    assert message in str(err.value)


def test_a_callback_must_be_a_top_level_function(tmp_path: Path) -> None:
    path = tmp_path / "nested.py"
    path.write_text(
        "from tickwise import Strategy, kernel\n"
        "def make():\n"
        "    @kernel\n"
        "    def on_quote(ctx, q, st, p):\n"
        "        pass\n"
        "    return on_quote\n"
        "class Nested(Strategy):\n"
        "    on_quote = make()\n"
    )
    with pytest.raises(StrategyError, match="must be a @tw.kernel function defined at the top"):
        Session(load_strategy(f"{path}:Nested"), simple_instruments(1), **UNGUARDED)


def quote_rows(rows, spread=0.02, sizes=(100.0, 100.0)):
    """A quotes batch from (instrument, mid) pairs, 1 ms apart, seq per instrument."""
    n = len(rows)
    inst = np.array([r[0] for r in rows], dtype=np.uint32)
    mids = np.array([r[1] for r in rows], dtype=float)
    seq = np.zeros(n, dtype=np.uint64)
    for k in range(n):
        seq[k] = (inst[:k] == inst[k]).sum() + 1
    return {
        "ts_event": T0 + np.arange(n) * 1_000_000,
        "ts_recv": T0 + np.arange(n) * 1_000_000,
        "instrument": inst,
        "seq": seq,
        "bid_px": np.round(mids - spread / 2, 2),
        "ask_px": np.round(mids + spread / 2, 2),
        "bid_sz": np.full(n, sizes[0]),
        "ask_sz": np.full(n, sizes[1]),
    }


def test_pairs_shorts_a_wide_spread_and_closes_it_when_it_comes_back() -> None:
    s = session("pairs", leg_a=0, leg_b=1, beta=1.0, window=3, entry_z=1.0, exit_z=0.0, qty=2.0)
    events = [(0, 10), (1, 10), (0, 10), (1, 10), (0, 13), (1, 10), (0, 10)]
    r = s.on_batch("quotes", quote_rows(events))
    sent = new_orders(r)
    # 5th event: spreads 0 0 3 -> z = +1.41 > 1: short the spread (sell a, buy b).
    # 7th event: spreads 3 3 0 -> z = -1.41 < 0: close both legs.
    assert sent["ts"].tolist() == [T0 + 4_000_000] * 2 + [T0 + 6_000_000] * 2
    assert sent["instrument"].tolist() == [0, 1, 0, 1]
    assert sent["side"].tolist() == [-1, 1, 1, -1]
    assert sent["qty"].tolist() == [2.0, 2.0, 2.0, 2.0]
    # The opening orders filled at each leg's next quote; the closing ones are still working.
    assert s.ctx.portfolio["lots"][:2].tolist() == [-2, 2]  # (lots of 1)


def test_obi_market_maker_quotes_both_sides_leaning_with_imbalance_and_inventory() -> None:
    s = session("obi_market_maker", qty=1.0, half_spread_ticks=1, imbalance_ticks=2.0,
                inventory_ticks=1.0, max_position=10.0, levels=1)  # fmt: skip
    first = quote_rows([(0, 10.01)], sizes=(300.0, 100.0))  # imbalance +0.5: centre +1 tick
    r1 = s.on_batch("quotes", first)
    assert new_orders(r1)[["side", "price"]].tolist() == [(1, 10.01), (-1, 10.03)]
    r2 = s.on_batch("quotes", {k: v.copy() for k, v in first.items()} | {"seq": np.array([2])})
    assert r2.orders.size == 0  # nothing moved: quotes stay
    third = quote_rows([(0, 10.0)])  # ask comes down to our bid: it fills as maker
    third["seq"][:] = 3
    third["ts_event"][:] = third["ts_recv"][:] = T0 + 2_000_000
    r3 = s.on_batch("quotes", third)
    assert r3.fills[["side", "price", "liquidity"]].tolist() == [(1, 10.01, LIQ_MAKER)]
    # Long 1 of max 10 leans the centre down 0.1 tick: new bid 9.98; the ask, to move to
    # 10.01, is cancelled first, and its successor waits until it is gone: one quote a side.
    assert r3.orders[["status", "side", "price"]].tolist() == [
        (STATUS_NEW, 1, 9.98),
        (STATUS_CANCELLED, -1, 10.03),
    ]
    fourth = {k: v.copy() for k, v in third.items()}
    fourth["seq"][:] = 4
    fourth["ts_event"][:] = fourth["ts_recv"][:] = T0 + 3_000_000
    r4 = s.on_batch("quotes", fourth)
    assert r4.orders[["status", "side", "price"]].tolist() == [(STATUS_NEW, -1, 10.01)]


def test_obi_market_maker_never_exceeds_its_inventory_limit(tmp_path) -> None:
    from tickwise.feeds.history import open_history

    from ..conftest import make_synth

    # A slow market (2 events/s) wanders far enough in 30k quotes to fill many quotes.
    path = make_synth(tmp_path / "q", kind="quotes", rows=30_000, instruments=1, seed=3, rate=2.0)
    history = open_history(path)
    params = {"max_position": 3.0, "qty": 1.0, "requote_ticks": 5}
    s = Session(load_strategy("obi_market_maker"), history.instruments, params)
    fills = np.concatenate([s.on_batch("quotes", b).fills for b in history.batches(4_096)])
    assert len(fills) > 100
    inventory = np.cumsum(fills["side"] * fills["qty"])
    assert np.abs(inventory).max() == 3.0  # reaches the limit, never beyond


def test_timer_fires_at_period_boundaries_before_the_event_and_coalesces_gaps(tmp_path) -> None:
    path = tmp_path / "timed.py"
    path.write_text(
        "from tickwise import Strategy, Scalar, PerInstrument, kernel, now\n"
        "@kernel\n"
        "def on_quote(ctx, q, st, p):\n"
        "    pass\n"
        "@kernel\n"
        "def on_timer(ctx, t, st, p):\n"
        "    n = st.calls[0]\n"
        "    st.when[0, n] = t\n"
        "    st.clock_seen[0, n] = now(ctx)\n"
        "    st.calls[0] = n + 1\n"
        "class Timed(Strategy):\n"
        "    state = {'calls': Scalar(int), 'when': PerInstrument(int, window=8),\n"
        "             'clock_seen': PerInstrument(int, window=8)}\n"
        "    on_quote = on_quote\n"
        "    on_timer = on_timer\n"
        "    timer_ms = 10\n"
    )
    s = Session(load_strategy(f"{path}:Timed"), simple_instruments(1), **UNGUARDED)
    ms = 1_000_000
    batch = quotes([10.0] * 5)
    batch["ts_event"] = T0 + np.array([0, 5, 12, 35, 36]) * ms
    s.on_batch("quotes", batch)
    calls = int(s.state["calls"][0])
    assert s.state["when"][0][:calls].tolist() == [T0 + 10 * ms, T0 + 30 * ms]
    assert s.state["clock_seen"][0][:calls].tolist() == [T0 + 10 * ms, T0 + 30 * ms]


def test_timer_needs_its_period() -> None:
    from tickwise import Strategy, kernel

    @kernel
    def cb(ctx, q, st, p):
        pass

    class NoPeriod(Strategy):
        on_quote = cb
        on_timer = cb

    with pytest.raises(StrategyError, match="on_timer and timer_ms go together"):
        NoPeriod.validate()


def test_on_fill_sees_every_fill_and_cancel_all_empties_the_book(tmp_path) -> None:
    path = tmp_path / "fills.py"
    path.write_text(
        "from tickwise import (Strategy, Scalar, PerInstrument, kernel, buy,\n"
        "    sell, cancel_all, open_orders)\n"
        "@kernel\n"
        "def on_quote(ctx, q, st, p):\n"
        "    if q.seq == 1:\n"
        "        buy(ctx, 0, 2.0)\n"  # market: takes the ask of this quote
        "        sell(ctx, 0, 1.0, 10.50)\n"  # rests above the market
        "        sell(ctx, 0, 1.0, 10.60)\n"
        "    if q.seq == 3:\n"
        "        st.open_before[0] = open_orders(ctx, 0)\n"
        "        st.cancelled[0] = cancel_all(ctx)\n"
        "        st.open_after[0] = open_orders(ctx, 0)\n"
        "@kernel\n"
        "def on_fill(ctx, f, st, p):\n"
        "    n = st.n[0]\n"
        "    st.px[0, n] = f.price\n"
        "    st.qty[0, n] = f.qty * f.side\n"
        "    st.n[0] = n + 1\n"
        "class Fills(Strategy):\n"
        "    state = {'n': Scalar(int), 'px': PerInstrument(float, window=4),\n"
        "             'qty': PerInstrument(float, window=4), 'open_before': Scalar(int),\n"
        "             'cancelled': Scalar(int), 'open_after': Scalar(int)}\n"
        "    on_quote = on_quote\n"
        "    on_fill = on_fill\n"
    )
    s = Session(load_strategy(f"{path}:Fills"), simple_instruments(1), **UNGUARDED)
    r = s.on_batch("quotes", quotes([10.0, 10.2, 10.3]))
    n = int(s.state["n"][0])
    assert s.state["px"][0, :n].tolist() == r.fills["price"].tolist() == [10.01]
    assert s.state["qty"][0, :n].tolist() == [2.0]
    assert (s.state["open_before"][0], s.state["cancelled"][0], s.state["open_after"][0]) == (
        2,
        2,
        0,
    )
    assert (r.orders["status"] == STATUS_CANCELLED).sum() == 2


def test_orders_reach_the_exchange_after_their_latency(tmp_path) -> None:
    path = tmp_path / "late.py"
    path.write_text(
        "from tickwise import Strategy, kernel, buy\n"
        "@kernel\n"
        "def on_quote(ctx, q, st, p):\n"
        "    if q.seq == 1:\n"
        "        buy(ctx, 0, 1.0)\n"
        "class Late(Strategy):\n"
        "    on_quote = on_quote\n"
    )
    batch = quotes([10.0, 10.1, 10.2, 10.3, 10.4])  # one quote per ms
    batch["ts_recv"] = batch["ts_event"] + 200_000  # the strategy sees each 0.2 ms late
    s = Session(load_strategy(f"{path}:Late"), simple_instruments(1), order_latency_ns=2_500_000,
                **UNGUARDED)  # fmt: skip
    r = s.on_batch("quotes", batch)
    assert r.orders["ts"].tolist() == [T0 + 200_000]  # sent when seen
    # Sent at 0.2 ms, it reaches the exchange at 2.7 ms and takes the ask of the quote of
    # 2 ms, the market at that moment.
    assert r.fills[["ts", "price"]].tolist() == [(T0 + 2_700_000, 10.21)]


def test_a_cancel_takes_the_order_latency_and_the_order_can_fill_meanwhile(tmp_path) -> None:
    path = tmp_path / "slow_cancel.py"
    path.write_text(
        "from tickwise import Strategy, Scalar, kernel, buy, cancel\n"
        "@kernel\n"
        "def on_quote(ctx, q, st, p):\n"
        "    if q.seq == 1:\n"
        "        st.oid[0] = buy(ctx, 0, 1.0, 9.95)\n"
        "    if q.seq == 2:\n"
        "        st.sent[0] = cancel(ctx, st.oid[0])\n"
        "        st.again[0] = cancel(ctx, st.oid[0])\n"
        "class SlowCancel(Strategy):\n"
        "    state = {'oid': Scalar(int), 'sent': Scalar(int), 'again': Scalar(int)}\n"
        "    on_quote = on_quote\n"
    )
    batch = quotes([10.0, 10.0, 10.0, 9.90, 9.90])  # the market reaches 9.95 at 3 ms
    for latency, fills in ((0, 0), (2_500_000, 1)):
        s = Session(load_strategy(f"{path}:SlowCancel"), simple_instruments(1), **UNGUARDED,
                    order_latency_ns=latency)  # fmt: skip
        r = s.on_batch("quotes", batch)
        assert (s.state["sent"][0], s.state["again"][0]) == (1, 0)  # one cancel on its way
        assert len(r.fills) == fills
        if fills:  # rests from 2.5 ms; the ask of 3 ms reaches its limit before the cancel
            # sent at 1 ms arrives at 3.5 ms: it fills whole at its limit, as maker
            assert r.fills[["ts", "price", "liquidity"]].tolist() == [
                (T0 + 3_000_000, 9.95, LIQ_MAKER)
            ]
        else:
            assert (r.orders["status"] == STATUS_CANCELLED).sum() == 1


def test_price_windows_get_their_instruments_grid_and_others_stay_floats() -> None:
    from tickwise.engine.indicators import _PER_UNIT
    from tickwise.engine.instruments import Instrument, Instruments

    instruments = Instruments([Instrument(0, "A", 0.01, 1.0), Instrument(2, "B", 0.5, 1.0)])
    s = Session(load_strategy("sma_cross"), instruments, **UNGUARDED)
    assert s.state["slow"][:, _PER_UNIT].tolist() == [200.0, 0.0, 4.0]  # (id 1: no instrument)
    pairs = Session(load_strategy("pairs"), instruments, {"leg_b": 2}, **UNGUARDED)
    assert pairs.state["spread"][:, _PER_UNIT].tolist() == [0.0]  # a spread is no price


def test_a_window_of_prices_must_be_per_instrument() -> None:
    from tickwise import Rolling, Strategy

    class Shared(Strategy):
        state = {"w": Rolling(10, per_instrument=False, prices=True)}
        on_quote = staticmethod(lambda ctx, q, st, p: None)

    with pytest.raises(StrategyError, match="window of prices, so it must be per instrument"):
        Shared.validate()
    with pytest.raises(StrategyError, match="needs the instruments' tick sizes"):
        Shared.new_state(1, {})
