"""A session journaling its batches is killed with SIGKILL mid-run; `tickwise journal replay`
then rebuilds, bit for bit, the positions the same session had after its last commit."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tickwise import load_strategy
from tickwise.engine.session import Session
from tickwise.feeds.history import open_history

from ..conftest import make_synth

TICKWISE = str(Path(sys.executable).with_name("tickwise"))
PARAMS = {"window": 20, "entry_z": 1.0, "qty": 100.0}
BATCH = 2_000

WRITER = r"""
import sys, time
from pathlib import Path
from tickwise.engine.live.journal import Journal
from tickwise.engine.session import Session
from tickwise import load_strategy
from tickwise.feeds.history import open_history
data, folder, batch = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
history = open_history(data)
session = Session(load_strategy("mean_reversion"), history.instruments,
                  {"window": 20, "entry_z": 1.0, "qty": 100.0})
session.warm_up(("quotes",))
with Journal(folder, history.instruments) as journal:
    for k, b in enumerate(history.batches(batch)):
        result = session.on_batch("quotes", b)
        journal.add(result.orders, result.fills)
        journal.commit()
        print(f"committed {k + 1}", flush=True)
        time.sleep(0.05)  # a live session waits for its next batch
"""


def test_sigkill_then_journal_replay_gives_the_positions_of_the_last_commit(tmp_path: Path) -> None:
    data = make_synth(tmp_path / "q.parquet", kind="quotes", rows=200_000, instruments=3, seed=9)
    folder = tmp_path / "journal"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(data), str(folder), str(BATCH)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        seen = 0
        while seen < 5 and time.monotonic() < deadline:  # a few commits, then kill it
            line = proc.stdout.readline()
            if not line:
                break
            seen = int(line.split()[1])
        assert seen >= 5, "the journaling session did not get going"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    done = subprocess.run([TICKWISE, "journal", "replay", str(folder), "--json"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    replayed = json.loads(done.stdout)
    commits = replayed["commits"]
    assert seen <= commits < 100  # at least every commit it reported; SIGKILL came before the end
    # The same session, run here over the same batches, as far as the journal committed.
    history = open_history(data)
    session = Session(load_strategy("mean_reversion"), history.instruments, PARAMS)
    fills = orders = 0
    for k, batch in enumerate(history.batches(BATCH)):
        if k == commits:
            break
        result = session.on_batch("quotes", batch)
        fills += len(result.fills)
        orders += int(np.count_nonzero(result.orders["status"] == 0))
    assert (replayed["fills"], replayed["orders"]) == (fills, orders)
    assert fills > 0
    for inst in history.instruments:
        row = session.ctx.portfolio[inst.id]
        if row["traded"] == 0.0:
            assert inst.symbol not in replayed["positions"]
            continue
        got = replayed["positions"][inst.symbol]
        for name in row.dtype.names:
            assert got[name] == float(row[name]), (inst.symbol, name)  # exact: JSON keeps bits
