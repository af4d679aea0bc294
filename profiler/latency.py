"""Measured latency of one batch: median and interquartile range over timed repeats."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from statistics import median, quantiles
from typing import Any

import torch
from torch import nn

from profiler.allocator import allocator
from profiler.cpu import detect_cpu
from space.spec import E3DError

PAPER_BATCH = 8
"""Table 8 measured clips/s with batches of 8 clips."""


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (None: as they are), then restore the previous count."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class DeviceError(E3DError):
    """A device that does not exist on this machine."""


@dataclass(frozen=True)
class Latency:
    """Timing of ``repeats`` forward passes of a batch, after ``warmup`` untimed ones."""

    median_ms: float
    iqr_ms: float
    q1_ms: float
    q3_ms: float
    clips_per_s: float
    batch_size: int
    clip: tuple[int, int, int]
    device: str
    device_name: str
    threads: int
    torch_version: str
    dtype: str
    """The input clips' dtype (float32 under autocast too: the precision the model ran in is the profile's ``precision``)."""
    warmup: int
    repeats: int
    other_load: float | None = None
    """CPUs kept busy by other processes during the timed passes, on average (Linux; None elsewhere)."""
    load_avg: float | None = None
    """The system's 1-minute load average right after the timing (None where the OS has none)."""
    cpus: int = 1
    """CPUs of this machine."""
    allocator: str = "system"
    """Whether malloc kept freed memory for reuse (``keep``) or ran as the system set it up
    (:func:`profiler.allocator.allocator`): large activations time very differently under the two."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @property
    def spread(self) -> float:
        """IQR over median: the relative spread of the repeats."""
        return self.iqr_ms / self.median_ms if self.median_ms > 0 else 0.0

    @property
    def unreliable(self) -> bool:
        """True when the repeats spread by more than :data:`MAX_SPREAD` of the median."""
        return self.spread > MAX_SPREAD

    def load_text(self) -> str:
        """What load the timing saw, in words."""
        parts = []
        if self.other_load is not None:
            parts.append(f"other processes kept {self.other_load:.1f} of the {self.cpus} CPUs busy during the timing")
        if self.load_avg is not None:
            parts.append(f"1-minute load average {self.load_avg:.1f}")
        return "; ".join(parts) or "no load figures on this OS"


MAX_SPREAD = 0.2
"""IQR above this fraction of the median makes a latency unreliable (it is reported with a warning)."""


def _cpu_seconds() -> tuple[float, float] | None:
    """(CPU seconds all processes have been busy, CPU seconds of this process), or None without /proc."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + ticks[4]
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK"), time.process_time()


def _other_load(before: tuple[float, float] | None, wall_s: float) -> float | None:
    """CPUs busy with other processes between ``before`` and now, on average."""
    after = _cpu_seconds()
    if before is None or after is None or wall_s <= 0:
        return None
    busy, own = after[0] - before[0], after[1] - before[1]
    return max(0.0, (busy - own) / wall_s)


