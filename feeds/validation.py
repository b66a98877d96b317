"""Validation of market-data streams with errors that name the file, the row and the fault.

A `Validator` follows one stream (one Parquet file, one CSV) batch by batch.
The per-row work is compiled (`validation_kernels`); this module turns a fault
code into a sentence a person can act on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pyarrow as pa

from tickwise.engine.errors import DataError
from tickwise.engine.instruments import Instruments
from tickwise.engine.schemas import market_dtype, market_schema

from . import validation_kernels as vk

# The value columns each kind's kernel takes, in argument order (its column numbers).
VALUE_COLUMNS: dict[str, tuple[str, ...]] = {
    "quotes": ("bid_px", "ask_px", "bid_sz", "ask_sz"),
    "trades": ("px", "sz", "side"),
    "bars": ("open", "high", "low", "close", "volume"),
    "book": ("side", "px", "sz"),
}
_SCREENS = {
    "quotes": vk.screen_quotes_nb,
    "trades": vk.screen_trades_nb,
    "bars": vk.screen_bars_nb,
    "book": vk.screen_book_nb,
}
_VALUE_KERNELS = {
    "quotes": vk.check_quotes_nb,
    "trades": vk.check_trades_nb,
    "bars": vk.check_bars_nb,
    "book": vk.check_book_nb,
}
_EMPTY_SEQ = np.empty(0, dtype=np.uint64)
# The prices each kind's rows must hold on the tick grid.
PRICE_COLUMNS: dict[str, tuple[str, ...]] = {
    "quotes": ("bid_px", "ask_px"),
    "trades": ("px",),
    "bars": ("open", "high", "low", "close"),
    "book": ("px",),
}


def check_schema(
    schema: pa.Schema, kind: str, source: str, provided: Mapping[str, object] = {}
) -> None:
    """Raise `DataError` unless `schema` has every column of `kind` with its exact type.

    Columns named in `provided` (hive partition keys) may be absent from the file.
    Extra columns are allowed and ignored.
    """
    expected = market_schema(kind)
    problems = []
    for field in expected:
        idx = schema.get_field_index(field.name)
        if idx < 0:
            if field.name not in provided:
                problems.append(f"missing column {field.name!r} ({field.type})")
            continue
        actual = schema.field(idx).type
        if actual != field.type:
            problems.append(f"column {field.name!r} is {actual}, expected {field.type}")
    if problems:
        raise DataError(f"{source}: not a {kind} file: {'; '.join(problems)}")


class Validator:
    """Checks one stream of `kind` rows, batch after batch, against the data contract.

    `where(row)` turns a 0-based row number of the stream into the place named
    in errors ("row 12", "line 14"). `require_sorted=False` accepts instruments
    interleaved in any order (each instrument's rows must still be in order).
    `check_grid=True` also refuses prices off their instrument's tick grid (import and
    inspect; a replay trusts the files they passed).
    """

    def __init__(
        self,
        kind: str,
        instruments: Instruments,
        source: str,
        where: Callable[[int], str] = lambda row: f"row {row}",
        *,
        require_sorted: bool = True,
        check_grid: bool = False,
    ) -> None:
        self.kind = kind
        self.instruments = instruments
        self.source = source
        self.where = where
        self.rows = 0
        self._sorted = require_sorted
        self._has_seq = "seq" in market_dtype(kind).names
        self._known = instruments.known_mask()
        n = self._known.size
        self._last_ts = np.zeros(n, dtype=np.int64)
        self._last_seq = np.zeros(n, dtype=np.uint64)
        self._seen = np.zeros(n, dtype=np.bool_)
        self._prev = np.zeros(3, dtype=np.int64)
        self._prev_seq = np.zeros(1, dtype=np.uint64)
        self._ticks: np.ndarray | None = None
        if check_grid:
            self._ticks = np.zeros(n, dtype=np.float64)
            for inst in instruments:
                self._ticks[inst.id] = inst.tick_size

    def check(self, cols: Mapping[str, np.ndarray]) -> None:
        """Check the next batch of the stream; raise `DataError` at its first bad row."""
        values = [cols[name] for name in VALUE_COLUMNS[self.kind]]
        v_fault, v_row, v_col = _VALUE_KERNELS[self.kind](*values)
        grid = self._grid_fault(cols, 0)
        if grid is not None and (v_fault == vk.FAULT_NONE or grid[0] < v_row):
            v_fault, v_row, v_col = vk.FAULT_OFF_TICK, grid[0], grid[1]
        seq = cols["seq"] if self._has_seq else _EMPTY_SEQ
        ts, inst = cols["ts_event"], cols["instrument"]
        o_fault, o_row, _ = vk.check_order_nb(
            ts, inst, seq, self._has_seq, self._sorted, self._known, self._last_ts,
            self._last_seq, self._seen, self._prev, self._prev_seq,
        )  # fmt: skip
        if v_fault == vk.FAULT_NONE and o_fault == vk.FAULT_NONE:
            self.rows += ts.size
            return
        if o_fault != vk.FAULT_NONE and (v_fault == vk.FAULT_NONE or o_row <= v_row):
            message = self._order_message(o_fault, o_row, cols)
            row = o_row
        else:
            message = self._value_message(v_fault, v_row, v_col, cols)
            row = v_row
        raise DataError(f"{self.source}: {self.where(self.rows + row)}: {message}")

    def faults(self, cols: Mapping[str, np.ndarray], order: bool = True) -> list[tuple[int, str]]:
        """Every bad row of the next batch of the stream, as (row in the batch, what is wrong
        with it), in row order; the stream's order is followed over the good rows alone, as
        if the bad ones were never there (`order=False`: values and grid only). What `data
        import` stops at, or sets aside with `--bad-rows`. Linear in the rows, however many
        are bad."""
        n = len(cols["ts_event"])
        names = VALUE_COLUMNS[self.kind]
        codes = np.zeros(n, dtype=np.uint8)
        lo, hi = np.iinfo(np.int64).min, np.iinfo(np.int64).max  # (no clock to keep to)
        values = [cols[c] for c in names]
        _SCREENS[self.kind](self._known, lo, hi, codes, cols["ts_event"], cols["instrument"],
                            *values)  # fmt: skip
        bad: dict[int, str] = {}
        kernel = _VALUE_KERNELS[self.kind]
        for row in np.flatnonzero(codes).tolist():
            fault, _, col = kernel(*(v[row : row + 1] for v in values))
            if fault != vk.FAULT_NONE:  # (an unknown id alone is the order check's to name)
                bad[row] = self._value_message(fault, row, col, cols)
        if self._ticks is not None:
            for name in PRICE_COLUMNS[self.kind]:
                off = np.zeros(n, dtype=np.bool_)
                vk.mark_off_grid_nb(cols["instrument"], self._ticks, cols[name], off)
                for row in np.flatnonzero(off).tolist():
                    bad.setdefault(row, self._value_message(vk.FAULT_OFF_TICK, row,
                                                            names.index(name), cols))  # fmt: skip
        if order:
            self._order_faults(cols, bad)
        self.rows += n
        return sorted(bad.items())

    def _order_faults(self, cols: Mapping[str, np.ndarray], bad: dict[int, str]) -> None:
        """Add to `bad` the rows out of order among the rows not already in it."""
        keep = np.ones(len(cols["ts_event"]), dtype=np.bool_)
        keep[list(bad)] = False
        good = np.flatnonzero(keep)
        keys = {name: cols[name][good] for name in ("ts_event", "instrument", "seq")
                if name in cols}  # fmt: skip
        seq = keys["seq"] if self._has_seq else _EMPTY_SEQ
        start = 0
        while start < good.size:
            fault, row, _ = vk.check_order_nb(
                keys["ts_event"][start:], keys["instrument"][start:],
                seq[start:] if self._has_seq else seq, self._has_seq, self._sorted,
                self._known, self._last_ts, self._last_seq, self._seen, self._prev,
                self._prev_seq,
            )  # fmt: skip
            if fault == vk.FAULT_NONE:
                return
            bad[int(good[start + row])] = self._order_message(fault, start + row, keys)
            start += row + 1

    def _grid_fault(self, cols: Mapping[str, np.ndarray], start: int) -> tuple[int, int] | None:
        """The first row from `start` with a price off the tick grid, and its value column
        (None: none, or the grid is not checked)."""
        if self._ticks is None:
            return None
        first: tuple[int, int] | None = None
        names = VALUE_COLUMNS[self.kind]
        for name in PRICE_COLUMNS[self.kind]:
            off = np.zeros(len(cols[name]) - start, dtype=np.bool_)
            if vk.mark_off_grid_nb(cols["instrument"][start:], self._ticks, cols[name][start:],
                                   off):  # fmt: skip
                row = start + int(np.argmax(off))
                if first is None or row < first[0]:
                    first = (row, names.index(name))
        return first

    def check_nulls(self, batch: pa.RecordBatch) -> None:
        """Raise `DataError` naming the first null of any column of the batch."""
        for name, column in zip(batch.schema.names, batch.columns, strict=True):
            if column.null_count:
                first = int(np.argmax(column.is_null().to_numpy(zero_copy_only=False)))
                raise DataError(
                    f"{self.source}: {self.where(self.rows + first)}: {name} is null; "
                    "market data may not have missing values"
                )

    def _name(self, instrument_id: int) -> str:
        return f"instrument {instrument_id} ({self.instruments.symbol(instrument_id)})"

    def _order_message(self, fault: int, row: int, cols: Mapping[str, np.ndarray]) -> str:
        # The kernel stops before updating its state for the faulty row, so the state
        # still describes the rows before it: exactly what the message quotes.
        last_ts, last_seq, prev, prev_seq = (
            self._last_ts,
            self._last_seq,
            self._prev,
            self._prev_seq[0],
        )
        k = int(cols["instrument"][row])
        t = int(cols["ts_event"][row])
        if fault == vk.FAULT_UNKNOWN_INSTRUMENT:
            ids = ", ".join(str(i.id) for i in self.instruments)
            return f"instrument id {k} is not in the instruments table (known ids: {ids})"
        if fault == vk.FAULT_TS_BACKWARDS:
            return f"ts_event goes backwards for {self._name(k)}: {t} after {int(last_ts[k])}"
        if fault == vk.FAULT_DUP_BAR:
            return f"duplicate bar for {self._name(k)} at ts_event {t}"
        s = int(cols["seq"][row]) if self._has_seq else 0
        if fault == vk.FAULT_DUP_SEQ:
            return f"duplicate seq {s} for {self._name(k)}"
        if fault == vk.FAULT_SEQ_BACKWARDS:
            return f"seq goes backwards for {self._name(k)}: {s} after {int(last_seq[k])}"
        key = f"(ts_event={t}, instrument={k}" + (f", seq={s})" if self._has_seq else ")")
        prev_key = f"(ts_event={int(prev[1])}, instrument={int(prev[2])}" + (
            f", seq={int(prev_seq)})" if self._has_seq else ")"
        )
        return (
            f"rows are not in (ts_event, instrument, seq) order: {key} follows {prev_key}; "
            "`tickwise data import` sorts a file into that order"
        )

    def _value_message(self, fault: int, row: int, col: int, cols: Mapping[str, np.ndarray]) -> str:
        names = VALUE_COLUMNS[self.kind]
        if fault == vk.FAULT_CROSSED:
            bid, ask = float(cols["bid_px"][row]), float(cols["ask_px"][row])
            return f"crossed quote: bid_px {bid} > ask_px {ask}"
        if fault == vk.FAULT_BAR_RANGE:
            o, h, lo, c = (float(cols[n][row]) for n in ("open", "high", "low", "close"))
            return (
                f"bar high/low do not enclose open/close: open {o}, high {h}, low {lo}, close {c}"
            )
        name = names[col]
        value = cols[name][row]
        if fault == vk.FAULT_OFF_TICK:
            k = int(cols["instrument"][row])
            tick = self.instruments[k].tick_size
            return f"{name} {float(value)!r} is off {self._name(k)}'s tick grid of {tick:g}"
        if fault == vk.FAULT_BAD_SIDE:
            return f"{name} is {int(value)}; expected 1 (buy) or -1 (sell)"
        shown = "NaN" if np.isnan(value) else repr(float(value))
        if fault == vk.FAULT_BAD_PRICE:
            return f"{name} is {shown}; prices must be positive and below {vk.MAX_PRICE:g}"
        must = "positive" if self.kind == "trades" else "non-negative"
        return f"{name} is {shown}; sizes must be {must} and below {vk.MAX_SIZE:g}"
