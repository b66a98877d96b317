"""A strategy that rests a one-lot buy limit 2 % below the bid of each instrument and leaves it
there (tests of what happens to resting orders: kill, stop, cancel on disconnect)."""

from __future__ import annotations

from tickwise import PerInstrument, Strategy, buy, kernel, lot_size, round_to_tick


@kernel
def on_quote(ctx, q, st, p):
    i = q.instrument
    if st.placed[i] == 0.0 and q.bid_px == q.bid_px:
        st.placed[i] = 1.0
        buy(ctx, i, lot_size(ctx, i), round_to_tick(ctx, i, q.bid_px * 0.98, -1))


class Resting(Strategy):
    """One resting buy limit per instrument, never cancelled (tests only)."""

    kinds = ("quotes",)
    state = {"placed": PerInstrument(float)}
    on_quote = on_quote
