"""Compiled work on wire bodies (`feeds/wire.py`): the order request a live session sends per
batch written in one call instead of one copy per column, and the columns of many received
messages joined in one pass."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def order_body_nb(rows, body, offsets):
    """Write the ORDER_DTYPE records `rows` into `body` as the wire lays them out: each
    column's values back to back at its offset."""
    n = rows.size
    ids = body[offsets[0] : offsets[0] + 8 * n].view(np.uint64)
    ts = body[offsets[1] : offsets[1] + 8 * n].view(np.int64)
    instrument = body[offsets[2] : offsets[2] + 4 * n].view(np.uint32)
    side = body[offsets[3] : offsets[3] + n].view(np.int8)
    price = body[offsets[4] : offsets[4] + 8 * n].view(np.float64)
    qty = body[offsets[5] : offsets[5] + 8 * n].view(np.float64)
    order_type = body[offsets[6] : offsets[6] + n].view(np.int8)
    tif = body[offsets[7] : offsets[7] + n].view(np.int8)
    status = body[offsets[8] : offsets[8] + n].view(np.int8)
    session = body[offsets[9] : offsets[9] + 4 * n].view(np.uint32)
    strategy = body[offsets[10] : offsets[10] + 4 * n].view(np.uint32)
    reason = body[offsets[11] : offsets[11] + 2 * n].view(np.int16)
    for i in range(n):
        r = rows[i]
        ids[i] = r.id
        ts[i] = r.ts
        instrument[i] = r.instrument
        side[i] = r.side
        price[i] = r.price
        qty[i] = r.qty
        order_type[i] = r.order_type
        tif[i] = r.tif
        status[i] = r.status
        session[i] = r.session
        strategy[i] = r.strategy
        reason[i] = r.reason


@njit(cache=True)
def gather_nb(blob, lengths, rows, sizes, out, out_offsets):
    """Copy every column of every body in `blob` (bodies back to back, `lengths[m]` bytes
    each, laid out by the wire's rule for `rows[m]` rows: columns in order, each at the next
    multiple of 8) into `out`, where column c begins at `out_offsets[c]` and holds every
    message's values in order."""
    start = 0
    done = 0
    for m in range(lengths.size):
        offset = 0
        for c in range(sizes.size):
            offset = (offset + 7) // 8 * 8
            n = rows[m] * sizes[c]
            dst = out_offsets[c] + done * sizes[c]
            out[dst : dst + n] = blob[start + offset : start + offset + n]
            offset += n
        start += lengths[m]
        done += rows[m]
