"""mean_reversion: trade the z-score of the quote mid against its rolling mean.

Signals, exactly: the price is the mid of each quote; `mean` and `std` are
the mean and population standard deviation of the last `window` mids,
including the current one; nothing is decided until the window is full or
while `std` is 0. `z = (mid - mean) / std`. Flat: buy `qty` when
`z < -entry_z`; sell `qty` short when `z > entry_z` (only with `allow_short`).
Long: close when `z > -exit_z`. Short: close when `z < exit_z`. Every
comparison is strict, and ties are decided as in exact arithmetic on the
tick grid (a window of prices): z exactly at a threshold is not beyond it, so
z = -entry_z does not buy, z = entry_z does not sell, a long holds at
z = -exit_z and a short at z = exit_z. Orders are market orders for the
difference between the target and the position counting orders still
working.
"""

from __future__ import annotations

from tickwise import (
    Param,
    Rolling,
    Strategy,
    kernel,
    net_position,
    rolling_full,
    rolling_push,
    rolling_zscore,
    trade_to,
)


@kernel
def on_quote(ctx, q, st, p):
    i = q.instrument
    mid = 0.5 * (q.bid_px + q.ask_px)
    rolling_push(st.window, i, mid)
    if not rolling_full(st.window, i):
        return
    z = rolling_zscore(st.window, i, mid)
    if z != z:  # the mids did not vary
        return
    net = net_position(ctx, i)
    target = net
    if net == 0.0:
        if z < -p.entry_z:
            target = p.qty
        elif z > p.entry_z and p.allow_short:
            target = -p.qty
    elif (net > 0.0 and z > -p.exit_z) or (net < 0.0 and z < p.exit_z):
        target = 0.0
    trade_to(ctx, i, target)


class MeanReversion(Strategy):
    """Buys mids far below their rolling mean (z-score), sells them back near it."""

    params = {
        "window": Param(100, 2, 1_000_000, "mids in the rolling mean and deviation"),
        "entry_z": Param(2.0, 0.0, 100.0, "enter beyond this many deviations"),
        "exit_z": Param(0.5, 0.0, 100.0, "exit once back within this many deviations"),
        "qty": Param(1.0, 0.0, None, "position size when in the market"),
        "allow_short": Param(True, doc="also sell short above the mean"),
    }
    state = {"window": Rolling("window", prices=True)}
    kinds = ("quotes",)
    on_quote = on_quote

    @classmethod
    def check_params(cls, params):
        if params["exit_z"] > params["entry_z"]:
            return f"exit_z ({params['exit_z']}) must not exceed entry_z ({params['entry_z']})"
        if params["qty"] <= 0:
            return f"qty must be positive, got {params['qty']}"
        return None
