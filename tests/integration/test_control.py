"""A person steps in on a running session through its control socket: `tickwise status`,
`tickwise kill` and `tickwise resume --confirm` against a real session process on 127.0.0.1.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

from tickwise.engine.control import ControlServer, CurveKeys, is_loopback, request
from tickwise.engine.errors import TickwiseError
from tickwise.engine.session import Session
from tickwise.engine.strategy import load_strategy

from ..conftest import make_synth, simple_instruments

TICKWISE = str(Path(sys.executable).with_name("tickwise"))

# A session over a history, batch by batch, answering control requests between batches (as
# the live engine does), and counting orders that left while it was not ACTIVE.
HOST = r"""
import sys, time
from pathlib import Path
import numpy as np
from tickwise.engine.control import ControlServer
from tickwise.engine.limits import RiskLimits
from tickwise.engine.session import Session
from tickwise.engine.strategy import load_strategy
from tickwise.feeds.history import open_history
history = open_history(Path(sys.argv[1]))
session = Session(load_strategy("mean_reversion"), history.instruments,
                  {"window": 20, "entry_z": 1.0, "qty": 100.0}, risk=RiskLimits.off())
session.warm_up(("quotes",))
left_while_halted = 0
server = ControlServer(session, "tcp://127.0.0.1:*",
                       extra_status=lambda: {"left_while_halted": left_while_halted})
print(server.endpoint, flush=True)
deadline = time.monotonic() + 120
for batch in history.batches(50):  # small batches, a pause between: a live session's pace
    halted = session.status()["halted"]
    result = session.on_batch("quotes", batch)
    if halted:
        left_while_halted += int(np.count_nonzero(result.orders["status"] == 0))
    server.serve(5)
    if time.monotonic() > deadline:
        break
while time.monotonic() < deadline:  # the history is over: still there for the person
    server.serve(100)
"""


def control(endpoint: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([TICKWISE, *args, "--control", endpoint, "--timeout", "30"],
                          capture_output=True, text=True, timeout=90)  # fmt: skip


def status(endpoint: str) -> dict:
    done = control(endpoint, "status", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_status_kill_and_resume_through_the_command_line(tmp_path: Path) -> None:
    # 8,000 small batches with a pause between: the session runs on long after the test's
    # commands, however slowly their processes start.
    data = make_synth(tmp_path / "q.parquet", kind="quotes", rows=400_000, instruments=3, seed=3)
    host = subprocess.Popen([sys.executable, "-c", HOST, str(data)], stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        endpoint = host.stdout.readline().strip()
        assert endpoint.startswith("tcp://127.0.0.1:")
        before = status(endpoint)
        assert (before["state"], before["halted"], before["halt_reason"]) == ("active", False, None)

        done = control(endpoint, "kill", "--reason", "fat finger")
        assert done.returncode == 0, done.stderr
        assert "HALTED" in done.stdout
        assert "fat finger" in done.stdout
        halted = status(endpoint)
        assert (halted["state"], halted["halt_reason"], halted["reason"]) == (
            "halted", "manual", "fat finger")  # fmt: skip
        assert halted["open_orders"] == 0  # resting orders cancelled at once
        time.sleep(0.5)  # the session runs on, halted, batch after batch
        later = status(endpoint)
        assert later["events"] > halted["events"]
        assert later["left_while_halted"] == 0  # no automated order left

        refused = control(endpoint, "resume")
        assert refused.returncode != 0
        assert "--confirm" in refused.stderr
        assert status(endpoint)["state"] == "halted"

        done = control(endpoint, "resume", "--confirm")
        assert done.returncode == 0, done.stderr
        assert status(endpoint)["state"] == "active"

        unknown = control(endpoint, "kill", "--instrument", "NOPE")
        assert unknown.returncode != 0
        assert "no instrument 'NOPE'" in unknown.stderr
    finally:
        host.kill()
        host.wait(timeout=30)


def test_a_command_to_no_session_says_so_in_one_line() -> None:
    done = subprocess.run([TICKWISE, "status", "--control", "tcp://127.0.0.1:9", "--timeout",
                           "0.5"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode != 0
    assert "no answer from the session's control socket" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("endpoint", "local"),
    [("tcp://127.0.0.1:5560", True), ("tcp://[::1]:5560", True), ("ipc:///tmp/x", True),
     ("tcp://localhost:1", True), ("tcp://0.0.0.0:5560", False), ("tcp://10.1.2.3:5560", False),
     ("tcp://eth0:5560", False), ("pgm://x", False)],
)  # fmt: skip
def test_which_endpoints_are_loopback(endpoint: str, local: bool) -> None:
    assert is_loopback(endpoint) is local


def test_off_loopback_only_with_curve_keys_and_only_for_clients_that_know_the_key() -> None:
    session = Session(load_strategy("mean_reversion"), simple_instruments(2))
    with pytest.raises(TickwiseError, match="loopback only unless CurveZMQ keys"):
        ControlServer(session, "tcp://0.0.0.0:*")
    keys = CurveKeys.generate()
    server = ControlServer(session, "tcp://0.0.0.0:*", keys=keys)
    port = server.endpoint.rsplit(":", 1)[1]
    try:
        # The server answers from a thread of its own here (the test is its only client).
        import threading

        stop = threading.Event()

        def serve() -> None:
            while not stop.is_set():
                server.serve(20)

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            reply = request(f"tcp://127.0.0.1:{port}", {"cmd": "status"}, timeout_s=10,
                            server_key=keys.public)  # fmt: skip
            assert reply["ok"]
            assert reply["state"] == "active"
            with pytest.raises(TickwiseError, match="no answer"):
                request(f"tcp://127.0.0.1:{port}", {"cmd": "status"}, timeout_s=0.5)  # no key
        finally:
            stop.set()
            thread.join(timeout=10)
    finally:
        server.close()


def test_bad_requests_get_errors_never_exceptions() -> None:
    session = Session(load_strategy("mean_reversion"), simple_instruments(2))
    server = ControlServer(session, "inproc://control-test", context=zmq.Context.instance())
    try:
        assert "JSON object" in server.handle(b"not json")["error"]
        assert "JSON object" in server.handle(b"[1, 2]")["error"]
        assert "unknown command 'sell'" in server.handle(b'{"cmd": "sell"}')["error"]
        assert "confirm" in server.handle(b'{"cmd": "resume"}')["error"]
        bad_state = server.handle(b'{"cmd": "kill", "state": "active"}')
        assert not bad_state["ok"]
        assert server.handle(b'{"cmd": "status"}')["state"] == "active"
    finally:
        server.close()
