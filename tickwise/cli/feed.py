"""`tickwise feed`: publish market data over ZeroMQ, from history or the synthetic market."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tickwise.cli.common import (
    group,
    subparser,
)
from tickwise.engine.console import fmt_rate, progress, stdout
from tickwise.engine.errors import TickwiseError
from tickwise.engine.schemas import KINDS


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add the feed commands to the command tree."""
    feed_cmds = group(commands, "feed", "publish market data over ZeroMQ")
    replay = subparser(
        feed_cmds, "replay", "publish a Parquet history over ZeroMQ in event time",
        "tickwise feed replay data/quotes.parquet --bind tcp://127.0.0.1:5555 --speed 10",
    )  # fmt: skip
    replay.add_argument("path", type=Path, help="a .parquet file or a hive directory")
    replay.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        metavar="X|max",
        help="times real time (a subscriber that lags loses messages, as from a live feed), "
        "or max: as fast as the subscribers take every message (1)",
    )
    _publisher_options(replay)
    replay.set_defaults(run=_cmd_feed_replay)

    fsynth = subparser(
        feed_cmds, "synth", "publish the synthetic market live over ZeroMQ, in real time",
        "tickwise feed synth --bind tcp://127.0.0.1:5555 --rate 5000 "
        "--inject crash:at=60,drop_pct=8",
    )  # fmt: skip
    fsynth.add_argument("--kind", choices=KINDS, default="quotes", help="record kind (quotes)")
    fsynth.add_argument("--rate", type=float, default=None, help="market events per second (1000)")
    fsynth.add_argument("--instruments", type=int, default=4, help="number of instruments (4)")
    fsynth.add_argument("--seed", type=int, default=0, help="random seed (0)")
    fsynth.add_argument(
        "--seconds", type=float, default=None, help="stop after this long (run until Ctrl-C)"
    )
    fsynth.add_argument(
        "--inject",
        action="append",
        default=[],
        metavar="EPISODE",
        help="abnormal episode, as for data synth (S: seconds from the start)",
    )
    _publisher_options(fsynth)
    fsynth.set_defaults(run=_cmd_feed_synth)


def _publisher_options(parser: argparse.ArgumentParser) -> None:
    """What every `tickwise feed` publisher takes: where, how many rows a message, heartbeat."""
    parser.add_argument(
        "--bind",
        default="tcp://127.0.0.1:5555",
        help="endpoint to publish on (tcp://127.0.0.1:5555; port * picks a free one)",
    )
    parser.add_argument(
        "--batch-rows", type=int, default=4_096, help="most rows in one message (4096)"
    )
    parser.add_argument(
        "--heartbeat-ms", type=float, default=100.0, help="heartbeat when quiet this long (100)"
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="wait this long for the first subscribers before starting; 0: start at once (30)",
    )
    parser.add_argument(
        "--packet-us", type=float, default=0.0, metavar="US",
        help="send rows in packets: each US microseconds of event time in "
        "one message once it has passed (0: each row as soon as it is due, in as few messages "
        "as the machine's pace allows)",
    )  # fmt: skip
    parser.add_argument(
        "--subscribers", type=int, default=1, metavar="N",
        help="how many subscribers to wait for (1; 2 for an exchange and an engine)",
    )  # fmt: skip


def _speed(text: str) -> float | None:
    if text == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or max") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"speed must be positive, got {text}")
    return value


def _cmd_feed_replay(args: argparse.Namespace) -> int:
    from tickwise.feeds.history import open_history

    history = open_history(args.path)
    return _publish(args, history.kind, history.rows, history.batches, args.speed)


def _cmd_feed_synth(args: argparse.Namespace) -> int:
    import time

    from tickwise.feeds.synth import Market, SynthConfig, parse_episode
    from tickwise.feeds.transport import rebased

    if args.seconds is not None and not args.seconds > 0:
        raise TickwiseError(f"--seconds must be positive, got {args.seconds}")
    config = SynthConfig(
        kind=args.kind, rows=2**62, instruments=args.instruments, seed=args.seed, rate=args.rate,
        episodes=tuple(parse_episode(e) for e in args.inject),
    )  # fmt: skip
    market = Market(config)
    # Compiled (or loaded) before anyone subscribes: on a cold cache that takes seconds, and
    # the first rows would leave already late, as if the feed had been silent.
    next(Market(dataclasses.replace(config, rows=1)).batches(), None)

    def batches(rows: int) -> Iterator[Any]:
        # The market's clock starts now: events carry today's times, episodes fall at their
        # seconds from the start.
        shift = time.time_ns() - market.start_ns
        until = None if args.seconds is None else market.start_ns + shift + int(args.seconds * 1e9)
        return rebased(_rechunk_rows(market.batches(), rows), shift, until)

    return _publish(args, config.kind, None, batches, 1.0)


def _rechunk_rows(batches: Iterator[Any], rows: int) -> Iterator[Any]:
    for batch in batches:
        for start in range(0, batch.num_rows, rows):
            yield batch.slice(start, rows)


def _publish(
    args: argparse.Namespace,
    kind: str,
    rows: int | None,
    batches: Callable[[int], Iterator[Any]],
    speed: float | None,
) -> int:
    """Serve `batches(batch_rows)` on args.bind until done, Ctrl-C or SIGTERM; summary."""
    import signal
    import time

    from tickwise.feeds.transport import Publisher, replay

    if args.batch_rows < 1:
        raise TickwiseError(f"--batch-rows must be at least 1, got {args.batch_rows}")
    if not 0 <= args.packet_us <= 60e6:
        raise TickwiseError(f"--packet-us must be between 0 and 60,000,000, got {args.packet_us}")
    if args.packet_us and speed is None:
        raise TickwiseError("--packet-us paces rows in event time: it needs a --speed, not max")
    packet_ns = max(1, round(args.packet_us * 1e3)) if args.packet_us else 0  # (never 0 if asked)
    # At max speed the replay waits for its subscribers rather than drop what they lag.
    nodrop = speed is None
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as on Ctrl-C
    with Publisher(args.bind, heartbeat_ms=args.heartbeat_ms, nodrop=nodrop) as publisher:
        # The endpoint first, on a line of its own: a script that asked for port * reads it.
        print(f"publishing {kind} on {publisher.endpoint}", flush=True)
        if args.subscribers < 1:
            raise TickwiseError(f"--subscribers must be at least 1, got {args.subscribers}")
        if args.wait > 0 and not publisher.wait_for_subscriber(args.wait, args.subscribers):
            raise TickwiseError(
                f"fewer than {args.subscribers} subscriber(s) on {publisher.endpoint} "
                f"within {args.wait:g} s"
            )
        began = time.perf_counter()
        stopped = ""
        try:
            with progress(f"feed {kind}", rows) as advance:
                replay(publisher, kind, batches(args.batch_rows), speed, advance, packet_ns)
        except KeyboardInterrupt:
            stopped = ", stopped by a signal"
        publisher.heartbeat()  # the last sequence number, for whoever missed the end
        wall = time.perf_counter() - began
    pace = "max" if speed is None else f"{speed:g}x real time"
    if packet_ns:
        pace += f" in packets of {args.packet_us:g} µs"
    stdout.print(
        f"published {publisher.rows:,} rows in {publisher.batches:,} messages "
        f"(+{publisher.heartbeats:,} heartbeats) at {pace}{stopped}: {wall:.2f} s wall clock, "
        f"{fmt_rate(publisher.rows, wall, 'rows')}",
        markup=False,
    )
    return 0
