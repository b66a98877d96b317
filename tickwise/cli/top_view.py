"""The Textual app of `tickwise top` (tickwise/cli/top.py): its screen, modals and keys.

Apart from the command's module so that only `top` imports Textual (a quarter of a second):
`tickwise.cli.top` loads this module when the view starts. What the view draws is worked
out there, without Textual, from the session's status.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import zmq
from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Footer, Input, Sparkline, Static

from tickwise.cli.common import scrubbed
from tickwise.cli.top import (
    LATENCIES,
    PANEL_TITLES,
    Ask,
    Link,
    Seen,
    activity,
    event_log,
    fig,
    fills_table,
    header,
    health,
    instruments_table,
    latency_figures,
    orders_table,
    outcome,
    symbols,
    transitions,
)
from tickwise.engine.errors import TickwiseError
from tickwise.engine.live.control import MAX_REASON_CHARS, request


class AskScreen(ModalScreen[dict[str, str | None] | None]):
    """Asks for a few lines (a symbol, a reason): Enter goes to the next line and sends
    from the last, Escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel")]

    def __init__(self, title: str, asks: Sequence[Ask]) -> None:
        super().__init__()
        self.title_text, self.asks = title, asks

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(self.title_text, "bold"), markup=False)
            for ask in self.asks:
                suggester = SuggestFromList(ask.suggestions) if ask.suggestions else None
                yield Input(placeholder=ask.prompt, id=ask.name, max_length=ask.most,
                            suggester=suggester)  # fmt: skip
            yield Static(Text("Enter: next line, and sends from the last · Escape cancels",
                              "dim"), markup=False)  # fmt: skip

    @on(Input.Submitted)
    def next_or_send(self, event: Input.Submitted) -> None:
        inputs = list(self.query(Input))
        at = inputs.index(event.input)
        if at + 1 < len(inputs):
            inputs[at + 1].focus()
            return
        for ask, field_ in zip(self.asks, inputs, strict=True):
            if ask.required and not field_.value.strip():
                field_.focus()
                return
        self.dismiss({i.id or "": i.value.strip() or None for i in inputs})

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    """Asks a yes or no: y or Enter confirms, n or Escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y,enter", "answer(True)", "confirm"),
        Binding("n,escape", "answer(False)", "cancel"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(self.question, "bold"), markup=False)
            yield Static(Text("y or Enter confirms · n or Escape cancels", "dim"),
                         markup=False)  # fmt: skip

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class Heard(Message):
    """A status request's outcome (and when it was asked), from a worker thread."""

    def __init__(self, asked: float, reply: dict[str, Any] | None, error: str | None) -> None:
        super().__init__()
        self.asked, self.reply, self.error = asked, reply, error


class Answered(Message):
    """A person's command's outcome, from a worker thread."""

    def __init__(self, what: str, symbol: str | None, reply: dict[str, Any] | None,
                 error: str | None) -> None:  # fmt: skip
        super().__init__()
        self.what, self.symbol, self.reply, self.error = what, symbol, reply, error


