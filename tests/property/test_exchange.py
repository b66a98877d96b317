"""The paper exchange's kernels and the engine's reconciliation, in process (hypothesis).

- Every request row gets the answer the exchange's rules give, in order: new orders
  acknowledged or refused with the first reason that applies, cancels received or refused
  as unknown; the table then holds exactly the orders acknowledged and not cancelled.
- An engine trading through the exchange (the same kernels as the processes, linked here
  without sockets) books exactly the fills the exchange made: the positions, realised PnL
  and fees agree to the bit, and nothing is a mismatch, whatever the batches and latency.
- A report corrupted on the way (a fill repeated, an unknown order, too much quantity)
  trips the kill switch as `reconcile`.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from tickwise import load_strategy
from tickwise.engine.config import SessionConfig, make_session
from tickwise.engine.limits import KillSwitch
from tickwise.engine.live.exchange import (
    CLIENT_SHIFT,
    Venue,
    cancel_client_nb,
    settle_nb,
    settle_quiet_nb,
    take_requests_nb,
)
from tickwise.engine.schemas import (
    FILL_DTYPE,
    ORD_LIMIT,
    ORD_MARKET,
    ORDER_DTYPE,
    REASON_BAD_PRICE,
    REASON_BAD_QTY,
    REASON_BAD_REQUEST,
    REASON_BOOK_FULL,
    REASON_DUPLICATE_ID,
    REASON_NONE,
    REASON_UNKNOWN_INSTRUMENT,
    REASON_UNKNOWN_ORDER,
    STATUS_ACKED,
    STATUS_CANCEL_SENT,
    STATUS_CANCELLED,
    STATUS_NEW,
    STATUS_REJECTED,
)
from tickwise.feeds.history import columns, open_history

from ..conftest import make_synth, simple_instruments

CAPACITY = 6


def venue(instruments, config: SessionConfig | None = None, capacity: int = 65_536):
    return make_session(
        Venue, instruments, {}, config or SessionConfig(), guarded=False, sample_ns=0,
        killswitch=KillSwitch.off(), max_open_orders=capacity,
    )  # fmt: skip


def take(v, client: int, last_ids: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    status = np.empty(rows.size, np.int8)
    reason = np.empty(rows.size, np.int16)
    cols = [np.ascontiguousarray(rows[n]) for n in ORDER_DTYPE.names if n != "reason"]
    take_requests_nb(v.ctx, client, last_ids, *cols, status, reason)
    return status, reason


new_row = st.fixed_dictionaries({
    "kind": st.just("new"),
    "id_step": st.sampled_from([1, 1, 1, 2, 0, -1]),  # mostly the next id; a repeat or lower
    "instrument": st.sampled_from([0, 1, 2, 7]),
    "side": st.sampled_from([1, -1, 1, -1, 0]),
    "qty": st.sampled_from([1.0, 5.0, 0.0, math.nan, math.inf]),
    "order_type": st.sampled_from([ORD_LIMIT, ORD_MARKET, 5]),
    "tif": st.sampled_from([0, 1, 3]),
    "price": st.sampled_from([99.5, 101.0, 0.0, math.nan]),
})  # fmt: skip
cancel_row = st.fixed_dictionaries({"kind": st.just("cancel"), "pick": st.integers(0, 20)})


@given(st.lists(st.lists(st.one_of(new_row, cancel_row), min_size=1, max_size=8), max_size=6))
def test_every_request_row_gets_the_answer_the_rules_give(requests: list) -> None:
    v = venue(simple_instruments(3), capacity=CAPACITY)
    last_ids = np.zeros(4, np.int64)
    last_id = 0
    sent: list[int] = []  # every id the client used, in order
    open_ids: set[int] = set()
    asked: set[int] = set()
    for batch in requests:
        rows = np.zeros(len(batch), ORDER_DTYPE)
        expected = []
        for r, row in enumerate(batch):
            if row["kind"] == "cancel":
                oid = sent[row["pick"] % len(sent)] if sent and row["pick"] < 15 else 10**6
                rows[r]["id"], rows[r]["status"], rows[r]["ts"] = oid, STATUS_CANCEL_SENT, 1
                if oid in open_ids:
                    asked.add(oid)
                    expected.append((STATUS_CANCEL_SENT, REASON_NONE))
                else:
                    expected.append((STATUS_REJECTED, REASON_UNKNOWN_ORDER))
                continue
            oid = max(1, (max(sent) if sent else 0) + row["id_step"])
            for name in ("instrument", "side", "qty", "order_type", "tif", "price"):
                rows[r][name] = row[name]
            rows[r]["id"], rows[r]["status"], rows[r]["ts"] = oid, STATUS_NEW, 1
            reason = _refusal(oid, last_id, row, len(open_ids))
            if reason == REASON_NONE:
                last_id = oid
                open_ids.add(oid)
                expected.append((STATUS_ACKED, REASON_NONE))
            else:
                expected.append((STATUS_REJECTED, reason))
            sent.append(oid)
        status, reason = take(v, 1, last_ids, rows)
        assert list(zip(status.tolist(), reason.tolist(), strict=True)) == expected
    n = v.open_orders
    assert {int(i) & ((1 << CLIENT_SHIFT) - 1) for i in v.ctx.open_orders[:n]["id"]} == open_ids
    # Nothing is known of the market: only a quiet market lets the cancels take effect.
    settle_quiet_nb(v.ctx)
    done = v.drain_logs().orders
    assert {int(i) & ((1 << CLIENT_SHIFT) - 1) for i in done["id"]} == asked
    assert (done["status"] == STATUS_CANCELLED).all()
    assert v.open_orders == len(open_ids - asked)
    assert cancel_client_nb(v.ctx, 1) == len(open_ids - asked)  # cancel on disconnect: all
    assert v.open_orders == 0


def _refusal(oid: int, last_id: int, row: dict, n_open: int) -> int:
    """The exchange's rules, in their order, written out once more."""
    if oid <= last_id:
        return REASON_DUPLICATE_ID
    if row["instrument"] >= 3:
        return REASON_UNKNOWN_INSTRUMENT
    if row["side"] not in (1, -1) or row["order_type"] not in (ORD_LIMIT, ORD_MARKET):
        return REASON_BAD_REQUEST
    if row["tif"] not in (0, 1):
        return REASON_BAD_REQUEST
    if not (row["qty"] > 0 and math.isfinite(row["qty"])):
        return REASON_BAD_QTY
    if row["order_type"] == ORD_LIMIT and not (row["price"] > 0 and math.isfinite(row["price"])):
        return REASON_BAD_PRICE
    if n_open >= CAPACITY:
        return REASON_BOOK_FULL
    return REASON_NONE


