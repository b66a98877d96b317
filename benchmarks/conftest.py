"""At the end of `make bench`, the session's cases are written as one `tickwise bench` run
(bench-results/run-<time>.json), beside pytest-benchmark's own JSON."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from tickwise.benchmarks.harness import run_document

from .test_suite import MEASURED, QUICK

RESULTS = Path("bench-results")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not MEASURED:
        return
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"run-{stamp}.json"
    path.write_text(json.dumps(run_document(MEASURED, QUICK), indent=2))
    print(f"\ntickwise bench run written to {path} (compare: tickwise bench --compare A B)")
