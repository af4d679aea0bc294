"""Keep freed memory for reuse, so that large activations do not fault in page by page on every pass.

glibc's malloc serves a request above its mmap threshold (which adapts, but never beyond 32 MiB on a
64-bit machine) with a fresh ``mmap`` and gives it back to the OS on ``free``. A 3D CNN's activations at
16x112x112 and batch 8 are tens to hundreds of MiB each, so every forward and backward pass maps them
anew and the kernel zero-fills them one 4 KiB page fault at a time: on this project's Xeon, MobileNetV2
1.0x spent about as much time in those faults as in its convolutions (``bench/allocator.py`` and
docs/SPEED.md measure it).

:func:`keep_freed_memory` turns ``mmap`` off for malloc (``M_MMAP_MAX = 0``) and stops it trimming the
heap (``M_TRIM_THRESHOLD``), so freed blocks are reused by the next pass. The price: the process keeps
its peak memory until it exits. The e3d CLI, its job processes and the benchmarks call it at start;
``E3D_MALLOC=system`` leaves the system's allocator as it is. Other allocators (jemalloc or tcmalloc
through ``LD_PRELOAD``, macOS, Windows) are left alone.
"""

from __future__ import annotations

import ctypes
import os
import platform

from space.spec import E3DError

ENV = "E3D_MALLOC"
"""``keep`` (the default) or ``system``."""

CHOICES = ("keep", "system")

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
"""glibc's ``mallopt`` parameter numbers (``malloc.h``)."""

_PRELOADED = ("jemalloc", "tcmalloc", "mimalloc")

_state: str | None = None


class AllocatorError(E3DError):
    """An unknown ``E3D_MALLOC`` value."""


def keep_freed_memory() -> str:
    """Make this process's malloc keep freed memory (once; later calls change nothing) and return
    :func:`allocator`. :class:`AllocatorError` for an unknown ``E3D_MALLOC``."""
    global _state
    if _state is None:
        _state = _apply()
    return _state


def allocator() -> str:
    """``keep`` when :func:`keep_freed_memory` changed malloc in this process, else ``system``."""
    return _state or "system"


def _apply() -> str:
    wanted = os.environ.get(ENV, "keep").strip().lower() or "keep"
    if wanted not in CHOICES:
        raise AllocatorError(f"{ENV}={os.environ[ENV]!r}: choose {' or '.join(CHOICES)}")
    preload = os.environ.get("LD_PRELOAD", "")
    if wanted == "system" or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc" or any(a in preload for a in _PRELOADED):
        return "system"
    libc = ctypes.CDLL(None)
    if libc.mallopt(_M_MMAP_MAX, 0) != 1:
        return "system"
    libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)  # the largest an int holds
    return "keep"
