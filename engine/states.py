"""The trading state machine (compiled): every way the session, or one instrument, moves
between ACTIVE, REDUCING and HALTED, in one place.

    ACTIVE --trip--> REDUCING --trip--> HALTED        (a trigger, or a person's halt)
      ^                 |                  |
      +----- resume ----+------ resume ----+          (a person only)

Each scope (the session: `ctx.guard[0]`; an instrument: `ctx.inst_guard[i]`)
has its own state and cause; an instrument trades under the stricter of the
two. A trip only ever tightens: it moves a scope to the state configured for
its trigger (`limits.action[trip]`), and does nothing when that trigger is off
or that state or a stricter one is already in force; the cause is latched
until a person resumes. Every change is logged in `ctx.transitions` for the
journal. What feeds the machine (the pre-trade gate's rejects and repeats in
`engine.risk`, the watchers of `engine.killswitch`, a person's commands) and
what carries out a trip (cancels, flattening: `killswitch.enforce_nb`) live
with their own concerns; the states and their transitions live here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tickwise.engine.jit import cold_kernel, kernel

from .schemas import (
    STATE_ACTIVE,
    STATE_NAMES,
    TRIP_MANUAL,
    TRIP_NAMES,
    TRIP_NONE,
    TRIP_PRICE_JUMP,
)


@kernel
def trading_state(ctx, i):
    """The state instrument i trades under: the stricter of the session's and its own."""
    return max(ctx.guard[0].state, ctx.inst_guard[i].state)


@cold_kernel
def transition_nb(ctx, scope, trigger, state, instrument, value, limit, now):
    """Move `scope` (an instrument, or -1: the whole session) to `state` because of `trigger`
    at time `now` (ns), which becomes its cause (none once ACTIVE again), and log the change
    for the journal. Each scope keeps its own cause, so one never overwrites or clears
    another's."""
    cause = trigger if state != STATE_ACTIVE else TRIP_NONE
    if scope >= 0:
        row = ctx.inst_guard[scope]
        before = row.state
        row.state = state
        row.trip = cause
        row.trip_ts = now if cause != TRIP_NONE else 0
        row.trip_value = value
        row.trip_limit = limit
    else:
        g = ctx.guard[0]
        before = g.state
        g.state = state
        g.trip = cause
        g.trip_ts = now if cause != TRIP_NONE else 0
        g.trip_instrument = instrument if cause != TRIP_NONE else -1
        g.trip_value = value
        g.trip_limit = limit
    g = ctx.guard[0]
    g.refused_halted = 0  # the next refusal under the new state is logged again
    g.refused_reducing = 0
    clock = ctx.clock[0]
    n = clock.n_transitions
    if n < ctx.transitions.size:  # (room for every change a batch can make: see new_context)
        t = ctx.transitions[n]
        t.ts = now
        t.scope = scope
        t.trigger = trigger
        t.from_state = before
        t.to_state = state
        t.instrument = instrument
        t.value = value
        t.limit = limit
        clock.n_transitions = n + 1


@kernel
def trip_nb(ctx, trip, instrument, value, limit):
    """The kill switch trips in the event under way (see `trip_at_nb`)."""
    return trip_at_nb(ctx, trip, instrument, value, limit, ctx.clock[0].now)


@kernel
def trip_at_nb(ctx, trip, instrument, value, limit, now):
    """The kill switch trips at `now`: move to the state configured for `trip` (nothing when
    that trigger is off, or that state or a stricter one is already in force). The trigger
    becomes the cause of the new state until a person resumes; the trip is left pending, for
    the cancels and flattening of `killswitch.enforce_nb` in the same event."""
    lim = ctx.limits[0]
    action = lim.action[trip]
    if action == STATE_ACTIVE:
        return False
    g = ctx.guard[0]
    scope = -1
    if trip == TRIP_PRICE_JUMP and lim.jump_halts_instrument and instrument >= 0:
        if ctx.inst_guard[instrument].state >= action or g.state >= action:
            return False
        scope = instrument
    elif g.state >= action:
        return False
    transition_nb(ctx, scope, trip, action, instrument, value, limit, now)
    g.trips += 1
    g.pending = 1
    return True


