"""Benchmark inputs: deterministic synthetic histories, generated once and reused."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq

from tickwise.feeds.synth import SynthConfig, synth

# Generated once per machine and kept: a 10M-row history takes ~10 s to make.
DATA_DIR = Path(
    os.environ.get("TICKWISE_BENCH_DATA", Path.home() / ".cache" / "tickwise" / "bench-data")
)


def quotes_file(rows: int, instruments: int = 8, seed: int = 1) -> Path:
    """A quotes history of `rows` rows, made once and reused (the generator is deterministic)."""
    return _history("quotes", rows, instruments, seed)


def bars_file(rows: int, instruments: int = 8, seed: int = 1) -> Path:
    """A history of one-minute bars of `rows` rows, made once and reused. The market behind
    the bars is simulated event by event: 1M bars of 8 instruments take ~3 minutes to make."""
    return _history("bars", rows, instruments, seed)


def _history(kind: str, rows: int, instruments: int, seed: int) -> Path:
    path = DATA_DIR / f"{kind}-{rows}-{instruments}-{seed}.parquet"
    if not path.exists() or not _current(path, rows):
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        config = SynthConfig(kind=kind, rows=rows, instruments=instruments, seed=seed)
        synth(config, path, overwrite=True)
    return path


def _current(path: Path, rows: int) -> bool:
    """Whether a file made earlier has the rows and the codec the writer uses now."""
    meta = pq.read_metadata(path)
    codec = meta.row_group(0).column(0).compression if meta.num_row_groups else None
    return meta.num_rows == rows and codec == "LZ4"
