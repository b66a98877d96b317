"""`tickwise demo`: the synthetic market live, a paper exchange, a live session trading
through it, a flash crash the kill switch must catch, all on loopback, as separate
processes, with a view refreshed in place.

The demo says first what it runs: the strategy and its parameters, the market, the
exchange's models, when the crash comes and where the journal goes. It starts
`tickwise feed synth` (the crash injected halfway), `tickwise exchange` (matching with a
200 µs order latency and taker fees) and `tickwise live` (mean_reversion, orders to the
exchange, its journal and event log kept in the demo's folder). Each compiles what it runs
before it announces itself, and the feed starts its clock only once both its subscribers
are there: on a cold cache or a busy machine that takes a while, which the demo says as it
waits, so that no tick is late for compiling and the demo's seconds are all trading. It
offers `tickwise top` on the session (or is `top` itself, with `--top`), draws the session's
status four times a second, stops every process it started whatever happens, and prints
what the session did and how to read its journal.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from rich.live import Live
from rich.table import Table

from tickwise.engine.console import stderr, stdout
from tickwise.engine.errors import TickwiseError
from tickwise.engine.live.control import request

INSTRUMENTS = 3
RATE = 2_000.0  # market events per second, all instruments
STRATEGY = "mean_reversion"
PARAMS = {"qty": 100}  # (the rest: the strategy's defaults, shown at the start)
# The paper exchange's models: orders reach its matching 200 µs (+ up to 100 µs) after they
# leave, and pay a taker fee, as in a backtest configured the same way.
EXCHANGE_CONFIG = """\
[backtest]
order_latency_us = 200.0
latency_jitter_us = 100.0
taker_fee_bps = 0.5
maker_fee_bps = 0.1
"""
START_WAIT_S = 600.0  # the longest a process may take to compile and announce itself
SAY_EVERY_S = 10.0  # while waiting for them, how often the demo says it still is

# A view: (the session's control endpoint, the live process, seconds, crash at) -> the
# session's last status. The default draws a table; `tickwise demo --top` passes `top`.
View = Callable[[str, subprocess.Popen, float, float], dict[str, Any]]


def _tickwise() -> str:
    return str(Path(sys.executable).with_name("tickwise"))


def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    """Start a tickwise process, its stderr (event lines, errors) to `log`."""
    with log.open("w") as err:
        return subprocess.Popen([_tickwise(), *args], stdout=subprocess.PIPE, stderr=err,
                                text=True)  # fmt: skip


def _announced(proc: subprocess.Popen, what: str, log: Path) -> str:
    """The endpoint `proc` announces on its first line (once it has compiled what it runs)."""
    first = proc.stdout.readline() if proc.stdout else ""
    if " on tcp://" not in first:
        proc.kill()
        proc.wait(30)
        said = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise TickwiseError(f"{what} did not start: {first.strip()} {' | '.join(said)}".strip())
    return first.rsplit(" on ", 1)[1].strip()


class _Waiting:
    """Says on stderr, every SAY_EVERY_S, what the demo is still waiting for."""

    def __init__(self) -> None:
        self.began = time.monotonic()
        self.what = "the feed"
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._say, daemon=True)
        self._thread.start()

    def _say(self) -> None:
        while not self._done.wait(SAY_EVERY_S):
            so_far = time.monotonic() - self.began
            stderr.print(f"  ... still compiling and starting ({self.what}): {so_far:,.0f} s so "
                         "far", markup=False)  # fmt: skip

    def close(self) -> float:
        self._done.set()
        self._thread.join(5)
        return time.monotonic() - self.began


def describe(seconds: float, crash_at: float) -> str:
    """What the demo runs, in a few lines: strategy and parameters, market, exchange."""
    from tickwise.engine.strategy import load_strategy

    strategy = load_strategy(STRATEGY)
    params = strategy.resolve_params(PARAMS)
    shown = ", ".join(f"{k}={v}" for k, v in params.items())
    return (
        f"strategy: {STRATEGY} ({shown}): {(strategy.__doc__ or '').strip().splitlines()[0]}\n"
        f"market: {INSTRUMENTS} synthetic instruments, {RATE:,.0f} events/s, a flash crash "
        f"(-12 %) injected at {crash_at:g} s of {seconds:g} s\n"
        "exchange: the paper exchange, 200 µs order latency (+ up to 100 µs), taker fee "
        "0.5 bp, maker fee 0.1 bp"
    )


def _table(status: dict[str, Any], elapsed: float, seconds: float, crash_at: float) -> Table:
    params = status.get("params") or {}
    shown = ", ".join(f"{k}={v}" for k, v in params.items())
    table = Table(title=f"tickwise demo: {status.get('strategy', STRATEGY)} ({shown}), "
                  f"{elapsed:4.1f} / {seconds:g} s (flash crash injected at {crash_at:g} s)",
                  title_justify="left")  # fmt: skip
    table.add_column("what")
    table.add_column("value", justify="right")
    state = status.get("state", "?").upper()
    trip = status.get("halt_reason")
    lat = status.get("tick_to_order_us") or {}
    trip_us = status.get("round_trip_us") or {}
    rows = [
        ("trading state", state if state == "ACTIVE" else f"[bold red]{state}[/]"),
        ("kill switch", "armed, not tripped" if not trip else f"[bold red]TRIPPED: {trip}[/]"),
        ("PnL (price units)", f"{status.get('pnl', 0.0):,.2f}"),
        ("batches / events", f"{status.get('batches', 0):,} / {status.get('events', 0):,}"),
        ("orders sent / fills", f"{status.get('orders_sent', 0):,} / {status.get('fills', 0):,}"),
        ("orders per second (last 5 s)", f"{status.get('orders_per_s', 0.0):,.1f}"),
        ("open orders", f"{status.get('open_orders', 0):,}"),
        ("feed send -> order out, p50 / p99 (µs)",
         f"{lat['p50']:,.0f} / {lat['p99']:,.0f}" if lat else "-"),
        ("order -> exchange ack, p50 / p99 (µs)",
         f"{trip_us['p50']:,.0f} / {trip_us['p99']:,.0f}" if trip_us else "-"),
    ]  # fmt: skip
    for row in status.get("by_instrument") or []:
        if row["position"]:
            rows.append((f"position {row['symbol']} (avg price)",
                         f"{row['position']:,.4g} @ {row['avg_px']:,.2f}"))  # fmt: skip
    for name, value in rows:
        table.add_row(name, value)
    return table


def table_view(control: str, live: subprocess.Popen, seconds: float, crash_at: float
               ) -> dict[str, Any]:  # fmt: skip
    """The demo's own view: the session's status as a table, four times a second, until the
    session ends; its last status."""
    last: dict[str, Any] = {}
    began = time.monotonic()
    with Live(_table({}, 0.0, seconds, crash_at), console=stdout, refresh_per_second=4,
              transient=False) as view:  # fmt: skip
        while live.poll() is None and time.monotonic() - began < seconds + 30:
            try:
                reply = request(control, {"cmd": "status"}, timeout_s=2.0)
            except TickwiseError:
                break  # the session is ending
            if reply.get("ok"):
                last = reply
            view.update(_table(last, time.monotonic() - began, seconds, crash_at))
            time.sleep(0.25)
    return last


def run_demo(seconds: float = 20.0, folder: Path = Path("demo-data/live"),
             view: View = table_view) -> tuple[dict[str, Any], Path]:  # fmt: skip
    """Run the demo for `seconds`, keeping its journal and logs in a new folder of `folder`;
    returns the session's last status and that folder."""
    if not 6 <= seconds <= 3_600:
        raise TickwiseError(f"--seconds must be in 6..3600, got {seconds:g}")
    crash_at = round(seconds / 2, 1)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    here = Path(folder) / f"session-{stamp}"
    try:
        here.mkdir(parents=True, exist_ok=False)
    except OSError as exc:
        raise TickwiseError(f"cannot make the demo's folder {here}: {exc.strerror}") from None
    (here / "exchange.toml").write_text(EXCHANGE_CONFIG)
    journal = here / "journal"
    stdout.print(describe(seconds, crash_at), markup=False)
    stdout.print(f"journal and logs: {here}", markup=False)
    stdout.print("starting the feed, the paper exchange and the session; each compiles what it "
                 "runs first (on a first run, or a busy machine, this takes a while), and the "
                 "demo's clock starts once all three are ready", markup=False)  # fmt: skip
    processes: list[subprocess.Popen] = []
    last: dict[str, Any] = {}
    waiting = _Waiting()
    try:
        feed_log = here / "feed.log"
        feed = _spawn([
            "feed", "synth", "--bind", "tcp://127.0.0.1:*", "--rate", str(RATE),
            "--instruments", str(INSTRUMENTS), "--seconds", str(seconds), "--seed", "7",
            "--inject", f"crash:at={crash_at},drop_pct=12,down_s=1.5,recover_s=30",
            "--subscribers", "2",  # the exchange and the session both see it from the start
            "--wait", f"{START_WAIT_S:g}",  # they compile their loops first if no cache has them
        ], feed_log)  # fmt: skip
        processes.append(feed)
        feed_ep = _announced(feed, "the feed", feed_log)
        waiting.what = "the paper exchange"
        exchange_log = here / "exchange.log"
        exchange = _spawn([
            "exchange", "--bind", "tcp://127.0.0.1:*", "--feed", feed_ep,
            "--instruments", f"synth:{INSTRUMENTS}", "--config", str(here / "exchange.toml"),
        ], exchange_log)  # fmt: skip
        processes.append(exchange)
        gateway = _announced(exchange, "the paper exchange", exchange_log)
        waiting.what = "the live session"
        live_log = here / "live.log"
        live = _spawn([
            "live", "--strategy", STRATEGY, "--feed", feed_ep, "--gateway", gateway,
            "--instruments", f"synth:{INSTRUMENTS}",
            *(a for k, v in PARAMS.items() for a in ("--param", f"{k}={v}")),
            "--journal", str(journal), "--control", "tcp://127.0.0.1:*",
            "--seconds", str(seconds + 1.0), "--log-file", str(here / "events.log"),
        ], live_log)  # fmt: skip
        processes.append(live)
        control = _announced(live, "the live session", live_log)
        took = waiting.close()
        stdout.print(f"ready after {took:,.1f} s (wall clock); trading for {seconds:g} s. "
                     f"Watch it from another terminal too: tickwise top --control {control}",
                     markup=False)  # fmt: skip
        last = view(control, live, seconds, crash_at)
        _finish(live, 60)
        _finish(feed, 60)
        exchange.terminate()  # (it runs until told: the session it served is over)
        _finish(exchange, 60)
    finally:
        waiting.close()
        for proc in processes:  # every process started is stopped, whatever happened
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
            for stream in (proc.stdout,):
                _close(stream)
    return last, here


def _finish(proc: subprocess.Popen, timeout_s: float) -> None:
    try:
        proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=10)


def _close(stream: IO[str] | None) -> None:
    if stream is not None and not stream.closed:
        stream.close()
