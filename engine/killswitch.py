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
(`engine.risk`). The halt is latched: only a person resumes,
through `Session.resume`, and only once the condition has cleared.

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

from .context import (
    CLK_N_OPEN,
    CLK_RECV,
    G_DUP_COUNT,
    G_FLATTENING,
    G_LAST_TS,
    G_LATE_RUN,
    G_PENDING,
    G_REJECT_WINDOW,
    G_REJECTS,
    G_STATE,
    G_TRIP,
    G_TRIP_INSTRUMENT,
    G_TRIP_TS,
    G_TRIPS,
    GF_FLOOR,
    GF_PEAK,
    GF_PNL,
    GF_TRIP_LIMIT,
    GF_TRIP_VALUE,
    IG_BUCKET,
    IG_BUCKET_END,
    IG_BUCKETS,
    IG_GAP_SEQ,
    IG_LAST_SEQ,
    IG_STATE,
    IG_TRIP,
    IG_TRIP_TS,
    IGF_CUR_HI,
    IGF_CUR_LO,
    IGF_DOWN,
    IGF_HI,
    IGF_LO,
    IGF_OPEN,
    IGF_PNL,
    IGF_SAFE_HI,
    IGF_SAFE_LO,
    IGF_SIGMA_FACTOR,
    IGF_TRIP_LIMIT,
    IGF_TRIP_VALUE,
    IGF_UP,
    IGF_VAR,
    JUMP_BUCKETS,
)
from .limits import (
    GUARD_MARGIN,
    LIM_ACTION,
    LIM_FEED_LATENCY_EVENTS,
    LIM_FLATTEN,
    LIM_JUMP_PCT,
    LIM_JUMP_SIGMAS,
    LIM_JUMP_WINDOW_NS,
    LIM_MAX_DRAWDOWN,
    LIM_MAX_FEED_LATENCY_NS,
    LIM_MAX_LOSS,
    LIM_MAX_REJECTS_PER_SEC,
    LIM_STALE_NS,
    pnl_floor,
)
from .market import mid_price
from .orders import _request_cancel, submit_nb
from .portfolio import unrealized_pnl
from .risk import staying_qty, trading_state, transition_nb, trip_at_nb, trip_nb
from .schemas import (
    ORD_MARKET,
    STATE_ACTIVE,
    STATE_HALTED,
    STATE_NAMES,
    TIF_IOC,
    TRIP_FEED_LATENCY,
    TRIP_MANUAL,
    TRIP_MAX_DRAWDOWN,
    TRIP_MAX_LOSS,
    TRIP_NAMES,
    TRIP_PRICE_JUMP,
    TRIP_REJECT_RATE,
    TRIP_SEQ_GAP,
    TRIP_STALE_FEED,
    TRIP_STRATEGY_FAULT,
)

SIGMA_MIN_BUCKETS = 4 * JUMP_BUCKETS  # buckets seen before the sigma test is trusted
SIGMA_EWMA = 2.0 / (1.0 + 4 * JUMP_BUCKETS)  # weight of each new bucket return


@kernel
def watch_feed_nb(ctx, i, ts, recv, seq):
    """As an event arrives: a silence before it longer than the stale limit, a sequence
    number skipped (seq 0: the kind has none), feed latency beyond its bound K times in a row.
    The usual event passes three compares; anything else is looked at out of line."""
    g = ctx.guard
    lim = ctx.limits
    last = g[G_LAST_TS]
    if ts - last > lim[LIM_STALE_NS]:
        _stale(ctx, ts, last)
    g[G_LAST_TS] = ts
    seq = np.int64(seq)
    ig = ctx.inst_guard
    prev = ig[i, IG_LAST_SEQ]
    if seq == prev + 1:
        ig[i, IG_LAST_SEQ] = seq
    elif seq != 0:  # (0: the data have no sequence numbers)
        _out_of_sequence(ctx, i, seq, prev)
    if recv - ts > lim[LIM_MAX_FEED_LATENCY_NS]:
        _late(ctx, i, recv - ts)
    elif g[G_LATE_RUN] != 0:  # (a load and a branch that always goes one way: cheaper than
        g[G_LATE_RUN] = 0  # a store every event)


@cold_kernel
def _stale(ctx, ts, last):
    if last != 0:  # (the first event of a session follows no silence)
        lim = ctx.limits
        trip_nb(ctx, TRIP_STALE_FEED, -1, (ts - last) * 1e-6, lim[LIM_STALE_NS] * 1e-6)


