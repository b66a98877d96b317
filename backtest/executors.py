"""Where a sweep's trials run: local worker processes, or the actors of a Ray cluster.

Each worker is a `TrialWorker` that loads the strategy, opens the data (read
by every worker through the OS page cache, never copied per trial) and loads
the compiled loop once, then runs trial after trial. Its BLAS, OpenMP and
Numba thread pools are pinned to one thread: the parallelism is the workers.

Both executors hand out one trial at a time to each idle worker and yield
rows as they finish, in whatever order; the sweep puts them in trial order. A
worker that dies (killed, out of memory) is replaced and its trial run again
on another; a trial during which workers died `MAX_DEATHS` times is a failed
row saying so, and the sweep goes on. With a `timeout`, a trial still running
after that many seconds (a kernel that never ends) has its worker killed and
replaced, and is a failed row saying so; neither kind of row is stored, so a
rerun tries the trial again.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import socket
import subprocess
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


def check_workers(workers: int | None, executor: str) -> None:
    """Refuse a worker count that cannot help: below one, or (on this machine) more than
    its CPUs, each worker being one busy CPU that would only share them."""
    if workers is None:
        return
    if workers < 1:
        raise TickwiseError(f"--workers must be at least 1, got {workers}")
    cpus = default_workers()
    if executor == "local" and workers > cpus:
        raise TickwiseError(f"--workers {workers}: this machine gives this process {cpus} "
                            f"CPUs, and a worker keeps one busy; give at most {cpus} (or "
                            "--executor ray with a cluster)")  # fmt: skip


def check_timeout(timeout: float | None) -> None:
    """A trial timeout is a positive, finite number of seconds (or None: no timeout)."""
    if timeout is not None and not (0 < timeout < float("inf")):
        raise TickwiseError(f"--trial-timeout must be a number of seconds above zero, got "
                            f"{timeout}")  # fmt: skip


def _timed_out(timeout: float) -> dict[str, Any]:
    """The row of a trial stopped by the timeout: `lost`, not stored (a rerun, perhaps with
    a longer timeout, tries it again)."""
    row = failed_row(FAILED, f"still running after --trial-timeout {timeout:g} s, so its "
                             "worker was killed (a loop that never ends?)")  # fmt: skip
    return row | {"lost": True, "wall_s": timeout}


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
    except TickwiseError as exc:  # (said in a sentence: the code or data changed)
        conn.send(("error", str(exc)))
        return
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
    began: float = 0.0  # when its task was sent (time.monotonic)


class LocalExecutor:
    """`workers` processes on this machine (started fresh: nothing of the sweep's process
    is inherited but the environment)."""

    name = "local"

    def __init__(self, plan: Plan, workers: int, timeout: float | None = None) -> None:
        check_workers(workers, self.name)
        check_timeout(timeout)
        self.plan = plan
        self.workers = workers
        self.timeout = timeout
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
                    p.conn.close()
                    p = self._procs[i] = self._start()
                task = again.popleft() if again else next(todo, None)
                if task is None:
                    break
                p.task, p.began = task, time.monotonic()
                with suppress(OSError):  # (died just now: its sentinel tells, below)
                    p.conn.send(task)
            busy = [p for p in self._procs if p.task is not None]
            if not busy:
                return
            left = None
            timed = [p.began for p in busy if p.ready]  # (one still loading is not timed yet)
            if self.timeout is not None and timed:
                left = max(0.0, min(timed) + self.timeout - time.monotonic())
            ready = set(wait([p.conn for p in busy] + [p.process.sentinel for p in busy],
                             timeout=left))  # fmt: skip
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
                    p.conn.close()
                    self._procs[i] = self._start()
                    if deaths[task.key] >= MAX_DEATHS:
                        yield task, _died(task, deaths[task.key])
                    else:
                        again.append(task)
                    continue
                kind, payload = message
                if kind == "ready":
                    p.ready, p.began = True, time.monotonic()  # (its task starts now)
                    self.ready_s.append(payload)
                elif kind == "error":
                    raise TickwiseError(f"a sweep worker could not start: {payload}")
                else:
                    task, p.task = p.task, None
                    yield task, payload
            yield from self._stop_overdue()

    def _stop_overdue(self) -> Iterator[tuple[Task, dict[str, Any]]]:
        """Kill and replace each worker whose trial has run past the timeout."""
        if self.timeout is None:
            return
        now = time.monotonic()
        for i, p in enumerate(self._procs):
            if p.task is not None and p.ready and now - p.began >= self.timeout:
                if p.conn.poll():  # (its row came meanwhile: read next time round)
                    continue
                task = p.task
                p.process.kill()
                p.process.join()
                p.conn.close()
                self._procs[i] = self._start()
                yield task, _timed_out(self.timeout)

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
        self.error: str | None = None
        try:
            self.worker = TrialWorker(plan)
        except TickwiseError as exc:  # (said at its first call: an actor's death says less)
            self.error = str(exc)

    def ready(self) -> str | None:
        """Once loaded: None, or why it could not be."""
        return self.error

    def run(self, task: Task) -> dict[str, Any]:
        if self.error is not None:  # (its ready() said so too; whichever comes first)
            return {"worker_error": self.error}
        return self.worker.run(task)


def ray_address(address: str | None) -> str | None:
    """The Ray cluster a sweep joins: `address`, or the one RAY_ADDRESS names (as `ray job
    submit` sets it); None: a local Ray started for the sweep."""
    return address if address is not None else os.environ.get("RAY_ADDRESS") or None


def on_this_machine(address: str | None) -> bool:
    """Whether a Ray sweep's workers are this machine's CPUs: no cluster named, and none
    this process has joined already (ray.init before the sweep)."""
    ray = sys.modules.get("ray")
    joined = ray is not None and getattr(ray, "is_initialized", lambda: False)()
    return ray_address(address) is None and not joined


class RayExecutor:
    """One actor per worker on a Ray cluster: `address` 'auto' or 'HOST:PORT' (or
    RAY_ADDRESS) joins a running one; none starts a local Ray for this sweep (stopped at
    the end, even when the sweep is killed). Every node must reach the data at the same
    path and have the same tickwise installed."""

    name = "ray"

    def __init__(self, plan: Plan, workers: int | None, address: str | None,
                 timeout: float | None = None) -> None:  # fmt: skip
        try:
            import ray
        except ImportError:
            raise TickwiseError("--executor ray needs Ray: pip install 'tickwise[ray]'") from None
        check_workers(workers, "local" if on_this_machine(address) else self.name)
        address = ray_address(address)
        check_timeout(timeout)
        if address not in (None, "auto"):
            check_reachable(address)
        self.ray = ray
        self.timeout = timeout
        self.started = not ray.is_initialized()
        self._watchdog: subprocess.Popen[bytes] | None = None
        if self.started:
            try:  # (a local Ray gets this machine's CPUs: asking for more is refused below)
                ray.init(address=address, num_cpus=default_workers() if address is None else None,
                         include_dashboard=False, log_to_driver=False,
                         configure_logging=True, logging_level="ERROR")  # fmt: skip
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise TickwiseError(f"Ray at {address or 'a new local instance'}: {exc}") from None
        try:
            if self.started and address is None:
                self._watchdog = _watch(os.getpid())
            free = self._free_cpus(workers or 1)
            self.workers = workers or free
            if not 1 <= self.workers <= free:  # (more would wait for CPUs forever)
                total = int(ray.cluster_resources().get("CPU", 0))
                raise TickwiseError(
                    f"Ray has {free} of its {total} CPUs free: {self.workers} sweep workers of "
                    "one CPU each could not all start; give --workers at most that"
                )
            self._actor = ray.remote(num_cpus=1, max_restarts=0)(_RayWorker).options(
                runtime_env={"env_vars": PINNED_THREADS}
            )
            self.plan = plan
            self._actors = [self._actor.remote(plan) for _ in range(self.workers)]
        except BaseException:
            self._shutdown()
            raise
        self._loading = {slot: a.ready.remote() for slot, a in enumerate(self._actors)}
        self._loaded: dict[int, float] = {}  # slot: when its actor was ready (monotonic)

    def _free_cpus(self, wanted: int, wait_s: float = RAY_FREE_WAIT_S) -> int:
        """The CPUs free for actors, waiting up to `wait_s` for `wanted` of them (actors
        killed a moment ago give theirs back with a delay)."""
        deadline = time.monotonic() + wait_s
        while True:
            free = int(self.ray.available_resources().get("CPU", 0))
            if free >= wanted or time.monotonic() > deadline:
                return free
            time.sleep(0.1)

    def _replace(self, slot: int) -> None:
        """A new actor in `slot` (its last died, or was killed)."""
        self._actors[slot] = self._actor.remote(self.plan)
        self._loading[slot] = self._actors[slot].ready.remote()
        self._loaded.pop(slot, None)

    def _note_loaded(self, refs: Iterable[Any]) -> None:
        """Note when the actors of these `ready` refs were loaded; refuse one that could
        not load the plan (the code or data changed)."""
        for slot, ref in list(self._loading.items()):
            if ref in refs:
                del self._loading[slot]
                try:
                    error = self.ray.get(ref)
                except self.ray.exceptions.RayActorError:  # (died loading: its task says)
                    continue
                if error is not None:
                    raise TickwiseError(f"a sweep worker could not start: {error}")
                self._loaded[slot] = time.monotonic()

    def run(self, tasks: Iterable[Task]) -> Iterator[tuple[Task, dict[str, Any]]]:
        """Run `tasks` on the actors; yield (task, row) as each finishes. A trial is timed
        from when its actor has loaded the plan (as a local worker is)."""
        ray = self.ray
        todo = iter(tasks)
        again: deque[Task] = deque()
        deaths: Counter[str] = Counter()
        idle = list(range(len(self._actors)))
        running: dict[Any, tuple[int, Task, float]] = {}  # ref: slot, task, when sent
        while True:
            while idle:
                task = again.popleft() if again else next(todo, None)
                if task is None:
                    break
                slot = idle.pop()
                running[self._actors[slot].run.remote(task)] = (slot, task, time.monotonic())
            if not running:
                return
            left = None
            if self.timeout is not None:
                timed = [max(sent, self._loaded[slot]) for slot, _, sent in running.values()
                         if slot in self._loaded]  # fmt: skip
                left = max(0.0, min(timed) + self.timeout - time.monotonic()) if timed else None
            waiting = [*running, *self._loading.values()]
            done, _ = ray.wait(waiting, num_returns=1, timeout=left)
            done, _ = ray.wait(waiting, num_returns=len(waiting), timeout=0) if done else ([], 0)
            self._note_loaded(done)
            for ref in done:
                if ref not in running:
                    continue
                slot, task, _ = running.pop(ref)
                try:
                    row = ray.get(ref)
                except ray.exceptions.RayActorError:  # the actor died: a new one, and again
                    deaths[task.key] += 1
                    self._replace(slot)
                    idle.append(slot)
                    if deaths[task.key] >= MAX_DEATHS:
                        yield task, _died(task, deaths[task.key])
                    else:
                        again.append(task)
                    continue
                if "worker_error" in row:
                    raise TickwiseError(f"a sweep worker could not start: {row['worker_error']}")
                idle.append(slot)
                yield task, row
            yield from self._stop_overdue(running, idle)

    def _stop_overdue(self, running: dict[Any, tuple[int, Task, float]],
                      idle: list[int]) -> Iterator[tuple[Task, dict[str, Any]]]:  # fmt: skip
        """Kill the actor of each trial still running past the timeout (a kernel cannot be
        interrupted) and put a new one in its place; a trial that has just finished is left
        for its row."""
        if self.timeout is None:
            return
        now = time.monotonic()
        for ref, (slot, task, sent) in list(running.items()):
            if slot not in self._loaded or now - max(sent, self._loaded[slot]) < self.timeout:
                continue
            if self.ray.wait([ref], num_returns=1, timeout=0)[0]:
                continue
            del running[ref]
            self.ray.kill(self._actors[slot])
            self._replace(slot)
            idle.append(slot)
            yield task, _timed_out(self.timeout)

    def close(self) -> None:
        for actor in self._actors:
            self.ray.kill(actor)
        self._shutdown()

    def _shutdown(self) -> None:
        """Stop the Ray this sweep started (none it joined), and its watchdog."""
        if self.started:
            self.ray.shutdown()
        if self._watchdog is not None:
            self._watchdog.kill()
            self._watchdog.wait()
            self._watchdog = None


def check_reachable(address: str, wait_s: float = 5.0) -> None:
    """Refuse at once a Ray address (HOST:PORT) where nothing answers: Ray itself retries
    for minutes."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdecimal() or not 0 < int(port) < 65536:
        raise TickwiseError(f"--address {address!r}: write auto or HOST:PORT (the head's GCS "
                            "port, 6379 by default)")  # fmt: skip
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=wait_s):
            pass
    except OSError as exc:
        why = exc.strerror or exc
        raise TickwiseError(f"--address {address}: no Ray answers there ({why}); start one "
                            "(ray start --head) or give --address auto") from None  # fmt: skip


