"""The kill switch (compiled): watches every event for abnormal conditions and, the moment
one trips it, stops automated trading in that same event.

The loop calls `watch_feed_nb` as an event arrives (stale feed, sequence gap,
feed latency) and `watch_market_nb` once the market and the fills of the event
are applied (loss, drawdown, price jump). A trip changes the trading state at
once, so the strategy's orders in that event are already refused; `enforce_nb`
at the end of the event then cancels the resting orders in its scope and, if
configured, flattens positions with reduce-only market orders that still pass
the collar (one call per event: every call out of the loop costs it speed).
Rejects, runaway strategies and NaN orders trip it from the risk gate
(`engine.risk`). Every trip goes through the trading state machine
(`engine.states`): the halt is latched, and only a person resumes, through
`Session.resume`, once `blocked_resume` finds no condition still holding.

The watchers run at every event, so the usual event costs a few compares
against bounds worked out in advance (the band of mids that cannot be a
jump, the PnL below which a limit may be crossed), with no branch that
follows the data's ups and downs and no store it can do without; what
crosses a bound is judged exactly, out of line, and bounds are moved a hair
towards tripping so that rounding never lets a trip by.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from tickwise.engine.jit import cold_kernel, kernel

from .context import JUMP_BUCKETS
from .limits import GUARD_MARGIN, pnl_floor
from .market import mid_price, round_to_tick
from .orders import _request_cancel, submit_nb
from .portfolio import unrealized_pnl
from .quantities import MAX_LOTS, units
from .risk import reference_price, working_lots
from .schemas import (
    ORD_LIMIT,
    ORD_MARKET,
    STATE_ACTIVE,
    STATE_HALTED,
    STATE_REDUCING,
    TIF_IOC,
    TRIP_FEED_LATENCY,
    TRIP_MAX_DRAWDOWN,
    TRIP_MAX_LOSS,
    TRIP_NAMES,
    TRIP_PRICE_JUMP,
    TRIP_REJECT_RATE,
    TRIP_SEQ_GAP,
    TRIP_STALE_FEED,
    TRIP_STRATEGY_FAULT,
)
from .states import halt_nb, trading_state, trip_at_nb, trip_nb

SIGMA_MIN_BUCKETS = 4 * JUMP_BUCKETS  # buckets seen before the sigma test is trusted
SIGMA_EWMA = 2.0 / (1.0 + 4 * JUMP_BUCKETS)  # weight of each new bucket return


@kernel
def watch_feed_nb(ctx, i, kind, ts, recv, seq):
    """As an event of `kind` (KIND_CODES) arrives: a silence before it longer than the stale
    limit, a sequence number skipped (each kind of an instrument counts its own; seq 0: the
    data have none), feed latency beyond its bound K times in a row. The usual event passes
    three compares; anything else is looked at out of line."""
    g = ctx.guard[0]
    lim = ctx.limits[0]
    last = g.last_ts
    if ts - last > lim.stale_ns:
        _stale(ctx, ts, last)
    g.last_ts = ts
    seq = np.int64(seq)
    seqs = ctx.inst_guard[i].last_seq
    prev = seqs[kind]
    if seq == prev + 1:
        seqs[kind] = seq
    elif seq != 0:  # (0: the data have no sequence numbers)
        _out_of_sequence(ctx, i, kind, seq, prev)
    if recv - ts > lim.max_feed_latency_ns:
        _late(ctx, i, recv - ts)
    elif g.late_run != 0:  # (a load and a branch that always goes one way: cheaper than
        g.late_run = 0  # a store every event)


@cold_kernel
def _stale(ctx, ts, last):
    if last != 0:  # (the first event of a session follows no silence)
        lim = ctx.limits[0]
        trip_nb(ctx, TRIP_STALE_FEED, -1, (ts - last) * 1e-6, lim.stale_ns * 1e-6)


@cold_kernel
def _out_of_sequence(ctx, i, kind, seq, prev):
    """Sequence numbers: a skip trips (and stays open until one arrives in sequence); the
    first of an instrument's kind, a repeat or one going back does not."""
    row = ctx.inst_guard[i]
    row.last_seq[kind] = seq
    if prev == 0:
        return
    if seq > prev + 1:
        row.gap_seq[kind] = seq
        trip_nb(ctx, TRIP_SEQ_GAP, i, float(seq - prev - 1), 0.0)
    else:  # a repeat, or one going back: not a gap (and the end of an open one)
        row.gap_seq[kind] = 0