@cold_kernel
def _out_of_sequence(ctx, i, seq, prev):
    """Sequence numbers: a skip trips (and stays open until one arrives in sequence); the
    first of an instrument, a repeat or one going back does not."""
    ig = ctx.inst_guard
    ig[i, IG_LAST_SEQ] = seq
    if prev == 0:
        return
    if seq > prev + 1:
        ig[i, IG_GAP_SEQ] = seq
        trip_nb(ctx, TRIP_SEQ_GAP, i, float(seq - prev - 1), 0.0)
    else:  # a repeat, or one going back: not a gap (and the end of an open one)
        ig[i, IG_GAP_SEQ] = 0


@cold_kernel
def _late(ctx, i, late):
    g = ctx.guard
    lim = ctx.limits
    g[G_LATE_RUN] += 1
    if g[G_LATE_RUN] >= lim[LIM_FEED_LATENCY_EVENTS]:
        trip_nb(ctx, TRIP_FEED_LATENCY, i, late * 1e-6, lim[LIM_MAX_FEED_LATENCY_NS] * 1e-6)


@cold_kernel
def _roll_buckets(ctx, i, ts, mid):
    """Start the price-jump bucket of instrument i that holds ts, opening at `mid`: file the
    bucket that closed, clear those that fell out of the window, fold the return from the
    last bucket's open into the volatility estimate, and set the band of mids that cannot be
    a jump (so that the usual event compares, without dividing or taking logs)."""
    ig = ctx.inst_guard
    igf = ctx.inst_guard_f
    lim = ctx.limits
    ring = ctx.jump_ring[i]
    width = np.int64(lim[LIM_JUMP_WINDOW_NS] / JUMP_BUCKETS)
    bucket = ts // width
    prev = ig[i, IG_BUCKET]
    if prev != 0:
        ring[0, prev % JUMP_BUCKETS] = igf[i, IGF_CUR_LO]
        ring[1, prev % JUMP_BUCKETS] = igf[i, IGF_CUR_HI]
    last = igf[i, IGF_OPEN]
    if last == last and last > 0.0:
        r = math.log(mid / last)
        igf[i, IGF_VAR] += SIGMA_EWMA * (r * r - igf[i, IGF_VAR])
        ig[i, IG_BUCKETS] += 1
    igf[i, IGF_OPEN] = mid
    steps = bucket - prev if prev != 0 else JUMP_BUCKETS
    for s in range(1, min(steps, JUMP_BUCKETS) + 1):
        slot = (prev + s) % JUMP_BUCKETS
        ring[0, slot] = np.inf
        ring[1, slot] = -np.inf
    ig[i, IG_BUCKET] = bucket
    ig[i, IG_BUCKET_END] = (bucket + 1) * width
    lo = np.inf
    hi = -np.inf
    for slot in range(JUMP_BUCKETS):  # the current bucket's slot was just cleared
        lo = min(lo, ring[0, slot])
        hi = max(hi, ring[1, slot])
    igf[i, IGF_LO] = lo
    igf[i, IGF_HI] = hi
    factor = np.inf
    if lim[LIM_JUMP_SIGMAS] < np.inf and ig[i, IG_BUCKETS] >= SIGMA_MIN_BUCKETS:
        sd = math.sqrt(igf[i, IGF_VAR] * JUMP_BUCKETS)  # of a whole window's move
        if sd > 0.0:
            factor = math.exp(lim[LIM_JUMP_SIGMAS] * sd)
    igf[i, IGF_SIGMA_FACTOR] = factor
    # hi - mid > mid x pct  <=>  mid < hi / (1 + pct);  mid - lo > mid x pct  <=>
    # mid > lo / (1 - pct);  and by the factor: mid < hi / factor, mid > lo x factor.
    pct = lim[LIM_JUMP_PCT] * 0.01
    up = factor
    if pct < 1.0:
        up = min(up, 1.0 / (1.0 - pct))
    igf[i, IGF_DOWN] = max(1.0 / (1.0 + pct), 1.0 / factor) * (1.0 + GUARD_MARGIN)
    igf[i, IGF_UP] = up * (1.0 - GUARD_MARGIN)
    igf[i, IGF_CUR_LO] = mid
    igf[i, IGF_CUR_HI] = mid
    _set_band(igf, i, min(lo, mid), max(hi, mid))


@kernel
def _set_band(igf, i, lo, hi):
    """The mids of instrument i that cannot be a jump, given its window's extremes."""
    igf[i, IGF_SAFE_LO] = hi * igf[i, IGF_DOWN]
    igf[i, IGF_SAFE_HI] = lo * igf[i, IGF_UP]


