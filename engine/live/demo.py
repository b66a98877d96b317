"""`tickwise demo`: the synthetic market live, a paper exchange, a live session trading
through it, a flash crash the kill switch must catch, all on loopback, as separate
processes, with a view refreshed in place.

The demo starts `tickwise feed synth` (with a crash injected halfway),
`tickwise exchange` (matching with a 200 µs order latency and taker fees)
and `tickwise live` (mean_reversion, orders to the exchange, its journal in
a temporary folder), asks the session's control socket for its status four
times a second, and draws it. It stops every process it started, whatever
happens, then prints what the session did and what the kill switch saw.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.live import Live
from rich.table import Table

from tickwise.engine.console import stdout
from tickwise.engine.errors import TickwiseError
from tickwise.engine.live.control import request

INSTRUMENTS = 3
RATE = 2_000.0  # market events per second, all instruments
# The paper exchange's models: orders reach its matching 200 µs (+ up to 100 µs) after they
# leave, and pay a taker fee, as in a backtest configured the same way.
EXCHANGE_CONFIG = """\
[backtest]
order_latency_us = 200.0
latency_jitter_us = 100.0
taker_fee_bps = 0.5
maker_fee_bps = 0.1
"""


def _tickwise() -> str:
    return str(Path(sys.executable).with_name("tickwise"))


def _spawn(args: list[str]) -> tuple[subprocess.Popen, str]:
    """Start a tickwise process and read the endpoint it announces on its first line."""
    proc = subprocess.Popen([_tickwise(), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    first = proc.stdout.readline() if proc.stdout else ""
    if " on tcp://" not in first:
        proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
        raise TickwiseError(f"`tickwise {args[0]}` did not start: {first.strip()} {err.strip()}")
    return proc, first.rsplit(" on ", 1)[1].strip()


def _view(status: dict[str, Any], elapsed: float, seconds: float, crash_at: float) -> Table:
    table = Table(title=f"tickwise demo: live session, {elapsed:4.1f} / {seconds:g} s "
                  f"(flash crash injected at {crash_at:g} s)", title_justify="left")  # fmt: skip
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
    rows += [(f"position {s}", f"{q:,.4g}") for s, q in (status.get("positions") or {}).items()]
    for name, value in rows:
        table.add_row(name, value)
    return table


def run_demo(seconds: float = 20.0) -> dict[str, Any]:
    """Run the demo for `seconds`; returns the session's last status."""
    if not 6 <= seconds <= 3_600:
        raise TickwiseError(f"--seconds must be in 6..3600, got {seconds:g}")
    crash_at = round(seconds / 2, 1)
    processes: list[subprocess.Popen] = []
    last: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="tickwise-demo-") as tmp:
        config = Path(tmp) / "exchange.toml"
        config.write_text(EXCHANGE_CONFIG)
        try:
            feed, feed_ep = _spawn([
                "feed", "synth", "--bind", "tcp://127.0.0.1:*", "--rate", str(RATE),
                "--instruments", str(INSTRUMENTS), "--seconds", str(seconds), "--seed", "7",
                "--inject", f"crash:at={crash_at},drop_pct=12,down_s=1.5,recover_s=30",
                "--subscribers", "2",  # the exchange and the session both see it from the start
                "--wait", "300",  # they compile their loops first if no cache has them
            ])  # fmt: skip
            processes.append(feed)
            exchange, gateway = _spawn([
                "exchange", "--bind", "tcp://127.0.0.1:*", "--feed", feed_ep,
                "--instruments", f"synth:{INSTRUMENTS}", "--config", str(config),
            ])  # fmt: skip
            processes.append(exchange)
            live, control = _spawn([
                "live", "--strategy", "mean_reversion", "--feed", feed_ep, "--gateway", gateway,
                "--instruments", f"synth:{INSTRUMENTS}", "--param", "qty=100",
                "--journal", str(Path(tmp) / "journal"), "--control", "tcp://127.0.0.1:*",
                "--seconds", str(seconds + 1.0),
            ])  # fmt: skip
            processes.append(live)
            began = time.monotonic()
            with Live(_view({}, 0.0, seconds, crash_at), console=stdout,
                      refresh_per_second=4, transient=False) as view:  # fmt: skip
                while live.poll() is None and time.monotonic() - began < seconds + 30:
                    try:
                        reply = request(control, {"cmd": "status"}, timeout_s=2.0)
                    except TickwiseError:
                        break  # the session is ending
                    if reply.get("ok"):
                        last = reply
                    view.update(_view(last, time.monotonic() - began, seconds, crash_at))
                    time.sleep(0.25)
            live.communicate(timeout=60)
            feed.communicate(timeout=60)
            exchange.terminate()  # (it runs until told: the session it served is over)
            exchange.communicate(timeout=60)
        finally:
            for proc in processes:  # every process started is stopped, whatever happened
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(timeout=10)
    return last
