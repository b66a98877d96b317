"""The cases `tickwise bench` runs, each beside its floor in the same run.

So far: the wire format (`feeds/wire.py`), encoding and decoding a quotes
batch of 1, 64 and 4,096 rows. The floor of encoding is copying the same
column bytes into one buffer with numpy; of decoding, making numpy views of
the same columns at known offsets, with no checks. Ours and the floor take
turns, call by call, so noise hits them alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from tickwise.engine.schemas import QUOTE_DTYPE
from tickwise.feeds import wire

from .harness import Case, percentiles

WIRE_ROWS = (1, 64, 4_096)
# Decoding checks every header field and column bound, and encoding pads and checks every
# column: they may cost this much more than the bare copy or views (p50, p99).
WIRE_TARGET = {"p50": 3.0, "p99": 3.0}


def _quotes(rows: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(rows)
    return {n: rng.integers(1, 1_000, rows).astype(QUOTE_DTYPE[n]) for n in QUOTE_DTYPE.names}


def _turns(ours: Callable[[], object], floor: Callable[[], object], calls: int
           ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Each callable's time per call (ns), taking turns call by call."""
    a = np.empty(calls, dtype=np.int64)
    b = np.empty(calls, dtype=np.int64)
    clock = time.perf_counter_ns
    for k in range(calls):
        t0 = clock()
        ours()
        t1 = clock()
        floor()
        t2 = clock()
        a[k] = t1 - t0
        b[k] = t2 - t1
    return a, b


def wire_cases(quick: bool) -> list[Case]:
    cases = []
    for rows in WIRE_ROWS:
        calls = (2_000 if quick else 20_000) if rows < 4_096 else (300 if quick else 3_000)
        columns = _quotes(rows)
        header, body = wire.encode("quotes", columns, 1)
        frames = [header, body.tobytes()]
        parts = [columns[n].view(np.uint8) for n in QUOTE_DTYPE.names]
        offsets = [int(o) for o in np.cumsum([0] + [p.size for p in parts[:-1]])]
        kinds = [QUOTE_DTYPE[n] for n in QUOTE_DTYPE.names]
        buffer = frames[1]

        def encode(columns=columns) -> object:
            return wire.encode("quotes", columns, 1)

        def copy(parts=parts) -> object:
            return np.concatenate(parts)

        def decode(frames=frames) -> object:
            return wire.decode(frames)

        def views(buffer=buffer, offsets=offsets, kinds=kinds, rows=rows) -> object:
            return [np.frombuffer(buffer, k, rows, o) for k, o in zip(kinds, offsets, strict=True)]

        for what, ours, floor, floor_how in (
            ("encode", encode, copy, "the same column bytes copied into one buffer"),
            ("decode", decode, views, "numpy views of the columns at known offsets"),
        ):
            ours(), floor()  # (first calls out of the way)
            a, b = _turns(ours, floor, calls)
            cases.append(Case(
                name=f"wire.{what}.quotes.{rows}", kind="latency", unit="µs",
                how=f"{what} a {rows}-row quotes batch, {calls:,} calls taking turns with the "
                    f"floor ({floor_how}), perf_counter_ns per call",
                ours=percentiles(a, 1e3), floor=percentiles(b, 1e3), target=dict(WIRE_TARGET),
                samples=calls,
            ))  # fmt: skip
    return cases


# name -> the function that measures it (quick: fewer rounds); `tickwise bench` runs them all.
SUITE: dict[str, Callable[[bool], list[Case]]] = {"wire": wire_cases}
