"""What watching a live session costs it: the same session and feed with and without
`tickwise top` and a Prometheus scraper attached.

Each round runs `tickwise feed synth` (4 instruments, each quote sent as it is due) into a
live session in this process (`run_live`: mean_reversion, paper trading in process, every
guard, the journal and the control socket on), twice: bare (no metrics endpoint, nobody
asking), then watched: `--metrics` served and scraped once a second by another process
(Prometheus scrapes every 15 s by default: this is fifteen times harsher), and a real
`tickwise top` (Textual, headless, in another process) asking for the status four times a
second, as it does on a person's screen. Rounds alternate bare and watched, so that a
neighbour's load falls on both.

Two figures per run, from the session's own rings: the processing time of each compiled call
(the boundary's checks, the loop, orders out, the journal queued: `batch_us`), and each
message's time from the feed's send to its batch journaled (which also counts what the
session did between batches: answering `top`, building a scrape). The first 5 % of each
run's samples are left out. Run: `python benchmarks/cockpit.py [--quick]`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from tickwise.engine.live.control import request
from tickwise.engine.live.runner import run_live
from tickwise.feeds.synth import make_instruments

try:
    from .harness import percentiles
    from .sustained import INSTRUMENTS, PARAMS, STRATEGY, _feed
except ImportError:  # run as a script
    from harness import percentiles  # type: ignore[no-redef]
    from sustained import INSTRUMENTS, PARAMS, STRATEGY, _feed  # type: ignore[no-redef]

RATE = 5_000.0  # quotes per second, one per message
SCRAPE_EVERY_S = 1.0
TOP_REFRESH_S = 0.25
SKIP_SHARE = 0.05  # of each run's samples, the first left out (connections, first scrape)

# A scraper: GET the metrics every SCRAPE_EVERY_S until killed (it says how many it made).
SCRAPER = """
import sys, time, urllib.request
url, every = sys.argv[1], float(sys.argv[2])
n = 0
while True:
    with urllib.request.urlopen(url, timeout=10) as reply:
        assert reply.status == 200 and reply.read()
    n += 1
    print(n, flush=True)
    time.sleep(every)
"""

# `tickwise top`, headless: the real view, asking for the status at its refresh.
TOP = """
import sys
from tickwise.cli.top import Link, top_app
top_app(Link(sys.argv[1]), "bench", float(sys.argv[2])).run(headless=True)
"""


def run_once(watched: bool, seconds: float) -> dict[str, Any]:
    """One session of `seconds` on the feed, bare or watched; its per-batch and per-message
    samples (µs) after the first SKIP_S, and how many scrapes and status answers it gave."""
    helpers: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp:
        feed, feed_ep = _feed(RATE, seconds, 1, "tcp://127.0.0.1:*", 0.0)

        def scrape(control: str) -> None:  # (once the session serves its control socket)
            url = request(control, {"cmd": "status"}, timeout_s=30)["metrics"]
            helpers.append(_scraper(url))

        def attach(control: str) -> None:
            if not watched:
                return
            threading.Thread(target=scrape, args=(control,), daemon=True).start()
            helpers.append(subprocess.Popen([sys.executable, "-c", TOP, control,
                                             str(TOP_REFRESH_S)], stdout=subprocess.DEVNULL,
                                            stderr=subprocess.PIPE, text=True))  # fmt: skip

        try:
            summary = run_live(
                STRATEGY, feed_ep, make_instruments(INSTRUMENTS), PARAMS,
                journal_dir=Path(tmp) / "journal", control="tcp://127.0.0.1:*",
                until_idle_s=1.0, on_ready=attach,
                metrics="127.0.0.1:0" if watched else None,
                log_stream=open(Path(tmp) / "events.log", "w"),  # noqa: SIM115
            )  # fmt: skip
        finally:
            scrapes = 0
            for proc in helpers:
                proc.terminate()
                out, _ = proc.communicate(timeout=30)
                if out and out.strip():
                    scrapes = int(out.split()[-1])
            for proc in (feed,):
                if proc.poll() is None:
                    proc.terminate()
                proc.communicate(timeout=30)
    return {
        "batch_us": _later_part(summary.batch_samples),
        "message_us": _later_part(summary.latency_samples), "scrapes": scrapes,
        "status_answers": summary.status_answers, "events": summary.events,
    }  # fmt: skip


def _scraper(url: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SCRAPER, url, str(SCRAPE_EVERY_S)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _later_part(samples: np.ndarray) -> np.ndarray:
    """The samples after the first SKIP_SHARE of them."""
    return samples[int(samples.size * SKIP_SHARE) :]


def measure(quick: bool, say: Any = print) -> dict[str, Any]:
    """Rounds of bare and watched runs, alternating; samples pooled per setup."""
    rounds, seconds = (1, 6.0) if quick else (3, 10.0)
    pooled: dict[str, dict[str, list[np.ndarray]]] = {
        setup: {"batch_us": [], "message_us": []} for setup in ("bare", "watched")
    }
    scrapes = answers = 0
    for r in range(rounds):
        for setup in ("bare", "watched"):
            began = time.monotonic()
            run = run_once(setup == "watched", seconds)
            for key in ("batch_us", "message_us"):
                pooled[setup][key].append(run[key])
            if setup == "watched":
                scrapes += run["scrapes"]
                answers += run["status_answers"]
            say(
                f"  round {r + 1}, {setup}: {run['events']:,} events, "
                f"{run['batch_us'].size:,} batches, {run['scrapes']} scrapes, "
                f"{run['status_answers']} status answers, {time.monotonic() - began:.1f} s"
            )
    out: dict[str, Any] = {"rate": RATE, "seconds": seconds, "rounds": rounds,
                           "scrapes": scrapes, "status_answers": answers}  # fmt: skip
    for setup, series in pooled.items():
        for key, parts in series.items():
            values = np.concatenate(parts)
            out[f"{setup}.{key}"] = percentiles(values * 1e3, scale=1e3) | {"n": int(values.size)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    r = measure(args.quick)
    for key in ("batch_us", "message_us"):
        bare, watched = r[f"bare.{key}"], r[f"watched.{key}"]
        print(f"{key}: bare p50 {bare['p50']:.1f} p99 {bare['p99']:.1f}; watched p50 "
              f"{watched['p50']:.1f} p99 {watched['p99']:.1f} (n {bare['n']:,} / "
              f"{watched['n']:,})")  # fmt: skip


if __name__ == "__main__":
    main()
