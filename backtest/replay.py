"""Deterministic replay: a strategy over a Parquet history through the compiled loop.

A backtest is a pure function of (data, strategy, parameters, configuration):
the history streams in its global order, batch by batch, through one
`Session`, and everything it produced (order events, fills, the equity curve
sampled in event time) is collected for `backtest.results`.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tickwise.engine.config import SessionConfig, make_session
from tickwise.engine.errors import TickwiseError
from tickwise.engine.schemas import join_records
from tickwise.engine.session import Session
from tickwise.engine.strategy import Strategy, load_strategy
from tickwise.feeds.history import History
from tickwise.feeds.merged import MergedHistory, open_data


@dataclass
class Backtest:
    """What a replay produced."""

    strategy: type[Strategy]
    params: dict[str, Any]
    config: SessionConfig
    history: History | MergedHistory
    session: Session
    orders: np.ndarray
    fills: np.ndarray
    equity: np.ndarray
    marks: np.ndarray  # each instrument's mark (mid, or last price) at the equity samples
    events: int = 0
    ts_first: int | None = None  # the first and last event replayed (ns)
    ts_last: int | None = None
    start: int | None = None  # the window asked for: start <= ts_event < end (ns)
    end: int | None = None
    wall_s: float = 0.0  # the whole run, from opening the data
    warmup_s: float = 0.0  # of which compiling or loading the loop
    setup_s: float = 0.0  # of which everything before the first batch (session, warm-up)


def _when(ns: int | None) -> str:
    """A window's bound for people: ISO 8601 in UTC, or 'open' when there is none."""
    if ns is None:
        return "open"
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC).isoformat()


def run_backtest(
    strategy_spec: str,
    data: str | Path | Sequence[str | Path],
    params: Mapping[str, Any] | None = None,
    config: SessionConfig | None = None,
    on_events: Callable[[int], None] | None = None,
    on_compile: Callable[[str], AbstractContextManager[None]] | None = None,
    start: int | None = None,
    end: int | None = None,
) -> Backtest:
    """Replay `data` (its rows with `start` <= ts_event < `end`, ns, when given) through the
    strategy; wall time counts everything from opening the data. Several data sets (paths,
    or a folder whose entries hold different kinds) replay merged in one global order
    (feeds.merged). `on_events(n)` follows the progress; `on_compile(name)` wraps loading
    or compiling the strategy's loop (engine.console.compile_notice says so when it takes a
    while)."""
    began = time.perf_counter()
    strategy = load_strategy(strategy_spec)
    history = open_data(data)
    check_data(strategy, history)
    return replay(strategy, history, params, config, on_events=on_events,
                  on_compile=on_compile, start=start, end=end, began=began)  # fmt: skip


def check_data(strategy: type[Strategy], history: History | MergedHistory) -> None:
    """Refuse data the strategy cannot run on: no rows, or none of the kinds it trades on."""
    if history.rows == 0:
        raise TickwiseError(f"{history.path} holds no rows: nothing to replay")
    kinds = history.kinds if isinstance(history, MergedHistory) else (history.kind,)
    held = {h.kind for h in getattr(history, "histories", (history,)) if h.rows > 0}
    if not held & set(strategy.kinds):
        raise TickwiseError(
            f"{strategy.name()} trades on {', '.join(strategy.kinds)} data; "
            f"{history.path} holds rows of {' + '.join(k for k in kinds if k in held)}"
        )


def replay(
    strategy: type[Strategy],
    history: History | MergedHistory,
    params: Mapping[str, Any] | None = None,
    config: SessionConfig | None = None,
    *,
    on_events: Callable[[int], None] | None = None,
    on_compile: Callable[[str], AbstractContextManager[None]] | None = None,
    start: int | None = None,
    end: int | None = None,
    began: float | None = None,
) -> Backtest:
    """`run_backtest` on a strategy already loaded and data already opened (checked by
    `check_data`): a sweep's worker loads both once and replays many trials. `began`
    (perf_counter) is when the run's wall clock starts (now by default)."""
    began = time.perf_counter() if began is None else began
    config = config or SessionConfig()
    merged = isinstance(history, MergedHistory)
    kinds = history.kinds if merged else (history.kind,)
    session = make_session(strategy, history.instruments, params, config)
    warm = time.perf_counter()
    with on_compile(strategy.name()) if on_compile else nullcontext():
        session.warm_up(kinds, merged=merged)
    warmup_s = time.perf_counter() - warm
    setup_s = time.perf_counter() - began
    orders, fills, equity, marks = [], [], [], []
    events = 0
    first = last = None
    for batch in history.batches(config.batch_size, start, end):
        if merged:
            ts = batch.ts_event
            result = session.on_merged(batch.parts, batch.kinds, batch.rows)
        else:
            ts = batch.column("ts_event").to_numpy()
            result = session.on_batch(history.kind, batch)
        first = int(ts[0]) if first is None else first
        last = int(ts[-1])
        orders.append(result.orders)
        fills.append(result.fills)
        equity.append(result.equity)
        marks.append(result.marks)
        events += result.events
        if on_events:
            on_events(result.events)
    if events == 0:
        raise TickwiseError(
            f"{history.path} holds no rows in the window [{_when(start)}, {_when(end)}) "
            "(ts_event, UTC): nothing to replay"
        )
    ctx = session.ctx
    return Backtest(
        strategy=strategy,
        params=session.params,
        config=config,
        history=history,
        session=session,
        orders=join_records(orders, ctx.order_log.dtype),
        fills=join_records(fills, ctx.fill_log.dtype),
        equity=join_records(equity, ctx.equity_log.dtype),
        marks=np.concatenate([ctx.mark_log[:0], *marks]),
        events=events,
        ts_first=first,
        ts_last=last,
        start=start,
        end=end,
        wall_s=time.perf_counter() - began,
        warmup_s=warmup_s,
        setup_s=setup_s,
    )
