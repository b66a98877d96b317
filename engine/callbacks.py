"""The callback a strategy leaves out: does nothing (compiled away)."""

from tickwise.engine.jit import kernel


@kernel
def ignore(ctx, event, st, p):
    """A callback that ignores its event."""
