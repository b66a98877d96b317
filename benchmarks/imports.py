"""Importing vendors' history: order-by-order books per core, CSV against polars, and memory.

- book: a synthetic order-by-order stream (8 instruments, ~1,000 orders resting on each,
  adds, cancels, partial cancels, modifies and fills near a drifting price) through the
  compiled books (`OrderBooks.apply`, L2 deltas, quotes and trades out), against a bare
  compiled pass over the same messages adding each one's size into a dense level table
  (no order table, no sorting, no output): the least any book rebuilt from messages does.
- csv: `tickwise data import` (in process) of a CSV of quotes against polars'
  `scan_csv(...).sink_parquet(...)` of the same file, taking turns.
- memory: the peak resident memory of `tickwise data import` of a DBN MBO file of at least
  5 GB (made once and kept) against the same import of a file 1/50 of its size.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
from numba import njit

from tickwise.feeds import book_kernels as bk
from tickwise.feeds.importer import import_history
from tickwise.feeds.orderbook import OrderBooks

from .data import DATA_DIR, quotes_file
from .sweep import _tree_rss

INSTRUMENTS = 8
RESTING = 1_000  # orders resting per instrument, about
CHUNK = 1_000_000  # messages per call, as the import reads them
ES = 5482


@njit(cache=True)
def _seed(seed):
    np.random.seed(seed)


@njit(cache=True)
def _stream(out, first, ids, sides, prices, sizes, live, mid, next_id):
    """The next messages of a deterministic order-by-order stream into `out` (bk.MBO_DTYPE;
    cancels, deletes and fills carry the order's side and price, as Databento's do). The
    books (`ids` ... `mid`, per instrument) carry on from call to call, each holding about
    `ids.shape[1] / 4` orders; message `first` is the stream's first of this call. Returns
    the next order id."""
    instruments, cap = ids.shape
    resting = cap // 4
    for i in range(out.size):
        k = np.random.randint(instruments)
        m = out[i]
        m.ts_event = 1_704_441_600_000_000_000 + (first + i) * 1_000
        m.ts_recv = m.ts_event + 500
        m.inst = k
        m.flags = bk.IN_LAST
        r = np.random.random()
        n = live[k]
        if n < 2 or (n < cap - 1 and r < 0.5 * resting / n):
            side = 1 if np.random.random() < 0.5 else -1
            px = mid[k] - side * (1 + np.random.randint(0, 50))
            qty = 1 + np.random.randint(0, 20)
            ids[k, n], sides[k, n], prices[k, n], sizes[k, n] = next_id, side, px, qty
            live[k] = n + 1
            m.action, m.side, m.order_id, m.qty = bk.ACT_ADD, side, next_id, qty
            m.px = px * 250_000_000
            next_id += 1
        else:
            j = np.random.randint(n)
            m.order_id, m.side, m.px = ids[k, j], sides[k, j], prices[k, j] * 250_000_000
            roll = np.random.random()
            if roll < 0.6 or sizes[k, j] == 1:  # delete
                m.action, m.qty = bk.ACT_DELETE, sizes[k, j]
                last = n - 1
                ids[k, j], sides[k, j] = ids[k, last], sides[k, last]
                prices[k, j], sizes[k, j] = prices[k, last], sizes[k, last]
                live[k] = last
            elif roll < 0.8:  # a part cancelled
                m.action, m.qty = bk.ACT_CANCEL, 1
                sizes[k, j] -= 1
            elif roll < 0.9:  # a part filled
                m.action, m.qty = bk.ACT_FILL, 1
                sizes[k, j] -= 1
            else:  # resized
                sizes[k, j] += 1
                m.action, m.qty = bk.ACT_MODIFY, sizes[k, j]
        if np.random.random() < 0.002:  # the price moves, never through resting orders
            step = np.random.randint(-1, 2)
            lo, hi = mid[k] + step - 1, mid[k] + step + 1  # (the new best bid and ask)
            for j in range(live[k]):
                if (sides[k, j] == -1 and prices[k, j] <= lo) or (
                    sides[k, j] == 1 and prices[k, j] >= hi
                ):
                    step = 0
                    break
            mid[k] += step
    return next_id


class Stream:
    """A deterministic order-by-order stream, made block by block (the books carry on)."""

    def __init__(self, seed: int = 1) -> None:
        cap = RESTING * 4
        self.ids = np.zeros((INSTRUMENTS, cap), np.int64)
        self.sides = np.zeros((INSTRUMENTS, cap), np.int8)
        self.prices = np.zeros((INSTRUMENTS, cap), np.int64)
        self.sizes = np.zeros((INSTRUMENTS, cap), np.int64)
        self.live = np.zeros(INSTRUMENTS, np.int64)
        self.mid = np.full(INSTRUMENTS, 40_000, np.int64)  # in ticks of 0.25
        self.next_id = 1
        self.made = 0
        _seed(seed)

    def next(self, n: int) -> np.ndarray:
        out = np.zeros(n, dtype=bk.MBO_DTYPE)
        self.next_id = _stream(
            out,
            self.made,
            self.ids,
            self.sides,
            self.prices,
            self.sizes,
            self.live,
            self.mid,
            self.next_id,
        )
        self.made += n
        return out


@njit(cache=True)
def _bare(msgs, levels):
    """The floor: each message's size added (or taken) into a dense table of levels."""
    width = levels.shape[2]
    for i in range(msgs.size):
        m = msgs[i]
        s = 0 if m.side == 1 else 1
        slot = (m.px // 250_000_000) % width
        if m.action == bk.ACT_ADD:
            levels[m.inst, s, slot] += m.qty
        elif m.action != bk.ACT_TRADE:
            levels[m.inst, s, slot] -= m.qty
    return levels.sum()


def messages(n: int, seed: int = 1) -> np.ndarray:
    return Stream(seed).next(n)


def book_rates(n: int, rounds: int) -> dict[str, list[float]]:
    """Messages per second through the books and through the bare pass, taking turns."""
    msgs = messages(n)
    levels = np.zeros((INSTRUMENTS, 2, 4096), np.int64)
    _bare(msgs[:1000], levels)
    list(OrderBooks().apply(msgs[:1000]))  # (compiled before the clock)
    ours, floor = [], []
    out_rows = {"deltas": 0, "quotes": 0, "trades": 0}
    for _ in range(rounds):
        levels[:] = 0
        began = time.perf_counter()
        _bare(msgs, levels)
        floor.append(n / (time.perf_counter() - began))
        books = OrderBooks()
        began = time.perf_counter()
        for at in range(0, n, CHUNK):
            for made in books.apply(msgs[at : at + CHUNK]):
                out_rows["deltas"] += made.deltas.size
                out_rows["quotes"] += made.quotes.size
                out_rows["trades"] += made.trades.size
        ours.append(n / (time.perf_counter() - began))
    return {
        "ours": ours,
        "floor": floor,
        "resting": int(books.resting().size),
        **{k: v // rounds for k, v in out_rows.items()},
    }


def quotes_csv(rows: int) -> Path:
    """A CSV of quotes (times in ns, symbols, prices and sizes), made once from the
    benchmark's quotes history and kept."""
    path = DATA_DIR / f"quotes-{rows}.csv"
    if not path.exists():
        frame = pl.read_parquet(quotes_file(rows))
        frame = frame.with_columns(pl.format("SYM{}", pl.col("instrument")).alias("symbol"))
        tmp = path.with_suffix(".tmp")
        frame.select(
            "ts_event", "ts_recv", "symbol", "bid_px", "ask_px", "bid_sz", "ask_sz"
        ).write_csv(tmp)
        tmp.replace(path)
    return path


def csv_rates(rows: int, rounds: int) -> dict[str, list[float]]:
    """Rows per second of `data import` and of polars' sink_parquet on the same CSV."""
    source = quotes_csv(rows)
    ours, floor = [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ours.parquet"
        theirs = Path(tmp) / "polars.parquet"
        small = Path(tmp) / "small.csv"
        pl.read_csv(source, n_rows=10_000).write_csv(small)
        import_history(small, "quotes", out, overwrite=True)  # (compiled before the clock)
        for _ in range(rounds):
            began = time.perf_counter()
            pl.scan_csv(source).sink_parquet(theirs)
            floor.append(rows / (time.perf_counter() - began))
            began = time.perf_counter()
            import_history(source, "quotes", out, overwrite=True)
            ours.append(rows / (time.perf_counter() - began))
    return {"ours": ours, "floor": floor, "mib": source.stat().st_size / 2**20}


def mbo_file(n: int) -> Path:
    """A Databento MBO file (uncompressed) of `n` records, written by blocks, made once."""
    import databento_dbn as dbn

    from tickwise.feeds.vendors.databento import _layout

    path = DATA_DIR / f"mbo-{n}.dbn"
    if path.exists():
        return path
    dtype, rtype = _layout("mbo", False)
    meta = dbn.Metadata(
        dataset="GLBX.MDP3",
        start=1_704_441_600_000_000_000,
        stype_in=dbn.SType.RAW_SYMBOL,
        stype_out=dbn.SType.INSTRUMENT_ID,
        schema=dbn.Schema.MBO,
        symbols=[],
        mappings=[],
    )
    tmp = path.with_suffix(".tmp")
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    stream = Stream()
    with open(tmp, "wb") as f:
        f.write(meta.encode())
        for at in range(0, n, 10 * CHUNK):
            f.write(_dbn_records(stream.next(min(10 * CHUNK, n - at)), dtype, rtype).tobytes())
    tmp.replace(path)
    return path


def _dbn_records(msgs: np.ndarray, dtype: np.dtype, rtype: int) -> np.ndarray:
    """Messages as Databento MBO records: a fill becomes the print (T, the aggressor's side)
    and the resting order's cancel (C) that Databento's MBO holds for it; a delete, a cancel
    of the whole order."""
    import databento_dbn as dbn

    fills = msgs["action"] == bk.ACT_FILL
    rows = np.repeat(np.arange(msgs.size), np.where(fills, 2, 1))
    print_ = np.r_[False, rows[1:] == rows[:-1]]  # (the first of a fill's pair is its print)
    print_ = np.r_[print_[1:], False]
    m = msgs[rows]
    recs = np.zeros(rows.size, dtype=dtype)
    recs["length"] = dtype.itemsize // 4
    recs["rtype"] = rtype
    recs["publisher_id"] = 1
    recs["instrument_id"] = ES + m["inst"]
    recs["ts_event"] = m["ts_event"]
    recs["ts_recv"] = m["ts_recv"]
    recs["order_id"] = np.where(print_, 0, m["order_id"])
    recs["price"] = m["px"]
    recs["size"] = m["qty"]
    recs["flags"] = np.where(print_, 0, dbn.F_LAST)
    action = np.array([b"N", b"A", b"C", b"C", b"M", b"C", b"T", b"R"], dtype="S1")
    recs["action"] = np.where(print_, b"T", action[m["action"]])
    side = np.where(m["side"] == 1, b"B", b"A")
    recs["side"] = np.where(print_, np.where(m["side"] == 1, b"A", b"B"), side)
    return recs


def import_memory(path: Path) -> dict[str, float]:
    """Peak resident memory (bytes, sampled every 50 ms from /proc) and wall time of
    `tickwise data import PATH --tick-size 0.25`, in a process of its own."""
    tickwise = str(Path(sys.executable).with_name("tickwise"))
    with tempfile.TemporaryDirectory(dir=DATA_DIR) as tmp:
        command = [
            tickwise,
            "data",
            "import",
            str(path),
            "--tick-size",
            "0.25",
            "--out",
            str(Path(tmp) / "out"),
        ]
        began = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, _tree_rss(proc.pid))
            time.sleep(0.05)
        wall = time.perf_counter() - began
        if proc.returncode != 0:
            raise RuntimeError(f"the import failed: {proc.stderr.read().decode()[-500:]}")
    return {"peak_bytes": float(peak), "wall_s": wall}