@cold_kernel
def _judge_jump(ctx, i, mid):
    """A mid outside the band: the exact test, and the trip with the size of the move (in %
    or in deviations) when it is a jump."""
    igf = ctx.inst_guard_f
    lim = ctx.limits
    lo = min(igf[i, IGF_LO], igf[i, IGF_CUR_LO], mid)
    hi = max(igf[i, IGF_HI], igf[i, IGF_CUR_HI], mid)
    band = mid * lim[LIM_JUMP_PCT] * 0.01
    factor = igf[i, IGF_SIGMA_FACTOR]
    if hi - mid > band or mid - lo > band:
        move = max(hi - mid, mid - lo) / mid * 100.0
        trip_nb(ctx, TRIP_PRICE_JUMP, i, move, lim[LIM_JUMP_PCT])
    elif hi > mid * factor or mid > lo * factor:
        sigmas = max(math.log(hi / mid), math.log(mid / lo)) / math.log(factor)
        trip_nb(ctx, TRIP_PRICE_JUMP, i, sigmas * lim[LIM_JUMP_SIGMAS], lim[LIM_JUMP_SIGMAS])


@kernel
def _watch_jump(ctx, i, ts, mid):
    """A move of the mid beyond the limit (in % or in standard deviations of its usual
    moves) from the highest or lowest mid of the last window. The usual event loads four
    numbers and stores nothing: new extremes of a bucket are rare, and move the band."""
    if ts >= ctx.inst_guard[i, IG_BUCKET_END]:
        _roll_buckets(ctx, i, ts, mid)
    igf = ctx.inst_guard_f
    lo = igf[i, IGF_CUR_LO]
    hi = igf[i, IGF_CUR_HI]
    if (mid < lo) | (mid > hi):
        lo = min(lo, mid)
        hi = max(hi, mid)
        igf[i, IGF_CUR_LO] = lo
        igf[i, IGF_CUR_HI] = hi
        _set_band(igf, i, min(lo, igf[i, IGF_LO]), max(hi, igf[i, IGF_HI]))
    if (mid < igf[i, IGF_SAFE_LO]) | (mid > igf[i, IGF_SAFE_HI]):
        _judge_jump(ctx, i, mid)


@cold_kernel
def _judge_pnl(ctx, total):
    """PnL below the floor: the exact tests of the loss limit and the drawdown."""
    gf = ctx.guard_f
    lim = ctx.limits
    if -total > lim[LIM_MAX_LOSS]:
        trip_nb(ctx, TRIP_MAX_LOSS, -1, total, -lim[LIM_MAX_LOSS])
    if gf[GF_PEAK] - total > lim[LIM_MAX_DRAWDOWN]:
        trip_nb(ctx, TRIP_MAX_DRAWDOWN, -1, gf[GF_PEAK] - total, lim[LIM_MAX_DRAWDOWN])


@cold_kernel
def _total_again(igf):
    """The session's PnL summed afresh from each instrument's share."""
    total = 0.0
    for j in range(igf.shape[0]):
        total += igf[j, IGF_PNL]
    return total


@kernel
def watch_market_nb(ctx, i, ts):
    """Once instrument i's event and fills are applied: the session's PnL against the loss
    limit and its drawdown from the peak, and i's price against the jump limits."""
    igf = ctx.inst_guard_f
    gf = ctx.guard_f
    p = ctx.portfolio[i]
    m = ctx.market[i]
    mid = 0.5 * (m.bid_px + m.ask_px)
    marked = p.qty * (mid - p.avg_px)
    if marked != marked:  # no quotes (flat: no PnL to mark either): by the last trade
        mid = mid_price(ctx, i)
        marked = unrealized_pnl(ctx, i)
    now_pnl = p.realized + marked - p.fees
    total = gf[GF_PNL] + now_pnl - igf[i, IGF_PNL]
    igf[i, IGF_PNL] = now_pnl
    if total != total:  # a running sum that met an infinity stays NaN: sum it again
        total = _total_again(igf)
    gf[GF_PNL] = total
    if total > gf[GF_PEAK]:  # (rare: a branch is cheaper than a store each event)
        gf[GF_PEAK] = total
        gf[GF_FLOOR] = pnl_floor(ctx.limits, total)
    if total < gf[GF_FLOOR]:
        _judge_pnl(ctx, total)
    if (mid > 0.0) & (ctx.limits[LIM_ACTION + TRIP_PRICE_JUMP] != STATE_ACTIVE):
        _watch_jump(ctx, i, ts, mid)


