"""The compiled synthetic market: one simulation, four projections (quotes, trades, bars, book).

Each instrument has a fair price following a log random walk whose volatility
follows a U shape through the trading day, and an L2 book of `LEVELS` price
levels per side on its tick grid. An event is either a quote update (the book
re-centres on the fair price and sizes refresh) or a trade (an aggressor
consumes the best level of one side). Which kind is written out never changes
the random draws, so quotes, trades, bars and book deltas generated with the
same seed describe one and the same market.

All state lives in caller-owned arrays, so generation can stop whenever the
output buffer is full and resume exactly where it was.
"""

from __future__ import annotations

import numpy as np
from numba import njit

LEVELS = 10  # book depth per side
NS = 1_000_000_000
DAY_NS = 86_400 * NS
MINUTE_NS = 60 * NS

# Output kinds (the `kind` argument).
K_QUOTES = 0
K_TRADES = 1
K_BARS = 2
K_BOOK = 3

# Rows of the int64 output matrix.
O_TS = 0
O_RECV = 1
O_INST = 2
O_SEQ = 3
O_SIDE = 4
O_FLAGS = 5
N_OUT_I = 6
N_OUT_F = 5  # float rows: quotes bid_px, ask_px, bid_sz, ask_sz; trades px, sz; bars o,h,l,c,v

# Columns of the per-instrument int64 state.
I_LAST_T = 0  # time of the instrument's last event (ns)
I_SEQ = 1  # last sequence number used
I_N_BID = 2  # live levels on the bid side
I_N_ASK = 3
I_BAR_HAS = 4  # 1 when the current minute has a trade
I_TICK_CENTS = 5  # tick size in hundredths (prices are ticks * tick_cents / 100)
I_SPREAD0 = 6  # base spread in ticks
N_INST_I = 7

# Columns of the per-instrument float64 state.
F_LOG_FAIR = 0
F_LOT = 1
F_SIGMA = 2  # volatility per sqrt(second)
F_BAR_O = 3
F_BAR_H = 4
F_BAR_L = 5
F_BAR_C = 6
F_BAR_V = 7
N_INST_F = 8

# Clock (int64 scalars).
C_T = 0  # current time (ns since the epoch)
C_MINUTE = 1  # current minute index (for bars)
C_SNAP = 2  # 1 when a full snapshot is owed (at start, after a gap or stale period)
N_CLOCK = 3

# Config (float64 scalars).
G_RATE = 0  # events per second, all instruments together
G_P_TRADE = 1  # probability that an event is a trade
G_OPEN_S = 2  # session open, seconds after midnight UTC
G_CLOSE_S = 3  # session close
N_CFG = 4

# Episodes: crash rows (start_ns, down_ns, recover_ns, log_drop, instrument or -1 for all);
# quiet rows (start_ns, end_ns, QUIET_GAP | QUIET_STALE).
QUIET_NONE = 0
QUIET_GAP = 1  # messages lost: sequence numbers advance, nothing is sent
QUIET_STALE = 2  # feed silent: nothing is sent and sequence numbers stand still

# Book-delta flags, as in engine.schemas (kernels import only numpy and numba).
BOOK_F_LAST = 1
BOOK_F_SNAPSHOT = 2
BOOK_F_CLEAR = 4


# --- random numbers: xoshiro256** (state: uint64[4]) --------------------------------------------


@njit(cache=True)
def _rotl(x, k):
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


@njit(cache=True)
def _next_u64(s):
    result = _rotl(s[1] * np.uint64(5), 7) * np.uint64(9)
    t = s[1] << np.uint64(17)
    s[2] ^= s[0]
    s[3] ^= s[1]
    s[1] ^= s[2]
    s[0] ^= s[3]
    s[2] ^= t
    s[3] = _rotl(s[3], 45)
    return result


