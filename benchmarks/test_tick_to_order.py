"""pytest-benchmark case: tick-to-order latency through the paper exchange, beside its floor.
Set TICKWISE_BENCH_T2O_SECONDS for shorter setups (10 s each by default)."""

from __future__ import annotations

import os

import pytest

from . import tick_to_order

SECONDS = float(os.environ.get("TICKWISE_BENCH_T2O_SECONDS", "10"))


@pytest.mark.benchmark(group="live")
def test_tick_to_order_latency_against_a_bare_relay(benchmark) -> None:
    result = benchmark.pedantic(tick_to_order.measure, args=(SECONDS,), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    print()
    tick_to_order.print_report(result)
