"""A strategy author's mistakes come back as one paragraph naming the file, the line and the
rule: checked from the source before compiling where that can be told, read out of Numba's
error otherwise (`tickwise strategies check`, and any command that compiles a strategy)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tickwise import StrategyError, load_strategy

_TEMPLATE = """
import numpy as np
import tickwise as tw


def plain(x):
    return x * 2


@tw.kernel
def on_quote(ctx, q, st, p):
    i = q.instrument
    mid = 0.5 * (q.bid_px + q.ask_px)
    {mistake}
    if mid > st.last[i] and tw.position(ctx, i) <= 0:
        tw.buy(ctx, i, tw.lot_size(ctx, i))
    st.last[i] = mid


@tw.kernel
def on_timer(ctx, {timer_args}):
    pass


class Oops(tw.Strategy):
    params = {{"band": tw.Param(0.001, 0.0, 1.0)}}
    state = {{"last": tw.PerInstrument(float)}}
    on_quote = on_quote
    on_timer = on_timer
    timer_ms = 1000.0
"""
MISTAKE_LINE = 14  # the line {mistake} lands on
TIMER_LINE = 21  # the `def on_timer` line


def _write(tmp_path: Path, mistake: str = "pass", timer_args: str = "now, st, p") -> Path:
    path = tmp_path / "oops.py"
    path.write_text(_TEMPLATE.format(mistake=mistake, timer_args=timer_args))
    assert path.read_text().splitlines()[MISTAKE_LINE - 1].strip() == mistake
    return path


@pytest.mark.parametrize(
    ("mistake", "rule"),
    [
        ("mid = mid * p.bnd", "Oops.on_quote reads p.bnd, but Oops has no parameter 'bnd' "
                              "(its parameters: band)"),
        ("mid = st.lst[i]", "Oops.on_quote reads st.lst, but Oops declares no state 'lst' "
                            "(its state: last)"),
        ("mid = tw.best_bidd(ctx, i)", "on_quote uses tw.best_bidd, which is not part of "
                                       "tickwise's strategy API (did you mean tw.best_bid?)"),
        ("mid = plain(mid)", "on_quote calls plain(), a plain Python function: compiled code "
                             "calls only kernels. Decorate plain with @tw.kernel"),
        ("mid = mid + spread", "on_quote uses spread, which is defined neither in the "
                               "function nor in its module"),
    ],
)  # fmt: skip
def test_a_mistake_seen_in_the_source_is_named_with_its_line_before_compiling(
    tmp_path: Path, mistake: str, rule: str
) -> None:
    path = _write(tmp_path, mistake)
    with pytest.raises(StrategyError) as caught:
        load_strategy(f"{path}:Oops")
    assert str(caught.value).startswith(f"{path}:{MISTAKE_LINE}: {rule}")


def test_a_callback_with_the_wrong_arguments_is_named_with_what_it_must_take(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, timer_args="st, p")
    with pytest.raises(StrategyError) as caught:
        load_strategy(f"{path}:Oops")
    assert str(caught.value) == (
        f"{path}:{TIMER_LINE}: Oops.on_timer must take (ctx, now, st, p); on_timer takes "
        "(ctx, st, p)"
    )


def test_a_correct_strategy_passes_the_checks(tmp_path: Path) -> None:
    assert load_strategy(f"{_write(tmp_path)}:Oops").name() == "oops"


def _check(spec: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tickwise", "strategies", "check", spec],
                          capture_output=True, text=True, timeout=600)  # fmt: skip


@pytest.mark.parametrize(
    "mistake", ["buf = np.empty(3)", "xs = [mid, mid]; mid = xs[0]"], ids=["array", "list"]
)
def test_an_allocation_is_found_by_compiling_and_said_in_one_paragraph(
    tmp_path: Path, mistake: str
) -> None:
    path = _write(tmp_path, mistake)
    done = _check(f"{path}:Oops")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "compiled oops" not in done.stderr  # (it did not)
    assert done.stderr.endswith(
        textwrap.dedent(f"""\
        tickwise: error: {path}:{MISTAKE_LINE}: Oops allocates memory (a new array, list, dict \
or string): per-event code allocates nothing; declare the array as state (tw.PerInstrument, \
tw.Scalar) and write into it
            {mistake}
        """)
    )


def test_strategies_check_says_ok_with_the_parameters(tmp_path: Path) -> None:
    done = _check(f"{_write(tmp_path)}:Oops")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"oops ({tmp_path / 'oops.py'}:Oops): ok. Compiled or loaded")
    assert done.stdout.rstrip().endswith("parameters: band=0.001")


def test_a_name_bound_by_a_lambda_or_comprehension_inside_a_kernel_is_not_undefined(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, "mid = (lambda x: x * 1.0)(mid) + sum([y for y in (0.0,)])")
    assert load_strategy(f"{path}:Oops").name() == "oops"
