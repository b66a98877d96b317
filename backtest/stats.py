"""Per-trade statistics of a backtest (compiled: fills can number millions)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def round_trip_pnls(instrument, side, qty, price, fee, n_instruments):
    """PnL of each round trip (flat, open, back to flat) per instrument, fees included,
    in the order they close. Average-price accounting, as in the engine's portfolio."""
    pos = np.zeros(n_instruments)
    avg = np.zeros(n_instruments)
    trip = np.zeros(n_instruments)
    out = np.empty(instrument.size)
    n = 0
    for k in range(instrument.size):
        i = instrument[k]
        q = qty[k] * side[k]
        trip[i] -= fee[k]
        if pos[i] == 0.0 or (pos[i] > 0.0) == (q > 0.0):
            new = pos[i] + q
            avg[i] = (avg[i] * abs(pos[i]) + price[k] * abs(q)) / abs(new)
            pos[i] = new
            continue
        closed = min(abs(q), abs(pos[i]))
        trip[i] += closed * (price[k] - avg[i]) * (1.0 if pos[i] > 0.0 else -1.0)
        pos[i] += q
        if abs(pos[i]) <= 1e-12:
            pos[i] = 0.0
        if pos[i] == 0.0 or abs(q) > closed:
            out[n] = trip[i]
            n += 1
            trip[i] = 0.0
            if abs(q) > closed:
                avg[i] = price[k]  # flipped through flat: a new trip opens here
    return out[:n]
