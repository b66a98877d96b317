"""The control socket: how a person steps in on a running session.

A session serves JSON requests on a ROUTER socket between batches (never in
the middle of one): `status`, `kill` (halt now, or go to REDUCING; the whole
session or one instrument), `resume` (only with `confirm`, and refused,
saying why, while the condition that tripped the kill switch persists) and
`flatten` (only with `confirm`: cancel the working orders and close the
positions, leaving the scope REDUCING; refused while a data fault holds it
HALTED). `tickwise status`, `kill`, `resume --confirm`, `flatten --confirm`
and `top` are its clients.

It binds to loopback unless CurveZMQ keys are given: anything else would let
anyone on the network halt, or resume, automated trading. Whatever arrives is
validated before it touches the session, and answered with an error if it is
not a request: nothing a client sends can end the session, and a burst of
requests waits for the next call of `serve` rather than hold up trading.
"""

from __future__ import annotations

import getpass
import ipaddress
import json
import math
import os
import re
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import zmq

from tickwise.engine.errors import TickwiseError

if TYPE_CHECKING:  # (the command-line clients need none of the engine: they start fast)
    from tickwise.engine.session import Session

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5560"

# A request's JSON, in bytes: ZeroMQ disconnects a client that sends a bigger frame.
MAX_REQUEST_BYTES = 65_536
MAX_REPLY_BYTES = 16 << 20  # what a client takes back
MAX_REQUESTS_PER_SERVE = 8  # messages read per `serve` call: a flood waits for the next
MAX_REASON_CHARS = 1_000
MAX_OPERATOR_CHARS = 64

REQUEST_KEYS = ("cmd", "instrument", "state", "reason", "operator", "confirm")
# The states each command may ask for; the first is what it means without one.
COMMAND_STATES = {
    "status": (),
    "kill": ("halted", "reducing"),
    "resume": ("active", "reducing"),
    "flatten": (),
}

# Control characters (which would rewrite a person's terminal) and halves of surrogate pairs
# (which no terminal or UTF-8 file can take): never in a reason or an operator.
# Bidirectional controls too (U+202A-202E, U+2066-2069, the marks): they make a terminal
# show text other than what was written.
_UNPRINTABLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\udfff\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
_SHOWN_CHARS = 40  # of a string an error message quotes
_MAX_NUMBER_CHARS = 32  # no request field is a number: a longer one is refused unparsed
_A_REQUEST = 'a request is a JSON object such as {"cmd": "status"}'


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


def default_operator() -> str:
    """Who sends a command, for the journal: the OS user, or `uid N` where the user has no
    name (a container's); always an `operator` the control socket accepts."""
    try:
        name = getpass.getuser()
    except (OSError, KeyError, ImportError):  # no login variables and no passwd entry
        name = f"uid {os.getuid()}" if hasattr(os, "getuid") else ""
    return _UNPRINTABLE.sub("", name)[:MAX_OPERATOR_CHARS] or "unknown"


@dataclass(frozen=True)
class _Request:
    """A request that passed validation: only known keys, each of its type and size."""

    cmd: str
    instrument: str | None  # a symbol of the session's (None: the whole session)
    instrument_id: int | None
    state: str | None  # None for status
    reason: str | None
    operator: str | None
    confirm: bool

    def detail(self) -> dict[str, Any]:
        """What `on_command` hears (and a journal keeps): these fields, never the raw request."""
        return {
            "cmd": self.cmd,
            "instrument": self.instrument,
            "state": self.state,
            "reason": self.reason,
            "operator": self.operator,
            "confirm": self.confirm,
        }


