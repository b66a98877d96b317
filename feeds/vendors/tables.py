"""Vendors' CSV files read in chunks, as text, whatever their size or compression.

pyarrow's streaming CSV reader decompresses (gzip, or a member of a zip archive) and parses
block by block, so memory stays flat; every column is read as text and the formats convert
it with polars, where a value that will not convert marks its row (refused with its line)
instead of failing the whole block.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv

from tickwise.engine.errors import DataError

BLOCK_BYTES = 1 << 24  # text parsed at a time


def open_binary(path: Path) -> BinaryIO:
    """A file's bytes, gunzipped as read when it is gzip."""
    try:
        raw = open(path, "rb")  # noqa: SIM115 (returned, closed by the caller)
        gzip = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if gzip:
        return pa.CompressedInputStream(pa.PythonFile(raw, mode="r"), "gzip")
    return raw


def first_line(stream: BinaryIO, path: Path) -> str:
    """The first line of a stream (which must then be read from the start again)."""
    try:
        head = stream.read(1 << 16)
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    text = head.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        return text.decode("utf-8-sig")  # (a byte-order mark is no part of the first name)
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text (CSV) file") from None


def header_names(line: str) -> list[str]:
    """A CSV header's names, unquoted and stripped."""
    return [n.strip().strip('"').strip() for n in line.split(",")]


def csv_chunks(
    source: BinaryIO,
    path: Path,
    names: list[str],
    header: bool,
    malformed: list[tuple[int, str]] | None = None,
) -> Iterator[tuple[pl.DataFrame, np.ndarray]]:
    """The rows of a CSV stream as text columns `names`, chunk by chunk, with each row's line
    in the file (`header`: line 1 is a header, skipped; else line 1 is a row).

    A row with another number of fields stops the reading (naming it), or, given
    `malformed`, is set aside there as (line, why): pyarrow's streaming reader does not
    tell its line, so it is named by the first line of its block, and the rows after it in
    that block are numbered one line early each."""
    pending: list = []

    def invalid(row: object) -> str:
        if malformed is None:
            return "error"
        pending.append(row)
        return "skip"

    read = pacsv.ReadOptions(block_size=BLOCK_BYTES, column_names=names,
                             skip_rows=1 if header else 0)  # fmt: skip
    convert = pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                   strings_can_be_null=True, null_values=[""])  # fmt: skip
    parse = pacsv.ParseOptions(newlines_in_values=False, invalid_row_handler=invalid)
    line = 2 if header else 1
    try:
        reader = pacsv.open_csv(source, read_options=read, parse_options=parse,
                                convert_options=convert)  # fmt: skip
        for batch in reader:
            skipped = len(pending)
            for row in pending:
                malformed.append((line, f"a row of {row.actual_columns} fields, not "
                                  f"{row.expected_columns} (somewhere from this line on): "
                                  f"{row.text[:120]!r}"))  # fmt: skip
            pending.clear()
            lines = np.arange(line, line + batch.num_rows, dtype=np.uint64)
            line += batch.num_rows + skipped
            if batch.num_rows:
                yield pl.from_arrow(batch), lines
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
        text = str(exc).splitlines()[0]
        raise DataError(f"{path}: cannot read near line {line:,}: {text}") from None


class Cells:
    """A chunk's text columns converted one by one; a row with a value that will not convert
    is noted with why (the first reason of a row stays) and dropped by `keep`."""

    def __init__(self, frame: pl.DataFrame) -> None:
        self.frame = frame
        self.bad: dict[int, str] = {}

    def number(
        self, name: str, dtype: pl.DataType = pl.Float64, rows: np.ndarray | None = None
    ) -> np.ndarray:
        """A numeric column (0 where it will not convert); `rows`: only these must hold one."""
        text = self.frame[name]
        values = text.str.strip_chars().cast(dtype, strict=False)
        failed = values.is_null().to_numpy()
        if rows is not None:
            failed &= rows
        for r in np.flatnonzero(failed).tolist():
            shown = text[r]
            self.bad.setdefault(
                r, f"{name} is {'empty' if shown is None else repr(shown)}; expected a number"
            )
        return values.fill_null(0).to_numpy()

    def times(self, name: str, ns_per_unit: int) -> np.ndarray:
        """Integer times in units of `ns_per_unit` ns since the epoch, as int64 ns (times
        before 1970 or beyond what int64 ns hold, the year 2262, refused)."""
        raw = self.number(name, pl.Int64)
        bad = (raw < 0) | (raw > (2**63 - 1) // ns_per_unit)
        for r in np.flatnonzero(bad).tolist():
            self.bad.setdefault(r, f"{name} is {raw[r]}: not a time from 1970 to 2262")
        return np.where(bad, 0, raw) * ns_per_unit

    def choice(
        self, name: str, values: dict[str, int], rows: np.ndarray | None = None, what: str = ""
    ) -> np.ndarray:
        """A column of words mapped to numbers (0 where none; `rows` must hold one)."""
        text = self.frame[name].str.strip_chars().str.to_lowercase()
        mapped = text.replace_strict(values, default=None, return_dtype=pl.Int8)
        failed = mapped.is_null().to_numpy()
        if rows is not None:
            failed &= rows
        for r in np.flatnonzero(failed).tolist():
            self.bad.setdefault(r, f"{name} is {text[r]!r}; expected {what or ' or '.join(values)}")
        return mapped.fill_null(0).to_numpy()

    def keep(self) -> np.ndarray:
        keep = np.ones(self.frame.height, dtype=np.bool_)
        keep[list(self.bad)] = False
        return keep

    def refused(self, lines: np.ndarray) -> list[tuple[int, str]]:
        return [(int(lines[r]), why) for r, why in sorted(self.bad.items())]
