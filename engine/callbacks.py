"""What a loop calls in place of a missing piece: does nothing (compiled away).

`ignore` stands for a callback a strategy leaves out; the `unguarded_*` kernels
stand for the kill switch in the loop variant that benchmarks compile to
measure what the guard costs, and that the paper exchange runs (it only
matches other sessions' orders); never in a session that trades.
"""

from tickwise.engine.jit import kernel


@kernel
def ignore(ctx, event, st, p):
    """A callback that ignores its event."""


@kernel
def unguarded_feed(ctx, i, kind, ts, seq):
    """No kill-switch look at an arriving event (unguarded loops only)."""


@kernel
def unguarded_market(ctx, i, ts):
    """No kill-switch look at the market (unguarded loops only)."""


@kernel
def unguarded_enforce(ctx):
    """No kill-switch action (unguarded loops only)."""
