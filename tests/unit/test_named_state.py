"""The engine's state is named: the context holds records read field by field, the same way
in kernels and in Python, and where orders go is an explicit venue, not a magic latency."""

from __future__ import annotations

import numpy as np
import pytest

from tickwise.engine.context import VENUE_GATEWAY, VENUE_SIMULATED, Ctx, new_context
from tickwise.engine.limits import KillSwitch
from tickwise.engine.schemas import (
    STATE_ACTIVE,
    STATE_HALTED,
    STATUS_CANCEL_SENT,
    STATUS_CANCELLED,
    TRIP_NAMES,
)
from tickwise.engine.states import trading_state

from ..conftest import simple_instruments
from .test_killswitch import MS, NAN, T0, quotes, session

# Arrays of numbers indexed by position, not slots of state: books, rings, marks, counts.
PLAIN = {"book_px", "book_sz", "book_n", "inst_open", "mark_log", "jump_ring", "throttle_ring"}


def test_the_context_holds_named_records_not_numbered_slots() -> None:
    ctx = new_context(simple_instruments(3))
    for name, array in zip(Ctx._fields, ctx, strict=True):
        if name in PLAIN:
            assert array.dtype.names is None, name
            continue
        assert array.dtype.names, f"ctx.{name} is not a record array"
    for name in ("clock", "fees", "limits", "guard"):
        assert getattr(ctx, name).shape == (1,), name  # one record each
    assert ctx.inst_guard.shape == ctx.market.shape  # one record per instrument
    assert ctx.clock[0].venue == VENUE_SIMULATED
    assert ctx.guard[0].trip_instrument == -1
    assert ctx.limits[0].action.shape == (len(TRIP_NAMES),)


def test_no_field_is_hidden_behind_a_numpy_attribute() -> None:
    """Python reads a record's fields as attributes, as kernels do; a field named like a
    method of numpy's records (`flatten`, `var`, ...) would read the method in Python and the
    field in a kernel, and the two would disagree without an error."""
    ctx = new_context(simple_instruments(1))
    for name, array in zip(Ctx._fields, ctx, strict=True):
        for field in array.dtype.names or ():
            hidden = hasattr(np.record, field) or hasattr(np.recarray, field)
            assert not hidden, f"ctx.{name} field {field!r} is hidden by a numpy attribute"


def test_python_reads_what_the_kernels_wrote() -> None:
    kill = KillSwitch(**{**vars(KillSwitch.off()), "price_jump_pct": 5.0})
    s = session([(1, +1, 1, 9.0)], kill)
    market = quotes([10.0] * 5 + [9.4] * 3)
    s.on_batch("quotes", market)
    clock, guard = s.ctx.clock[0], s.ctx.guard[0]
    assert clock.events == 8
    assert clock.now == market["ts_event"][-1]
    assert guard.state == STATE_HALTED
    assert TRIP_NAMES[guard.trip] == "price_jump"
    assert guard.trip_ts == market["ts_event"][5]
    assert guard.trip_value == pytest.approx((10.0 - 9.4) / 9.4 * 100)  # the move, in %
    assert guard.trip_limit == 5.0
    assert trading_state(s.ctx, 0) == guard.state  # a compiled kernel reads the same record
    row = s.ctx.inst_guard[0]
    assert row.state == STATE_ACTIVE  # the session halted, not the instrument
    assert (row.cur_lo, row.cur_hi) == (9.4, 10.0)  # the mids of the window's bucket so far


# A buy resting at 9.5 from the first quote; the market falls through it at the third; the
# strategy cancels it at the sixth.
RESTING_THEN_CANCEL = [(1, +1, 1, 9.5), (6, 0, 0, NAN)]
FALLING = [10.0, 10.0, 9.0, 9.0, 9.0, 9.0, 9.0]


def test_the_simulated_venue_matches_the_orders_itself() -> None:
    s = session(RESTING_THEN_CANCEL)
    r = s.on_batch("quotes", quotes(FALLING))
    assert len(r.fills) == 1
    assert r.fills["price"][0] == 9.5
    assert s.open_orders == 0
    # A cancel with latency waits for the simulated exchange, never for a send.
    s = session([(1, +1, 1, 8.0), (2, 0, 0, NAN)], order_latency_ns=3 * MS)
    r = s.on_batch("quotes", quotes(FALLING[:3]))
    assert s.open_orders == 1  # asked at the second quote, not there yet at the third
    assert len(s.cancel_requests()) == 0
    r = s.on_batch("quotes", quotes(FALLING, gaps_ms=[5] * len(FALLING)))
    assert s.open_orders == 0
    assert r.orders["status"][0] == STATUS_CANCELLED


def test_a_gateway_venue_leaves_matching_to_the_exchange_and_sends_each_cancel_once() -> None:
    s = session(RESTING_THEN_CANCEL)
    s.trade_through_gateway()
    assert s.ctx.clock[0].venue == VENUE_GATEWAY
    market = quotes(FALLING)
    r = s.on_batch("quotes", market)
    assert len(r.fills) == 0  # the exchange process matches, not the loop
    assert s.open_orders == 1  # until the exchange confirms the cancel
    sent = s.cancel_requests()
    assert len(sent) == 1
    assert sent["status"][0] == STATUS_CANCEL_SENT
    assert sent["ts"][0] == market["ts_recv"][5]  # when the strategy asked
    assert sent["qty"][0] == 1
    assert len(s.cancel_requests()) == 0  # sent once
    assert s.unconfirmed_cancels(0) == 1
    assert s.ctx.clock[0].now == T0 + len(FALLING) * MS
