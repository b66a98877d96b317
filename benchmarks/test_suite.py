"""pytest-benchmark runs of the `tickwise bench` suites (`make bench`): the same cases, each
suite in a fresh process, timed whole by pytest-benchmark, with every case (ours, its floor,
their ratio, the target) kept in the benchmark's extra_info; the session also writes the
run as `tickwise bench --json` would, so `tickwise bench --compare` reads it.

Benchmarks measure and report; they assert no target (docs/performance.md). Set
TICKWISE_BENCH_QUICK=1 for the quick rounds CI takes.
"""

from __future__ import annotations

import dataclasses
import os

import pytest

from tickwise.benchmarks import cases
from tickwise.benchmarks.harness import Case

QUICK = os.environ.get("TICKWISE_BENCH_QUICK", "") not in ("", "0")
MEASURED: list[Case] = []  # every case of the session, for the run document (conftest.py)


@pytest.mark.parametrize("suite", list(cases.SUITE))
def test_suite(benchmark, suite: str) -> None:
    found = benchmark.pedantic(cases.measure, args=(suite, QUICK), rounds=1, iterations=1)
    MEASURED.extend(found)
    benchmark.extra_info["quick"] = QUICK
    benchmark.extra_info["cases"] = [dataclasses.asdict(c) for c in found]
    print()
    for c in found:
        ratio = ", ".join(f"{k} {v:.2f}x" for k, v in c.ratio.items() if k in ("p50", "p99"))
        print(f"  {c.name}: ours/floor {ratio} (target {c.target}); {c.how}")