def resolve_device(device: str | torch.device) -> torch.device:
    """Parse ``device`` and check that it exists here (:class:`DeviceError` otherwise)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeviceError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = dev.index or 0
        if index >= n:
            raise DeviceError(f"CUDA device {dev} does not exist: this machine has {n} CUDA device{'s' if n != 1 else ''}")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("the mps device (Apple GPU) is not available on this machine; use cpu or cuda[:N]")
    elif dev.type not in ("cpu", "mps"):  # meta among them: it has no data, so nothing on it can be timed
        raise DeviceError(f"unsupported device {device!r}: it cannot run a model to time; use cpu or cuda[:N]")
    return dev


def device_name(dev: torch.device) -> str:
    """Human name of a device: the GPU's name, or the CPU's model with its ISA and flags (:meth:`CpuInfo.describe`)."""
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return detect_cpu().describe() if dev.type == "cpu" else dev.type


def measure_latency(
    model: nn.Module,
    *,
    batch_size: int = PAPER_BATCH,
    clip: tuple[int, int, int] = (16, 112, 112),
    device: str | torch.device = "cpu",
    threads: int | None = None,
    warmup: int = 3,
    repeats: int = 10,
    in_channels: int = 3,
    dtype: torch.dtype = torch.float32,
) -> Latency:
    """Time forward passes of a ``batch_size`` x ``in_channels`` x ``clip`` batch.

    The model runs in eval and inference mode on ``device`` (it is moved there); ``warmup`` passes
    are not timed. On CUDA each pass is timed with events after a synchronisation. On CPU,
    ``threads`` sets torch's intra-op thread count for the measurement and restores it afterwards.
    The model's training flag is restored too. Returns per-batch milliseconds.
    """
    if batch_size < 1 or repeats < 1 or warmup < 0:
        raise ValueError("batch_size and repeats must be >= 1 and warmup >= 0")
    dev = resolve_device(device)
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    x_shape = (batch_size, in_channels, *clip)
    samples, other, used = _time_in_eval(model, x_shape, dev, dtype, threads=threads, warmup=warmup, repeats=repeats)
    return _latency(samples, other, used, dev, dtype, batch_size=batch_size, clip=clip, warmup=warmup, repeats=repeats)


def _time_in_eval(
    model: nn.Module, x_shape: tuple[int, ...], dev: torch.device, dtype: torch.dtype, *, threads: int | None, warmup: int, repeats: int
) -> tuple[list[float], float | None, int]:
    """Time ``model`` on ``dev`` in eval mode with ``threads`` torch threads: (ms samples, other processes' load, threads used).

    The thread count is restored first, then the model's training flag (absent in frozen TorchScript).
    """
    was_training = getattr(model, "training", None)  # frozen TorchScript has no training flag
    try:
        with torch_threads(threads):
            model = model.to(dev)
            if was_training is not None:
                model.eval()
            x = torch.randn(x_shape, device=dev, dtype=dtype)
            start, wall = _cpu_seconds(), time.perf_counter()
            samples = time_model(model, x, dev, warmup, repeats)
            return samples, _other_load(start, time.perf_counter() - wall), torch.get_num_threads()
    finally:
        if was_training is not None:
            model.train(was_training)


def _latency(
    samples: list[float],
    other: float | None,
    used: int,
    dev: torch.device,
    dtype: torch.dtype,
    *,
    batch_size: int,
    clip: tuple[int, int, int],
    warmup: int,
    repeats: int,
) -> Latency:
    """The :class:`Latency` of timed ``samples`` (ms): median and quartiles, with the machine and its load."""
    med = median(samples)
    q1, _, q3 = quantiles(samples, n=4, method="inclusive") if len(samples) > 1 else (med, med, med)
    return Latency(
        median_ms=med,
        iqr_ms=q3 - q1,
        q1_ms=q1,
        q3_ms=q3,
        clips_per_s=batch_size * 1000.0 / med,
        batch_size=batch_size,
        clip=clip,
        device=str(dev),
        device_name=device_name(dev),
        threads=used,
        torch_version=torch.__version__,
        dtype=str(dtype).removeprefix("torch."),
        warmup=warmup,
        repeats=repeats,
        other_load=None if other is None else round(other, 2),
        load_avg=round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        cpus=os.cpu_count() or 1,
        allocator=allocator(),
    )


def time_model(model: nn.Module, x: torch.Tensor, dev: torch.device, warmup: int, repeats: int) -> list[float]:
    """Milliseconds of each of ``repeats`` inference passes of ``model`` on ``x``, after ``warmup`` untimed ones
    (CUDA events on a GPU, the wall clock elsewhere)."""
    samples: list[float] = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            for _ in range(repeats):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                model(x)
                end.record()
                torch.cuda.synchronize(dev)
                samples.append(start.elapsed_time(end))
        else:
            for _ in range(repeats):
                t0 = time.perf_counter()
                model(x)
                samples.append((time.perf_counter() - t0) * 1000.0)
    return samples
