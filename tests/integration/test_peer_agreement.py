"""Agreement with the peers' workloads, fill for fill, against references in exact integer
arithmetic: the z-score rule on a random walk of quotes, and sma_cross on bars. Each
workload holds exact ties (asserted), where floating-point rounding would decide the side."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tickwise import load_strategy
from tickwise.engine.instruments import Instrument, Instruments
from tickwise.engine.session import Session

from ..conftest import UNGUARDED

T0 = 1_700_000_000_000_000_000
PEERS = Path(__file__).resolve().parents[1] / "peers.py"
ONE = Instruments([Instrument(0, "X", 0.01, 1.0)])


def random_walk_quotes(n: int, seed: int) -> dict[str, np.ndarray]:
    """n quotes of one instrument on a 0.01 grid, a quiet market: the bid moves one tick at
    one quote in ten (the others change sizes only), the spread is one tick (mids on the half
    tick). Many mids repeat in a window, and exact ties of z with 2 or 0.5 are frequent."""
    rng = np.random.default_rng(seed)
    bid = 10_000 + np.cumsum(rng.choice([-1, 0, 1], size=n, p=[0.05, 0.9, 0.05]))
    ask = bid + 1
    return {
        "ts_event": T0 + np.arange(n, dtype=np.int64) * 1_000_000,
        "ts_recv": T0 + np.arange(n, dtype=np.int64) * 1_000_000,
        "instrument": np.zeros(n, dtype=np.uint32),
        "seq": np.arange(1, n + 1, dtype=np.uint64),
        "bid_px": bid / 100,  # (the float nearest each decimal price)
        "ask_px": ask / 100,
        "bid_sz": np.full(n, 100.0),
        "ask_sz": np.full(n, 100.0),
    }


def window_sums(k: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact sums of the last w integers and of their squares, at each index from w - 1."""
    k = k.astype(np.int64)
    c1 = np.concatenate([[0], np.cumsum(k)])
    c2 = np.concatenate([[0], np.cumsum(k * k)])
    return c1[w:] - c1[:-w], c2[w:] - c2[:-w]


def zscore_reference(q: dict[str, np.ndarray], window: int) -> tuple[list, int]:
    """The peers' rule (entry 2, exit 0.5, one unit) in integers: mids in half ticks k,
    a = m k - S and b = m Q - S^2, so z = a / sqrt(b) and z > 2 is a > 0 and a^2 > 4 b.
    The fills (row, side, qty, price), and how many exact ties (z = +-2 or +-0.5) decided
    the target: quotes where counting the tie as beyond the threshold would trade."""
    bid = np.round(q["bid_px"] * 100).astype(np.int64)
    ask = np.round(q["ask_px"] * 100).astype(np.int64)
    k = bid + ask
    s, sq = window_sums(k, window)
    a = window * k[window - 1 :] - s
    b = window * sq - s * s
    beyond, at_entry = a * a > 4 * b, a * a == 4 * b
    inside, at_exit = 4 * a * a < b, 4 * a * a == b
    fills, pos, ties = [], 0, 0
    for j in np.flatnonzero(b > 0):
        target = -int(np.sign(a[j])) if beyond[j] else 0 if inside[j] else pos
        if at_entry[j] or at_exit[j]:
            loose = -int(np.sign(a[j])) if beyond[j] or at_entry[j] else 0
            ties += loose != target
        if target != pos:
            row = j + window - 1
            side = 1 if target > pos else -1
            price = q["ask_px"][row] if side > 0 else q["bid_px"][row]
            fills.append((int(row), side, float(abs(target - pos)), float(price)))
            pos = target
    return fills, ties


def run(strategy, kind: str, data: dict[str, np.ndarray], params: dict, batch: int) -> np.ndarray:
    s = Session(strategy, ONE, params, **UNGUARDED)
    n = len(data["ts_event"])
    cuts = range(0, n, batch)
    return np.concatenate(
        [s.on_batch(kind, {c: v[i : i + batch] for c, v in data.items()}).fills for i in cuts]
    )


def test_the_peers_zscore_rule_gives_the_exact_reference_fills_ties_included() -> None:
    quotes = random_walk_quotes(200_000, seed=3)
    expected, ties = zscore_reference(quotes, 100)
    assert ties >= 5  # the workload holds exact ties that decide, where rounding would
    fills = run(load_strategy(f"{PEERS}:PeerZscore"), "quotes", quotes, {}, 65_536)
    rows = (fills["ts"] - T0) // 1_000_000
    got = list(zip(rows.tolist(), fills["side"].tolist(), fills["qty"].tolist(),
                   fills["price"].tolist(), strict=True))  # fmt: skip
    assert len(got) == len(expected)
    assert got == expected


def random_walk_bars(n: int, seed: int) -> dict[str, np.ndarray]:
    """n one-minute bars of one instrument on a 0.01 grid: the close walks by 0 to 2 ticks
    either way, each bar opens within a tick of the last close."""
    rng = np.random.default_rng(seed)
    close = 10_000 + np.cumsum(rng.integers(-2, 3, size=n))
    opened = np.concatenate([[close[0]], close[:-1]]) + rng.integers(-1, 2, size=n)
    high = np.maximum(opened, close) + rng.integers(0, 3, size=n)
    low = np.minimum(opened, close) - rng.integers(0, 3, size=n)
    return {
        "ts_event": T0 + np.arange(n, dtype=np.int64) * 60_000_000_000,
        "instrument": np.zeros(n, dtype=np.uint32),
        "open": opened / 100,
        "high": high / 100,
        "low": low / 100,
        "close": close / 100,
        "volume": np.full(n, 1_000.0),
    }


def sma_cross_reference(bars: dict[str, np.ndarray], fast: int, slow: int) -> tuple[list, int]:
    """sma_cross long/short, one unit, in integers: the fast mean exceeds the slow one when
    slow * sum_fast > fast * sum_slow. A cross decided at a bar's close is a market order
    filled at the next bar's open. The fills (bar, side, qty, price) and how many bars have
    the two means exactly equal."""
    k = np.round(bars["close"] * 100).astype(np.int64)
    s_fast, _ = window_sums(k, fast)
    s_slow, _ = window_sums(k, slow)
    sign = np.sign(slow * s_fast[slow - fast :] - fast * s_slow)  # from bar slow - 1 on
    fills, pos = [], 0
    for j in range(1, len(sign)):
        target = pos
        if sign[j] > 0 and sign[j - 1] <= 0:
            target = 1
        elif sign[j] < 0 and sign[j - 1] >= 0:
            target = -1
        bar = j + slow  # the next bar, where the order fills
        if target != pos and bar < len(k):
            side = 1 if target > pos else -1
            fills.append((bar, side, float(abs(target - pos)), float(bars["open"][bar])))
            pos = target
    return fills, int((sign == 0).sum())


def test_sma_cross_on_bars_gives_the_exact_reference_fills_at_the_next_open() -> None:
    bars = random_walk_bars(100_000, seed=1)
    expected, ties = sma_cross_reference(bars, 10, 50)
    assert ties >= 50  # bars where the two means are exactly equal
    params = {"fast": 10, "slow": 50, "long_short": True}
    fills = run(load_strategy("sma_cross"), "bars", bars, params, 30_000)
    at = ((fills["ts"] - T0) // 60_000_000_000).tolist()
    got = list(zip(at, fills["side"].tolist(), fills["qty"].tolist(), fills["price"].tolist(),
                   strict=True))  # fmt: skip
    assert len(got) > 1_000
    assert got == expected
