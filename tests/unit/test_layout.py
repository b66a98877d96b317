"""The package as its users and their tools see it: the public face, `python -m tickwise`,
static navigation (jedi), imports that point down, and what the distribution ships.

The layer contracts themselves are checked by `lint-imports` in `make test`'s lint step
(pyproject.toml, [tool.importlinter]); what import-linter cannot say (nothing below the
command line imports the face) is checked here, on the same import graph.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import zipfile
from pathlib import Path

import grimp
import jedi
import pytest

import tickwise

ROOT = Path(__file__).resolve().parents[2]

# The strategy author's surface. Adding a name is a decision: add it here too; removing one
# breaks every strategy that uses it.
FACE = [
    "Backtest", "DataError", "GTC", "IOC", "KillSwitch", "Param", "PerInstrument",
    "RiskLimits", "Rolling", "SIDE_BUY", "SIDE_SELL", "STATE_ACTIVE", "STATE_HALTED",
    "STATE_REDUCING", "Scalar", "SessionConfig", "Strategy", "StrategyError", "Sweep",
    "TickwiseError",
    "ask_size", "avg_price", "best_ask", "best_bid", "bid_size", "book_imbalance",
    "book_level", "book_levels", "buy", "cancel", "cancel_all", "is_open", "kernel",
    "last_price", "load_config", "load_strategy", "lot_size", "mid_price", "net_position",
    "now", "open_orders", "pnl", "position", "realized_pnl", "registered", "rolling_count",
    "rolling_full", "rolling_max", "rolling_mean", "rolling_min", "rolling_push", "rolling_std",
    "rolling_zscore",
    "round_to_tick", "run_backtest", "sell", "sweep", "tick_size", "trade_to", "trading_state",
    "unrealized_pnl", "working_qty",
]  # fmt: skip


def _static_imports() -> dict[str, str]:
    """Each name the face imports for static tools (its `if TYPE_CHECKING:` block), with
    the module it comes from."""
    tree = ast.parse(Path(tickwise.__file__).read_text())
    names = {}
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom)
                names |= {alias.name: stmt.module for alias in stmt.names}
    return names


def test_the_public_face_is_exactly_the_pinned_names() -> None:
    assert sorted(tickwise.__all__) == sorted(FACE)
    assert len(set(tickwise.__all__)) == len(tickwise.__all__)
    # what static tools read, what the loader loads and what __all__ says are one list
    assert _static_imports() == tickwise._HOME


@pytest.mark.parametrize("name", FACE)
def test_each_public_name_is_the_object_of_its_home_module(name: str) -> None:
    home = importlib.import_module(tickwise._HOME[name])
    assert getattr(tickwise, name) is getattr(home, name)


def test_an_unknown_name_is_an_attribute_error_naming_it() -> None:
    with pytest.raises(AttributeError, match="no attribute 'trade_too'"):
        _ = tickwise.trade_too


def test_the_command_line_starts_without_the_compiler() -> None:
    """`tickwise kill` must answer at once: importing the face or the command line loads
    neither Numba nor the engine's kernels (names load on first use)."""
    code = (
        "import sys, tickwise, tickwise.cli; "
        "print(sorted(m for m in ('numba', 'tickwise.engine.session', 'tickwise.engine.jit') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_python_dash_m_tickwise_is_the_command_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tickwise", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"tickwise {tickwise.__version__}"
    bad = subprocess.run([sys.executable, "-m", "tickwise", "nonsense"], capture_output=True,
                         text=True)  # fmt: skip
    assert bad.returncode == 2
    assert "invalid choice: 'nonsense'" in bad.stderr


@pytest.mark.parametrize(
    ("source", "where"),
    [
        ("import tickwise as tw\ntw.trade_to", ("engine/orders.py", "def trade_to")),
        ("from tickwise import Strategy\nStrategy", ("engine/strategy.py", "class Strategy")),
        ("from tickwise.engine.loop import run_quotes\nrun_quotes",
         ("engine/loop.py", "def run_quotes")),
        ("from tickwise.feeds.wire import encode\nencode", ("feeds/wire.py", "def encode")),
        ("from tickwise.engine.live.runner import run_live\nrun_live",
         ("engine/live/runner.py", "def run_live")),
        ("from tickwise.backtest.replay import run_backtest\nrun_backtest",
         ("backtest/replay.py", "def run_backtest")),
    ],
)  # fmt: skip
def test_go_to_definition_finds_the_source(source: str, where: tuple[str, str]) -> None:
    """jedi, in the environment `make test` installed, from a file outside the repository
    (a user's strategy), lands on the line that defines the name."""
    env = jedi.create_environment(sys.executable, safe=False)
    lines = source.splitlines()
    script = jedi.Script(source, path=Path("/tmp/user_strategy.py"), environment=env)
    found = script.goto(len(lines), len(lines[-1]) - 1, follow_imports=True)
    assert len(found) == 1, f"jedi found {found} for {lines[-1]!r}"
    path = Path(found[0].module_path).resolve()
    assert path == ROOT / where[0]
    assert path.read_text().splitlines()[found[0].line - 1].lstrip().startswith(where[1])


def test_nothing_below_the_command_line_imports_the_face() -> None:
    """import-linter's layers hold the packages; the package root `tickwise` (the face) is
    above them all, which import-linter cannot say: only the command line, strategies and
    benchmarks (clients of the face) may import it."""
    graph = grimp.build_graph("tickwise")
    clients = ("tickwise.cli", "tickwise.strategies", "tickwise.benchmarks", "tickwise.__main__")
    importers = {
        m for m in graph.find_modules_that_directly_import("tickwise")
        if not m.startswith(clients)
    }  # fmt: skip
    assert importers == set()
    # and the graph is the real one: the layers are there to be seen
    assert graph.direct_import_exists(
        importer="tickwise.engine.live.runner", imported="tickwise.feeds.transport"
    )
    assert len(graph.modules) > 60


@pytest.mark.slow
def test_the_wheel_ships_the_package_without_the_benchmarks(tmp_path: Path) -> None:
    """What `pip install tickwise` would get: every package through its link, the built-in
    strategies registered, no benchmarks, no compiled caches."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, cwd=tmp_path,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("tickwise-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("tickwise/__init__.py", "tickwise/__main__.py", "tickwise/cli/live.py",
                   "tickwise/engine/loop.py", "tickwise/engine/live/runner.py",
                   "tickwise/feeds/wire.py", "tickwise/backtest/replay.py",
                   "tickwise/strategies/sma_cross.py"):  # fmt: skip
        assert module in names
    assert not [n for n in names if "benchmarks" in n or n.endswith((".nbi", ".nbc", ".pyc"))]
    (entry_points,) = [n for n in names if n.endswith("entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "tickwise = tickwise.cli:run" in text
    assert "sma_cross = tickwise.strategies.sma_cross:SmaCross" in text
