"""Benchmark inputs: deterministic synthetic histories, generated once and reused."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from tickwise.feeds.synth import SynthConfig, synth

DATA_DIR = Path(__file__).resolve().parent / ".data"


def quotes_file(rows: int, instruments: int = 8, seed: int = 1) -> Path:
    """A quotes history of `rows` rows, made once and reused (the generator is deterministic)."""
    path = DATA_DIR / f"quotes-{rows}-{instruments}-{seed}.parquet"
    if not path.exists() or pq.read_metadata(path).num_rows != rows:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        config = SynthConfig(kind="quotes", rows=rows, instruments=instruments, seed=seed)
        synth(config, path, overwrite=True)
    return path
