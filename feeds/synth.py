"""Deterministic synthetic markets: same configuration and seed, same rows, same bytes.

One simulated market (see `synth_kernels`) is projected to the kind asked
for, so quotes, trades, bars and book deltas made with the same seed agree
with each other. Abnormal episodes (a flash crash, a feed gap, a stale feed)
can be injected at chosen times so the kill switch can be tested on data.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from tickwise.engine.atomic import check_target
from tickwise.engine.errors import TickwiseError
from tickwise.engine.instruments import Instrument, Instruments
from tickwise.engine.schemas import BOOK_F_LAST, KINDS, market_dtype, market_schema

from . import synth_kernels as sk
from .store import HistoryWriter

CHUNK_ROWS = 1 << 18  # rows per generated batch; fixed, so output bytes never depend on it
DEFAULT_START = dt.datetime(2024, 1, 2, 14, 30, tzinfo=dt.UTC)  # a Tuesday, 09:30 New York
SESSION_OPEN_S = 14 * 3600 + 30 * 60  # 14:30 UTC
SESSION_CLOSE_S = 21 * 3600  # 21:00 UTC
_SECONDS_PER_TRADING_YEAR = 252 * (SESSION_CLOSE_S - SESSION_OPEN_S)
_KIND_CODE = {"quotes": sk.K_QUOTES, "trades": sk.K_TRADES, "bars": sk.K_BARS, "book": sk.K_BOOK}
# Where each column comes from in the kernel's output: ("i", row) or ("f", row).
_COLUMN_SOURCE = {
    "quotes": {"bid_px": ("f", 0), "ask_px": ("f", 1), "bid_sz": ("f", 2), "ask_sz": ("f", 3)},
    "trades": {"px": ("f", 0), "sz": ("f", 1), "side": ("i", sk.O_SIDE)},
    "bars": {
        "open": ("f", 0),
        "high": ("f", 1),
        "low": ("f", 2),
        "close": ("f", 3),
        "volume": ("f", 4),
    },
    "book": {"side": ("i", sk.O_SIDE), "px": ("f", 0), "sz": ("f", 1), "flags": ("i", sk.O_FLAGS)},
}
_COMMON_SOURCE = {
    "ts_event": ("i", sk.O_TS),
    "ts_recv": ("i", sk.O_RECV),
    "instrument": ("i", sk.O_INST),
    "seq": ("i", sk.O_SEQ),
}


@dataclass(frozen=True)
class FlashCrash:
    """Prices fall `drop_pct` % over `down_s` seconds from `at_s`, then recover over `recover_s`.

    Volatility triples and sellers dominate on the way down. `instrument=None`
    crashes every instrument (a market-wide event).
    """

    at_s: float
    drop_pct: float = 8.0
    down_s: float = 30.0
    recover_s: float = 120.0
    instrument: int | None = None


@dataclass(frozen=True)
class FeedGap:
    """Messages are lost for `seconds` from `at_s`: sequence numbers jump over them."""

    at_s: float
    seconds: float = 1.0


@dataclass(frozen=True)
class StaleFeed:
    """The feed goes silent for `seconds` from `at_s` while the market moves on."""

    at_s: float
    seconds: float = 5.0


Episode = FlashCrash | FeedGap | StaleFeed


@dataclass(frozen=True)
class SynthConfig:
    """What to generate. `at_s` of episodes counts seconds from `start`."""

    kind: str = "quotes"
    rows: int = 1_000_000
    instruments: int = 4
    seed: int = 0
    start: dt.datetime = DEFAULT_START
    rate: float | None = None  # market events per second, all instruments; None: default_rate
    episodes: tuple[Episode, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TickwiseError(
                f"--kind {self.kind!r} is unknown; choose one of {', '.join(KINDS)}"
            )
        if self.rows < 1:
            raise TickwiseError(f"--rows must be at least 1, got {self.rows}")
        if not 1 <= self.instruments <= 10_000:
            raise TickwiseError(
                f"--instruments must be between 1 and 10000, got {self.instruments}"
            )
        if not 0 <= self.seed < 2**63:
            raise TickwiseError(f"--seed must be between 0 and 2**63-1, got {self.seed}")
        rate = self.event_rate
        if not (math.isfinite(rate) and 0 < rate <= 1e8):
            raise TickwiseError(f"--rate must be in (0, 1e8] events/s, got {rate}")
        if self.start.tzinfo is None:
            raise TickwiseError("start must be timezone-aware (UTC)")
        for ep in self.episodes:
            _check_episode(ep, self.instruments)

    @property
    def event_rate(self) -> float:
        """Market events per second, all instruments together."""
        return self.rate if self.rate is not None else default_rate(self.kind)


def default_rate(kind: str) -> float:
    """Market events per second when none is given: 1000, or 50 for bars (a bar needs a
    minute of market, so a slower market makes a long bar history quickly)."""
    return 50.0 if kind == "bars" else 1_000.0


def _check_episode(ep: Episode, n_instruments: int) -> None:
    name = type(ep).__name__
    if not (math.isfinite(ep.at_s) and ep.at_s >= 0):
        raise TickwiseError(f"{name}: at must be >= 0 seconds, got {ep.at_s}")
    if isinstance(ep, FlashCrash):
        if not 0 < ep.drop_pct < 100:
            raise TickwiseError(f"{name}: drop_pct must be in (0, 100), got {ep.drop_pct}")
        if not (ep.down_s > 0 and ep.recover_s > 0):
            raise TickwiseError(f"{name}: down_s and recover_s must be > 0")
        if ep.instrument is not None and not 0 <= ep.instrument < n_instruments:
            raise TickwiseError(
                f"{name}: instrument {ep.instrument} is not in 0..{n_instruments - 1}"
            )
    elif not ep.seconds > 0:
        raise TickwiseError(f"{name}: seconds must be > 0, got {ep.seconds}")


def make_instruments(n: int) -> Instruments:
    """`n` synthetic instruments, SYN0 to SYN{n-1}, with a mix of tick sizes and lots.

    The table is the same for every seed: only prices and order flow differ.
    """
    ticks = (0.01, 0.01, 0.05, 0.25)
    lots = (1.0, 100.0, 1.0, 1.0)
    return Instruments(Instrument(i, f"SYN{i}", ticks[i % 4], lots[i % 4]) for i in range(n))


class Market:
    """A running synthetic market whose state is all in arrays (so it can stop and resume)."""

    def __init__(self, config: SynthConfig) -> None:
        self.config = config
        self.instruments = make_instruments(config.instruments)
        n = config.instruments
        rng = np.random.default_rng(config.seed)
        self.rng = np.random.SeedSequence(config.seed).generate_state(4, dtype=np.uint64)
        self.clock = np.zeros(sk.N_CLOCK, dtype=np.int64)
        start_ns = int(config.start.timestamp()) * 1_000_000_000
        self.start_ns = start_ns
        self.clock[sk.C_T] = start_ns
        self.clock[sk.C_MINUTE] = start_ns // sk.MINUTE_NS
        self.clock[sk.C_SNAP] = 1
        self.cfg = np.zeros(sk.N_CFG, dtype=np.float64)
        self.cfg[sk.G_RATE] = config.event_rate
        self.cfg[sk.G_P_TRADE] = 0.3
        self.cfg[sk.G_OPEN_S] = SESSION_OPEN_S
        self.cfg[sk.G_CLOSE_S] = SESSION_CLOSE_S
        self.inst_i = np.zeros((n, sk.N_INST_I), dtype=np.int64)
        self.inst_f = np.zeros((n, sk.N_INST_F), dtype=np.float64)
        for inst in self.instruments:
            i = inst.id
            tick_cents = round(inst.tick_size * 100)
            price = math.exp(rng.uniform(math.log(20.0), math.log(400.0)))
            if tick_cents >= 25:
                price *= 10.0  # coarse ticks belong to index-future-like prices
            annual_vol = rng.uniform(0.15, 0.6)
            self.inst_i[i, sk.I_TICK_CENTS] = tick_cents
            self.inst_i[i, sk.I_SPREAD0] = 1 if tick_cents > 1 else int(rng.integers(1, 3))
            self.inst_f[i, sk.F_LOG_FAIR] = math.log(price)
            self.inst_f[i, sk.F_LOT] = inst.lot_size
            self.inst_f[i, sk.F_SIGMA] = annual_vol / math.sqrt(_SECONDS_PER_TRADING_YEAR)
        self.book_px = np.zeros((n, 2, sk.LEVELS), dtype=np.int64)
        self.book_sz = np.zeros((n, 2, sk.LEVELS), dtype=np.float64)
        self.scratch_px = np.zeros(sk.LEVELS, dtype=np.int64)
        self.scratch_sz = np.zeros(sk.LEVELS, dtype=np.float64)
        self.crash, self.quiet = _episode_arrays(config.episodes, start_ns)
        sk.init_books_nb(
            start_ns, self.rng, self.inst_i, self.inst_f, self.book_px, self.book_sz,
            self.scratch_px, self.scratch_sz, self.cfg, self.crash,
        )  # fmt: skip
        self._cap = max(CHUNK_ROWS, 2 * sk.max_rows_per_step(n))
        self._out_i = np.zeros((sk.N_OUT_I, self._cap), dtype=np.int64)
        self._out_f = np.zeros((sk.N_OUT_F, self._cap), dtype=np.float64)
        self._schema = market_schema(config.kind)

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Batches of the configured kind, `config.rows` rows in all (book: whole updates)."""
        kind = self.config.kind
        left = self.config.rows
        while left > 0:
            n = sk.simulate_nb(
                _KIND_CODE[kind], left, self._out_i, self._out_f, self.rng, self.clock, self.cfg,
                self.inst_i, self.inst_f, self.book_px, self.book_sz, self.scratch_px,
                self.scratch_sz, self.crash, self.quiet,
            )  # fmt: skip
            if n < left:
                yield self._batch(n)
                left -= n
                continue
            cut = left
            if kind == "book":
                # Book deltas end on a whole update, so the book left behind is consistent.
                last = np.flatnonzero(self._out_i[sk.O_FLAGS, :left] & BOOK_F_LAST)
                cut = int(last[-1]) + 1 if last.size else 0
            if cut:
                yield self._batch(cut)
            return

    def _batch(self, n: int) -> pa.RecordBatch:
        dtype = market_dtype(self.config.kind)
        sources = _COMMON_SOURCE | _COLUMN_SOURCE[self.config.kind]
        arrays = []
        for name in dtype.names:
            matrix, row = sources[name]
            values = (self._out_i if matrix == "i" else self._out_f)[row, :n]
            arrays.append(pa.array(values.astype(dtype.fields[name][0])))
        return pa.RecordBatch.from_arrays(arrays, schema=self._schema)