# Runs beside a sweep that started a local Ray (Linux): every half second it notes the
# sweep's descendants (Ray's head processes, and the workers and agents they start); when
# the sweep is gone, even SIGKILLed, which skips ray.shutdown, it kills those still running
# (the same process: the same start time), which would otherwise run on, orphaned.
_WATCHDOG = """
import os, signal, sys, time

def start(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[19]
    except OSError:
        return None

def family(root):
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            for kid in kids:
                if kid != os.getpid() and kid not in found:
                    found[kid] = start(kid)
                    todo.append(kid)
    return found

parent = int(sys.argv[1])
seen = {}
while os.getppid() == parent:
    seen.update(family(parent))
    time.sleep(0.5)
for sig in (signal.SIGTERM, signal.SIGKILL):
    for pid, began in seen.items():
        if began is not None and start(pid) == began:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
    time.sleep(2)
"""


def _watch(pid: int) -> subprocess.Popen[bytes] | None:
    """Start the watchdog of process `pid` (this one) and what it starts (Linux only: Ray
    itself reaps its processes elsewhere)."""
    if sys.platform != "linux":
        return None
    return subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(pid)], start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip


def make_executor(name: str, plan: Plan, workers: int | None, address: str | None,
                  timeout: float | None = None) -> LocalExecutor | RayExecutor:  # fmt: skip
    """The executor named on the command line (`local` or `ray`)."""
    if name == "local":
        if address is not None:
            raise TickwiseError("--address is for --executor ray")
        return LocalExecutor(plan, workers or default_workers(), timeout)
    if name == "ray":
        return RayExecutor(plan, workers, address, timeout)
    raise TickwiseError(f"--executor {name!r}: one of {', '.join(EXECUTORS)}")
