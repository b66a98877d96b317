"""pytest-benchmark cases: the compiled loop per event vs the bare signal loop, and the
Python cost of one batch call. Set TICKWISE_BENCH_LOOP_ROWS for a smaller history."""

from __future__ import annotations

import os

import pytest

from . import loop

ROWS = int(os.environ.get("TICKWISE_BENCH_LOOP_ROWS", "10000000"))


@pytest.mark.benchmark(group="loop")
def test_loop_vs_bare_signal_loop(benchmark) -> None:
    result = benchmark.pedantic(loop.compare, args=(ROWS, 5), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    print()
    loop.print_report(result)
