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
    s = session([(1, 1, 10, np.nan)], risk=replace(COLLARED, reference_max_age_ms=1.0))
    s.on_batch("quotes", quotes([10.0, 10.0]))
    s.clock = lambda: int(s.ctx.clock[0].recv) + 10**9  # a second later: the mid is stale
    s.ctx.clock[0].recv += 10**9
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
