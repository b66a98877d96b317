"""Live trading: `tickwise live`, `exchange`, `demo`; the levers `status`, `kill`, `resume`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from rich.table import Table

from tickwise.cli.common import (
    control_options,
    counts,
    instrument_table,
    money,
    operator,
    operator_option,
    p50_p99,
    parse_params,
    print_measures,
    printable,
    scrubbed,
    state_line,
    subparser,
)
from tickwise.engine.console import fmt_ns, plain, stdout
from tickwise.engine.errors import TickwiseError


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add the live commands to the command tree."""
    live = subparser(
        commands, "live", "a live session: feed in, strategy, risk, kill switch, orders out, "
        "journal, control",
        "tickwise live --strategy mean_reversion --feed tcp://127.0.0.1:5555 "
        "--gateway tcp://127.0.0.1:5570 --instruments data/quotes.parquet "
        "--journal sessions/today   (or: tickwise live --config session.toml)",
    )  # fmt: skip
    live.add_argument(
        "--config",
        type=Path,
        default=None,
        help="session file (TOML): [live] strategy, feed, instruments, gateway, control, "
        "journal; [params]; [backtest] fee/latency models; [risk]; [killswitch]. Flags given "
        "here override it",
    )
    live.add_argument("--strategy", help="registered name, path/to/file.py:Class or module:Class")
    live.add_argument("--feed", help="market data to subscribe to (tcp://127.0.0.1:5555)")
    live.add_argument(
        "--instruments",
        help="the instrument table: a tickwise Parquet history carrying it, or synth:N for "
        "the synthetic market's N instruments",
    )
    live.add_argument("--param", action="append", default=[], metavar="K=V",
                      help="strategy parameter, repeatable")  # fmt: skip
    live.add_argument(
        "--gateway",
        help="send orders to the paper exchange at this endpoint (`tickwise exchange`); "
        "without it, orders fill in the engine's own simulated exchange",
    )
    live.add_argument("--journal", help="journal folder (one session's: it is locked)")
    live.add_argument("--control", help="control socket (tcp://127.0.0.1:5560)")
    live.add_argument("--seconds", type=float, default=None, help="stop after this long")
    operator_option(live)
    live.add_argument("--until-idle", type=float, default=None, metavar="SECONDS",
                      help="stop once the feed has sent nothing for this long")  # fmt: skip
    live.add_argument("--log-format", choices=("text", "json"), default=None,
                      help="the event lines on stderr (start, trips, kills, resumes, reject "
                      "storms, feed and exchange lost and back, stop): text for people "
                      "(default) or json, one object per line")  # fmt: skip
    live.add_argument("--log-file", default=None, metavar="PATH",
                      help="also append the event lines to this file")  # fmt: skip
    live.add_argument("--on-event", default=None, metavar="CMD",
                      help="run this shell command for each event, with the event as JSON on "
                      "its stdin (a pager, chat or e-mail script); never holds up trading: "
                      "a failing or slow command is logged")  # fmt: skip
    live.add_argument("--metrics", default=None, metavar="HOST:PORT",
                      help="serve Prometheus/OpenMetrics metrics at http://HOST:PORT/metrics "
                      "(loopback only, e.g. 127.0.0.1:9464)")  # fmt: skip
    live.set_defaults(run=_cmd_live)

    exchange = subparser(
        commands, "exchange", "the paper exchange: the backtester's matching, fees and latency "
        "as a process that takes orders over ZeroMQ",
        "tickwise exchange --bind tcp://127.0.0.1:5570 --feed tcp://127.0.0.1:5555 "
        "--instruments synth:3 --config fees.toml",
    )  # fmt: skip
    exchange.add_argument("--bind", default="tcp://127.0.0.1:5570",
                          help="order socket (tcp://127.0.0.1:5570; loopback only)")  # fmt: skip
    exchange.add_argument("--feed", default="tcp://127.0.0.1:5555", help="market data to match on")
    exchange.add_argument("--instruments", required=True,
                          help="instruments: a tickwise Parquet history, or synth:N")  # fmt: skip
    exchange.add_argument("--config", type=Path, default=None,
                          help="TOML: [backtest] fees and order latency/jitter/seed")  # fmt: skip
    exchange.add_argument("--heartbeat-ms", type=float, default=100.0,
                          help="heartbeat a client hearing nothing this long (100)")  # fmt: skip
    exchange.add_argument("--client-timeout-ms", type=float, default=1_000.0,
                          help="cancel a silent client's orders after this (1000)")  # fmt: skip
    exchange.add_argument("--seconds", type=float, default=None, help="stop after this long")
    exchange.set_defaults(run=_cmd_exchange)

    demo = subparser(
        commands, "demo", "a synthetic feed and a live session on loopback, with a flash crash "
        "the kill switch must catch", "tickwise demo --seconds 20",
    )  # fmt: skip
    demo.add_argument("--seconds", type=float, default=20.0, help="how long to run (20)")
    demo.add_argument("--out", type=Path, default=Path("demo-data/live"), metavar="FOLDER",
                      help="keep each run's journal and logs in a new folder of this one "
                      "(demo-data/live)")  # fmt: skip
    demo.add_argument("--top", action="store_true",
                      help="show the session in `tickwise top` (full screen, keys to kill, "
                      "resume and flatten it) instead of the demo's table")  # fmt: skip
    operator_option(demo)
    demo.set_defaults(run=_cmd_demo)

    status = subparser(
        commands, "status", "a live session's state, kill switch, positions and PnL",
        "tickwise status --control tcp://127.0.0.1:5560",
    )  # fmt: skip
    control_options(status)
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.set_defaults(run=_cmd_status)

    kill = subparser(
        commands, "kill", "halt a live session's automated trading now (a person's command)",
        'tickwise kill --reason "fat finger on SYN2"',
    )  # fmt: skip
    control_options(kill)
    kill.add_argument("--reason", default=None,
                      help="why, in your words (journaled with the halt; 1,000 characters at "
                      "most)")  # fmt: skip
    operator_option(kill)
    kill.add_argument("--instrument", default=None, help="halt only this symbol")
    kill.add_argument(
        "--reducing", action="store_true", help="go to REDUCING (orders that reduce pass)"
    )
    kill.set_defaults(run=_cmd_kill)

    resume = subparser(
        commands, "resume", "let a halted session trade again (refused while its cause persists)",
        "tickwise resume --confirm",
    )  # fmt: skip
    control_options(resume)
    resume.add_argument(
        "--confirm", action="store_true", help="required: automated orders will leave again"
    )
    resume.add_argument("--reason", default=None, help="why, in your words (journaled)")
    operator_option(resume)
    resume.add_argument("--instrument", default=None, help="resume only this symbol")
    resume.add_argument("--reducing", action="store_true", help="resume to REDUCING, not ACTIVE")
    resume.set_defaults(run=_cmd_resume)

    flatten = subparser(
        commands, "flatten", "cancel a live session's working orders and close its positions "
        "inside the price collar; it stays REDUCING (refused while a data fault halts it)",
        "tickwise flatten --confirm   (one instrument: tickwise flatten --instrument SYN1 "
        "--confirm)",
    )  # fmt: skip
    control_options(flatten)
    flatten.add_argument(
        "--confirm", action="store_true", help="required: orders will leave to close positions"
    )
    flatten.add_argument("--instrument", default=None, help="flatten only this symbol")
    flatten.add_argument("--reason", default=None, help="why, in your words (journaled)")
    operator_option(flatten)
    flatten.add_argument("--wait", type=float, default=10.0, metavar="SECONDS",
                         help="wait this long for the session to say it is flat (10; 0: do "
                         "not wait); exit status 1 if it is not flat by then")  # fmt: skip
    flatten.set_defaults(run=_cmd_flatten)


