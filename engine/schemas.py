"""The data contracts of tickwise, defined once.

Every record kind is a numpy structured dtype (what kernels see, one field per
column); its Arrow schema is derived from that dtype, never written twice. The
integer constants below are shared by kernels and Python as plain numbers.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Final

import numpy as np
import pyarrow as pa

# --- enums shared with kernels -------------------------------------------------------------

SIDE_BUY: Final = 1
SIDE_SELL: Final = -1

ORD_LIMIT: Final = 0
ORD_MARKET: Final = 1

TIF_GTC: Final = 0
TIF_IOC: Final = 1

STATUS_NEW: Final = 0
STATUS_ACKED: Final = 1
STATUS_PARTIAL: Final = 2
STATUS_FILLED: Final = 3
STATUS_CANCELLED: Final = 4
STATUS_REJECTED: Final = 5
# A cancel request on its way to a paper (or real) exchange: the engine journals it when it
# sends it, the exchange echoes it when the cancel is received but takes effect later.
STATUS_CANCEL_SENT: Final = 6
SIDE_NAMES: Final = {SIDE_BUY: "buy", SIDE_SELL: "sell"}
ORDER_TYPE_NAMES: Final = {ORD_LIMIT: "limit", ORD_MARKET: "market"}
TIF_NAMES: Final = {TIF_GTC: "gtc", TIF_IOC: "ioc"}
STATUS_NAMES: Final = {
    STATUS_NEW: "new",
    STATUS_ACKED: "acked",
    STATUS_PARTIAL: "partial",
    STATUS_FILLED: "filled",
    STATUS_CANCELLED: "cancelled",
    STATUS_REJECTED: "rejected",
    STATUS_CANCEL_SENT: "cancel_sent",
}

# Reject reasons (the `reason` column of orders). The risk gate adds its own.
REASON_NONE: Final = 0
REASON_BAD_QTY: Final = 1  # quantity not positive, not finite or not a whole number of lots
REASON_BAD_PRICE: Final = 2  # limit price not positive, not finite or off the tick grid
REASON_UNKNOWN_INSTRUMENT: Final = 3
REASON_BOOK_FULL: Final = 4  # the open-order table is full
REASON_UNKNOWN_ORDER: Final = 5  # cancel of an order that is not open
REASON_NO_LIQUIDITY: Final = 6  # market order with no opposite quote
REASON_LOG_FULL: Final = 7  # the batch's order log is full (a strategy flooding orders)
# The pre-trade risk gate (engine/risk.py).
REASON_NO_REFERENCE: Final = 8  # no fresh, finite reference price to check the collar against
REASON_COLLAR: Final = 9  # price outside the collar around the reference price
REASON_MAX_QTY: Final = 10  # quantity above max_order_qty
REASON_MAX_NOTIONAL: Final = 11  # quantity x price above max_notional
REASON_POSITION_LIMIT: Final = 12  # could take the position beyond max_position
REASON_GROSS_LIMIT: Final = 13  # could take gross exposure beyond max_gross_exposure
REASON_MAX_OPEN_ORDERS: Final = 14  # max_open_orders already working
REASON_THROTTLE: Final = 15  # max_orders_per_sec already sent in the last second
REASON_SELF_TRADE: Final = 16  # would trade against the session's own resting order
REASON_HALTED: Final = 17  # trading is halted: no automated order leaves
REASON_REDUCE_ONLY: Final = 18  # trading is reducing: only orders that reduce a position pass
# The paper exchange's own checks.
REASON_DUPLICATE_ID: Final = 19  # an id the client already used
REASON_CLIENT_GONE: Final = 20  # cancelled: the client went silent (cancel on disconnect)
REASON_BAD_REQUEST: Final = 21  # a request row neither a new order nor a cancel

REASON_NAMES: Final = {
    REASON_NONE: "none",
    REASON_BAD_QTY: "bad_qty",
    REASON_BAD_PRICE: "bad_price",
    REASON_UNKNOWN_INSTRUMENT: "unknown_instrument",
    REASON_BOOK_FULL: "order_table_full",
    REASON_UNKNOWN_ORDER: "unknown_order",
    REASON_NO_LIQUIDITY: "no_liquidity",
    REASON_LOG_FULL: "log_full",
    REASON_NO_REFERENCE: "no_reference_price",
    REASON_COLLAR: "price_collar",
    REASON_MAX_QTY: "max_order_qty",
    REASON_MAX_NOTIONAL: "max_notional",
    REASON_POSITION_LIMIT: "max_position",
    REASON_GROSS_LIMIT: "max_gross_exposure",
    REASON_MAX_OPEN_ORDERS: "max_open_orders",
    REASON_THROTTLE: "max_orders_per_sec",
    REASON_SELF_TRADE: "self_trade",
    REASON_HALTED: "halted",
    REASON_REDUCE_ONLY: "reduce_only",
    REASON_DUPLICATE_ID: "duplicate_id",
    REASON_CLIENT_GONE: "client_gone",
    REASON_BAD_REQUEST: "bad_request",
}

# Trading states of a session or one instrument: ACTIVE trades freely, REDUCING lets only
# orders that reduce a position pass, HALTED lets no automated order leave.
STATE_ACTIVE: Final = 0
STATE_REDUCING: Final = 1
STATE_HALTED: Final = 2
STATE_NAMES: Final = {STATE_ACTIVE: "active", STATE_REDUCING: "reducing", STATE_HALTED: "halted"}

# What tripped the kill switch.
TRIP_NONE: Final = 0
TRIP_MAX_LOSS: Final = 1
TRIP_MAX_DRAWDOWN: Final = 2
TRIP_PRICE_JUMP: Final = 3
TRIP_STALE_FEED: Final = 4
TRIP_SEQ_GAP: Final = 5
TRIP_FEED_LATENCY: Final = 6
TRIP_REJECT_RATE: Final = 7
TRIP_STRATEGY_FAULT: Final = 8  # NaN/inf from the strategy, or an exception in it
TRIP_RUNAWAY: Final = 9  # the same order repeated too often too fast
TRIP_MANUAL: Final = 10  # a person's command
TRIP_GATEWAY_LOST: Final = 11  # the exchange silent, or a request unanswered, beyond its bound
TRIP_RECONCILE: Final = 12  # the exchange reported what the engine never sent or expected
TRIP_BAD_DATA: Final = 13  # bad rows from outside (feed, exchange) beyond their rate limit
TRIP_JOURNAL_LOST: Final = 14  # the journal could not be written: the session stops
TRIP_STOP: Final = 15  # the session stopping (a signal, its time, an idle feed): cancel all
TRIP_NAMES: Final = {
    TRIP_NONE: "none",
    TRIP_MAX_LOSS: "max_loss",
    TRIP_MAX_DRAWDOWN: "max_drawdown",
    TRIP_PRICE_JUMP: "price_jump",
    TRIP_STALE_FEED: "stale_feed",
    TRIP_SEQ_GAP: "seq_gap",
    TRIP_FEED_LATENCY: "feed_latency",
    TRIP_REJECT_RATE: "reject_rate",
    TRIP_STRATEGY_FAULT: "strategy_fault",
    TRIP_RUNAWAY: "runaway",
    TRIP_MANUAL: "manual",
    TRIP_GATEWAY_LOST: "gateway_lost",
    TRIP_RECONCILE: "reconcile",
    TRIP_BAD_DATA: "bad_data",
    TRIP_JOURNAL_LOST: "journal_lost",
    TRIP_STOP: "stop",
}
N_TRIPS: Final = len(TRIP_NAMES)

LIQ_MAKER: Final = 0
LIQ_TAKER: Final = 1
LIQUIDITY_NAMES: Final = {LIQ_MAKER: "maker", LIQ_TAKER: "taker"}

# Book-delta flags (bits of the `flags` column).
BOOK_F_LAST: Final = 1  # last delta of one update: the book is consistent after it
BOOK_F_SNAPSHOT: Final = 2  # part of a full snapshot of one instrument's book
BOOK_F_CLEAR: Final = 4  # clear the instrument's book before applying this delta

# --- record dtypes --------------------------------------------------------------------------

QUOTE_DTYPE: Final = np.dtype(
    [
        ("ts_event", "<i8"),
        ("ts_recv", "<i8"),
        ("instrument", "<u4"),
        ("seq", "<u8"),
        ("bid_px", "<f8"),
        ("ask_px", "<f8"),
        ("bid_sz", "<f8"),
        ("ask_sz", "<f8"),
    ]
)

TRADE_DTYPE: Final = np.dtype(
    [
        ("ts_event", "<i8"),
        ("ts_recv", "<i8"),
        ("instrument", "<u4"),
        ("seq", "<u8"),
        ("px", "<f8"),
        ("sz", "<f8"),
        ("side", "i1"),
    ]
)

# ts_event of a bar is its close time: the moment the bar is known, so a replay
# can never see a bar before it has ended.
BAR_DTYPE: Final = np.dtype(
    [
        ("ts_event", "<i8"),
        ("instrument", "<u4"),
        ("open", "<f8"),
        ("high", "<f8"),
        ("low", "<f8"),
        ("close", "<f8"),
        ("volume", "<f8"),
    ]
)

BOOK_DTYPE: Final = np.dtype(
    [
        ("ts_event", "<i8"),
        ("ts_recv", "<i8"),
        ("instrument", "<u4"),
        ("seq", "<u8"),
        ("side", "i1"),
        ("px", "<f8"),
        ("sz", "<f8"),
        ("flags", "u1"),
    ]
)

ORDER_DTYPE: Final = np.dtype(
    [
        ("id", "<u8"),
        ("ts", "<i8"),
        ("instrument", "<u4"),
        ("side", "i1"),
        ("price", "<f8"),
        ("qty", "<f8"),
        ("order_type", "i1"),
        ("tif", "i1"),
        ("status", "i1"),
        ("session", "<u4"),  # attribution: the session that sent it
        ("strategy", "<u4"),  # and its strategy (a hash of the strategy's name)
        ("reason", "<i2"),
    ]
)

FILL_DTYPE: Final = np.dtype(
    [
        ("order_id", "<u8"),
        ("ts", "<i8"),
        ("instrument", "<u4"),
        ("side", "i1"),
        ("price", "<f8"),
        ("qty", "<f8"),
        ("fee", "<f8"),
        ("liquidity", "i1"),
    ]
)

# One change of a trading state (the kill switch's or a person's), as kernels log it: the
# audit trail of every transition, in order.
TRANSITION_DTYPE: Final = np.dtype(
    [
        ("ts", "<i8"),  # event time of the change (ns)
        ("scope", "<i4"),  # the instrument whose own state changed (-1: the whole session)
        ("trigger", "i1"),  # TRIP_*: what moved it (TRIP_MANUAL: a person)
        ("from_state", "i1"),  # STATE_*
        ("to_state", "i1"),
        ("instrument", "<i4"),  # the instrument the trigger concerned (-1: none in particular)
        ("value", "<f8"),  # the value that tripped it
        ("limit", "<f8"),  # and the limit it crossed
    ]
)

INSTRUMENT_DTYPE: Final = np.dtype(
    [
        ("id", "<u4"),
        ("tick_size", "<f8"),
        ("lot_size", "<f8"),
        ("unit_div", "<f8"),  # n when the lot is 1/n of a unit (0.01, 1e-8), else 0
    ]
)

# --- engine state (kernels' records; one row per instrument or per order) ------------------

# The market as the engine last saw it, per instrument (NaN until first seen).
MARKET_DTYPE: Final = np.dtype(
    [
        ("ts", "<i8"),  # ts_event of the last event of this instrument
        ("bid_px", "<f8"),
        ("ask_px", "<f8"),
        ("bid_sz", "<f8"),
        ("ask_sz", "<f8"),
        ("last_px", "<f8"),  # last trade price (bar close on bar data)
        ("last_sz", "<f8"),
    ]
)

# Position accounting per instrument, exact under partial fills and flips.
POSITION_DTYPE: Final = np.dtype(
    [
        ("lots", "<i8"),  # signed whole lots (engine.quantities): + long, - short
        ("qty", "<f8"),  # the same in units, lots x lot, set with each fill (0.0 when flat):
        #                  what marking at every event reads, without converting
        ("avg_px", "<f8"),  # average entry price of the open position (0 when flat)
        ("realized", "<f8"),  # realised PnL, before fees
        ("fees", "<f8"),  # fees paid (positive is a cost)
        ("traded", "<f8"),  # quantity traded, both sides (units)
    ]
)

# An order as the engine tracks it while it is open: the order record (without a reject
# reason, its quantity in whole lots), the lots filled so far, when it and a cancel of it
# reach the exchange, and its place in the queue at its price. (The engine's own state:
# no file holds it.)
OPEN_ORDER_DTYPE: Final = np.dtype(
    [
        (name, ORDER_DTYPE.fields[name][0]) if name != "qty" else ("lots", "<i8")
        for name in ORDER_DTYPE.names
        if name != "reason"
    ]
    + [
        ("filled", "<i8"),  # lots
        ("active_ts", "<i8"),  # when it reaches the exchange (ns)
        ("cancel_ts", "<i8"),  # when a cancel of it will (0: none asked)
        ("cancel_unsent", "<i8"),  # 1: a cancel asked of an exchange process, not yet sent
        ("queue", "<f8"),  # quantity ahead of it at its price while it rests (NaN: unknown)
    ]
)

# One point of a session's equity curve (sampled at fixed steps of event time).
EQUITY_DTYPE: Final = np.dtype(
    [
        ("ts", "<i8"),  # the sample's time: a multiple of the sampling step (ns)
        ("pnl", "<f8"),  # realised + unrealised - fees, all instruments
        ("realized", "<f8"),
        ("unrealized", "<f8"),
        ("fees", "<f8"),
        ("gross_exposure", "<f8"),  # sum of |position| x mark
    ]
)

# --- market-data kinds ----------------------------------------------------------------------

MARKET_DTYPES: Final[dict[str, np.dtype]] = {
    "quotes": QUOTE_DTYPE,
    "trades": TRADE_DTYPE,
    "bars": BAR_DTYPE,
    "book": BOOK_DTYPE,
}
KINDS: Final = tuple(MARKET_DTYPES)
# Codes of the kinds where events of several kinds are merged into one order (run_merged).
KIND_QUOTES: Final = 0
KIND_TRADES: Final = 1
KIND_BARS: Final = 2
KIND_BOOK: Final = 3
KIND_CODES: Final[dict[str, int]] = {
    "quotes": KIND_QUOTES,
    "trades": KIND_TRADES,
    "bars": KIND_BARS,
    "book": KIND_BOOK,
}
N_KINDS: Final = len(KIND_CODES)

# The deterministic global order of market data: time, then instrument, then sequence.
SORT_KEYS: Final[dict[str, tuple[str, ...]]] = {
    kind: tuple(k for k in ("ts_event", "instrument", "seq") if k in dtype.names)
    for kind, dtype in MARKET_DTYPES.items()
}

# Parquet/Arrow schema metadata keys carried by every tickwise file.
META_KIND: Final = b"tickwise.kind"
META_INSTRUMENTS: Final = b"tickwise.instruments"

_ARROW_TYPES: Final = {
    np.dtype("<i8"): pa.int64(),
    np.dtype("<u8"): pa.uint64(),
    np.dtype("<u4"): pa.uint32(),
    np.dtype("<i2"): pa.int16(),
    np.dtype("i1"): pa.int8(),
    np.dtype("u1"): pa.uint8(),
    np.dtype("<f8"): pa.float64(),
}


def arrow_schema(dtype: np.dtype, metadata: dict[bytes, bytes] | None = None) -> pa.Schema:
    """The Arrow schema mirroring a record dtype: same names, same order, no nulls."""
    fields = [
        pa.field(name, _ARROW_TYPES[dtype.fields[name][0]], nullable=False) for name in dtype.names
    ]
    return pa.schema(fields, metadata=metadata)


def market_schema(kind: str) -> pa.Schema:
    """The Arrow schema of one market-data kind (quotes, trades, bars, book)."""
    return arrow_schema(market_dtype(kind))


def market_dtype(kind: str) -> np.dtype:
    """The numpy record dtype of one market-data kind; a clear error for an unknown kind."""
    try:
        return MARKET_DTYPES[kind]
    except KeyError:
        raise ValueError(
            f"unknown data kind {kind!r}; expected one of {', '.join(KINDS)}"
        ) from None


def record_batch(records: np.ndarray, schema: pa.Schema) -> pa.RecordBatch:
    """Records of a structured dtype as an Arrow batch of `schema` (its mirror)."""
    # A field of a packed record array is a strided view; Arrow converts a contiguous copy
    # of it four times faster than the view itself.
    columns = [pa.array(np.ascontiguousarray(records[n])) for n in schema.names]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def join_records(parts: list[np.ndarray], dtype: np.dtype) -> np.ndarray:
    """One array of `dtype` records holding the rows of `parts` in turn (a copy, even of a
    single part). Copied as blocks of bytes: numpy copies records field by field, row by
    row (40-130 ns a row for the order, fill and equity records), which made draining a
    batch's logs cost more than the compiled loop that filled them."""
    out = np.empty(sum(len(p) for p in parts), dtype=dtype)
    raw = out.view(np.uint8)
    at = 0
    for part in parts:
        if part.dtype != dtype:
            raise TypeError(f"records of {part.dtype} joined as {dtype}")
        size = part.nbytes
        raw[at : at + size] = np.ascontiguousarray(part).view(np.uint8)
        at += size
    return out