@cold_kernel
def halt_nb(ctx, instrument, state, now):
    """A person halts (or reduces) the session, or one instrument (-1: the session), at `now`.
    A scope already in that state or a stricter one keeps it, and its cause; the halt is
    pending either way, so that what it forbids is cancelled."""
    before = ctx.inst_guard[instrument].state if instrument >= 0 else ctx.guard[0].state
    if state > before:
        transition_nb(ctx, instrument, TRIP_MANUAL, state, instrument, 0.0, 0.0, now)
    g = ctx.guard[0]
    g.trips += 1
    g.pending = 1


@cold_kernel
def resume_nb(ctx, instrument, state, now):
    """A person resumes one instrument, or the session and every instrument, to `state`
    (ACTIVE, or REDUCING: never looser than asked) at `now`. Resuming one instrument touches
    no other scope; resuming the session also starts afresh the counters that trip it.
    (Whether the conditions behind the triggers still hold is the caller's to ask first:
    `killswitch.blocked_resume`.)"""
    if instrument >= 0:
        if ctx.inst_guard[instrument].state != state:
            transition_nb(ctx, instrument, TRIP_MANUAL, state, instrument, 0.0, 0.0, now)
        return
    if ctx.guard[0].state != state:
        transition_nb(ctx, -1, TRIP_MANUAL, state, -1, 0.0, 0.0, now)
    for i in range(ctx.inst_guard.size):
        if ctx.inst_guard[i].state > state:
            transition_nb(ctx, i, TRIP_MANUAL, state, i, 0.0, 0.0, now)
    g = ctx.guard[0]
    g.dup_count = 0
    g.rejects = 0


def _cause(trip: int, ts: int, instrument: str | None, value: float, limit: float
           ) -> dict[str, Any]:  # fmt: skip
    return {"trigger": TRIP_NAMES[trip], "ts": ts, "instrument": instrument, "value": value,
            "limit": limit}  # fmt: skip


def guard_status(ctx: Any, instruments: Any, fault: str | None = None) -> dict[str, Any]:
    """The trading state of the session and of each instrument not ACTIVE, with the cause that
    holds each now, for summaries and people. `halt_reason` (and `halt_ts`, ...) is the
    session's cause, or while the session itself is ACTIVE the earliest of its instruments'."""
    g = ctx.guard[0]
    by_instrument = {}
    for inst in instruments:
        row = ctx.inst_guard[inst.id]
        if row.state == STATE_ACTIVE:
            continue
        by_instrument[inst.symbol] = {
            "state": STATE_NAMES[int(row.state)],
            **_cause(int(row.trip), int(row.trip_ts), inst.symbol, float(row.trip_value),
                     float(row.trip_limit)),
        }  # fmt: skip
    where = int(g.trip_instrument)
    cause = None
    if g.state != STATE_ACTIVE:
        cause = _cause(int(g.trip), int(g.trip_ts),
                       instruments[where].symbol if where >= 0 else None,
                       float(g.trip_value), float(g.trip_limit))  # fmt: skip
    elif by_instrument:
        cause = min(by_instrument.values(), key=lambda c: c["ts"])
    return {
        "state": STATE_NAMES[int(g.state)],
        "halted": bool(g.state != STATE_ACTIVE or by_instrument),
        "halt_reason": cause["trigger"] if cause else None,
        "halt_ts": cause["ts"] if cause else None,
        "halt_instrument": cause["instrument"] if cause else None,
        "halt_value": cause["value"] if cause else None,
        "halt_limit": cause["limit"] if cause else None,
        "instruments": by_instrument,
        "trips": int(g.trips),
        # Refused while halted or reducing and, past the first after each change of state,
        # counted rather than logged.
        "refused_unlogged": {
            "halted": int(g.unlogged_halted),
            "reduce_only": int(g.unlogged_reducing),
        },
        "fault": fault,
    }


def states_of(ctx: Any) -> np.ndarray:
    """Each instrument's trading state now (the stricter of the session's and its own)."""
    return np.maximum(ctx.inst_guard.state, ctx.guard[0].state)