class TopApp(App[None]):
    """The live view of one session: redrawn on each status, keys for a person's
    commands."""

    TITLE = "tickwise top"
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    #header { height: auto; padding: 0 1; background: $boost; }
    #action { height: auto; padding: 0 1; }
    #main { height: 1fr; }
    #left { width: 3fr; scrollbar-size-vertical: 1; }
    #right { width: 2fr; }
    #bottom { height: 12; }
    .panel { border: round $primary 40%; height: auto; padding: 0 1; }
    #events { width: 3fr; height: 100%; text-wrap: nowrap; text-overflow: ellipsis; }
    #transitions { width: 2fr; height: 100%; text-wrap: nowrap; text-overflow: ellipsis; }
    .latency-row { height: 1; }
    .latency-row .name { width: 17; }
    .latency-row .figure { width: 13; text-align: right; }
    .latency-row Sparkline { width: 1fr; margin: 0 1; }
    AskScreen, ConfirmScreen { align: center middle; }
    .dialog { width: 72; height: auto; border: thick $error; background: $surface;
              padding: 1 2; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("k", "kill", "kill session"),
        Binding("i", "kill_instrument", "kill instrument"),
        Binding("r", "resume", "resume"),
        Binding("f", "flatten", "flatten"),
        Binding("q", "quit", "quit"),
    ]
    COMMANDS_KEYS = ("kill", "kill_instrument", "resume", "flatten")

    def __init__(self, link: Link, who: str, refresh_s: float,
                 stop_when: Callable[[], bool] | None = None) -> None:  # fmt: skip
        super().__init__()
        self.link, self.who, self.refresh_s = link, who, refresh_s
        self.stop_when = stop_when
        self.seen = Seen()
        self.asking = False  # a status request is out: the next waits for its answer
        # When a command's reply (a status itself) was shown: a status asked before then
        # may be older than it, and is not shown.
        self.commanded = -math.inf
        # Requests run on this context: ending it at exit wakes any request still
        # waiting for an answer, so quitting never waits out --timeout.
        self.zmq_context = zmq.Context()

    def compose(self) -> ComposeResult:
        yield Static(id="header", markup=False)
        yield Static(id="action", markup=False)
        with Horizontal(id="main"):
            with VerticalScroll(id="left"):
                for name in ("instruments", "orders", "fills"):
                    yield Static(id=name, classes="panel", markup=False)
            with Vertical(id="right"):
                yield Static(id="activity", classes="panel", markup=False)
                with Vertical(id="latency", classes="panel"):
                    for key, name in LATENCIES:
                        with Horizontal(classes="latency-row"):
                            yield Static(name, classes="name", markup=False)
                            yield Static(id=f"{key}-p50", classes="figure", markup=False)
                            yield Sparkline(id=f"{key}-p50-line")
                            yield Static(id=f"{key}-p99", classes="figure", markup=False)
                            yield Sparkline(id=f"{key}-p99-line")
                yield Static(id="health", classes="panel", markup=False)
        with Horizontal(id="bottom"):
            yield Static(id="events", classes="panel", markup=False)
            yield Static(id="transitions", classes="panel", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        for name, title in PANEL_TITLES.items():
            self.query_one(f"#{name}").border_title = title
        self.draw()
        self.ask_status()
        self.set_interval(self.refresh_s, self.ask_status)

    def on_unmount(self) -> None:
        self.zmq_context.term()  # (each request closes its socket as it wakes)

    def ask_status(self) -> None:
        if self.stop_when is not None and self.stop_when():
            self.exit()
            return
        if self.asking:
            return
        self.asking = True
        self.run_worker(self._status_worker, thread=True, group="status")

    def _status_worker(self) -> None:
        asked = time.monotonic()
        reply, error = self._request({"cmd": "status"})
        self.post_message(Heard(asked, reply, error))

    def _request(self, payload: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
        """The session's reply, or why none came (in a worker thread)."""
        try:
            return request(self.link.endpoint, payload, timeout_s=self.link.timeout_s,
                           server_key=self.link.server_key,
                           context=self.zmq_context), None  # fmt: skip
        except TickwiseError as exc:
            return None, str(exc)
        except zmq.ZMQError as exc:  # (ETERM: the view is closing)
            return None, f"the control socket failed: {exc}"

    @on(Heard)
    def show_status(self, message: Heard) -> None:
        self.asking = False
        if message.reply is None:
            self.seen.missed(message.error or "no answer")
        elif not message.reply.get("ok"):
            self.seen.missed(f"the session answered with an error: "
                             f"{message.reply.get('error')}")  # fmt: skip
        elif message.asked > self.commanded:
            self.seen.heard(message.reply)
        self.draw()

    def draw(self) -> None:
        s = self.seen.status
        self.query_one("#header", Static).update(
            header(self.seen, self.link, self.who, self.refresh_s)
        )
        self.query_one("#instruments", Static).update(instruments_table(s))
        orders = self.query_one("#orders", Static)
        orders.update(orders_table(s))
        orders.border_title = f"working orders: {fig(s.get('open_orders'), 0)} open"
        self.query_one("#fills", Static).update(fills_table(s))
        self.query_one("#activity", Static).update(activity(s))
        self.query_one("#health", Static).update(health(s))
        for key, _ in LATENCIES:
            p50, p99 = latency_figures(s, key)
            self.query_one(f"#{key}-p50", Static).update(p50)
            self.query_one(f"#{key}-p99", Static).update(p99)
            for name, series in zip(("p50", "p99"), self.seen.latency[key], strict=True):
                self.query_one(f"#{key}-{name}-line", Sparkline).data = list(series)
        events = self.query_one("#events", Static)
        events.update(event_log(s, max(1, events.content_size.height)))
        self.query_one("#transitions", Static).update(transitions(s))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # One question at a time: no command key while a modal asks something.
        return not (action in self.COMMANDS_KEYS and len(self.screen_stack) > 1)

    def action_kill(self) -> None:
        def send(got: dict[str, str | None] | None) -> None:
            if got is not None:
                self.send("kill", {"cmd": "kill", "reason": got["reason"],
                                   "instrument": None, "state": "halted"})  # fmt: skip

        self.push_screen(AskScreen(
            f"Kill the session: halt automated trading now (as {self.who})",
            [Ask("reason", "why, in your words (journaled)", MAX_REASON_CHARS)],
        ), send)  # fmt: skip

    def action_kill_instrument(self) -> None:
        known = symbols(self.seen.status)

        def send(got: dict[str, str | None] | None) -> None:
            if got is not None:
                self.send(f"kill {got['symbol']}", {
                    "cmd": "kill", "reason": got["reason"], "instrument": got["symbol"],
                    "state": "halted",
                })  # fmt: skip

        self.push_screen(AskScreen(
            f"Kill one instrument: halt its automated trading now (as {self.who})",
            [Ask("symbol", f"symbol ({', '.join(known) or 'one of the session'}; → completes)",
                 0, True, known),
             Ask("reason", "why, in your words (journaled)", MAX_REASON_CHARS)],
        ), send)  # fmt: skip

    def action_resume(self) -> None:
        def send(yes: bool | None) -> None:
            if yes:
                self.send("resume", {"cmd": "resume", "confirm": True, "state": "active"})

        self.push_screen(ConfirmScreen(
            f"Resume the whole session and every instrument (those killed one by one too) to "
            f"ACTIVE (as {self.who})? Automated orders will leave again."
        ), send)  # fmt: skip

    def action_flatten(self) -> None:
        def send(yes: bool | None) -> None:
            if yes:
                self.send("flatten", {"cmd": "flatten", "confirm": True, "instrument": None})

        self.push_screen(ConfirmScreen(
            f"Flatten every position with reduce-only orders (as {self.who})?"
        ), send)  # fmt: skip

    def send(self, what: str, payload: dict[str, Any]) -> None:
        """Send a person's command, signed, from a worker thread."""
        signed = payload | {"operator": self.who}
        self.query_one("#action", Static).update(Text(f"{what}: sent, waiting ...", "dim"))
        self.run_worker(functools.partial(self._command_worker, what, signed),
                        thread=True, group="command")  # fmt: skip

    def _command_worker(self, what: str, payload: dict[str, Any]) -> None:
        reply, error = self._request(payload)
        self.post_message(Answered(what, payload.get("instrument"), reply, error))

    @on(Answered)
    def show_outcome(self, message: Answered) -> None:
        reply = None if message.reply is None else scrubbed(message.reply)  # (never raw)
        text, taken = outcome(message.what, reply, message.error, message.symbol)
        self.query_one("#action", Static).update(text)
        self.notify(text.plain, severity="information" if taken else "error")
        if taken and message.reply is not None and "state" in message.reply:
            self.seen.heard(message.reply)  # (kill and resume answer with the status)
            self.commanded = time.monotonic()
            self.draw()
