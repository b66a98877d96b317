"""Quantities as whole lots: the engine's one conversion between units and lots.

Inside the kernels, positions, order sizes, working and filled quantities are int64
counts of the instrument's lot, so any sequence of fills that sums to zero leaves a
position of exactly 0, and no order for less than one lot can be made. A strategy still
speaks in units (`buy(ctx, i, 0.01)`, `trade_to(ctx, i, 2.5)`, `position(ctx, i)`), and
records (the order and fill logs, the wire, the journal, the result files) carry units:
the conversion happens here, once, where a quantity enters or leaves the kernels.

Why integer lots, and not a decimal fixed point or floats: a lot of 1e-8 (or 0.001, or
anything not a power of two) has no exact binary representation, so floats leave residue
(3.5e-18 after a few round trips, and orders of 1e-17 sent to close it); a fixed point
with a global scale must be chosen for the smallest lot of any instrument and overflows
sooner on the largest. Counting each instrument's own lot is exact, fast (integer adds)
and needs no scale.

A quantity in units is a whole number of lots when qty / lot is within
`1e-9 + 1e-15 x` of an integer x (decimals such as 0.01 and 1e-8 are not exact in
binary, and their quotient lands a few units of rounding off), up to `MAX_LOTS`, beyond
which the floats themselves can no longer tell one lot from the next.
"""

from __future__ import annotations

import numpy as np

from tickwise.engine.jit import kernel

MAX_LOTS = 2**46  # 7.0e13 lots in one order: 703,687 units at a lot of 1e-8 (the gate
#                   refuses larger orders as bad_qty)
_ABS_TOLERANCE = 1e-9  # lots
_REL_TOLERANCE = 1e-15  # of the number of lots: a few roundings of a float


@kernel
def whole_lots(qty, lot):
    """`qty` (units) as a whole number of lots (>= 1), or -1 when it is none: not positive,
    not finite, not a whole number of lots, or more than MAX_LOTS."""
    if not (qty > 0.0 and qty < np.inf) or not (lot > 0.0 and lot < np.inf):
        return np.int64(-1)
    x = qty / lot
    if not x <= MAX_LOTS:
        return np.int64(-1)
    n = np.round(x)
    if n < 1.0 or abs(x - n) > _ABS_TOLERANCE + _REL_TOLERANCE * x:
        return np.int64(-1)
    return np.int64(n)


@kernel
def lots_toward_zero(qty, lot):
    """`qty` (units, either sign, finite) as whole lots rounded toward zero (a quantity a
    hair below a whole number of lots, by float rounding, counts as that number), at most
    MAX_LOTS either way."""
    x = abs(qty) / lot
    if not x >= 0.0:  # (NaN: no quantity at all)
        return np.int64(0)
    n = min(np.floor(x + _ABS_TOLERANCE + _REL_TOLERANCE * x), float(MAX_LOTS))
    return np.int64(n) if qty >= 0.0 else -np.int64(n)


@kernel
def units(lots, inst):
    """`lots` of instrument `inst` (its INSTRUMENT_DTYPE record) in units, 0.0 exactly for
    0 lots. When the lot is 1/n of a unit (0.01, 1e-8) this is lots / n, the float nearest
    the decimal a person writes (3 lots of 0.1 are 0.3, where 3 x 0.1 is
    0.30000000000000004); otherwise lots x lot."""
    n = inst.unit_div
    if n > 0.0:
        return lots / n
    return lots * inst.lot_size


def whole_lots_of(qty: np.ndarray, lot: np.ndarray) -> np.ndarray:
    """`whole_lots` over arrays (for Python checking records from outside): int64 lots, -1
    where a quantity is not a whole number of lots."""
    qty = np.asarray(qty, dtype=np.float64)
    lot = np.asarray(lot, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        x = qty / lot
        n = np.round(x)
        ok = (
            (qty > 0.0) & (qty < np.inf) & (lot > 0.0) & (lot < np.inf) & (x <= MAX_LOTS)
            & (n >= 1.0) & (np.abs(x - n) <= _ABS_TOLERANCE + _REL_TOLERANCE * x)
        )  # fmt: skip
    return np.where(ok, np.where(ok, n, 0.0).astype(np.int64), np.int64(-1))
