"""A session's configuration, read once: `[backtest]`, `[risk]`, `[killswitch]` and `[live]`.

The same `SessionConfig` configures a backtest, a live session and the paper
exchange (fees, latency models, limits, the kill switch); `make_session` turns
it into a `Session`. A config file is TOML; every table and key is checked,
and a wrong one is an error naming the file, the table and what is allowed.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tickwise.engine.errors import TickwiseError
from tickwise.engine.limits import (
    KillSwitch,
    RiskLimits,
    killswitch_from_table,
    risk_from_table,
)
from tickwise.engine.session import Session
from tickwise.engine.strategy import Strategy

RETURNS_PERIODS = ("1d", "1w", "1mo")  # the periods statistics resample the equity curve to
CALENDARS = ("auto", "weekdays", "24/7")


@dataclass(frozen=True)
class LiveTable:
    """The `[live]` table: what a live session would otherwise take as flags (a flag given
    on the command line wins over the same key here); None where the file is silent."""

    strategy: str | None = None
    feed: str | None = None
    instruments: str | None = None
    gateway: str | None = None
    control: str | None = None
    journal: str | None = None
    seconds: float | None = None
    log_format: str | None = None  # text | json: the event lines on stderr
    log_file: str | None = None  # the same lines appended to this file
    on_event: str | None = None  # a shell command run with each event's JSON on stdin
    metrics: str | None = None  # HOST:PORT (loopback) to serve Prometheus metrics on


def live_from_table(table: Mapping[str, Any], where: str) -> LiveTable:
    """A `LiveTable` from a TOML table, every key and type checked."""
    allowed = {f.name for f in fields(LiveTable)}
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise TickwiseError(
            f"{where}: unknown keys {unknown}; allowed: {', '.join(sorted(allowed))}"
        )
    for key, value in table.items():
        if key == "seconds":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TickwiseError(f"{where}: seconds must be a number, got {value!r}")
        elif not isinstance(value, str):
            raise TickwiseError(f"{where}: {key} must be a string, got {value!r}")
    return LiveTable(**table)


@dataclass(frozen=True)
class SessionConfig:
    """How a session runs, backtest or live: the `[backtest]` settings (fees, latency
    models, batches, equity sampling), the `[risk]` limits, the `[killswitch]` and,
    for a live session, the `[live]` table; all read from one file by `load_config`."""

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
    # Statistics (backtest/statistics.py): returns over this period of the calendar ("1d",
    # "1w", "1mo", UTC), on the data's calendar ("auto": "24/7" when weekends hold a fifth
    # of the days with data, else "weekdays"), on this capital (None: on PnL changes in
    # price units, and what needs capital is not said).
    returns_period: str = "1d"
    calendar: str = "auto"
    capital: float | None = None
    risk: RiskLimits = field(default_factory=RiskLimits)  # the [risk] table
    killswitch: KillSwitch = field(default_factory=KillSwitch)  # the [killswitch] table
    live: LiveTable = field(default_factory=lambda: LiveTable())  # the [live] table

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
        if self.returns_period not in RETURNS_PERIODS:
            raise TickwiseError(
                f"returns_period must be one of {', '.join(RETURNS_PERIODS)}, "
                f"got {self.returns_period!r}"
            )
        if self.calendar not in CALENDARS:
            raise TickwiseError(
                f"calendar must be one of {', '.join(CALENDARS)}, got {self.calendar!r}"
            )
        capital = self.capital
        if capital is not None and (
            isinstance(capital, bool) or not isinstance(capital, int | float)
            or not (math.isfinite(capital) and capital > 0)
        ):  # fmt: skip
            raise TickwiseError(f"capital must be a positive amount, got {capital!r}")


def load_config(path: Path) -> tuple[SessionConfig, dict[str, Any]]:
    """Read a TOML file once: the session's configuration and the `[params]` of its strategy."""
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
    allowed = {f.name for f in fields(SessionConfig)} - {"risk", "killswitch", "live"}
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise TickwiseError(
            f"{path}: unknown [backtest] keys {unknown}; allowed: {', '.join(sorted(allowed))}"
        )
    risk = risk_from_table(raw.get("risk", {}), f"{path}: [risk]")
    kill = killswitch_from_table(raw.get("killswitch", {}), f"{path}: [killswitch]")
    live = live_from_table(raw.get("live", {}), f"{path}: [live]")
    try:
        config = SessionConfig(**settings, risk=risk, killswitch=kill, live=live)
    except TypeError as exc:
        raise TickwiseError(f"{path}: {exc}") from None
    except TickwiseError as exc:
        raise TickwiseError(f"{path}: [backtest]: {exc}") from None
    return config, dict(raw.get("params", {}))


def make_session(
    strategy: type[Strategy],
    instruments: Any,
    params: Mapping[str, Any] | None,
    config: SessionConfig,
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
        guarded=guarded and config.killswitch.enabled,
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