@cold_kernel
def _late(ctx, i, late):
    g = ctx.guard[0]
    lim = ctx.limits[0]
    g.late_run += 1
    if g.late_run >= lim.feed_latency_events:
        trip_nb(ctx, TRIP_FEED_LATENCY, i, late * 1e-6, lim.max_feed_latency_ns * 1e-6)


@cold_kernel
def _roll_buckets(ctx, i, ts, mid):
    """Start the price-jump bucket of instrument i that holds ts, opening at `mid`: file the
    bucket that closed, clear those that fell out of the window, fold the return from the
    last bucket's open into the volatility estimate, and set the band of mids that cannot be
    a jump (so that the usual event compares, without dividing or taking logs).

    An event a whole window after the instrument's last one (every bar of minute bars, with
    the default window of 60 s) finds the window empty: nothing to file or scan for extremes.
    The estimate (a log) is kept only when the sigma test, its one reader, is on."""
    row = ctx.inst_guard[i]
    lim = ctx.limits[0]
    ring = ctx.jump_ring[i]
    width = np.int64(lim.jump_window_ns / JUMP_BUCKETS)
    bucket = ts // width
    prev = row.bucket
    steps = bucket - prev if prev != 0 else JUMP_BUCKETS
    lo = np.inf
    hi = -np.inf
    if steps < JUMP_BUCKETS:
        ring[0, prev % JUMP_BUCKETS] = row.cur_lo
        ring[1, prev % JUMP_BUCKETS] = row.cur_hi
        for s in range(1, steps + 1):
            slot = (prev + s) % JUMP_BUCKETS
            ring[0, slot] = np.inf
            ring[1, slot] = -np.inf
        for slot in range(JUMP_BUCKETS):  # the current bucket's slot was just cleared
            lo = min(lo, ring[0, slot])
            hi = max(hi, ring[1, slot])
    else:
        for slot in range(JUMP_BUCKETS):
            ring[0, slot] = np.inf
            ring[1, slot] = -np.inf
    sigmas = lim.jump_sigmas < np.inf
    last = row.open
    if last == last and last > 0.0:
        if sigmas:
            r = math.log(mid / last)
            row.ret_var += SIGMA_EWMA * (r * r - row.ret_var)
        row.buckets += 1
    row.open = mid
    row.bucket = bucket
    row.bucket_end = (bucket + 1) * width
    row.lo = lo
    row.hi = hi
    factor = np.inf
    if sigmas and row.buckets >= SIGMA_MIN_BUCKETS:
        sd = math.sqrt(row.ret_var * JUMP_BUCKETS)  # of a whole window's move
        if sd > 0.0:
            factor = math.exp(lim.jump_sigmas * sd)
    row.sigma_factor = factor
    # hi - mid > mid x pct  <=>  mid < hi / (1 + pct);  mid - lo > mid x pct  <=>
    # mid > lo / (1 - pct);  and by the factor: mid < hi / factor, mid > lo x factor.
    pct = lim.jump_pct * 0.01
    up = factor
    if pct < 1.0:
        up = min(up, 1.0 / (1.0 - pct))
    row.down = max(1.0 / (1.0 + pct), 1.0 / factor) * (1.0 + GUARD_MARGIN)
    row.up = up * (1.0 - GUARD_MARGIN)
    row.cur_lo = mid
    row.cur_hi = mid
    _set_band(row, min(lo, mid), max(hi, mid))


@kernel
def _set_band(row, lo, hi):
    """The mids that cannot be a jump, given the window's extremes (`row`: an instrument's
    record of `ctx.inst_guard`)."""
    row.safe_lo = hi * row.down
    row.safe_hi = lo * row.up


