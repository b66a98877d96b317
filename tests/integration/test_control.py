"""A person steps in on a running session through its control socket: `tickwise status`,
`tickwise kill` and `tickwise resume --confirm` against a real session process on 127.0.0.1.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq

from tickwise import load_strategy
from tickwise.engine.errors import TickwiseError
from tickwise.engine.live import control as control_module
from tickwise.engine.live.control import (
    MAX_REQUEST_BYTES,
    MAX_REQUESTS_PER_SERVE,
    ControlServer,
    CurveKeys,
    default_operator,
    is_loopback,
    request,
)
from tickwise.engine.session import Session

from ..conftest import make_synth, simple_instruments

TICKWISE = str(Path(sys.executable).with_name("tickwise"))

# A session over a history, batch by batch, answering control requests between batches (as
# the live engine does), and counting orders that left while it was not ACTIVE.
HOST = r"""
import sys, time
from pathlib import Path
import numpy as np
from tickwise.engine.live.control import ControlServer
from tickwise.engine.limits import RiskLimits
from tickwise.engine.session import Session
from tickwise import load_strategy
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


@pytest.mark.timeout(60)
def test_off_loopback_only_with_curve_keys_and_only_for_clients_that_know_the_key() -> None:
    session = Session(load_strategy("mean_reversion"), simple_instruments(2))
    with pytest.raises(TickwiseError, match="loopback only unless CurveZMQ keys"):
        ControlServer(session, "tcp://0.0.0.0:*")
    keys = CurveKeys.generate()
    # With keys the guard lets an address off loopback through: this one (TEST-NET-1, on no
    # interface) then fails to bind, so the test listens on no network.
    with pytest.raises(TickwiseError, match="cannot bind the control socket to tcp://192.0.2.1"):
        ControlServer(session, "tcp://192.0.2.1:*", keys=keys)
    server = ControlServer(session, "tcp://127.0.0.1:*", keys=keys)
    port = server.endpoint.rsplit(":", 1)[1]
    try:
        # The server answers from a thread of its own here (the test is its only client).
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
        assert "cmd: got 'sell'" in server.handle(b'{"cmd": "sell"}')["error"]
        assert "confirm" in server.handle(b'{"cmd": "resume"}')["error"]
        bad_state = server.handle(b'{"cmd": "kill", "state": "active"}')
        assert not bad_state["ok"]
        assert server.handle(b'{"cmd": "status"}')["state"] == "active"
    finally:
        server.close()


# --- what a client cannot do to a session: each over a real socket on 127.0.0.1 -------------

TIMEOUT_S = 10.0
STATUS = b'{"cmd": "status"}'


class Desk:
    """A control server around a real session on 127.0.0.1, what its `on_command` heard,
    and DEALER clients of it (closed with it)."""

    def __init__(self, session: Session, **options) -> None:
        self.session = session
        self.heard: list[tuple[str, dict]] = []
        self.context = zmq.Context.instance()
        self.server = ControlServer(
            session, "tcp://127.0.0.1:*", context=self.context,
            on_command=lambda command, detail: self.heard.append((command, detail)), **options,
        )  # fmt: skip
        self.clients: list[zmq.Socket] = []

    def client(self) -> zmq.Socket:
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.server.endpoint)
        self.clients.append(sock)
        return sock

    def close(self) -> None:
        for sock in self.clients:
            sock.close(linger=0)
        self.server.close()


def ask(server: ControlServer, client: zmq.Socket, body: bytes) -> dict:
    """Send `body` as one request, serve until the server has answered once, and return the
    one reply (a JSON object with a boolean `ok`)."""
    client.send_multipart([b"", body])
    deadline = time.monotonic() + TIMEOUT_S
    answered = 0
    while answered == 0 and time.monotonic() < deadline:
        answered += server.serve(50)
    assert answered == 1
    assert client.poll(int(TIMEOUT_S * 1000)), "no reply"
    frames = client.recv_multipart()
    assert not client.poll(0), "more than one reply"
    assert len(frames) == 2
    assert frames[0] == b""
    reply = json.loads(frames[1])
    assert isinstance(reply, dict)
    assert isinstance(reply["ok"], bool)
    return reply


