"""SIGTERM as Ctrl-C: ``kill``, ``timeout`` and schedulers stop an e3d command the way Ctrl-C does.

Without it SIGTERM ends a process at once: a trial in training stays RUNNING until its heartbeat
expires and nothing is saved on the way out. (A process started in the background by a shell without
job control ignores SIGINT, so SIGTERM is how such a run is stopped.)

A signal handler runs wherever the main thread is, also inside a garbage-collector or weakref callback
(SQLAlchemy has some), where Python prints the exception and drops it. Such a dropped interrupt is sent
again from a thread, so it lands at a later point that can raise.
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within: SIGTERM raises KeyboardInterrupt, so the process stops as after Ctrl-C. Left alone when
    SIGTERM is ignored or handled already, or off the main thread (where no handler can be set)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    previous, hook = signal.signal(signal.SIGTERM, _interrupt), sys.unraisablehook
    sys.unraisablehook = _redeliver(hook)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        sys.unraisablehook = hook


class _Interrupted(KeyboardInterrupt):
    """The KeyboardInterrupt that SIGTERM raises (told apart from others by the unraisable hook)."""


def _interrupt(signum: int, frame: Any) -> None:
    raise _Interrupted


def _redeliver(hook: Any) -> Any:
    """An unraisable hook that sends a dropped SIGTERM interrupt again and passes anything else on."""

    def redeliver(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, _Interrupted):
            _thread.start_new_thread(_send_again, ())  # not threading.Thread: its start() waits and could be hit
        else:
            hook(unraisable)

    return redeliver


def _send_again() -> None:
    """From another thread, a moment later: SIGTERM again, while the interrupting handler is still set."""
    time.sleep(0.001)
    if signal.getsignal(signal.SIGTERM) is _interrupt:
        os.kill(os.getpid(), signal.SIGTERM)
