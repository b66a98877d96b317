"""What a trader and the desk's monitoring see of a live session as it runs: its events as
log lines (text or JSON, on stderr and in a log file), an alert command run for each event,
and Prometheus metrics scraped over HTTP; between real processes on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
from prometheus_client.parser import text_string_to_metric_families as prometheus_text

from tickwise.engine.live.metrics import HISTOGRAMS

from .processes import TICKWISE, WAIT, Lines, spawn, stop

PARAMS = ["--param", "window=30", "--param", "entry_z=1.0", "--param", "qty=100"]
EVENT_KEYS = {"ts", "ts_ns", "level", "event", "message", "detail"}


def _live(feed: str, tmp_path: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([TICKWISE, "live", "--strategy", "mean_reversion", "--feed", feed,
                             "--instruments", "synth:3", *PARAMS, "--journal",
                             str(tmp_path / "journal"), "--control", "tcp://127.0.0.1:*",
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def _scrape(url: str, openmetrics_format: bool = True) -> tuple[str, str]:
    accept = "application/openmetrics-text; version=1.0.0" if openmetrics_format else "text/plain"
    asked = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(asked, timeout=30) as reply:
        return reply.headers["Content-Type"], reply.read().decode()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, labels) -> value, from an OpenMetrics exposition (the official parser)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in openmetrics(text)
        for s in family.samples
    }


def test_a_crash_is_told_as_it_happens_in_json_lines_a_log_file_an_alert_and_the_metrics(
    tmp_path: Path,
) -> None:
    feed, endpoint = spawn("feed", "synth", "--bind", "tcp://127.0.0.1:*", "--rate", "1000",
                           "--instruments", "3", "--seconds", "60", "--inject",
                           "crash:at=3,drop_pct=12,down_s=1.5,recover_s=30", *WAIT)  # fmt: skip
    alerts = tmp_path / "alerts.jsonl"
    log_file = tmp_path / "events.log"
    live = _live(endpoint, tmp_path, "--log-format", "json", "--log-file", str(log_file),
                 "--on-event", f"cat >> '{alerts}'", "--metrics", "127.0.0.1:0",
                 "--seconds", "60")  # fmt: skip
    out, err = Lines(live.stdout), Lines(live.stderr)
    try:
        start = json.loads(err.wait_for(lambda line: '"event": "start"' in line))
        url = start["detail"]["metrics"]
        assert url.startswith("http://127.0.0.1:")
        deadline = time.monotonic() + 90
        while True:  # until the crash has tripped the kill switch, as the scraper sees it
            kind, text = _scrape(url)
            samples = _samples(text)
            state = samples[("tickwise_trading_state", (("scope", "session"),))]
            if state == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        _, plain = _scrape(url, openmetrics_format=False)
    finally:
        live.send_signal(signal.SIGINT)
        try:
            live.wait(timeout=60)  # (its output is read by the threads: never communicate)
        finally:
            live.kill()
            stop(feed)
    lines = err.all()
    assert live.returncode == 0, "".join(lines[-20:])
    stdout = "".join(out.all())

    # The scrape: OpenMetrics when asked (and the older text format too), every family.
    assert kind.startswith("application/openmetrics-text")
    assert state == 2  # halted
    assert samples[("tickwise_trips_total", (("trigger", "price_jump"),))] == 1
    # Every trigger and reason is served from the start, at 0 (a scraper's rate() then sees
    # the first one), and a stop is no trip.
    trips = {
        dict(labels)["trigger"] for (name, labels) in samples if name == "tickwise_trips_total"
    }
    assert {"max_loss", "stale_feed", "manual", "reject_rate", "seq_gap"} <= trips
    assert "stop" not in trips
    assert samples[("tickwise_rejects_total", (("reason", "price_collar"),))] == 0
    assert samples[("tickwise_log_events_total", (("event", "kill"), ("level", "critical")))] == 0
    assert samples[("tickwise_stopping", ())] == 0
    assert samples[("tickwise_feed_to_journal_seconds_count", ())] > 0
    assert samples[("tickwise_events_total", ())] > 0
    assert samples[("tickwise_batches_total", ())] > 0
    assert samples[("tickwise_orders_total", (("status", "new"),))] > 0
    assert samples[("tickwise_log_events_total", (("event", "trip"), ("level", "critical")))] == 1
    for name in HISTOGRAMS:
        buckets = sorted(
            (float(dict(labels)["le"]), value)
            for (sample, labels), value in samples.items()
            if sample == f"{name}_bucket"
        )
        counts = [v for _, v in buckets]
        assert counts == sorted(counts)  # cumulative
        assert buckets[-1][0] == float("inf")
        assert samples[(f"{name}_count", ())] == counts[-1]
    assert samples[("tickwise_batch_seconds_count", ())] > 0  # (the others need an exchange)
    assert samples[("tickwise_batch_seconds_sum", ())] > 0
    names = {f.name for f in prometheus_text(plain)}
    assert {"tickwise_events", "tickwise_trading_state", "tickwise_batch_seconds"} <= names

    # The log lines: one JSON object per event, as it happened, the same in the log file.
    events = [json.loads(line) for line in lines]
    assert all(set(e) == EVENT_KEYS for e in events)
    names_in_order = [e["event"] for e in events]
    assert names_in_order[:3] == ["start", "warmed_up", "first_batch"]
    assert names_in_order[-1] == "end"
    trip = next(e for e in events if e["event"] == "trip")
    assert trip["level"] == "critical"
    assert trip["detail"]["trigger"] == "price_jump"
    assert "kill switch tripped by price_jump" in trip["message"]
    assert "%" in trip["message"]  # (its value and limit with their unit)
    end = events[-1]
    assert end["detail"]["trips"][0]["trigger"] == "price_jump"
    assert end["detail"]["positions_left"] == {
        s: p for s, p in end["detail"]["positions_left"].items() if p["qty"] != 0
    }
    assert [json.loads(line) for line in log_file.read_text().splitlines()] == events
    # The alert command had each event on its stdin, in order (it is given up to 2 s at the
    # stop to take the last ones).
    assert [json.loads(line) for line in alerts.read_text().splitlines()] == events
    # The stop summary (stdout) names the trip, and what was left open.
    assert "session: active -> halted by price_jump" in stdout
    assert ("positions left open" in stdout) != bool(end["detail"]["positions_left"])


def test_a_failing_alert_command_and_a_full_log_disk_are_said_and_trading_goes_on(
    tmp_path: Path,
) -> None:
    feed, endpoint = spawn("feed", "synth", "--bind", "tcp://127.0.0.1:*", "--rate", "500",
                           "--instruments", "3", "--seconds", "30", *WAIT)  # fmt: skip
    live = _live(endpoint, tmp_path, "--on-event", "echo nope >&2; exit 3", "--log-file",
                 "/dev/full", "--seconds", "4")  # fmt: skip
    try:
        out, err = live.communicate(timeout=300)
    finally:
        stop(live, feed)
    assert live.returncode == 0, err
    assert "stopped by 4 s passed" in out
    assert "the log file /dev/full can no longer be written (No space left on device)" in err
    failed = [line for line in err.splitlines() if " alert_failed " in line]
    assert failed
    assert all("exited with status 3: nope" in line for line in failed)
    assert " first_batch " in err  # it traded on
    assert "events the alert command failed on or never got" in out


def test_an_alert_command_that_hangs_never_holds_up_the_session(tmp_path: Path) -> None:
    feed, endpoint = spawn("feed", "synth", "--bind", "tcp://127.0.0.1:*", "--rate", "500",
                           "--instruments", "3", "--seconds", "60", *WAIT)  # fmt: skip
    live = _live(endpoint, tmp_path, "--on-event", "sleep 60", "--seconds", "5")
    try:
        out, err = live.communicate(timeout=120)  # (its stop does not wait for the command)
    finally:
        stop(live, feed)
    assert live.returncode == 0, err
    assert " first_batch " in err  # the events went on as the command slept on the first
    summary = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in out.splitlines()
        if line.count("│") == 3
    }
    assert int(summary["events the alert command failed on or never got"]) >= 3
    assert int(summary["feed messages / events"].split("/")[0].replace(",", "")) > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--metrics", "0.0.0.0:9464"], "--metrics binds to loopback only"),
     (["--metrics", "9464"], "give HOST:PORT"),
     (["--log-format", "xml"], "invalid choice: 'xml'"),
     (["--on-event", " "], "--on-event needs a command"),
     (["--log-file", ""], "--log-file needs a file name")],
)  # fmt: skip
def test_bad_cockpit_options_are_refused_in_one_line_before_anything_starts(
    tmp_path: Path, args: list[str], message: str
) -> None:
    done = subprocess.run([TICKWISE, "live", "--strategy", "mean_reversion", "--instruments",
                           "synth:2", "--journal", str(tmp_path / "j"), *args],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "j").exists()


def test_a_log_file_that_cannot_be_opened_is_refused(tmp_path: Path) -> None:
    done = subprocess.run([TICKWISE, "live", "--strategy", "mean_reversion", "--instruments",
                           "synth:2", "--journal", str(tmp_path / "j"), "--log-file",
                           str(tmp_path)], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode != 0
    assert f"--log-file {tmp_path}" in done.stderr
    assert not (tmp_path / "j").exists()


def _status(control: str) -> dict:
    done = subprocess.run([TICKWISE, "status", "--json", "--control", control, "--timeout",
                           "30"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_flatten_closes_a_live_session_s_positions_then_a_data_fault_refuses_it(
    tmp_path: Path,
) -> None:
    feed, endpoint = spawn("feed", "synth", "--bind", "tcp://127.0.0.1:*", "--rate", "500",
                           "--instruments", "3", "--seconds", "120", *WAIT)  # fmt: skip
    config = tmp_path / "session.toml"
    # (2 s: a loaded machine's feed may pause half a second before the session holds a
    # position; the dead feed below trips it all the same)
    config.write_text("[killswitch]\nstale_feed_ms = 2000.0\n")
    live = _live(endpoint, tmp_path, "--config", str(config), "--seconds", "120")
    out, err = Lines(live.stdout), Lines(live.stderr)
    try:
        control = out.wait_for(lambda line: " on tcp://" in line).rsplit(" on ", 1)[1].strip()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # until it holds a position
            state = _status(control)
            if any(r["position"] for r in state["by_instrument"]):
                break
            time.sleep(0.2)
        assert any(r["position"] for r in state["by_instrument"]), state["by_instrument"]
        unconfirmed = subprocess.run([TICKWISE, "flatten", "--control", control],
                                     capture_output=True, text=True, timeout=60)  # fmt: skip
        assert unconfirmed.returncode == 1
        assert "add --confirm" in unconfirmed.stderr

        flat = subprocess.run([TICKWISE, "flatten", "--confirm", "--reason", "end of day",
                               "--control", control, "--wait", "60", "--timeout", "30"],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert flat.returncode == 0, flat.stderr
        assert "the session is REDUCING; its working orders are cancelled" in flat.stdout
        assert "the session is flat" in flat.stdout
        state = _status(control)
        assert state["state"] == "reducing"
        assert [r["position"] for r in state["by_instrument"]] == [0.0, 0.0, 0.0]
        assert state["working_orders"] == []
        # Status for people: average prices and PnL by instrument, fills, strategy, uptime.
        shown = subprocess.run([TICKWISE, "status", "--control", control], capture_output=True,
                               text=True, timeout=60)  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        for words in (
            "mean_reversion (window=30",
            "up since",
            "by instrument",
            "avg price",
            "unrealised",
            "recent fills",
            "latest events",
            "SYN0",
            "total",
        ):
            assert words in shown.stdout, words

        feed.kill()  # no more data, no heartbeats: stale_feed halts it, a data fault
        feed.wait(timeout=30)
        deadline = time.monotonic() + 60
        while _status(control)["halt_reason"] != "stale_feed" and time.monotonic() < deadline:
            time.sleep(0.2)
        refused = subprocess.run([TICKWISE, "flatten", "--confirm", "--control", control],
                                 capture_output=True, text=True, timeout=60)  # fmt: skip
        assert refused.returncode == 1
        assert "cannot flatten: the session is HALTED by stale_feed" in refused.stderr
    finally:
        live.send_signal(signal.SIGINT)
        try:
            live.wait(timeout=60)
        finally:
            live.kill()
            stop(feed)
    assert live.returncode == 0, "".join(err.all()[-20:])
    said = "".join(err.all())
    assert " flatten " in said
    assert "end of day" in said
    assert " flat " in said
    assert " flatten_refused " in said


FAKE_SESSION = r"""
import json, sys, zmq
replies = [json.loads(line) for line in sys.argv[1:]]
sock = zmq.Context.instance().socket(zmq.ROUTER)
sock.bind("tcp://127.0.0.1:*")
print(sock.getsockopt_string(zmq.LAST_ENDPOINT), flush=True)
for reply in replies:  # one answer per request, then gone
    if not sock.poll(60_000):
        break
    client, _, _ = sock.recv_multipart()
    sock.send_multipart([client, b"", json.dumps(reply).encode()])
