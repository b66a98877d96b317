"""Where a sweep's trials run: local worker processes, or the actors of a Ray cluster.

Each worker is a `TrialWorker` that loads the strategy, opens the data (read
by every worker through the OS page cache, never copied per trial) and loads
the compiled loop once, then runs trial after trial. Its BLAS, OpenMP and
Numba thread pools are pinned to one thread: the parallelism is the workers.

Both executors hand out one trial at a time to each idle worker and yield
rows as they finish, in whatever order; the sweep puts them in trial order. A
worker that dies (killed, out of memory) is replaced and its trial run again
on another; a trial during which workers died `MAX_DEATHS` times is a failed
row saying so, and the sweep goes on.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from tickwise.engine.errors import TickwiseError

from .trials import FAILED, Plan, Task, TrialWorker, failed_row

MAX_DEATHS = 2  # workers lost running one trial before it is given up as failed
# One thread per worker in every pool a trial could start (numpy's BLAS, OpenMP, Numba).
PINNED_THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                  "NUMBA_NUM_THREADS": "1"}  # fmt: skip
EXECUTORS = ("local", "ray")
RAY_FREE_WAIT_S = 10.0  # how long a sweep waits for a Ray cluster's CPUs to be free


def default_workers() -> int:
    """The CPUs this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _died(task: Task, deaths: int) -> dict[str, Any]:
    """The row of a trial whose workers kept dying: `lost`, so it is not stored (a rerun of
    the sweep tries it again)."""
    row = failed_row(FAILED, f"the worker running it died {deaths} times (killed, or out "
                             "of memory)")  # fmt: skip
    return row | {"lost": True}


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when the sweep's process dies, even killed (a
    worker in a trial that never ends would otherwise run on, orphaned)."""
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _pin_threads() -> Any:
    """Keep this worker to one CPU: the thread pools already loaded limited to one thread
    each, and Parquet decoded on the reading thread."""
    from threadpoolctl import threadpool_limits

    from tickwise.feeds.history import read_on_one_thread

    read_on_one_thread()
    return threadpool_limits(limits=1)


# --- local processes ----------------------------------------------------------------------


def _serve(conn: Connection, plan: Plan) -> None:
    """A local worker: answers each task sent on `conn` with its row, until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the sweep's to handle
    _die_with_parent()
    _held = _pin_threads()  # (the limits last while the worker lives)
    try:
        worker = TrialWorker(plan)
    except Exception as exc:  # (the sweep opened the same plan first: this is unexpected)
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", worker.ready_s))
    while True:
        try:
            task = conn.recv()
            if task is None:
                return
            conn.send(("row", worker.run(task)))
        except (EOFError, OSError):  # the sweep is gone
            return


@contextmanager
def _pinned_env() -> Iterator[None]:
    """The thread limits in the environment while a worker process starts (it inherits
    them before it loads any library), the parent's environment as it was after."""
    saved = {k: os.environ.get(k) for k in PINNED_THREADS}
    os.environ.update(PINNED_THREADS)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass
class _Process:
    process: Any
    conn: Connection
    task: Task | None = None
    ready: bool = False  # it has loaded the plan


class LocalExecutor:
    """`workers` processes on this machine (started fresh: nothing of the sweep's process
    is inherited but the environment)."""

    name = "local"

    def __init__(self, plan: Plan, workers: int) -> None:
        if workers < 1:
            raise TickwiseError(f"--workers must be at least 1, got {workers}")
        self.plan = plan
        self.workers = workers
        self._mp = mp.get_context("spawn")
        self._procs = [self._start() for _ in range(workers)]
        self.ready_s: list[float] = []  # each worker's one-off setup (strategy, data)

    def _start(self) -> _Process:
        ours, theirs = self._mp.Pipe()
        with _pinned_env():
            process = self._mp.Process(target=_serve, args=(theirs, self.plan), daemon=True)
            process.start()
        theirs.close()
        return _Process(process, ours)

    def run(self, tasks: Iterable[Task]) -> Iterator[tuple[Task, dict[str, Any]]]:
        """Run `tasks` (pulled as workers free up); yield (task, row) as each finishes."""
        todo = iter(tasks)
        again: deque[Task] = deque()
        deaths: Counter[str] = Counter()
        while True:
            for i, p in enumerate(self._procs):
                if p.task is not None:
                    continue
                if not p.process.is_alive():  # died idle (killed between trials)
                    p = self._procs[i] = self._start()
                task = again.popleft() if again else next(todo, None)
                if task is None:
                    break
                p.task = task
                with suppress(OSError):  # (died just now: its sentinel tells, below)
                    p.conn.send(task)
            busy = [p for p in self._procs if p.task is not None]
            if not busy:
                return
            ready = set(wait([p.conn for p in busy] + [p.process.sentinel for p in busy]))
            for i, p in enumerate(self._procs):
                if p.task is None or not ({p.conn, p.process.sentinel} & ready):
                    continue
                message = self._receive(p)
                if message is None and not p.ready:
                    raise TickwiseError(
                        f"a sweep worker died while starting (exit code {p.process.exitcode}): "
                        "workers are fresh processes that import the main module, so a script "
                        "calling tickwise's sweep must do it under `if __name__ == "
                        "'__main__':` (see its error above)"
                    )
                if message is None:  # the worker died: replace it, run its trial again
                    task, p.task = p.task, None
                    deaths[task.key] += 1
                    self._procs[i] = self._start()
                    if deaths[task.key] >= MAX_DEATHS:
                        yield task, _died(task, deaths[task.key])
                    else:
                        again.append(task)
                    continue
                kind, payload = message
                if kind == "ready":
                    p.ready = True
                    self.ready_s.append(payload)
                elif kind == "error":
                    raise TickwiseError(f"a sweep worker could not start: {payload}")
                else:
                    task, p.task = p.task, None
                    yield task, payload

    @staticmethod
    def _receive(p: _Process) -> tuple[str, Any] | None:
        """The worker's next message, or None if it died (no message can come)."""
        if p.conn.poll():
            try:
                return p.conn.recv()
            except (EOFError, OSError):
                pass
        if p.process.is_alive():  # (woken by a half-written message: it will come whole)
            try:
                return p.conn.recv()
            except (EOFError, OSError):
                pass
        p.process.join(timeout=5)
        return None

    def close(self) -> None:
        """Stop every worker (at once: a trial still running is abandoned)."""
        for p in self._procs:
            if p.task is None:
                with suppress(OSError):
                    p.conn.send(None)
            else:
                p.process.terminate()
        for p in self._procs:
            p.process.join(timeout=10)
            if p.process.is_alive():
                p.process.kill()
                p.process.join()
            p.conn.close()


