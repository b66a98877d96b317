"""tickwise: a low-latency trading and decision engine. `import tickwise as tw`.

ZeroMQ market data drive Numba-compiled strategy kernels over Arrow buffers; a
deterministic backtester replays Parquet history through the same kernels; a
kill switch halts automated orders on abnormal conditions.

This module is the strategy author's whole surface: the `Strategy` class and
its declarations, `kernel` for compiled callbacks, every helper a callback
calls (market, orders, portfolio, rolling windows, trading state), and
`run_backtest` and `sweep` with their configuration. Everything else is internal and may
move. Names load on first use, so the command line (`tickwise status`, a
kill) starts without importing the compiler; static tools read the imports
below as they are written.
"""

from __future__ import annotations

import importlib
from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any

from tickwise.engine import caches as _caches

__version__ = _metadata.version("tickwise")  # one source: pyproject.toml

# Before anything of ours compiles: Numba's cache goes to the user's cache folder.
_caches.use_own_numba_cache()

if TYPE_CHECKING:
    from tickwise.backtest.replay import Backtest, run_backtest
    from tickwise.backtest.sweep import Sweep, sweep
    from tickwise.engine.config import SessionConfig, load_config
    from tickwise.engine.errors import DataError, TickwiseError
    from tickwise.engine.indicators import (
        rolling_count,
        rolling_full,
        rolling_max,
        rolling_mean,
        rolling_min,
        rolling_push,
        rolling_std,
        rolling_zscore,
    )
    from tickwise.engine.jit import kernel
    from tickwise.engine.limits import KillSwitch, RiskLimits
    from tickwise.engine.market import (
        ask_size,
        best_ask,
        best_bid,
        bid_size,
        book_imbalance,
        book_level,
        book_levels,
        last_price,
        lot_size,
        mid_price,
        round_to_tick,
        tick_size,
    )
    from tickwise.engine.orders import (
        buy,
        cancel,
        cancel_all,
        is_open,
        net_position,
        now,
        open_orders,
        sell,
        trade_to,
        working_qty,
    )
    from tickwise.engine.portfolio import (
        avg_price,
        pnl,
        position,
        realized_pnl,
        unrealized_pnl,
    )
    from tickwise.engine.schemas import (
        SIDE_BUY,
        SIDE_SELL,
        STATE_ACTIVE,
        STATE_HALTED,
        STATE_REDUCING,
    )
    from tickwise.engine.states import trading_state
    from tickwise.engine.strategy import (
        GTC,
        IOC,
        Param,
        PerInstrument,
        Rolling,
        Scalar,
        Strategy,
        StrategyError,
        load_strategy,
        registered,
    )

# Where the public names live: the imports above, for the loader below (a test pins that
# the two and `__all__` name the same things).
_MODULES: dict[str, tuple[str, ...]] = {
    "tickwise.backtest.replay": ("Backtest", "run_backtest"),
    "tickwise.backtest.sweep": ("Sweep", "sweep"),
    "tickwise.engine.config": ("SessionConfig", "load_config"),
    "tickwise.engine.errors": ("DataError", "TickwiseError"),
    "tickwise.engine.indicators": (
        "rolling_count", "rolling_full", "rolling_max", "rolling_mean", "rolling_min",
        "rolling_push", "rolling_std", "rolling_zscore",
    ),
    "tickwise.engine.jit": ("kernel",),
    "tickwise.engine.limits": ("KillSwitch", "RiskLimits"),
    "tickwise.engine.market": (
        "ask_size", "best_ask", "best_bid", "bid_size", "book_imbalance", "book_level",
        "book_levels", "last_price", "lot_size", "mid_price", "round_to_tick", "tick_size",
    ),
    "tickwise.engine.orders": (
        "buy", "cancel", "cancel_all", "is_open", "net_position", "now", "open_orders", "sell",
        "trade_to", "working_qty",
    ),
    "tickwise.engine.portfolio": (
        "avg_price", "pnl", "position", "realized_pnl", "unrealized_pnl",
    ),
    "tickwise.engine.states": ("trading_state",),
    "tickwise.engine.schemas": (
        "SIDE_BUY", "SIDE_SELL", "STATE_ACTIVE", "STATE_HALTED", "STATE_REDUCING",
    ),
    "tickwise.engine.strategy": (
        "GTC", "IOC", "Param", "PerInstrument", "Rolling", "Scalar", "Strategy",
        "StrategyError", "load_strategy", "registered",
    ),
}  # fmt: skip
_HOME = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "GTC",
    "IOC",
    "SIDE_BUY",
    "SIDE_SELL",
    "STATE_ACTIVE",
    "STATE_HALTED",
    "STATE_REDUCING",
    "Backtest",
    "DataError",
    "KillSwitch",
    "Param",
    "PerInstrument",
    "RiskLimits",
    "Rolling",
    "Scalar",
    "SessionConfig",
    "Strategy",
    "StrategyError",
    "Sweep",
    "TickwiseError",
    "ask_size",
    "avg_price",
    "best_ask",
    "best_bid",
    "bid_size",
    "book_imbalance",
    "book_level",
    "book_levels",
    "buy",
    "cancel",
    "cancel_all",
    "is_open",
    "kernel",
    "last_price",
    "load_config",
    "load_strategy",
    "lot_size",
    "mid_price",
    "net_position",
    "now",
    "open_orders",
    "pnl",
    "position",
    "realized_pnl",
    "registered",
    "rolling_count",
    "rolling_full",
    "rolling_max",
    "rolling_mean",
    "rolling_min",
    "rolling_push",
    "rolling_std",
    "rolling_zscore",
    "round_to_tick",
    "run_backtest",
    "sell",
    "sweep",
    "tick_size",
    "trade_to",
    "trading_state",
    "unrealized_pnl",
    "working_qty",
]


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use (PEP 562)."""
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'tickwise' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # once loaded, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
