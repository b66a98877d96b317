"""Binance's public market data (data.binance.vision): daily or monthly `.zip` archives of
one CSV each, spot or futures, checked against their `.CHECKSUM` when it lies beside them.

| file name | kinds | columns, in order |
|---|---|---|
| SYMBOL-aggTrades-DATE.zip | trades | agg_trade_id, price, quantity, first_trade_id, |
| | | last_trade_id, transact_time, is_buyer_maker[, is_best_match] |
| SYMBOL-trades-DATE.zip | trades | id, price, qty, quote_qty, time, is_buyer_maker[, ...] |
| SYMBOL-bookTicker-DATE.zip | quotes | update_id, best_bid_price, best_bid_qty, |
| | | best_ask_price, best_ask_qty, transaction_time, event_time |
| SYMBOL-INTERVAL-DATE.zip | bars | open_time, open, high, low, close, volume, close_time, ... |

The symbol is the file name's first part. Futures files begin with a header row, spot files
do not; either is read. Times are milliseconds or, in spot files since 2025, microseconds
since the epoch, told apart by each value (below 1e14 is ms, from 1e15 µs: 2001 on;
between, neither, refused; so are times after 2262, beyond int64 nanoseconds). A trade's
aggressor is the taker: a buyer that is the maker (is_buyer_maker true) means a seller took
it (-1). A bar is stamped at its close
(close_time plus one unit); bookTicker's transaction_time is ts_event, its event_time
ts_recv. Trades have no receipt time: ts_recv is ts_event.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl

from tickwise.engine.errors import DataError

from . import Rows, Symbols
from .tables import Cells, csv_chunks

MS_BELOW = 10**14  # a time below this is in ms
US_FROM = 10**15  # a time from this is in µs
LAST_NS = 2**63 - 1  # (the last time int64 ns hold: 2262-04-11)
_COLUMNS = {
    "aggTrades": [
        "agg_trade_id",
        "price",
        "quantity",
        "first_trade_id",
        "last_trade_id",
        "transact_time",
        "is_buyer_maker",
        "is_best_match",
    ],
    "trades": ["id", "price", "qty", "quote_qty", "time", "is_buyer_maker", "is_best_match"],
    "bookTicker": [
        "update_id",
        "best_bid_price",
        "best_bid_qty",
        "best_ask_price",
        "best_ask_qty",
        "transaction_time",
        "event_time",
    ],
    "klines": [
        "open_time",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "close_time",
        "quote_volume",
        "count",
        "taker_buy_volume",
        "taker_buy_quote_volume",
        "ignore",
    ],
}
_KINDS = {"aggTrades": "trades", "trades": "trades", "bookTicker": "quotes", "klines": "bars"}
_NAME = re.compile(
    r"^(?P<symbol>[A-Z0-9_]+)-(?P<what>aggTrades|trades|bookTicker|"
    r"\d+[smhdwM]|1mo)-(?P<date>\d{4}-\d{2}(-\d{2})?)\.zip$"
)
_BOOLS = {"true": 1, "false": 0, "True": 1, "False": 0}


def parse_name(path: Path) -> tuple[str, str]:
    """(symbol, dataset) from a Binance archive's name."""
    m = _NAME.match(path.name)
    if m is None:
        raise DataError(
            f"{path}: not a Binance public-data archive name (SYMBOL-aggTrades-"
            "DATE.zip, SYMBOL-trades-..., SYMBOL-bookTicker-..., SYMBOL-1m-...)"
        )
    what = m.group("what")
    return m.group("symbol"), what if what in _COLUMNS else "klines"


def verify_checksum(path: Path) -> bool:
    """Check the archive against SYMBOL-...zip.CHECKSUM when it lies beside it; whether one
    was there. A mismatch is an error naming both."""
    listed = path.with_name(path.name + ".CHECKSUM")
    if not listed.exists():
        return False
    words = listed.read_text(errors="replace").split()
    if not words or not re.fullmatch(r"[0-9a-fA-F]{64}", words[0]):
        raise DataError(f"{listed}: not a SHA-256 checksum file")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    if digest.hexdigest() != words[0].lower():
        raise DataError(
            f"{path}: checksum mismatch: SHA-256 {digest.hexdigest()}, but "
            f"{listed.name} says {words[0].lower()} (a damaged or partial download)"
        )
    return True


