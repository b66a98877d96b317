"""A strategy that sends the orders a test scripts, so matching cases have known outcomes.

Row r of the plan acts on the strategy's `at[r]`-th event of instrument 0 (1-based;
an L2 update counts once): side +1 buys and -1 sells `qty` at `px` (NaN: a market
order) with time in force `tif`; side 0 cancels the order that row `qty` sent; side 2
trades to the target position `qty` (`trade_to`).
Tests fill the plan through `Session.state` before the first batch (`plan` below).
"""

from __future__ import annotations

import numpy as np

from tickwise import PerInstrument, Scalar, Strategy, buy, cancel, kernel, sell, trade_to

PLAN_ROWS = 16


@kernel
def act(ctx, st):
    n = st.seen[0] + 1
    st.seen[0] = n
    for r in range(PLAN_ROWS):
        if st.at[0, r] != n:
            continue
        side = st.side[0, r]
        qty = st.qty[0, r]
        tif = np.int64(st.tif[0, r])
        if side == 0:
            cancel(ctx, st.ids[0, np.int64(qty)])
        elif side == 2:
            st.ids[0, r] = trade_to(ctx, 0, qty)
        elif side > 0:
            st.ids[0, r] = buy(ctx, 0, qty, st.px[0, r], tif)
        else:
            st.ids[0, r] = sell(ctx, 0, qty, st.px[0, r], tif)


@kernel
def on_event(ctx, event, st, p):
    if event.instrument == 0:
        act(ctx, st)


class Scripted(Strategy):
    """Sends the orders of its plan (tests only)."""

    kinds = ("quotes", "trades", "bars", "book")
    state = {
        "seen": Scalar(int),
        "at": PerInstrument(float, window=PLAN_ROWS),
        "side": PerInstrument(float, window=PLAN_ROWS),
        "qty": PerInstrument(float, window=PLAN_ROWS),
        "px": PerInstrument(float, window=PLAN_ROWS),
        "tif": PerInstrument(float, window=PLAN_ROWS),
        "ids": PerInstrument(int, window=PLAN_ROWS),
    }
    on_quote = on_event
    on_trade = on_event
    on_bar = on_event
    on_book = on_event


def plan(state: dict[str, np.ndarray], rows: list[tuple]) -> None:
    """Write (at, side, qty, px[, tif]) rows into a Scripted session's state."""
    for r, row in enumerate(rows):
        at, side, qty, px, *rest = row
        state["at"][0, r] = at
        state["side"][0, r] = side
        state["qty"][0, r] = qty
        state["px"][0, r] = px
        state["tif"][0, r] = rest[0] if rest else 0
