"""Writing market data to Parquet: one file or a hive-partitioned directory, all or nothing.

Output goes to a hidden temporary path beside the target and is renamed into
place only when complete, so a failure (bad input, a full disk, Ctrl-C) never
leaves a half-written history where a reader would find it, and never
destroys what was there before.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path
from types import TracebackType

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tickwise.engine.atomic import check_target, discard, make_folder, publish, temporary_path
from tickwise.engine.instruments import Instruments
from tickwise.engine.schemas import META_INSTRUMENTS, META_KIND, market_schema

ROW_GROUP_ROWS = 1 << 18  # rows per Parquet row group: bounds a reader's working memory
_NS_PER_DAY = 86_400 * 1_000_000_000


def _write_options(schema: pa.Schema) -> dict:
    """Encodings that make tickwise files small and fast to decode: deltas for the
    monotone integer columns, a dictionary for the instrument id, and LZ4 pages (on one
    core, 10 M quotes decode in 0.27 s from LZ4 against 0.46-0.70 s from Snappy, for
    files 17 % larger; zstd is 20 % smaller and as slow as Snappy)."""
    deltas = {n: "DELTA_BINARY_PACKED" for n in ("ts_event", "ts_recv", "seq") if n in schema.names}
    return {"use_dictionary": ["instrument"], "column_encoding": deltas, "compression": "lz4"}


def tickwise_schema(kind: str, instruments: Instruments) -> pa.Schema:
    """The Arrow schema of `kind` carrying the kind and the instrument table as metadata."""
    meta = {META_KIND: kind.encode(), META_INSTRUMENTS: instruments.to_json()}
    return market_schema(kind).with_metadata(meta)


class HistoryWriter:
    """Writes batches of one kind, in global order, to `out` as a file or a hive directory.

    `partition=True` writes `date=YYYY-MM-DD/instrument=N/part-0.parquet` files
    (UTC dates of ts_event); otherwise one file. Use as a context manager: the
    output appears at `out` only when the block ends without an exception.
    """

    def __init__(
        self,
        out: Path,
        kind: str,
        instruments: Instruments,
        *,
        partition: bool = False,
        overwrite: bool = False,
    ) -> None:
        check_target(out, overwrite)
        self.out = out
        self.kind = kind
        self.partition = partition
        self.schema = tickwise_schema(kind, instruments)
        self.rows = 0
        make_folder(out.parent)
        self._tmp = temporary_path(out)
        self._writers: dict[tuple[int, int], pq.ParquetWriter] = {}
        self._single: pq.ParquetWriter | None = None
        if partition:
            self._tmp.mkdir()
        else:
            self._single = pq.ParquetWriter(self._tmp, self.schema, **_write_options(self.schema))

    def write(self, batch: pa.RecordBatch) -> None:
        """Append a batch (rows in (ts_event, instrument, seq) order, after earlier batches)."""
        if batch.num_rows == 0:
            return
        batch = pa.RecordBatch.from_arrays(batch.columns, schema=self.schema)
        self.rows += batch.num_rows
        if self._single is not None:
            self._single.write_batch(batch, row_group_size=ROW_GROUP_ROWS)
            return
        self._write_partitioned(batch)

    def _write_partitioned(self, batch: pa.RecordBatch) -> None:
        ts = batch.column("ts_event").to_numpy()
        inst = batch.column("instrument").to_numpy()
        day = ts // _NS_PER_DAY
        # Rows sorted by (day, instrument), stable: each group keeps its time order.
        order = np.lexsort((inst, day))
        key_day, key_inst = day[order], inst[order]
        starts = np.flatnonzero(
            np.r_[True, (key_day[1:] != key_day[:-1]) | (key_inst[1:] != key_inst[:-1])]
        )
        ends = np.r_[starts[1:], order.size]
        first_day = int(day[0])
        for d, i in [k for k in self._writers if k[0] < first_day]:
            self._writers.pop((d, i)).close()  # dates only move forward: finish older files
        for s, e in zip(starts, ends, strict=True):
            key = (int(key_day[s]), int(key_inst[s]))
            writer = self._writers.get(key)
            if writer is None:
                date = dt.date(1970, 1, 1) + dt.timedelta(days=key[0])
                folder = self._tmp / f"date={date.isoformat()}" / f"instrument={key[1]}"
                folder.mkdir(parents=True, exist_ok=True)
                writer = pq.ParquetWriter(
                    folder / "part-0.parquet", self.schema, **_write_options(self.schema)
                )
                self._writers[key] = writer
            writer.write_batch(batch.take(pa.array(order[s:e])), row_group_size=ROW_GROUP_ROWS)

    def close(self) -> None:
        """Finish every file and move the output into place."""
        if self._single is not None:
            self._single.close()
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
        publish(self._tmp, self.out)

    def abort(self) -> None:
        """Drop everything written; whatever was at `out` before stays untouched (even when
        the files will not close: a full disk)."""
        for writer in [self._single, *self._writers.values()]:
            if writer is not None:
                with contextlib.suppress(OSError):
                    writer.close()
        self._single = None
        self._writers.clear()
        discard(self._tmp)

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
