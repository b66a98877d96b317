"""A session: one strategy, its parameters and state, and the engine context, fed batch by batch.

Backtests feed it batches read from Parquet, live sessions batches decoded
from the wire; either way each batch is one call of the same compiled loop,
and what comes back is the batch's order events and fills.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from .context import (
    CLK_EVENTS,
    CLK_N_EQUITY_LOG,
    CLK_N_FILL_LOG,
    CLK_N_OPEN,
    CLK_N_ORDER_LOG,
    Ctx,
    copy_context,
    new_context,
)
from .errors import TickwiseError
from .instruments import Instruments
from .killswitch import (
    blocked_resume,
    external_trip_nb,
    guard_status,
    person_halt_nb,
    resume_nb,
    strategy_fault_nb,
)
from .loops import compiled_loop
from .portfolio import total_pnl
from .schemas import KINDS, STATE_ACTIVE, STATE_HALTED, STATE_NAMES, TRIP_NAMES, market_dtype
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
        size = self.ctx.market.size
        self.state = strategy.new_state(size, self.params)
        self._p = named("Params", list(self.params))(**self.params)
        self._st = named("State", list(self.state))(**self.state)
        self._subscribed = self._subscriptions(size)
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

    def warm_up(self, kinds: tuple[str, ...] = KINDS) -> None:
        """Compile (or load from cache) the loop for these kinds (all by default: a live feed
        may send any), on a throwaway copy of the state, so no event pays for compilation."""
        ctx = copy_context(self.ctx)
        st = type(self._st)(**{k: v.copy() for k, v in self.state.items()})
        for kind in kinds:
            dtype = market_dtype(kind)
            empty = [np.empty(0, dtype=dtype.fields[n][0]) for n in dtype.names]
            for column in empty:  # batches arrive as read-only views of Arrow buffers
                column.flags.writeable = False
            self._runners[kind](ctx, st, self._p, self._subscribed, 0, *empty)

    def on_batch(self, kind: str, batch: pa.RecordBatch | Mapping[str, np.ndarray]) -> BatchResult:
        """Run the loop over one batch of `kind` rows (an Arrow batch or column arrays)."""
        if kind not in self._runners:
            raise TickwiseError(f"unknown data kind {kind!r}; expected one of {', '.join(KINDS)}")
        dtype = market_dtype(kind)
        if isinstance(batch, pa.RecordBatch):
            args = [batch.column(n).to_numpy(zero_copy_only=True) for n in dtype.names]
        else:
            args = [_readonly(batch[n], dtype.fields[n][0]) for n in dtype.names]
        run = self._runners[kind]
        rows = len(args[0])
        orders, fills, equity, marks = [], [], [], []
        start = 0
        redone = -1
        while True:
            events_before = int(self.ctx.clock[CLK_EVENTS])
            try:
                start = run(self.ctx, self._st, self._p, self._subscribed, start, *args)
            except Exception as exc:  # raised inside the strategy: halt, then go on
                # The row whose event was under way (a timer raises before its event counts).
                failed_at = start + int(self.ctx.clock[CLK_EVENTS]) - events_before - 1
                self.fault = f"{type(exc).__name__}: {exc} (at row {failed_at} of a {kind} batch)"
                strategy_fault_nb(self.ctx)
                # Go on from the next row, or redo the row whose timer raised (the timer does
                # not fire twice); a row that raises again is passed over.
                retry = failed_at + 1
                start = retry if retry > redone else retry + 1
                redone = retry
            orders.append(self._drain(self.ctx.order_log, CLK_N_ORDER_LOG))
            fills.append(self._drain(self.ctx.fill_log, CLK_N_FILL_LOG))
            marks.append(self.ctx.mark_log[: self.ctx.clock[CLK_N_EQUITY_LOG]].copy())
            equity.append(self._drain(self.ctx.equity_log, CLK_N_EQUITY_LOG))
            if start >= rows:
                break
        return BatchResult(rows, _joined(orders), _joined(fills), _joined(equity), _joined(marks))

    # --- a person's controls -----------------------------------------------------------------

    def halt(self, instrument: int | None = None, state: str = "halted") -> None:
        """A person halts the session (or one instrument): no automated order leaves, resting
        orders are cancelled now; `state="reducing"` lets position-reducing orders pass."""
        target = _state_code(state)
        if target == STATE_ACTIVE:
            raise TickwiseError("halt to 'halted' or 'reducing'; to trade again, resume")
        # The cancels it sends are in the order log, returned with the next batch's events.
        person_halt_nb(self.ctx, -1 if instrument is None else self._instrument(instrument), target)

    def resume(self, instrument: int | None = None, state: str = "active") -> None:
        """A person resumes trading (to ACTIVE, or REDUCING). Refused, saying why, while the
        condition that tripped the kill switch persists."""
        target = _state_code(state)
        if target == STATE_HALTED:
            raise TickwiseError("resume to 'active' or 'reducing'")
        blocked = blocked_resume(self.ctx)
        if blocked:
            raise TickwiseError(f"cannot resume: {blocked}")
        resume_nb(self.ctx, -1 if instrument is None else self._instrument(instrument), target)
        self.fault = None

    def status(self) -> dict[str, Any]:
        """The trading state and, after a trip, what tripped it, when and by how much."""
        return guard_status(self.ctx, self.instruments, self.fault)

    def trip(self, cause: str, value: float, limit: float, instrument: int | None = None) -> None:
        """Trip the kill switch for a condition seen outside the loop (e.g. `stale_feed` from
        the live feed's clock, `seq_gap` from the wire): nothing if that trigger is off."""
        codes = {name: code for code, name in TRIP_NAMES.items()}
        if cause not in codes:
            raise TickwiseError(f"unknown kill-switch trigger {cause!r}")
        where = -1 if instrument is None else self._instrument(instrument)
        external_trip_nb(self.ctx, codes[cause], where, float(value), float(limit))

    def blocked_resume(self) -> str:
        """Why a resume would be refused now ('' when it would not)."""
        return blocked_resume(self.ctx)

    def pnl(self) -> float:
        """Session PnL now: realised + marked to the mid (or last trade) - fees."""
        return float(total_pnl(self.ctx))

    @property
    def events(self) -> int:
        """Market events processed since the session began."""
        return int(self.ctx.clock[CLK_EVENTS])

    @property
    def open_orders(self) -> int:
        """Orders resting (or on their way) now."""
        return int(self.ctx.clock[CLK_N_OPEN])

    def _instrument(self, instrument: int) -> int:
        try:
            return self.instruments[instrument].id
        except KeyError:
            raise TickwiseError(f"no instrument {instrument!r} in this session") from None

    def _drain(self, log: np.ndarray, slot: int) -> np.ndarray:
        n = int(self.ctx.clock[slot])
        if n >= log.size:
            raise StrategyError(
                f"{self.strategy.name()} sent more than {log.size} orders or fills while "
                "handling a single event; the session stopped rather than lose any"
            )
        self.ctx.clock[slot] = 0
        return log[:n].copy()

    def snapshot(self) -> Snapshot:
        """Copy the session's state (restore it with `restore`)."""
        return Snapshot(copy_context(self.ctx), {k: v.copy() for k, v in self.state.items()})

    def restore(self, snap: Snapshot) -> None:
        """Put back a snapshot: the session continues exactly as it would have from it."""
        for live, saved in zip(self.ctx, snap.ctx, strict=True):
            live[...] = saved
        for name, arr in self.state.items():
            arr[...] = snap.state[name]


def _state_code(name: str) -> int:
    codes = {v: k for k, v in STATE_NAMES.items()}
    if name not in codes:
        raise TickwiseError(f"unknown trading state {name!r}; use {', '.join(codes)}")
    return codes[name]


def _readonly(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A contiguous read-only view of the right dtype: the loop is compiled for exactly that."""
    view = np.ascontiguousarray(values, dtype=dtype).view()
    view.flags.writeable = False
    return view


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