@cold_kernel
def _judge_jump(ctx, i, mid):
    """A mid outside the band: the exact test, and the trip with the size of the move (in %
    or in deviations) when it is a jump."""
    row = ctx.inst_guard[i]
    lim = ctx.limits[0]
    lo = min(row.lo, row.cur_lo, mid)
    hi = max(row.hi, row.cur_hi, mid)
    band = mid * lim.jump_pct * 0.01
    factor = row.sigma_factor
    if hi - mid > band or mid - lo > band:
        move = max(hi - mid, mid - lo) / mid * 100.0
        trip_nb(ctx, TRIP_PRICE_JUMP, i, move, lim.jump_pct)
    elif hi > mid * factor or mid > lo * factor:
        sigmas = max(math.log(hi / mid), math.log(mid / lo)) / math.log(factor)
        trip_nb(ctx, TRIP_PRICE_JUMP, i, sigmas * lim.jump_sigmas, lim.jump_sigmas)


@kernel
def _watch_jump(ctx, i, ts, mid):
    """A move of the mid beyond the limit (in % or in standard deviations of its usual
    moves) from the highest or lowest mid of the last window. The usual event loads four
    numbers and stores nothing: new extremes of a bucket are rare, and move the band."""
    row = ctx.inst_guard[i]
    if ts >= row.bucket_end:
        _roll_buckets(ctx, i, ts, mid)
    lo = row.cur_lo
    hi = row.cur_hi
    if (mid < lo) | (mid > hi):
        lo = min(lo, mid)
        hi = max(hi, mid)
        row.cur_lo = lo
        row.cur_hi = hi
        _set_band(row, min(lo, row.lo), max(hi, row.hi))
    if (mid < row.safe_lo) | (mid > row.safe_hi):
        _judge_jump(ctx, i, mid)


@cold_kernel
def _judge_pnl(ctx, total):
    """PnL below the floor: the exact tests of the loss limit and the drawdown."""
    peak = ctx.guard[0].peak
    lim = ctx.limits[0]
    if -total > lim.max_loss:
        trip_nb(ctx, TRIP_MAX_LOSS, -1, total, -lim.max_loss)
    if peak - total > lim.max_drawdown:
        trip_nb(ctx, TRIP_MAX_DRAWDOWN, -1, peak - total, lim.max_drawdown)


@cold_kernel
def _total_again(inst_guard):
    """The session's PnL summed afresh from each instrument's share."""
    total = 0.0
    for j in range(inst_guard.size):
        total += inst_guard[j].pnl
    return total


@kernel
def watch_market_nb(ctx, i, ts):
    """Once instrument i's event and fills are applied: the session's PnL against the loss
    limit and its drawdown from the peak, and i's price against the jump limits."""
    g = ctx.guard[0]
    row = ctx.inst_guard[i]
    p = ctx.portfolio[i]
    m = ctx.market[i]
    mid = 0.5 * (m.bid_px + m.ask_px)
    marked = p.qty * (mid - p.avg_px)
    if marked != marked:  # no quotes (flat: no PnL to mark either): by the last trade
        mid = mid_price(ctx, i)
        marked = unrealized_pnl(ctx, i)
    now_pnl = p.realized + marked - p.fees
    total = g.pnl + now_pnl - row.pnl
    row.pnl = now_pnl
    if total != total:  # a running sum that met an infinity stays NaN: sum it again
        total = _total_again(ctx.inst_guard)
    g.pnl = total
    if total > g.peak:  # (rare: a branch is cheaper than a store each event)
        g.peak = total
        g.floor = pnl_floor(ctx.limits[0], total)
    if total < g.floor:
        _judge_pnl(ctx, total)
    if (mid > 0.0) & (ctx.limits[0].action[TRIP_PRICE_JUMP] != STATE_ACTIVE):
        _watch_jump(ctx, i, ts, mid)


@kernel
def guard_feed_nb(ctx, i, kind, ts, seq):
    """The kill switch's look at an arriving event (and whatever the timer's callback did)."""
    watch_feed_nb(ctx, i, kind, ts, ctx.clock[0].recv, seq)


@kernel
def guard_market_nb(ctx, i, ts):
    """Its look once the event and its fills are applied: before the strategy sees the
    event, so that a trip stops its orders in this very event."""
    watch_market_nb(ctx, i, ts)