_LIVE_DEFAULTS = {"feed": "tcp://127.0.0.1:5555", "control": "tcp://127.0.0.1:5560"}


def _session_settings(args: argparse.Namespace) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """The session file's [live] table (if any) overlaid with the flags given."""
    from tickwise.engine.config import SessionConfig, load_config

    config, params = (SessionConfig(), {}) if args.config is None else load_config(args.config)
    table = {k: v for k, v in dataclasses.asdict(config.live).items() if v is not None}
    settings = {**_LIVE_DEFAULTS, **table}
    for key in {f.name for f in dataclasses.fields(config.live)}:
        flag = getattr(args, key, None)
        if flag is not None:
            settings[key] = flag
    missing = [k for k in ("strategy", "instruments", "journal") if k not in settings]
    if missing:
        raise TickwiseError(
            f"a live session needs {', '.join('--' + k for k in missing)} "
            "(or the same keys in the [live] table of --config)"
        )
    if not str(settings["journal"]).strip():
        raise TickwiseError("--journal needs a folder (an empty name would be the current one)")
    params |= parse_params(args.param)
    return config, params, settings


def _cmd_live(args: argparse.Namespace) -> int:
    import signal

    from tickwise.engine.live.runner import run_live

    config, params, settings = _session_settings(args)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as on Ctrl-C
    gateway = settings.get("gateway")

    def ready(endpoint: str) -> None:
        where = f"orders to {gateway}" if gateway else "orders filled in process"
        print(f"live: {settings['strategy']} on {settings['feed']}, {where}, "
              f"control on {endpoint}", flush=True)  # fmt: skip

    log_file = settings.get("log_file")
    if log_file is not None and not str(log_file).strip():
        raise TickwiseError("--log-file needs a file name (an empty one would write nowhere)")
    summary = run_live(
        str(settings["strategy"]), str(settings["feed"]),
        instrument_table(str(settings["instruments"])), params, config,
        journal_dir=Path(settings["journal"]), control=str(settings["control"]), gateway=gateway,
        seconds=settings.get("seconds"), until_idle_s=args.until_idle, on_ready=ready,
        operator=operator(args), log_format=settings.get("log_format") or "text",
        log_file=Path(log_file) if log_file else None, on_event=settings.get("on_event"),
        metrics=settings.get("metrics"),
    )  # fmt: skip
    lat = summary.latency_us
    rows = [
        ("feed messages / events", f"{summary.batches:,} / {summary.events:,}"),
        ("orders / fills / rejects",
         f"{summary.orders:,} / {summary.fills:,} / {summary.rejects:,}"),
        ("PnL (price units, after fees)", f"{summary.pnl:,.2f}"),
        ("kill switch", state_line(summary.status)),
        ("resting orders cancelled on stop", f"{summary.cancelled_on_stop:,}"),
        ("feed: heartbeats / gaps / malformed messages",
         f"{summary.heartbeats:,} / {summary.gaps:,} / {sum(summary.malformed.values()):,}"),
        ("rows dropped at the boundary, by reason", counts(summary.bad_rows)),
        ("rows of kinds the strategy does not take", counts(summary.ignored)),
        ("feed send -> messages journaled, per message (wall clock, µs)", p50_p99(lat)),
    ]  # fmt: skip
    if gateway:
        rows += [
            ("feed send -> orders sent, per turn with orders (wall clock, µs)",
             p50_p99(summary.tick_to_order_us)),
            ("request -> exchange reply, round trip (wall clock, µs)",
             p50_p99(summary.round_trip_us)),
            ("orders the exchange had not confirmed gone at the end", f"{summary.left_open:,}"),
        ]  # fmt: skip
    rows += [(f"position left open: {sym}",
              f"{p['qty']:,.10g} @ {p['avg_px']:,.10g} (unrealised {p['unrealized']:,.2f})")
             for sym, p in summary.positions_left.items()]  # fmt: skip
    if not summary.positions_left:
        rows.append(("positions left open", "none (flat)"))
    automatic = [t for t in summary.trips if t["trigger"] not in ("manual", "stop")]
    rows.append(("kill-switch trips (automatic) / changes of state",
                 f"{len(automatic):,} / {len(summary.trips):,}"))  # fmt: skip
    rows += [(f"  {fmt_ns(t['ts'], 3)}", f"{t['scope']}: {t['from']} -> {t['to']} by "
              f"{t['trigger']}") for t in summary.trips[-10:]]  # fmt: skip
    if summary.lines_dropped:
        rows.append(("event lines a stalled stderr or log file could not take (dropped)",
                     f"{summary.lines_dropped:,}"))  # fmt: skip
    if summary.alerts_not_sent:
        rows.append(("events the alert command failed on or never got",
                     f"{summary.alerts_not_sent:,}"))  # fmt: skip
    rows.append(("wall clock", f"{summary.wall_s:.1f} s"))
    print_measures(f"live session, stopped by {summary.stopped_by}", rows)
    if summary.journal_failure is not None:
        raise TickwiseError(
            f"the journal in {settings['journal']} was lost ({summary.journal_failure}); the "
            f"session halted and stopped; not journaled: {counts(summary.not_journaled)}"
        )
    stdout.print(f"journal in {settings['journal']}", markup=False)
    return 0


