"""The z-score rule of the peers' examples (hftbacktest, NautilusTrader, a plain loop), as a
tickwise plugin on the rolling helpers (tests only): z of the quote mid over the last
`window` mids (population deviation, the current mid included); short `qty` when
`z > entry_z`, long when `z < -entry_z`, flat when `|z| < exit_z`, else hold."""

from __future__ import annotations

from tickwise import (
    Param,
    Rolling,
    Strategy,
    kernel,
    net_position,
    rolling_full,
    rolling_push,
    rolling_zscore,
    trade_to,
)


@kernel
def on_quote(ctx, q, st, p):
    i = q.instrument
    mid = 0.5 * (q.bid_px + q.ask_px)
    rolling_push(st.window, i, mid)
    if not rolling_full(st.window, i):
        return
    z = rolling_zscore(st.window, i, mid)
    if z != z:
        return
    target = net_position(ctx, i)
    if z > p.entry_z:
        target = -p.qty
    elif z < -p.entry_z:
        target = p.qty
    elif abs(z) < p.exit_z:
        target = 0.0
    trade_to(ctx, i, target)


class PeerZscore(Strategy):
    """The peers' z-score rule: short above entry_z, long below -entry_z, flat inside exit_z."""

    params = {
        "window": Param(100, 2, 1_000_000),
        "entry_z": Param(2.0, 0.0, 100.0),
        "exit_z": Param(0.5, 0.0, 100.0),
        "qty": Param(1.0, 0.0, None),
    }
    state = {"window": Rolling("window", prices=True)}
    kinds = ("quotes",)
    on_quote = on_quote