@kernel
def enforce_nb(ctx):
    """Carry out a pending trip now: cancel the resting orders no longer allowed to work
    and, when halted with flattening configured, close positions with reduce-only orders."""
    if ctx.guard[0].pending != 0:
        _enforce(ctx)


@cold_kernel
def _enforce(ctx):
    g = ctx.guard[0]
    g.pending = 0
    k = ctx.clock[0].n_open - 1
    while k >= 0:
        if trading_state(ctx, ctx.open_orders[k].instrument) != STATE_ACTIVE:
            _request_cancel(ctx, k)
        k -= 1
    if not ctx.limits[0].flatten_on_halt:
        return
    g.flattening = 1
    for i in range(ctx.portfolio.size):
        pos = ctx.portfolio[i].lots
        if pos == 0 or trading_state(ctx, i) != STATE_HALTED:
            continue
        side = -1 if pos > 0 else 1
        # Never beyond flat: orders already closing (their cancels on the way too: they may
        # still fill) count. (MAX_LOTS: the most one order holds.)
        lots = min(abs(pos) - working_lots(ctx, i, side), MAX_LOTS)
        if lots > 0:
            qty = units(lots, ctx.instruments[i])
            submit_nb(ctx, i, side, qty, lots, np.nan, ORD_MARKET, TIF_IOC)
    g.flattening = 0


@cold_kernel
def person_halt_nb(ctx, instrument, state, now):
    """A person's command at `now`: halt (or reduce) the session, or one instrument, through
    the state machine (`states.halt_nb`), and cancel what it forbids now."""
    halt_nb(ctx, instrument, state, now)
    enforce_nb(ctx)


NO_PRICE = -(1 << 62)  # person_flatten_nb: no reference price to close a position at


@cold_kernel
def person_flatten_nb(ctx, instrument, now, sent):
    """A person's flatten at `now` of one instrument (or -1: all): the scope goes to REDUCING
    (a stricter state is kept), every working order of it is cancelled, and each position
    is closed by one reduce-only IOC limit order (`flatten_price_nb`) for what orders
    already closing it (their cancels on the way too: at an exchange they may still fill)
    leave open: never beyond flat, however often it is asked.
    `sent[i]` gets the id of instrument i's order (> 0), minus the id of one the risk gate
    refused, NO_PRICE when no reference price allowed one, or 0 when it was flat or orders
    working close it all."""
    halt_nb(ctx, instrument, STATE_REDUCING, now)
    enforce_nb(ctx)  # (cancels what REDUCING forbids: the orders of a scope that was ACTIVE)
    k = ctx.clock[0].n_open - 1
    while k >= 0:  # (and those a scope already reducing had working)
        if instrument < 0 or ctx.open_orders[k].instrument == instrument:
            _request_cancel(ctx, k)
        k -= 1
    g = ctx.guard[0]
    g.flattening = 1  # (its orders pass a HALTED state, reduce-only, inside the collar)
    for i in range(ctx.portfolio.size):
        sent[i] = 0
        pos = ctx.portfolio[i].lots
        if pos == 0 or (instrument >= 0 and i != instrument):
            continue
        side = -1 if pos > 0 else 1
        lots = min(abs(pos) - working_lots(ctx, i, side), MAX_LOTS)
        if lots <= 0:
            continue
        price = flatten_price_nb(ctx, i, side)
        if price != price:
            sent[i] = NO_PRICE
            continue
        sent[i] = submit_nb(ctx, i, side, units(lots, ctx.instruments[i]), lots, price,
                            ORD_LIMIT, TIF_IOC)  # fmt: skip
    g.flattening = 0


@cold_kernel
def flatten_price_nb(ctx, i, side):
    """The limit of an order closing a position of instrument i on `side`: the far touch (the
    ask to buy, the bid to sell), or the price collar's edge where the touch lies beyond it
    or is missing, on the tick grid inside the collar; NaN without a reference price."""
    ref = reference_price(ctx, i)
    if ref != ref:
        return np.nan
    lim = ctx.limits[0]
    m = ctx.market[i]
    touch = m.ask_px if side > 0 else m.bid_px
    edge = np.inf
    if lim.collar_pct < np.inf:
        edge = ref * lim.collar_pct * 0.01
    if lim.collar_ticks < np.inf:
        edge = min(edge, lim.collar_ticks * ctx.instruments[i].tick_size)
    if edge == np.inf:
        if touch == touch and touch > 0.0:
            return touch
        return np.nan
    bound = ref + side * edge
    price = bound if touch != touch else (min(touch, bound) if side > 0 else max(touch, bound))
    price = round_to_tick(ctx, i, price, -side)  # (inward: down to buy, up to sell)
    return price if price > 0.0 else np.nan


