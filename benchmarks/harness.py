"""What every benchmark case reports, how results are kept, and how two runs are compared.

A case measures something of ours beside its floor, in the same run (a bare
loop, a bare pyarrow read, a bare pyzmq relay): machines are shared and
noisy, so what is kept and compared is the ratio of the two, per statistic
(latency percentiles, or throughput), never an absolute time. A ratio is a
cost ratio: ours over the floor for latencies and times, the floor's rate
over ours for throughputs, so that above 1 is always slower than the floor.

A run is a JSON document (`SCHEMA`, checked on writing and on reading) with
the machine it ran on (CPU model, cores, Python and library versions, the
commit), so that runs of different commits can be compared: `compare` flags
a case whose ratio grew by more than a threshold as a regression.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
from hdrh.histogram import HdrHistogram

from tickwise.engine.errors import TickwiseError

LATENCY_STATS = ("p50", "p90", "p99", "p99.9")
SCHEMA_VERSION = 1
# A case's ratio this many times its target fails a CI run (noise never should).
FAIL_FACTOR = 2.0
# A ratio grown by this much from one run to another is flagged as a regression: at the
# median, and at a tail with a target (p99), which two runs of the same code here move by
# up to 1.4x (a p99 of 20,000 calls, or of 500 live batches).
REGRESSION = 1.25
TAIL_REGRESSION = 1.5

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "tickwise benchmark run",
    "type": "object",
    "required": ["schema", "created", "quick", "machine", "cases"],
    "additionalProperties": False,
    "properties": {
        "schema": {"const": SCHEMA_VERSION},
        "created": {"type": "string"},
        "quick": {"type": "boolean"},
        "machine": {
            "type": "object",
            "required": ["cpu", "cores", "python", "versions", "commit", "platform"],
            "properties": {
                "cpu": {"type": "string"},
                "cores": {"type": "integer", "minimum": 1},
                "python": {"type": "string"},
                "versions": {"type": "object", "additionalProperties": {"type": "string"}},
                "commit": {"type": "string"},
                "platform": {"type": "string"},
            },
        },
        "cases": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "kind", "unit", "how", "ours", "floor", "ratio", "target"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "kind": {"enum": ["latency", "throughput"]},
                    "unit": {"type": "string", "minLength": 1},
                    "how": {"type": "string", "minLength": 1},
                    "ours": {"$ref": "#/$defs/stats"},
                    "floor": {"$ref": "#/$defs/stats"},
                    "ratio": {"$ref": "#/$defs/stats"},
                    "target": {"$ref": "#/$defs/stats"},
                    "samples": {"type": "integer", "minimum": 0},
                },
            },
        },
    },
    "$defs": {
        "stats": {
            "type": "object",
            "additionalProperties": {"type": "number", "minimum": 0},
        },
    },
}


@dataclass
class Case:
    """One measured case: ours and its floor, per statistic, and their ratio."""

    name: str  # e.g. "wire.decode.quotes.64"
    kind: str  # "latency" (percentiles of a time) or "throughput" (one rate)
    unit: str  # of `ours` and `floor`: "µs", "ns/row", "rows/s", "events/s"
    how: str  # what was run, in a sentence
    ours: dict[str, float]
    floor: dict[str, float]
    target: dict[str, float] = field(default_factory=dict)  # the most each ratio may be
    samples: int = 0
    ratio: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("latency", "throughput"):
            raise TickwiseError(f"case {self.name}: kind must be latency or throughput")
        if not self.ratio:
            self.ratio = ratios(self.kind, self.ours, self.floor)

    def misses(self) -> dict[str, float]:
        """The statistics whose ratio is above its target (with the ratio)."""
        return {k: self.ratio[k] for k, limit in self.target.items() if self.ratio[k] > limit}

    def fails(self, factor: float = FAIL_FACTOR) -> dict[str, float]:
        """The statistics whose ratio is beyond `factor` times its target."""
        return {
            k: self.ratio[k] for k, limit in self.target.items() if self.ratio[k] > factor * limit
        }


def ratios(kind: str, ours: dict[str, float], floor: dict[str, float]) -> dict[str, float]:
    """Cost ratios, statistic by statistic: above 1 is slower than the floor."""
    out = {}
    for key in ours:
        if key not in floor:
            continue
        a, b = float(ours[key]), float(floor[key])
        if a <= 0 or b <= 0:
            raise TickwiseError(f"a {kind} of {key} must be positive, got {a} and {b}")
        out[key] = a / b if kind == "latency" else b / a
    return out


def percentiles(samples: Sequence[float] | np.ndarray, scale: float = 1.0) -> dict[str, float]:
    """p50/p90/p99/p99.9 of positive samples from an HDR histogram (3 significant digits,
    1 .. 1e12 units), in the samples' unit divided by `scale`."""
    values = np.asarray(samples, dtype=np.float64)
    if values.size == 0:
        raise TickwiseError("no samples to take percentiles of")
    if not np.isfinite(values).all() or (values < 0).any():
        raise TickwiseError("samples must be finite and not negative")
    histogram = HdrHistogram(1, 10**12, 3)
    for value in np.maximum(np.rint(values), 1).astype(np.int64).tolist():
        histogram.record_value(value)
    return {
        f"p{p:g}": histogram.get_value_at_percentile(p) / scale for p in (50.0, 90.0, 99.0, 99.9)
    }


