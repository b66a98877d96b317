"""pytest-benchmark case: `tickwise backtest` whole command and replay alone.
Set TICKWISE_BENCH_BACKTEST_ROWS for a smaller history."""

from __future__ import annotations

import os

import pytest

from . import backtest

ROWS = int(os.environ.get("TICKWISE_BENCH_BACKTEST_ROWS", "10000000"))


@pytest.mark.benchmark(group="backtest")
def test_backtest_whole_command_and_replay(benchmark) -> None:
    result = benchmark.pedantic(backtest.measure, args=(ROWS, 3), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    print()
    backtest.print_report(result)
