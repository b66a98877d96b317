"""`tickwise data …` as a user runs it: the installed console script in a real process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

TICKWISE = str(Path(sys.executable).with_name("tickwise"))


def run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([TICKWISE, *args], capture_output=True, text=True, timeout=timeout)


def test_synth_then_inspect_reports_a_valid_history(tmp_path: Path) -> None:
    out = tmp_path / "q.parquet"
    made = run(
        "data",
        "synth",
        "--kind",
        "quotes",
        "--rows",
        "50000",
        "--instruments",
        "3",
        "--seed",
        "7",
        "--inject",
        "crash:at=20,drop_pct=5",
        "--out",
        str(out),
    )
    assert made.returncode == 0, made.stderr
    assert "wrote 50,000 quotes rows for 3 instruments" in made.stdout
    assert "wall clock" in made.stdout
    assert "rows/s" in made.stdout
    shown = run("data", "inspect", str(out))
    assert shown.returncode == 0, shown.stderr
    assert "valid: 50,000 rows checked" in shown.stdout
    for symbol in ("SYN0", "SYN1", "SYN2"):
        assert symbol in shown.stdout
    report = json.loads(run("data", "inspect", str(out), "--json").stdout)
    assert report["valid"] is True
    assert report["rows"] == 50_000
    assert report["kind"] == "quotes"
    assert sum(i["rows"] for i in report["instruments"]) == 50_000
    for inst in report["instruments"]:
        assert 0 < inst["px_low"] < inst["px_high"]
    assert report["ts_first"] < report["ts_last"]
    assert ["bid_px", "double"] in report["schema"]


def test_partitioned_synth_writes_a_hive_directory(tmp_path: Path) -> None:
    out = tmp_path / "book"
    made = run(
        "data",
        "synth",
        "--kind",
        "book",
        "--rows",
        "20000",
        "--instruments",
        "2",
        "--partition",
        "--start",
        "2024-01-05T20:59:59Z",
        "--out",
        str(out),
    )
    assert made.returncode == 0, made.stderr
    days = sorted(p.name for p in out.iterdir())
    assert days == ["date=2024-01-05", "date=2024-01-08"]  # Friday, then Monday
    assert {p.name for p in (out / days[0]).iterdir()} == {"instrument=0", "instrument=1"}
    report = json.loads(run("data", "inspect", str(out), "--json").stdout)
    assert report["valid"]
    assert report["files"] == 4


def test_inspect_of_bad_data_exits_non_zero_and_names_the_row(tmp_path: Path) -> None:
    out = tmp_path / "q.parquet"
    assert (
        run("data", "synth", "--rows", "5000", "--instruments", "2", "--out", str(out)).returncode
        == 0
    )
    table = pq.read_table(out)
    ask = table.column("ask_px").to_numpy().copy()
    ask[4321] = np.nan
    idx = table.schema.get_field_index("ask_px")
    pq.write_table(table.set_column(idx, table.schema.field(idx), pa.array(ask)), out)
    shown = run("data", "inspect", str(out))
    assert shown.returncode == 1
    assert "invalid" in shown.stdout
    assert f"{out}: row 4321: ask_px is NaN" in shown.stdout.replace("\n", "")


def test_import_of_a_bad_csv_is_one_line_on_stderr_and_writes_nothing(tmp_path: Path) -> None:
    src = tmp_path / "ticks.csv"
    src.write_text(
        "ts_event,symbol,bid_px,ask_px,bid_sz,ask_sz\n1000,A,10.0,10.1,1,1\n2000,A,10.2,10.1,1,1\n"
    )
    out = tmp_path / "ticks.parquet"
    done = run("data", "import", str(src), "--kind", "quotes", "--out", str(out))
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0
    assert "Traceback" not in done.stderr
    assert "line 3: crossed quote: bid_px 10.2 > ask_px 10.1" in done.stderr
    assert not out.exists()


def test_import_of_a_good_csv_then_inspect(tmp_path: Path) -> None:
    src = tmp_path / "ticks.csv"
    src.write_text(
        "ts_event,symbol,px,sz,side\n"
        "2024-01-02T14:30:00Z,B,10.0,1,1\n2024-01-02T14:30:01Z,A,20.0,2,-1\n"
    )
    out = tmp_path / "t.parquet"
    done = run("data", "import", str(src), "--kind", "trades", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "imported 2 trades rows for 2 instruments" in done.stdout
    assert json.loads(run("data", "inspect", str(out), "--json").stdout)["valid"]


def test_import_of_a_raw_vendor_file_sorts_and_sets_bad_rows_aside(tmp_path: Path) -> None:
    """Contributor FX quotes: out of time order, one crossed, one off the 0.0001 grid."""
    src = tmp_path / "fx.csv"
    src.write_text(
        "ts_event,symbol,bid_px,ask_px,bid_sz,ask_sz\n"
        "3000,EURUSD,1.0851,1.0852,1,1\n"
        "1000,EURUSD,1.0850,1.0852,1,1\n"
        "2000,EURUSD,1.0853,1.0852,1,1\n"
        "2500,EURUSD,1.08515,1.0852,1,1\n"
        "1500,EURUSD,1.0849,1.0851,1,1\n"
    )
    out, bad = tmp_path / "fx.parquet", tmp_path / "refused.csv"
    plain = run("data", "import", str(src), "--kind", "quotes", "--tick-size", "0.0001",
                "--out", str(out))  # fmt: skip
    assert plain.returncode == 1
    assert "line 3: ts_event goes backwards" in plain.stderr
    done = run("data", "import", str(src), "--kind", "quotes", "--tick-size", "0.0001", "--sort",
               "--bad-rows", str(bad), "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "imported 3 quotes rows for 1 instruments" in text
    assert "(sorted by time)" in text
    assert f"set aside 2 bad rows to {bad}" in text
    lines = bad.read_text().splitlines()
    assert lines[0] == "line,reason,ts_event,symbol,bid_px,ask_px,bid_sz,ask_sz"
    assert lines[1].startswith("4,crossed quote: bid_px 1.0853 > ask_px 1.0852,2000,EURUSD")
    assert lines[2].startswith("5,bid_px 1.08515 is off instrument 0 (EURUSD)'s tick grid")
    report = json.loads(run("data", "inspect", str(out), "--json").stdout)
    assert report["valid"]
    assert report["instruments"][0]["ts_first"] == 1000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data", "synth", "--rows", "ten", "--out", "x.parquet"], "invalid int value: 'ten'"),
        (["data", "synth", "--kind", "ticks", "--out", "x.parquet"], "invalid choice: 'ticks'"),
        (["data", "synth", "--rows", "0", "--out", "x.parquet"], "--rows must be at least 1"),
        (["data", "synth", "--inject", "meteor:at=1", "--out", "x.parquet"], "unknown episode"),
        (["data", "inspect", "nowhere.parquet"], "nowhere.parquet: no such file or directory"),
        (
            ["data", "import", "nowhere.csv", "--kind", "quotes", "--out", "x.parquet"],
            "nowhere.csv: no such file",
        ),
    ],
)
def test_user_mistakes_are_one_line_without_traceback(tmp_path: Path, args, message) -> None:
    done = subprocess.run(
        [TICKWISE, *args], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode in (1, 2)
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.parquet").exists()


@pytest.mark.parametrize("command", [["data", "synth"], ["data", "inspect"], ["data", "import"]])
def test_every_command_has_help_with_an_example(command: list[str]) -> None:
    done = run(*command, "--help")
    assert done.returncode == 0
    assert "example:" in done.stdout
    assert "tickwise " + " ".join(command) in done.stdout


def test_ctrl_c_during_synth_leaves_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "big.parquet"
    proc = subprocess.Popen(
        [TICKWISE, "data", "synth", "--rows", "50000000", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not any(p.name.startswith(".big.parquet.tmp") for p in tmp_path.iterdir()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "synth never started writing"
            time.sleep(0.05)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert "interrupted; nothing half-written was kept" in err
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_output_path_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    done = run("data", "synth", "--rows", "10", "--out", str(blocker / "q.parquet"))
    assert done.returncode == 1
    assert f"{blocker} is a file, not a folder" in done.stderr
    assert "Traceback" not in done.stderr


def test_strategies_lists_the_built_ins_with_parameters() -> None:
    shown = run("strategies")
    assert shown.returncode == 0, shown.stderr
    for name in ("sma_cross", "mean_reversion"):
        assert name in shown.stdout
    listing = json.loads(run("strategies", "--json").stdout)
    assert listing["mean_reversion"]["params"]["window"]["default"] == 100
    assert listing["sma_cross"]["kinds"] == ["quotes", "bars"]


def test_an_import_killed_midway_leaves_nothing_the_next_one_does_not_clear(
    tmp_path: Path,
) -> None:
    """SIGKILL leaves a staging folder (it can be gigabytes); the next import of the same
    output removes it, as its process is gone, and nothing half-written is at OUT."""
    rows = 3_000_000
    ts = np.arange(rows, dtype=np.int64)[::-1] * 1000 + 1_700_000_000_000_000_000  # (unsorted)
    source = tmp_path / "big.csv"
    with open(source, "w") as f:
        f.write("ts_event,symbol,bid_px,ask_px,bid_sz,ask_sz\n")
        f.writelines(f"{t},ES,100.25,100.5,1,1\n" for t in ts.tolist())
    out = tmp_path / "q.parquet"
    proc = subprocess.Popen([TICKWISE, "data", "import", str(source), "--kind", "quotes",
                             "--sort", "--tick-size", "0.25", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    staging = f".q.parquet.import.tmp-{proc.pid}"
    deadline = time.monotonic() + 120
    while not (tmp_path / staging / "staged.parquet").exists() and time.monotonic() < deadline:
        assert proc.poll() is None, "the import ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert (tmp_path / staging).exists()
    assert not out.exists()
    small = tmp_path / "small.csv"
    small.write_text("ts_event,symbol,bid_px,ask_px,bid_sz,ask_sz\n1,ES,100.25,100.5,1,1\n")
    done = run("data", "import", str(small), "--kind", "quotes", "--tick-size", "0.25",
               "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.csv", "q.parquet", "small.csv"]
