"""A person's resume is refused while the condition behind a trigger still holds, and taken once
it has cleared, for every trigger: those the loop judges from its own state (on hand-made
markets of drawn sizes), and those only the clock and the sockets show (`engine.live.vitals`, on
drawn readings). Triggers with nothing that lingers (a strategy's fault, a runaway, a person's
halt) never block a resume."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickwise import load_strategy
from tickwise.engine.errors import TickwiseError
from tickwise.engine.limits import KillSwitch, RiskLimits
from tickwise.engine.live.vitals import Vitals, holding
from tickwise.engine.schemas import TRIP_NAMES
from tickwise.engine.session import Session

from ..conftest import simple_instruments
from ..scripted import plan
from ..unit.test_killswitch import MS, QUIET, SCRIPTED, quotes

OUTSIDE = ("stale_feed", "seq_gap", "gateway_lost", "bad_data", "journal_lost", "reconcile")
IN_LOOP = ("max_loss", "max_drawdown", "price_jump", "feed_latency", "seq_gap", "reject_rate")
ONE_OFF = ("strategy_fault", "runaway", "manual", "stop")


def test_every_trigger_is_covered_here() -> None:
    assert set(OUTSIDE) | set(IN_LOOP) | set(ONE_OFF) == set(TRIP_NAMES.values()) - {"none"}


def scripted(kill: KillSwitch, rows: list, risk: RiskLimits | None = None) -> Session:
    s = Session(load_strategy(SCRIPTED), simple_instruments(1), risk=risk or RiskLimits.off(),
                killswitch=kill)  # fmt: skip
    plan(s.state, rows)
    return s


def refused(s: Session) -> str:
    with pytest.raises(TickwiseError, match="cannot resume") as info:
        s.resume()
    assert s.status()["halted"]
    return str(info.value)


def resumed(s: Session) -> None:
    s.resume()
    assert not s.status()["halted"]


def later(mids: list[float], after_ms: float, **kw: object) -> dict:
    """Quotes starting `after_ms` after T0 (1 ms apart)."""
    q = quotes(mids, **kw)
    q["ts_event"] = q["ts_event"] + int(after_ms * MS)
    q["ts_recv"] = q["ts_recv"] + int(after_ms * MS)
    return q


# --- judged by the loop -------------------------------------------------------------------------


@given(limit=st.floats(10.0, 80.0), crash=st.floats(0.01, 0.5))
def test_a_loss_blocks_a_resume_until_the_pnl_is_back_above_the_limit(limit, crash) -> None:
    s = scripted(replace(QUIET, max_loss=limit), [(1, +1, 100, np.nan)])
    low = round(10.0 - limit / 100 - crash, 2)  # 100 bought at 10.01: below -limit at `low`
    s.on_batch("quotes", quotes([10.0, 10.0, low]))
    assert s.status()["halt_reason"] == "max_loss"
    assert "still below -max_loss" in refused(s)
    s.on_batch("quotes", later([10.02], 10))
    resumed(s)


@given(limit=st.floats(10.0, 40.0), fall=st.floats(0.01, 0.3))
def test_a_drawdown_blocks_a_resume_until_it_is_back_within_the_limit(limit, fall) -> None:
    s = scripted(replace(QUIET, max_drawdown=limit), [(1, +1, 100, np.nan)])
    peak = 10.5
    s.on_batch("quotes", quotes([10.0, 10.0, peak, round(peak - limit / 100 - fall, 2)]))
    assert s.status()["halt_reason"] == "max_drawdown"
    assert "still beyond max_drawdown" in refused(s)
    s.on_batch("quotes", later([peak], 10))
    resumed(s)


@given(pct=st.floats(2.0, 10.0), beyond=st.floats(0.5, 20.0))
def test_a_price_jump_blocks_a_resume_while_the_move_is_in_the_window(pct, beyond) -> None:
    kill = replace(QUIET, price_jump_pct=pct, price_jump_window_ms=100.0)
    s = scripted(kill, [])
    crash = round(10.0 * (1 - (pct + beyond) / 100), 2)
    s.on_batch("quotes", quotes([10.0] * 5 + [crash]))
    assert s.status()["halt_reason"] == "price_jump"
    assert "still move beyond price_jump_pct" in refused(s)
    s.on_batch("quotes", later([crash] * 40, 300))  # the window, 100 ms, holds only the crash
    resumed(s)


@given(late_ms=st.floats(5.0, 500.0))
def test_late_events_block_a_resume_until_events_come_in_time(late_ms) -> None:
    s = scripted(replace(QUIET, max_feed_latency_ms=2.0, feed_latency_events=3), [])
    s.on_batch("quotes", quotes([10.0] * 5, late_ms=late_ms))
    assert s.status()["halt_reason"] == "feed_latency"
    assert "later than max_feed_latency_ms" in refused(s)
    s.on_batch("quotes", later([10.0], 1_000))
    resumed(s)


@given(skipped=st.integers(1, 1_000))
def test_a_gap_blocks_a_resume_until_an_event_arrives_in_sequence(skipped) -> None:
    s = scripted(replace(QUIET, seq_gap=True), [])
    s.on_batch("quotes", quotes([10.0] * 3, seqs=[1, 2, 3 + skipped]))
    assert s.status()["halt_reason"] == "seq_gap"
    assert "had no event in sequence since a gap" in refused(s)
    s.on_batch("quotes", later([10.0], 10, seqs=[4 + skipped]))
    resumed(s)


@given(limit=st.integers(2, 8))
def test_a_reject_storm_blocks_a_resume_for_the_rest_of_its_second(limit) -> None:
    risk = replace(RiskLimits.off(), max_order_qty=5.0)
    s = scripted(replace(QUIET, max_rejects_per_sec=float(limit)),
                 [(e, +1, 10, np.nan) for e in range(1, 16)], risk)  # fmt: skip
    s.on_batch("quotes", quotes([10.0] * (limit + 2)))
    assert s.status()["halt_reason"] == "reject_rate"
    assert "orders were refused in the last second" in refused(s)
    s.on_batch("quotes", later([10.0], 1_500))  # the second has passed
    resumed(s)


@pytest.mark.parametrize("trigger", ONE_OFF)
def test_a_trigger_with_nothing_lingering_never_blocks_a_resume(trigger: str) -> None:
    s = Session(load_strategy("mean_reversion"), simple_instruments(2), killswitch=KillSwitch())
    s.on_batch("quotes", quotes([10.0] * 3))
    s.trip(trigger, 1.0, 0.0)
    assert s.status()["halt_reason"] == trigger
    resumed(s)


# --- judged outside the loop --------------------------------------------------------------------

# A reading in which nothing holds; each trigger's condition, drawn beyond its bound; and how
# that trigger's condition clears (journal_lost never does).
KILL = KillSwitch(stale_feed_ms=500.0, gateway_timeout_ms=2_000.0, ack_timeout_ms=1_000.0,
                  max_bad_rows_per_sec=10.0)  # fmt: skip
CALM = Vitals(feed_silent_ms=1.0, feed_in_sequence=True, exchange=True)
HOLDS = {
    "stale_feed": lambda x: {"feed_silent_ms": 500.0 + x},
    "seq_gap": lambda x: {"feed_in_sequence": False},
    "gateway_lost": lambda x: {"exchange_silent_ms": 2_000.0 + x},
    "bad_data": lambda x: {"bad_rows_last_s": 11 + int(x)},
    "journal_lost": lambda x: {"journal_failure": "disk full"},
    "reconcile": lambda x: {
        "unconfirmed_cancels": 1 + int(x) % 50,
        "requests_in_flight": 1 + int(x) % 7,
    },
}
SAYS = {
    "stale_feed": "the feed has been silent",
    "seq_gap": "no feed message has arrived in sequence",
    "gateway_lost": "the exchange has been silent",
    "bad_data": "bad rows in the last second",
    "journal_lost": "the journal is lost",
    "reconcile": "not yet answered",
}


@given(trigger=st.sampled_from(OUTSIDE), beyond=st.floats(1.0, 1e6),
       also=st.sets(st.sampled_from(OUTSIDE), max_size=2))  # fmt: skip
def test_a_condition_outside_the_loop_blocks_a_resume_exactly_while_it_holds(
    trigger: str, beyond: float, also: set[str]
) -> None:
    s = Session(load_strategy("mean_reversion"), simple_instruments(2), killswitch=KILL)
    holding_now = {trigger} | also
    reading = replace(CALM, **{k: v for t in holding_now for k, v in HOLDS[t](beyond).items()})
    s.outside_conditions = lambda instrument: holding(reading, KILL)
    s.trip(trigger, beyond, 0.0)
    assert s.status()["halt_reason"] == trigger
    message = refused(s)
    for t in holding_now:
        assert SAYS[t] in message
    if "journal_lost" in holding_now:
        return  # it never clears: the session stops
    s.outside_conditions = lambda instrument: holding(CALM, KILL)
    resumed(s)
    assert s.status()["state"] == "active"


@given(reading=st.builds(
    Vitals, feed_silent_ms=st.floats(0, 1e6), feed_in_sequence=st.booleans(),
    exchange=st.booleans(), exchange_silent_ms=st.floats(0, 1e6),
    oldest_unanswered_ms=st.floats(0, 1e6), requests_in_flight=st.integers(0, 3),
    unconfirmed_cancels=st.integers(0, 5),
    bad_rows_last_s=st.integers(0, 100), journal_failure=st.none() | st.just("EFBIG"),
), kill=st.builds(
    KillSwitch, stale_feed_ms=st.sampled_from([0.0, 500.0, 5_000.0]), seq_gap=st.booleans(),
    gateway_timeout_ms=st.sampled_from([0.0, 2_000.0]), ack_timeout_ms=st.sampled_from([0.0, 1e3]),
    max_bad_rows_per_sec=st.sampled_from([0.0, 10.0]),
))  # fmt: skip
def test_a_reading_blocks_exactly_the_conditions_that_hold_of_triggers_switched_on(
    reading: Vitals, kill: KillSwitch
) -> None:
    expected = {
        "the journal is lost": reading.journal_failure is not None,
        "the feed has been silent": bool(kill.stale_feed_ms)
        and reading.feed_silent_ms > kill.stale_feed_ms,
        "no feed message has arrived in sequence": kill.seq_gap and not reading.feed_in_sequence,
        "the exchange has been silent": reading.exchange and bool(kill.gateway_timeout_ms)
        and reading.exchange_silent_ms > kill.gateway_timeout_ms,
        "has been unanswered for": reading.exchange and bool(kill.ack_timeout_ms)
        and reading.oldest_unanswered_ms > kill.ack_timeout_ms,
        "not yet answered": reading.exchange and reading.requests_in_flight > 0,
        "not yet confirmed gone": reading.unconfirmed_cancels > 0,
        "bad rows in the last second": bool(kill.max_bad_rows_per_sec)
        and reading.bad_rows_last_s > kill.max_bad_rows_per_sec,
    }  # fmt: skip
    clauses = holding(reading, kill)
    assert len(clauses) == sum(expected.values())
    for says, holds in expected.items():
        assert any(says in c for c in clauses) == holds, says


def test_one_instrument_is_resumed_only_once_its_own_cancels_are_confirmed() -> None:
    s = scripted(QUIET, [(1, +1, 1, 9.0)], RiskLimits.off())
    s.trade_through_gateway()  # (its cancel then waits for an exchange to confirm it)
    s.on_batch("quotes", quotes([10.0, 10.0]))
    s.halt(instrument=0)
    s.cancel_requests()  # sent, not yet confirmed
    assert s.unconfirmed_cancels(0) == 1
    s.outside_conditions = lambda i: holding(replace(CALM, unconfirmed_cancels=(
        s.unconfirmed_cancels(i))), KILL)  # fmt: skip
    with pytest.raises(TickwiseError, match="1 cancelled order"):
        s.resume(instrument=0)
