"""The paper exchange: the backtester's simulated exchange as a process of its own.

`tickwise exchange` subscribes to the market-data feed and runs it through
the same compiled loop and matching kernels as a backtest (with no strategy
in it), and takes orders and cancels from any number of clients on a ROUTER
socket. Each client request (one `orders` batch) gets one reply, in order:
each new order ACKED or REJECTED with a reason, each cancel CANCEL_SENT or
REJECTED as `unknown_order`. Fills and cancellations that happen later are
reported of the exchange's own accord, fills before cancellations.

The backtester's models apply as configured (`[backtest]` of a config
file): an order reaches the matching at its send time (the client's `ts`)
plus the order latency and jitter drawn from its id, or when it arrived if
that is later, and meets the market at the first market event after that;
a cancel likewise. Fees are the configured maker/taker fees. Time is the
market's: the exchange's clock is the latest event it has seen. When the
market is quiet (no event for 50 ms, or four order latencies if longer),
orders and cancels still on their way take effect against the market as it
stands, rather than wait for an event that may not come.

Cancel on disconnect: a client that sends nothing (not even a heartbeat)
for `client_timeout_ms` has its resting orders cancelled (reason
`client_gone`). Clients hear a heartbeat whenever they have heard nothing
for `heartbeat_ms`.

Client order ids must be 1..2**40-1 and increase; inside the exchange an
order's id is the client's slot in its top bits and its own id below. A
request's send time may not be negative nor more than 60 s past the market's
clock (refused as `bad_request`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from tickwise.engine.callbacks import ignore
from tickwise.engine.config import SessionConfig, make_session
from tickwise.engine.context import copy_context
from tickwise.engine.errors import TickwiseError
from tickwise.engine.instruments import Instruments
from tickwise.engine.jit import kernel
from tickwise.engine.limits import KillSwitch
from tickwise.engine.live.control import CurveKeys, is_loopback
from tickwise.engine.matching import arrive_nb
from tickwise.engine.orders import (
    cancel_row_nb,
    log_order_nb,
    open_row_nb,
    order_latency_nb,
    remove_open_nb,
)
from tickwise.engine.quantities import units, whole_lots
from tickwise.engine.schemas import (
    KINDS,
    MARKET_DTYPES,
    ORD_LIMIT,
    ORD_MARKET,
    ORDER_DTYPE,
    QUOTE_DTYPE,
    REASON_BAD_PRICE,
    REASON_BAD_QTY,
    REASON_BAD_REQUEST,
    REASON_BOOK_FULL,
    REASON_CLIENT_GONE,
    REASON_DUPLICATE_ID,
    REASON_NONE,
    REASON_UNKNOWN_INSTRUMENT,
    REASON_UNKNOWN_ORDER,
    STATUS_ACKED,
    STATUS_CANCEL_SENT,
    STATUS_CANCELLED,
    STATUS_NEW,
    STATUS_REJECTED,
    TIF_GTC,
    TIF_IOC,
)
from tickwise.engine.strategy import Strategy
from tickwise.feeds import wire
from tickwise.feeds.screen import Screen
from tickwise.feeds.transport import Subscriber

CLIENT_SHIFT = 40  # an order's id inside the exchange: client slot << 40 | client's id
ID_LIMIT = 1 << CLIENT_SHIFT
MAX_CLIENTS = 1 << 20
DEFAULT_HEARTBEAT_MS = 100.0
DEFAULT_CLIENT_TIMEOUT_MS = 1_000.0
QUIET_NS = 50_000_000  # a market quiet for 50 ms: what is on its way has arrived
MAX_AHEAD_NS = 60_000_000_000  # a request sent more than 60 s past the market's clock: refused


class Venue(Strategy):
    """The exchange's side of the loop: it trades nothing, it only keeps the market."""

    strategy_name = "paper_exchange"
    kinds = KINDS
    on_quote = ignore
    on_trade = ignore
    on_bar = ignore
    on_book = ignore


@kernel
def _bad_time(ts, now):
    """A request's send time that cannot be: before the epoch, or later than the market's
    clock allows (an order would wait for the market to reach it, and rest unseen)."""
    return ts < 0 or (now > 0 and ts > now + MAX_AHEAD_NS)


