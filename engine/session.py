"""A session: one strategy, its parameters and state, and the engine context, fed batch by batch.

Backtests feed it batches read from Parquet, live sessions batches decoded
from the wire; either way each batch is one call of the same compiled loop,
and what comes back is the batch's order events and fills.
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba
import numpy as np
import pyarrow as pa
from numba.core.errors import NumbaError

from . import loops
from .context import (
    VENUE_GATEWAY,
    Ctx,
    copy_context,
    new_context,
)
from .diagnose import explain
from .errors import TickwiseError
from .instruments import Instruments
from .killswitch import (
    NO_PRICE,
    blocked_resume,
    external_trip_nb,
    person_flatten_nb,
    person_halt_nb,
    strategy_fault_nb,
)
from .loops import compiled_loop
from .portfolio import total_pnl
from .schemas import (
    FILL_DTYPE,
    KIND_CODES,
    KINDS,
    OPEN_ORDER_DTYPE,
    ORDER_DTYPE,
    REASON_NAMES,
    STATE_ACTIVE,
    STATE_HALTED,
    STATE_NAMES,
    STATUS_CANCEL_SENT,
    TRIP_MANUAL,
    TRIP_NAMES,
    join_records,
    market_dtype,
)
from .states import guard_status, resume_nb, states_of
from .strategy import Strategy, StrategyError
from .tuples import named


@dataclass(frozen=True)
class BatchResult:
    """What one batch produced: order events (new, cancelled, rejected) and fills."""

    events: int
    orders: np.ndarray  # ORDER_DTYPE
    fills: np.ndarray  # FILL_DTYPE
    equity: np.ndarray  # EQUITY_DTYPE
    marks: np.ndarray  # float64[sample, instrument]: marks at the equity samples


@dataclass(frozen=True)
class Snapshot:
    """A copy of everything a session's future depends on: engine context and strategy state."""

    ctx: Ctx
    state: dict[str, np.ndarray]


