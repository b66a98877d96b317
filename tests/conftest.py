"""Shared test helpers: small real Parquet histories written into tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import numba
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, settings

from tickwise.engine.caches import numba_cache_dir
from tickwise.engine.instruments import Instrument, Instruments
from tickwise.engine.limits import KillSwitch, RiskLimits
from tickwise.engine.schemas import market_schema
from tickwise.feeds.store import HistoryWriter
from tickwise.feeds.synth import SynthConfig, synth

# Numba's cache does not tell bounds-checked code from unchecked: checked runs (make test)
# keep theirs apart, or they would load unchecked code and check nothing.
if numba.config.BOUNDSCHECK and Path(numba.config.CACHE_DIR) == numba_cache_dir(False):
    raise pytest.UsageError(
        "NUMBA_BOUNDSCHECK=1 needs its own NUMBA_CACHE_DIR (make test sets both); a shared "
        "cache would hand the tests code compiled without bounds checks"
    )

# Numba compiles on first use; no example should fail for taking long.
settings.register_profile(
    "tickwise",
    deadline=None,
    max_examples=int(os.environ.get("TICKWISE_HYPOTHESIS_EXAMPLES", "40")),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("tickwise")


def make_synth(path: Path, **config) -> Path:
    """Write a synthetic history with the given SynthConfig fields to `path`."""
    partition = config.pop("partition", False)
    synth(SynthConfig(**config), path, partition=partition, overwrite=True)
    return path


def write_rows(path: Path, kind: str, records: np.ndarray, instruments: Instruments) -> Path:
    """Write records as a tickwise Parquet file without validating them (to test validation)."""
    schema = market_schema(kind)
    arrays = [pa.array(records[name]) for name in schema.names]
    with HistoryWriter(path, kind, instruments, overwrite=True) as writer:
        writer.write(pa.RecordBatch.from_arrays(arrays, schema=schema))
    return path


def table_of(batches) -> pa.Table:
    """Concatenate batches into one table (for comparing streams)."""
    batches = list(batches)
    return pa.Table.from_batches(batches).combine_chunks()


@pytest.fixture(scope="session")
def quotes_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 instruments, 20k quote rows, seed 11: shared read-only by many tests."""
    return make_synth(
        tmp_path_factory.mktemp("hist") / "quotes.parquet",
        kind="quotes",
        rows=20_000,
        instruments=4,
        seed=11,
    )


def simple_instruments(n: int = 3) -> Instruments:
    return Instruments(Instrument(i, f"I{i}", 0.01, 1.0) for i in range(n))


# Strategy behaviour tests feed hand-made markets with moves no live market would show
# without tripping the kill switch; the guard has tests of its own.
UNGUARDED = {"risk": RiskLimits.off(), "killswitch": KillSwitch.off()}