def _cmd_exchange(args: argparse.Namespace) -> int:
    import signal

    from tickwise.engine.config import SessionConfig, load_config
    from tickwise.engine.live.exchange import PaperExchange, run_exchange
    from tickwise.engine.live.runner import stop_on_signals

    if args.seconds is not None and not args.seconds > 0:
        raise TickwiseError(f"--seconds must be positive, got {args.seconds}")
    config = SessionConfig() if args.config is None else load_config(args.config)[0]
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    stop: list[str] = []
    with PaperExchange(
        args.bind, args.feed, instrument_table(args.instruments), config,
        heartbeat_ms=args.heartbeat_ms, client_timeout_ms=args.client_timeout_ms,
    ) as exchange, stop_on_signals(stop):  # fmt: skip
        print(f"paper exchange (market from {args.feed}) on {exchange.endpoint}", flush=True)
        summary = run_exchange(exchange, args.seconds, stop)
        resting = exchange.open_orders()
    print_measures(f"paper exchange, stopped by {stop[0] if stop else 'its time'}", (
        ("clients", f"{summary.clients:,}"),
        ("requests / orders accepted / rejected / cancels",
         f"{summary.requests:,} / {summary.orders:,} / {summary.rejects:,} / {summary.cancels:,}"),
        ("fills", f"{summary.fills:,}"),
        ("orders cancelled on a client's disconnect", f"{summary.cancelled_on_disconnect:,}"),
        ("market events matched against", f"{summary.market_events:,}"),
        ("malformed messages dropped", f"{summary.malformed:,}"),
        ("market rows dropped at the boundary", f"{sum(summary.bad_rows.values()):,}"),
        *((f"  of which {reason}", f"{count:,}") for reason, count in summary.bad_rows.items()),
        ("orders resting at the end", f"{resting:,}"),
    ))  # fmt: skip
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from tickwise.engine.live.demo import run_demo, table_view

    if args.top and not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise TickwiseError("--top is a full-screen view: run the demo in a terminal")
    last, folder = run_demo(args.seconds, args.out, _top_view(args) if args.top else table_view)
    if not last:
        raise TickwiseError("the demo's live session never answered its control socket")
    trip = last.get("halt_reason")
    stdout.print()
    stdout.print(
        f"demo over: {last['events']:,} events in {last['batches']:,} batches, "
        f"PnL {last['pnl']:,.2f} (price units); kill switch: "
        + (f"tripped by {trip}, trading {last['state']}" if trip else "not tripped"),
        markup=False,
    )
    held = [f"{r['symbol']} {r['position']:,.10g} @ {r['avg_px']:,.2f}"
            for r in last.get("by_instrument") or [] if r["position"]]  # fmt: skip
    stdout.print(f"positions left open: {', '.join(held) or 'none (flat)'} (as last heard)",
                 markup=False)  # fmt: skip
    journal = folder / "journal"
    stdout.print(f"its journal is kept in {journal}; read it with:\n"
                 f"  tickwise journal replay {journal}   (positions, from the journal)\n"
                 f"  tickwise journal events {journal}   (every kill-switch transition)\n"
                 f"and its event log: {folder / 'events.log'}", markup=False)  # fmt: skip
    return 0


