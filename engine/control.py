"""The control socket: how a person steps in on a running session.

A session serves JSON requests on a ROUTER socket between batches (never in
the middle of one): `status`, `kill` (halt now, or go to REDUCING; the whole
session or one instrument) and `resume` (only with `confirm`, and refused,
saying why, while the condition that tripped the kill switch persists).
`tickwise status`, `tickwise kill` and `tickwise resume --confirm` are its
clients.

It binds to loopback unless CurveZMQ keys are given: anything else would let
anyone on the network halt, or resume, automated trading.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import zmq

from .errors import TickwiseError

if TYPE_CHECKING:  # (the command-line clients need none of the engine: they start fast)
    from .session import Session

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5560"


@dataclass(frozen=True)
class CurveKeys:
    """A CurveZMQ key pair (Z85 text, as `zmq.curve_keypair()` makes)."""

    public: bytes
    secret: bytes

    @classmethod
    def generate(cls) -> CurveKeys:
        public, secret = zmq.curve_keypair()
        return cls(public, secret)


def is_loopback(endpoint: str) -> bool:
    """Whether an endpoint can only be reached from this machine (ipc://, inproc://, or tcp on
    a loopback address or `localhost`)."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    host = rest.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # an interface name or a host name: not provably local
        return False


def _fail(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


class ControlServer:
    """Answers control requests for `session`; call `serve()` between batches.

    `extra_status` adds what only the caller knows (feed and latency figures) to `status`;
    `on_command` hears every kill and resume that took effect (to journal them)."""

    def __init__(
        self,
        session: Session,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        keys: CurveKeys | None = None,
        extra_status: Callable[[], dict[str, Any]] | None = None,
        on_command: Callable[[str, dict[str, Any]], None] | None = None,
        context: zmq.Context | None = None,
    ) -> None:
        if keys is None and not is_loopback(endpoint):
            raise TickwiseError(
                f"the control socket binds to loopback only unless CurveZMQ keys are given; "
                f"{endpoint} is not loopback"
            )
        self.session = session
        self.extra_status = extra_status
        self.on_command = on_command
        self.reason: str | None = None  # the person's words with the last kill
        self.socket = (context or zmq.Context.instance()).socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        if keys is not None:
            self.socket.curve_server = True
            self.socket.curve_publickey = keys.public
            self.socket.curve_secretkey = keys.secret
        try:
            self.socket.bind(endpoint)
        except zmq.ZMQError as exc:
            self.socket.close()
            raise TickwiseError(f"cannot bind the control socket to {endpoint}: {exc}") from None
        self.endpoint: str = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)

    def serve(self, timeout_ms: int = 0) -> int:
        """Answer every request waiting (waiting up to `timeout_ms` for the first); returns
        how many were answered."""
        answered = 0
        while self.socket.poll(timeout_ms if answered == 0 else 0, zmq.POLLIN):
            frames = self.socket.recv_multipart()
            if len(frames) < 2:
                continue  # not a ROUTER envelope: nothing to answer
            reply = self.handle(frames[-1])
            self.socket.send_multipart([frames[0], b"", json.dumps(reply).encode()])
            answered += 1
        return answered

    def handle(self, raw: bytes) -> dict[str, Any]:
        """One request (JSON) to its reply; a bad request gets an error, never an exception."""
        try:
            request = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _fail('a request is a JSON object such as {"cmd": "status"}')
        if not isinstance(request, dict):
            return _fail('a request is a JSON object such as {"cmd": "status"}')
        command = request.get("cmd")
        try:
            if command == "status":
                return {"ok": True, **self.status()}
            if command == "kill":
                return self._kill(request)
            if command == "resume":
                return self._resume(request)
        except TickwiseError as exc:
            return _fail(str(exc))
        return _fail(f"unknown command {command!r}; use status, kill or resume")

    def status(self) -> dict[str, Any]:
        """State, kill-switch cause, positions and PnL (and the caller's extra figures)."""
        s = self.session
        ctx = s.ctx
        positions = {
            inst.symbol: float(ctx.portfolio[inst.id]["qty"])
            for inst in s.instruments
            if ctx.portfolio[inst.id]["traded"] != 0.0
        }
        out = {
            **s.status(),
            "reason": self.reason,
            "resume_blocked_by": s.blocked_resume() or None,
            "positions": positions,
            "pnl": s.pnl(),
            "events": s.events,
            "open_orders": s.open_orders,
        }
        if self.extra_status is not None:
            out |= self.extra_status()
        return out

    def _instrument(self, request: dict[str, Any]) -> int | None:
        symbol = request.get("instrument")
        if symbol is None:
            return None
        for inst in self.session.instruments:
            if inst.symbol == symbol:
                return inst.id
        raise TickwiseError(f"no instrument {symbol!r} in this session")

    def _kill(self, request: dict[str, Any]) -> dict[str, Any]:
        state = request.get("state", "halted")
        self.session.halt(self._instrument(request), state)
        self.reason = str(request.get("reason") or "") or None
        self._heard("kill", request)
        return {"ok": True, **self.status()}

    def _resume(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("confirm") is not True:
            return _fail("resuming automated trading needs confirm: true (--confirm)")
        self.session.resume(self._instrument(request), request.get("state", "active"))
        self.reason = None
        self._heard("resume", request)
        return {"ok": True, **self.status()}

    def _heard(self, command: str, request: dict[str, Any]) -> None:
        if self.on_command is not None:
            self.on_command(command, request)

    def close(self) -> None:
        self.socket.close(linger=0)


def request(
    endpoint: str,
    payload: dict[str, Any],
    *,
    timeout_s: float = 5.0,
    server_key: bytes | None = None,
    context: zmq.Context | None = None,
) -> dict[str, Any]:
    """Send one control request and wait for its reply (a TickwiseError if none comes)."""
    sock = (context or zmq.Context.instance()).socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        if server_key is not None:
            public, secret = zmq.curve_keypair()
            sock.curve_serverkey = server_key
            sock.curve_publickey = public
            sock.curve_secretkey = secret
        sock.connect(endpoint)
        sock.send_multipart([b"", json.dumps(payload).encode()])
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            if sock.poll(max(1, int(left * 1000)), zmq.POLLIN):
                frames = sock.recv_multipart()
                return json.loads(frames[-1])
        raise TickwiseError(
            f"no answer from the session's control socket at {endpoint} within {timeout_s:g} s "
            "(is the session running, and is that its endpoint?)"
        )
    finally:
        sock.close(linger=0)