def unanswered(server: ControlServer, client: zmq.Socket, seconds: float) -> bool:
    """Serve for `seconds`: whether `client` heard nothing all that time."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        server.serve(20)
        if client.poll(0):
            return False
    return True


@pytest.fixture
def desk() -> Iterator[Desk]:
    session = Session(load_strategy("mean_reversion"), simple_instruments(2))
    # As a live session does before serving: what a command runs is compiled now, not in
    # the first request's 10 s (a cold cache on a busy machine took longer).
    session.warm_up(kinds=(), controls=True)
    desk = Desk(session)
    try:
        yield desk
    finally:
        desk.close()


@pytest.mark.timeout(60)
def test_a_deeply_nested_request_is_an_error_reply_not_a_crash(desk: Desk) -> None:
    client = desk.client()
    for body in (b"[" * 60_000, b'{"cmd": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"):
        reply = ask(desk.server, client, body)
        assert reply["ok"] is False
        assert "nested too deeply" in reply["error"]
    assert ask(desk.server, client, STATUS)["ok"]  # the session goes on
    assert "at most 65,536 bytes" in desk.server.handle(b"[" * 100_000)["error"]


@pytest.mark.timeout(60)
def test_a_kill_with_a_list_for_its_state_is_refused_and_changes_nothing(desk: Desk) -> None:
    client = desk.client()
    reply = ask(desk.server, client, b'{"cmd": "kill", "state": ["halted"]}')
    assert reply == {"ok": False, "error": 'state: got a list; kill takes "halted" or "reducing"'}
    assert desk.session.status()["halted"] is False
    assert desk.heard == []
    assert ask(desk.server, client, STATUS)["state"] == "active"


@pytest.mark.timeout(60)
def test_each_bad_field_is_refused_naming_the_key_what_it_got_and_what_is_allowed(
    desk: Desk,
) -> None:
    client = desk.client()
    refused = {
        b'{"cmd": "kill", "reason": "' + b"x" * 1_001 + b'"}':
            "reason: got a string of 1,001 characters; allowed: a string of at most 1,000",
        b'{"cmd": "kill", "operator": "' + b"o" * 65 + b'"}':
            "operator: got a string of 65 characters; allowed: a string of at most 64",
        b'{"cmd": "kill", "reason": "\\u001b[2J"}': "reason: got a string with U+001B",
        b'{"cmd": "kill", "operator": 7}': "operator: got the number 7; allowed: a string",
        b'{"cmd": "kill", "instrument": "NOPE"}':
            "instrument: no instrument 'NOPE' in this session; use one of its symbols (I0, I1)",
        b'{"cmd": "kill", "instrument": 0}': "instrument: got the number 0; use one of its symbols",
        b'{"cmd": "resume", "state": "halted", "confirm": true}':
            'state: got \'halted\'; resume takes "active" or "reducing"',
        b'{"cmd": "status", "state": "halted"}': "state: got 'halted'; status takes no state",
        b'{"cmd": "resume", "confirm": 1}': "confirm: got the number 1; allowed: true or false",
        b'{"cmd": "kill", "sudo": true}': "unknown key 'sudo'; a request has only cmd,",
        b'{"state": "halted"}': "cmd: got nothing; the commands are status, kill, resume and",
        b'{"cmd": "kill", "cmd": "status"}': "got key 'cmd' twice",
        b'{"cmd": NaN}': "got NaN, which JSON does not have",
        b'{"cmd": "kill", "reason": -Infinity}': "got -Infinity, which JSON does not have",
        b'{"cmd": 1e999}': "got a number too long or too large ('1e999')",
        b'{"cmd": ' + b"9" * 10_000 + b"}": "got a number of 10,000 digits",
        b'{"cmd": "kill", "reason": "\\xff"}': "got text that is not JSON (Invalid \\escape",
        b'{"cmd": "kill", "reason": "\\ud800"}': "reason: got a string with U+D800",
        b'{"cmd": "kill", "reason": "\xff"}': "got bytes that are not UTF-8",
        b"\xff\xfe{}": "got bytes that are not UTF-8",
        b"": "got text that is not JSON",
    }  # fmt: skip
    for body, error in refused.items():
        reply = ask(desk.server, client, body)
        assert reply["ok"] is False, body
        assert error in reply["error"], (body, reply["error"])
        assert "\n" not in reply["error"]
    assert desk.session.status()["halted"] is False
    assert desk.heard == []


@pytest.mark.timeout(60)
def test_a_request_over_the_size_limit_disconnects_its_sender_and_others_are_answered(
    desk: Desk,
) -> None:
    assert desk.server.socket.getsockopt(zmq.MAXMSGSIZE) == MAX_REQUEST_BYTES
    flooder, bystander = desk.client(), desk.client()
    assert ask(desk.server, flooder, STATUS)["ok"]  # connected, and answered until now
    big = b'{"cmd": "kill", "reason": "' + b"x" * MAX_REQUEST_BYTES + b'"}'
    flooder.send_multipart([b"", big])
    assert unanswered(desk.server, flooder, 1.0)  # never read: ZeroMQ dropped its sender
    assert desk.session.status()["halted"] is False
    assert ask(desk.server, bystander, STATUS)["state"] == "active"
    # A request of exactly the limit is read and answered.
    at_limit = STATUS + b" " * (MAX_REQUEST_BYTES - len(STATUS))
    assert ask(desk.server, bystander, at_limit)["ok"]


@pytest.mark.timeout(60)
def test_request_refuses_a_payload_over_the_limit_before_sending_it() -> None:
    context = zmq.Context.instance()
    listener = context.socket(zmq.ROUTER)
    listener.setsockopt(zmq.LINGER, 0)
    try:
        port = listener.bind_to_random_port("tcp://127.0.0.1")
        payload = {"cmd": "kill", "reason": "x" * MAX_REQUEST_BYTES}
        began = time.monotonic()
        with pytest.raises(TickwiseError, match="control socket takes at most 65,536"):
            request(f"tcp://127.0.0.1:{port}", payload, timeout_s=5.0)
        assert time.monotonic() - began < 1.0  # refused at once, not after waiting
        assert not listener.poll(500)  # nothing was sent
    finally:
        listener.close(linger=0)


@pytest.mark.timeout(60)
def test_kill_and_resume_are_heard_with_the_validated_operator_and_reason(desk: Desk) -> None:
    client = desk.client()
    kill = {"cmd": "kill", "instrument": "I1", "state": "reducing", "reason": "fat finger",
            "operator": "ann", "confirm": False}  # fmt: skip
    reply = ask(desk.server, client, json.dumps(kill).encode())
    assert reply["ok"]
    assert reply["reasons"] == {"I1": "fat finger"}  # (each scope keeps its own)
    assert reply["reason"] is None  # (the whole session's: no one gave one)
    assert ask(desk.server, client, STATUS)["reasons"] == {"I1": "fat finger"}
    ask(desk.server, client, b'{"cmd": "kill", "operator": "bob"}')  # defaults filled in
    resume = {"cmd": "resume", "confirm": True, "operator": "cy"}
    assert ask(desk.server, client, json.dumps(resume).encode())["reasons"] == {}
    assert desk.heard == [
        ("kill", kill),
        ("kill", {"cmd": "kill", "instrument": None, "state": "halted", "reason": None,
                  "operator": "bob", "confirm": False}),
        ("resume", {"cmd": "resume", "instrument": None, "state": "active", "reason": None,
                    "operator": "cy", "confirm": True}),
    ]  # fmt: skip
    assert desk.session.status()["halted"] is False


def quotes_with_a_gap(seqs: list[int]) -> dict[str, np.ndarray]:
    """Quotes on instrument 0 with these sequence numbers, 1 ms apart."""
    n = len(seqs)
    ts = 1_700_000_000_000_000_000 + np.arange(1, n + 1, dtype=np.int64) * 1_000_000
    return {
        "ts_event": ts, "ts_recv": ts, "instrument": np.zeros(n, np.uint32),
        "seq": np.asarray(seqs, np.uint64), "bid_px": np.full(n, 9.99),
        "ask_px": np.full(n, 10.01), "bid_sz": np.full(n, 100.0), "ask_sz": np.full(n, 100.0),
    }  # fmt: skip


@pytest.mark.timeout(120)
def test_a_refused_resume_is_heard_with_its_error_and_changes_nothing() -> None:
    session = Session(load_strategy("mean_reversion"), simple_instruments(2))
    session.on_batch("quotes", quotes_with_a_gap([1, 2, 9]))  # the gap is the latest event
    assert session.status()["halt_reason"] == "seq_gap"
    desk = Desk(session)
    try:
        client = desk.client()
        blocked = ask(desk.server, client, b'{"cmd": "resume", "confirm": true, "operator": "ann"}')
        assert blocked["ok"] is False
        assert blocked["error"].startswith("cannot resume:")
        unconfirmed = ask(desk.server, client, b'{"cmd": "resume", "reason": "checked"}')
        assert unconfirmed["error"] == "resuming automated trading needs confirm: true (--confirm)"
        assert desk.heard == [
            ("resume_refused", {"cmd": "resume", "instrument": None, "state": "active",
                                "reason": None, "operator": "ann", "confirm": True,
                                "error": blocked["error"]}),
            ("resume_refused", {"cmd": "resume", "instrument": None, "state": "active",
                                "reason": "checked", "operator": None, "confirm": False,
                                "error": unconfirmed["error"]}),
        ]  # fmt: skip
        assert session.status()["halt_reason"] == "seq_gap"
        assert session.status()["halted"] is True
    finally:
        desk.close()


@pytest.mark.timeout(60)
def test_a_bug_is_a_traceback_on_stderr_and_an_error_reply_and_serving_goes_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def journal(command: str, detail: dict) -> None:
        raise RuntimeError("the journal broke")

    session = Session(load_strategy("mean_reversion"), simple_instruments(2))
    desk = Desk(session, extra_status=lambda: {"feed": object()})
    desk.server.on_command = journal
    try:
        client = desk.client()
        reply = ask(desk.server, client, b'{"cmd": "kill"}')
        assert reply["ok"] is False
        assert reply["error"].startswith("internal error: RuntimeError: the journal broke")
        assert "Traceback" in capsys.readouterr().err
        status = ask(desk.server, client, STATUS)  # extra_status gives what JSON cannot carry
        assert status["error"].startswith("internal error: TypeError: Object of type object")
        assert "Traceback" in capsys.readouterr().err
        desk.server.extra_status = None
        assert ask(desk.server, client, STATUS)["state"] == "halted"  # (the kill took effect)
    finally:
        desk.close()


@pytest.mark.timeout(60)
def test_serve_answers_at_most_8_requests_a_call(desk: Desk) -> None:
    client = desk.client()
    assert ask(desk.server, client, STATUS)["ok"]  # connected
    for _ in range(100):
        client.send_multipart([b"", STATUS])
    time.sleep(0.5)  # all 100 are waiting at the server
    assert desk.server.serve(1000) == MAX_REQUESTS_PER_SERVE == 8
    answered = MAX_REQUESTS_PER_SERVE
    deadline = time.monotonic() + TIMEOUT_S
    while answered < 100 and time.monotonic() < deadline:
        answered += desk.server.serve(50)
    assert answered == 100
    replies = 0
    while client.poll(1000):
        assert json.loads(client.recv_multipart()[-1])["ok"]
        replies += 1
    assert replies == 100


@pytest.mark.timeout(60)
def test_frames_that_are_not_a_request_envelope_are_dropped_unanswered(desk: Desk) -> None:
    client = desk.client()
    for frames in ([STATUS], [b"", STATUS, STATUS], [b"x", STATUS], [b""], [b"", b"", b""]):
        client.send_multipart(frames)
        status = ask(desk.server, client, STATUS)  # the only reply: to the status after
        assert status["ok"]
        assert status["state"] == "active"


def test_default_operator_is_the_os_user_or_a_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(control_module.getpass, "getuser", lambda: "ann\x1b[2J")
    assert default_operator() == "ann[2J"  # what the control socket accepts
    monkeypatch.setattr(control_module.getpass, "getuser", lambda: "o" * 100)
    assert default_operator() == "o" * 64

    def nameless() -> str:
        raise OSError("No username set in the environment")

    monkeypatch.setattr(control_module.getpass, "getuser", nameless)
    assert default_operator() == f"uid {control_module.os.getuid()}"


@pytest.mark.timeout(60)
def test_request_sends_the_payload_as_it_is_and_the_default_operator_is_accepted(
    desk: Desk,
) -> None:
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            desk.server.serve(20)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        anonymous = {"cmd": "kill", "state": "reducing"}
        assert request(desk.server.endpoint, anonymous, timeout_s=TIMEOUT_S)["ok"]
        assert anonymous == {"cmd": "kill", "state": "reducing"}
        signed = {"cmd": "kill", "reason": "r" * 1_000, "operator": default_operator()}
        assert request(desk.server.endpoint, signed, timeout_s=TIMEOUT_S)["ok"]
    finally:
        stop.set()
        thread.join(timeout=10)
    assert desk.heard == [
        ("kill", {"cmd": "kill", "instrument": None, "state": "reducing", "reason": None,
                  "operator": None, "confirm": False}),  # nothing added on the way
        ("kill", {"cmd": "kill", "instrument": None, "state": "halted", "reason": "r" * 1_000,
                  "operator": default_operator(), "confirm": False}),
    ]  # fmt: skip