def _episode_arrays(episodes: tuple[Episode, ...], start_ns: int) -> tuple[np.ndarray, np.ndarray]:
    crashes = [e for e in episodes if isinstance(e, FlashCrash)]
    quiets = [e for e in episodes if not isinstance(e, FlashCrash)]
    crash = np.zeros((len(crashes), 5), dtype=np.float64)
    for row, e in zip(crash, crashes, strict=True):
        row[:] = (
            start_ns + e.at_s * 1e9,
            e.down_s * 1e9,
            e.recover_s * 1e9,
            math.log(1.0 - e.drop_pct / 100.0),
            -1 if e.instrument is None else e.instrument,
        )
    quiet = np.zeros((len(quiets), 3), dtype=np.int64)
    for row, e in zip(quiet, quiets, strict=True):
        begin = start_ns + round(e.at_s * 1e9)
        row[:] = (
            begin,
            begin + round(e.seconds * 1e9),
            sk.QUIET_GAP if isinstance(e, FeedGap) else sk.QUIET_STALE,
        )
    return crash, quiet


@dataclass(frozen=True)
class SynthResult:
    """What `synth` wrote, and how long it took (wall clock)."""

    path: Path
    kind: str
    rows: int
    instruments: Instruments
    ts_first: int
    ts_last: int
    wall_s: float


