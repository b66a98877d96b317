"""The paper exchange between real processes on 127.0.0.1: feed -> engine -> exchange ->
fills, with the same orders as a backtest of the same events; a lost exchange and reports
that do not fit trip the kill switch; a person's kill cancels the orders resting at the
exchange; the exchange cancels the orders of a client gone silent; a session SIGKILLed
replays from its journal into the positions it last reported."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from tickwise.backtest.replay import run_backtest
from tickwise.engine.config import load_config
from tickwise.engine.live.journal import replay_journal
from tickwise.engine.schemas import (
    ORD_LIMIT,
    ORDER_DTYPE,
    QUOTE_DTYPE,
    REASON_CLIENT_GONE,
    STATUS_ACKED,
    STATUS_CANCEL_SENT,
    STATUS_CANCELLED,
    STATUS_NEW,
    TIF_GTC,
)
from tickwise.feeds import wire

from ..conftest import simple_instruments, write_rows
from .processes import TICKWISE, WAIT, spawn, stop

RESTING = str(Path(__file__).parents[1] / "resting.py") + ":Resting"
PARAMS = ["--param", "window=30", "--param", "entry_z=1.0", "--param", "qty=100"]
CONFIG = """
[backtest]
feed_latency_us = 50.0
order_latency_us = 150.0
latency_jitter_us = 50.0
taker_fee_bps = 0.5
"""


def status(control: str) -> dict:
    done = subprocess.run([TICKWISE, "status", "--json", "--control", control, "--timeout", "30"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def wait_until(control: str, check, deadline_s: float = 60.0) -> dict:
    """The session's status once `check(status)` holds (or the last one at the deadline)."""
    deadline = time.monotonic() + deadline_s
    while True:
        state = status(control)
        if check(state) or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


@pytest.fixture(scope="module")
def deep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Quotes of 3 instruments, a random walk of whole ticks, a million units on each side:
    a market order of this test's size fills whole whenever it reaches the market."""
    rows, n = 2_400, 3
    rng = np.random.default_rng(5)
    q = np.zeros(rows, QUOTE_DTYPE)
    q["ts_event"] = 1_700_000_000_000_000_000 + np.arange(rows) * 2_000_000  # 2 ms apart
    q["ts_recv"] = q["ts_event"]
    q["instrument"] = np.arange(rows) % n
    q["seq"] = np.arange(rows) // n + 1
    steps = rng.choice([-1, 0, 1], size=rows)
    for i in range(n):
        mine = q["instrument"] == i
        ticks = 10_000 + np.cumsum(steps[mine])
        q["bid_px"][mine] = np.round(ticks * 0.01, 2)
        q["ask_px"][mine] = np.round((ticks + 1) * 0.01, 2)
    q["bid_sz"] = q["ask_sz"] = 1e6
    return write_rows(tmp_path_factory.mktemp("deep") / "q.parquet", "quotes", q,
                      simple_instruments(n))  # fmt: skip


def replayed_to_an_exchange(tmp_path: Path, history: Path) -> tuple:
    """`feed replay` of `history` (waiting for an exchange and a session) and `tickwise
    exchange` on it, with CONFIG's models: (config file, feed, its endpoint, exchange, its
    endpoint)."""
    config = tmp_path / "session.toml"
    config.write_text(CONFIG)
    feed, feed_ep = spawn("feed", "replay", str(history), "--bind", "tcp://127.0.0.1:*",
                          "--speed", "4", "--subscribers", "2", *WAIT)  # fmt: skip
    exchange, gateway = spawn("exchange", "--bind", "tcp://127.0.0.1:*", "--feed", feed_ep,
                              "--instruments", str(history), "--config", str(config))  # fmt: skip
    return config, feed, feed_ep, exchange, gateway


