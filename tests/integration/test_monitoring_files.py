"""The desk's monitoring files (docs/monitoring/): Prometheus alert rules and a Grafana
dashboard that name only metrics and labels a live session serves. The key check scrapes
real sessions on 127.0.0.1 (a synthetic feed, the paper exchange, a session trading through
it; and a session fed malformed messages and bad rows) so that a renamed metric or label
fails here, not on the desk's screens."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tickwise.feeds import wire
from tickwise.feeds.transport import Publisher

from .processes import TICKWISE, WAIT, Lines, spawn, stop

MONITORING = Path(__file__).parents[2] / "docs" / "monitoring"
ALERTS = MONITORING / "alerts.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
PROMETHEUS_LABELS = {"job", "instance"}  # added by Prometheus when it scrapes
SEVERITIES = {"critical", "warning", "info"}
STATES = {"0": ("ACTIVE", "green"), "1": ("REDUCING", "orange"), "2": ("HALTED", "red")}
# Grafana's variables, as Prometheus would see them once Grafana has filled them in.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$job": ".+", "$instance": ".+"}
# A throttle of 2 orders a second: mean_reversion's first burst is rejected and trips
# reject_rate, so the rejects, trips and critical log events carry samples to check (and
# late events on a busy machine must not halt the session before it has sent an order).
THROTTLED = "[risk]\nmax_orders_per_sec = 2\n[killswitch]\nmax_feed_latency_ms = 0\n"
PARAMS = ["--param", "window=30", "--param", "entry_z=1.0", "--param", "qty=100"]
START_S = 400.0  # a session compiles its loop first when no cache has it (cold: minutes)
SEEN_S = 120.0  # then, for what the test waits to see in a scrape

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`')
_METRIC = re.compile(r"\btickwise_[a-z0-9_]+")
_SELECTOR = re.compile(r"\b(tickwise_[a-z0-9_]+)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


# --- the files -----------------------------------------------------------------------------


def _rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"]
            for rule in group["rules"]]  # fmt: skip


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows too; rows themselves are not panels."""
    for panel in panels:
        yield from _panels(panel.get("panels", []))
        if panel["type"] != "row":
            yield panel


def _queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every query in the alert rules and the dashboard (its panels, its
    annotations and its variables' label_values)."""
    found = [(f"alert {rule['alert']}", rule["expr"]) for rule in _rules()]
    board = json.loads(DASHBOARD.read_text())
    for panel in _panels(board["panels"]):
        found += [(f"panel {panel['title']!r}", t["expr"]) for t in panel["targets"]]
    for note in board["annotations"]["list"]:
        if "expr" in note:
            found.append((f"annotation {note['name']!r}", note["expr"]))
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            found.append((f"variable ${variable['name']}", variable["query"]["query"]))
    return found


def _uses(expr: str) -> dict[str, dict[str, set[str]]]:
    """The tickwise metrics a query names, each with the labels it matches or groups by
    (label -> the values an equality matcher asks for). A grouping clause's labels must be
    on every tickwise metric of its query (each of ours aggregates one metric)."""
    bare = _STRING.sub('""', expr)
    grouped = {label.strip() for clause in _GROUPING.findall(bare) for label in
               clause.split(",") if label.strip()}  # fmt: skip
    used: dict[str, dict[str, set[str]]] = {
        name: {label: set() for label in grouped} for name in _METRIC.findall(bare)
    }
    for name, matchers in _SELECTOR.findall(expr):
        for label, op, value in _MATCHER.findall(matchers):
            used[name].setdefault(label, set())
            if op == "=":
                used[name][label].add(value)
    return used


def test_alert_rules_are_a_prometheus_rule_file_each_with_severity_and_a_summary() -> None:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    assert groups
    assert all(group["name"] and group["rules"] for group in groups)
    rules = _rules()
    assert len({rule["alert"] for rule in rules}) == len(rules)  # names unique
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["expr"].strip(), rule["alert"]
        assert _DURATION.match(rule["for"]), (rule["alert"], rule["for"])
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert rule["annotations"]["description"].strip(), rule["alert"]
    # What the desk is told of: a trip at once and naming its scope, the feed, the exchange,
    # rejects, latency, a session gone, a critical event.
    by_metric = {name: rule for rule in rules for name in _uses(rule["expr"])}
    trip = by_metric["tickwise_trading_state"]
    assert (trip["for"], trip["labels"]["severity"]) == ("0m", "critical")
    assert "$labels.scope" in trip["annotations"]["summary"]
    assert {"tickwise_feed_age_seconds", "tickwise_exchange_age_seconds",
            "tickwise_rejects_total", "tickwise_feed_to_order_seconds_bucket",
            "tickwise_session_info", "tickwise_log_events_total"} <= set(by_metric)  # fmt: skip
    assert "rate(tickwise_rejects_total[1m])" in by_metric["tickwise_rejects_total"]["expr"]
    assert any(re.search(r"\bup\{", rule["expr"]) for rule in rules)


def test_dashboard_panels_each_query_prometheus_and_set_their_unit() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"job", "instance"} <= set(variables)
    panels = list(_panels(board["panels"]))
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        title = panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        assert panel["targets"], title
        assert all(t["expr"].strip() and t["refId"] for t in panel["targets"]), title
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), title
        unit = panel["fieldConfig"]["defaults"]["unit"]
        assert unit, title
        exprs = " ".join(t["expr"] for t in panel["targets"])
        if "pnl" in exprs:  # prices carry no currency
            assert (unit, "price units" in title) == ("none", True), title
        if "histogram_quantile" in exprs or "_age_seconds" in exprs:
            assert unit == "s", title
        if "tickwise_trading_state" in exprs:
            mappings = panel["fieldConfig"]["defaults"]["mappings"][0]["options"]
            assert {k: (m["text"], m["color"]) for k, m in mappings.items()} == STATES, title


