"""Options of the commands that run a user's model (``e3d profile``, ``e3d export``): ``--kwargs`` for an
import path's callable (:func:`profiler.targets.parse_kwargs`), and ``--debug`` (or ``E3D_DEBUG=1``), which
prints the traceback behind the one-line error of a failure inside the model (:func:`profiler.targets.guard`)."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable

DEBUG_ENV = "E3D_DEBUG"
"""Set (to anything but 0) it does what ``--debug`` does."""


def add_kwargs_argument(p: argparse.ArgumentParser) -> None:
    """Add ``--kwargs JSON``: keyword arguments of an import path's callable."""
    p.add_argument("--kwargs", metavar="JSON", help="""keyword arguments of an import path's callable: '{"num_classes": 600}'""")


def add_debug_argument(p: argparse.ArgumentParser) -> None:
    """Add ``--debug``: show the traceback of a failure inside the model."""
    p.add_argument("--debug", action="store_true", help=f"show the traceback of a failure inside the model (also {DEBUG_ENV}=1)")


def debug_requested(args: argparse.Namespace) -> bool:
    """``--debug`` was given, or the environment variable ``E3D_DEBUG`` is set to anything but ``0``."""
    return bool(getattr(args, "debug", False)) or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def run_showing_traceback(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """``run(args)``; when it raises an e3d error and the traceback is asked for (:func:`debug_requested`),
    print the traceback of the error's cause (the user's exception) first. The error itself propagates:
    ``e3d.cli`` prints it as one line and exits with 2."""
    from space.spec import E3DError

    try:
        return run(args)
    except E3DError as e:
        if debug_requested(args):
            traceback.print_exception(e.__cause__ or e, file=sys.stderr)
        raise