# --- an engine and the exchange, linked without sockets ------------------------------------


class Linked:
    """An engine session trading through the exchange's kernels: what `tickwise live --gateway`
    and `tickwise exchange` do with each message, in the order messages would arrive."""

    def __init__(self, history, latency_us: float, corrupt=None) -> None:
        config = SessionConfig(order_latency_us=latency_us, latency_jitter_us=latency_us / 2,
                                feed_latency_us=50.0, taker_fee_bps=0.5, maker_fee_bps=0.1,
                                killswitch=replace(KillSwitch.off(), reconcile=True))  # fmt: skip
        params = {"window": 20, "entry_z": 1.0, "qty": 100.0}
        self.engine = make_session(load_strategy("mean_reversion"), history.instruments, params,
                                   config)  # fmt: skip
        self.engine.trade_through_gateway()
        self.venue = venue(history.instruments, config)
        self.last_ids = np.zeros(4, np.int64)
        self.corrupt = corrupt  # (fills) -> fills, once
        self.mismatches = 0

    def market(self, batch: dict) -> None:
        result = self.engine.on_batch("quotes", batch)
        self.send(result.orders)
        exchanged = self.venue.on_batch("quotes", batch)
        self.report(exchanged.orders, exchanged.fills)

    def send(self, orders: np.ndarray) -> None:
        rows = np.concatenate([orders[orders["status"] == STATUS_NEW],
                               self.engine.cancel_requests()])  # fmt: skip
        if rows.size == 0:
            return
        status, reason = take(self.venue, 1, self.last_ids, rows)
        reply = {n: rows[n] for n in ("id", "qty")} | {"status": status, "reason": reason}
        self.engine.on_order_reports(reply)
        self.mismatches += self.engine.mismatched.size
        settle_nb(self.venue.ctx)
        done = self.venue.drain_logs()
        self.report(done.orders, done.fills)

    def report(self, orders: np.ndarray, fills: np.ndarray) -> None:
        mask = np.uint64((1 << CLIENT_SHIFT) - 1)
        if fills.size:
            fills = fills.copy()
            fills["order_id"] &= mask
            if self.corrupt is not None:
                fills, self.corrupt = self.corrupt(fills), None
            result = self.engine.on_fills({n: fills[n] for n in FILL_DTYPE.names})
            self.mismatches += self.engine.mismatched.size
            self.send(result.orders)  # what the strategy answered its fills with
        if orders.size:
            orders = orders.copy()
            orders["id"] &= mask
            result = self.engine.on_order_reports({n: orders[n] for n in orders.dtype.names})
            self.mismatches += self.engine.mismatched.size
            self.send(result.orders)


