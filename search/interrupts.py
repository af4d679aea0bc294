"""SIGTERM as Ctrl-C, and no interrupt dropped: ``kill``, ``timeout`` and schedulers stop an e3d
command the way Ctrl-C does.

Without it SIGTERM ends a process at once: a trial in training stays RUNNING until its heartbeat
expires and nothing is saved on the way out. (A process started in the background by a shell without
job control ignores SIGINT, so SIGTERM is how such a run is stopped.)

A signal handler runs wherever the main thread is, also inside a garbage-collector or weakref callback
(SQLAlchemy has some), where Python prints the exception and drops it. Such a dropped interrupt, from
SIGTERM or from Ctrl-C's SIGINT, is sent again from a thread, so it lands at a later point that can raise.

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
from typing import Any

_TAKEN_OVER = {signal.SIGTERM: signal.SIG_DFL, signal.SIGINT: signal.default_int_handler}
"""The signals handled within :func:`interrupt_signals`, each only while it has this (default) handler."""

_RAISED = threading.Event()
"""Set once :func:`_interrupt` raised within the current :func:`interrupt_signals`."""


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
        if not logging.getLogger().handlers:  # else the program's own logging set-up decides
            quiet, sqlalchemy = _stderr_until_interrupted(), logging.getLogger("sqlalchemy")
            sqlalchemy.addHandler(quiet)
            restore.callback(sqlalchemy.removeHandler, quiet)
        yield


class _Interrupted(KeyboardInterrupt):
    """The KeyboardInterrupt that :func:`_interrupt` raises, with its signal (told apart from others by
    the unraisable hook)."""


def _interrupt(signum: int, frame: Any) -> None:
    _RAISED.set()
    raise _Interrupted(signum)


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