"""


def test_status_from_a_socket_that_is_no_tickwise_session_is_one_line_and_never_escapes(
    tmp_path: Path,
) -> None:
    """A reply of the wrong shape is one line naming what is wrong, not a traceback; control
    characters in it (an escape sequence would rewrite the terminal) are shown, not sent."""
    odd = {"ok": True, "state": 3, "halted": "yes"}
    spoof = {"ok": False, "error": "\x1b[2Jcleared"}
    server = subprocess.Popen([sys.executable, "-c", FAKE_SESSION, json.dumps(odd),
                               json.dumps(spoof)], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        endpoint = server.stdout.readline().strip()
        assert endpoint.startswith("tcp://127.0.0.1:")
        shown = subprocess.run([TICKWISE, "status", "--control", endpoint, "--timeout", "30"],
                               capture_output=True, text=True, timeout=60)  # fmt: skip
        refused = subprocess.run([TICKWISE, "status", "--control", endpoint, "--timeout", "30"],
                                 capture_output=True, text=True, timeout=60)  # fmt: skip
    finally:
        server.kill()
        server.wait(30)
    assert shown.returncode == 1
    assert "the answer is not a status this tickwise reads" in shown.stderr
    assert "Traceback" not in shown.stderr
    assert refused.returncode == 1
    assert "\x1b" not in refused.stderr
    assert "\\x1b[2Jcleared" in refused.stderr