@kernel
def guard_feed_nb(ctx, i, ts, seq):
    """The kill switch's look at an arriving event (and whatever the timer's callback did)."""
    watch_feed_nb(ctx, i, ts, ctx.clock[CLK_RECV], seq)


@kernel
def guard_market_nb(ctx, i, ts):
    """Its look once the event and its fills are applied: before the strategy sees the
    event, so that a trip stops its orders in this very event."""
    watch_market_nb(ctx, i, ts)


@kernel
def enforce_nb(ctx):
    """Carry out a pending trip now: cancel the resting orders no longer allowed to work
    and, when halted with flattening configured, close positions with reduce-only orders."""
    if ctx.guard[G_PENDING] != 0:
        _enforce(ctx)


@cold_kernel
def _enforce(ctx):
    g = ctx.guard
    g[G_PENDING] = 0
    k = ctx.clock[CLK_N_OPEN] - 1
    while k >= 0:
        if trading_state(ctx, ctx.open_orders[k].instrument) != STATE_ACTIVE:
            _request_cancel(ctx, k)
        k -= 1
    if ctx.limits[LIM_FLATTEN] == 0.0:
        return
    g[G_FLATTENING] = 1
    for i in range(ctx.portfolio.size):
        pos = ctx.portfolio[i].qty
        if pos == 0.0 or trading_state(ctx, i) != STATE_HALTED:
            continue
        side = -1 if pos > 0.0 else 1
        qty = abs(pos) - staying_qty(ctx, i, side)
        if qty > 0.0:
            submit_nb(ctx, i, side, qty, np.nan, ORD_MARKET, TIF_IOC)
    g[G_FLATTENING] = 0


@cold_kernel
def person_halt_nb(ctx, instrument, state, now):
    """A person's command at `now`: halt (or reduce) the session, or one instrument. A scope
    already in that state or a stricter one keeps it, and its cause."""
    before = ctx.inst_guard[instrument, IG_STATE] if instrument >= 0 else ctx.guard[G_STATE]
    if state > before:
        transition_nb(ctx, instrument, TRIP_MANUAL, state, instrument, 0.0, 0.0, now)
    ctx.guard[G_TRIPS] += 1
    ctx.guard[G_PENDING] = 1
    enforce_nb(ctx)


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


@cold_kernel
def resume_nb(ctx, instrument, state, now):
    """A person resumes one instrument, or the session and every instrument, to `state`
    (ACTIVE, or REDUCING: never looser than asked) at `now`. Resuming one instrument touches
    no other scope; resuming the session also starts afresh the counters that trip it."""
    if instrument >= 0:
        if ctx.inst_guard[instrument, IG_STATE] != state:
            transition_nb(ctx, instrument, TRIP_MANUAL, state, instrument, 0.0, 0.0, now)
        return
    if ctx.guard[G_STATE] != state:
        transition_nb(ctx, -1, TRIP_MANUAL, state, -1, 0.0, 0.0, now)
    for i in range(ctx.inst_guard.shape[0]):
        if ctx.inst_guard[i, IG_STATE] > state:
            transition_nb(ctx, i, TRIP_MANUAL, state, i, 0.0, 0.0, now)
    g = ctx.guard
    g[G_DUP_COUNT] = 0
    g[G_REJECTS] = 0


def _jump_now(ctx: Any, i: int) -> float:
    """Instrument i's move from its window's extremes now, in %."""
    mid = float(mid_price(ctx, i))
    if not mid > 0:
        return 0.0
    igf = ctx.inst_guard_f[i]
    lo = float(min(igf[IGF_LO], igf[IGF_CUR_LO]))
    hi = float(max(igf[IGF_HI], igf[IGF_CUR_HI]))
    return max(hi - mid, mid - lo, 0.0) / mid * 100.0 if np.isfinite(lo) else 0.0