@kernel
def _refusal(ctx, last_id, oid, ts, instrument, side, price, qty, order_type, tif):
    """Why a new order is refused (REASON_NONE: it is not)."""
    if oid <= last_id or oid >= ID_LIMIT:  # (ids increase: a repeat is never a new order)
        return REASON_DUPLICATE_ID
    if _bad_time(ts, ctx.clock[0].now):
        return REASON_BAD_REQUEST
    if instrument >= ctx.instruments.size or not ctx.instruments[instrument].tick_size > 0.0:
        return REASON_UNKNOWN_INSTRUMENT
    if side not in (1, -1) or order_type not in (ORD_LIMIT, ORD_MARKET):
        return REASON_BAD_REQUEST
    if tif not in (TIF_GTC, TIF_IOC):
        return REASON_BAD_REQUEST
    if whole_lots(qty, ctx.instruments[instrument].lot_size) < 1:
        return REASON_BAD_QTY  # not positive, not finite, or no whole number of lots
    if order_type == ORD_LIMIT and not (price > 0.0 and price < np.inf):
        return REASON_BAD_PRICE
    if ctx.clock[0].n_open >= ctx.open_orders.size:
        return REASON_BOOK_FULL
    return REASON_NONE


@kernel
def take_requests_nb(ctx, client, last_ids, oid, ts, instrument, side, price, qty, order_type,
                     tif, status, session, strategy, out_status, out_reason):  # fmt: skip
    """One client's request rows, in order: new orders enter the open-order table (reaching
    the matching after the order latency) or are refused; cancels are noted (effective
    after the latency). The reply's status and reason per row go in out_status/out_reason."""
    now = ctx.clock[0].now
    base = np.uint64(client) << np.uint64(CLIENT_SHIFT)
    for r in range(oid.size):
        xid = base | oid[r]
        if status[r] == STATUS_NEW:
            reason = _refusal(ctx, last_ids[client], np.int64(oid[r]), ts[r], instrument[r],
                              side[r], price[r], qty[r], order_type[r], tif[r])  # fmt: skip
            if reason != REASON_NONE:
                out_status[r] = STATUS_REJECTED
                out_reason[r] = reason
                continue
            last_ids[client] = oid[r]
            i = instrument[r]
            n = ctx.clock[0].n_open
            o = ctx.open_orders[n]
            o.id = xid
            o.ts = ts[r]
            o.active_ts = max(ts[r] + order_latency_nb(ctx, np.int64(oid[r])), now)
            o.cancel_ts = 0
            o.cancel_unsent = 0
            o.instrument = i
            o.side = side[r]
            o.price = price[r]
            o.lots = whole_lots(qty[r], ctx.instruments[i].lot_size)
            o.filled = 0
            o.queue = np.nan
            o.order_type = order_type[r]
            o.tif = tif[r]
            o.status = STATUS_NEW
            o.session = session[r]
            o.strategy = strategy[r]
            ctx.clock[0].n_open = n + 1
            ctx.inst_open[i] += 1
            out_status[r] = STATUS_ACKED
            out_reason[r] = REASON_NONE
        elif status[r] == STATUS_CANCEL_SENT:
            if _bad_time(ts[r], now):
                out_status[r] = STATUS_REJECTED
                out_reason[r] = REASON_BAD_REQUEST
                continue
            k = open_row_nb(ctx, xid)
            if k < 0:
                out_status[r] = STATUS_REJECTED
                out_reason[r] = REASON_UNKNOWN_ORDER
                continue
            o = ctx.open_orders[k]
            if o.cancel_ts == 0:
                o.cancel_ts = max(ts[r] + order_latency_nb(ctx, np.int64(oid[r])), now, 1)
            out_status[r] = STATUS_CANCEL_SENT
            out_reason[r] = REASON_NONE
        else:
            out_status[r] = STATUS_REJECTED
            out_reason[r] = REASON_BAD_REQUEST


@kernel
def settle_nb(ctx):
    """What has reached the exchange by its clock takes effect now, as it would at the next
    market event: arriving orders meet the market as it stands, then due cancels."""
    for i in range(ctx.inst_open.size):
        if ctx.inst_open[i] > 0:
            arrive_nb(ctx, i)
    now = ctx.clock[0].now
    k = 0
    while k < ctx.clock[0].n_open:
        o = ctx.open_orders[k]
        if o.cancel_ts != 0 and o.cancel_ts <= now and o.active_ts <= now:
            cancel_row_nb(ctx, k)
            continue
        k += 1


