"""Several data sets as one stream: every row once, in (ts_event, instrument, data set, seq)
order, whatever the batch size, window or file layout; data sets that cannot run together
refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickwise.engine.errors import DataError
from tickwise.engine.instruments import Instrument, Instruments
from tickwise.engine.schemas import KIND_CODES, TRADE_DTYPE
from tickwise.feeds.merged import MergedHistory, open_data

from ..conftest import make_synth, simple_instruments, write_rows
from ..unit.test_validation import quotes

SETS = {"quotes": 5_000, "trades": 2_500, "book": 3_000, "bars": 600}
MERGEABLE = ("quotes", "trades", "book")  # (bars run alone)


@pytest.fixture(scope="module")
def data_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One file of each kind over the same three instruments and about the same hours."""
    root = tmp_path_factory.mktemp("sets")
    return {
        kind: make_synth(
            root / f"{kind}.parquet",
            kind=kind,
            rows=rows,
            instruments=3,
            seed=4,
            rate=20.0 if kind == "bars" else 1000.0,
        )
        for kind, rows in SETS.items()
    }


def reference(paths: list[Path], lo: int, hi: int) -> list[tuple]:
    """Every row of every data set in the window, sorted by the documented key, as
    (ts_event, instrument, data set, seq, kind code, row within its file)."""
    rows = []
    for position, path in enumerate(paths):
        table = pq.read_table(path)
        kind = path.stem
        ts = table.column("ts_event").to_numpy()
        inst = table.column("instrument").to_numpy()
        seq = table.column("seq").to_numpy() if "seq" in table.column_names else 0 * ts
        for r in np.flatnonzero((ts >= lo) & (ts < hi)):
            rows.append((int(ts[r]), int(inst[r]), position, int(seq[r]), KIND_CODES[kind], r))
    return sorted(rows)


def streamed(paths: list[Path], batch_size: int, lo: int, hi: int) -> list[tuple]:
    """The same, as the merged stream gives it (each event's row found back in its file by
    its key within its kind, which is unique)."""
    history = open_data(paths)
    assert isinstance(history, MergedHistory)
    position = {h.kind: n for n, h in enumerate(history.histories)}
    out = []
    for batch in history.batches(batch_size, lo, hi):
        assert 0 < batch.num_rows <= batch_size
        for code, row, ts in zip(batch.kinds, batch.rows, batch.ts_event, strict=True):
            kind = next(k for k, c in KIND_CODES.items() if c == code)
            part = batch.parts[kind]
            assert part.column("ts_event")[int(row)].as_py() == ts
            inst = part.column("instrument")[int(row)].as_py()
            seq = part.column("seq")[int(row)].as_py() if "seq" in part.schema.names else 0
            out.append((int(ts), inst, position[kind], seq, int(code)))
    return out


@settings(max_examples=25, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(MERGEABLE), min_size=2, max_size=3, unique=True),
    batch_size=st.sampled_from([1, 7, 333, 4_096, 65_536]),
    window=st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)),
)
def test_rows_come_once_each_in_the_global_order(data_sets, kinds, batch_size, window):
    paths = [data_sets[k] for k in kinds]
    history = open_data(paths)
    first, last = history.ts_range
    a, b = sorted(window)
    lo = first + int(a * (last - first))
    hi = max(lo + 1, first + int(b * (last - first)))
    expected = [row[:5] for row in reference(paths, lo, hi)]
    if batch_size == 1 and len(expected) > 3_000:  # (one event per batch: slow in Python)
        hi = expected[3_000][0]
        expected = [row for row in expected if row[0] < hi]
    assert streamed(paths, batch_size, lo, hi) == expected


