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
memory as the caller does (:mod:`profiler.allocator`), and gives its exceptions back to the caller as raised.
It ignores Ctrl-C and SIGTERM, which may reach the whole process group: the caller decides (e3d stops on either,
:mod:`search.interrupts`); a call interrupted in the caller kills the child at once, so that the caller's exit does
not wait for the measurement; a caller killed outright (``kill -9``, the out-of-memory killer) leaves a child that
exits within a second (it checks once a second that its parent is alive; nothing else would end it).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.util
import os
import signal
import threading
import time
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


def _start_child(malloc: str, parent: int) -> None:
    """Runs first in every child: Ctrl-C and SIGTERM ignored (the caller stops the child), an exit once the
    ``parent`` process is gone, malloc as the caller's (``keep`` or ``system``)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    when_orphaned(parent, lambda: os._exit(1))
    if malloc == "keep":
        keep_freed_memory()


def when_orphaned(parent: int, then: Callable[[], object]) -> None:
    """Call ``then`` from a daemon thread once ``parent`` is no longer this process's parent: it was killed
    outright (``kill -9``, the out-of-memory killer), which tells its children nothing. Checked once a second."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        then()

    threading.Thread(target=watch, daemon=True, name="e3d-parent-watch").start()


class MeasuringProcess:
    """``proc(fn, *args)`` returns ``fn(*args)`` computed in a child process (``fn`` and its arguments must
    pickle: a module-level function, plain data), replaced by a fresh child every ``every`` calls. Use it as a
    context manager, or :meth:`close` it, so that the last child exits; one left open is killed when it is
    collected or when this process exits (also a multiprocessing child's exit, which waits for its own children
    and runs no ``atexit`` hooks)."""

    def __init__(self, *, every: int = RECYCLE_EVERY) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1; got {every}")
        self.every = every
        self.calls = 0
        self._box: list[ProcessPoolExecutor | None] = [None]  # not self: the finalizer must not keep self alive
        multiprocessing.util.Finalize(self, _stop, args=(self._box,), kwargs={"kill": True}, exitpriority=100)

    def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        if self._box[0] is not None and self.calls % self.every == 0:
            self.close()
        pool = self._box[0]
        if pool is None:
            context = multiprocessing.get_context("spawn")
            pool = self._box[0] = ProcessPoolExecutor(1, mp_context=context, initializer=_start_child, initargs=(allocator(), os.getpid()))
        self.calls += 1
        try:
            return pool.submit(fn, *args).result()
        except BrokenProcessPool:
            self.close()
            raise MeasuringProcessError(
                f"the measuring process died while running {getattr(fn, '__name__', fn)} (out of memory, or a crash in a kernel)"
            ) from None
        except KeyboardInterrupt:  # the measurement is of no use any more
            self.kill()
            raise

    def close(self) -> None:
        """Let the current child finish its call and exit."""
        _stop(self._box, kill=False)

    def kill(self) -> None:
        """Stop the current child now, in the middle of a call if it is in one."""
        _stop(self._box, kill=True)

    def __enter__(self) -> MeasuringProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _stop(box: list[ProcessPoolExecutor | None], *, kill: bool) -> None:
    """Stop the child of the pool in ``box``, at once with ``kill`` (else after its call), and empty the box."""
    pool, box[0] = box[0], None
    if pool is None:
        return
    if kill:
        for child in list((pool._processes or {}).values()):  # no public way before Python 3.14's terminate_workers
            child.kill()
    pool.shutdown(wait=True, cancel_futures=True)