@kernel
def settle_quiet_nb(ctx):
    """The market has been quiet for longer than any order latency: whatever is on its way
    has reached the exchange by now. Orders meet the market as it stands (once anything is
    known of it), then every cancel received takes effect."""
    now = ctx.clock[0].now
    for k in range(ctx.clock[0].n_open):
        o = ctx.open_orders[k]
        o.active_ts = min(o.active_ts, now)
    for i in range(ctx.inst_open.size):
        if ctx.inst_open[i] > 0:
            arrive_nb(ctx, i)
    k = 0
    while k < ctx.clock[0].n_open:
        if ctx.open_orders[k].cancel_ts != 0:
            cancel_row_nb(ctx, k)
            continue
        k += 1


@kernel
def cancel_client_nb(ctx, client):
    """Cancel on disconnect: every order of `client` is cancelled now; how many."""
    cancelled = 0
    k = 0
    while k < ctx.clock[0].n_open:
        o = ctx.open_orders[k]
        if (o.id >> np.uint64(CLIENT_SHIFT)) != np.uint64(client):
            k += 1
            continue
        left = units(o.lots - o.filled, ctx.instruments[o.instrument])
        log_order_nb(ctx, o.id, o.instrument, o.side, o.price, left, o.order_type, o.tif,
                     STATUS_CANCELLED, REASON_CLIENT_GONE)  # fmt: skip
        remove_open_nb(ctx, k)
        cancelled += 1
    return cancelled


@dataclass
class Client:
    """One connected client, as the exchange knows it."""

    identity: bytes
    slot: int
    last_heard_ns: int  # monotonic
    last_sent_ns: int = 0
    seq: int = 0  # messages sent to it
    requests: int = 0
    gone: bool = False  # its orders were cancelled for silence; it may come back


@dataclass
class ExchangeSummary:
    """What the exchange did, for people and tests."""

    clients: int = 0
    requests: int = 0
    orders: int = 0
    rejects: int = 0
    cancels: int = 0
    fills: int = 0
    cancelled_on_disconnect: int = 0
    market_events: int = 0
    malformed: int = 0  # client messages that were not well-formed requests (dropped)
    bad_rows: dict[str, int] = field(default_factory=dict)  # market rows dropped, by reason


