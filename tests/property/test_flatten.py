"""A person's flatten (`Session.flatten`, what `tickwise flatten --confirm` asks for): the scope
goes REDUCING and stays there, every working order of it is cancelled, each position is closed
by one reduce-only IOC limit order at the far touch, never beyond the price collar; refused
while a data fault holds the scope HALTED. On drawn positions, spreads and collars."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickwise.engine.errors import TickwiseError
from tickwise.engine.limits import KillSwitch, RiskLimits
from tickwise.engine.schemas import ORD_LIMIT, STATUS_CANCELLED, STATUS_NEW, TIF_IOC
from tickwise.engine.session import DATA_FAULTS

from ..unit.test_killswitch import MS, quotes, session

COLLARED = replace(RiskLimits.off(), price_collar_pct=5.0)


def _book(mid: float, half_spread: float, size: float = 1e6) -> dict:
    q = quotes([mid], size=size)
    q["bid_px"] = np.round(np.asarray([mid - half_spread]), 2)
    q["ask_px"] = np.round(np.asarray([mid + half_spread]), 2)
    return q


def _later(q: dict, ms: float) -> dict:
    q = dict(q)
    q["ts_event"] = q["ts_event"] + int(ms * MS)
    q["ts_recv"] = q["ts_recv"] + int(ms * MS)
    q["seq"] = q["seq"] + np.uint64(ms)
    return q


@given(
    lots=st.integers(1, 5_000),
    short=st.booleans(),
    half_spread=st.sampled_from([0.01, 0.05, 0.2, 0.6, 1.5]),
    collar=st.sampled_from([1.0, 2.0, 5.0, 10.0]),
)
def test_a_flatten_closes_each_position_with_one_ioc_inside_the_collar(
    lots: int, short: bool, half_spread: float, collar: float
) -> None:
    side = -1 if short else 1
    s = session([(1, side, lots, np.nan)], risk=replace(COLLARED, price_collar_pct=collar))
    s.on_batch("quotes", quotes([10.0, 10.0], size=1e6))
    assert s.ctx.portfolio[0]["lots"] == side * lots
    s.on_batch("quotes", _later(_book(10.0, half_spread), 5))

    sent = s.flatten()

    assert sent == {"I0": {"position": float(side * lots), "order": sent["I0"]["order"],
                           "refused": None}}  # fmt: skip
    assert s.status()["state"] == "reducing"
    orders = s.drain_logs().orders
    new = orders[orders["status"] == STATUS_NEW]
    assert len(new) == 1
    o = new[0]
    assert (o["side"], o["qty"], o["order_type"], o["tif"]) == (-side, lots, ORD_LIMIT, TIF_IOC)
    touch = 10.0 + half_spread if o["side"] > 0 else 10.0 - half_spread
    edge = 10.0 * collar / 100
    assert abs(o["price"] - 10.0) <= edge + 1e-9  # never beyond the collar
    assert round(o["price"] / 0.01, 6) == round(o["price"] / 0.01)  # on the tick grid
    if half_spread <= edge:
        assert o["price"] == pytest.approx(touch)  # the far touch itself
        s.on_batch("quotes", _later(_book(10.0, half_spread), 10))
        assert s.ctx.portfolio[0]["lots"] == 0  # flat
    else:  # the touch is beyond the collar: the order waits at its edge, and fills nothing
        s.on_batch("quotes", _later(_book(10.0, half_spread), 10))
        assert s.ctx.portfolio[0]["lots"] == side * lots
    assert s.status()["state"] == "reducing"  # until a person resumes


@given(resting=st.integers(1, 6), lots=st.integers(1, 50))
def test_a_flatten_cancels_every_working_order_first(resting: int, lots: int) -> None:
    rows = [(1, 1, lots, np.nan)] + [(2, 1, 1, round(9.9 - 0.01 * k, 2)) for k in range(resting)]
    s = session(rows, risk=COLLARED)
    s.on_batch("quotes", quotes([10.0, 10.0, 10.0], size=1e6))
    assert s.open_orders == resting
    s.drain_logs()
    s.flatten()
    orders = s.drain_logs().orders
    assert np.count_nonzero(orders["status"] == STATUS_CANCELLED) == resting
    assert s.open_orders == 1  # only the flatten's own order
    s.on_batch("quotes", _later(quotes([10.0], size=1e6), 10))
    assert s.ctx.portfolio[0]["lots"] == 0
    assert s.open_orders == 0


@pytest.mark.parametrize("fault", sorted(DATA_FAULTS))
def test_a_flatten_is_refused_while_a_data_fault_halts_the_session(fault: str) -> None:
    s = session([(1, 1, 10, np.nan)], KillSwitch(), risk=COLLARED)  # (every trigger on)
    s.on_batch("quotes", quotes([10.0, 10.0], size=1e6))
    s.drain_logs()
    s.trip(fault, 1.0, 0.0)
    assert s.status()["state"] == "halted"
    with pytest.raises(TickwiseError, match=f"cannot flatten: the session is HALTED by {fault}"):
        s.flatten()
    assert len(s.drain_logs().orders) == 0  # nothing left
    assert s.ctx.portfolio[0]["lots"] == 10


def test_a_flatten_goes_ahead_while_a_person_or_the_loss_limit_halted_the_session() -> None:
    s = session([(1, 1, 10, np.nan)], risk=COLLARED)
    s.on_batch("quotes", quotes([10.0, 10.0], size=1e6))
    s.halt()
    sent = s.flatten()
    assert sent["I0"]["order"] is not None
    assert s.status()["state"] == "halted"  # (a stricter state is kept)
    s.on_batch("quotes", _later(quotes([10.0]), 10))
    assert s.ctx.portfolio[0]["lots"] == 0


def test_a_flatten_without_a_reference_price_says_so_and_sends_nothing() -> None:
    """Between batches (a live session's clock is the wall clock) the gate judges the
    reference's age by now, not by the last event: a mid a second old is stale here."""
    s = session([(1, 1, 10, np.nan)], risk=replace(COLLARED, reference_max_age_ms=1.0))
    s.on_batch("quotes", quotes([10.0, 10.0]))
    later = int(s.ctx.clock[0].recv) + 10**9  # a second after the last event, no event since
    s.clock = lambda: later
    assert s.flatten()["I0"] == {"position": 10.0, "order": None,
                                 "refused": "no_reference_price"}  # fmt: skip
    assert not np.any(s.drain_logs().orders["status"] == STATUS_NEW)


def test_one_instrument_s_flatten_leaves_the_others_alone() -> None:
    s = session([(1, 1, 10, np.nan)], risk=COLLARED)
    s.on_batch("quotes", quotes([10.0, 10.0]))
    with pytest.raises(TickwiseError, match="no instrument 7"):
        s.flatten(7)
    assert s.flatten(0)["I0"]["order"] is not None
    assert s.status()["instruments"]["I0"]["state"] == "reducing"
    assert s.status()["state"] == "active"


def _shifted(q: dict, ms: float) -> dict:
    """`q` `ms` later (its sequence numbers as they are)."""
    return q | {"ts_event": q["ts_event"] + int(ms * MS), "ts_recv": q["ts_recv"] + int(ms * MS)}


def _closing_lots(s, side: int) -> int:
    """Unfilled lots of every open order on `side`, their cancels on the way included (they
    may still fill at an exchange process)."""
    o = s.ctx.open_orders[: s.open_orders]
    o = o[o["side"] == side]
    return int((o["lots"] - o["filled"]).sum())


@given(
    lots=st.integers(2, 500),
    resting=st.lists(st.integers(1, 100), max_size=4),
    rounds=st.integers(1, 4),
    flatten_on_halt=st.booleans(),
    halted=st.booleans(),
)
def test_through_an_exchange_a_flatten_never_sends_beyond_flat(
    lots: int, resting: list[int], rounds: int, flatten_on_halt: bool, halted: bool
) -> None:
    """At an exchange process an order whose cancel is on its way can still fill, and an IOC
    on its way has not filled yet: however often a person asks (`f` twice in top, the CLI
    run again), with the strategy's own exit orders resting and the kill switch's own
    flattening on, what works to close a position never exceeds it."""
    resting = [q for q in resting if q <= lots][: max(0, lots // 100)] or resting[:0]
    rows = [(1, 1, lots, np.nan)] + [(2, -1, q, round(10.05 + 0.01 * k, 2))
                                     for k, q in enumerate(resting)]  # fmt: skip
    s = session(rows, KillSwitch(flatten=flatten_on_halt), risk=COLLARED)
    s.on_batch("quotes", quotes([10.0, 10.0], size=1e6))
    assert s.ctx.portfolio[0]["lots"] == lots
    s.trade_through_gateway()  # (from now on: cancels and orders wait for the exchange)
    if halted:
        s.halt()
    for _ in range(rounds):
        s.flatten()
        assert _closing_lots(s, -1) <= lots
    assert s.ctx.portfolio[0]["lots"] == lots  # (nothing fills until the exchange says so)


def test_a_second_flatten_while_the_first_is_on_its_way_sends_nothing() -> None:
    s = session([(1, 1, 10, np.nan)], risk=COLLARED)
    s.on_batch("quotes", quotes([10.0, 10.0], size=1e6))
    s.trade_through_gateway()
    assert s.flatten()["I0"]["order"] is not None
    again = s.flatten()["I0"]
    assert (again["order"], again["refused"]) == (None, "already_closing")
    assert _closing_lots(s, -1) == 10


def test_a_gap_after_a_person_s_halt_refuses_a_flatten_though_the_cause_stays_manual() -> None:
    """A trip never replaces the cause of a scope already halted: the data fault is judged
    on what holds now."""
    s = session([(1, 1, 10, np.nan)], KillSwitch(), risk=COLLARED)
    s.on_batch("quotes", quotes([10.0, 10.0], size=1e6))
    s.halt()
    s.on_batch("quotes", _shifted(quotes([10.0], seqs=[9]), 5))  # seq 3 to 8 lost
    assert s.status()["halt_reason"] == "manual"
    with pytest.raises(TickwiseError, match="cannot flatten: I0 had no event in sequence"):
        s.flatten()
    s.on_batch("quotes", _shifted(quotes([10.0], seqs=[10]), 10))  # in sequence again
    assert s.flatten()["I0"]["order"] is not None
