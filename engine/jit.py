"""The decorator of per-event kernels: `@kernel` is `@njit(cache=True)` without reference counting.

Numba counts references to arrays taken out of tuples (such as `ctx`) with
atomic operations, and where branches keep it from pairing them up this costs
tens of nanoseconds per call, more than the work of a whole event. Per-event
code allocates nothing by design, so it can do without the runtime that
counts: with it off, such code runs at the speed of a hand-written loop, and
an allocation slipped into a kernel becomes a compile error instead of a
slowdown.

Kernels are inlined where they are called, which is what makes them free, and
they are inlined by LLVM (`forceinline`), not by Numba: each kernel is typed,
lowered and cached once per engine version, and a loop links in their
compiled code and inlines it. Numba's own inlining (`inline="always"`) copies
and types a kernel's IR again at every call site of every loop: a strategy's
loop took 45-75 s to compile on every edit, and 7 s this way, for the same
cost per event (tickwise bench, `loop` and `guard` suites, two runs each).
Code that runs rarely (the kill switch acting, the risk gate's checks of an
order) is a `cold_kernel` instead: an ordinary call, so that its body is not
copied into every call site of every loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
from numba import njit

# `_nrt` is Numba's switch for its reference-counting runtime (a long-standing option).
KERNEL_OPTIONS: dict[str, Any] = {"cache": True, "_nrt": False, "forceinline": True}


COLD_OPTIONS: dict[str, Any] = {"cache": True, "_nrt": False}


def python_function(fn: Any) -> Any:
    """The Python function behind a kernel (the function itself when nothing is compiled:
    TICKWISE_PURE_PYTHON=1, or NUMBA_DISABLE_JIT=1)."""
    return getattr(fn, "py_func", fn)


def pure_python() -> bool:
    """Whether kernels run as plain Python (for pdb and coverage, on small data)."""
    return bool(numba.config.DISABLE_JIT)


def kernel(fn: Callable[..., Any]) -> Any:
    """Compile `fn` as a per-event kernel. The engine's kernels and the generated loops are
    cached on disk; a strategy's own kernels are not: Numba checks a cached function against
    its own file only, and a strategy's helper module could change under a cached callback.
    A strategy's compiled code is cached within its loop, which is named by everything it
    compiles (engine.loops)."""
    if _ours(fn.__module__):
        return njit(**KERNEL_OPTIONS)(fn)
    return njit(**{**KERNEL_OPTIONS, "cache": False})(fn)


def _ours(module: str | None) -> bool:
    """Whether code is the engine's (or a loop generated from it)."""
    return bool(module) and (
        module.startswith(("tickwise.engine.", "tickwise.feeds.", "tickwise.backtest."))
        or module.startswith("tickwise_loop_")
    )


def cold_kernel(fn: Callable[..., Any]) -> Any:
    """Compile `fn` as a kernel that is called, not inlined (for rarely taken paths)."""
    return njit(**COLD_OPTIONS)(fn)


def event_kernel(fn: Callable[..., Any]) -> Any:
    """A loop's handling of one event of a kind (engine/loop.py), inlined by Numba into the
    runners that call it: that kind's loop and the loop over merged kinds. As a `kernel` it
    would be compiled on its own as well as inside each runner, for every strategy: an
    edited strategy's quotes loop took 10.3-11.0 s to compile that way, 6.1-7.4 s this way
    (benchmarks/compile.py, two rounds each), for the same cost per event (tickwise bench,
    loop suite)."""
    return njit(cache=True, _nrt=False, inline="always")(fn)
