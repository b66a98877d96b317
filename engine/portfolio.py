"""Portfolio kernels: positions, average prices and PnL per instrument, exact under partial
fills and position flips.

PnL of an instrument = realised + position x (mark - average price) - fees,
where the mark is the mid (or the last trade when there are no quotes).
Equivalently: the cash of all its fills plus the position marked at the mark.
"""

from __future__ import annotations

from tickwise.engine.jit import kernel

from .market import mid_price
from .quantities import units


@kernel
def apply_fill_nb(ctx, i, side, lots, px, fee):
    """Book a fill of `lots` (> 0, whole lots) at `px` on `side` (+1 buy, -1 sell) into
    instrument i. The position is an integer count of lots: fills that sum to zero leave
    exactly zero."""
    p = ctx.portfolio[i]
    inst = ctx.instruments[i]
    pos = p.lots
    signed = side * lots
    if pos == 0 or (pos > 0) == (side > 0):
        new = pos + signed
        p.avg_px = (p.avg_px * abs(pos) + px * lots) / abs(new)
        p.lots = new
    else:
        closed = min(lots, abs(pos))
        p.realized += units(closed, inst) * (px - p.avg_px) * (1.0 if pos > 0 else -1.0)
        p.lots = pos + signed
        if lots > closed:
            p.avg_px = px  # flipped: the new position opened at this price
        elif p.lots == 0:
            p.avg_px = 0.0
    p.qty = units(p.lots, inst)
    p.fees += fee
    p.traded += units(lots, inst)


@kernel
def position(ctx, i):
    """Signed position of instrument i in units (+ long, - short): exactly 0.0 when flat."""
    return ctx.portfolio[i].qty


@kernel
def position_lots(ctx, i):
    """Signed position of instrument i in whole lots (an integer)."""
    return ctx.portfolio[i].lots


@kernel
def avg_price(ctx, i):
    """Average entry price of the open position (0 when flat)."""
    return ctx.portfolio[i].avg_px


@kernel
def realized_pnl(ctx, i):
    """Realised PnL of instrument i, before fees."""
    return ctx.portfolio[i].realized


@kernel
def unrealized_pnl(ctx, i):
    """Open position marked to the mid (or last trade); 0 when flat or nothing to mark with."""
    p = ctx.portfolio[i]
    if p.lots == 0:
        return 0.0
    mark = mid_price(ctx, i)
    if mark != mark:
        return 0.0
    return p.qty * (mark - p.avg_px)


@kernel
def fees_paid(ctx, i):
    return ctx.portfolio[i].fees


@kernel
def pnl(ctx, i):
    """Total PnL of instrument i: realised + unrealised - fees."""
    return realized_pnl(ctx, i) + unrealized_pnl(ctx, i) - ctx.portfolio[i].fees


@kernel
def total_pnl(ctx):
    """Total PnL over all instruments."""
    total = 0.0
    for i in range(ctx.portfolio.size):
        total += pnl(ctx, i)
    return total


@kernel
def sample_equity_nb(ctx, ts):
    """Append one point of the equity curve at time ts to ctx.equity_log, and each
    instrument's mark at that time to ctx.mark_log (what the report draws prices from)."""
    n = ctx.clock[0].n_equity_log
    marks = ctx.mark_log[n]
    realized = 0.0
    unrealized = 0.0
    fees = 0.0
    gross = 0.0
    for i in range(ctx.portfolio.size):
        p = ctx.portfolio[i]
        realized += p.realized
        unrealized += unrealized_pnl(ctx, i)
        fees += p.fees
        mark = mid_price(ctx, i)
        marks[i] = mark
        if p.lots != 0:
            gross += abs(p.qty) * (mark if mark == mark else p.avg_px)
    row = ctx.equity_log[n]
    row.ts = ts
    row.pnl = realized + unrealized - fees
    row.realized = realized
    row.unrealized = unrealized
    row.fees = fees
    row.gross_exposure = gross
    ctx.clock[0].n_equity_log = n + 1
