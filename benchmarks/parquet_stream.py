"""Streaming a Parquet history: tickwise's reader against a bare pyarrow loop over the same file.

Both read the same file with the same batch size in the same process, taking
turns, so machine noise hits both alike; the figure that matters is the
ratio of their throughputs. Peak memory is measured in a fresh child process
per reader (its maximum resident set size, from the kernel).

Run as a script: `python benchmarks/parquet_stream.py --rows 20000000` prints
the table; `--peak-rss MODE PATH` is the child-process entry point.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from tickwise.feeds.history import columns, open_history

try:
    from .data import quotes_file
except ImportError:  # run as a script
    from data import quotes_file  # type: ignore[no-redef]

BATCH_ROWS = 65_536


def read_bare(path: Path, batch_size: int = BATCH_ROWS, pre_buffer: bool = True) -> int:
    """The floor: pyarrow decoding the file batch by batch, nothing else (pyarrow's
    defaults; `pre_buffer=False` is the setting tickwise reads with)."""
    rows = 0
    for batch in pq.ParquetFile(path, pre_buffer=pre_buffer).iter_batches(batch_size=batch_size):
        rows += batch.num_rows
    return rows


def read_bare_unbuffered(path: Path, batch_size: int = BATCH_ROWS) -> int:
    """The floor with pre-buffering off, as tickwise reads."""
    return read_bare(path, batch_size, pre_buffer=False)


def read_tickwise(path: Path, batch_size: int = BATCH_ROWS) -> int:
    """tickwise: decode, validate every row, global order, zero-copy column views per batch."""
    rows = 0
    for batch in open_history(path).batches(batch_size):
        columns(batch)
        rows += batch.num_rows
    return rows


READERS = {
    "bare": read_bare,
    "bare_unbuffered": read_bare_unbuffered,
    "tickwise": read_tickwise,
}


def interleaved(path: Path, rounds: int, batch_size: int = BATCH_ROWS) -> dict:
    """Wall-clock seconds of each reader, taking turns every round, after one warm-up each."""
    times: dict[str, list[float]] = {name: [] for name in READERS}
    rows = 0
    for reader in READERS.values():  # warm-up: numba caches, page cache
        rows = reader(path, batch_size)
    for _ in range(rounds):
        for name, reader in READERS.items():
            t0 = time.perf_counter()
            reader(path, batch_size)
            times[name].append(time.perf_counter() - t0)
    out: dict = {"rows": rows, "batch_rows": batch_size, "rounds": rounds}
    ours = np.array(times["tickwise"])
    for name, seconds in times.items():
        out[f"{name}_s"] = seconds
        out[f"{name}_rows_per_s_p50"] = rows / float(np.median(seconds))
        if name != "tickwise":
            ratios = np.array(seconds) / ours  # tickwise throughput relative to this floor
            out[f"ratio_vs_{name}"] = {
                "p10": float(np.percentile(ratios, 10)),
                "p50": float(np.median(ratios)),
                "p90": float(np.percentile(ratios, 90)),
            }
    return out


def peak_rss_mib(mode: str, path: Path) -> float:
    """Peak resident memory (MiB) of a fresh process that streams the file with `mode`."""
    done = subprocess.run(
        [sys.executable, __file__, "--peak-rss", mode, str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return json.loads(done.stdout)["peak_rss_mib"]


def _child(mode: str, path: Path) -> None:
    if mode != "none":
        READERS[mode](path)
    print(json.dumps({"peak_rss_mib": _high_water_kib() / 1024}))


def _high_water_kib() -> int:
    # VmHWM is this process image's own peak; getrusage's ru_maxrss would also count
    # the parent's peak, which a child inherits across fork and exec.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def report(rows: int, rounds: int) -> dict:
    """Throughput ratio and peak memory for a `rows`-row quotes file."""
    path = quotes_file(rows)
    result = interleaved(path, rounds)
    result["file_mib"] = path.stat().st_size / 2**20
    for mode in ("none", *READERS):
        result[f"peak_rss_mib_{mode}"] = peak_rss_mib(mode, path)
    return result


def print_report(r: dict) -> None:
    print(
        f"streaming read of {r['rows']:,} quote rows ({r['file_mib']:.0f} MiB Parquet), "
        f"batches of {r['batch_rows']:,} rows, {r['rounds']} rounds taking turns, wall clock"
    )
    labels = {
        "bare": "bare pyarrow iter_batches (defaults)",
        "bare_unbuffered": "bare pyarrow iter_batches (pre_buffer=False)",
        "tickwise": "tickwise open_history().batches()",
    }
    for name, label in labels.items():
        print(f"  {label:45s}: {r[f'{name}_rows_per_s_p50'] / 1e6:6.1f} M rows/s (p50)")
    for name in ("bare", "bare_unbuffered"):
        q = r[f"ratio_vs_{name}"]
        print(
            f"  ratio tickwise / {labels[name]:28s}: p10 {q['p10']:.2f}  p50 {q['p50']:.2f}  "
            f"p90 {q['p90']:.2f}  (target >= 0.80)"
        )
    print(
        "  peak RSS of a fresh process streaming the file (VmHWM): "
        + ", ".join(f"{m} {r[f'peak_rss_mib_{m}']:.0f} MiB" for m in ("none", *READERS))
        + "  (target < 1024 MiB; 'none' = interpreter and imports)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--peak-rss", nargs=2, metavar=("MODE", "PATH"))
    args = parser.parse_args()
    if args.peak_rss:
        _child(args.peak_rss[0], Path(args.peak_rss[1]))
    else:
        print_report(report(args.rows, args.rounds))
