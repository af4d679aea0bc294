"""SIGTERM as Ctrl-C, and no interrupt dropped: ``kill``, ``timeout`` and schedulers stop an e3d
command the way Ctrl-C does.

Without it SIGTERM ends a process at once: a trial in training stays RUNNING until its heartbeat
expires and nothing is saved on the way out. (A process started in the background by a shell without
job control ignores SIGINT, so SIGTERM is how such a run is stopped.)

A signal handler runs wherever the main thread is, also inside a garbage-collector or weakref callback
(SQLAlchemy has some), where Python prints the exception and drops it. Such a dropped interrupt, from
SIGTERM or from Ctrl-C's SIGINT, is sent again from a thread, so it lands at a later point that can raise.

An interrupt that lands inside a storage call (SQLAlchemy or Optuna's storages) is raised when the call is
over, out of it. Raised in the middle, it lost the call's write or left its connection checked out of the pool
with SQLite's write lock held: the process's own next write (marking its trial interrupted) and every other
worker's then waited a minute for the lock and failed ("database is locked"). A loop of writes stopped at
random moments did one or the other in 5 stops of 100 (a script, 2026-12-06), in none since.

An interrupt that lands inside a SQLAlchemy query can make SQLAlchemy log a second error while it unwinds
("Error closing cursor" on a connection already closed), with a traceback, through Python's last-resort
handler. Once an interrupt was raised, such records are dropped: the run is stopping and the one message
that matters is how to continue it. Before that, SQLAlchemy's warnings and errors print as they did.
"""

from __future__ import annotations

import _thread
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from types import FrameType
from typing import Any

_TAKEN_OVER = {signal.SIGTERM: signal.SIG_DFL, signal.SIGINT: signal.default_int_handler}
"""The signals handled within :func:`interrupt_signals`, each only while it has this (default) handler."""

_RAISED = threading.Event()
"""Set once :func:`_interrupt` raised within the current :func:`interrupt_signals`."""

_HOLDING = threading.Event()
"""Set between :func:`hold` and :func:`let_go`: an interrupt is kept in :data:`_HELD` instead of raised."""
_HELD: list[int] = []


@contextmanager
def interrupt_signals() -> Iterator[None]:
    """Within: SIGTERM and SIGINT raise KeyboardInterrupt, so the process stops as after Ctrl-C, and an
    interrupt Python would drop is sent again. A signal is left alone when it is ignored or handled
    already, and both off the main thread (where no handler can be set)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with ExitStack() as restore:
        for signum, default in _TAKEN_OVER.items():
            if signal.getsignal(signum) is default:
                signal.signal(signum, _interrupt)
                restore.callback(signal.signal, signum, default)
        hook = sys.unraisablehook
        sys.unraisablehook = _redeliver(hook)
        restore.callback(setattr, sys, "unraisablehook", hook)
        _RAISED.clear()
        restore.callback(_HOLDING.clear)  # the worker lets go; nothing is held past its run
        if not logging.getLogger().handlers:  # else the program's own logging set-up decides
            quiet, sqlalchemy = _stderr_until_interrupted(), logging.getLogger("sqlalchemy")
            sqlalchemy.addHandler(quiet)
            restore.callback(sqlalchemy.removeHandler, quiet)
        yield


class _Interrupted(KeyboardInterrupt):
    """The KeyboardInterrupt that :func:`_interrupt` raises, with its signal (told apart from others by
    the unraisable hook)."""


STORAGE_MODULES = ("sqlalchemy.", "optuna.storages.")
"""Code an interrupt does not land in: a storage call runs to its end first."""


def hold() -> None:
    """From now until :func:`let_go`, an interrupt is kept, not raised: a trial that finished training is being
    recorded (the step between Optuna's objective and its tell is not a storage call, and an interrupt raised
    there left the trial RUNNING, to be failed as stale and trained again)."""
    _HOLDING.set()


def let_go() -> None:
    """End :func:`hold`, and raise the interrupt that came meanwhile, if one did."""
    _HOLDING.clear()
    if _HELD:
        signum = _HELD[0]
        _HELD.clear()
        _raise(signum)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    if _HOLDING.is_set():
        _HELD.append(signum)
        return
    outermost = storage_call(frame)
    if outermost is not None:
        _raise_on_return(outermost, signum)
        return
    _raise(signum)


def _raise(signum: int) -> None:
    _RAISED.set()
    raise _Interrupted(signum)


def storage_call(frame: FrameType | None) -> FrameType | None:
    """The outermost frame of :data:`STORAGE_MODULES` code among ``frame`` and its callers (None: none)."""
    outermost = None
    while frame is not None:
        if str(frame.f_globals.get("__name__", "")).startswith(STORAGE_MODULES):
            outermost = frame
        frame = frame.f_back
    return outermost


def _raise_on_return(target: FrameType, signum: int) -> None:
    """Raise the interrupt from this thread's profile hook once ``target`` returns or raises: the error then
    comes out of that call, to its caller, with the call finished (a profiler set before is left off)."""

    def profile(frame: FrameType, event: str, _arg: Any) -> None:
        if frame is target and event == "return":
            sys.setprofile(None)
            _raise(signum)

    sys.setprofile(profile)


def _stderr_until_interrupted() -> logging.Handler:
    """What Python's last-resort handler does (WARNING and above to stderr), until an interrupt was raised."""
    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING)
    handler.addFilter(lambda record: not _RAISED.is_set())
    return handler


def _redeliver(hook: Any) -> Any:
    """An unraisable hook that sends a dropped interrupt again and passes anything else on."""

    def redeliver(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, _Interrupted):
            signum = unraisable.exc_value.args[0]
            _thread.start_new_thread(_send_again, (signum,))  # not threading.Thread: its start() waits and could be hit
        else:
            hook(unraisable)

    return redeliver


def _send_again(signum: int) -> None:
    """From another thread, a moment later: ``signum`` again, while the interrupting handler is still set."""
    time.sleep(0.001)
    if signal.getsignal(signum) is _interrupt:
        os.kill(os.getpid(), signum)
