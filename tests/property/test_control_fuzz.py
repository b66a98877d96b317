"""The control socket fuzzed over a real DEALER socket on 127.0.0.1: whatever a client sends
(any JSON shape, nesting thousands deep, huge strings and numbers, NaN, random bytes, frames
that are no request envelope) gets exactly one reply per request, a JSON object with `ok`;
`serve()` never raises; and the session changes only for a valid kill or resume."""

from __future__ import annotations

import json
import re

import pytest
import zmq
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tickwise import load_strategy
from tickwise.engine.live.control import MAX_REQUEST_BYTES, ControlServer
from tickwise.engine.session import Session

from ..conftest import simple_instruments
from ..integration.test_control import ask

INSTRUMENTS = simple_instruments(3)
SYMBOLS = tuple(INSTRUMENTS.symbols())
KEYS = ("cmd", "instrument", "state", "reason", "operator", "confirm")
STATES = {"status": (), "kill": ("halted", "reducing"), "resume": ("active", "reducing")}
DEFAULT_STATE = {"status": None, "kill": "halted", "resume": "active"}
UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=16,
)  # fmt: skip
long_text = st.integers(0, 10_000).map(lambda n: "x" * n)

printable = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=20)


@st.composite
def valid_requests(draw: st.DrawFn) -> dict:
    """A request the control socket must carry out: each key absent or a value it allows."""
    cmd = draw(st.sampled_from(list(STATES)))
    optional = {
        "instrument": st.sampled_from([None, *SYMBOLS]),
        "reason": st.none() | printable | st.integers(990, 1_000).map(lambda n: "r" * n),
        "operator": st.none() | printable | st.integers(60, 64).map(lambda n: "o" * n),
    }
    if STATES[cmd]:
        optional["state"] = st.sampled_from(STATES[cmd])
    request = {"cmd": cmd} | draw(st.fixed_dictionaries({}, optional=optional))
    # Most resumes confirmed (carried out), some not (refused); None: no confirm key.
    confirm = draw(st.sampled_from((True, True, False, None) if cmd == "resume"
                                   else (True, False, None)))  # fmt: skip
    return request if confirm is None else request | {"confirm": confirm}


# Each key: a value it allows, or one near it (just over a limit, a control character, a
# string for a boolean, an unknown symbol or state).
unprintable = st.characters(categories=("Cc", "Cs"))  # (one: two surrogates may make a pair)
values = {
    "cmd": st.sampled_from([*STATES, "sell", "KILL", ""]),
    "instrument": st.sampled_from([None, *SYMBOLS, "NOPE", "i0", 0]),
    "state": st.sampled_from(["halted", "reducing", "active", "paused", None]),
    "reason": st.none() | st.text(max_size=20) | st.integers(995, 1_005).map(lambda n: "r" * n)
              | unprintable.map(lambda bad: f"fat {bad} finger"),
    "operator": st.none() | st.text(max_size=10) | st.integers(60, 68).map(lambda n: "o" * n)
                | unprintable,
    "confirm": st.booleans() | st.sampled_from([0, 1, 0.0, "true", "", None, [], {}]),
}  # fmt: skip
# Requests of anything, and valid requests with one key given anything.
any_requests = st.builds(
    dict.__or__,
    st.fixed_dictionaries({}, optional={k: values[k] | json_values | long_text for k in KEYS}),
    st.just({}) | st.dictionaries(st.text(max_size=8).filter(lambda k: k not in KEYS),
                                  json_values, max_size=2),
)  # fmt: skip
corrupted_requests = st.builds(
    lambda request, key_value: request | dict([key_value]),
    valid_requests(),
    st.sampled_from([*KEYS, "sudo"]).flatmap(
        lambda key: st.tuples(st.just(key), values.get(key, st.nothing()) | json_values)
    ),
)