# --- Ray ----------------------------------------------------------------------------------


class _RayWorker:
    """A TrialWorker as a Ray actor."""

    def __init__(self, plan: Plan) -> None:
        self.limits = _pin_threads()
        self.worker = TrialWorker(plan)

    def run(self, task: Task) -> dict[str, Any]:
        return self.worker.run(task)


class RayExecutor:
    """One actor per worker on a Ray cluster: `address` 'auto' or 'HOST:PORT' joins a
    running one; None starts a local Ray for this sweep (stopped at the end). Every node
    must reach the data at the same path and have tickwise installed."""

    name = "ray"

    def __init__(self, plan: Plan, workers: int | None, address: str | None) -> None:
        try:
            import ray
        except ImportError:
            raise TickwiseError("--executor ray needs Ray: pip install 'tickwise[ray]'") from None
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            try:
                ray.init(address=address, num_cpus=workers if address is None else None,
                         include_dashboard=False, log_to_driver=False,
                         configure_logging=True, logging_level="ERROR")  # fmt: skip
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise TickwiseError(f"Ray at {address or 'a new local instance'}: {exc}") from None
        if workers is not None and workers < 1:
            raise TickwiseError(f"--workers must be at least 1, got {workers}")
        free = self._free_cpus(workers or 1)
        self.workers = workers or free
        if not 1 <= self.workers <= free:  # (more would wait for CPUs forever)
            total = int(ray.cluster_resources().get("CPU", 0))
            if self.started:
                ray.shutdown()
            raise TickwiseError(
                f"Ray has {free} of its {total} CPUs free: {self.workers} sweep workers of one "
                "CPU each could not all start; give --workers at most that"
            )
        self._actor = ray.remote(num_cpus=1, max_restarts=0)(_RayWorker).options(
            runtime_env={"env_vars": PINNED_THREADS}
        )
        self.plan = plan
        self._actors = [self._actor.remote(plan) for _ in range(self.workers)]

    def _free_cpus(self, wanted: int, wait_s: float = RAY_FREE_WAIT_S) -> int:
        """The CPUs free for actors, waiting up to `wait_s` for `wanted` of them (actors
        killed a moment ago give theirs back with a delay)."""
        deadline = time.monotonic() + wait_s
        while True:
            free = int(self.ray.available_resources().get("CPU", 0))
            if free >= wanted or time.monotonic() > deadline:
                return free
            time.sleep(0.1)

    def run(self, tasks: Iterable[Task]) -> Iterator[tuple[Task, dict[str, Any]]]:
        """Run `tasks` on the actors; yield (task, row) as each finishes."""
        ray = self.ray
        todo = iter(tasks)
        again: deque[Task] = deque()
        deaths: Counter[str] = Counter()
        idle = list(range(len(self._actors)))
        running: dict[Any, tuple[int, Task]] = {}
        while True:
            while idle:
                task = again.popleft() if again else next(todo, None)
                if task is None:
                    break
                slot = idle.pop()
                running[self._actors[slot].run.remote(task)] = (slot, task)
            if not running:
                return
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                slot, task = running.pop(ref)
                try:
                    row = ray.get(ref)
                except ray.exceptions.RayActorError:  # the actor died: a new one, and again
                    deaths[task.key] += 1
                    self._actors[slot] = self._actor.remote(self.plan)
                    idle.append(slot)
                    if deaths[task.key] >= MAX_DEATHS:
                        yield task, _died(task, deaths[task.key])
                    else:
                        again.append(task)
                    continue
                idle.append(slot)
                yield task, row

    def close(self) -> None:
        for actor in self._actors:
            self.ray.kill(actor)
        if self.started:
            self.ray.shutdown()


def make_executor(name: str, plan: Plan, workers: int | None,
                  address: str | None) -> LocalExecutor | RayExecutor:  # fmt: skip
    """The executor named on the command line (`local` or `ray`)."""
    if name == "local":
        if address is not None:
            raise TickwiseError("--address is for --executor ray")
        return LocalExecutor(plan, workers or default_workers())
    if name == "ray":
        return RayExecutor(plan, workers, address)
    raise TickwiseError(f"--executor {name!r}: one of {', '.join(EXECUTORS)}")
