"""sma_cross: fast/slow simple-moving-average crossover on the quote mid or the bar close.

Signals, exactly: the price is the mid `(bid_px + ask_px) / 2` of each quote
(or the close of each bar). Each moving average is the mean of the last
`fast` (or `slow`) prices, including the current one; nothing is decided until
the slow window is full. A cross up is `fast > slow` after `fast <= slow` at
the previous price of the same instrument; a cross down is `fast < slow`
after `fast >= slow`. Equal averages are never a cross, and equal is equal in
exact arithmetic on the tick grid (windows of prices), not as rounding has it.
On a cross up the target position is `+qty`; on a cross down `0`, or `-qty`
with `long_short`. The difference between the target and the position
(counting orders still working) is sent as a market order: on quotes it meets
the market when it reaches the exchange (with no order latency, the quote of
the decision); on bars it fills at the next bar's open (next-open: a bar is seen
at its close).
"""

from __future__ import annotations

import numpy as np

from tickwise import (
    Param,
    PerInstrument,
    Rolling,
    Strategy,
    kernel,
    rolling_full,
    rolling_mean,
    rolling_push,
    trade_to,
)


@kernel
def _step(ctx, i, price, st, p):
    rolling_push(st.fast, i, price)
    rolling_push(st.slow, i, price)
    if not rolling_full(st.slow, i):
        return
    diff = rolling_mean(st.fast, i) - rolling_mean(st.slow, i)
    prev = st.prev_diff[i]
    st.prev_diff[i] = diff
    if prev != prev:  # first full window: nothing to compare with yet
        return
    target = np.nan
    if diff > 0.0 and prev <= 0.0:
        target = p.qty
    elif diff < 0.0 and prev >= 0.0:
        target = -p.qty if p.long_short else 0.0
    if target == target:
        trade_to(ctx, i, target)


@kernel
def on_quote(ctx, q, st, p):
    _step(ctx, q.instrument, 0.5 * (q.bid_px + q.ask_px), st, p)


@kernel
def on_bar(ctx, b, st, p):
    _step(ctx, b.instrument, b.close, st, p)


class SmaCross(Strategy):
    """Fast/slow moving-average crossover on the quote mid or bar close; long/flat or long/short."""

    params = {
        "fast": Param(10, 1, 100_000, "prices in the fast average"),
        "slow": Param(30, 2, 100_000, "prices in the slow average"),
        "qty": Param(1.0, 0.0, None, "position size when in the market"),
        "long_short": Param(False, doc="go short on a cross down instead of flat"),
    }
    state = {
        "fast": Rolling("fast", prices=True),
        "slow": Rolling("slow", prices=True),
        "prev_diff": PerInstrument(float, fill=np.nan),
    }
    kinds = ("quotes", "bars")
    on_quote = on_quote
    on_bar = on_bar

    @classmethod
    def check_params(cls, params):
        if params["fast"] >= params["slow"]:
            return f"fast ({params['fast']}) must be shorter than slow ({params['slow']})"
        if params["qty"] <= 0:
            return f"qty must be positive, got {params['qty']}"
        return None
