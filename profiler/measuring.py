"""Measure in a child process that a fresh one replaces every so many calls, so that long runs keep their memory.

TorchScript registers the type of every module it traces, with its graph (and a frozen module's weights
as constants), in a registry that lives as long as the process; nothing in PyTorch's public API removes
one, and clearing the whole registry breaks every traced module still alive (a segmentation fault on the
next call). On the optimized path a block leaves about 2.4 MB behind and a whole network about 25 MB
(16x112x112, measured 2026-12-06, docs/LATENCY.md): a default table's build grew to 10.4 GiB in one process.
:class:`MeasuringProcess` runs each measurement in a child process and starts a fresh one every ``every``
calls (:data:`RECYCLE_EVERY` for blocks, :data:`NETWORKS_EVERY` for networks), which bounds what
accumulates; the caller's process traces nothing.

The child starts with ``spawn`` (no fork of a process whose OpenMP threads are running), keeps freed
memory as the caller does (:mod:`profiler.allocator`), and gets the caller's exceptions back as raised.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from types import TracebackType
from typing import Any, TypeVar

from profiler.allocator import allocator, keep_freed_memory
from space.spec import E3DError

T = TypeVar("T")

RECYCLE_EVERY = 1000
"""Calls a child process serves before a fresh one replaces it (about a second each): a table's build makes
one call per block and path, so a child traces about 500 blocks, some 1.2 GB."""
NETWORKS_EVERY = 40
"""The same for calls that each time a whole network: about 25 MB stays behind per call at 16x112x112 (a
child of the predictor's bench grew by 12 GB over its 484 calls, 2026-12-06), so about 1 GB."""


class MeasuringProcessError(E3DError):
    """The child process died while measuring (out of memory, or a crash in a kernel)."""


def _start_child(malloc: str) -> None:
    """Runs first in every child: malloc as the caller's (``keep`` or ``system``)."""
    if malloc == "keep":
        keep_freed_memory()


class MeasuringProcess:
    """``proc(fn, *args)`` returns ``fn(*args)`` computed in a child process (``fn`` and its arguments must
    pickle: a module-level function, plain data), replaced by a fresh child every ``every`` calls. Use it as a
    context manager, or :meth:`close` it, so that the last child exits."""

    def __init__(self, *, every: int = RECYCLE_EVERY) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1; got {every}")
        self.every = every
        self.calls = 0
        self._pool: ProcessPoolExecutor | None = None

    def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        if self._pool is not None and self.calls % self.every == 0:
            self.close()
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(1, mp_context=context, initializer=_start_child, initargs=(allocator(),))
        self.calls += 1
        try:
            return self._pool.submit(fn, *args).result()
        except BrokenProcessPool:
            self.close()
            raise MeasuringProcessError(
                f"the measuring process died while running {getattr(fn, '__name__', fn)} (out of memory, or a crash in a kernel)"
            ) from None

    def close(self) -> None:
        """Let the current child finish and exit."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> MeasuringProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
