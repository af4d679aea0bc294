"""Options of the commands that run a user's model (``e3d profile``, ``e3d export``): what builds it (width,
classes, clip), ``--kwargs`` for an import path's callable (:func:`profiler.targets.parse_kwargs`), and
``--debug`` (or ``E3D_DEBUG=1``), which prints the traceback behind the one-line error of a failure inside the
model (:func:`profiler.targets.guard`)."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable

from e3d.cli import clip_arg, positive_float, positive_int

DEBUG_ENV = "E3D_DEBUG"
"""Set (to anything but 0) it does what ``--debug`` does."""


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``--width-mult``, ``--num-classes`` and the clip: ``--frames`` and ``--size``, or ``--clip TxHxW``
    as ``e3d latency-table`` and ``e3d scale`` take it (read by :func:`frames_and_size`)."""
    p.add_argument("--width-mult", type=positive_float, metavar="W", help="width multiplier (presets only; default 1.0)")
    p.add_argument("--num-classes", type=positive_int, metavar="N", help="classes of the head (presets and spec files only; presets: 600)")
    p.add_argument("--frames", type=positive_int, metavar="T", help="clip length (default 16, or the spec's)")
    p.add_argument("--size", type=positive_int, metavar="S", help="clip height and width (default 112, or the spec's)")
    p.add_argument("--clip", type=clip_arg, metavar="TxHxW", help="the clip as one option: --clip 8x112x112 is --frames 8 --size 112")


def frames_and_size(args: argparse.Namespace) -> tuple[int | None, int | None]:
    """The clip length and frame size asked for (None: the target's default): ``--clip`` (square frames
    only, alone), else ``--frames`` and ``--size``. :class:`profiler.targets.TargetError` otherwise."""
    from profiler.targets import TargetError

    if args.clip is None:
        return args.frames, args.size
    if args.frames is not None or args.size is not None:
        raise TargetError("give the clip as --clip TxHxW or as --frames and --size, not both")
    t, h, w = args.clip
    if h != w:
        raise TargetError(f"--clip {t}x{h}x{w}: the clip is built with square frames, as --size builds it; give equal height and width")
    return t, h


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
