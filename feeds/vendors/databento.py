"""Databento's DBN files (`.dbn`, `.dbn.zst`), through the official `databento-dbn` package.

The package decodes the metadata (schema, symbols, DBN version) and the instrument
definitions. Market records are fixed-size structs, and decoding millions of them into
Python objects would cost more than the whole import; they are read as numpy arrays of the
layouts the package itself publishes (`MBOMsg._dtypes`, ...), every record's type and length
checked against the schema's. A test checks these arrays against the package's own decoder
on Databento's sample files.

Schemas and what they become:

| schema | kinds |
|---|---|
| mbo | order-by-order messages (made into book, quotes, trades) |
| mbp-1 | quotes (when the top changes), trades (action T) |
| tbbo | trades, and quotes (the top just before each trade) |
| mbp-10 | book deltas (between the ten levels shown at each event's end), quotes, trades |
| trades | trades |
| ohlcv-1s/1m/1h/1d | bars (stamped at their close: the record's time plus its interval) |
| definition | instruments only: symbol, tick (min_price_increment), lot (min_trade_vol) |

Prices are 1e-9 units; UNDEF_PRICE is no price (a quote side without one is no quote).
Sides: B is +1, A is -1 (for trades, the aggressor's), N none (a print without one is left
out and counted: tickwise trades carry their aggressor).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from tickwise.engine.errors import DataError

from .. import book_kernels as bk
from . import MBO, Rows, Symbols, Tops

CHUNK_RECORDS = 1 << 18
MAX_METADATA = 1 << 28  # bytes of a file's metadata (symbol mappings) read at most
DEPTH = 10  # levels of MBP-10
DEPTH_ROWS = 1 << 16  # deltas made at a time from MBP-10 records
_PREFIX = struct.Struct("<3sBI")  # b"DBN", version, metadata length
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_OHLCV_NS = {
    "ohlcv-1s": 10**9,
    "ohlcv-1m": 60 * 10**9,
    "ohlcv-1h": 3600 * 10**9,
    "ohlcv-1d": 86_400 * 10**9,
}
F_LAST = 0x80
F_SNAPSHOT = 0x20

_ACTIONS = np.zeros(256, dtype=np.int8)  # Databento's action byte -> book_kernels ACT_*
for _byte, _act in (
    (b"A", bk.ACT_ADD),
    (b"C", bk.ACT_CANCEL),
    (b"M", bk.ACT_MODIFY),
    (b"R", bk.ACT_CLEAR),
    (b"T", bk.ACT_TRADE),
    (b"F", bk.ACT_NONE),
    (b"N", bk.ACT_NONE),
):
    _ACTIONS[_byte[0]] = _act
_KNOWN_ACTIONS = np.zeros(256, dtype=np.bool_)
_KNOWN_ACTIONS[list(b"ACMRTFN")] = True
_SIDES = np.zeros(256, dtype=np.int8)
_SIDES[ord("B")] = 1
_SIDES[ord("A")] = -1


def _dbn():
    import databento_dbn

    return databento_dbn


def _layout(schema: str, ts_out: bool) -> tuple[np.dtype, int]:
    """The numpy dtype of one record of `schema`, and its rtype."""
    dbn = _dbn()
    cls, rtype = {
        "mbo": (dbn.MBOMsg, dbn.RType.MBO),
        "mbp-1": (dbn.MBP1Msg, dbn.RType.MBP_1),
        "tbbo": (dbn.MBP1Msg, dbn.RType.MBP_1),
        "mbp-10": (dbn.MBP10Msg, dbn.RType.MBP_10),
        "trades": (dbn.TradeMsg, dbn.RType.MBP_0),
        "ohlcv-1s": (dbn.OHLCVMsg, dbn.RType.OHLCV_1S),
        "ohlcv-1m": (dbn.OHLCVMsg, dbn.RType.OHLCV_1M),
        "ohlcv-1h": (dbn.OHLCVMsg, dbn.RType.OHLCV_1H),
        "ohlcv-1d": (dbn.OHLCVMsg, dbn.RType.OHLCV_1D),
    }[schema]
    fields = list(cls._dtypes) + ([("ts_out", "u8")] if ts_out else [])
    dtype = np.dtype(fields)
    if dtype.itemsize != cls.size_hint + (8 if ts_out else 0):
        raise DataError(
            f"databento-dbn's {cls.__name__} layout is {dtype.itemsize} bytes, "
            f"not {cls.size_hint}: this version of the package is not supported"
        )
    return dtype, int(rtype.value)


SCHEMA_KINDS = {
    "mbo": (MBO,),
    "mbp-1": ("quotes", "trades"),
    "tbbo": ("trades", "quotes"),
    "mbp-10": ("book", "quotes", "trades"),
    "trades": ("trades",),
    "ohlcv-1s": ("bars",),
    "ohlcv-1m": ("bars",),
    "ohlcv-1h": ("bars",),
    "ohlcv-1d": ("bars",),
    "definition": (),
}


class DatabentoReader:
    """DBN files of one schema each (as Databento's historical files are)."""

    name = "databento"
    place = "record"

    def __init__(self) -> None:
        self._notes: dict[str, int] = {}
        self._tops = Tops()
        self._specs: dict[str, tuple[float | None, float | None]] = {}  # definitions' ticks, lots
        self._venue: dict[int, int] = {}  # each instrument id's publisher
        self._ids: dict[int, str] = {}  # raw symbols of instrument ids, from definitions
        self._depth_px = np.zeros((0, 2, DEPTH), dtype=np.int64)  # MBP-10: last levels shown
        self._depth_qty = np.zeros((0, 2, DEPTH), dtype=np.int64)

    def kinds(self, path: Path) -> tuple[str, ...]:
        with _open(path) as stream:
            meta = _metadata(stream, path)
        return SCHEMA_KINDS[_schema(meta, path)]

    def notes(self) -> dict[str, int]:
        return dict(self._notes)

    def definitions(self, path: Path, symbols: Symbols) -> None:
        """Learn symbols, ticks and lots from a definition file."""
        dbn = _dbn()
        with _open(path) as stream:
            meta = _metadata(stream, path)
            decoder = dbn.DBNDecoder(
                has_metadata=False, ts_out=meta.ts_out, input_version=meta.version
            )
            seen = 0
            while block := stream.read(1 << 20):
                try:
                    decoder.write(block)
                    records = decoder.decode()
                except Exception as exc:  # (databento_dbn.DBNError: damaged records)
                    raise DataError(f"{path}: cannot read the definitions after record "
                                    f"{seen:,}: {exc}") from None  # fmt: skip
                seen += len(records)
                for rec in records:
                    if not isinstance(
                        rec, dbn.InstrumentDefMsg | dbn.InstrumentDefMsgV2 | dbn.InstrumentDefMsgV1
                    ):
                        continue
                    tick = rec.min_price_increment
                    lot = rec.min_trade_vol
                    self._specs[rec.raw_symbol] = (
                        tick / 1e9 if 0 < tick < dbn.UNDEF_PRICE else None,
                        float(lot) if 0 < lot < 2**32 - 1 else None,
                    )
                    self._ids[int(rec.instrument_id)] = rec.raw_symbol
            if decoder.buffer():
                raise DataError(f"{path}: truncated: record {seen + 1:,} is cut short")

    def read(self, path: Path, symbols: Symbols) -> Iterator[Rows]:
        with _open(path) as stream:
            meta = _metadata(stream, path)
            schema = _schema(meta, path)
            if schema == "definition":
                return
            names = _symbol_names(meta)
            dtype, rtype = _layout(schema, bool(meta.ts_out))
            first = 1
            for recs in _records(stream, dtype, path):
                _check_records(recs, rtype, dtype.itemsize, schema, path, first)
                self._one_venue(recs, path, first)
                inst = self._instruments(recs["instrument_id"], names, symbols)
                places = np.arange(first, first + recs.size, dtype=np.uint64)
                first += recs.size
                yield from self._convert(schema, recs, inst, places)

    def _one_venue(self, recs: np.ndarray, path: Path, first: int) -> None:
        """Refuse an instrument id seen from two publishers (venues): in multi-venue datasets
        (OPRA, equities) venues share ids, and their books must not be merged into one."""
        pubs = recs["publisher_id"]
        ids = recs["instrument_id"]
        if pubs.size and pubs.min() == pubs.max():  # (one venue in the chunk: the usual case)
            groups = [(int(pubs[0]), np.unique(ids).tolist())]
        else:
            groups = [(int(p), np.unique(ids[pubs == p]).tolist()) for p in np.unique(pubs)]
        for venue, vendor_ids in groups:
            for vendor_id in vendor_ids:
                known = self._venue.setdefault(vendor_id, venue)
                if known != venue:
                    at = int(np.flatnonzero((ids == vendor_id) & (pubs == venue))[0])
                    raise DataError(
                        f"{path}: record {first + at:,}: instrument {vendor_id} comes from "
                        f"publishers {known} and {venue} (several venues); tickwise does not "
                        "merge venues' books: import each venue's records on their own"
                    )

    def _instruments(self, ids: np.ndarray, names: dict[int, str], symbols: Symbols) -> np.ndarray:
        uniq, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
        table = np.empty(uniq.size, dtype=np.uint32)
        for k in np.argsort(first).tolist():  # (new ones numbered in the order met)
            vendor_id = int(uniq[k])
            symbol = self._ids.get(vendor_id) or names.get(vendor_id) or f"ID{vendor_id}"
            table[k] = symbols.index(symbol, *self._specs.get(symbol, (None, None)))
        return table[inverse.reshape(-1)]

    def _convert(
        self, schema: str, recs: np.ndarray, inst: np.ndarray, places: np.ndarray
    ) -> Iterator[Rows]:
        ts_event = _times(recs["ts_event"], "ts_event")
        if schema in _OHLCV_NS:
            step = _OHLCV_NS[schema]
            fits = (ts_event >= 0) & (ts_event <= np.iinfo(np.int64).max - step)
            yield Rows(
                "bars",
                {
                    "ts_event": np.where(fits, ts_event + step, -1),  # (-1: refused, no time)
                    "instrument": inst,
                    **{c: _prices(recs[c]) for c in ("open", "high", "low", "close")},
                    "volume": recs["volume"].astype(np.float64),
                },
                places,
            )
            return
        ts_recv = _times(recs["ts_recv"], "ts_recv")
        action = recs["action"].view(np.uint8)
        side = _SIDES[recs["side"].view(np.uint8)]
        unknown = ~_KNOWN_ACTIONS[action]
        if unknown.any():
            self._count("records with an unknown action (left out)", int(unknown.sum()))
        if schema == "mbo":
            msgs = np.zeros(recs.size, dtype=bk.MBO_DTYPE)
            # A snapshot's adds keep their orders' first times in ts_event (old, in priority
            # order); what they make is stamped when the snapshot was taken: ts_recv.
            snapshot = (recs["flags"] & F_SNAPSHOT) != 0
            msgs["ts_event"] = np.where(snapshot, ts_recv, ts_event)
            msgs["ts_recv"] = ts_recv
            msgs["inst"] = inst
            msgs["order_id"] = recs["order_id"]
            msgs["px"] = recs["price"]
            msgs["qty"] = recs["size"]
            msgs["action"] = np.where(unknown, bk.ACT_NONE, _ACTIONS[action])
            msgs["side"] = side
            flags = recs["flags"]
            msgs["flags"] = np.where(flags & F_LAST, bk.IN_LAST, 0) | np.where(
                flags & F_SNAPSHOT, bk.IN_SNAPSHOT, 0
            )
            yield Rows(MBO, {"msgs": msgs}, places)
            return
        trade = action == ord("T")
        if schema == "trades":
            trade = trade | (action == ord("N"))  # (trades schema: every record is a print)
        sided = side != 0
        unsided = int((trade & ~sided).sum())
        if unsided:
            self._count("prints without an aggressor side (left out)", unsided)
        pick = trade & sided
        yield Rows(
            "trades",
            {
                "ts_event": ts_event[pick],
                "ts_recv": ts_recv[pick],
                "instrument": inst[pick],
                "px": _prices(recs["price"][pick]),
                "sz": recs["size"][pick].astype(np.float64),
                "side": side[pick],
            },
            places[pick],
        )
        if schema in ("mbp-1", "tbbo", "mbp-10"):
            yield self._quotes(recs, inst, ts_event, ts_recv, places, schema)
        if schema == "mbp-10":
            yield from self._depth(recs, inst, ts_event, ts_recv, places)

    def _depth(
        self,
        recs: np.ndarray,
        inst: np.ndarray,
        ts_event: np.ndarray,
        ts_recv: np.ndarray,
        places: np.ndarray,
    ) -> Iterator[Rows]:
        """Book deltas between the levels shown at the end of each event (F_LAST)."""
        ends = np.flatnonzero((recs["flags"] & F_LAST) != 0)
        n_inst = int(inst.max()) + 1 if inst.size else 0
        if n_inst > self._depth_px.shape[0]:
            grow = n_inst - self._depth_px.shape[0]
            self._depth_px = np.concatenate([self._depth_px, np.zeros((grow, 2, DEPTH), np.int64)])
            self._depth_qty = np.concatenate(
                [self._depth_qty, np.zeros((grow, 2, DEPTH), np.int64)]
            )
        px = np.zeros((ends.size, 2, DEPTH), dtype=np.int64)
        qty = np.zeros((ends.size, 2, DEPTH), dtype=np.int64)
        undef = _dbn().UNDEF_PRICE
        for j in range(DEPTH):
            for s, name in ((0, "bid"), (1, "ask")):
                level_px = recs[f"{name}_px_{j:02d}"][ends]
                px[:, s, j] = level_px
                qty[:, s, j] = np.where(level_px == undef, 0, recs[f"{name}_sz_{j:02d}"][ends])
        out = np.zeros(DEPTH_ROWS, dtype=bk.DELTA_DTYPE)
        at = 0
        while at < ends.size:
            at_next, k = bk.depth_deltas_nb(
                inst[ends], px, qty, at, self._depth_px, self._depth_qty, out
            )
            d = out[:k]
            rec = ends[d["row"]]
            yield Rows(
                "book",
                {
                    "ts_event": ts_event[rec],
                    "ts_recv": ts_recv[rec],
                    "instrument": d["inst"],
                    "side": d["side"],
                    "px": d["px"] / 1e9,
                    "sz": d["qty"].astype(np.float64),
                    "flags": d["flags"],
                },
                places[rec],
            )
            at = at_next

    def _quotes(
        self,
        recs: np.ndarray,
        inst: np.ndarray,
        ts_event: np.ndarray,
        ts_recv: np.ndarray,
        places: np.ndarray,
        schema: str,
    ) -> Rows:
        """The top of book of each record, where it changed (per instrument) and has both
        sides. (TBBO's is the top just before its trade.)"""
        bid, ask = recs["bid_px_00"], recs["ask_px_00"]
        bsz, asz = recs["bid_sz_00"].astype(np.int64), recs["ask_sz_00"].astype(np.int64)
        undef = _dbn().UNDEF_PRICE
        whole = (bid != undef) & (ask != undef)
        looked = np.ones(recs.size, dtype=np.bool_)
        if schema != "tbbo":  # (the book is consistent only at an event's last record)
            looked = (recs["flags"] & F_LAST) != 0
        rows = np.flatnonzero(looked)
        keep = np.zeros(recs.size, dtype=np.bool_)
        keep[rows[self._tops.changes(inst[rows], bid[rows], ask[rows], bsz[rows], asz[rows],
                                     whole[rows])]] = True  # fmt: skip
        one_sided = int((looked & ~whole & ((bid != undef) | (ask != undef))).sum())
        if one_sided:
            self._count("tops with one side empty (no quote: tickwise quotes have both)", one_sided)
        return Rows(
            "quotes",
            {
                "ts_event": ts_event[keep],
                "ts_recv": ts_recv[keep],
                "instrument": inst[keep],
                "bid_px": _prices(bid[keep]),
                "ask_px": _prices(ask[keep]),
                "bid_sz": bsz[keep].astype(np.float64),
                "ask_sz": asz[keep].astype(np.float64),
            },
            places[keep],
        )

    def _count(self, why: str, n: int) -> None:
        self._notes[why] = self._notes.get(why, 0) + n


def _prices(raw: np.ndarray) -> np.ndarray:
    """1e-9 units to float prices; UNDEF_PRICE to NaN (which the checks refuse)."""
    out = raw.astype(np.float64) / 1e9
    out[raw == np.iinfo(np.int64).max] = np.nan
    return out


def _times(raw: np.ndarray, name: str) -> np.ndarray:
    """Nanoseconds as int64 (UNDEF_TIMESTAMP and beyond become -1, which the checks refuse
    as going back in time)."""
    out = raw.astype(np.int64)
    out[raw >= np.uint64(2**63)] = -1
    return out


class _Stream:
    """A DBN file's bytes, decompressed as they are read when zstd (frame after frame; an
    archive that ends inside a frame is an error, never a quietly shorter file)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._file: BinaryIO = open(path, "rb")  # noqa: SIM115 (closed by __exit__)
        except OSError as exc:
            raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
        self._zstd = self._file.read(4) == _ZSTD_MAGIC
        self._file.seek(0)
        self._buf = bytearray()
        self._frame = None
        self._in_frame = False  # data fed to the current frame, which has not ended

    def read(self, n: int) -> bytes:
        if not self._zstd:
            return self._file.read(n)
        while len(self._buf) < n:
            block = self._file.read(1 << 20)
            if not block:
                if self._in_frame:
                    raise DataError(f"{self.path}: truncated: the zstd archive ends inside a frame")
                break
            self._feed(block)
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def _feed(self, block: bytes) -> None:
        import zstandard

        while block:
            if self._frame is None:
                self._frame = zstandard.ZstdDecompressor().decompressobj()
            try:
                self._buf += self._frame.decompress(block)
            except zstandard.ZstdError as exc:
                raise DataError(f"{self.path}: cannot decompress: {exc}") from None
            self._in_frame = not self._frame.eof
            if not self._frame.eof:
                return
            block = self._frame.unused_data
            self._frame = None

    def __enter__(self) -> _Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()


def _open(path: Path) -> _Stream:
    return _Stream(path)


def _metadata(stream: _Stream, path: Path):
    head = stream.read(_PREFIX.size)
    if len(head) < _PREFIX.size or head[:3] != b"DBN":
        raise DataError(f"{path}: not a DBN file (it does not begin with 'DBN')")
    _, version, length = _PREFIX.unpack(head)
    if length > MAX_METADATA:  # (a damaged or hostile header: never read gigabytes for it)
        raise DataError(f"{path}: its header announces {length:,} bytes of metadata (at most "
                        f"{MAX_METADATA:,} are read): a damaged file")  # fmt: skip
    body = stream.read(length)
    if len(body) < length:
        raise DataError(f"{path}: truncated: the metadata is cut short")
    dbn = _dbn()
    try:
        return dbn.Metadata.decode(head + body, upgrade_policy=dbn.VersionUpgradePolicy.AS_IS)
    except Exception as exc:  # (databento_dbn.DBNError)
        raise DataError(
            f"{path}: cannot read the DBN metadata (version {version}): {exc}"
        ) from None


def _schema(meta, path: Path) -> str:
    if meta.schema is None:
        raise DataError(f"{path}: holds records of several schemas; import files of one schema")
    schema = str(meta.schema.value)
    if schema not in SCHEMA_KINDS:
        known = ", ".join(SCHEMA_KINDS)
        raise DataError(f"{path}: schema {schema} is not imported; these are: {known}")
    return schema


def _symbol_names(meta) -> dict[int, str]:
    """Each instrument id's symbol from the metadata's mappings (raw symbols: the symbol as
    requested; otherwise, the requested symbol with the id)."""
    raw = str(meta.stype_in.value) == "raw_symbol" if meta.stype_in is not None else False
    names: dict[int, str] = {}
    for requested, intervals in (meta.mappings or {}).items():
        for interval in intervals:
            text = str(interval["symbol"])
            if text.isdecimal():
                names.setdefault(int(text), requested if raw else f"{requested}#{text}")
    return names


def _records(stream: _Stream, dtype: np.dtype, path: Path) -> Iterator[np.ndarray]:
    size = dtype.itemsize
    done = 0
    while True:
        block = stream.read(CHUNK_RECORDS * size)
        if not block:
            return
        while len(block) % size:
            more = stream.read(size - len(block) % size)
            if not more:
                cut = done + len(block) // size + 1
                raise DataError(
                    f"{path}: truncated: record {cut:,} is cut short "
                    f"({len(block) % size} of its {size} bytes are there)"
                )
            block += more
        recs = np.frombuffer(block, dtype=dtype)
        done += recs.size
        yield recs


def _check_records(
    recs: np.ndarray, rtype: int, size: int, schema: str, path: Path, first: int
) -> None:
    bad = (recs["rtype"] != rtype) | (recs["length"].astype(np.int64) * 4 != size)
    if bad.any():
        k = int(np.argmax(bad))
        raise DataError(
            f"{path}: record {first + k:,} is of type {int(recs['rtype'][k])} and "
            f"{int(recs['length'][k]) * 4} bytes, not a {schema} record ({size} bytes): "
            "import files that hold one schema"
        )
