"""ping: a market order on every quote, buying and selling in turn (latency benchmarks only).

Every event makes exactly one order, so a batch of N quotes sends a request
of N orders; the position only ever moves between 0 and `qty`.
"""

from __future__ import annotations

from tickwise import Param, Strategy, kernel, net_position, trade_to


@kernel
def on_quote(ctx, q, st, p):
    i = q.instrument
    trade_to(ctx, i, 0.0 if net_position(ctx, i) > 0.0 else p.qty)


class Ping(Strategy):
    """One market order per quote, alternating buy and sell."""

    params = {"qty": Param(1.0, 0.0, None, "units per order")}
    kinds = ("quotes",)
    on_quote = on_quote