def _top_view(args: argparse.Namespace) -> Any:
    """`tickwise top` as the demo's view: it closes itself when the session ends."""
    from tickwise.cli.top import Link, top_app

    def view(control: str, live: Any, seconds: float, crash_at: float) -> dict[str, Any]:
        app = top_app(Link(control), operator(args), stop_when=lambda: live.poll() is not None)
        app.run()
        return app.seen.status

    return view


def _control(args: argparse.Namespace, payload: dict[str, Any]) -> dict[str, Any]:
    from tickwise.engine.live.control import request

    key = args.server_key.encode() if args.server_key else None
    reply = request(args.control, payload, timeout_s=args.timeout, server_key=key)
    if not reply.get("ok"):
        raise TickwiseError(f"the session refused: {printable(str(reply.get('error')))}")
    return reply


def _print_status(reply: dict[str, Any]) -> None:
    """A status as tables; a reply this tickwise cannot read as a status (a socket that is not
    a tickwise session's, or another version's) is one line naming what is wrong."""
    try:
        _print_status_tables(scrubbed(reply))
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
        raise TickwiseError(
            f"the answer is not a status this tickwise reads ({type(exc).__name__}: "
            f"{printable(str(exc))[:200]}): is it a tickwise session's control socket?"
        ) from None


def _print_status_tables(reply: dict[str, Any]) -> None:
    table = Table(title="live session", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value")
    reasons = reply.get("reasons") or {}
    params = reply.get("params") or {}
    rows = []
    if reply.get("strategy"):
        rows += [
            ("strategy", f"{reply['strategy']} ("
             + ", ".join(f"{k}={v}" for k, v in params.items()) + ")"),
            ("up since (UTC) / for", f"{reply.get('started', '-')} / "
             f"{_duration(reply.get('uptime_s', 0.0))}"),
            ("started by", str(reply.get("started_by") or "-")),
        ]  # fmt: skip
    rows += [
        ("state", state_line(reply)),
        (
            "a person's halt, because",
            "; ".join(f"{scope or 'session'}: {why}" for scope, why in reasons.items()) or "-",
        ),
        ("resume blocked by", "; ".join(reply["resume_blocked_by"] or []) or "nothing"),
        ("PnL (price units)", money(reply["pnl"])),
        ("events processed", f"{reply['events']:,}"),
        ("orders sent / fills", f"{reply.get('orders_sent', 0):,} / {reply.get('fills', 0):,}"),
        ("orders per second (last 5 s)", f"{reply.get('orders_per_s', 0.0):,.1f}"),
        ("open orders", f"{reply['open_orders']:,}"),
        ("feed send -> message journaled (µs)", p50_p99(reply.get("latency_us") or {})),
        ("rows dropped at the boundary", counts(reply.get("bad_rows") or {})),
    ]
    if "gateway" in reply:
        gw = reply["gateway"]
        rows += [
            ("feed send -> orders out (µs)", p50_p99(reply.get("tick_to_order_us") or {})),
            ("request -> exchange reply (µs)", p50_p99(reply.get("round_trip_us") or {})),
            ("exchange", f"{gw['endpoint']}, last heard {gw['silent_ms']:,.0f} ms ago, "
                         f"{gw['in_flight']} request(s) unanswered"),
        ]  # fmt: skip
    if reply.get("rejects_by_reason"):
        rows.append(("rejects by reason", counts(reply["rejects_by_reason"])))
    if "by_instrument" not in reply:  # (a session of an older tickwise)
        rows += [(f"position {sym}", f"{qty:,.4g}") for sym, qty in reply["positions"].items()]
    rows += [(f"{fmt_ns(h['ts'], 3)}", f"{h['scope']}: {h['from']} -> {h['to']} by {h['trigger']}")
             for h in reply.get("history", [])[-5:]]  # fmt: skip
    for name, value in rows:
        table.add_row(*plain(name, value))
    stdout.print(table)
    if reply.get("by_instrument"):
        _print_instruments(reply["by_instrument"])
    if reply.get("working_orders"):
        _print_rows(f"working orders ({reply['open_orders']:,}; newest first, at most 10)",
                    ("id", "symbol", "side", "price", "qty", "left", "age (ms)", "cancelling"),
                    [(o["id"], o["symbol"], o["side"], _px(o["price"]), f"{o['qty']:,.10g}",
                      f"{o['left']:,.10g}", f"{o['age_ms']:,.0f}",
                      "yes" if o["cancelling"] else "")
                     for o in reply["working_orders"][:10]])  # fmt: skip
    if reply.get("recent_fills"):
        _print_rows("recent fills (latest 5; prices and fees in price units)",
                    ("time (UTC)", "symbol", "side", "price", "qty", "fee", "liquidity"),
                    [(f["ts"], f["symbol"], f["side"], _px(f["price"]), f"{f['qty']:,.10g}",
                      f"{f['fee']:,.4f}", f["liquidity"])
                     for f in reply["recent_fills"][-5:]])  # fmt: skip
    if reply.get("events_log"):
        _print_rows("latest events", ("time (UTC)", "level", "event", "what"),
                    [(e["ts"], e["level"], e["event"], e["message"])
                     for e in reply["events_log"][-5:]])  # fmt: skip


def _print_instruments(rows: list[dict[str, Any]]) -> None:
    """Positions, average prices and PnL by instrument, with a total (price units)."""
    shown = [(r["symbol"], r["state"].upper() + (f" by {r['trigger']}" if r["trigger"] else ""),
              f"{r['position']:,.10g}", _px(r["avg_px"]), _px(r["mark"]),
              money(r["realized"]), money(r["unrealized"]), money(r["fees"]), money(r["pnl"]))
             for r in rows]  # fmt: skip
    total = [sum(r[k] for r in rows) for k in ("realized", "unrealized", "fees", "pnl")]
    shown.append(("total", "", "", "", "", *(money(v) for v in total)))
    _print_rows("by instrument (prices and PnL in price units; PnL = realised + unrealised at "
                "the mark (mid) - fees)", ("symbol", "state", "position", "avg price", "mark",
                "realised", "unrealised", "fees", "PnL"), shown)  # fmt: skip


def _print_rows(title: str, header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    table = Table(title=title, title_justify="left")
    for name in header:
        table.add_column(name, justify="left" if name in ("symbol", "what") else "right")
    for row in rows:
        table.add_row(*plain(*(str(v) for v in row)))
    stdout.print(table)


def _px(price: float | None) -> str:
    return "-" if price is None else f"{price:,.10g}"


def _duration(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:d}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _cmd_status(args: argparse.Namespace) -> int:
    reply = _control(args, {"cmd": "status"})
    if args.json:
        print(json.dumps(reply, indent=2))
    else:
        _print_status(reply)
    return 0


def _cmd_kill(args: argparse.Namespace) -> int:
    payload = {"cmd": "kill", "reason": args.reason, "instrument": args.instrument,
               "state": "reducing" if args.reducing else "halted",
               "operator": operator(args)}  # fmt: skip
    _print_status(_control(args, payload))
    return 0


def _cmd_flatten(args: argparse.Namespace) -> int:
    import time

    if not args.confirm:
        raise TickwiseError("flatten sends orders that close positions: add --confirm")
    if not args.wait >= 0:
        raise TickwiseError(f"--wait must be 0 or more seconds, got {args.wait}")
    payload = {"cmd": "flatten", "confirm": True, "instrument": args.instrument,
               "reason": args.reason, "operator": operator(args)}  # fmt: skip
    asked = time.monotonic()
    reply = _control(args, payload)
    sent = reply.get("flatten") or {}
    where = args.instrument or "the session"
    state = reply.get("state", "?")
    if args.instrument:
        state = next((r["state"] for r in reply.get("by_instrument") or []
                      if r["symbol"] == args.instrument), state)  # fmt: skip
    stdout.print(f"{where} is {state.upper()}; its working orders are cancelled", markup=False)
    for symbol, row in sent.items():
        done = f"order {row['order']}" if row["order"] else f"no order: {row['refused']}"
        stdout.print(f"  closing {symbol} {row['position']:,.10g}: {done}", markup=False)
    if not sent:
        stdout.print("  no position to close", markup=False)
    job = _flatten_job(reply)
    if args.wait == 0 or job is None:
        return 0
    deadline = asked + args.wait
    while True:
        status = _control(args, {"cmd": "status"})
        said = [e for e in status.get("events_log") or []
                if e["event"] in ("flat", "flatten_incomplete", "flatten_stopped")
                and (e.get("detail") or {}).get("job") == job]  # fmt: skip
        if said:
            last = said[-1]
            stdout.print(last["message"], markup=False)
            if last["event"] != "flat":
                raise TickwiseError(f"{where} is not flat: {last['message']}")
            return 0
        if time.monotonic() >= deadline:
            left = [f"{r['symbol']} {r['position']:,.10g}" for r in status.get("by_instrument", [])
                    if r["position"] and args.instrument in (None, r["symbol"])]  # fmt: skip
            raise TickwiseError(
                f"{where} not flat after {args.wait:g} s: {', '.join(left) or 'orders working'}"
                " (the session goes on closing; `tickwise status` shows what is left)"
            )
        time.sleep(0.2)


def _flatten_job(reply: dict[str, Any]) -> int | None:
    """The job of the flatten a reply answers (its events name it), from the event log the
    reply carries."""
    for event in reversed(reply.get("events_log") or []):
        if event["event"] == "flatten":
            return (event.get("detail") or {}).get("job")
    return None


def _cmd_resume(args: argparse.Namespace) -> int:
    if not args.confirm:
        raise TickwiseError("resume lets automated orders leave again: add --confirm")
    payload = {"cmd": "resume", "confirm": True, "instrument": args.instrument,
               "state": "reducing" if args.reducing else "active", "reason": args.reason,
               "operator": operator(args)}  # fmt: skip
    _print_status(_control(args, payload))
    return 0
