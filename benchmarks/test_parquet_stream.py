"""pytest-benchmark cases: streaming a 20M-row quotes file, tickwise vs bare pyarrow.

Benchmarks measure and print; they do not assert targets (see README, Performance).
Set TICKWISE_BENCH_ROWS to run on a smaller file.
"""

from __future__ import annotations

import os

import pytest

from . import parquet_stream as ps

ROWS = int(os.environ.get("TICKWISE_BENCH_ROWS", "20000000"))


@pytest.fixture(scope="module")
def quotes_path():
    return ps.quotes_file(ROWS)


@pytest.mark.benchmark(group="parquet-stream")
def test_stream_bare_pyarrow(benchmark, quotes_path) -> None:
    rows = benchmark.pedantic(ps.read_bare, args=(quotes_path,), rounds=5, warmup_rounds=1)
    benchmark.extra_info["rows"] = rows


@pytest.mark.benchmark(group="parquet-stream")
def test_stream_tickwise(benchmark, quotes_path) -> None:
    rows = benchmark.pedantic(ps.read_tickwise, args=(quotes_path,), rounds=5, warmup_rounds=1)
    benchmark.extra_info["rows"] = rows


@pytest.mark.benchmark(group="parquet-stream-ratio")
def test_stream_ratio_and_peak_memory(benchmark, quotes_path) -> None:
    result = benchmark.pedantic(ps.report, args=(ROWS, 7), rounds=1, iterations=1)
    benchmark.extra_info.update({k: v for k, v in result.items() if not k.endswith("_s")})
    print()
    ps.print_report(result)