@cold_kernel
def external_trip_nb(ctx, trip, instrument, value, limit, now):
    """A condition seen outside the loop at `now` (the live feed silent, messages lost on the
    wire) trips the kill switch (if that trigger is on), and the switch acts on it now."""
    trip_at_nb(ctx, trip, instrument, value, limit, now)
    enforce_nb(ctx)


@cold_kernel
def strategy_fault_nb(ctx):
    """The strategy raised: trip the kill switch (if that trigger is on) and act on it."""
    trip_nb(ctx, TRIP_STRATEGY_FAULT, -1, 0.0, 0.0)
    enforce_nb(ctx)


def _jump_now(ctx: Any, i: int) -> float:
    """Instrument i's move from its window's extremes now, in %."""
    mid = float(mid_price(ctx, i))
    if not mid > 0:
        return 0.0
    row = ctx.inst_guard[i]
    lo = float(min(row.lo, row.cur_lo))
    hi = float(max(row.hi, row.cur_hi))
    return max(hi - mid, mid - lo, 0.0) / mid * 100.0 if np.isfinite(lo) else 0.0


def blocked_resume(ctx: Any, symbol: Callable[[int], str], instrument: int, now: int,
                   data_only: bool = False) -> list[str]:  # fmt: skip
    """The conditions behind the kill switch's triggers that still hold at `now` (ns), one
    clause each (none: trading may resume). For one instrument (-1: all), those of the
    whole session and its own. `data_only`: only those that say the market data cannot be
    trusted (late events, a gap not yet followed by an event in sequence)."""
    lim, g = ctx.limits[0], ctx.guard[0]
    on = [lim.action[t] != STATE_ACTIVE for t in range(len(TRIP_NAMES))]
    if data_only:
        on = [on[t] and t in (TRIP_FEED_LATENCY, TRIP_SEQ_GAP) for t in range(len(on))]
    clauses = []
    if on[TRIP_MAX_LOSS] and -g.pnl > lim.max_loss:
        clauses.append(f"PnL {g.pnl:,.2f} is still below -max_loss ({-lim.max_loss:,.2f})")
    if on[TRIP_MAX_DRAWDOWN] and g.peak - g.pnl > lim.max_drawdown:
        clauses.append(
            f"drawdown {g.peak - g.pnl:,.2f} is still beyond max_drawdown ({lim.max_drawdown:,.2f})"
        )
    if on[TRIP_FEED_LATENCY] and g.late_run > 0:
        clauses.append("the latest events still arrive later than max_feed_latency_ms")
    if (
        on[TRIP_REJECT_RATE]
        and now - g.reject_window < 1_000_000_000
        and g.rejects > lim.max_rejects_per_sec
    ):
        clauses.append(
            f"{int(g.rejects)} orders were refused in the last second, beyond "
            f"max_rejects_per_sec ({lim.max_rejects_per_sec:g})"
        )
    ig = ctx.inst_guard
    scope = range(ig.shape[0]) if instrument < 0 else (instrument,)
    known = ctx.instruments["tick_size"] > 0.0
    gaps = [
        symbol(i) for i in scope
        if known[i] and np.any((ig[i]["gap_seq"] != 0) & (ig[i]["gap_seq"] == ig[i]["last_seq"]))
    ]  # fmt: skip
    if on[TRIP_SEQ_GAP] and gaps:
        clauses.append(f"{', '.join(gaps)} had no event in sequence since a gap")
    if on[TRIP_PRICE_JUMP] and lim.jump_pct < np.inf:
        jumping = [symbol(i) for i in scope
                   if known[i] and _jump_now(ctx, i) > lim.jump_pct]  # fmt: skip
        if jumping:
            clauses.append(f"{', '.join(jumping)} still move beyond price_jump_pct in the window")
    return clauses