def test_alert_rules_and_dashboard_queries_are_valid_promql() -> None:
    promql = pytest.importorskip("promql_parser")
    for where, expr in _queries():
        if where.startswith("variable"):  # label_values(...) is Grafana's, not PromQL
            continue
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        try:
            promql.parse(expr)
        except ValueError as exc:
            raise AssertionError(f"{where}: {exc}\n{expr}") from None


# --- the sessions --------------------------------------------------------------------------


def _live(tmp_path: Path, name: str, feed: str, *extra: str) -> tuple[subprocess.Popen, Lines]:
    """A session serving metrics on a free loopback port, its event lines JSON on stderr."""
    live = subprocess.Popen([TICKWISE, "live", "--strategy", "mean_reversion", "--feed", feed,
                             "--instruments", "synth:3", *PARAMS, "--journal",
                             str(tmp_path / name), "--control", "tcp://127.0.0.1:*",
                             "--metrics", "127.0.0.1:0", "--log-format", "json", "--seconds",
                             "900", *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    return live, Lines(live.stderr)


def _metrics_url(err: Lines) -> str:
    start = json.loads(err.wait_for(lambda line: '"event": "start"' in line, START_S))
    url = start["detail"]["metrics"]
    assert url.startswith("http://127.0.0.1:")
    return url


def _scrape(url: str) -> dict[str, dict[str, set[str]]]:
    """sample name -> label -> the values it takes, from an OpenMetrics scrape."""
    asked = urllib.request.Request(
        url, headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    with urllib.request.urlopen(asked, timeout=30) as reply:
        text = reply.read().decode()
    served: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = served[sample.name]  # (a sample without labels is served too)
            for label, value in sample.labels.items():
                labels[label].add(value)
    return served


def _scrape_until(url: str, err: Lines, wanted: dict[str, dict[str, set[str]]]
                  ) -> dict[str, dict[str, set[str]]]:  # fmt: skip
    """The first scrape that serves each sample name of `wanted`, its labels taking (at
    least) the values given; within SEEN_S."""
    deadline = time.monotonic() + SEEN_S
    while True:
        served = _scrape(url)
        missing = {
            name: labels
            for name, labels in wanted.items()
            if name not in served
            or any(values - served[name].get(label, set()) for label, values in labels.items())
        }
        if not missing:
            return served
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{url} never served {missing} within {SEEN_S:g} s; the "
                f"session said: {err.lines[-5:]}"
            )
        time.sleep(0.2)


def _quotes(n: int, **values: object) -> dict[str, np.ndarray]:
    """`n` calm quotes at 100 on instrument 0, stamped now, with the given columns replaced."""
    dtype = wire.DTYPES["quotes"]
    now = time.time_ns()
    base = {"ts_event": now, "ts_recv": now, "instrument": 0, "seq": 0, "bid_px": 100.0,
            "ask_px": 100.02, "bid_sz": 10.0, "ask_sz": 10.0} | values  # fmt: skip
    return {name: np.full(n, base[name], dtype=dtype.fields[name][0]) for name in dtype.names}


def _served_by_live_sessions(tmp_path: Path) -> dict[str, dict[str, set[str]]]:
    """What two live sessions serve, together: one on `tickwise feed synth` trading through
    `tickwise exchange` (throttled, so it rejects and trips), and one fed by this test
    malformed messages and bad rows (which no real feed sends)."""
    config = tmp_path / "throttled.toml"
    config.write_text(THROTTLED)
    procs: list[subprocess.Popen] = []
    hostile = Publisher("tcp://127.0.0.1:*")
    try:
        # One at a time: sessions compiling side by side (no cache yet) would starve each other.
        fed, fed_err = _live(tmp_path, "fed", hostile.endpoint)
        procs.append(fed)
        fed_url = _metrics_url(fed_err)
        assert hostile.wait_for_subscriber(60.0), "the session never subscribed"
        time.sleep(0.3)  # (the subscription settles)
        hostile.publish("quotes", _quotes(5))
        hostile.socket.send_multipart([b"TW\x01\x09" + bytes(36), b""])  # unknown schema
        hostile.publish("quotes", _quotes(1, instrument=100_000))
        hostile.publish("quotes", _quotes(1, bid_px=np.nan))
        served = _scrape_until(fed_url, fed_err, {
            "tickwise_malformed_messages_total": {"reason": {"schema"}},
            "tickwise_bad_rows_total": {"reason": {"unknown_instrument", "bad_price"}},
        })  # fmt: skip

        feed, feed_ep = spawn("feed", "synth", "--bind", "tcp://127.0.0.1:*", "--rate", "1000",
                              "--instruments", "3", "--seconds", "900", "--subscribers", "2",
                              *WAIT)  # fmt: skip
        procs.append(feed)
        exchange, gateway = spawn("exchange", "--bind", "tcp://127.0.0.1:*", "--feed", feed_ep,
                                  "--instruments", "synth:3", "--seconds", "900")  # fmt: skip
        procs.append(exchange)
        trading, trading_err = _live(tmp_path, "trading", feed_ep, "--gateway", gateway,
                                     "--config", str(config))  # fmt: skip
        procs.append(trading)
        for name, labels in _scrape_until(_metrics_url(trading_err), trading_err, {
            "tickwise_rejects_total": {"reason": {"max_orders_per_sec"}},
            "tickwise_trips_total": {},
            "tickwise_log_events_total": {"level": {"critical"}},
            "tickwise_exchange_age_seconds": {},
        }).items():  # fmt: skip
            merged = served[name]
            for label, values in labels.items():
                merged[label] |= values
    finally:
        stop(*reversed(procs), drain=False)
        hostile.close()
    sessions = [fed, trading]
    assert all(p.returncode == 0 for p in sessions), [p.returncode for p in sessions]
    return served


@pytest.mark.timeout(900)
def test_every_metric_and_label_the_dashboard_and_alerts_use_is_served_by_a_live_session(
    tmp_path: Path,
) -> None:
    served = _served_by_live_sessions(tmp_path)
    # What the sessions were driven to serve, so that every family has samples to check.
    # (every reason is served from 0: the fed session's malformed message is one of them)
    assert served["tickwise_malformed_messages_total"]["reason"] == {
        "frames", "header", "schema", "rows", "size"}  # fmt: skip
    assert served["tickwise_bad_rows_total"]["reason"] == {"unknown_instrument", "bad_price"}
    assert "max_orders_per_sec" in served["tickwise_rejects_total"]["reason"]
    assert "critical" in served["tickwise_log_events_total"]["level"]

    wrong = []
    for where, expr in _queries():
        for name, labels in _uses(expr).items():
            if name not in served:
                family = re.sub(r"_(bucket|count|sum|total|info|created)$", "", name)
                like = sorted(s for s in served if s.startswith(family)) or "nothing like it"
                wrong.append(f"{where}: {name} is not served (served: {like})")
                continue
            for label, values in labels.items():
                if label in PROMETHEUS_LABELS:
                    continue
                if label not in served[name]:
                    wrong.append(f"{where}: {name} has no label {label!r} "
                                 f"(its labels: {sorted(served[name])})")  # fmt: skip
                elif values - served[name][label]:
                    wrong.append(f"{where}: {name}{{{label}}} never takes "
                                 f"{sorted(values - served[name][label])} (served: "
                                 f"{sorted(served[name][label])})")  # fmt: skip
    assert not wrong, "\n".join(wrong)