def _fail(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


def _internal_error(exc: Exception) -> dict[str, Any]:
    """A bug met while answering: its traceback on stderr (to be seen), an error to the client."""
    traceback.print_exception(exc)
    first = (str(exc).splitlines() or [""])[0][:200]
    return _fail(
        f"internal error: {type(exc).__name__}: {first} (the session goes on; its stderr "
        "has the traceback)"
    )


class ControlServer:
    """Answers control requests for `session`; call `serve()` between batches.

    `extra_status` adds what only the caller knows (feed and latency figures) to `status`;
    `on_command(command, detail)` hears every kill and resume that took effect, and every
    resume refused (`resume_refused`, with its `error`), to journal them: `detail` holds the
    validated fields only (`_Request.detail`), so what is journaled is bounded."""

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
        # The person's words with the kill of each scope ("" the session, else a symbol).
        self.reasons: dict[str, str] = {}
        self._ids = {inst.symbol: inst.id for inst in session.instruments}
        self.socket = (context or zmq.Context.instance()).socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
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
        self.answered = 0  # requests answered so far

    def serve(self, timeout_ms: int = 0) -> int:
        """Answer the requests waiting (waiting up to `timeout_ms` for the first), reading at
        most MAX_REQUESTS_PER_SERVE messages; returns how many were answered. A request never
        makes it raise: whatever goes wrong is the client's error reply."""
        answered = 0
        for turn in range(MAX_REQUESTS_PER_SERVE):
            if not self.socket.poll(timeout_ms if turn == 0 else 0, zmq.POLLIN):
                break
            frames = self.socket.recv_multipart(zmq.NOBLOCK)
            if len(frames) != 3 or frames[1] != b"":
                continue  # not [client, empty delimiter, request]: dropped unanswered
            self.socket.send_multipart([frames[0], b"", self._reply(frames[2])])
            answered += 1
        self.answered += answered
        return answered

    def _reply(self, raw: bytes) -> bytes:
        reply = self.handle(raw)
        try:
            return json.dumps(_plain_json(reply), allow_nan=False).encode()
        except Exception as exc:  # (extra_status gave what JSON cannot carry: a bug)
            return json.dumps(_internal_error(exc)).encode()

    def handle(self, raw: bytes) -> dict[str, Any]:
        """One request (JSON) to its reply; a bad request, a refusal or a bug gets an error,
        never an exception."""
        try:
            request = self._validated(raw)
            if request.cmd == "kill":
                return self._kill(request)
            if request.cmd == "resume":
                return self._resume(request)
            if request.cmd == "flatten":
                return self._flatten(request)
            return {"ok": True, **self.status()}
        except TickwiseError as exc:
            return _fail(str(exc))
        except Exception as exc:  # a bug: seen on stderr and answered; the session goes on
            return _internal_error(exc)

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
            "reason": self.reasons.get(""),
            "reasons": dict(self.reasons),
            "resume_blocked_by": s.blocked_resume() or None,
            "positions": positions,
            "pnl": s.pnl(),
            "events": s.events,
            "open_orders": s.open_orders,
        }
        if self.extra_status is not None:
            out |= self.extra_status()
        return out

    def _validated(self, raw: bytes) -> _Request:
        """The request in `raw`, or a TickwiseError naming the key, what it got and what is
        allowed."""
        fields = _parsed(raw)
        for key in fields:
            if key not in REQUEST_KEYS:
                raise TickwiseError(
                    f"unknown key {_shown(key)}; a request has only {', '.join(REQUEST_KEYS)}"
                )
        cmd = fields.get("cmd")
        if not (isinstance(cmd, str) and cmd in COMMAND_STATES):
            got = "nothing" if "cmd" not in fields else _shown(cmd)
            raise TickwiseError(
                f"cmd: got {got}; the commands are status, kill, resume and flatten"
            )
        allowed = COMMAND_STATES[cmd]
        state = fields.get("state", allowed[0] if allowed else None)
        if "state" in fields and not (isinstance(state, str) and state in allowed):
            takes = " or ".join(f'"{s}"' for s in allowed) if allowed else "no state"
            raise TickwiseError(f"state: got {_shown(state)}; {cmd} takes {takes}")
        symbol = fields.get("instrument")
        if symbol is not None and not (isinstance(symbol, str) and symbol in self._ids):
            got = (
                f"no instrument {_shown(symbol)} in this session"
                if isinstance(symbol, str)
                else f"got {_shown(symbol)}"
            )
            raise TickwiseError(
                f"instrument: {got}; use one of its symbols ({_listed(list(self._ids))}) or "
                "null for the whole session"
            )
        confirm = fields.get("confirm", False)
        if not isinstance(confirm, bool):
            raise TickwiseError(f"confirm: got {_shown(confirm)}; allowed: true or false")
        return _Request(
            cmd=cmd,
            instrument=symbol,
            instrument_id=None if symbol is None else self._ids[symbol],
            state=state,
            reason=_text(fields, "reason", MAX_REASON_CHARS),
            operator=_text(fields, "operator", MAX_OPERATOR_CHARS),
            confirm=confirm,
        )

    def _kill(self, request: _Request) -> dict[str, Any]:
        self.session.halt(request.instrument_id, request.state)
        if request.reason:
            self.reasons[request.instrument or ""] = request.reason
        self._heard("kill", request.detail())
        return {"ok": True, **self.status()}

    def _resume(self, request: _Request) -> dict[str, Any]:
        try:
            if not request.confirm:
                raise TickwiseError("resuming automated trading needs confirm: true (--confirm)")
            self.session.resume(request.instrument_id, request.state)
        except TickwiseError as exc:
            self._heard("resume_refused", request.detail() | {"error": str(exc)})
            raise
        if request.instrument is None:
            self.reasons.clear()  # (every scope resumed)
        else:
            self.reasons.pop(request.instrument, None)
        self._heard("resume", request.detail())
        return {"ok": True, **self.status()}

    def _flatten(self, request: _Request) -> dict[str, Any]:
        try:
            if not request.confirm:
                raise TickwiseError(
                    "flattening sends orders that close every position in scope and leaves it "
                    "REDUCING: it needs confirm: true (--confirm)"
                )
            sent = self.session.flatten(request.instrument_id)
        except TickwiseError as exc:
            self._heard("flatten_refused", request.detail() | {"error": str(exc)})
            raise
        self._heard("flatten", request.detail() | {"orders": sent})
        return {"ok": True, "flatten": sent, **self.status()}

    def _heard(self, command: str, detail: dict[str, Any]) -> None:
        if self.on_command is not None:
            self.on_command(command, detail)

    def close(self) -> None:
        self.socket.close(linger=0)