def test_feed_engine_exchange_fills_every_order_the_backtest_sends(
    tmp_path: Path, deep: Path
) -> None:
    config, feed, feed_ep, exchange, gateway = replayed_to_an_exchange(tmp_path, deep)
    try:
        live = subprocess.run(
            [TICKWISE, "live", "--strategy", "mean_reversion", "--feed", feed_ep, "--gateway",
             gateway, "--instruments", str(deep), *PARAMS, "--config", str(config),
             "--journal", str(tmp_path / "journal"), "--control", "tcp://127.0.0.1:*",
             "--until-idle", "2"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    finally:
        stop(feed, exchange)
    assert live.returncode == 0, live.stderr
    journal = replay_journal(tmp_path / "journal")
    sent = journal.orders[journal.orders["status"] == STATUS_NEW]
    acked = journal.orders[journal.orders["status"] == STATUS_ACKED]
    # Parity: the same events through the backtest give the same orders, in the same order.
    cfg, _ = load_config(config)
    params = {"window": 30, "entry_z": 1.0, "qty": 100.0}
    bt = run_backtest("mean_reversion", deep, params, cfg)
    expected = bt.orders[bt.orders["status"] == STATUS_NEW]
    assert len(expected) > 20
    for name in ("id", "instrument", "side", "qty", "order_type", "tif"):
        assert np.array_equal(sent[name], expected[name]), name
    # Each was acknowledged once, filled whole by the exchange, and the session booked it.
    assert np.array_equal(np.sort(acked["id"]), np.sort(sent["id"]))
    fills = journal.fills
    assert np.array_equal(np.sort(fills["order_id"]), np.sort(sent["id"]))
    assert np.allclose(fills["qty"], 100.0)
    assert (fills["fee"] > 0).all()  # the exchange's taker fee
    assert "not tripped" in live.stdout
    positions = {sym: p["qty"] for sym, p in journal.summary()["positions"].items()}
    expected_pos = {inst.symbol: float(bt.session.ctx.portfolio[inst.id]["lots"] * inst.lot_size)
                    for inst in bt.history.instruments}  # fmt: skip
    assert {s: q for s, q in positions.items()} == {s: expected_pos[s] for s in positions}


def test_a_kill_cancels_the_orders_resting_at_the_exchange(tmp_path: Path) -> None:
    feed, feed_ep = spawn("feed", "synth", "--bind", "tcp://127.0.0.1:*", "--rate", "500",
                          "--instruments", "3", "--subscribers", "2", *WAIT)  # fmt: skip
    exchange, gateway = spawn("exchange", "--bind", "tcp://127.0.0.1:*", "--feed", feed_ep,
                              "--instruments", "synth:3")  # fmt: skip
    live, control = spawn("live", "--strategy", RESTING, "--feed", feed_ep, "--gateway", gateway,
                          "--instruments", "synth:3", "--journal", str(tmp_path / "journal"),
                          "--control", "tcp://127.0.0.1:*")  # fmt: skip
    try:
        resting = wait_until(control, lambda s: s["open_orders"] == 3 and s["fills"] == 0)
        assert resting["open_orders"] == 3, resting
        killed = subprocess.run(
            [TICKWISE, "kill", "--reason", "test", "--control", control, "--timeout", "30"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert killed.returncode == 0, killed.stderr
        # The cancels went to the exchange; the orders are gone once it says so.
        after = wait_until(control, lambda s: s["open_orders"] == 0)
        assert (after["state"], after["halt_reason"], after["open_orders"]) == (
            "halted", "manual", 0)  # fmt: skip
        assert after["gateway"]["mismatches"] == 0
    finally:
        stop(live, feed, exchange)
    orders = replay_journal(tmp_path / "journal").orders
    status = orders["status"]
    assert np.count_nonzero(status == STATUS_NEW) == 3
    assert np.count_nonzero(status == STATUS_CANCEL_SENT) == 3  # asked ...
    assert np.count_nonzero(status == STATUS_CANCELLED) == 3  # ... and confirmed by the exchange


def test_a_lost_exchange_trips_the_kill_switch(tmp_path: Path) -> None:
    config = tmp_path / "session.toml"
    config.write_text("[killswitch]\ngateway_timeout_ms = 500.0\n")
    feed, feed_ep = spawn("feed", "synth", "--bind", "tcp://127.0.0.1:*", "--rate", "500",
                          "--instruments", "3", "--subscribers", "2", *WAIT)  # fmt: skip
    exchange, gateway = spawn("exchange", "--bind", "tcp://127.0.0.1:*", "--feed", feed_ep,
                              "--instruments", "synth:3")  # fmt: skip
    live, control = spawn("live", "--strategy", RESTING, "--feed", feed_ep, "--gateway", gateway,
                          "--instruments", "synth:3", "--config", str(config), "--journal",
                          str(tmp_path / "journal"), "--control", "tcp://127.0.0.1:*")  # fmt: skip
    try:
        before = wait_until(control, lambda s: s["open_orders"] == 3)
        assert not before["halted"], before
        exchange.send_signal(signal.SIGKILL)  # gone: no reply, no heartbeat
        state = wait_until(control, lambda s: s["halted"])
        assert state["halt_reason"] == "gateway_lost", state
        assert state["halt_limit"] == 500.0
        assert state["halt_value"] > 500.0
        # The exchange is still gone: a person's resume is refused, and nothing is sent to it.
        sent = status(control)["gateway"]["requests"]
        refused = subprocess.run([TICKWISE, "resume", "--confirm", "--control", control,
                                  "--timeout", "30"], capture_output=True, text=True,
                                 timeout=60)  # fmt: skip
        assert refused.returncode != 0
        assert "the exchange has been silent for" in refused.stderr
        time.sleep(0.5)  # (the strategy would have sent its orders again by now)
        later = status(control)
        assert later["halted"]
        assert later["gateway"]["requests"] == sent
    finally:
        stop(live, feed, exchange)
    events = replay_journal(tmp_path / "journal").events
    changes = [json.loads(e["detail"]) for e in events if e["what"] == "transition"]
    first = changes[0]
    assert (first["scope"], first["to"], first["trigger"]) == ("session", "halted", "gateway_lost")
    refusals = [json.loads(e["detail"]) for e in events if e["what"] == "resume_refused"]
    assert len(refusals) == 1
    assert "the exchange has been silent" in refusals[0]["error"]


def test_reports_that_do_not_fit_what_was_sent_trip_the_kill_switch(tmp_path: Path) -> None:
    """The test plays the exchange: it acknowledges the first request correctly, then reports
    a fill of an order the session never sent."""
    feed, feed_ep = spawn("feed", "synth", "--bind", "tcp://127.0.0.1:*", "--rate", "500",
                          "--instruments", "3", *WAIT)  # fmt: skip
    with zmq.Context() as ctx, ctx.socket(zmq.ROUTER) as fake:
        port = fake.bind_to_random_port("tcp://127.0.0.1")
        live, control = spawn(
            "live", "--strategy", RESTING, "--feed", feed_ep, "--gateway",
            f"tcp://127.0.0.1:{port}", "--instruments", "synth:3", "--journal",
            str(tmp_path / "journal"), "--control", "tcp://127.0.0.1:*",
        )  # fmt: skip
        try:
            seq = 0
            deadline = time.monotonic() + 120
            identity = None
            while time.monotonic() < deadline:
                if not fake.poll(100):
                    continue
                identity, head, body = fake.recv_multipart()
                request = wire.decode([head, body])
                if not request.is_heartbeat:
                    break
            assert identity is not None
            assert not request.is_heartbeat
            seq += 1
            acks = {n: request.columns[n] for n in ORDER_DTYPE.names}
            acks["status"] = np.full(request.rows, STATUS_ACKED, np.int8)
            fake.send_multipart(
                [identity, *wire.encode("orders", acks, seq, flags=wire.FLAG_REPLY)]
            )
            stranger = np.zeros(1, wire.DTYPES["fills"])
            stranger["order_id"], stranger["qty"], stranger["price"] = 999_999, 1.0, 100.0
            stranger["side"] = 1  # (a fill that could be real, of an order never sent)
            seq += 1
            columns = {n: stranger[n] for n in stranger.dtype.names}
            fake.send_multipart([identity, *wire.encode("fills", columns, seq)])
            state = wait_until(control, lambda s: s["halted"])
            assert state["halt_reason"] == "reconcile", state
            assert state["halt_value"] == 999_999.0  # the order id that did not fit
        finally:
            stop(live, feed)
    events = replay_journal(tmp_path / "journal").events
    mismatch = [e for e in events if e["what"] == "reconcile"]
    assert mismatch
    assert json.loads(mismatch[0]["detail"])["ids"] == [999_999]


def test_the_exchange_cancels_the_orders_of_a_client_gone_silent() -> None:
    """The test is the client: it rests an order, then says nothing; the exchange cancels
    the order (client_gone) and tells it so."""
    feed, feed_ep = spawn("feed", "synth", "--bind", "tcp://127.0.0.1:*", "--rate", "200",
                          "--instruments", "2", *WAIT)  # fmt: skip
    exchange, gateway = spawn("exchange", "--bind", "tcp://127.0.0.1:*", "--feed", feed_ep,
                              "--instruments", "synth:2", "--client-timeout-ms", "300")  # fmt: skip
    try:
        with zmq.Context() as ctx, ctx.socket(zmq.DEALER) as client:
            client.connect(gateway)
            order = np.zeros(1, ORDER_DTYPE)
            order["id"], order["instrument"], order["side"] = 7, 0, 1
            order["price"], order["qty"], order["order_type"], order["tif"] = (
                1.0,
                1.0,
                ORD_LIMIT,
                TIF_GTC,
            )
            order["ts"] = time.time_ns()
            client.send_multipart(list(wire.encode("orders", {n: order[n] for n in
                                                              ORDER_DTYPE.names}, 1)))  # fmt: skip
            heard = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # (silent: no heartbeat from here on)
                if not client.poll(100):
                    continue
                message = wire.decode(client.recv_multipart())
                if message.schema == "orders":
                    c = message.columns
                    heard.append((int(c["status"][0]), int(c["reason"][0]), bool(message.flags)))
                    if message.columns["status"][0] == STATUS_CANCELLED:
                        break
        assert heard == [(STATUS_ACKED, 0, True), (STATUS_CANCELLED, REASON_CLIENT_GONE, False)]
        exchange.send_signal(signal.SIGINT)
        out, err = exchange.communicate(timeout=60)
    finally:
        stop(exchange, feed)
    assert exchange.returncode == 0, err
    assert "orders cancelled on a client's disconnect" in out


def test_a_session_killed_with_sigkill_replays_into_the_positions_it_reported(
    tmp_path: Path, deep: Path
) -> None:
    config, feed, feed_ep, exchange, gateway = replayed_to_an_exchange(tmp_path, deep)
    live, control = spawn("live", "--strategy", "mean_reversion", "--feed", feed_ep, "--gateway",
                          gateway, "--instruments", str(deep), *PARAMS, "--config", str(config),
                          "--journal", str(tmp_path / "journal"), "--control",
                          "tcp://127.0.0.1:*")  # fmt: skip
    try:
        feed.communicate(timeout=120)  # the whole history went out
        seen: list[dict] = []

        def settled(state: dict) -> bool:  # nothing working, nothing new for a second
            seen.append(state)
            return (len(seen) > 5 and state["open_orders"] == 0
                    and state["events"] == seen[-6]["events"] and state["fills"] > 0)  # fmt: skip

        state = wait_until(control, settled)
        assert settled(state), state
        live.send_signal(signal.SIGKILL)
        live.wait(timeout=30)
    finally:
        stop(live, exchange)
    assert live.returncode == -signal.SIGKILL
    replayed = replay_journal(tmp_path / "journal").summary()
    positions = {sym: p["qty"] for sym, p in replayed["positions"].items() if p["qty"] != 0.0}
    reported = {sym: qty for sym, qty in state["positions"].items() if qty != 0.0}
    assert positions == reported
    assert replayed["fills"] == state["fills"]