class Session:
    """Runs `strategy` over batches of market data for the given instruments."""

    def __init__(
        self,
        strategy: type[Strategy],
        instruments: Instruments,
        params: Mapping[str, Any] | None = None,
        *,
        guarded: bool = True,
        **context_options: Any,
    ) -> None:
        strategy.validate()
        self.strategy = strategy
        self.instruments = instruments
        self.params = strategy.resolve_params(params)
        self.loop = compiled_loop(strategy, guarded)  # unguarded: to measure the guard only
        context_options.setdefault("strategy_id", zlib.crc32(strategy.name().encode()))
        self.ctx = new_context(
            instruments, timer_ns=strategy.timer_ns(self.params), **context_options
        )
        self.fault: str | None = None  # what the strategy raised, if it did
        self.mismatched = _NO_ROWS  # report rows the last report batch found mismatched
        # Every change of a trading state, in order, until taken (`take_transitions`), and
        # the latest ones kept for status.
        self.transitions: list[dict[str, Any]] = []
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY_KEPT)
        # What only the caller can see that a resume must wait for (a live session's silent
        # feed or lost exchange): clauses for an instrument id, or -1 for the whole session.
        self.outside_conditions: Callable[[int], list[str]] | None = None
        # Of those, what says the feed or the exchange cannot be trusted now (a flatten waits).
        self.outside_faults: Callable[[int], list[str]] | None = None
        # The time of what happens between batches (a person's command, a trip seen outside
        # the loop): a live session's wall clock; else the latest event's.
        self.clock: Callable[[], int] | None = None
        size = self.ctx.market.size
        self.state = strategy.new_state(size, self.params, instruments.tick_sizes(size))
        self._p = named("Params", list(self.params))(**self.params)
        self._st = named("State", list(self.state))(**self.state)
        self._subscribed = self._subscriptions(size)
        # Each runner's compiled entry, once it has its one overload (see `_entry`).
        self._entries: dict[Any, Any] = {}
        self._runners = {
            "quotes": self.loop.run_quotes,
            "trades": self.loop.run_trades,
            "bars": self.loop.run_bars,
            "book": self.loop.run_book,
        }

    def _subscriptions(self, size: int) -> np.ndarray:
        mask = self.instruments.known_mask()
        wanted = self.strategy.instruments
        if wanted is None:
            return mask
        chosen = np.zeros(size, dtype=np.bool_)
        for item in wanted:
            try:
                inst = (
                    self.instruments.by_symbol(item)
                    if isinstance(item, str)
                    else self.instruments[item]
                )
            except KeyError:
                raise StrategyError(
                    f"{self.strategy.name()} subscribes to instrument {item!r}, "
                    f"which the data do not have ({', '.join(self.instruments.symbols())})"
                ) from None
            chosen[inst.id] = True
        return chosen

    def warm_up(self, kinds: tuple[str, ...] = KINDS, reports: bool = False,
                controls: bool = False, merged: bool = False) -> None:  # fmt: skip
        """Compile (or load from cache) the loop for these kinds (all by default: a live feed
        may send any), with `merged` the loop over kinds merged in one order (`on_merged`)
        instead, with `reports` what applies an exchange's reports, and with `controls`
        what a person or the clock does between batches (halt, trip, resume, PnL), on a
        throwaway copy of the state, so that no event pays for compilation. A mistake in the
        strategy's code is a StrategyError naming its file, line and rule."""
        try:
            self._warm_up(() if merged else kinds, reports, controls)
            if merged:
                ctx = copy_context(self.ctx)
                st = type(self._st)(**{k: v.copy() for k, v in self.state.items()})
                self.loop.run_merged(ctx, st, self._p, self._subscribed, 0, *self._merged_args({}))
        except NumbaError as exc:
            engine = (Path(loops.__file__).resolve().parent, loops.cache_dir().resolve())
            explained = explain(exc, self.strategy, engine)
            if explained is None:  # not in the strategy's code: ours, with its traceback
                raise
            raise explained from None

    def _warm_up(self, kinds: tuple[str, ...], reports: bool, controls: bool) -> None:
        ctx = copy_context(self.ctx)
        st = type(self._st)(**{k: v.copy() for k, v in self.state.items()})
        for kind in kinds:
            self._runners[kind](ctx, st, self._p, self._subscribed, 0, *_empty(market_dtype(kind)))
        if controls:
            total_pnl(ctx)
            person_halt_nb(ctx, -1, STATE_HALTED, 0)
            person_flatten_nb(ctx, -1, 0, np.zeros(ctx.portfolio.size, dtype=np.int64))
            external_trip_nb(ctx, TRIP_MANUAL, -1, 0.0, 0.0, 0)
            strategy_fault_nb(ctx)
            resume_nb(ctx, -1, STATE_ACTIVE, 0)
        if reports:
            bad, at = np.empty(0, dtype=np.int64), np.zeros(1, dtype=np.int64)
            self.loop.run_fills(ctx, st, self._p, bad, at, 0, *_empty(FILL_DTYPE))
            columns = _empty(ORDER_DTYPE)
            order = list(ORDER_DTYPE.names)
            picked = [columns[order.index(n)] for n in ("id", "status", "reason", "qty")]
            self.loop.run_order_reports(ctx, st, self._p, bad, at, 0, *picked)

    def trade_through_gateway(self) -> None:
        """Orders go to an exchange process from now on: they never meet the loop's own
        simulated exchange, and cancels wait (in `cancel_requests`) to be sent to it."""
        clock = self.ctx.clock[0]
        clock.venue = VENUE_GATEWAY

    def cancel_requests(self) -> np.ndarray:
        """Cancels the strategy or the kill switch asked for since the last call, as order
        rows (status CANCEL_SENT, the quantity left, ts when asked); they count as sent."""
        if self.ctx.clock[0].cancel_asks == 0:
            return _NO_ORDERS
        self.ctx.clock[0].cancel_asks = 0
        n = int(self.ctx.clock[0].n_open)
        table = self.ctx.open_orders[:n]
        asked = np.flatnonzero(table["cancel_unsent"])
        rows = np.zeros(asked.size, dtype=ORDER_DTYPE)
        if asked.size == 0:
            return rows
        picked = table[asked]
        for name in ORDER_DTYPE.names:
            if name in OPEN_ORDER_DTYPE.names:
                rows[name] = picked[name]
        rows["ts"] = picked["cancel_ts"]
        lot = self.ctx.instruments["lot_size"][picked["instrument"]]
        rows["qty"] = (picked["lots"] - picked["filled"]) * lot
        rows["status"] = STATUS_CANCEL_SENT
        table["cancel_unsent"][asked] = 0  # sent (cancel_ts stays: not asked twice)
        return rows

    def on_batch(self, kind: str, batch: pa.RecordBatch | Mapping[str, np.ndarray]) -> BatchResult:
        """Run the loop over one batch of `kind` rows (an Arrow batch or column arrays)."""
        if kind not in self._runners:
            raise TickwiseError(f"unknown data kind {kind!r}; expected one of {', '.join(KINDS)}")
        dtype = market_dtype(kind)
        if isinstance(batch, pa.RecordBatch):
            args = [batch.column(n).to_numpy(zero_copy_only=True) for n in dtype.names]
        else:
            args = _columns(batch, dtype, f"the {kind} batch's columns")
        return self._run(self._runners[kind], args, f"a {kind} batch")

    def on_merged(self, parts: Mapping[str, pa.RecordBatch | Mapping[str, np.ndarray]],
                  kinds: np.ndarray, rows: np.ndarray) -> BatchResult:  # fmt: skip
        """Run the loop over events of several kinds in one order: event m is row `rows[m]`
        of `parts[kind]`, the kind whose code (schemas.KIND_CODES) is `kinds[m]`. Replaying
        quotes and trades together this way lets resting orders meet the prints."""
        kinds = _readonly(kinds, np.dtype(np.uint8))
        rows = _readonly(rows, np.dtype(np.int64))
        if kinds.shape != rows.shape or kinds.ndim != 1:
            raise TickwiseError(f"kinds {kinds.shape} and rows {rows.shape} must be one length")
        args = self._merged_args(parts)
        for kind, code in KIND_CODES.items():
            mine = rows[kinds == code]
            size = len(args[2 + code][0])
            if mine.size and (mine.min() < 0 or mine.max() >= size):
                raise TickwiseError(
                    f"merged events name rows {mine.min()}..{mine.max()} of {size} {kind} rows"
                )
        if np.any(kinds >= len(KIND_CODES)):
            raise TickwiseError(f"unknown kind codes in {np.unique(kinds).tolist()}")
        return self._run(self.loop.run_merged, [kinds, rows, *args[2:]], "merged data")

    def _merged_args(self, parts: Mapping[str, pa.RecordBatch | Mapping[str, np.ndarray]]
                     ) -> list[Any]:  # fmt: skip
        """run_merged's arguments after `start`: no events, then each kind's columns (a
        tuple, empty for kinds absent from `parts`)."""
        columns: list[Any] = [_readonly(np.empty(0), np.dtype(np.uint8)),
                              _readonly(np.empty(0), np.dtype(np.int64))]  # fmt: skip
        for kind in KIND_CODES:
            batch = parts.get(kind)
            dtype = market_dtype(kind)
            if batch is None:
                columns.append(tuple(_empty(dtype)))
            elif isinstance(batch, pa.RecordBatch):
                columns.append(tuple(batch.column(n).to_numpy(zero_copy_only=True)
                                     for n in dtype.names))  # fmt: skip
            else:
                columns.append(tuple(_columns(batch, dtype, f"the {kind} columns")))
        unknown = set(parts) - set(KIND_CODES)
        if unknown:
            raise TickwiseError(
                f"unknown data kind {sorted(unknown)[0]!r}; expected one of {', '.join(KINDS)}"
            )
        return columns

    def on_fills(self, fills: Mapping[str, np.ndarray]) -> BatchResult:
        """Book fills an exchange reported (FILL_DTYPE columns) and tell the strategy; rows
        that do not match an open order are in `self.mismatched` and trip `reconcile`."""
        args = [_readonly(fills[n], FILL_DTYPE.fields[n][0]) for n in FILL_DTYPE.names]
        return self._run(self.loop.run_fills, args, "a fills report", reports=True)

    def on_order_reports(self, reports: Mapping[str, np.ndarray]) -> BatchResult:
        """Apply what an exchange says of orders and cancels (ORDER_DTYPE columns: id,
        status, reason, qty); mismatches as in `on_fills`."""
        args = [_readonly(reports[n], ORDER_DTYPE.fields[n][0])
                for n in ("id", "status", "reason", "qty")]  # fmt: skip
        return self._run(self.loop.run_order_reports, args, "an orders report", reports=True)

    def _run(self, run: Any, args: list[np.ndarray], label: str, reports: bool = False
             ) -> BatchResult:  # fmt: skip
        """Run a compiled runner over its rows, draining the logs whenever it stops for room,
        and go on past a row whose strategy callback raised (the kill switch trips). Report
        runners also note the rows they found mismatched (`self.mismatched`)."""
        rows = len(args[0])
        if reports:
            bad = np.empty(rows, dtype=np.int64)
            at = np.zeros(1, dtype=np.int64)  # the report row under way
        n_bad = 0
        orders, fills, equity, marks = [], [], [], []
        start = 0
        redone = -1
        call = self._entries.get(run, run)
        while True:
            events_before = int(self.ctx.clock[0].events)
            try:
                if reports:
                    start, found = call(self.ctx, self._st, self._p, bad[n_bad:], at, start, *args)
                    n_bad += found
                else:
                    start = call(self.ctx, self._st, self._p, self._subscribed, start, *args)
            except Exception as exc:  # raised inside the strategy: halt, then go on
                if numba.config.BOUNDSCHECK and isinstance(exc, IndexError):
                    raise  # (bounds checked, as in the tests: an index out of range is a bug)
                # The row whose event was under way (a timer raises before its event counts).
                failed_at = (
                    int(at[0]) if reports
                    else start + int(self.ctx.clock[0].events) - events_before - 1
                )  # fmt: skip
                self.fault = f"{type(exc).__name__}: {exc} (at row {failed_at} of {label})"
                strategy_fault_nb(self.ctx)
                # Go on from the next row, or redo the row whose timer raised (the timer does
                # not fire twice); a row that raises again is passed over.
                retry = failed_at + 1
                start = retry if retry > redone else retry + 1
                redone = retry
            orders.append(self._drain(self.ctx.order_log, "n_order_log"))
            fills.append(self._drain(self.ctx.fill_log, "n_fill_log"))
            samples = int(self.ctx.clock[0].n_equity_log)
            marks.append(self.ctx.mark_log[:samples].copy() if samples else self.ctx.mark_log[:0])
            equity.append(self._drain(self.ctx.equity_log, "n_equity_log"))
            if start >= rows:
                break
        self.mismatched = bad[:n_bad] if reports else _NO_ROWS
        if call is run:
            self._entries[run] = _entry(run)
        self._note_transitions()
        return BatchResult(rows, _joined(orders), _joined(fills), _joined(equity), _joined(marks))

    def drain_logs(self) -> BatchResult:
        """What kernels called outside a batch (the paper exchange's) logged: orders, fills."""
        orders = self._drain(self.ctx.order_log, "n_order_log")
        fills = self._drain(self.ctx.fill_log, "n_fill_log")
        self.ctx.clock[0].n_equity_log = 0
        return BatchResult(0, orders, fills, self.ctx.equity_log[:0], self.ctx.mark_log[:0])

    # --- a person's controls -----------------------------------------------------------------

    def halt(self, instrument: int | None = None, state: str = "halted") -> None:
        """A person halts the session (or one instrument): no automated order leaves, resting
        orders are cancelled now; `state="reducing"` lets position-reducing orders pass."""
        target = _state_code(state)
        if target == STATE_ACTIVE:
            raise TickwiseError("halt to 'halted' or 'reducing'; to trade again, resume")
        # The cancels it sends are in the order log, returned with the next batch's events.
        where = -1 if instrument is None else self._instrument(instrument)
        person_halt_nb(self.ctx, where, target, self._now())
        self._note_transitions()

    def resume(self, instrument: int | None = None, state: str = "active") -> None:
        """A person resumes trading (to ACTIVE, or REDUCING): the session and every instrument,
        or one instrument only. Refused, saying why, while any condition behind a trigger
        persists (`blocked_resume`)."""
        target = _state_code(state)
        if target == STATE_HALTED:
            raise TickwiseError("resume to 'active' or 'reducing'")
        blocked = self.blocked_resume(instrument)
        if blocked:
            raise TickwiseError(f"cannot resume: {'; '.join(blocked)}")
        resume_nb(self.ctx, -1 if instrument is None else self._instrument(instrument), target,
                  self._now())  # fmt: skip
        self._note_transitions()
        if instrument is None:
            self.fault = None

    def flatten(self, instrument: int | None = None) -> dict[str, dict[str, Any]]:
        """A person flattens the session (or one instrument): it goes to REDUCING (or stays
        stricter), its working orders are cancelled and each position is closed by a
        reduce-only IOC limit order at the far touch, inside the price collar
        (`killswitch.person_flatten_nb`). Refused, saying why, while a data fault holds a
        scope HALTED (a feed or exchange that cannot be trusted: no order may leave). Returns,
        per symbol with a position, the quantity and the order sent (its id), or why none
        left (`refused`: the risk gate's reason, or no reference price)."""
        where = -1 if instrument is None else self._instrument(instrument)
        faults = self.data_faults(where)
        if faults:
            raise TickwiseError(
                f"cannot flatten: {'; '.join(faults)} (a data fault: no order may leave while "
                "the market data or the exchange cannot be trusted)"
            )
        ctx = self.ctx
        held = {i: float(ctx.portfolio[i]["qty"]) for i in range(ctx.portfolio.size)
                if ctx.portfolio[i]["lots"] != 0 and where in (-1, i)}  # fmt: skip
        sent = np.zeros(ctx.portfolio.size, dtype=np.int64)
        now = self._now()
        if self.clock is not None:  # (live, between batches: the gate's clock is now, so
            clock = ctx.clock[0]  # that a reference price gone stale is seen as such, the
            clock.recv = max(int(clock.recv), now)  # throttle counts from now, and the
            clock.now = max(int(clock.now), now)  # orders carry the time they left)
        person_flatten_nb(ctx, where, now, sent)
        self._note_transitions()
        log = ctx.order_log[: int(ctx.clock[0].n_order_log)]
        out = {}
        for i, qty in held.items():
            oid = int(sent[i])
            row = {"position": qty, "order": oid if oid > 0 else None, "refused": None}
            if oid == NO_PRICE:
                row["refused"] = "no_reference_price"
            elif oid < 0:
                reasons = log["reason"][log["id"] == -oid]
                row["refused"] = REASON_NAMES.get(int(reasons[0]), "?") if reasons.size else "?"
            elif oid == 0:
                row["refused"] = "already_closing"  # (orders on their way close it all)
            out[self.instruments.symbol(i)] = row
        return out

    def data_faults(self, instrument: int = -1) -> list[str]:
        """Why the market data or the exchange cannot be trusted now, for the session and one
        instrument (or all): a scope HALTED by such a trigger, and such a condition holding
        now whatever halted the scope first (a trip never replaces the cause of a scope
        already halted: a gap after a person's kill keeps the cause `manual`)."""
        ctx, said = self.ctx, []
        g = ctx.guard[0]
        if g["state"] == STATE_HALTED and TRIP_NAMES[int(g["trip"])] in DATA_FAULTS:
            said.append(f"the session is HALTED by {TRIP_NAMES[int(g['trip'])]}")
        for inst in self.instruments:
            row = ctx.inst_guard[inst.id]
            if (
                instrument in (-1, inst.id)
                and row["state"] == STATE_HALTED
                and (TRIP_NAMES[int(row["trip"])] in DATA_FAULTS)
            ):
                said.append(f"{inst.symbol} is HALTED by {TRIP_NAMES[int(row['trip'])]}")
        now = self.clock() if self.clock is not None else int(ctx.clock[0].recv)
        said += blocked_resume(ctx, self.instruments.symbol, instrument, now, data_only=True)
        if self.outside_faults is not None:
            said += self.outside_faults(instrument)
        return said

    def status(self) -> dict[str, Any]:
        """The trading state of the session and each instrument, the cause that holds each now
        (what tripped it, when, by how much) and the latest changes of state."""
        return guard_status(self.ctx, self.instruments, self.fault) | {
            "history": list(self.history)
        }

    def trip(self, cause: str, value: float, limit: float, instrument: int | None = None) -> None:
        """Trip the kill switch for a condition seen outside the loop (e.g. `stale_feed` from
        the live feed's clock, `seq_gap` from the wire): nothing if that trigger is off."""
        codes = {name: code for code, name in TRIP_NAMES.items()}
        if cause not in codes:
            raise TickwiseError(f"unknown kill-switch trigger {cause!r}")
        where = -1 if instrument is None else self._instrument(instrument)
        external_trip_nb(self.ctx, codes[cause], where, float(value), float(limit), self._now())
        self._note_transitions()

    def blocked_resume(self, instrument: int | None = None) -> list[str]:
        """Why a resume (of the session, or of one instrument) would be refused now: the
        conditions that still hold, one clause each (none: it would not be)."""
        where = -1 if instrument is None else self._instrument(instrument)
        now = self.clock() if self.clock is not None else int(self.ctx.clock[0].recv)
        clauses = blocked_resume(self.ctx, self.instruments.symbol, where, now)
        if self.outside_conditions is not None:
            clauses += self.outside_conditions(where)
        return clauses

    def _now(self) -> int:
        return self.clock() if self.clock is not None else int(self.ctx.clock[0].now)

    def take_transitions(self) -> list[dict[str, Any]]:
        """The changes of trading state since the last call, in order (for the journal)."""
        taken, self.transitions = self.transitions, []
        return taken

    def _note_transitions(self) -> None:
        n = int(self.ctx.clock[0].n_transitions)
        if n == 0:
            return
        self.ctx.clock[0].n_transitions = 0
        for row in self.ctx.transitions[:n].tolist():
            ts, scope, trigger, before, after, instrument, value, limit = row
            change = {
                "ts": ts, "scope": "session" if scope < 0 else self.instruments.symbol(scope),
                "trigger": TRIP_NAMES[trigger], "from": STATE_NAMES[before],
                "to": STATE_NAMES[after],
                "instrument": None if instrument < 0 else self.instruments.symbol(instrument),
                "value": value, "limit": limit,
            }  # fmt: skip
            self.transitions.append(change)
            self.history.append(change)

    def pnl(self) -> float:
        """Session PnL now: realised + marked to the mid (or last trade) - fees."""
        return float(total_pnl(self.ctx))

    @property
    def events(self) -> int:
        """Market events processed since the session began."""
        return int(self.ctx.clock[0].events)

    @property
    def open_orders(self) -> int:
        """Orders resting (or on their way) now."""
        return int(self.ctx.clock[0].n_open)

    @property
    def clock_ns(self) -> int:
        """The event time of the latest event (ns; 0 before any)."""
        return int(self.ctx.clock[0].now)

    def unconfirmed_cancels(self, instrument: int = -1) -> int:
        """Open orders whose cancel was asked and not yet confirmed, of one instrument id, or
        (-1) of every instrument not ACTIVE: the kill switch cancelled those, and until the
        cancels are confirmed nobody knows whether they still trade. (A strategy's own
        cancels of instruments still trading are routine: they do not count.)"""
        table = self.ctx.open_orders[: self.open_orders]
        asked = table["cancel_ts"] != 0
        if instrument >= 0:
            asked &= table["instrument"] == instrument
        else:
            asked &= states_of(self.ctx)[table["instrument"]] != STATE_ACTIVE
        return int(np.count_nonzero(asked))

    def _instrument(self, instrument: int) -> int:
        try:
            return self.instruments[instrument].id
        except KeyError:
            raise TickwiseError(f"no instrument {instrument!r} in this session") from None

    def _drain(self, log: np.ndarray, used: str) -> np.ndarray:
        """The rows of `log` written since the last drain (their count in the clock's field
        `used`), copied; the log starts afresh."""
        clock = self.ctx.clock[0]
        n = int(clock[used])
        if n >= log.size:
            raise StrategyError(
                f"{self.strategy.name()} sent more than {log.size} orders or fills while "
                "handling a single event; the session stopped rather than lose any"
            )
        if n == 0:
            return log[:0]  # (nothing to copy: an empty view)
        clock[used] = 0
        return join_records([log[:n]], log.dtype)

    def snapshot(self) -> Snapshot:
        """Copy the session's state (restore it with `restore`)."""
        return Snapshot(copy_context(self.ctx), {k: v.copy() for k, v in self.state.items()})

    def restore(self, snap: Snapshot) -> None:
        """Put back a snapshot: the session continues exactly as it would have from it."""
        for live, saved in zip(self.ctx, snap.ctx, strict=True):
            live[...] = saved
        for name, arr in self.state.items():
            arr[...] = snap.state[name]


