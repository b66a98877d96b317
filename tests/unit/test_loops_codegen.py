"""The loop's code generation as a tested seam, without compiling anything.

`engine.loops` writes a copy of `engine/loop.py` per strategy by rewriting marked lines: the
strategy's callbacks, and (for measuring the kill switch's cost only) the guard lines. A
formatter, a rename or an edit of the template must make that fail loudly, never leave the
"unguarded" variant with its kill switch or a strategy with another's callback.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from tickwise.engine import loop, loops
from tickwise.engine.errors import TickwiseError
from tickwise.strategies.mean_reversion import MeanReversion
from tickwise.strategies.obi_market_maker import ObiMarketMaker

TEMPLATE = Path(loop.__file__).read_text()
GUARDS = ("guard_feed_nb", "guard_market_nb", "enforce_nb")


def _names_loaded(source: str) -> dict[str, int]:
    """How often each name is read in `source` (imports and assignments' targets aside)."""
    counts: dict[str, int] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            counts[node.id] = counts.get(node.id, 0) + 1
    return counts


def _changed(source: str) -> list[tuple[str, str]]:
    """(template line, generated line) for every line that differs, imports added aside."""
    template = TEMPLATE.splitlines()
    generated = source.splitlines()[: len(template)]
    return [(a, b) for a, b in zip(template, generated, strict=True) if a != b]


@pytest.mark.parametrize("strategy", [MeanReversion, ObiMarketMaker])
def test_a_strategy_s_loop_differs_from_the_template_only_in_its_marked_callback_lines(
    strategy: type,
) -> None:
    source = loops.specialised_source(strategy)
    changed = _changed(source)
    callbacks = strategy.callbacks()
    assert len(changed) == len(callbacks) > 0
    for before, after in changed:
        name = before.partition("# callback: ")[2]
        assert name in callbacks
        assert after.startswith(f"_{name} = kernel(_callbacks[{name!r}])")
        assert after.endswith(loops.SUBSTITUTED)
    # Nothing names the strategy's module: loaded by path or by entry point, one loop.
    assert strategy.__module__ not in source
    assert source.splitlines()[len(TEMPLATE.splitlines()) :] == [
        f"# specialised for {strategy.__qualname__}"
    ]
    # The guard stays: the loop reads the guard kernels through their names, as the template.
    loaded = _names_loaded(source)
    assert all(loaded.get(g, 0) == _names_loaded(TEMPLATE)[g] > 0 for g in GUARDS)
    ast.parse(source)


def test_the_unguarded_variant_calls_no_guard_kernel_at_all() -> None:
    source = loops.specialised_source(MeanReversion, guarded=False)
    changed = _changed(source)
    guard_lines = [(a, b) for a, b in changed if a.endswith("# guard")]
    assert len(guard_lines) == 3
    for _before, after in guard_lines:
        assert after.startswith("from tickwise.engine.callbacks import unguarded_")
        assert after.endswith(loops.SUBSTITUTED)
    loaded = _names_loaded(source)
    assert not any(loaded.get(g) for g in GUARDS), "a guard kernel is still read"
    ast.parse(source)


@pytest.mark.parametrize(
    ("edit", "complaint"),
    [
        # A formatter moving the comment, a rename, a line dropped or repeated.
        (lambda t: t.replace("ignore  # callback: on_fill", "ignore # callback: on_fill"),
         "on_fill"),
        (lambda t: t.replace("_guard_feed = guard_feed_nb  # guard",
                             "_guard_feed = guard_feed_nb  # the guard"), "_guard_feed"),
        (lambda t: t.replace("_enforce = enforce_nb  # guard\n", ""), "enforce_nb"),
        (lambda t: t.replace("_on_bar = ignore  # callback: on_bar\n",
                             "_on_bar = ignore  # callback: on_bar\n" * 2), "on_bar"),
        (lambda t: t + "\nx = guard_feed_nb\n", "guard_feed_nb"),
        (lambda t: t.replace("        _enforce(ctx)\n", "        enforce_nb(ctx)\n", 1),
         "enforce_nb"),
    ],
)  # fmt: skip
def test_a_template_the_generator_does_not_recognise_is_refused_naming_the_line(
    edit: object, complaint: str
) -> None:
    template = edit(TEMPLATE)  # type: ignore[operator]
    assert template != TEMPLATE

    def both_variants() -> None:
        for guarded in (True, False):
            loops.specialised_source(MeanReversion, guarded, template=template)

    with pytest.raises(TickwiseError, match=complaint):
        both_variants()


@pytest.mark.parametrize("numba_cache_dir", [False, True])
def test_the_loop_cache_keeps_the_most_recently_used_loops(
    tmp_path: Path, numba_cache_dir: bool
) -> None:
    folder = tmp_path / "loops"
    numba_cache = tmp_path / "numba" if numba_cache_dir else None
    compiled = numba_cache / "loops_0123abcd" if numba_cache else folder / "__pycache__"
    compiled.mkdir(parents=True)
    folder.mkdir(exist_ok=True)
    for n in range(10):
        name = f"tickwise_loop_{n:020d}"
        files = [folder / f"{name}.py", compiled / f"{name}.run_quotes-12.py311.nbi",
                 compiled / f"{name}.run_quotes-12.py311.1.nbc"]  # fmt: skip
        for path in files:
            path.write_text("x = 1\n")
            stamp = 1_700_000_000 + n * 10
            os.utime(path, (stamp, stamp))
    (folder / "notes.txt").write_text("not ours")
    assert loops.prune(folder, keep=4, numba_cache=numba_cache) == 6
    kept = [f"tickwise_loop_{n:020d}" for n in range(6, 10)]
    assert sorted(p.stem for p in folder.glob("tickwise_loop_*.py")) == kept
    assert sorted({p.name.split(".")[0] for p in compiled.iterdir()}) == kept
    assert (folder / "notes.txt").exists()
    assert loops.prune(folder, keep=4, numba_cache=numba_cache) == 0
