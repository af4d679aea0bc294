"""Memory of one inference: analytic activation size, and measured peak working memory."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import resource
import sys
import threading
import time
from dataclasses import dataclass

import torch
from torch import nn

from profiler.latency import resolve_device

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class PeakMemory:
    """Peak memory a batch inference needed above what was allocated before it (weights and
    input excluded), and how it was measured."""

    peak_mb: float
    method: str


def lifetime_peaks_gib() -> tuple[float, float]:
    """Peak resident memory in GiB over their lifetimes: of this process, and of the largest child process it
    has waited for (0 before one has exited), from ``getrusage`` (KiB on Linux, bytes on macOS)."""
    unit = 1 if sys.platform == "darwin" else 1024
    own, child = (resource.getrusage(who).ru_maxrss * unit / 2**30 for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own, child


def _trim_allocator() -> None:
    """Return freed heap memory to the OS (glibc ``malloc_trim``), so that RSS growth during the
    measured pass is not hidden by memory the allocator kept from earlier work."""
    name = ctypes.util.find_library("c")
    if not name:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(name).malloc_trim(0)


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def measure_peak_memory(
    model: nn.Module, *, batch_size: int = 8, clip: tuple[int, int, int] = (16, 112, 112), device: str = "cpu", in_channels: int = 3
) -> PeakMemory:
    """Run one batch and measure its peak working memory.

    CUDA: ``torch.cuda.max_memory_allocated`` minus the allocation before the pass. CPU: the
    process's resident set size, sampled every 0.2 ms during the pass, minus its value before; the
    C allocator is trimmed first so that memory it kept from earlier work does not hide the growth.
    """
    dev = resolve_device(device)
    was_training = getattr(model, "training", None)  # frozen TorchScript has no training flag
    model = model.to(dev)
    if was_training is not None:
        model.eval()
    x = torch.randn((batch_size, in_channels, *clip), device=dev)
    try:
        with torch.inference_mode():
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
                torch.cuda.reset_peak_memory_stats(dev)
                base = torch.cuda.memory_allocated(dev)
                model(x)
                torch.cuda.synchronize(dev)
                return PeakMemory(
                    (torch.cuda.max_memory_allocated(dev) - base) / 2**20, "cuda max_memory_allocated above the resting allocation"
                )
            if _rss_bytes() is None:
                base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                model(x)
                grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
                return PeakMemory(grown / 1024, "growth of the process's lifetime peak RSS (a lower bound)")
            method = "process RSS sampled during the pass, above its trimmed value before"
            return PeakMemory(_sampled_peak(lambda: model(x)) / 2**20, method)
    finally:
        if was_training is not None:
            model.train(was_training)


def _sampled_peak(fn: object) -> int:
    _trim_allocator()
    base = _rss_bytes() or 0
    peak = base
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_bytes() or 0)
            time.sleep(0.0002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        fn()  # type: ignore[operator]
    finally:
        done.set()
        thread.join()
    return max(peak, _rss_bytes() or 0) - base
