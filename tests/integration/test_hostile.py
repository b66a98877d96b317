"""A live session and the paper exchange take what an adversary can put on their feed: messages
well-formed on the wire whose values are anything (instrument ids outside the table, kinds the
session does not trade or that are not market data at all, NaN, infinite, negative, crossed or
zero prices, times days away). Neither process may crash, every row is accounted for (run,
dropped as bad by reason, or ignored as a kind the strategy does not take), and the journal
replays. Real processes on 127.0.0.1; the feed is this test's own publisher."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickwise.engine.live.control import request
from tickwise.engine.live.journal import journal_events, replay_journal
from tickwise.feeds import wire
from tickwise.feeds.transport import Publisher

from .processes import TICKWISE, spawn

INSTRUMENTS = 4  # synth:4, ids 0..3
DAY_NS = 86_400 * 10**9
# Bad data must not halt these sessions (it is what they are fed); everything else as shipped.
CONFIG = "[killswitch]\nmax_bad_rows_per_sec = 0\nseq_gap = false\n"


def rows(kind: str, n: int, **values: object) -> dict[str, np.ndarray]:
    """`n` well-formed rows of `kind` (a calm market at 100 on instrument 0, stamped now),
    with the given columns replaced."""
    dtype = wire.DTYPES[kind]
    now = time.time_ns()
    base = {"ts_event": now, "ts_recv": now, "instrument": 0, "seq": 0, "bid_px": 100.0,
            "ask_px": 100.02, "bid_sz": 10.0, "ask_sz": 10.0, "px": 100.0, "sz": 1.0,
            "side": 1, "open": 100.0, "high": 100.1, "low": 99.9, "close": 100.0,
            "volume": 5.0, "flags": 1, "id": 1, "ts": now, "price": 100.0, "qty": 1.0,
            "order_type": 0, "tif": 0, "status": 0, "session": 0, "strategy": 0,
            "reason": 0, "order_id": 1, "fee": 0.0, "liquidity": 0}  # fmt: skip
    out = {}
    for name in dtype.names:
        column = np.full(n, base[name], dtype=dtype.fields[name][0])
        if name in values:
            column[:] = values[name]
        out[name] = column
    return out


class Venue:
    """A feed (this test's publisher), a paper exchange and a live session trading through it."""

    def __init__(self, folder: Path) -> None:
        config = folder / "session.toml"
        config.write_text(CONFIG)
        self.journal = folder / "journal"
        self.feed = Publisher("tcp://127.0.0.1:*")
        self.exchange, gateway = spawn("exchange", "--bind", "tcp://127.0.0.1:*", "--feed",
                                       self.feed.endpoint, "--instruments", f"synth:{INSTRUMENTS}",
                                       "--config", str(config))  # fmt: skip
        self.live, line = spawn_live(self.feed.endpoint, gateway, config, self.journal)
        self.control = line
        if not self.feed.wait_for_subscriber(300.0, 2):
            raise AssertionError("the exchange and the session never subscribed")
        time.sleep(0.3)  # (both subscriptions settle)
        self.sent = 0

    def send(self, kind: str, columns: dict[str, np.ndarray]) -> None:
        self.feed.publish(kind, columns)
        self.sent += 1

    def status(self) -> dict:
        """The session's status once it has taken every message sent so far."""
        deadline = time.monotonic() + 30
        while True:
            for proc in (self.live, self.exchange):
                if proc.poll() is not None:
                    raise AssertionError(f"{proc.args[1]} ended: {proc.stderr.read()}")
            reply = request(self.control, {"cmd": "status"}, timeout_s=5)
            if reply["batches"] >= self.sent or time.monotonic() > deadline:
                return reply
            time.sleep(0.005)

    def stop(self) -> tuple[str, str]:
        """Stop the session (SIGINT) and the exchange (SIGTERM): their printed summaries."""
        try:
            self.live.send_signal(signal.SIGINT)
            live_out, live_err = self.live.communicate(timeout=60)
            self.exchange.send_signal(signal.SIGTERM)
            ex_out, ex_err = self.exchange.communicate(timeout=60)
        finally:
            self.close()
        assert self.live.returncode == 0, live_err
        assert self.exchange.returncode == 0, ex_err
        return live_out, ex_out

    def close(self) -> None:
        for proc in (self.live, self.exchange):
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
        if not self.feed.socket.closed:
            self.feed.close()


def spawn_live(feed: str, gateway: str, config: Path, journal: Path
               ) -> tuple[subprocess.Popen, str]:  # fmt: skip
    return spawn("live", "--strategy", "mean_reversion", "--feed", feed, "--gateway", gateway,
                 "--instruments", f"synth:{INSTRUMENTS}", "--config", str(config), "--journal",
                 str(journal), "--control", "tcp://127.0.0.1:*", "--param", "qty=100")  # fmt: skip


def paper_session(feed: Publisher, folder: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """A session on `feed` filling its orders in process, its journal in `folder`."""
    return spawn("live", "--strategy", "mean_reversion", "--feed", feed.endpoint,
                 "--instruments", f"synth:{INSTRUMENTS}", "--journal", str(folder / "journal"),
                 "--control", "tcp://127.0.0.1:*", *extra)  # fmt: skip


def exchange_dropped(out: str) -> int:
    """The rows the exchange's summary says it dropped at its boundary."""
    line = next(x for x in out.splitlines() if "market rows dropped at the boundary" in x)
    return int(re.findall(r"([\d,]+)", line)[-1].replace(",", ""))


@pytest.fixture
def venue(tmp_path: Path) -> Iterator[Venue]:
    v = Venue(tmp_path)
    try:
        yield v
    finally:
        v.close()


def test_hostile_messages_are_counted_dropped_and_journaled_and_nobody_crashes(
    venue: Venue,
) -> None:
    now = time.time_ns()
    for k in range(40):
        venue.send("quotes", rows("quotes", 5, instrument=k % INSTRUMENTS))
    # Ids outside the table: each once made a kernel write outside its arrays.
    for bad_id in (INSTRUMENTS, 100_000, 4_000_000_000):
        venue.send("quotes", rows("quotes", 1, instrument=bad_id))
    venue.send("trades", rows("trades", 1))  # a kind mean_reversion does not trade
    venue.send("orders", rows("orders", 1))  # not market data at all
    for values in ({"bid_px": np.nan}, {"bid_px": -100.0}, {"ask_px": 0.0},
                   {"bid_px": 100.05}, {"ask_sz": np.inf}, {"ts_event": now + 3 * DAY_NS},
                   {"ts_event": now - 3 * DAY_NS},  # and 55 s ahead: it once tripped stale_feed
                   {"ts_event": now + 55 * 10**9}):  # fmt: skip
        venue.send("quotes", rows("quotes", 1, **values))
    for k in range(40):
        venue.send("quotes", rows("quotes", 5, instrument=k % INSTRUMENTS))
    state = venue.status()
    assert state["state"] == "active", state  # dropped, not traded on, not halting
    assert state["bad_rows"] == {"unknown_instrument": 3, "bad_price": 3, "crossed": 1,
                                 "bad_size": 1, "ts_skew": 3, "wrong_kind": 1}  # fmt: skip
    assert state["ignored"] == {"trades": 1}
    assert state["events"] == 400  # every good row, and only those
    live_out, exchange_out = venue.stop()
    assert "stopped by a signal" in live_out
    # The exchange takes every market kind (the trade is good there); it drops the same rows.
    assert exchange_dropped(exchange_out) == 12
    events = journal_events(venue.journal)
    bad = [e["detail"] for e in events if e["what"] == "bad_data"]
    assert sum(b["rows"] for b in bad) == 12
    assert bad[-1]["by_reason"] == state["bad_rows"]
    sampled = {s["reason"] for b in bad for s in b["latest"]}
    assert sampled == set(state["bad_rows"])
    assert [e["detail"]["kind"] for e in events if e["what"] == "ignored"] == ["trades"]
    replay_journal(venue.journal)  # whatever it did, it replays


def test_a_storm_of_bad_rows_trips_bad_data_and_resume_waits_for_it_to_pass(
    tmp_path: Path,
) -> None:
    feed = Publisher("tcp://127.0.0.1:*")
    config = tmp_path / "session.toml"
    config.write_text("[killswitch]\nstale_feed_ms = 0\n")  # (only the storm may trip it)
    live = None
    try:
        live, control = paper_session(feed, tmp_path, "--config", str(config))
        assert feed.wait_for_subscriber(300.0)
        time.sleep(0.3)
        feed.publish("quotes", rows("quotes", 5))
        feed.publish("quotes", rows("quotes", 50, bid_px=np.nan))  # over the default 10/s
        deadline = time.monotonic() + 30
        while not (state := request(control, {"cmd": "status"}))["halted"]:
            assert time.monotonic() < deadline, state
            time.sleep(0.01)
        assert (state["halt_reason"], state["halt_value"], state["halt_limit"]) == (
            "bad_data", 50.0, 10.0)  # fmt: skip
        refused = request(control, {"cmd": "resume", "confirm": True})
        assert not refused["ok"]
        assert "50 bad rows in the last second" in refused["error"]
        deadline = time.monotonic() + 30
        while not (resumed := request(control, {"cmd": "resume", "confirm": True}))["ok"]:
            assert time.monotonic() < deadline, resumed  # the storm passes within 2 s
            feed.heartbeat()  # (the feed stays alive meanwhile)
            time.sleep(0.2)
        assert resumed["state"] == "active"
        live.send_signal(signal.SIGINT)
        live.communicate(timeout=60)
        assert live.returncode == 0
    finally:
        if live is not None and live.poll() is None:
            live.kill()
        feed.close()
    changes = [e["detail"] for e in journal_events(tmp_path / "journal")
               if e["what"] == "transition"]  # fmt: skip
    assert [(c["scope"], c["from"], c["to"], c["trigger"]) for c in changes] == [
        ("session", "active", "halted", "bad_data"),
        ("session", "halted", "active", "manual"),
    ]
    # The same trail from the command line: JSON lines, and a table a person reads.
    listed = subprocess.run([TICKWISE, "journal", "events", str(tmp_path / "journal"), "--json"],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    whats = [json.loads(line)["what"] for line in listed.stdout.splitlines()]
    assert whats[0] == "start"
    assert whats[-1] == "end"
    assert {"bad_data", "transition", "resume_refused", "resume"} <= set(whats)
    table = subprocess.run([TICKWISE, "journal", "events", str(tmp_path / "journal")],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert "session: active -> halted by bad_data, value 50, limit 10" in table.stdout


# --- anything at all, drawn ---------------------------------------------------------------------

_IDS = st.sampled_from([0, 1, 2, 3, INSTRUMENTS, 100_000, 2**31, 2**32 - 1])
_PRICES = st.one_of(
    st.floats(99.0, 101.0), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, -1.0, np.nan, np.inf, -np.inf, 1e15, 1e308]),
)  # fmt: skip
_SIZES = st.one_of(st.floats(0.0, 100.0), st.floats(allow_nan=True, allow_infinity=True))
_SIDES = st.sampled_from([1, -1, 0, 2, -128, 127])
_OFFSETS = st.one_of(st.integers(-10**9, 10**9), st.sampled_from([-3 * DAY_NS, 3 * DAY_NS]),
                     st.integers(-2**62, 2**62))  # fmt: skip


@st.composite
def messages(draw: st.DrawFn) -> tuple[str, dict[str, np.ndarray]]:
    kind = draw(st.sampled_from(["quotes", "trades", "bars", "book", "orders", "fills"]))
    n = draw(st.integers(1, 6))
    columns = rows(kind, n)
    names = wire.DTYPES[kind].names
    now = time.time_ns()
    for k in range(n):
        values = {"instrument": draw(_IDS), "ts_event": now + draw(_OFFSETS)}
        for name in set(names) & {"bid_px", "ask_px", "px", "open", "high", "low", "close"}:
            values[name] = draw(_PRICES)
        for name in set(names) & {"bid_sz", "ask_sz", "sz", "volume"}:
            values[name] = draw(_SIZES)
        if "side" in names:
            values["side"] = draw(_SIDES)
        for name, value in values.items():
            if name in columns:
                columns[name][k] = value
    return kind, columns


def good_rows(kind: str, c: dict[str, np.ndarray], now: int) -> np.ndarray:
    """The rows a receiver must keep, by the data contract written out again (independently of
    the engine's kernels): known id, time from 60 s before to 1 s after the clock, prices
    positive and below 1e15, sizes non-negative (positive for a trade) and below 1e18, sides
    +-1, bid not above ask, a bar's range whole."""

    def price(x: np.ndarray) -> np.ndarray:
        return (x > 0) & (x < 1e15)

    def size(x: np.ndarray) -> np.ndarray:
        return (x >= 0) & (x < 1e18)

    ts = c["ts_event"]
    ok = (c["instrument"] < INSTRUMENTS) & (ts >= now - 60 * 10**9) & (ts <= now + 10**9)
    side = np.isin(c.get("side", np.ones(1)), (1, -1))
    if kind == "quotes":
        return (ok & price(c["bid_px"]) & price(c["ask_px"]) & size(c["bid_sz"])
                & size(c["ask_sz"]) & (c["bid_px"] <= c["ask_px"]))  # fmt: skip
    if kind == "trades":
        return ok & price(c["px"]) & size(c["sz"]) & (c["sz"] > 0) & side
    if kind == "book":
        return ok & side & price(c["px"]) & size(c["sz"])
    o, h, lo, cl = c["open"], c["high"], c["low"], c["close"]
    return (ok & price(o) & price(h) & price(lo) & price(cl) & size(c["volume"])
            & (lo <= np.minimum(o, cl)) & (h >= np.maximum(o, cl)))  # fmt: skip


def test_anything_on_the_feed_is_run_dropped_or_ignored_and_every_row_is_accounted_for(
    tmp_path: Path,
) -> None:
    venue = Venue(tmp_path)
    expected = {"events": 0, "bad": 0, "exchange_bad": 0}
    ignored: Counter[str] = Counter()

    @settings(max_examples=60, deadline=None)
    @given(message=messages())
    def one_message(message: tuple[str, dict[str, np.ndarray]]) -> None:
        kind, columns = message
        n = len(columns["ts_event"] if "ts_event" in columns else columns["ts"])
        now = time.time_ns()
        venue.send(kind, columns)
        if kind in ("orders", "fills"):
            expected["bad"] += n
            expected["exchange_bad"] += n
        else:
            good = int(good_rows(kind, columns, now).sum())
            expected["exchange_bad"] += n - good
            if kind == "quotes":
                expected["events"] += good
                expected["bad"] += n - good
            else:
                ignored[kind] += n
        state = venue.status()
        assert state["batches"] == venue.sent
        assert state["events"] == expected["events"]
        assert sum(state["bad_rows"].values()) == expected["bad"]
        assert state["ignored"] == dict(ignored)
        assert venue.live.poll() is None
        assert venue.exchange.poll() is None

    try:
        one_message()
        _, exchange_out = venue.stop()
    finally:
        venue.close()
    assert exchange_dropped(exchange_out) == expected["exchange_bad"]
    replay_journal(venue.journal)


def test_on_a_replays_own_clock_times_past_today_are_dropped_and_history_goes_on(
    tmp_path: Path,
) -> None:
    """A session replaying history (its clock the data's, `feed_latency_us`) takes rows from
    any past time, and drops a row from the future, which would otherwise move its clock
    days (or to the end of int64) ahead and leave every later row behind it."""
    config = tmp_path / "session.toml"
    config.write_text("[backtest]\nfeed_latency_us = 50.0\n[killswitch]\nstale_feed_ms = 0\n"
                      "max_bad_rows_per_sec = 0\nseq_gap = false\n")  # fmt: skip
    feed = Publisher("tcp://127.0.0.1:*")
    live = None
    past = 1_700_000_000_000_000_000  # November 2023
    try:
        live, control = paper_session(feed, tmp_path, "--config", str(config))
        assert feed.wait_for_subscriber(300.0)
        time.sleep(0.3)
        feed.publish("quotes", rows("quotes", 5, ts_event=past))
        feed.publish("quotes", rows("quotes", 1, ts_event=time.time_ns() + 3 * DAY_NS))
        feed.publish("quotes", rows("quotes", 1, ts_event=2**63 - 1))
        feed.publish("quotes", rows("quotes", 5, ts_event=past + 1_000_000))  # history goes on
        feed.publish("quotes", rows("quotes", 5, ts_event=past - DAY_NS))  # (a restart: taken)
        deadline = time.monotonic() + 30
        while (state := request(control, {"cmd": "status"}))["batches"] < 5:
            assert time.monotonic() < deadline, state
            time.sleep(0.01)
        assert state["bad_rows"] == {"ts_skew": 2}
        assert state["events"] == 15
        assert state["state"] == "active"
        live.send_signal(signal.SIGINT)
        live.communicate(timeout=60)
        assert live.returncode == 0
    finally:
        if live is not None and live.poll() is None:
            live.kill()
        feed.close()


def test_text_from_outside_is_shown_as_it_is_never_as_markup(tmp_path: Path) -> None:
    """A reason (or a symbol, a path) such as `[/]` is rich's markup: printed as markup it
    ended the command with a traceback, and `[bold red]` hid what followed."""
    feed = Publisher("tcp://127.0.0.1:*")
    live = None
    reason = "[/] fat finger [bold red]on SYN2"
    try:
        live, control = paper_session(feed, tmp_path)
        killed = subprocess.run([TICKWISE, "kill", "--reason", reason, "--control", control,
                                 "--timeout", "30"], capture_output=True, text=True,
                                timeout=60)  # fmt: skip
        assert killed.returncode == 0, killed.stderr
        assert reason in killed.stdout
        status = subprocess.run([TICKWISE, "status", "--control", control, "--timeout", "30"],
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        assert status.returncode == 0, status.stderr
        assert reason in status.stdout
        live.send_signal(signal.SIGINT)
        live.communicate(timeout=60)
    finally:
        if live is not None and live.poll() is None:
            live.kill()
        feed.close()
    table = subprocess.run([TICKWISE, "journal", "events", str(tmp_path / "journal")],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert table.returncode == 0, table.stderr
    assert "Traceback" not in table.stderr

    def squeezed(text: str) -> str:  # (the table wraps its widest cell over lines)
        return "".join(c for c in text if c not in " \n│")

    assert squeezed(reason) in squeezed(table.stdout)
