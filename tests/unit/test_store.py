"""Writing history is all or nothing: a failure leaves no trace and keeps what was there."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from rich.console import Console

from tickwise.engine import console
from tickwise.feeds.history import open_history
from tickwise.feeds.store import HistoryWriter
from tickwise.feeds.synth import Market, SynthConfig

from ..conftest import make_synth


@pytest.mark.parametrize("partition", [False, True])
def test_exception_mid_write_leaves_nothing_and_keeps_the_old_output(
    tmp_path: Path, partition: bool
) -> None:
    out = make_synth(
        tmp_path / "q", kind="quotes", rows=2_000, instruments=2, seed=1, partition=partition
    )
    before = (
        sorted((p.relative_to(out), p.read_bytes()) for p in out.rglob("*") if p.is_file())
        if partition
        else out.read_bytes()
    )
    market = Market(SynthConfig(rows=5_000, instruments=2, seed=2))
    writer = HistoryWriter(out, "quotes", market.instruments, partition=partition, overwrite=True)
    with pytest.raises(RuntimeError, match="disk on fire"), writer:  # noqa: PT012
        for batch in market.batches():
            writer.write(batch)
        raise RuntimeError("disk on fire")
    after = (
        sorted((p.relative_to(out), p.read_bytes()) for p in out.rglob("*") if p.is_file())
        if partition
        else out.read_bytes()
    )
    assert after == before
    assert [p.name for p in tmp_path.iterdir()] == ["q"]


def test_overwrite_replaces_a_directory_with_a_file_cleanly(tmp_path: Path) -> None:
    out = make_synth(
        tmp_path / "q", kind="quotes", rows=2_000, instruments=2, seed=1, partition=True
    )
    make_synth(out, kind="trades", rows=1_000, instruments=2, seed=1)
    assert out.is_file()
    assert open_history(out).kind == "trades"
    assert [p.name for p in tmp_path.iterdir()] == ["q"]


def test_files_carry_kind_and_instruments_and_fast_encodings(tmp_path: Path) -> None:
    out = make_synth(tmp_path / "q.parquet", kind="quotes", rows=2_000, instruments=2, seed=1)
    meta = pq.read_metadata(out)
    assert meta.schema.to_arrow_schema().metadata[b"tickwise.kind"] == b"quotes"
    encodings = {
        meta.row_group(0).column(i).path_in_schema: meta.row_group(0).column(i).encodings
        for i in range(meta.num_columns)
    }
    assert "DELTA_BINARY_PACKED" in encodings["ts_event"]
    # LZ4 pages: the fastest of pyarrow's codecs to decode, on the replay's one core.
    group = meta.row_group(0)
    assert {group.column(i).compression for i in range(meta.num_columns)} == {"LZ4"}


def test_progress_is_drawn_on_a_terminal(monkeypatch) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(console, "stderr", Console(file=screen, force_terminal=True, width=100))
    with console.progress("synth quotes", 10) as advance:
        advance(10)
    assert "synth quotes" in screen.getvalue()


def test_progress_is_silent_off_a_terminal(monkeypatch) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(console, "stderr", Console(file=screen, force_terminal=False))
    with console.progress("synth quotes", 10) as advance:
        advance(10)
    assert screen.getvalue() == ""


def test_building_an_output_removes_what_killed_processes_left_beside_it(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tickwise.engine.atomic import temporary_path

    out = tmp_path / "quotes.parquet"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead = tmp_path / f".quotes.parquet.tmp-{gone.stdout.strip()}"  # (its process has ended)
    dead.mkdir()
    (dead / "staged.parquet").write_bytes(b"x" * 1000)
    live = tmp_path / f".quotes.parquet.tmp-{os.getppid()}"  # (a running process's: kept)
    live.mkdir()
    other = tmp_path / f".trades.parquet.tmp-{gone.stdout.strip()}"  # (another output's)
    other.mkdir()
    tmp = temporary_path(out)
    assert tmp.name == f".quotes.parquet.tmp-{os.getpid()}"
    assert not dead.exists()
    assert live.exists()
    assert other.exists()
