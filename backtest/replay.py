"""Deterministic replay: a strategy over a Parquet history through the compiled loop.

A backtest is a pure function of (data, strategy, parameters, configuration):
the history streams in its global order, batch by batch, through one
`Session`, and everything it produced (order events, fills, the equity curve
sampled in event time) is collected for `backtest.results`.
"""

from __future__ import annotations

import math
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from tickwise.engine.errors import TickwiseError
from tickwise.engine.limits import (
    KillSwitch,
    RiskLimits,
    killswitch_from_table,
    risk_from_table,
)
from tickwise.engine.session import Session
from tickwise.engine.strategy import Strategy, load_strategy
from tickwise.feeds.history import History, open_history


@dataclass(frozen=True)
class BacktestConfig:
    """How a backtest runs (the `[backtest]` table of a config file)."""

    batch_size: int = 65_536  # rows per batch; results do not depend on it
    maker_fee_bps: float = 0.0  # fee on passive fills, basis points of notional
    taker_fee_bps: float = 0.0  # fee on aggressive fills
    maker_fee_per_unit: float = 0.0  # plus this much per unit of quantity (passive fills)
    taker_fee_per_unit: float = 0.0  # and on aggressive fills
    equity_every_ms: float = 1_000.0  # equity curve sampling step, in event time
    # Orders leave when the strategy sees the event (its ts_recv) and reach the exchange
    # order_latency_us later, plus up to latency_jitter_us drawn per order from latency_seed.
    order_latency_us: float = 0.0
    latency_jitter_us: float = 0.0
    latency_seed: int = 0
    # The strategy sees each event feed_latency_us after its ts_event; -1: at the data's
    # own ts_recv (the default: recorded data carry when they were received).
    feed_latency_us: float = -1.0
    risk: RiskLimits = field(default_factory=RiskLimits)  # the [risk] table
    killswitch: KillSwitch = field(default_factory=KillSwitch)  # the [killswitch] table

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= 10_000_000:
            raise TickwiseError(f"batch_size must be in 1..10000000, got {self.batch_size}")
        for name in ("maker_fee_bps", "taker_fee_bps"):
            value = getattr(self, name)
            if not (math.isfinite(value) and -100.0 <= value <= 1_000.0):
                raise TickwiseError(f"{name} must be in [-100, 1000] bps, got {value}")
        if not (math.isfinite(self.equity_every_ms) and self.equity_every_ms > 0):
            raise TickwiseError(f"equity_every_ms must be positive, got {self.equity_every_ms}")
        for name in ("maker_fee_per_unit", "taker_fee_per_unit"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise TickwiseError(f"{name} must be a finite amount per unit, got {value}")
        if not (self.feed_latency_us == -1.0 or 0.0 <= self.feed_latency_us <= 60e6):
            raise TickwiseError(
                f"feed_latency_us must be in [0, 60000000] us, or -1 to use the data's ts_recv; "
                f"got {self.feed_latency_us}"
            )
        for name in ("order_latency_us", "latency_jitter_us"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 60e6):
                raise TickwiseError(f"{name} must be in [0, 60000000] us, got {value}")
        if not 0 <= self.latency_seed < 2**63:
            raise TickwiseError(f"latency_seed must be in 0..2**63-1, got {self.latency_seed}")


def load_config(path: Path) -> tuple[BacktestConfig, dict[str, Any]]:
    """Read a TOML file: `[backtest]` settings and `[params]` strategy parameters."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise TickwiseError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise TickwiseError(f"{path}: not valid TOML: {exc}") from None
    unknown_tables = sorted(set(raw) - {"backtest", "params", "risk", "killswitch", "live"})
    if unknown_tables:
        raise TickwiseError(
            f"{path}: unknown tables {unknown_tables}; use [backtest], [params], [risk], "
            "[killswitch] (and [live] for a live session)"
        )
    settings = raw.get("backtest", {})
    allowed = {f.name for f in fields(BacktestConfig)} - {"risk", "killswitch"}
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise TickwiseError(
            f"{path}: unknown [backtest] keys {unknown}; allowed: {', '.join(sorted(allowed))}"
        )
    risk = risk_from_table(raw.get("risk", {}), f"{path}: [risk]")
    kill = killswitch_from_table(raw.get("killswitch", {}), f"{path}: [killswitch]")
    try:
        config = BacktestConfig(**settings, risk=risk, killswitch=kill)
    except TypeError as exc:
        raise TickwiseError(f"{path}: {exc}") from None
    return config, dict(raw.get("params", {}))


@dataclass
class Backtest:
    """What a replay produced."""

    strategy: type[Strategy]
    params: dict[str, Any]
    config: BacktestConfig
    history: History
    session: Session
    orders: np.ndarray
    fills: np.ndarray
    equity: np.ndarray
    marks: np.ndarray  # each instrument's mark (mid, or last price) at the equity samples
    events: int = 0
    wall_s: float = 0.0  # the whole run, from opening the data
    warmup_s: float = 0.0  # of which compiling or loading the loop


def make_session(
    strategy: type[Strategy],
    instruments: Any,
    params: Mapping[str, Any] | None,
    config: BacktestConfig,
    *,
    guarded: bool = True,
    **options: Any,
) -> Session:
    """A session with the configuration's fees, latency models, limits and kill switch (the
    same for a backtest, a live session and the paper exchange); `options` go to the
    engine context."""
    return Session(
        strategy,
        instruments,
        params,
        guarded=guarded,
        maker_fee_bps=config.maker_fee_bps,
        taker_fee_bps=config.taker_fee_bps,
        maker_fee_per_unit=config.maker_fee_per_unit,
        taker_fee_per_unit=config.taker_fee_per_unit,
        sample_ns=options.pop("sample_ns", round(config.equity_every_ms * 1_000_000)),
        order_latency_ns=round(config.order_latency_us * 1_000),
        latency_jitter_ns=round(config.latency_jitter_us * 1_000),
        latency_seed=config.latency_seed,
        feed_latency_ns=-1 if config.feed_latency_us < 0 else round(config.feed_latency_us * 1e3),
        **{"risk": config.risk, "killswitch": config.killswitch, **options},
    )


def run_backtest(
    strategy_spec: str,
    data: str | Path,
    params: Mapping[str, Any] | None = None,
    config: BacktestConfig | None = None,
    on_events: Callable[[int], None] | None = None,
) -> Backtest:
    """Replay `data` through the strategy; wall time counts everything from opening the data."""
    began = time.perf_counter()
    config = config or BacktestConfig()
    strategy = load_strategy(strategy_spec)
    history = open_history(data)
    if history.kind not in strategy.kinds:
        raise TickwiseError(
            f"{strategy.name()} trades on {', '.join(strategy.kinds)} data; "
            f"{history.path} holds {history.kind}"
        )
    session = make_session(strategy, history.instruments, params, config)
    warm = time.perf_counter()
    session.warm_up((history.kind,))
    warmup_s = time.perf_counter() - warm
    orders, fills, equity, marks = [], [], [], []
    events = 0
    for batch in history.batches(config.batch_size):
        result = session.on_batch(history.kind, batch)
        orders.append(result.orders)
        fills.append(result.fills)
        equity.append(result.equity)
        marks.append(result.marks)
        events += result.events
        if on_events:
            on_events(result.events)
    ctx = session.ctx
    return Backtest(
        strategy=strategy,
        params=session.params,
        config=config,
        history=history,
        session=session,
        orders=np.concatenate([ctx.order_log[:0], *orders]),
        fills=np.concatenate([ctx.fill_log[:0], *fills]),
        equity=np.concatenate([ctx.equity_log[:0], *equity]),
        marks=np.concatenate([ctx.mark_log[:0], *marks]),
        events=events,
        wall_s=time.perf_counter() - began,
        warmup_s=warmup_s,
    )