def test_equal_keys_keep_the_order_the_data_sets_were_given(tmp_path: Path) -> None:
    """A quote and a trade of one instrument at one ts_event: the data set given first comes
    first, whatever their seq."""
    q = quotes(2, instruments=1)  # seq 1 and 2, a millisecond apart
    inst = simple_instruments(1)
    qpath = write_rows(tmp_path / "quotes.parquet", "quotes", q, inst)
    t = np.zeros(2, dtype=TRADE_DTYPE)
    for name in ("ts_event", "ts_recv", "instrument"):
        t[name] = q[name]
    t["seq"] = (5, 6)  # beyond the quotes' own: the place given decides, not seq
    t["px"], t["sz"], t["side"] = 100.0, 1.0, 1
    tpath = write_rows(tmp_path / "trades.parquet", "trades", t, inst)
    for order in ([qpath, tpath], [tpath, qpath]):
        events = streamed(order, 10, 0, 2**62)
        assert [e[4] for e in events] == [KIND_CODES[p.stem] for p in order] * 2


def test_a_folder_of_kinds_replays_them_together(tmp_path: Path, data_sets) -> None:
    folder = tmp_path / "day"
    folder.mkdir()
    for kind in ("trades", "quotes"):
        (folder / f"{kind}.parquet").write_bytes(data_sets[kind].read_bytes())
    history = open_data(folder)
    assert isinstance(history, MergedHistory)
    assert history.kinds == ("quotes", "trades")  # in the order of kinds, not of names
    assert history.rows == SETS["quotes"] + SETS["trades"]


def test_disagreeing_instruments_are_refused_naming_both_files(tmp_path: Path) -> None:
    q = quotes(1, instruments=1)
    a = write_rows(tmp_path / "a.parquet", "quotes", q, simple_instruments(1))
    t = np.zeros(1, dtype=TRADE_DTYPE)
    t["ts_event"], t["seq"], t["px"], t["sz"], t["side"] = q["ts_event"], 1, 100.0, 1.0, 1
    other = Instruments([Instrument(0, "I0", 0.05, 1.0)])
    b = write_rows(tmp_path / "b.parquet", "trades", t, other)
    with pytest.raises(DataError, match=r"b\.parquet: instrument 0 is .*a\.parquet"):
        open_data([a, b])


def test_a_folder_entry_holding_two_kinds_is_refused(tmp_path: Path, data_sets) -> None:
    folder = tmp_path / "mixed"
    (folder / "both").mkdir(parents=True)
    (folder / "both" / "q.parquet").write_bytes(data_sets["quotes"].read_bytes())
    (folder / "both" / "t.parquet").write_bytes(data_sets["trades"].read_bytes())
    (folder / "bars.parquet").write_bytes(data_sets["bars"].read_bytes())
    with pytest.raises(DataError, match=r"both: holds quotes and trades"):
        open_data(folder)


def test_data_sets_that_cannot_run_together_are_refused(tmp_path: Path, data_sets) -> None:
    q, t, bars = data_sets["quotes"], data_sets["trades"], data_sets["bars"]
    with pytest.raises(DataError, match=r"quotes\.parquet: given twice"):
        open_data([q, t, q])
    copy = tmp_path / "again.parquet"
    copy.write_bytes(q.read_bytes())
    with pytest.raises(DataError, match=r"both hold quotes: give one data set per kind"):
        open_data([q, copy])
    with pytest.raises(DataError, match=r"bars\.parquet: bars cannot run beside quotes"):
        open_data([q, bars])


def test_a_folder_of_kinds_names_a_file_it_cannot_use(tmp_path: Path, data_sets) -> None:
    folder = tmp_path / "day"
    folder.mkdir()
    for kind in ("quotes", "trades"):
        (folder / f"{kind}.parquet").write_bytes(data_sets[kind].read_bytes())
    (folder / ".writing.parquet").write_bytes(b"half written")  # hidden: not part of it
    assert open_data(folder).rows == SETS["quotes"] + SETS["trades"]
    pq.write_table(pq.read_table(data_sets["trades"]).replace_schema_metadata({}),
                   folder / "foreign.parquet")  # fmt: skip
    with pytest.raises(DataError, match=r"foreign\.parquet: no tickwise metadata"):
        open_data(folder)
    table = pq.read_table(data_sets["trades"])
    meta = {**table.schema.metadata, b"tickwise.kind": b"ticks"}
    pq.write_table(table.replace_schema_metadata(meta), folder / "foreign.parquet")
    with pytest.raises(DataError, match=r"foreign\.parquet: unknown data kind 'ticks'"):
        open_data(folder)
