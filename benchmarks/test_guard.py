"""pytest-benchmark case: what the risk gate and kill switch cost per event and per order, and
how many events after the tripping one the halt takes effect. Set TICKWISE_BENCH_GUARD_ROWS
for a smaller history."""

from __future__ import annotations

import os

import pytest

from . import guard

ROWS = int(os.environ.get("TICKWISE_BENCH_GUARD_ROWS", "10000000"))


@pytest.mark.benchmark(group="guard")
def test_guard_cost_and_time_to_halt(benchmark) -> None:
    result = benchmark.pedantic(guard.measure, args=(ROWS, 5), rounds=1, iterations=1)
    per_event, per_order, halt = result
    benchmark.extra_info.update({"per_event": per_event, "per_order": per_order, "halt": halt})
    print()
    guard.print_report(per_event, per_order, halt)
