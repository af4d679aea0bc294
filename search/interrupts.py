"""SIGTERM as Ctrl-C: ``kill``, ``timeout`` and schedulers stop an e3d command the way Ctrl-C does.

Without it SIGTERM ends a process at once: a trial in training stays RUNNING until its heartbeat
expires and nothing is saved on the way out. (A process started in the background by a shell without
job control ignores SIGINT, so SIGTERM is how such a run is stopped.)
"""

from __future__ import annotations

import signal
import threading
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
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