def _plain_json(value: Any) -> Any:
    """`value` as standard JSON holds it: an infinite or NaN figure (a limit that is off, a
    PnL no price can mark) as the text "inf", "-inf" or "nan", which every reader takes."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_json(v) for v in value]
    return value


def _parsed(raw: bytes) -> dict[str, Any]:
    """The JSON object in `raw`, or a TickwiseError saying what came instead."""
    if len(raw) > MAX_REQUEST_BYTES:
        raise TickwiseError(f"a request is at most {MAX_REQUEST_BYTES:,} bytes; got {len(raw):,}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = f"{exc.reason} at byte {exc.start:,}"
        raise TickwiseError(f"{_A_REQUEST}; got bytes that are not UTF-8 ({where})") from None
    try:
        value = json.loads(
            text,
            object_pairs_hook=_object,
            parse_int=_int,
            parse_float=_float,
            parse_constant=_constant,
        )
    except RecursionError:
        raise TickwiseError(f"{_A_REQUEST}; got JSON nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise TickwiseError(f"{_A_REQUEST}; got text that is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise TickwiseError(f"{_A_REQUEST}; got {_shown(value)}")
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused if a key comes twice (which one counts is up to the reader)."""
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise TickwiseError(f"{_A_REQUEST}; got key {_shown(key)} twice")
        seen.add(key)
    return dict(pairs)


def _int(text: str) -> int:
    if len(text) > _MAX_NUMBER_CHARS:
        raise TickwiseError(f"{_A_REQUEST}; got a number of {len(text):,} digits")
    return int(text)


