"""The trading state machine (engine/states.py) over any sequence of trips, a person's halts
and resumes: each scope (the whole session, each instrument) keeps its own state and the
cause that holds it now; a resume of one instrument never touches another scope; every
change is logged once, in order, with its cause; the status names instruments by symbol."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tickwise import load_strategy
from tickwise.engine.limits import KillSwitch, RiskLimits
from tickwise.engine.session import Session

from ..conftest import simple_instruments

N = 3
STATES = {"active": 0, "reducing": 1, "halted": 2}
NAMES = {v: k for k, v in STATES.items()}
# Triggers a caller outside the loop may trip; price_jump with an instrument halts only that
# instrument (price_jump_halts_instrument), the rest the whole session. Two go to REDUCING.
TRIGGERS = ["price_jump", "stale_feed", "reject_rate", "bad_data", "gateway_lost", "max_loss"]
KILL = KillSwitch(price_jump_halts_instrument=True, max_loss=1e9,
                  reduce_only_on=("reject_rate", "price_jump"))  # fmt: skip
ACTION = {t: 1 if t in KILL.reduce_only_on else 2 for t in TRIGGERS}

scopes = st.one_of(st.none(), st.integers(0, N - 1))
operations = st.lists(
    st.one_of(
        st.tuples(st.just("trip"), st.sampled_from(TRIGGERS), scopes),
        st.tuples(st.just("halt"), st.sampled_from(["halted", "reducing"]), scopes),
        st.tuples(st.just("resume"), st.sampled_from(["active", "reducing"]), scopes),
    ),
    max_size=25,
)


class Model:
    """What the state machine must do, written plainly: scope -1 is the session."""

    def __init__(self) -> None:
        self.state = dict.fromkeys(range(-1, N), 0)
        self.cause: dict[int, str | None] = dict.fromkeys(range(-1, N))
        self.changes: list[tuple[str, str, str, str]] = []

    def move(self, scope: int, to: int, trigger: str) -> None:
        before = self.state[scope]
        self.state[scope] = to
        self.cause[scope] = None if to == 0 else trigger
        name = "session" if scope < 0 else f"I{scope}"
        self.changes.append((name, NAMES[before], NAMES[to], trigger))

    def trip(self, trigger: str, instrument: int | None) -> None:
        action = ACTION[trigger]
        if trigger == "price_jump" and instrument is not None:
            if self.state[instrument] < action and self.state[-1] < action:
                self.move(instrument, action, trigger)
        elif self.state[-1] < action:
            self.move(-1, action, trigger)

    def halt(self, state: str, instrument: int | None) -> None:
        scope = -1 if instrument is None else instrument
        if STATES[state] > self.state[scope]:
            self.move(scope, STATES[state], "manual")

    def resume(self, state: str, instrument: int | None) -> None:
        target = STATES[state]
        if instrument is not None:
            if self.state[instrument] != target:
                self.move(instrument, target, "manual")
            return
        if self.state[-1] != target:
            self.move(-1, target, "manual")
        for i in range(N):
            if self.state[i] > target:
                self.move(i, target, "manual")


@given(ops=operations)
def test_every_scope_keeps_its_own_state_and_cause_through_any_sequence(ops: list) -> None:
    session = Session(load_strategy("mean_reversion"), simple_instruments(N),
                      risk=RiskLimits.off(), killswitch=KILL)  # fmt: skip
    model = Model()
    for op, arg, instrument in ops:
        if op == "trip":
            session.trip(arg, 1.0, 0.5, instrument)
            model.trip(arg, instrument)
        elif op == "halt":
            session.halt(instrument, arg)
            model.halt(arg, instrument)
        else:
            session.resume(instrument, arg)
            model.resume(arg, instrument)
        status = session.status()
        assert status["state"] == NAMES[model.state[-1]]
        assert status["halted"] == any(model.state.values())
        assert {sym: (v["state"], v["trigger"]) for sym, v in status["instruments"].items()} == {
            f"I{i}": (NAMES[model.state[i]], model.cause[i]) for i in range(N) if model.state[i]
        }
        if model.state[-1]:
            assert status["halt_reason"] == model.cause[-1]
        elif not any(model.state.values()):
            assert status["halt_reason"] is None
    taken = [(c["scope"], c["from"], c["to"], c["trigger"]) for c in session.take_transitions()]
    assert taken == model.changes
    assert session.take_transitions() == []  # each change is handed out once