def synth(
    config: SynthConfig,
    out: Path | str,
    *,
    partition: bool = False,
    overwrite: bool = False,
    on_rows: Callable[[int], None] | None = None,
) -> SynthResult:
    """Generate `config` into a Parquet file (or a hive directory with `partition`), atomically."""
    out = Path(out)
    check_target(out, overwrite)
    began = time.perf_counter()
    market = Market(config)
    first = last = 0
    with HistoryWriter(
        out, config.kind, market.instruments, partition=partition, overwrite=overwrite
    ) as writer:
        for batch in market.batches():
            ts = batch.column("ts_event")
            if writer.rows == 0:
                first = ts[0].as_py()
            last = ts[-1].as_py()
            writer.write(batch)
            if on_rows:
                on_rows(batch.num_rows)
    return SynthResult(
        out, config.kind, writer.rows, market.instruments, first, last, time.perf_counter() - began
    )


def parse_episode(text: str) -> Episode:
    """Parse a command-line episode such as `gap:at=900,seconds=2`, `stale:at=1200,seconds=10`
    or `crash:at=600,drop_pct=8,down_s=30,recover_s=120[,instrument=0]`.
    """
    name, _, rest = text.partition(":")
    kinds: dict[str, type] = {"crash": FlashCrash, "gap": FeedGap, "stale": StaleFeed}
    cls = kinds.get(name.strip())
    if cls is None:
        raise TickwiseError(f"--inject {text!r}: unknown episode {name!r}; use crash, gap or stale")
    fields = {"at": "at_s"} | {f: f for f in cls.__dataclass_fields__}
    kwargs: dict[str, float | int] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or key not in fields:
            allowed = ", ".join(["at", *(f for f in cls.__dataclass_fields__ if f != "at_s")])
            raise TickwiseError(f"--inject {text!r}: bad setting {item!r}; {name} takes {allowed}")
        try:
            kwargs[fields[key]] = int(value) if key == "instrument" else float(value)
        except ValueError:
            raise TickwiseError(f"--inject {text!r}: {key}={value!r} is not a number") from None
    if "at_s" not in kwargs:
        raise TickwiseError(f"--inject {text!r}: missing at=SECONDS (from the start of the data)")
    return cls(**kwargs)