def _history(tmp_path_factory, name: str = "linked"):
    path = tmp_path_factory.mktemp(name) / "q.parquet"
    return open_history(make_synth(path, kind="quotes", rows=3_000, instruments=2, seed=4))


@given(cuts=st.lists(st.integers(1, 400), min_size=1, max_size=12),
       latency_us=st.sampled_from([0.0, 150.0, 2_000.0]))  # fmt: skip
def test_an_engine_books_exactly_what_the_exchange_filled(tmp_path_factory, cuts, latency_us):
    history = _history(tmp_path_factory)
    linked = Linked(history, latency_us)
    for batch in _cut(history, cuts):
        linked.market(batch)
    assert linked.mismatches == 0
    assert linked.engine.status()["halt_reason"] is None
    fills = linked.engine.ctx.portfolio["traded"].sum()
    assert fills > 0
    for name in ("lots", "realized", "fees", "traded"):
        assert np.array_equal(linked.engine.ctx.portfolio[name], linked.venue.ctx.portfolio[name])


def _repeat(fills: np.ndarray) -> np.ndarray:
    return np.concatenate([fills, fills[:1]])


def _stranger(fills: np.ndarray) -> np.ndarray:
    fills["order_id"][0] = 123_456
    return fills


def _too_much(fills: np.ndarray) -> np.ndarray:
    fills["qty"][0] *= 2
    return fills


@given(cuts=st.lists(st.integers(1, 400), min_size=1, max_size=6),
       corrupt=st.sampled_from([_repeat, _stranger, _too_much]))  # fmt: skip
def test_a_report_that_does_not_fit_trips_reconcile(tmp_path_factory, cuts, corrupt):
    history = _history(tmp_path_factory, "corrupt")
    linked = Linked(history, 150.0, corrupt)
    for batch in _cut(history, cuts):
        linked.market(batch)
    assert linked.corrupt is None  # (it happened)
    assert linked.mismatches >= 1
    assert linked.engine.status()["halt_reason"] == "reconcile"


def _cut(history, cuts: list[int]):
    """The history's rows in batches of the drawn sizes (the last size repeats)."""
    data = [columns(b) for b in history.batches(100_000)]
    whole = {n: np.concatenate([d[n] for d in data]) for n in data[0]}
    rows = len(whole["ts_event"])
    start, k = 0, 0
    while start < rows:
        size = cuts[min(k, len(cuts) - 1)]
        yield {n: a[start : start + size] for n, a in whole.items()}
        start += size
        k += 1