@njit(cache=True)
def _uniform(s):
    """Uniform in [0, 1) with 53 random bits."""
    return float(_next_u64(s) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def _normal(s):
    u1 = 1.0 - _uniform(s)  # (0, 1]: log is finite
    u2 = _uniform(s)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


@njit(cache=True)
def _exponential(s):
    return -np.log(1.0 - _uniform(s))


# --- market mechanics -------------------------------------------------------------------------


@njit(cache=True)
def _weekday(day):
    return (day + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0


@njit(cache=True)
def _advance_clock(t, rng, cfg):
    """The next event time: exponential inter-arrivals inside weekday sessions."""
    step = max(np.int64(1), np.int64(_exponential(rng) / cfg[G_RATE] * NS))
    t = t + step
    open_ns = np.int64(cfg[G_OPEN_S] * NS)
    close_ns = np.int64(cfg[G_CLOSE_S] * NS)
    day = t // DAY_NS
    tod = t - day * DAY_NS
    if tod < open_ns and _weekday(day) < 5:
        return day * DAY_NS + open_ns + step
    if tod >= close_ns or _weekday(day) >= 5:
        day += 1
        while _weekday(day) >= 5:
            day += 1
        return day * DAY_NS + open_ns + step
    return t


@njit(cache=True)
def _vol_multiplier(t, cfg):
    """Intraday U shape: volatility highest just after the open and before the close."""
    tod_s = (t % DAY_NS) / NS
    since_open = max(0.0, tod_s - cfg[G_OPEN_S])
    to_close = max(0.0, cfg[G_CLOSE_S] - tod_s)
    return 1.0 + 1.2 * np.exp(-since_open / 1800.0) + 0.8 * np.exp(-to_close / 1200.0)


@njit(cache=True)
def _crash_state(t, i, crash):
    """(log price offset, volatility factor, buy probability) of the crash episodes at time t."""
    offset = 0.0
    vol = 1.0
    p_buy = 0.5
    for e in range(crash.shape[0]):
        target = np.int64(crash[e, 4])
        if target >= 0 and target != i:
            continue
        start = crash[e, 0]
        down = crash[e, 1]
        recover = crash[e, 2]
        x = t - start
        if x < 0 or x >= down + recover:
            continue
        vol = 3.0
        if x < down:
            offset += crash[e, 3] * x / down
            p_buy = 0.2
        else:
            offset += crash[e, 3] * (1.0 - (x - down) / recover)
            p_buy = 0.65
    return offset, vol, p_buy


@njit(cache=True)
def _quiet_state(t, quiet):
    for e in range(quiet.shape[0]):
        if quiet[e, 0] <= t < quiet[e, 1]:
            return quiet[e, 2]
    return QUIET_NONE


@njit(cache=True)
def _draw_lots(rng, depth, lot):
    """A level size: log-normal in lots, deeper levels larger, at least one lot."""
    lots = 1.0 + np.floor(np.exp(np.log(4.0) + 0.15 * depth + 0.9 * _normal(rng)))
    return min(lots, 5000.0) * lot


@njit(cache=True)
def _price(ticks, tick_cents):
    # Dividing an exact integer by 100 gives the double nearest the decimal price.
    return (ticks * tick_cents) / 100.0


@njit(cache=True)
def _next_seq(inst_i, i, quiet):
    """The sequence number of the next row of instrument i, or -1 when the row is not sent."""
    if quiet == QUIET_STALE:
        return -1
    inst_i[i, I_SEQ] += 1
    if quiet == QUIET_GAP:
        return -1
    return inst_i[i, I_SEQ]


@njit(cache=True)
def _put(out_i, out_f, n, ts, recv, inst, seq, side, flags, f0, f1, f2, f3, f4):
    out_i[O_TS, n] = ts
    out_i[O_RECV, n] = recv
    out_i[O_INST, n] = inst
    out_i[O_SEQ, n] = seq
    out_i[O_SIDE, n] = side
    out_i[O_FLAGS, n] = flags
    out_f[0, n] = f0
    out_f[1, n] = f1
    out_f[2, n] = f2
    out_f[3, n] = f3
    out_f[4, n] = f4
    return n + 1


@njit(cache=True)
def _delta(out_i, out_f, n, inst_i, i, quiet, ts, recv, side, ticks, size, flags):
    seq = _next_seq(inst_i, i, quiet)
    if seq < 0:
        return n
    px = _price(ticks, inst_i[i, I_TICK_CENTS])
    return _put(out_i, out_f, n, ts, recv, i, seq, side, flags, px, size, 0.0, 0.0, 0.0)


@njit(cache=True)
def _quote_row(out_i, out_f, n, inst_i, book_px, book_sz, i, quiet, ts, recv):
    seq = _next_seq(inst_i, i, quiet)
    if seq < 0:
        return n
    bid = _price(book_px[i, 0, 0], inst_i[i, I_TICK_CENTS])
    ask = _price(book_px[i, 1, 0], inst_i[i, I_TICK_CENTS])
    return _put(out_i, out_f, n, ts, recv, i, seq, 0, 0, bid, ask, book_sz[i, 0, 0],
                book_sz[i, 1, 0], 0.0)  # fmt: skip


@njit(cache=True)
def _mark_last(out_i, n, first):
    """Flag the last delta written since row `first` as the end of an update."""
    if n > first:
        out_i[O_FLAGS, n - 1] |= BOOK_F_LAST


@njit(cache=True)
def _recentre_side(
    i, side, new_top, rng, inst_i, inst_f, book_px, book_sz, scratch_px, scratch_sz, emit, out_i,
    out_f, n, quiet, ts, recv,
):  # fmt: skip
    """Move one side of instrument i's book to a new best price; emit the deltas (if `emit`).

    Levels that stay keep their size, new levels get a fresh size, and the best
    level and one random level refresh their size. Side 0 is bid, 1 is ask.
    """
    s = 1 if side == 0 else -1  # +1 for bids: prices fall with depth
    n_col = I_N_BID if side == 0 else I_N_ASK
    old_n = inst_i[i, n_col]
    old_top = book_px[i, side, 0]
    lot = inst_f[i, F_LOT]
    new_n = 0
    for k in range(LEVELS):
        p = new_top - s * k
        if p < 1:
            break
        j = (old_top - p) * s
        scratch_px[k] = p
        scratch_sz[k] = book_sz[i, side, j] if 0 <= j < old_n else _draw_lots(rng, k, lot)
        new_n += 1
    if _uniform(rng) < 0.7:
        scratch_sz[0] = _draw_lots(rng, 0, lot)
    if _uniform(rng) < 0.3:
        k = int(_uniform(rng) * new_n)
        scratch_sz[k] = _draw_lots(rng, k, lot)
    side_val = 1 if side == 0 else -1
    if emit:
        for j in range(old_n):  # levels that left the book
            k = (new_top - book_px[i, side, j]) * s
            if not (0 <= k < new_n):
                n = _delta(
                    out_i, out_f, n, inst_i, i, quiet, ts, recv, side_val, book_px[i, side, j],
                    0.0, 0,
                )  # fmt: skip
        for k in range(new_n):  # levels that are new or changed size
            j = (old_top - scratch_px[k]) * s
            if not (0 <= j < old_n) or book_sz[i, side, j] != scratch_sz[k]:
                n = _delta(
                    out_i, out_f, n, inst_i, i, quiet, ts, recv, side_val, scratch_px[k],
                    scratch_sz[k], 0,
                )  # fmt: skip
    for k in range(new_n):
        book_px[i, side, k] = scratch_px[k]
        book_sz[i, side, k] = scratch_sz[k]
    inst_i[i, n_col] = new_n
    return n


@njit(cache=True)
def _snapshot(out_i, out_f, n, kind, inst_i, book_px, book_sz, ts, recv):
    """Every instrument's full book (book kind) or top of book (quotes kind) at time ts."""
    for i in range(inst_i.shape[0]):
        if kind == K_QUOTES:
            n = _quote_row(out_i, out_f, n, inst_i, book_px, book_sz, i, QUIET_NONE, ts, recv)
        elif kind == K_BOOK:
            first = n
            flags = BOOK_F_SNAPSHOT | BOOK_F_CLEAR
            for side in range(2):
                side_val = 1 if side == 0 else -1
                n_col = I_N_BID if side == 0 else I_N_ASK
                for k in range(inst_i[i, n_col]):
                    n = _delta(
                        out_i, out_f, n, inst_i, i, QUIET_NONE, ts, recv, side_val,
                        book_px[i, side, k], book_sz[i, side, k], flags,
                    )  # fmt: skip
                    flags = BOOK_F_SNAPSHOT
            _mark_last(out_i, n, first)
    return n


@njit(cache=True)
def _flush_bars(out_i, out_f, n, kind, inst_i, inst_f, minute, quiet):
    """Close the bars of `minute` (ts_event is the minute's end); emit them for the bars kind."""
    ts = (minute + 1) * MINUTE_NS
    for i in range(inst_i.shape[0]):
        if inst_i[i, I_BAR_HAS] == 0:
            continue
        inst_i[i, I_BAR_HAS] = 0
        if kind == K_BARS and quiet == QUIET_NONE:
            n = _put(
                out_i, out_f, n, ts, ts, i, 0, 0, 0, inst_f[i, F_BAR_O], inst_f[i, F_BAR_H],
                inst_f[i, F_BAR_L], inst_f[i, F_BAR_C], inst_f[i, F_BAR_V],
            )  # fmt: skip
    return n


@njit(cache=True)
def _centre(i, t, rng, inst_i, inst_f, cfg, crash):
    """Advance instrument i's fair price to time t; return its best bid and ask in ticks."""
    dt = min(300.0, (t - inst_i[i, I_LAST_T]) / NS)
    inst_i[i, I_LAST_T] = t
    offset, crash_vol, _ = _crash_state(t, i, crash)
    v = _vol_multiplier(t, cfg) * crash_vol
    inst_f[i, F_LOG_FAIR] += inst_f[i, F_SIGMA] * v * np.sqrt(dt) * _normal(rng)
    fair_ticks = np.exp(inst_f[i, F_LOG_FAIR] + offset) * 100.0 / inst_i[i, I_TICK_CENTS]
    spread = inst_i[i, I_SPREAD0] + (1 if _uniform(rng) < 0.25 else 0) + np.int64(v - 1.0)
    bid = max(np.int64(1), np.int64(np.floor(fair_ticks - spread / 2.0)))
    return bid, bid + spread


@njit(cache=True)
def max_rows_per_step(n_instruments):
    """The most rows one step of `simulate_nb` can write (a snapshot of every book)."""
    return 2 * LEVELS * n_instruments + 4 * LEVELS + 2 * n_instruments + 8


@njit(cache=True)
def init_books_nb(t, rng, inst_i, inst_f, book_px, book_sz, scratch_px, scratch_sz, cfg, crash):
    """Build every instrument's opening book at time t (nothing is emitted)."""
    out_i = np.zeros((N_OUT_I, 1), dtype=np.int64)
    out_f = np.zeros((N_OUT_F, 1), dtype=np.float64)
    for i in range(inst_i.shape[0]):
        inst_i[i, I_LAST_T] = t
        bid, ask = _centre(i, t, rng, inst_i, inst_f, cfg, crash)
        book_px[i, 0, 0] = bid
        book_px[i, 1, 0] = ask
        for side in range(2):
            _recentre_side(
                i, side, bid if side == 0 else ask, rng, inst_i, inst_f, book_px, book_sz,
                scratch_px, scratch_sz, False, out_i, out_f, 0, QUIET_NONE, t, t,
            )  # fmt: skip


@njit(cache=True)
def simulate_nb(
    kind, rows_left, out_i, out_f, rng, clock, cfg, inst_i, inst_f, book_px, book_sz, scratch_px,
    scratch_sz, crash, quiet,
):  # fmt: skip
    """Run the market until the output buffer cannot hold another event or `rows_left` rows
    are written; return the rows written. Resumable: all state is in the arrays.
    """
    n_inst = inst_i.shape[0]
    cap = out_i.shape[1]
    worst = max_rows_per_step(n_inst)
    n = 0
    while n + worst <= cap and n < rows_left:
        t = _advance_clock(clock[C_T], rng, cfg)
        clock[C_T] = t
        q = _quiet_state(t, quiet)
        recv = t + 20_000 + np.int64(_exponential(rng) * 30_000.0)
        minute = t // MINUTE_NS
        if minute != clock[C_MINUTE]:
            n = _flush_bars(
                out_i, out_f, n, kind, inst_i, inst_f, clock[C_MINUTE],
                _quiet_state((clock[C_MINUTE] + 1) * MINUTE_NS, quiet),
            )  # fmt: skip
            clock[C_MINUTE] = minute
        if q != QUIET_NONE:
            clock[C_SNAP] = 1
        elif clock[C_SNAP] == 1:
            # The first event after the start or a silence is a full snapshot, so a
            # consumer can rebuild its book; the market does not move in it.
            n = _snapshot(out_i, out_f, n, kind, inst_i, book_px, book_sz, t, recv)
            clock[C_SNAP] = 0
            continue
        i = min(n_inst - 1, np.int64(_uniform(rng) * n_inst))
        is_trade = _uniform(rng) < cfg[G_P_TRADE]
        _, _, p_buy = _crash_state(t, i, crash)
        side = 1 if _uniform(rng) < p_buy else 0  # 1: buyer lifts the ask; 0: seller hits the bid
        n_col = I_N_ASK if side == 1 else I_N_BID
        if is_trade and inst_i[i, n_col] > 1:
            n = _trade(
                out_i, out_f, n, kind, i, side, t, recv, q, rng, inst_i, inst_f, book_px, book_sz
            )
        else:
            bid, ask = _centre(i, t, rng, inst_i, inst_f, cfg, crash)
            bid0, ask0 = book_px[i, 0, 0], book_px[i, 1, 0]
            bsz0, asz0 = book_sz[i, 0, 0], book_sz[i, 1, 0]
            first = n
            emit = kind == K_BOOK
            for side in range(2):
                n = _recentre_side(
                    i, side, bid if side == 0 else ask, rng, inst_i, inst_f, book_px, book_sz,
                    scratch_px, scratch_sz, emit, out_i, out_f, n, q, t, recv,
                )  # fmt: skip
            if emit:
                _mark_last(out_i, n, first)
            moved = (
                bid0 != book_px[i, 0, 0]
                or ask0 != book_px[i, 1, 0]
                or bsz0 != book_sz[i, 0, 0]
                or asz0 != book_sz[i, 1, 0]
            )
            if kind == K_QUOTES and moved:
                n = _quote_row(out_i, out_f, n, inst_i, book_px, book_sz, i, q, t, recv)
    return n


@njit(cache=True)
def _trade(out_i, out_f, n, kind, i, side, t, recv, q, rng, inst_i, inst_f, book_px, book_sz):
    """An aggressor takes part or all of the best level of the other side."""
    book_side = 1 if side == 1 else 0  # a buyer takes the ask
    n_col = I_N_ASK if book_side == 1 else I_N_BID
    lot = inst_f[i, F_LOT]
    want = (1.0 + np.floor(np.exp(np.log(2.0) + 0.7 * _normal(rng)))) * lot
    qty = min(want, book_sz[i, book_side, 0])
    ticks = book_px[i, book_side, 0]
    px = _price(ticks, inst_i[i, I_TICK_CENTS])
    left = book_sz[i, book_side, 0] - qty
    if left > 0.0:
        book_sz[i, book_side, 0] = left
    else:
        m = inst_i[i, n_col]
        for k in range(m - 1):
            book_px[i, book_side, k] = book_px[i, book_side, k + 1]
            book_sz[i, book_side, k] = book_sz[i, book_side, k + 1]
        inst_i[i, n_col] = m - 1
    if inst_i[i, I_BAR_HAS] == 0:
        inst_i[i, I_BAR_HAS] = 1
        inst_f[i, F_BAR_O] = px
        inst_f[i, F_BAR_H] = px
        inst_f[i, F_BAR_L] = px
        inst_f[i, F_BAR_V] = 0.0
    inst_f[i, F_BAR_H] = max(inst_f[i, F_BAR_H], px)
    inst_f[i, F_BAR_L] = min(inst_f[i, F_BAR_L], px)
    inst_f[i, F_BAR_C] = px
    inst_f[i, F_BAR_V] += qty
    aggressor = 1 if side == 1 else -1
    if kind == K_TRADES:
        seq = _next_seq(inst_i, i, q)
        if seq >= 0:
            n = _put(out_i, out_f, n, t, recv, i, seq, aggressor, 0, px, qty, 0.0, 0.0, 0.0)
    elif kind == K_QUOTES:
        n = _quote_row(out_i, out_f, n, inst_i, book_px, book_sz, i, q, t, recv)
    elif kind == K_BOOK:
        size = left if left > 0.0 else 0.0
        n = _delta(
            out_i, out_f, n, inst_i, i, q, t, recv, 1 if book_side == 0 else -1, ticks, size,
            BOOK_F_LAST,
        )  # fmt: skip
    return n