def blocked_resume(ctx: Any, symbol: Callable[[int], str], instrument: int, now: int
                   ) -> list[str]:  # fmt: skip
    """The conditions behind the kill switch's triggers that still hold at `now` (ns), one
    clause each (none: trading may resume). For one instrument (-1: all), those of the
    whole session and its own."""
    lim, g, gf = ctx.limits, ctx.guard, ctx.guard_f
    on = [lim[LIM_ACTION + t] != STATE_ACTIVE for t in range(len(TRIP_NAMES))]
    clauses = []
    if on[TRIP_MAX_LOSS] and -gf[GF_PNL] > lim[LIM_MAX_LOSS]:
        clauses.append(
            f"PnL {gf[GF_PNL]:,.2f} is still below -max_loss ({-lim[LIM_MAX_LOSS]:,.2f})"
        )
    if on[TRIP_MAX_DRAWDOWN] and gf[GF_PEAK] - gf[GF_PNL] > lim[LIM_MAX_DRAWDOWN]:
        clauses.append(
            f"drawdown {gf[GF_PEAK] - gf[GF_PNL]:,.2f} is still beyond max_drawdown "
            f"({lim[LIM_MAX_DRAWDOWN]:,.2f})"
        )
    if on[TRIP_FEED_LATENCY] and g[G_LATE_RUN] > 0:
        clauses.append("the latest events still arrive later than max_feed_latency_ms")
    if (
        on[TRIP_REJECT_RATE]
        and now - g[G_REJECT_WINDOW] < 1_000_000_000
        and g[G_REJECTS] > lim[LIM_MAX_REJECTS_PER_SEC]
    ):
        clauses.append(
            f"{int(g[G_REJECTS])} orders were refused in the last second, beyond "
            f"max_rejects_per_sec ({lim[LIM_MAX_REJECTS_PER_SEC]:g})"
        )
    ig = ctx.inst_guard
    scope = range(ig.shape[0]) if instrument < 0 else (instrument,)
    known = ctx.instruments["tick_size"] > 0.0
    gaps = [
        symbol(i) for i in scope
        if known[i] and ig[i, IG_GAP_SEQ] != 0 and ig[i, IG_GAP_SEQ] == ig[i, IG_LAST_SEQ]
    ]  # fmt: skip
    if on[TRIP_SEQ_GAP] and gaps:
        clauses.append(f"{', '.join(gaps)} had no event in sequence since a gap")
    if on[TRIP_PRICE_JUMP] and lim[LIM_JUMP_PCT] < np.inf:
        jumping = [symbol(i) for i in scope
                   if known[i] and _jump_now(ctx, i) > lim[LIM_JUMP_PCT]]  # fmt: skip
        if jumping:
            clauses.append(f"{', '.join(jumping)} still move beyond price_jump_pct in the window")
    return clauses


def _cause(trip: int, ts: int, instrument: str | None, value: float, limit: float
           ) -> dict[str, Any]:  # fmt: skip
    return {"trigger": TRIP_NAMES[trip], "ts": ts, "instrument": instrument, "value": value,
            "limit": limit}  # fmt: skip


def guard_status(ctx: Any, instruments: Any, fault: str | None = None) -> dict[str, Any]:
    """The trading state of the session and of each instrument not ACTIVE, with the cause that
    holds each now, for summaries and people. `halt_reason` (and `halt_ts`, ...) is the
    session's cause, or while the session itself is ACTIVE the earliest of its instruments'."""
    g, gf, ig, igf = ctx.guard, ctx.guard_f, ctx.inst_guard, ctx.inst_guard_f
    by_instrument = {}
    for inst in instruments:
        i = inst.id
        if ig[i, IG_STATE] == STATE_ACTIVE:
            continue
        by_instrument[inst.symbol] = {
            "state": STATE_NAMES[int(ig[i, IG_STATE])],
            **_cause(int(ig[i, IG_TRIP]), int(ig[i, IG_TRIP_TS]), inst.symbol,
                     float(igf[i, IGF_TRIP_VALUE]), float(igf[i, IGF_TRIP_LIMIT])),
        }  # fmt: skip
    where = int(g[G_TRIP_INSTRUMENT])
    cause = None
    if g[G_STATE] != STATE_ACTIVE:
        cause = _cause(int(g[G_TRIP]), int(g[G_TRIP_TS]),
                       instruments[where].symbol if where >= 0 else None,
                       float(gf[GF_TRIP_VALUE]), float(gf[GF_TRIP_LIMIT]))  # fmt: skip
    elif by_instrument:
        cause = min(by_instrument.values(), key=lambda c: c["ts"])
    return {
        "state": STATE_NAMES[int(g[G_STATE])],
        "halted": bool(g[G_STATE] != STATE_ACTIVE or by_instrument),
        "halt_reason": cause["trigger"] if cause else None,
        "halt_ts": cause["ts"] if cause else None,
        "halt_instrument": cause["instrument"] if cause else None,
        "halt_value": cause["value"] if cause else None,
        "halt_limit": cause["limit"] if cause else None,
        "instruments": by_instrument,
        "trips": int(g[G_TRIPS]),
        "fault": fault,
    }
