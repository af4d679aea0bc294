"""SIGTERM as Ctrl-C, and no interrupt dropped: ``kill``, ``timeout`` and schedulers stop an e3d
command the way Ctrl-C does.

Without it SIGTERM ends a process at once: a trial in training stays RUNNING until its heartbeat
expires and nothing is saved on the way out. (A process started in the background by a shell without
job control ignores SIGINT, so SIGTERM is how such a run is stopped.)

A signal handler runs wherever the main thread is, also inside a garbage-collector or weakref callback
(SQLAlchemy has some), where Python prints the exception and drops it. Such a dropped interrupt, from
SIGTERM or from Ctrl-C's SIGINT, is sent again from a thread, so it lands at a later point that can raise.
"""

from __future__ import annotations

import _thread
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
        yield


class _Interrupted(KeyboardInterrupt):
    """The KeyboardInterrupt that :func:`_interrupt` raises, with its signal (told apart from others by
    the unraisable hook)."""


def _interrupt(signum: int, frame: Any) -> None:
    raise _Interrupted(signum)


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
