"""`tickwise journal`: read what a live session committed."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.table import Table

from tickwise.cli.common import (
    group,
    subparser,
)
from tickwise.engine.console import fmt_ns, plain, stdout


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add the journal commands to the command tree."""
    journal_cmds = group(commands, "journal", "read a live session's journal")
    jreplay = subparser(
        journal_cmds, "replay", "rebuild positions from everything a journal committed",
        "tickwise journal replay sessions/today/journal",
    )  # fmt: skip
    jreplay.add_argument("folder", type=Path, help="the journal folder of a session")
    jreplay.add_argument("--json", action="store_true", help="print JSON instead of a table")
    jreplay.set_defaults(run=_cmd_journal_replay)
    jevents = subparser(
        journal_cmds, "events", "the audit trail: every change of trading state with its cause, "
        "every person's command with who and why, bad data, the session's start and stop",
        "tickwise journal events sessions/today/journal --json",
    )  # fmt: skip
    jevents.add_argument("folder", type=Path, help="the journal folder of a session")
    jevents.add_argument("--json", action="store_true", help="print JSON lines, one per event")
    jevents.set_defaults(run=_cmd_journal_events)


def _cmd_journal_events(args: argparse.Namespace) -> int:
    from tickwise.engine.live.journal import journal_events

    events = journal_events(args.folder)
    if args.json:
        for event in events:
            print(json.dumps(event, sort_keys=True))
        return 0
    table = Table(title=f"{args.folder}: {len(events):,} events", title_justify="left")
    for column in ("time (UTC)", "what", "detail"):
        table.add_column(column)
    for event in events:
        table.add_row(*plain(fmt_ns(event["ts"]), event["what"], _event_detail(event)))
    stdout.print(table)
    return 0


def _event_detail(event: dict[str, Any]) -> str:
    """One line a person reads: a change of state as `scope: from -> to by trigger`, anything
    else as its fields."""
    d = event["detail"]
    if event["what"] == "transition":
        by = d["trigger"] + (f" ({d['instrument']})" if d.get("instrument") else "")
        values = f", value {d['value']:,.6g}, limit {d['limit']:,.6g}" if d.get("limit") else ""
        return f"{d['scope']}: {d['from']} -> {d['to']} by {by}{values}"
    return ", ".join(f"{k}={v}" for k, v in d.items())


def _cmd_journal_replay(args: argparse.Namespace) -> int:
    from tickwise.engine.live.journal import replay_journal

    summary = replay_journal(args.folder).summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    stdout.print(
        f"{args.folder}: {summary['segments']} segment(s), {summary['commits']:,} commits, "
        f"{summary['orders']:,} orders, {summary['rejects']:,} rejects, "
        f"{summary['fills']:,} fills, {summary['events']:,} events",
        markup=False,
    )
    table = Table(title="positions rebuilt from the fills", title_justify="left")
    for column in ("instrument", "position", "avg price", "realised PnL", "fees", "traded"):
        table.add_column(column, justify="left" if column == "instrument" else "right")
    for symbol, p in summary["positions"].items():
        table.add_row(*plain(symbol, f"{p['qty']:,.4g}", f"{p['avg_px']:,.6g}",
                             f"{p['realized']:,.2f}", f"{p['fees']:,.2f}",
                             f"{p['traded']:,.4g}"))  # fmt: skip
    stdout.print(table)
    return 0