def times_ns(cells: Cells, name: str) -> np.ndarray:
    """ms or µs since the epoch (told apart per value) as ns; others refused, and so are
    times beyond what ns in 64 bits hold (the year 2262)."""
    raw = cells.number(name, pl.Int64)
    ms = (raw > 0) & (raw < MS_BELOW)
    us = raw >= US_FROM
    for r in np.flatnonzero(~(ms | us)).tolist():
        cells.bad.setdefault(
            r, f"{name} is {raw[r]}: neither milliseconds nor microseconds since 1970"
        )
    late = (ms & (raw >= LAST_NS // 1_000_000)) | (us & (raw >= LAST_NS // 1_000))
    for r in np.flatnonzero(late).tolist():
        cells.bad.setdefault(r, f"{name} is {raw[r]}: after 2262, beyond 64-bit nanoseconds")
    ok = (ms | us) & ~late
    return np.where(ok, np.where(ms, raw * 1_000_000, raw * 1_000), 0)


class BinanceReader:
    """Binance public-data archives."""

    name = "binance"
    place = "line"
    size_scale = 1.0

    def __init__(self) -> None:
        self._notes: dict[str, int] = {}
        self.checked: list[Path] = []  # archives whose checksum was verified

    def notes(self) -> dict[str, int]:
        return dict(self._notes)

    def kinds(self, path: Path) -> tuple[str, ...]:
        return (_KINDS[parse_name(path)[1]],)

    def read(self, path: Path, symbols: Symbols) -> Iterator[Rows]:
        symbol, what = parse_name(path)
        if verify_checksum(path):
            self.checked.append(path)
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataError(
                f"{path}: not a readable zip archive ({exc}): truncated or damaged"
            ) from None
        with archive:
            members = [m for m in archive.namelist() if m.lower().endswith(".csv")]
            if len(members) != 1:
                raise DataError(f"{path}: holds {len(members)} CSV files, not one")
            index = symbols.index(symbol)
            columns = _COLUMNS[what]
            try:
                with archive.open(members[0]) as member:
                    head = member.readline().decode("utf-8", "replace").strip()
                if not head:
                    raise DataError(f"{path}: {members[0]} is empty")
                header = not head[:1].isdigit()
                n = len(head.split(","))
                if n not in (len(columns), len(columns) - 1):
                    raise DataError(
                        f"{path}: {members[0]} has {n} columns; a Binance {what} "
                        f"file has {len(columns)} ({', '.join(columns)})"
                    )
                malformed: list[tuple[int, str]] = []
                with archive.open(members[0]) as member:
                    for frame, lines in csv_chunks(member, path, columns[:n], header, malformed):
                        rows = self._rows(what, frame, lines, index)
                        rows.refused.extend(malformed)
                        malformed.clear()
                        yield rows
                if malformed:
                    yield Rows(_KINDS[what], {}, np.zeros(0, np.uint64), list(malformed))
            except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
                raise DataError(f"{path}: the archive is damaged ({exc})") from None

    def _rows(self, what: str, frame: pl.DataFrame, lines: np.ndarray, index: int) -> Rows:
        cells = Cells(frame)
        n = frame.height
        inst = np.full(n, index, dtype=np.uint32)
        if what in ("aggTrades", "trades"):
            ts = times_ns(cells, "transact_time" if what == "aggTrades" else "time")
            px = cells.number("price")
            sz = cells.number("quantity" if what == "aggTrades" else "qty")
            maker = cells.choice("is_buyer_maker", _BOOLS, what="true or false")
            keep = cells.keep()
            return Rows(
                "trades",
                {
                    "ts_event": ts[keep],
                    "ts_recv": ts[keep],
                    "instrument": inst[keep],
                    "px": px[keep],
                    "sz": sz[keep],
                    "side": np.where(maker[keep] == 1, -1, 1).astype(np.int8),
                },
                lines[keep],
                cells.refused(lines),
            )
        if what == "bookTicker":
            ts = times_ns(cells, "transaction_time")
            recv = times_ns(cells, "event_time")
            cols = {
                c: cells.number(c)
                for c in ("best_bid_price", "best_bid_qty", "best_ask_price", "best_ask_qty")
            }
            keep = cells.keep()
            return Rows(
                "quotes",
                {
                    "ts_event": ts[keep],
                    "ts_recv": recv[keep],
                    "instrument": inst[keep],
                    "bid_px": cols["best_bid_price"][keep],
                    "ask_px": cols["best_ask_price"][keep],
                    "bid_sz": cols["best_bid_qty"][keep],
                    "ask_sz": cols["best_ask_qty"][keep],
                },
                lines[keep],
                cells.refused(lines),
            )
        close = cells.number("close_time", pl.Int64)
        opened = times_ns(cells, "open_time")
        closed = times_ns(cells, "close_time")
        for r in np.flatnonzero(closed < opened).tolist():
            cells.bad.setdefault(r, "close_time is before open_time")
        step = np.where(close < MS_BELOW, 1_000_000, 1_000)  # (one unit after close_time)
        cols = {c: cells.number(c) for c in ("open", "high", "low", "close", "volume")}
        keep = cells.keep()
        return Rows(
            "bars",
            {
                "ts_event": (closed + step)[keep],
                "instrument": inst[keep],
                **{c: v[keep] for c, v in cols.items()},
            },
            lines[keep],
            cells.refused(lines),
        )