ROUND_STATS = {"p10": 10.0, "p50": 50.0, "p90": 90.0}


def paired(name: str, unit: str, how: str, ours: Sequence[float], floor: Sequence[float],
           target: dict[str, float]) -> Case:  # fmt: skip
    """A throughput case from rounds in which ours and the floor took turns: rates at p10,
    p50 and p90 of the rounds, and the cost ratio of each round's pair (not the ratio of
    the percentiles: a pair shares the machine's mood, two percentiles need not)."""
    a = np.asarray(ours, dtype=np.float64)
    b = np.asarray(floor, dtype=np.float64)
    if a.size == 0 or a.shape != b.shape:
        raise TickwiseError(f"case {name}: rounds must be paired, got {a.size} and {b.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all() and (a > 0).all() and (b > 0).all()):
        raise TickwiseError(f"case {name}: every round's rate must be positive and finite")

    def stats(x: np.ndarray) -> dict[str, float]:
        return {k: float(np.percentile(x, q)) for k, q in ROUND_STATS.items()}

    return Case(name, "throughput", unit, how, ours=stats(a), floor=stats(b),
                target=dict(target), samples=int(a.size), ratio=stats(b / a))  # fmt: skip


def machine() -> dict[str, Any]:
    """The machine and software a run measured."""
    versions = {}
    for name in ("numpy", "numba", "pyarrow", "pyzmq", "polars", "tickwise"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count() or 1,
        "python": platform.python_version(),
        "versions": versions,
        "commit": _commit(),
        "platform": platform.platform(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _commit() -> str:
    try:
        # (with "-dirty" when the tree has changes the commit does not hold)
        done = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=40"],
                              capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).parent)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def run_document(cases: list[Case], quick: bool) -> dict[str, Any]:
    """A run as its JSON document (checked against `SCHEMA`)."""
    doc = {
        "schema": SCHEMA_VERSION,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "machine": machine(),
        "cases": [asdict(c) for c in cases],
    }
    check(doc, "the run")
    return doc


def check(doc: Any, where: str) -> None:
    """Refuse a document that is not a benchmark run, saying what is wrong and where."""
    try:
        jsonschema.validate(doc, SCHEMA)
    except jsonschema.ValidationError as exc:
        path = "/".join(str(p) for p in exc.absolute_path) or "the top"
        raise TickwiseError(
            f"{where} is not a tickwise benchmark run: at {path}: {exc.message}"
        ) from None


def load(path: Path) -> dict[str, Any]:
    """A run read back from its JSON file, checked."""
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise TickwiseError(f"{path}: no such file") from None
    except json.JSONDecodeError as exc:
        raise TickwiseError(f"{path}: not JSON: {exc}") from None
    check(doc, str(path))
    return doc


@dataclass(frozen=True)
class Change:
    """A case's ratio from one run to another, and what that says."""

    name: str
    stat: str
    old: float | None
    new: float | None
    verdict: str  # "regression", "better", "same", "new", "gone", "not judged"

    @property
    def factor(self) -> float | None:
        return None if self.old is None or self.new is None else self.new / self.old


def compare(old: dict[str, Any], new: dict[str, Any], threshold: float = REGRESSION,
            tail_threshold: float = TAIL_REGRESSION) -> list[Change]:  # fmt: skip
    """Each case's ratio per statistic, old run against new: a ratio grown by more than
    `threshold` (`tail_threshold` beyond the median) is a regression, one shrunk by as much
    is better (times are never compared: the machines or their load may differ). Only
    statistics a case has a target for are judged; the others (p90, p99.9, the p10 and p90
    of rounds) are shown "not judged": they are the fate of a few samples, and two runs of
    the same code differ there by 1.3-9x on a shared 2-vCPU machine."""
    if not (threshold > 1 and tail_threshold > 1):
        raise TickwiseError(
            f"regression thresholds must be above 1, got {threshold} and {tail_threshold}"
        )
    before = {c["name"]: c for c in old["cases"]}
    after = {c["name"]: c for c in new["cases"]}
    changes = []
    for name in sorted(before.keys() | after.keys()):
        a, b = before.get(name), after.get(name)
        stats = sorted((a or {}).get("ratio", {}).keys() | (b or {}).get("ratio", {}).keys())
        judged = (a or {}).get("target", {}).keys() | (b or {}).get("target", {}).keys()
        for stat in stats:
            x = a["ratio"].get(stat) if a else None
            y = b["ratio"].get(stat) if b else None
            if x is not None and y is not None and stat not in judged:
                verdict = "not judged"
            elif x is None:
                verdict = "new"
            elif y is None:
                verdict = "gone"
            elif y > x * (limit := threshold if stat == "p50" else tail_threshold):
                verdict = "regression"
            elif y * limit < x:
                verdict = "better"
            else:
                verdict = "same"
            changes.append(Change(name, stat, x, y, verdict))
    return changes


def figure(value: float) -> str:
    """A figure for a table: 3 significant digits (whole numbers from 100), M or k for
    large ones (rates)."""
    value, suffix = (value / 1e6, " M") if value >= 1e6 else (value / 1e3, " k") \
        if value >= 1e4 else (value, "")  # fmt: skip
    return (f"{value:,.0f}" if value >= 100 else f"{value:.3g}") + suffix


def markdown(doc: dict[str, Any]) -> str:
    """A run as the Markdown table of docs/performance.md: the machine it ran on, then per
    case ours and its floor (latencies at p50 / p90 / p99 / p99.9, rates at the median
    round), the cost ratio at p50 and p99 (rounds: with p10 and p90) and the target."""
    m = doc["machine"]
    v = m["versions"]
    lines = [
        f"`tickwise bench{' --quick' if doc['quick'] else ''}`, {doc['created']}, commit "
        f"{m['commit'][:12]}: {m['cpu']}, {m['cores']} cores, Python {m['python']}, numba "
        f"{v.get('numba', '?')}, pyarrow {v.get('pyarrow', '?')}, pyzmq {v.get('pyzmq', '?')}; "
        "wall clock.",
        "",
        "| case | unit | ours | floor | cost ratio | target |",
        "|---|---|---|---|---|---|",
    ]
    for c in doc["cases"]:
        stats = LATENCY_STATS if c["kind"] == "latency" else ("p50",)
        stats = [k for k in stats if k in c["ours"] and k in c["floor"]]
        if c["kind"] == "latency":
            ratio = ", ".join(f"{c['ratio'][k]:.2f}x" for k in ("p50", "p99") if k in c["ratio"])
        else:
            spread = [f"{k} {c['ratio'][k]:.2f}" for k in ("p10", "p90") if k in c["ratio"]]
            ratio = f"{c['ratio']['p50']:.2f}x" + (f" ({', '.join(spread)})" if spread else "")
        target = ", ".join(f"{k} {t:g}x" for k, t in c["target"].items()) or "-"
        lines.append(
            f"| `{c['name']}` | {c['unit']} | {' / '.join(figure(c['ours'][k]) for k in stats)} "
            f"| {' / '.join(figure(c['floor'][k]) for k in stats)} | {ratio} | {target} |"
        )
    return "\n".join(lines) + "\n"
