"""The pre-trade gate every order passes before it may leave (compiled).

Today it checks what makes an order meaningless whatever the limits: an
unknown instrument, a quantity that is not a positive whole number of lots,
a limit price that is not positive or off the tick grid. The configurable
limits of the risk issue (collars, sizes, exposure, throttles) join here.
"""

from __future__ import annotations

import numpy as np

from tickwise.engine.jit import kernel

from .schemas import (
    ORD_LIMIT,
    REASON_BAD_PRICE,
    REASON_BAD_QTY,
    REASON_NONE,
    REASON_UNKNOWN_INSTRUMENT,
)

_GRID_TOLERANCE = 1e-9  # relative: prices and lots are decimals held in binary floats


@kernel
def _on_grid(value, step):
    units = value / step
    return abs(units - np.round(units)) <= _GRID_TOLERANCE * max(1.0, abs(units))


@kernel
def check_order_nb(ctx, i, side, qty, price, order_type):
    """The reject reason of an order, or REASON_NONE when it may leave."""
    if i < 0 or i >= ctx.instruments.size or ctx.instruments[i].tick_size == 0.0:
        return REASON_UNKNOWN_INSTRUMENT
    inst = ctx.instruments[i]
    if not (qty > 0.0 and qty < np.inf) or not _on_grid(qty, inst.lot_size):
        return REASON_BAD_QTY
    if order_type == ORD_LIMIT and (
        not (price > 0.0 and price < np.inf) or not _on_grid(price, inst.tick_size)
    ):
        return REASON_BAD_PRICE
    return REASON_NONE
