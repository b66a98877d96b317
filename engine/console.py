"""What people see: progress bars and tables on the terminal, times and rates in plain units."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

# emoji=False: a user's text is printed as written (":100:" in `window=1:100:50` is no emoji).
stdout = Console(highlight=False, soft_wrap=True, emoji=False)
stderr = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
if not stdout.is_terminal:
    stdout.width = 140  # logs and pipes: wide tables rather than wrapped cells


@contextmanager
def progress(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr (only on a terminal); yields `advance(n)`."""
    if not stderr.is_terminal:
        yield lambda n: None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=stderr, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


@contextmanager
def compile_notice(what: str, after_s: float = 1.0) -> Iterator[None]:
    """Say on stderr that `what` is compiling, once it has taken `after_s` (code loaded from
    the cache takes well under a second, and then nothing is said), and then how long it
    took; a progress bar on the terminal stays below the lines."""
    began = time.perf_counter()
    said = threading.Event()

    def say() -> None:
        stderr.print(f"compiling {what} (first run only: later runs load it from the cache) ...",
                     markup=False)  # fmt: skip
        said.set()

    timer = threading.Timer(after_s, say)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()
    if said.is_set():  # (and not when compiling failed: the error says what happened)
        stderr.print(f"compiled {what} in {time.perf_counter() - began:.1f} s", markup=False)


def fmt_ns(ts: int | None, digits: int = 6) -> str:
    """An epoch-nanosecond timestamp as UTC text, with `digits` decimals of the second."""
    if ts is None:
        return "-"
    seconds, ns = divmod(ts, 1_000_000_000)
    when = dt.datetime.fromtimestamp(seconds, dt.UTC)
    fraction = f"{ns:09d}"[:digits]
    return f"{when:%Y-%m-%d %H:%M:%S}" + (f".{fraction}" if digits else "")


def fmt_rate(count: int, seconds: float, unit: str) -> str:
    """`count` per second with an SI prefix, e.g. '12.3 M rows/s'."""
    if seconds <= 0:
        return f"- {unit}/s"
    rate = count / seconds
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if rate >= factor:
            return f"{rate / factor:.2f} {prefix} {unit}/s"
    return f"{rate:.1f} {unit}/s"


def plain(*values: object) -> list[Text]:
    """Table cells shown as they are: text from outside (a symbol, a person's reason, a path)
    is never read as markup, which could hide it or end the command."""
    return [Text(str(value)) for value in values]
