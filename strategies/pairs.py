"""pairs: trade the spread between two instruments on its z-score.

Signals, exactly: at every quote of either leg, once both legs have a mid,
the spread is `mid(leg_a) - beta * mid(leg_b)`; `mean` and `std` are the mean
and population standard deviation of the last `window` spreads, including the
current one; nothing is decided until the window is full or while `std` is 0.
`z = (spread - mean) / std`. Flat: go short the spread (sell `qty` of leg a,
buy `beta * qty` of leg b, rounded to its lots) when `z > entry_z`; long the
spread (the opposite) when `z < -entry_z`. Long: close when `z > -exit_z`.
Short: close when `z < exit_z`. Each leg is brought to its target with a
market order for the difference from its position counting working orders.
"""

from __future__ import annotations

import numpy as np

from tickwise import (
    Param,
    Rolling,
    Scalar,
    Strategy,
    kernel,
    lot_size,
    mid_price,
    rolling_full,
    rolling_mean,
    rolling_push,
    rolling_std,
    trade_to,
)


@kernel
def on_quote(ctx, q, st, p):
    a = p.leg_a
    b = p.leg_b
    if q.instrument != a and q.instrument != b:
        return
    mid_a = mid_price(ctx, a)
    mid_b = mid_price(ctx, b)
    if not (mid_a == mid_a and mid_b == mid_b):
        return
    rolling_push(st.spread, 0, mid_a - p.beta * mid_b)
    if not rolling_full(st.spread, 0):
        return
    std = rolling_std(st.spread, 0)
    if std <= 0.0:
        return
    z = (mid_a - p.beta * mid_b - rolling_mean(st.spread, 0)) / std
    side = st.side[0]
    if side == 0:
        if z > p.entry_z:
            side = -1
        elif z < -p.entry_z:
            side = 1
    elif (side > 0 and z > -p.exit_z) or (side < 0 and z < p.exit_z):
        side = 0
    st.side[0] = side
    lot_b = lot_size(ctx, b)
    qty_b = np.round(p.beta * p.qty / lot_b) * lot_b
    trade_to(ctx, a, side * p.qty)
    trade_to(ctx, b, -side * qty_b)


class Pairs(Strategy):
    """Trades the spread of two instruments (a - beta * b) on its rolling z-score."""

    params = {
        "leg_a": Param(0, 0, None, "instrument id of the first leg"),
        "leg_b": Param(1, 0, None, "instrument id of the second leg"),
        "beta": Param(1.0, 0.0, None, "hedge ratio: units of b per unit of a"),
        "window": Param(100, 2, 1_000_000, "spreads in the rolling mean and deviation"),
        "entry_z": Param(2.0, 0.0, 100.0, "enter beyond this many deviations"),
        "exit_z": Param(0.5, 0.0, 100.0, "exit once back within this many deviations"),
        "qty": Param(1.0, 0.0, None, "quantity of leg a when in the market"),
    }
    state = {"spread": Rolling("window", per_instrument=False), "side": Scalar(int)}
    kinds = ("quotes",)
    on_quote = on_quote

    @classmethod
    def check_params(cls, params):
        if params["leg_a"] == params["leg_b"]:
            return "leg_a and leg_b must be different instruments"
        if params["exit_z"] > params["entry_z"]:
            return f"exit_z ({params['exit_z']}) must not exceed entry_z ({params['entry_z']})"
        if params["qty"] <= 0:
            return f"qty must be positive, got {params['qty']}"
        return None
