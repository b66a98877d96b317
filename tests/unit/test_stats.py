"""Round-trip statistics of a backtest, against hand-computed trades."""

from __future__ import annotations

import numpy as np

from tickwise.backtest.stats import fill_lots, round_trip_pnls
from tickwise.engine.schemas import FILL_DTYPE


def fills(rows):
    f = np.zeros(len(rows), dtype=FILL_DTYPE)
    for r, (inst, side, qty, px, fee) in zip(f, rows, strict=True):
        r["instrument"], r["side"], r["qty"], r["price"], r["fee"] = inst, side, qty, px, fee
    return f


def trips(f):
    lot = np.ones(4)
    return round_trip_pnls(f["instrument"].astype(np.int64), f["side"].astype(np.int64),
                           fill_lots(f, lot), lot, f["price"], f["fee"], 4).tolist()  # fmt: skip


def test_round_trips_with_scaling_in_partial_exits_fees_and_a_flip() -> None:
    f = fills([
        (0, 1, 2.0, 100.0, 0.1),   # open long 2 @100
        (0, 1, 2.0, 102.0, 0.1),   # add: long 4 @101
        (1, -1, 1.0, 50.0, 0.0),   # another instrument: short 1 @50
        (0, -1, 1.0, 105.0, 0.1),  # partial exit: +4
        (0, -1, 3.0, 99.0, 0.1),   # close: -6 -> trip = 4 - 6 - 0.4 fees = -2.4
        (1, 1, 1.0, 45.0, 0.0),    # close the short: +5
        (0, -1, 1.0, 99.0, 0.0),   # open short 1 @99
        (0, 1, 3.0, 98.0, 0.0),    # flip: short closes +1; long 2 @98 opens
        (0, -1, 2.0, 98.5, 0.0),   # close: +1
    ])  # fmt: skip
    np.testing.assert_allclose(trips(f), [-2.4, 5.0, 1.0, 1.0])


def test_an_open_position_is_not_a_trip() -> None:
    assert trips(fills([(0, 1, 1.0, 10.0, 0.0), (0, 1, 1.0, 11.0, 0.0)])) == []
