"""The user's documentation stays true: its links lead somewhere, every command it shows
parses, the performance table is the one the kept run generates, and the README stays
an introduction (at most ~10 KB)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tickwise.benchmarks import harness
from tickwise.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def _commands(text: str) -> list[str]:
    """Each `tickwise ...` command of a page's sh blocks, continuation lines joined and
    comments dropped."""
    found = []
    for block in _blocks(text, "sh"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip().removesuffix("&").strip()
            if line.startswith("tickwise "):
                found.append(line)
    return found


def test_the_readme_is_an_introduction() -> None:
    assert len((ROOT / "README.md").read_bytes()) <= 10_240
    assert "make demo" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_leads_to_a_file(page: Path) -> None:
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
        if "://" not in target:
            assert (page.parent / target).exists(), f"{page.name} links to {target}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_shown_parses(page: Path) -> None:
    parser = build_parser()
    commands = _commands(page.read_text())
    for command in commands:
        try:
            parser.parse_args(shlex.split(command)[1:])
        except SystemExit as exc:  # argparse's way of refusing: name the command
            raise AssertionError(f"{page.name}: `{command}` does not parse") from exc


def test_the_performance_table_is_generated_from_the_kept_run() -> None:
    text = (ROOT / "docs" / "performance.md").read_text()
    match = re.search(r"<!-- bench-table: (\S+) -->\n(.*?)<!-- end bench-table -->", text, re.S)
    assert match, "docs/performance.md has no bench-table markers"
    run = harness.load(ROOT / match.group(1))
    assert match.group(2) == harness.markdown(run)


def _layout_modules() -> set[str]:
    """The module files docs/layout.md lists, as paths from the repository root."""
    (tree,) = _blocks((ROOT / "docs" / "layout.md").read_text(), "")
    listed, folder = set(), None
    for line in tree.splitlines():
        name = line.split()[0] if line.strip() else ""
        if not line.startswith(" ") and name.endswith("/"):
            folder = name
        elif line.startswith("  ") and name.endswith(".py"):
            listed.add(folder + name)
    return listed


def test_the_layout_page_lists_every_module_and_only_modules_that_exist() -> None:
    on_disk = {
        str(path.relative_to(ROOT))
        for package in ("tickwise", "engine", "feeds", "backtest")
        for path in (ROOT / package).rglob("*.py")  # (not through tickwise/'s links)
        if path.name != "__init__.py" or path.parent.name in ("tickwise", "cli")
    }
    listed = _layout_modules()
    missing, gone = sorted(on_disk - listed), sorted(listed - on_disk)
    assert not missing, f"modules docs/layout.md does not list: {missing}"
    assert not gone, f"modules docs/layout.md lists that are not there: {gone}"
