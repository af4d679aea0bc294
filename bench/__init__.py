"""Benchmarks. Importing the package sets malloc up as the e3d CLI does (:func:`profiler.allocator.keep_freed_memory`;
``E3D_MALLOC=system`` leaves the system's allocator as it is), so that they time what e3d runs."""

import datetime
import os
import sys

import torch

from profiler.allocator import AllocatorError, keep_freed_memory
from profiler.cpu import detect_cpu

try:
    keep_freed_memory()
except AllocatorError as e:  # one line and exit 2, as the e3d command does
    print(f"error: {e}", file=sys.stderr)
    raise SystemExit(2) from None


def machine_stamp(*, threads: int | str | None = None) -> str:
    """When and where a bench runs, for the first line of its report: such as ``2026-12-07 09:37 UTC, AMD EPYC
    (AVX512: avx2, avx512f, avx512_bf16), 2 cores, load 0.4, torch 2.13.0+cpu``, then ``, 1 torch thread(s)`` where
    ``threads`` is given (a count, or words such as ``1 torch thread per trial``). The load is the 1-minute load
    average now (``?`` where the OS has none): a report written at the end of a run gives it at the end."""
    now = datetime.datetime.now(datetime.timezone.utc)
    text = f"{now:%Y-%m-%d %H:%M} UTC, {detect_cpu().describe()}, {os.cpu_count()} cores, load {load_average()}, torch {torch.__version__}"
    if isinstance(threads, int):
        threads = f"{threads} torch thread(s)"
    return f"{text}, {threads}" if threads else text


def load_average() -> str:
    """The 1-minute load average now, to one decimal (``?`` where the OS has none)."""
    return f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "?"


def known_preset(name: str, width: float, text: str) -> tuple[str, float]:
    """``(name, width)`` where ``name`` is a registered preset (:func:`space.list_models`) and ``width`` a
    positive number; otherwise an ``argparse.ArgumentTypeError`` naming ``text``, so that an unknown preset
    is one line and exit 2 before anything runs."""
    import argparse
    import math

    from space.registry import list_models

    if name not in list_models():
        raise argparse.ArgumentTypeError(f"unknown preset {name!r} in {text!r}; choose from {', '.join(list_models())}")
    if not (math.isfinite(width) and width > 0):
        raise argparse.ArgumentTypeError(f"the width must be a positive number, got {text!r}")
    return name, width


def preset_arg(text: str) -> tuple[str, float]:
    """argparse type: ``NAME:WIDTH`` (:func:`e3d.cli.preset_arg`) of a registered preset at a positive width."""
    from e3d.cli import preset_arg as name_and_width

    return known_preset(*name_and_width(text), text)