def _float(text: str) -> float:
    if len(text) > _MAX_NUMBER_CHARS or not math.isfinite(value := float(text)):
        raise TickwiseError(f"{_A_REQUEST}; got a number too long or too large ({_shown(text)})")
    return value


def _constant(text: str) -> NoReturn:
    raise TickwiseError(f"{_A_REQUEST}; got {text}, which JSON does not have")


def check_operator(name: str) -> str:
    """An operator's name as the control socket takes it (at most 64 printable characters),
    or a TickwiseError saying what is wrong: for `tickwise live --operator` too."""
    checked = _text({"operator": name}, "operator", MAX_OPERATOR_CHARS)
    if not checked:
        raise TickwiseError("operator: got an empty name; allowed: printable text")
    return checked


def _text(fields: dict[str, Any], key: str, most: int) -> str | None:
    """A free-text field: a string of at most `most` printable characters, or null."""
    value = fields.get(key)
    if value is None:
        return None
    allowed = f"allowed: a string of at most {most:,} characters, or null"
    if not isinstance(value, str):
        raise TickwiseError(f"{key}: got {_shown(value)}; {allowed}")
    if len(value) > most:
        raise TickwiseError(f"{key}: got a string of {len(value):,} characters; {allowed}")
    bad = _UNPRINTABLE.search(value)
    if bad:
        raise TickwiseError(
            f"{key}: got a string with U+{ord(bad.group()):04X}, a control character or half "
            "a surrogate pair; allowed: printable text"
        )
    return value


def _shown(value: Any) -> str:
    """A JSON value as an error message shows it: short and on one line, whatever it was."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        if len(value) <= _SHOWN_CHARS:
            return repr(value)
        return f"{value[:_SHOWN_CHARS]!r}... ({len(value):,} characters)"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    return "a list" if isinstance(value, list) else "an object"


def _listed(symbols: list[str], most: int = 5) -> str:
    shown = ", ".join(symbols[:most])
    return shown if len(symbols) <= most else f"{shown}, ... {len(symbols):,} in all"


def request(
    endpoint: str,
    payload: dict[str, Any],
    *,
    timeout_s: float = 5.0,
    server_key: bytes | None = None,
    context: zmq.Context | None = None,
) -> dict[str, Any]:
    """Send one control request and wait for its reply (a TickwiseError if none comes, or if
    the request is over MAX_REQUEST_BYTES, which is then not sent). The payload goes as it
    is: a client adds `operator` (`default_operator()`) itself."""
    body = json.dumps(payload).encode()
    if len(body) > MAX_REQUEST_BYTES:
        raise TickwiseError(
            f"the request is {len(body):,} bytes of JSON; the control socket takes at most "
            f"{MAX_REQUEST_BYTES:,} (a reason is at most {MAX_REASON_CHARS:,} characters)"
        )
    sock = (context or zmq.Context.instance()).socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_REPLY_BYTES)  # (a status fits in far less)
    try:
        if server_key is not None:
            public, secret = zmq.curve_keypair()
            sock.curve_serverkey = server_key
            sock.curve_publickey = public
            sock.curve_secretkey = secret
        sock.connect(endpoint)
        sock.send_multipart([b"", body])
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            if sock.poll(max(1, int(left * 1000)), zmq.POLLIN):
                return _answer(endpoint, sock.recv_multipart()[-1])
        raise TickwiseError(
            f"no answer from the session's control socket at {endpoint} within {timeout_s:g} s "
            "(is the session running, and is that its endpoint?)"
        )
    finally:
        sock.close(linger=0)


def _answer(endpoint: str, raw: bytes) -> dict[str, Any]:
    try:
        reply = json.loads(raw)
    except (ValueError, RecursionError):
        reply = None
    if not isinstance(reply, dict):
        raise TickwiseError(
            f"{endpoint} answered with something other than a JSON object: is it a tickwise "
            "session's control socket?"
        )
    return reply
