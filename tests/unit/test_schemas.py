"""The data contracts: one dtype per record kind, its Arrow schema derived from it."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tickwise.engine import schemas
from tickwise.engine.instruments import Instrument, Instruments
from tickwise.feeds.history import columns

ALL_DTYPES = {
    **schemas.MARKET_DTYPES,
    "orders": schemas.ORDER_DTYPE,
    "fills": schemas.FILL_DTYPE,
}


@pytest.mark.parametrize("name", list(ALL_DTYPES))
def test_arrow_schema_mirrors_numpy_dtype(name: str) -> None:
    dtype = ALL_DTYPES[name]
    schema = schemas.arrow_schema(dtype)
    assert schema.names == list(dtype.names)
    for field in schema:
        assert not field.nullable
        assert field.type.to_pandas_dtype() == dtype.fields[field.name][0].type


@pytest.mark.parametrize("name", list(ALL_DTYPES))
def test_records_round_trip_through_arrow_without_loss(name: str) -> None:
    dtype = ALL_DTYPES[name]
    rng = np.random.default_rng(1)
    records = np.zeros(50, dtype=dtype)
    for field in dtype.names:
        kind = dtype.fields[field][0]
        if kind.kind == "f":
            records[field] = rng.normal(size=50) * 1e3
        else:
            info = np.iinfo(kind)
            records[field] = rng.integers(info.min, info.max, size=50, dtype=kind, endpoint=True)
    schema = schemas.arrow_schema(dtype)
    batch = pa.RecordBatch.from_arrays([pa.array(records[n]) for n in dtype.names], schema=schema)
    views = columns(batch)
    for field in dtype.names:
        np.testing.assert_array_equal(views[field], records[field])
        assert views[field].dtype == dtype.fields[field][0]


def test_market_schema_of_unknown_kind_names_the_choices() -> None:
    with pytest.raises(ValueError, match="quotes, trades, bars, book"):
        schemas.market_schema("ticks")


def test_sort_keys_are_time_instrument_sequence() -> None:
    assert schemas.SORT_KEYS["quotes"] == ("ts_event", "instrument", "seq")
    assert schemas.SORT_KEYS["bars"] == ("ts_event", "instrument")


def test_instrument_table_round_trips_through_metadata_json() -> None:
    table = Instruments([Instrument(3, "ES", 0.25, 1.0), Instrument(0, "AAPL", 0.01, 100.0)])
    again = Instruments.from_json(table.to_json(), "x.parquet")
    assert again == table
    assert [i.id for i in again] == [0, 3]
    assert again.known_mask().tolist() == [True, False, False, True]
    assert again.by_symbol("ES").tick_size == 0.25


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([Instrument(0, "A", 0.01, 1), Instrument(0, "B", 0.01, 1)], "ids must be unique"),
        ([Instrument(0, "A", 0.01, 1), Instrument(1, "A", 0.01, 1)], "symbols must be unique"),
    ],
)
def test_instrument_table_rejects_duplicates(items, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Instruments(items)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tick_size": 0.0}, "tick_size must be positive"),
        ({"lot_size": float("nan")}, "lot_size must be positive"),
        ({"id": -1}, "outside"),
        ({"symbol": ""}, "empty symbol"),
    ],
)
def test_instrument_rejects_bad_fields(kwargs: dict, message: str) -> None:
    base = {"id": 0, "symbol": "A", "tick_size": 0.01, "lot_size": 1.0} | kwargs
    with pytest.raises(ValueError, match=message):
        Instrument(**base)


def test_malformed_instrument_metadata_names_the_file() -> None:
    from tickwise.engine.errors import DataError

    with pytest.raises(DataError, match="bad.parquet: malformed instruments table"):
        Instruments.from_json(b'[{"id": 0}]', "bad.parquet")


@pytest.mark.parametrize("dtype", [schemas.ORDER_DTYPE, schemas.FILL_DTYPE, schemas.EQUITY_DTYPE])
def test_joined_records_hold_every_part_s_rows_in_turn(dtype: np.dtype) -> None:
    rng = np.random.default_rng(1)
    rows = np.frombuffer(rng.bytes(dtype.itemsize * 9), dtype=dtype)  # every byte drawn
    parts = [rows[:4], rows[4:4], rows[4:].view(np.recarray)]
    joined = schemas.join_records(parts, dtype)
    assert joined.tobytes() == rows.tobytes()
    assert not np.shares_memory(joined, rows)  # a copy, never a view
    assert schemas.join_records([], dtype).shape == (0,)
    with pytest.raises(TypeError, match="joined as"):
        schemas.join_records([rows, np.zeros(2, dtype=schemas.QUOTE_DTYPE)], dtype)