def impossible_fills(fills: np.ndarray | dict[str, np.ndarray], known: np.ndarray) -> np.ndarray:
    """Fills no engine makes (a bool per row): an instrument not in `known` (the instruments'
    `known_mask()`), a side not +-1, a quantity not positive and finite, a price not positive
    and finite, a fee not finite, an unknown liquidity flag. What an exchange reports and what
    a journal holds are checked by this before anything books them."""
    inst = np.asarray(fills["instrument"]).astype(np.int64)
    known_inst = (inst < known.size) & known[np.minimum(inst, max(known.size - 1, 0))]
    qty, price, fee = fills["qty"], fills["price"], fills["fee"]
    side, liquidity = fills["side"], fills["liquidity"]
    good = (
        known_inst & ((side == 1) | (side == -1))
        & (qty > 0) & np.isfinite(qty) & (price > 0) & np.isfinite(price)
        & np.isfinite(fee) & ((liquidity == LIQ_MAKER) | (liquidity == LIQ_TAKER))
    )  # fmt: skip
    return ~good


ORDER_SCHEMA: Final = arrow_schema(ORDER_DTYPE)
FILL_SCHEMA: Final = arrow_schema(FILL_DTYPE)
EQUITY_SCHEMA: Final = arrow_schema(EQUITY_DTYPE)

# --- what strategy callbacks receive --------------------------------------------------------
# One immutable tuple per event, built inside compiled code (no allocation), with the
# same fields as the record dtype: `q.bid_px`, `t.side`, `f.price`.

Quote = namedtuple("Quote", QUOTE_DTYPE.names)
Trade = namedtuple("Trade", TRADE_DTYPE.names)
Bar = namedtuple("Bar", BAR_DTYPE.names)
BookDelta = namedtuple("BookDelta", BOOK_DTYPE.names)
Fill = namedtuple("Fill", FILL_DTYPE.names)
