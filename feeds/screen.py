"""The live boundary of market data: every row a receiver takes off the wire is checked, in bulk
per batch, before any kernel sees it.

A row is bad when its instrument id is not in the receiver's table (a kernel
would index its arrays with it), its values break the data contract (the
same rules a history file must keep: `validation_kernels.quote_fault`, ...),
or its ts_event lies outside the window of time the receiver accepts
(`ts_window`). Bad rows are counted by reason and dropped; the good ones go
on in their order. A message of a kind that is not market data at all (an
`orders` batch on a feed) is bad as a whole (`wrong_kind`).

One compiled pass per batch marks each row's fault; a batch with nothing
wrong (the usual one) goes on as it came, without a copy.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Mapping
from typing import Any

import numpy as np

from tickwise.engine.instruments import Instruments
from tickwise.engine.schemas import MARKET_DTYPES

from . import validation_kernels as vk

WRONG_KIND = "wrong_kind"  # a whole message that is not market data
SAMPLES_KEPT = 5  # bad rows kept (with their values) per reason, for the journal

_SCREENS = {
    "quotes": vk.screen_quotes_nb,
    "trades": vk.screen_trades_nb,
    "bars": vk.screen_bars_nb,
    "book": vk.screen_book_nb,
}
# The columns each kind's screen takes after (known, ts_lo, ts_hi, fault), in order.
_ARGUMENTS = {
    "quotes": ("ts_event", "instrument", "bid_px", "ask_px", "bid_sz", "ask_sz"),
    "trades": ("ts_event", "instrument", "px", "sz", "side"),
    "bars": ("ts_event", "instrument", "open", "high", "low", "close", "volume"),
    "book": ("ts_event", "instrument", "side", "px", "sz"),
}
# No row's ts_event may lie outside this, whatever the window: kernels add latencies and
# timer periods to it, and 2**62 ns (the year 2116) leaves room for any of them.
MAX_TS = 1 << 62


def ts_window(clock_ns: int, max_skew_ns: float, max_ahead_ns: float, *, wall_clock: bool,
              wall_now_ns: int | None = None) -> tuple[int, int]:  # fmt: skip
    """The ts_event values a receiver takes. On a live market's wall clock: from
    `max_skew_ns` before it to `max_ahead_ns` after it. On the data's own clock (a history
    replayed with its past times, whose next event may come any time later, or earlier when
    it starts over): anything up to `max_ahead_ns` past the wall clock, since a history
    cannot have happened after now. Always within (0, MAX_TS]; a bound of 0 is no bound."""
    ahead = int(min(max_ahead_ns, MAX_TS)) if max_ahead_ns else MAX_TS
    if not wall_clock:
        now = time.time_ns() if wall_now_ns is None else wall_now_ns
        return 1, min(now + ahead, MAX_TS)
    behind = int(min(max_skew_ns, MAX_TS)) if max_skew_ns else MAX_TS
    return max(clock_ns - behind, 1), min(clock_ns + ahead, MAX_TS)


class Screen:
    """Checks the market data one receiver takes; counts what it drops, by reason. The
    receiver's clock is the wall clock (`wall_clock`, a live market) or the data's own (a
    history replayed); rows outside the window around it are bad (`ts_window`)."""

    def __init__(self, instruments: Instruments, max_skew_ns: float = 0.0,
                 max_ahead_ns: float = 0.0, wall_clock: bool = True) -> None:  # fmt: skip
        self.max_skew_ns = max_skew_ns
        self.max_ahead_ns = max_ahead_ns
        self.wall_clock = wall_clock
        self.known = instruments.known_mask()
        self.rows = 0  # rows screened
        self.bad: Counter[str] = Counter()  # rows dropped, by reason
        # The latest bad rows, with their values, for the journal (a few per reason).
        self.samples: deque[dict[str, Any]] = deque(maxlen=SAMPLES_KEPT * len(vk.FAULT_NAMES))
        self._fault = np.empty(4_096, dtype=np.uint8)

    @property
    def dropped(self) -> int:
        """Rows dropped since the receiver began."""
        return sum(self.bad.values())

    def wrong_kind(self, schema: str, rows: int) -> None:
        """A whole message that is not market data: its rows counted as bad."""
        self.rows += rows
        self.bad[WRONG_KIND] += rows
        self.samples.append({"reason": WRONG_KIND, "schema": schema, "rows": rows})

    def good(self, kind: str, columns: Mapping[str, np.ndarray], clock_ns: int
             ) -> dict[str, np.ndarray]:  # fmt: skip
        """The rows of a `kind` batch that pass at `clock_ns` (the same arrays when all do)."""
        window = ts_window(clock_ns, self.max_skew_ns, self.max_ahead_ns,
                           wall_clock=self.wall_clock)  # fmt: skip
        rows = len(columns["ts_event"])
        self.rows += rows
        if rows > self._fault.size:
            self._fault = np.empty(max(rows, 2 * self._fault.size), dtype=np.uint8)
        fault = self._fault[:rows]
        args = [columns[name] for name in _ARGUMENTS[kind]]
        if _SCREENS[kind](self.known, window[0], window[1], fault, *args) == 0:
            return dict(columns)
        counts = np.bincount(fault, minlength=max(vk.FAULT_NAMES) + 1)
        for code, name in vk.FAULT_NAMES.items():
            if counts[code]:
                self.bad[name] += int(counts[code])
                self._sample(kind, columns, fault, code, name)
        keep = fault == vk.FAULT_NONE
        return {name: values[keep] for name, values in columns.items()}

    def _sample(self, kind: str, columns: Mapping[str, np.ndarray], fault: np.ndarray,
                code: int, name: str) -> None:  # fmt: skip
        for row in np.flatnonzero(fault == code)[:SAMPLES_KEPT].tolist():
            values = {n: _plain(columns[n][row]) for n in MARKET_DTYPES[kind].names}
            self.samples.append({"reason": name, "kind": kind, **values})


def _plain(value: Any) -> Any:
    """A numpy scalar as JSON can hold it (NaN and infinities as text)."""
    if isinstance(value, np.floating):
        return float(value) if np.isfinite(value) else str(value)
    return int(value)