def _sized(n: int, unit: bytes) -> int:
    return max(1, min(n, (MAX_REQUEST_BYTES - 64) // len(unit)))


# Bodies that are no request by construction (request None), up to the size limit.
not_requests = st.one_of(
    st.binary(max_size=512),
    st.builds(lambda opener, n: opener * _sized(n, opener),
              st.sampled_from([b"[", b'{"a":', b'{"cmd": [', b'[{"cmd":']),
              st.integers(1, 100_000)),
    st.integers(1, 30_000).map(lambda n: b'{"cmd": ' + b"[" * n + b"]" * n + b"}"),
    st.integers(1_001, 60_000).map(lambda n: b'{"cmd": "kill", "reason": "' + b"x" * n + b'"}'),
    st.integers(33, 60_000).map(lambda n: b'{"cmd": "kill", "confirm": 1' + b"0" * n + b"}"),
    st.sampled_from([b'{"cmd": NaN}', b'{"cmd": "kill", "reason": Infinity}', b"-Infinity",
                     b'{"cmd": 1e999}', b'{"cmd": "kill", "cmd": "kill"}', b"\xff\xfe",
                     b'{"cmd": "kill", "reason": "\xff"}', b'{"cmd": "kill", "reason": "\\ud800"}',
                     b"", b"null", b'"status"', b'{"cmd": "status"']),
)  # fmt: skip


def as_message(value: object) -> tuple[bytes, object]:
    """A JSON value as a request body, and the value the server reads from it (two halves of
    a surrogate pair in a Python string are one character in JSON)."""
    body = json.dumps(value).encode()
    return body, json.loads(body)


# Messages: (body, the JSON value it holds, or None for no JSON), up to the size limit.
messages = st.one_of(
    *(shape.map(as_message) for shape in (
        valid_requests(), corrupted_requests, corrupted_requests, any_requests, json_values)),
    not_requests.map(lambda body: (body, None)),
).filter(lambda message: len(message[0]) <= MAX_REQUEST_BYTES)  # fmt: skip
# Frames sent before the request that are no request envelope ([empty, body]): dropped.
garbage = st.none() | st.lists(st.binary(max_size=64), min_size=1, max_size=4).filter(
    lambda frames: not (len(frames) == 2 and frames[0] == b"")
)


def _text_ok(value: object, most: int) -> bool:
    return value is None or (
        isinstance(value, str) and len(value) <= most and not UNPRINTABLE.search(value)
    )


def effect(request: object) -> str | None:
    """What a request must do ('status', 'kill', 'resume' or 'resume_refused'), as the
    control socket's contract says; None for anything that is not a valid request."""
    if not isinstance(request, dict) or not set(request) <= set(KEYS):
        return None
    cmd = request.get("cmd")
    if not (isinstance(cmd, str) and cmd in STATES):
        return None
    state = request.get("state")
    if "state" in request and not (isinstance(state, str) and state in STATES[cmd]):
        return None
    instrument = request.get("instrument")
    if not (instrument is None or (isinstance(instrument, str) and instrument in SYMBOLS)):
        return None
    if not (_text_ok(request.get("reason"), 1_000) and _text_ok(request.get("operator"), 64)):
        return None
    if not isinstance(request.get("confirm", False), bool):
        return None
    if cmd == "resume" and request.get("confirm") is not True:
        return "resume_refused"
    return cmd


def detail(request: dict) -> dict:
    cmd = request["cmd"]
    return {
        "cmd": cmd,
        "instrument": request.get("instrument"),
        "state": request.get("state", DEFAULT_STATE[cmd]),
        "reason": request.get("reason"),
        "operator": request.get("operator"),
        "confirm": request.get("confirm", False),
    }


def trading_state(session: Session) -> str:
    return json.dumps(session.status(), sort_keys=True, default=str)


def everything(session: Session, server: ControlServer) -> tuple:
    """All a request could change: the engine context, bit for bit, and the status."""
    return tuple(a.tobytes() for a in session.ctx), trading_state(session), dict(server.reasons)


def exchange(body: bytes, request: object, before: list[bytes] | None, halted_first: bool) -> str:
    """Send `body` (after `before`, if given) to a control server around a new session,
    check the reply and what changed against `effect(request)`, and return that effect."""
    session = Session(load_strategy("mean_reversion"), INSTRUMENTS)
    if halted_first:
        session.halt(None, "halted")
    heard: list[tuple[str, dict]] = []
    server = ControlServer(session, "tcp://127.0.0.1:*",
                           on_command=lambda command, d: heard.append((command, d)))  # fmt: skip
    client = zmq.Context.instance().socket(zmq.DEALER)
    client.setsockopt(zmq.LINGER, 0)
    try:
        client.connect(server.endpoint)
        if before is not None:
            client.send_multipart(before)
        was = everything(session, server)
        reply = ask(server, client, body)  # one reply, a JSON object with a boolean "ok"
        expected = effect(request)
        if expected is None or expected == "resume_refused":
            assert reply["ok"] is False
            assert isinstance(reply["error"], str)
            assert reply["error"]
            assert "\n" not in reply["error"]
            assert not reply["error"].startswith("internal error")  # a bug met, not a refusal
            assert everything(session, server) == was
            if expected is None:
                assert heard == []
            else:
                assert heard == [("resume_refused", detail(request) | {"error": reply["error"]})]
            return expected or "an error"
        assert reply["ok"] is True, reply
        if expected == "status":
            assert heard == []
            assert trading_state(session) == was[1]
            return expected
        assert heard == [(expected, detail(request))]
        state = detail(request)["state"]
        status = session.status()
        if expected == "kill":
            # (each scope keeps its own: the session's is `reason`, an instrument's by symbol)
            scope = request.get("instrument") or ""
            assert reply["reasons"].get(scope) == (request.get("reason") or None)
            assert status["halted"] is True
            if request.get("instrument") is None:
                assert status["state"] == ("halted" if halted_first else state)
        else:
            resumed = request.get("instrument")
            assert (reply["reasons"] == {}) if resumed is None else resumed not in reply["reasons"]
            if request.get("instrument") is None:
                assert status["state"] == state
        return expected
    finally:
        client.close(linger=0)
        server.close()


@pytest.mark.timeout(120)
@settings(max_examples=120, deadline=None)
@given(message=messages, before=garbage, halted_first=st.booleans())
def test_whatever_a_client_sends_gets_one_reply_and_only_a_valid_command_changes_anything(
    message: tuple[bytes, object], before: list[bytes] | None, halted_first: bool
) -> None:
    event(f"expected: {exchange(*message, before, halted_first)}")


@pytest.mark.timeout(120)
@settings(max_examples=60, deadline=None)
@given(message=valid_requests().map(as_message), halted_first=st.booleans())
def test_a_valid_command_does_what_it_says_and_is_heard_with_its_validated_fields(
    message: tuple[bytes, dict], halted_first: bool
) -> None:
    event(f"expected: {exchange(*message, None, halted_first)}")


@pytest.mark.timeout(120)
@settings(max_examples=80, deadline=None)
@given(message=corrupted_requests.map(as_message).filter(lambda m: effect(m[1]) is None),
       halted_first=st.booleans())  # fmt: skip
def test_one_field_it_does_not_allow_spoils_a_request_and_changes_nothing(
    message: tuple[bytes, dict], halted_first: bool
) -> None:
    assert exchange(*message, None, halted_first) == "an error"