class PaperExchange:
    """The exchange process's state and one turn of its work (`run_exchange` turns it until
    stopped)."""

    def __init__(
        self,
        bind: str,
        feed: str,
        instruments: Instruments,
        config: SessionConfig | None = None,
        *,
        heartbeat_ms: float = DEFAULT_HEARTBEAT_MS,
        client_timeout_ms: float = DEFAULT_CLIENT_TIMEOUT_MS,
        keys: CurveKeys | None = None,
        max_open_orders: int = 65_536,
    ) -> None:
        if keys is None and not is_loopback(bind):
            raise TickwiseError(
                f"the exchange binds its order socket to loopback only unless CurveZMQ keys are "
                f"given; {bind} is not loopback"
            )
        for name, value in (("heartbeat_ms", heartbeat_ms), ("client_timeout_ms",
                                                               client_timeout_ms)):  # fmt: skip
            if not value > 0:
                raise TickwiseError(f"{name} must be positive, got {value}")
        config = config or SessionConfig()
        self.session = make_session(
            Venue, instruments, {}, config, guarded=False, sample_ns=0,
            killswitch=KillSwitch.off(), max_open_orders=max_open_orders,
        )  # fmt: skip
        self.session.warm_up()
        wire.warm_up()
        # Market rows are checked as a live session checks them (the same skew allowed).
        self.screen = Screen(instruments, config.killswitch.max_ts_skew_ms * 1e6,
                             config.killswitch.max_ts_ahead_ms * 1e6,
                             wall_clock=config.feed_latency_us < 0)  # fmt: skip
        self.screen.good("quotes", {n: np.empty(0, QUOTE_DTYPE[n]) for n in QUOTE_DTYPE.names},
                         0)  # (compiled now, not at the first message)  # fmt: skip
        self.heartbeat_ns = int(heartbeat_ms * 1e6)
        # How long without a market event before orders and cancels on their way take
        # effect anyway: well past any order latency (it is only there for quiet markets).
        latency_ns = (config.order_latency_us + config.latency_jitter_us) * 1e3
        self.quiet_ns = max(int(4 * latency_ns), QUIET_NS)
        self._last_market_ns = time.monotonic_ns()
        self._next_keep = 0
        self.client_timeout_ns = int(client_timeout_ms * 1e6)
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 1_000)
        self.socket.setsockopt(zmq.MAXMSGSIZE, wire.MAX_FRAME_BYTES)
        if keys is not None:
            self.socket.curve_server = True
            self.socket.curve_publickey = keys.public
            self.socket.curve_secretkey = keys.secret
        try:
            self.socket.bind(bind)
        except zmq.ZMQError as exc:
            self.socket.close(linger=0)
            self.context.term()
            raise TickwiseError(f"cannot bind the exchange to {bind}: {exc}") from None
        self.endpoint: str = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.feed = Subscriber(feed, context=self.context)
        self.clients: dict[bytes, Client] = {}
        self.by_slot: list[Client] = []
        self.last_ids = np.zeros(1024, dtype=np.int64)  # per client slot: its highest order id
        self._warm_up()
        self.summary = ExchangeSummary()
        self.poller = zmq.Poller()
        self.poller.register(self.socket, zmq.POLLIN)
        self.poller.register(self.feed.socket, zmq.POLLIN)

    def _warm_up(self) -> None:
        """Compile (or load) the request kernels before the first client comes."""
        ctx = copy_context(self.session.ctx)
        none = np.zeros(0, dtype=ORDER_DTYPE)
        columns = [np.ascontiguousarray(none[n]) for n in ORDER_DTYPE.names if n != "reason"]
        for column in columns:
            column.flags.writeable = False  # (requests arrive as read-only views)
        status = np.empty(0, dtype=np.int8)
        reason = np.empty(0, dtype=np.int16)
        take_requests_nb(ctx, 1, self.last_ids.copy(), *columns, status, reason)
        settle_nb(ctx)
        settle_quiet_nb(ctx)
        cancel_client_nb(ctx, 1)

    # --- one turn -----------------------------------------------------------------------------

    def turn(self, timeout_ms: int = 20) -> None:
        """Wait up to `timeout_ms` for anything, handle all that came, then keep time
        (every millisecond at most)."""
        ready = dict(self.poller.poll(timeout_ms))
        if self.socket in ready:
            for _ in range(1_000):  # (bounded: the feed gets its turn)
                try:
                    frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                self._on_client(frames)
        if self.feed.socket in ready:
            self._market()
        now = time.monotonic_ns()
        if now >= self._next_keep:
            self._next_keep = now + 1_000_000
            self._keep_time()

    def _market(self, group: int = 256) -> None:
        """Every market message waiting (up to `group`): rows checked at the boundary (bad
        ones counted and dropped), consecutive messages of one kind matched as one batch."""
        packets = self.feed.take(group)
        if packets:
            self._last_market_ns = time.monotonic_ns()
        for run in wire.runs(packets):
            self._match(run)

    def _match(self, packets: Sequence[wire.Packet]) -> None:
        kind = packets[0].schema
        if kind not in MARKET_DTYPES:  # (an `orders` batch on the feed: not market data)
            self.screen.wrong_kind(kind, sum(p.rows for p in packets))
            return
        good = self.screen.good(kind, wire.gather(packets), time.time_ns())
        result = self.session.on_batch(kind, good)
        self.summary.market_events += result.events
        self._report(result.orders, result.fills)

    def finish(self, quiet_ms: int = 100, most_s: float = 1.0) -> None:
        """At a stop: take what has already arrived (until nothing has for `quiet_ms`, for
        `most_s` at most), so that a stop right after the last message still covers it."""
        until = time.monotonic() + most_s
        while time.monotonic() < until and self.poller.poll(quiet_ms):
            self.turn(0)

    def _on_client(self, frames: list[Any]) -> None:
        if len(frames) != 3:
            self.summary.malformed += 1
            return
        identity = bytes(frames[0].buffer)
        try:
            message = wire.decode(frames[1:])
        except wire.WireError:
            self.summary.malformed += 1
            return
        client = self.clients.get(identity) or self._new_client(identity)
        if client is None:  # (the table of clients is full: not one more)
            self.summary.malformed += 1
            return
        client.last_heard_ns = time.monotonic_ns()
        client.gone = False
        if message.is_heartbeat:
            return
        if message.schema != "orders":
            self.summary.malformed += 1
            return
        self._on_request(client, message.columns, message.rows, frames[1:])

    def _new_client(self, identity: bytes) -> Client | None:
        slot = len(self.by_slot) + 1  # (slot 0 is never used: an id of 0 is never an order)
        if slot >= MAX_CLIENTS:
            return None
        if slot >= self.last_ids.size:
            self.last_ids = np.concatenate([self.last_ids, np.zeros_like(self.last_ids)])
        client = Client(identity, slot, time.monotonic_ns())
        self.clients[identity] = client
        self.by_slot.append(client)
        self.summary.clients += 1
        return client

    def _on_request(self, client: Client, columns: dict[str, np.ndarray], rows: int,
                    frames: list[Any]) -> None:  # fmt: skip
        out_status = np.empty(rows, dtype=np.int8)
        out_reason = np.empty(rows, dtype=np.int16)
        take_requests_nb(
            self.session.ctx, client.slot, self.last_ids, columns["id"], columns["ts"],
            columns["instrument"], columns["side"], columns["price"], columns["qty"],
            columns["order_type"], columns["tif"], columns["status"], columns["session"],
            columns["strategy"], out_status, out_reason,
        )  # fmt: skip
        # The reply is the request with each row's status and reason: sent before anything
        # else is done with it.
        client.seq += 1
        header, body = wire.answer(frames, client.seq, {"status": out_status, "reason": out_reason},
                                   wire.FLAG_REPLY)  # fmt: skip
        self.socket.send_multipart([client.identity, header, body])
        client.last_sent_ns = time.monotonic_ns()
        client.requests += 1
        self.summary.requests += 1
        new = columns["status"] == STATUS_NEW
        self.summary.orders += int(np.count_nonzero(new & (out_status == STATUS_ACKED)))
        self.summary.rejects += int(np.count_nonzero(out_status == STATUS_REJECTED))
        self.summary.cancels += int(np.count_nonzero(out_status == STATUS_CANCEL_SENT))
        settle_nb(self.session.ctx)
        done = self.session.drain_logs()
        self._report(done.orders, done.fills)

    def _report(self, orders: np.ndarray, fills: np.ndarray) -> None:
        """Send each client its fills, then its cancellations (a cancelled IOC's fill first)."""
        if not (orders.size or fills.size):
            return
        self.summary.fills += fills.size
        fill_slots = fills["order_id"] >> np.uint64(CLIENT_SHIFT)
        order_slots = orders["id"] >> np.uint64(CLIENT_SHIFT)
        for slot in np.union1d(fill_slots, order_slots).tolist():
            client = self.by_slot[slot - 1]
            mine = fills[fill_slots == slot]
            if mine.size:
                mine = mine.copy()
                mine["order_id"] &= np.uint64(ID_LIMIT - 1)
                self._send(client, "fills", {n: mine[n] for n in mine.dtype.names})
            gone = orders[order_slots == slot]
            if gone.size:
                gone = gone.copy()
                gone["id"] &= np.uint64(ID_LIMIT - 1)
                self._send(client, "orders", {n: gone[n] for n in gone.dtype.names})

    def _send(self, client: Client, schema: str, columns: dict[str, np.ndarray],
              flags: int = 0) -> None:  # fmt: skip
        client.seq += 1
        header, body = wire.encode(schema, columns, client.seq, flags=flags)
        self.socket.send_multipart([client.identity, header, body])
        client.last_sent_ns = time.monotonic_ns()

    def _keep_time(self) -> None:
        """Heartbeats to clients that heard nothing lately; cancel on disconnect; what waits
        for a market event when none has come for a while takes effect."""
        now = time.monotonic_ns()
        if self.session.open_orders and now - self._last_market_ns > self.quiet_ns:
            settle_quiet_nb(self.session.ctx)
            done = self.session.drain_logs()
            self._report(done.orders, done.fills)
        for client in self.by_slot:
            if client.gone:
                continue
            if now - client.last_heard_ns > self.client_timeout_ns:
                cancelled = cancel_client_nb(self.session.ctx, client.slot)
                client.gone = True
                self.summary.cancelled_on_disconnect += int(cancelled)
                done = self.session.drain_logs()
                self._report(done.orders, done.fills)
            elif now - client.last_sent_ns > self.heartbeat_ns:
                header, body = wire.heartbeat(client.seq)
                self.socket.send_multipart([client.identity, header, body])
                client.last_sent_ns = now

    def open_orders(self) -> int:
        """Orders resting (or on their way to the matching) now, all clients."""
        return self.session.open_orders

    def close(self) -> None:
        self.feed.close()
        self.socket.close(linger=1_000)
        self.context.term()

    def __enter__(self) -> PaperExchange:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_exchange(
    exchange: PaperExchange, seconds: float | None = None, stop: list[str] | None = None
) -> ExchangeSummary:
    """Turn until `seconds` pass or something is put in `stop` (a signal handler's list)."""
    stop = stop if stop is not None else []
    began = time.monotonic()
    while not stop:
        exchange.turn(20)
        if seconds is not None and time.monotonic() - began >= seconds:
            break
    exchange.finish()
    exchange.summary.malformed += sum(exchange.feed.malformed.values())
    exchange.summary.bad_rows = dict(exchange.screen.bad)
    return exchange.summary
