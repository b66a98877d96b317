"""What a strategy author waits for: one compiled loop per strategy's code, whichever way the
strategy is loaded, compiled again exactly when that code (or a module it uses) changes.

Compiling happens in fresh processes, as a user's commands run; the loops they share sit in
the test run's Numba cache.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tickwise import load_strategy
from tickwise.engine import loops
from tickwise.feeds.synth import SynthConfig, synth

ROOT = Path(__file__).resolve().parents[2]

_WARM = """
import json, sys
import tickwise as tw
from tickwise.engine.session import Session
from tickwise.feeds.synth import make_instruments
s = Session(tw.load_strategy(sys.argv[1]), make_instruments(2), {})
s.warm_up(("quotes",))
stats = s.loop.run_quotes.stats
print(json.dumps({"loop": s.loop.__name__, "hits": sum(stats.cache_hits.values()),
                  "misses": sum(stats.cache_misses.values())}))
"""


def _warm(spec: str, cwd: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", _WARM, spec], capture_output=True, text=True,
                          cwd=cwd, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.slow
def test_a_strategy_by_entry_point_and_by_path_shares_one_compiled_loop(tmp_path: Path) -> None:
    """Either way first: the file of an installed plugin is loaded under its module's name."""
    by_path = f"{ROOT / 'strategies' / 'mean_reversion.py'}:MeanReversion"
    first = _warm(by_path, tmp_path)
    for spec in ("mean_reversion", by_path):
        again = _warm(spec, tmp_path)
        assert again["loop"] == first["loop"]
        assert again["misses"] == 0  # loaded, not compiled
        assert again["hits"] == 1


def test_a_strategy_file_is_named_by_its_contents(tmp_path: Path) -> None:
    """A copy elsewhere is the same module and the same loop (a test's strategy in tmp_path
    compiles once, not once a run); an edited file is a new module, never the one loaded
    before the edit."""
    source = (ROOT / "strategies" / "mean_reversion.py").read_text()
    specs = []
    for folder, text in (("a", source), ("b", source), ("c", source + "# edited\n")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "mr.py").write_text(text)
        specs.append(load_strategy(f"{tmp_path / folder / 'mr.py'}:MeanReversion"))
    a, b, c = (loops._fingerprint(s, loops.specialised_source(s)) for s in specs)
    assert specs[0].__module__ == specs[1].__module__ != specs[2].__module__
    assert a == b != c


_HELPER = """
import tickwise as tw


@tw.kernel
def signal(mid, band):
    return mid * (1 + band)
"""

_STRATEGY = """
import tickwise as tw
from helper_mod import signal


@tw.kernel
def on_quote(ctx, q, st, p):
    mid = 0.5 * (q.bid_px + q.ask_px)
    if mid > signal(st.last[q.instrument], p.band) and tw.position(ctx, q.instrument) <= 0:
        tw.buy(ctx, q.instrument, tw.lot_size(ctx, q.instrument))
    st.last[q.instrument] = mid


class Sibling(tw.Strategy):
    params = {"band": tw.Param(0.001, 0.0, 1.0)}
    state = {"last": tw.PerInstrument(float, 0.0)}
    on_quote = on_quote
"""


def test_a_strategy_imports_a_module_beside_it_and_its_edits_make_a_new_loop(
    tmp_path: Path,
) -> None:
    """No compiling: the loop's name is the hash of what it would compile."""
    folder = tmp_path / "research"
    folder.mkdir()
    (folder / "helper_mod.py").write_text(textwrap.dedent(_HELPER))
    (folder / "sibling.py").write_text(textwrap.dedent(_STRATEGY))
    strategy = load_strategy(f"{folder / 'sibling.py'}:Sibling")
    assert loops.strategy_sources(strategy) == {
        (folder / "sibling.py").resolve(),
        (folder / "helper_mod.py").resolve(),
    }
    source = loops.specialised_source(strategy)
    before = loops._fingerprint(strategy, source)
    (folder / "helper_mod.py").write_text(_HELPER.replace("1 + band", "1 - band"))
    assert loops._fingerprint(strategy, source) != before
    # the same contents elsewhere are the same loop: paths are not part of it
    (folder / "helper_mod.py").write_text(textwrap.dedent(_HELPER))
    assert loops._fingerprint(strategy, source) == before


_RUN = """
import sys
import tickwise as tw
print(len(tw.run_backtest(sys.argv[1], sys.argv[2]).orders))
"""

_WANTS = """
import tickwise as tw


@tw.kernel
def wanted(mid):
    return {lots}
"""

_TRADER = """
import tickwise as tw
from wants_mod import wanted


@tw.kernel
def on_quote(ctx, q, st, p):
    i = q.instrument
    tw.trade_to(ctx, i, wanted(q.bid_px) * tw.lot_size(ctx, i))


class Trader(tw.Strategy):
    on_quote = on_quote
"""


@pytest.mark.slow
def test_an_edit_of_a_module_beside_the_strategy_changes_what_runs(tmp_path: Path) -> None:
    """Numba checks a cached function against its own file only: the strategy's callback,
    cached, would keep the helper's old code. A strategy's compiled code is cached only
    within its loop, which an edit of the helper renames."""
    data = tmp_path / "q.parquet"
    synth(SynthConfig(rows=2_000, instruments=2, seed=3), data)
    (tmp_path / "trader.py").write_text(textwrap.dedent(_TRADER))
    orders = []
    for lots in ("1.0", "0.0", "1.0"):  # (the last: back to a loop already compiled)
        (tmp_path / "wants_mod.py").write_text(textwrap.dedent(_WANTS.format(lots=lots)))
        done = subprocess.run([sys.executable, "-c", _RUN, f"{tmp_path / 'trader.py'}:Trader",
                               str(data)], capture_output=True, text=True, timeout=600)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        orders.append(int(done.stdout.split()[-1]))
    assert orders[0] > 0
    assert orders[1] == 0
    assert orders[2] == orders[0]