def _entry(dispatcher: Any) -> Any:
    """A runner's compiled entry point when it has exactly one overload, else the runner.

    A session always passes a runner the same types (its own context, state and parameters;
    columns made contiguous, read-only and of the schema's dtype by `_readonly` or by Arrow),
    so once compiled it has one overload. Calling that overload's entry point skips Numba's
    dispatch, which types the context (a tuple of 20 arrays) on every call: ~10 µs of a
    one-row batch's ~12."""
    overloads = getattr(dispatcher, "overloads", {})
    if len(overloads) != 1:
        return dispatcher
    return next(iter(overloads.values())).entry_point


def _state_code(name: str) -> int:
    codes = {v: k for k, v in STATE_NAMES.items()}
    if name not in codes:
        raise TickwiseError(f"unknown trading state {name!r}; use {', '.join(codes)}")
    return codes[name]


def _columns(batch: Mapping[str, np.ndarray], dtype: np.dtype, what: str) -> list[np.ndarray]:
    """A kind's columns from arrays by name, read-only and of the schema's dtypes; arrays of
    unequal lengths are refused (the loop would read past the shorter ones)."""
    columns = [_readonly(batch[n], dtype.fields[n][0]) for n in dtype.names]
    lengths = {n: len(c) for n, c in zip(dtype.names, columns, strict=True)}
    if len(set(lengths.values())) > 1:
        raise TickwiseError(f"{what} differ in length: {lengths}")
    return columns


