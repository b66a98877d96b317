"""Per-trade statistics of a backtest (compiled: fills can number millions)."""

from __future__ import annotations

import numpy as np
from numba import njit

from tickwise.engine.quantities import whole_lots_of


@njit(cache=True)
def round_trip_pnls(instrument, side, lots, lot, price, fee, n_instruments):
    """PnL of each round trip (flat, open, back to flat) per instrument, fees included,
    in the order they close. Fills in whole lots (`lot`: each instrument's, by id), so flat
    is exactly flat. Average-price accounting, as in the engine's portfolio."""
    pos = np.zeros(n_instruments, np.int64)
    avg = np.zeros(n_instruments)
    trip = np.zeros(n_instruments)
    out = np.empty(instrument.size)
    n = 0
    for k in range(instrument.size):
        i = instrument[k]
        q = lots[k] * side[k]
        trip[i] -= fee[k]
        if pos[i] == 0 or (pos[i] > 0) == (q > 0):
            new = pos[i] + q
            avg[i] = (avg[i] * abs(pos[i]) + price[k] * abs(q)) / abs(new)
            pos[i] = new
            continue
        closed = min(abs(q), abs(pos[i]))
        trip[i] += closed * lot[i] * (price[k] - avg[i]) * (1.0 if pos[i] > 0 else -1.0)
        pos[i] += q
        if pos[i] == 0 or abs(q) > closed:
            out[n] = trip[i]
            n += 1
            trip[i] = 0.0
            if abs(q) > closed:
                avg[i] = price[k]  # flipped through flat: a new trip opens here
    return out[:n]


def fill_lots(fills: np.ndarray, lot_sizes: np.ndarray) -> np.ndarray:
    """Each fill's quantity in whole lots of its instrument (`lot_sizes` by id)."""
    lots = whole_lots_of(fills["qty"], lot_sizes[fills["instrument"].astype(np.int64)])
    if lots.size and lots.min() < 1:
        k = int(np.argmin(lots))
        raise ValueError(f"fill {k} of {fills['qty'][k]!r} is no whole number of lots")
    return lots
