"""The kill switch on hand-made markets: each trigger halts in the event that crosses its
threshold, resting orders are cancelled, no automated order follows, and only a person
resumes, once the condition has cleared."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tickwise import load_strategy
from tickwise.engine.errors import TickwiseError
from tickwise.engine.limits import KillSwitch, RiskLimits, risk_from_table
from tickwise.engine.schemas import (
    REASON_HALTED,
    REASON_NAMES,
    REASON_REDUCE_ONLY,
    STATUS_CANCELLED,
    STATUS_NEW,
    STATUS_REJECTED,
)
from tickwise.engine.session import Session

from ..conftest import simple_instruments
from ..scripted import plan

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
SCRIPTED = f"{Path(__file__).parent.parent / 'scripted.py'}:Scripted"
NAN = np.nan
QUIET = KillSwitch.off()


def session(rows, kill: KillSwitch = QUIET, risk: RiskLimits | None = None, **opts) -> Session:
    s = Session(load_strategy(SCRIPTED), simple_instruments(1), risk=risk or RiskLimits.off(),
                killswitch=kill, **opts)  # fmt: skip
    plan(s.state, rows)
    return s


def quotes(mids, gaps_ms=None, seqs=None, late_ms=0.0, size=100.0) -> dict:
    """A quote per mid (bid/ask 1 cent either side), 1 ms apart unless `gaps_ms` says."""
    n = len(mids)
    mids = np.asarray(mids, dtype=float)
    steps = np.ones(n) if gaps_ms is None else np.asarray(gaps_ms, dtype=float)
    ts = T0 + (np.cumsum(steps) * MS).astype(np.int64)
    return {
        "ts_event": ts,
        "ts_recv": ts + int(late_ms * MS),
        "instrument": np.zeros(n, np.uint32),
        "seq": np.arange(1, n + 1, dtype=np.uint64)
        if seqs is None
        else np.asarray(seqs, np.uint64),
        "bid_px": np.round(mids - 0.01, 2),
        "ask_px": np.round(mids + 0.01, 2),
        "bid_sz": np.full(n, size),
        "ask_sz": np.full(n, size),
    }


def sent_after(result, ts: int) -> np.ndarray:
    o = result.orders
    return o[(o["status"] == STATUS_NEW) & (o["ts"] > ts)]


# Orders: a resting bid at event 1, then a fresh buy at every event from 3 on (rows 1..14).
RESTING_THEN_EVERY_EVENT = [(1, +1, 1, 9.0)] + [(e, +1, 1, NAN) for e in range(3, 17)]


@pytest.mark.parametrize(
    ("kill", "market", "trip", "at"),
    [
        # 10 -> 9.4 (-6 %) within the window: a flash crash, at the 6th quote.
        (
            KillSwitch(**{**vars(QUIET), "price_jump_pct": 5.0}),
            quotes([10.0] * 5 + [9.4] * 11),
            "price_jump",
            5,
        ),
        (
            KillSwitch(**{**vars(QUIET), "stale_feed_ms": 50.0}),
            quotes([10.0] * 16, gaps_ms=[1] * 7 + [80] + [1] * 8),
            "stale_feed",
            7,
        ),
        (
            KillSwitch(**{**vars(QUIET), "seq_gap": True}),
            quotes([10.0] * 16, seqs=list(range(1, 9)) + list(range(12, 20))),
            "seq_gap",
            8,
        ),
        (
            KillSwitch(**{**vars(QUIET), "max_feed_latency_ms": 2.0, "feed_latency_events": 3}),
            quotes([10.0] * 16, late_ms=5.0),
            "feed_latency",
            2,
        ),
    ],
    ids=["price_jump", "stale_feed", "seq_gap", "feed_latency"],
)
def test_a_trigger_halts_in_the_event_that_crosses_it(kill, market, trip, at) -> None:
    s = session(RESTING_THEN_EVERY_EVENT, kill)
    r = s.on_batch("quotes", market)
    status = s.status()
    assert status["halted"]
    assert status["halt_reason"] == trip
    halt_ts = int(market["ts_event"][at])
    assert status["halt_ts"] == halt_ts  # the very event that crossed the threshold
    # Automated orders went out at every event before it, none from it on.
    assert (r.orders["status"] == STATUS_NEW).sum() == 1 + (at - 2)
    # Each event from it on tried again: the first refusal is logged, the rest counted.
    refused = r.orders[r.orders["status"] == STATUS_REJECTED]
    assert refused["reason"].tolist() == [REASON_HALTED]
    assert refused["ts"][0] == market["ts_recv"][at]  # (an order's time: when it was sent)
    assert status["refused_unlogged"] == {"halted": 16 - at - 1, "reduce_only": 0}
    # The resting bid was cancelled in that same event.
    cancelled = r.orders[r.orders["status"] == STATUS_CANCELLED]
    assert cancelled["id"].tolist() == [1]
    assert s.ctx.clock[0].n_open == 0  # nothing left working


def test_loss_and_drawdown_limits_trip_on_the_mark() -> None:
    kill = KillSwitch(**{**vars(QUIET), "max_loss": 50.0})
    s = session([(1, +1, 100, NAN)], kill)
    r = s.on_batch("quotes", quotes([10.0, 10.0, 9.8, 9.6, 9.4, 9.2]))
    # Bought 100 at 10.01; marked at the mid: -21 at 9.8, -41 at 9.6, -61 at 9.4: trips there.
    status = s.status()
    assert status["halt_reason"] == "max_loss"
    assert status["halt_ts"] == T0 + 5 * MS
    assert status["halt_value"] == pytest.approx(-61.0)
    assert len(r.fills) == 1
    kill = KillSwitch(**{**vars(QUIET), "max_drawdown": 30.5})
    s = session([(1, +1, 100, NAN)], kill)
    s.on_batch("quotes", quotes([10.0, 10.0, 10.5, 10.4, 10.2, 10.0]))
    # Peak +49 at 10.5; 10.2 is +19, 30 below the peak (within); 10.0 is -1: beyond.
    assert s.status()["halt_reason"] == "max_drawdown"
    assert s.status()["halt_ts"] == T0 + 6 * MS


def test_flattening_closes_positions_with_reduce_only_orders() -> None:
    kill = KillSwitch(**{**vars(QUIET), "max_loss": 50.0, "flatten": True})
    s = session([(1, +1, 100, NAN)], kill)
    r = s.on_batch("quotes", quotes([10.0, 10.0, 9.8, 9.6, 9.4, 9.2, 9.2]))
    assert s.status()["halt_reason"] == "max_loss"
    assert r.fills["side"].tolist() == [1, -1]
    assert r.fills["price"].tolist() == [10.01, 9.39]  # sold at the bid of the halting quote
    assert s.ctx.portfolio[0]["lots"] == 0.0


def test_a_reject_storm_and_a_runaway_strategy_trip_it() -> None:
    risk = RiskLimits(**{**vars(RiskLimits.off()), "max_order_qty": 5.0})
    kill = KillSwitch(**{**vars(QUIET), "max_rejects_per_sec": 3.0})
    s = session([(e, +1, 10, NAN) for e in range(1, 9)], kill, risk)  # 10 > max_order_qty
    s.on_batch("quotes", quotes([10.0] * 10))
    assert s.status()["halt_reason"] == "reject_rate"
    assert s.status()["halt_ts"] == T0 + 4 * MS  # the 4th reject within a second
    risk = RiskLimits(**{**vars(RiskLimits.off()), "runaway_repeats": 4, "runaway_window_ms": 100})
    s = session([(e, +1, 1, 9.0) for e in range(1, 9)], risk=risk)  # the same bid, again
    r = s.on_batch("quotes", quotes([10.0] * 10))
    assert s.status()["halt_reason"] == "runaway"
    assert (r.orders["status"] == STATUS_NEW).sum() == 4  # the 4th is the one that trips it
    assert s.ctx.clock[0].n_open == 0


def test_a_strategy_sending_nan_or_raising_is_halted(tmp_path: Path) -> None:
    s = session([(2, +1, NAN, NAN)], KillSwitch(**{**vars(QUIET), "strategy_faults": True}))
    s.on_batch("quotes", quotes([10.0] * 4))
    assert s.status()["halt_reason"] == "strategy_fault"
    path = tmp_path / "raising.py"
    path.write_text(
        "from tickwise import Strategy, kernel, buy\n"
        "@kernel\n"
        "def on_quote(ctx, q, st, p):\n"
        "    buy(ctx, 0, 1.0, 9.0)\n"
        "    if q.seq == 3:\n"
        "        raise ValueError('the model broke')\n"
        "class Raising(Strategy):\n"
        "    on_quote = on_quote\n"
    )
    s = Session(load_strategy(f"{path}:Raising"), simple_instruments(1), risk=RiskLimits.off(),
                killswitch=KillSwitch(**{**vars(QUIET), "strategy_faults": True}))  # fmt: skip
    r = s.on_batch("quotes", quotes([10.0] * 6))
    status = s.status()
    assert status["halt_reason"] == "strategy_fault"
    assert "the model broke" in status["fault"]
    assert "row 2" in status["fault"]
    assert (r.orders["status"] == STATUS_NEW).sum() == 3  # quotes 1, 2, 3 (before it raised)
    assert (r.orders["status"] == STATUS_CANCELLED).sum() == 3
    assert (r.orders["reason"] == REASON_HALTED).sum() == 1  # quote 4 (5 and 6: counted)
    assert status["refused_unlogged"]["halted"] == 2
    assert r.events == 6


def test_halt_is_latched_and_resume_waits_for_the_condition_to_clear() -> None:
    kill = KillSwitch(**{**vars(QUIET), "seq_gap": True})
    s = session([(e, +1, 1, 9.0 + 0.01 * e) for e in range(1, 13)], kill)
    s.on_batch("quotes", quotes([10.0] * 4, seqs=[1, 2, 5, 6]))  # a gap, then in sequence
    assert s.status()["halt_reason"] == "seq_gap"
    s.on_batch("quotes", quotes([10.0] * 4, seqs=[7, 8, 9, 10]))
    assert s.status()["halted"]  # latched, though the feed is fine again
    s2 = session([], kill)
    s2.on_batch("quotes", quotes([10.0] * 3, seqs=[1, 2, 9]))  # the gap is the latest event
    with pytest.raises(TickwiseError, match="cannot resume: I0 had no event in sequence"):
        s2.resume()
    s.resume()
    assert not s.status()["halted"]
    r = s.on_batch("quotes", quotes([10.0] * 4, seqs=[11, 12, 13, 14]))
    assert (r.orders["status"] == STATUS_NEW).sum() > 0  # trading again


def test_a_person_can_halt_or_reduce_one_instrument_or_all() -> None:
    s = session([(1, +1, 100, NAN), (3, +1, 10, NAN), (4, -1, 30, NAN), (5, -1, 90, NAN)])
    s.on_batch("quotes", quotes([10.0, 10.0]))
    s.halt(state="reducing")
    r = s.on_batch("quotes", quotes([10.0] * 4))
    rej = r.orders[r.orders["status"] == STATUS_REJECTED]
    # Reducing: the buy at event 3 and the sell of 90 (more than the 70 left) are refused;
    # the first refusal under REDUCING is logged, the second counted.
    assert rej["reason"].tolist() == [REASON_REDUCE_ONLY]
    assert rej["ts"][0] == T0 + MS  # event 3: the first quote of this batch
    assert s.status()["refused_unlogged"]["reduce_only"] == 1
    assert s.ctx.portfolio[0]["lots"] == 70.0
    s.resume()
    s.halt(instrument=0)
    assert {k: v["state"] for k, v in s.status()["instruments"].items()} == {"I0": "halted"}
    with pytest.raises(TickwiseError, match="unknown trading state"):
        s.halt(state="paused")


def test_limits_are_checked_with_their_names() -> None:
    with pytest.raises(TickwiseError, match="max_position must be positive"):
        risk_from_table({"max_position": -5})
    with pytest.raises(TickwiseError, match=r"unknown keys \['max_lost'\]"):
        risk_from_table({"max_lost": 5})
    with pytest.raises(TickwiseError, match="reduce_only_on names unknown triggers"):
        KillSwitch(reduce_only_on=("flash",))
    with pytest.raises(TickwiseError, match="reduce_only_on must be a list"):
        KillSwitch(reduce_only_on="max_drawdown")


def test_a_timer_that_raises_halts_the_session_and_the_batch_still_ends(tmp_path: Path) -> None:
    path = tmp_path / "raising_timer.py"
    path.write_text(
        "from tickwise import Strategy, kernel, buy\n"
        "@kernel\n"
        "def on_quote(ctx, q, st, p):\n"
        "    buy(ctx, 0, 1.0, 9.0)\n"
        "@kernel\n"
        "def on_timer(ctx, ts, st, p):\n"
        "    raise ValueError('the timer broke')\n"
        "class RaisingTimer(Strategy):\n"
        "    timer_ms = 2.0\n"
        "    on_quote = on_quote\n"
        "    on_timer = on_timer\n"
    )
    faults = KillSwitch(**{**vars(QUIET), "strategy_faults": True})
    s = Session(load_strategy(f"{path}:RaisingTimer"), simple_instruments(1),
                risk=RiskLimits.off(), killswitch=faults)  # fmt: skip
    r = s.on_batch("quotes", quotes([10.0] * 8))
    assert s.status()["halt_reason"] == "strategy_fault"
    assert "the timer broke" in s.status()["fault"]
    # Every quote was applied, the one whose timer raised included; orders stopped there.
    assert s.ctx.market[0]["ts"] == T0 + 8 * MS
    # The timer, armed at 1 ms, raises at the quote of 2 ms: only quote 1's order left;
    # quotes 2 to 8 all reached the strategy (quote 2 redone, not lost) and were refused
    # (the first logged, the six others counted).
    assert (r.orders["status"] == STATUS_NEW).sum() == 1
    assert (r.orders["reason"] == REASON_HALTED).sum() == 1
    assert s.status()["refused_unlogged"]["halted"] == 6


OFF = vars(RiskLimits.off())


@pytest.mark.parametrize(
    ("limits", "rows", "reasons"),
    [
        # Collar 1 % around the mid 10.00: 10.09 passes, 10.11 does not; 3 ticks: 10.04 fails.
        ({"price_collar_pct": 1.0}, [(1, -1, 1, 10.09), (1, -1, 1, 10.11)],
         ["none", "price_collar"]),
        ({"price_collar_ticks": 3}, [(1, -1, 1, 10.03), (1, -1, 1, 10.04)],
         ["none", "price_collar"]),
        ({"max_order_qty": 5}, [(1, +1, 5, 9.9), (1, +1, 6, 9.9)], ["none", "max_order_qty"]),
        # Notional: 10 x 9.90 = 99 passes, 11 x 9.90 does not; a market buy at the ask 10.01.
        ({"max_notional": 100}, [(1, +1, 10, 9.9), (1, +1, 11, 9.9), (1, +1, 10, NAN)],
         ["none", "max_notional", "max_notional"]),
        # Position counts working orders: 60 + 40 working reach the limit, 1 more does not.
        ({"max_position": 100}, [(1, +1, 60, 9.9), (1, +1, 40, 9.8), (1, +1, 1, 9.7),
                                 (1, -1, 100, 10.1)], ["none", "none", "max_position", "none"]),
        ({"max_gross_exposure": 500}, [(1, +1, 30, 9.9), (1, +1, 21, 9.9)],
         ["none", "max_gross_exposure"]),
        ({"max_open_orders": 2}, [(1, +1, 1, 9.9), (1, +1, 1, 9.8), (1, +1, 1, 9.7)],
         ["none", "none", "max_open_orders"]),
        ({"max_orders_per_sec": 2}, [(1, +1, 1, 9.9), (2, +1, 1, 9.8), (3, +1, 1, 9.7)],
         ["none", "none", "max_orders_per_sec"]),
        # Our own bid at 9.95 rests: a sell at 9.95 or a market sell would trade with it.
        ({"self_trade_prevention": True}, [(1, +1, 1, 9.95), (2, -1, 1, 9.95), (2, -1, 1, NAN),
                                           (2, -1, 1, 9.96)],
         ["none", "self_trade", "self_trade", "none"]),
    ],
    ids=["collar_pct", "collar_ticks", "qty", "notional", "position", "gross", "open_orders",
         "throttle", "self_trade"],
)  # fmt: skip
def test_each_pre_trade_check_refuses_with_its_reason(limits, rows, reasons) -> None:
    s = session(rows, risk=RiskLimits(**{**OFF, **limits}))
    r = s.on_batch("quotes", quotes([10.0] * 3))
    sent = r.orders[np.isin(r.orders["status"], [STATUS_NEW, STATUS_REJECTED])]
    assert [REASON_NAMES[int(x)] for x in sent["reason"]] == reasons


def test_a_missing_or_stale_reference_price_means_the_collar_refuses() -> None:
    risk = RiskLimits(**{**OFF, "price_collar_pct": 5.0, "reference_max_age_ms": 50.0})
    reasons = []
    for late_ms in (10.0, 80.0):  # the strategy sees each quote this late
        s = session([(1, +1, 1, 9.9)], risk=risk)
        r = s.on_batch("quotes", quotes([10.0, 10.0], late_ms=late_ms))
        reasons += [REASON_NAMES[int(x)] for x in r.orders["reason"]]
    one_sided = quotes([10.0, 10.0])  # no bid: no mid to check against
    one_sided["bid_px"][:] = np.nan
    one_sided["bid_sz"][:] = 0.0
    s = session([(1, +1, 1, 9.9)], risk=risk)
    reasons += [REASON_NAMES[int(x)] for x in s.on_batch("quotes", one_sided).orders["reason"]]
    assert reasons == ["none", "no_reference_price", "no_reference_price"]


def test_the_kill_switchs_own_refusals_never_count_as_a_reject_storm() -> None:
    """A person puts I0 in REDUCING; the strategy keeps buying (refused as reduce_only, 14
    times within milliseconds): that is the kill switch working, not a reject storm, so
    `reject_rate` (5 a second here) must not halt the whole session."""
    storm = KillSwitch(**{**vars(QUIET), "max_rejects_per_sec": 5.0})
    s = session([(e, +1, 1, NAN) for e in range(3, 17)], storm)
    s.halt(instrument=0, state="reducing")
    r = s.on_batch("quotes", quotes([10.0] * 16))
    refused = r.orders[r.orders["status"] == STATUS_REJECTED]["reason"]
    assert refused.tolist() == [REASON_REDUCE_ONLY]  # the first; 13 more counted
    status = s.status()
    assert status["refused_unlogged"]["reduce_only"] == 13
    assert status["state"] == "active"
    assert status["instruments"]["I0"]["state"] == "reducing"
    assert status["instruments"]["I0"]["trigger"] == "manual"


def test_resuming_one_instrument_leaves_the_session_and_the_others_as_they_are() -> None:
    s = Session(load_strategy("mean_reversion"), simple_instruments(3), risk=RiskLimits.off(),
                killswitch=KillSwitch())  # fmt: skip
    s.halt(instrument=1, state="reducing")
    s.trip("stale_feed", 900.0, 500.0)  # the whole session
    s.halt(instrument=2)
    s.resume(instrument=1)
    status = s.status()
    assert (status["state"], status["halt_reason"], status["halt_value"]) == (
        "halted", "stale_feed", 900.0)  # fmt: skip
    assert {k: (v["state"], v["trigger"]) for k, v in status["instruments"].items()} == {
        "I2": ("halted", "manual")
    }
    assert [(h["scope"], h["to"], h["trigger"]) for h in status["history"]] == [
        ("I1", "reducing", "manual"), ("session", "halted", "stale_feed"),
        ("I2", "halted", "manual"), ("I1", "active", "manual"),
    ]  # fmt: skip


def test_built_in_strategies_send_nothing_the_trading_state_would_refuse(tmp_path: Path) -> None:
    """mean_reversion trades through `trade_to`, which asks the trading state: an instrument
    HALTED sends nothing at all (not a stream of refusals), one REDUCING only what brings
    its position to flat, while the others trade on."""
    from tickwise.feeds.history import open_history

    from ..conftest import make_synth

    data = make_synth(tmp_path / "q.parquet", kind="quotes", rows=20_000, instruments=3, seed=5)
    history = open_history(data)
    s = Session(load_strategy("mean_reversion"), history.instruments,
                {"window": 20, "entry_z": 1.0, "qty": 100.0}, risk=RiskLimits.off(),
                killswitch=KillSwitch.off())  # fmt: skip
    batches = list(history.batches(5_000))
    s.on_batch("quotes", batches[0])
    long_or_short = next(i for i in range(3) if s.ctx.portfolio[i]["lots"] != 0)
    flat = next(i for i in range(3) if i != long_or_short)
    position = float(s.ctx.portfolio[long_or_short]["lots"])
    s.halt(instrument=flat)
    s.halt(instrument=long_or_short, state="reducing")
    orders = np.concatenate([s.on_batch("quotes", b).orders for b in batches[1:]])
    assert np.count_nonzero(orders["status"] == STATUS_REJECTED) == 0
    new = orders[orders["status"] == STATUS_NEW]
    assert np.count_nonzero(new["instrument"] == flat) == 0
    reducing = new[new["instrument"] == long_or_short]
    assert reducing["side"].tolist() == [-np.sign(position)]  # one order, to flat
    assert s.ctx.portfolio[long_or_short]["lots"] == 0.0
    third = 3 - flat - long_or_short
    assert np.count_nonzero(new["instrument"] == third) > 0  # trading on


def test_an_infinite_mark_does_not_switch_the_loss_limit_off_for_good() -> None:
    """A mark of 1e308 against a short position takes PnL to -inf (the kill switch trips);
    the running sum of PnL then met inf - inf, stayed NaN, and no later loss ever tripped.
    (The live boundary refuses such prices; the kernels must survive them anyway.)"""
    kill = KillSwitch(**{**vars(QUIET), "max_loss": 50.0})
    s = session([(1, -1, 100, NAN)], kill)
    s.on_batch("quotes", quotes([10.0, 10.0]))
    huge = quotes([10.0])
    huge["bid_px"][:] = huge["ask_px"][:] = 1e308
    huge["ts_event"] += 3 * MS
    huge["ts_recv"] += 3 * MS
    s.on_batch("quotes", huge)
    assert (s.status()["halt_reason"], s.status()["halt_value"]) == ("max_loss", -np.inf)
    calm = quotes([10.0, 10.0])
    calm["ts_event"] += 4 * MS
    calm["ts_recv"] += 4 * MS
    s.on_batch("quotes", calm)
    s.resume()
    loss = quotes([10.6, 10.7])  # short 100 from 9.99: -61, -71
    loss["ts_event"] += 6 * MS
    loss["ts_recv"] += 6 * MS
    s.on_batch("quotes", loss)
    assert s.status()["halt_reason"] == "max_loss"
    assert s.status()["halt_value"] == pytest.approx(-61.0)


def test_each_halt_logs_its_first_refusal_and_counts_the_rest() -> None:
    """A halted strategy that keeps trying logs one refused row per halt and reason, not one
    per event (a halted run logged 30,000 rows of `halted`); each new halt logs again."""
    every_event = [(e, +1, 1, NAN) for e in range(1, 17)]
    s = session(every_event)
    market = quotes([10.0] * 16)
    part = lambda a, b: {c: v[a:b] for c, v in market.items()}  # noqa: E731
    s.halt()
    first = s.on_batch("quotes", part(0, 5))
    s.resume()
    traded = s.on_batch("quotes", part(5, 8))
    s.halt(state="reducing")
    second = s.on_batch("quotes", part(8, 16))
    refused = lambda r: r.orders[r.orders["status"] == STATUS_REJECTED]  # noqa: E731
    assert refused(first)["reason"].tolist() == [REASON_HALTED]
    assert (traded.orders["status"] == STATUS_NEW).sum() == 3
    assert refused(second)["reason"].tolist() == [REASON_REDUCE_ONLY]  # buys do not reduce
    assert s.status()["refused_unlogged"] == {"halted": 4, "reduce_only": 7}


def test_a_disabled_kill_switch_has_no_automatic_trigger_and_compiles_no_watcher() -> None:
    from dataclasses import replace

    from tickwise.engine.config import SessionConfig, make_session
    from tickwise.engine.limits import pack_limits
    from tickwise.engine.schemas import TRIP_NAMES

    kill = KillSwitch(max_loss=100.0, max_drawdown=50.0, reduce_only_on=("price_jump",))
    on = pack_limits(RiskLimits(), kill)[0]["action"]
    off = pack_limits(RiskLimits(), replace(kill, enabled=False))[0]["action"]
    always = {"manual", "journal_lost", "stop"}  # a person, and the session's own end
    for trip, name in TRIP_NAMES.items():
        assert off[trip] == (on[trip] if name in always else 0), name
    assert on[next(t for t, n in TRIP_NAMES.items() if n == "max_loss")] != 0
    config = SessionConfig(killswitch=replace(kill, enabled=False))
    s = make_session(load_strategy(SCRIPTED), simple_instruments(1), {}, config)
    assert "unguarded_feed as _guard_feed" in Path(s.loop.__file__).read_text()
    with pytest.raises(TickwiseError, match="enabled must be true or false"):
        KillSwitch(enabled="no")