def _readonly(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A contiguous read-only view of the right dtype: the loop is compiled for exactly that."""
    if (
        type(values) is np.ndarray
        and values.dtype == dtype
        and not values.flags.writeable
        and values.flags.c_contiguous
    ):
        return values  # (as decoded from the wire)
    view = np.ascontiguousarray(values, dtype=dtype).view()
    view.flags.writeable = False
    return view


HISTORY_KEPT = 20  # the latest changes of trading state a status shows
# Triggers that say the market data or the exchange cannot be trusted: a scope they halted
# sends no order at all, a person's flatten neither.
DATA_FAULTS = frozenset(
    ("stale_feed", "seq_gap", "feed_latency", "bad_data", "gateway_lost", "reconcile",
     "journal_lost")
)  # fmt: skip
_NO_ROWS = np.empty(0, dtype=np.int64)
_NO_ORDERS = np.empty(0, dtype=ORDER_DTYPE)


def _empty(dtype: np.dtype) -> list[np.ndarray]:
    """Zero rows of each column, read-only as batches arrive (views of Arrow buffers)."""
    columns = [np.empty(0, dtype=dtype.fields[n][0]) for n in dtype.names]
    for column in columns:
        column.flags.writeable = False
    return columns


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    if len(parts) == 1:
        return parts[0]
    if parts[0].dtype.names:
        return join_records(parts, parts[0].dtype)
    return np.concatenate(parts)  # (the marks: plain numbers, which numpy copies fast)
