"""A spec's memory, estimated analytically before anything is built, and a limit on it.

Weights are the spec's parameter count (:func:`profiler.counting.spec_totals`) in float32, plus the
BatchNorm running statistics; activations are the sum of every layer's output (``activations``,
per clip) times the batch, in float32: what training keeps for the backward pass, and an upper
bound of an inference's peak. Training adds gradients and the optimizer's momentum (two more copies
of the weights) and the activations' gradients (one more copy).

:func:`check_memory` refuses, in one line, a spec above the limit: ``--max-memory`` (any command,
:func:`set_limit`), ``$E3D_MAX_MEMORY``, or by default :data:`DEFAULT_SHARE` of this machine's RAM.
A spec of 3,000,000 channels is then one line instead of a 36 TB allocation, and one of 200,000
repeats is refused in seconds instead of growing for minutes.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from profiler.counting import spec_totals
from space.spec import E3DError, NetSpec

FLOAT_BYTES = 4
DEFAULT_SHARE = 0.8
"""Default limit: this share of the machine's physical memory."""
_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}

_limit: int | None = None


class MemoryLimitError(E3DError):
    """A network whose estimated memory is above the limit."""


@dataclass(frozen=True)
class Footprint:
    """Estimated bytes of one network at one batch size."""

    weights: int
    activations: int
    batch: int
    training: bool

    @property
    def total(self) -> int:
        """Everything together."""
        return self.weights + self.activations

    def describe(self) -> str:
        """``about 3.1 GiB (weights 1.2 GiB, activations 1.9 GiB at batch 8, training)``."""
        mode = "training" if self.training else "inference"
        return (
            f"about {human(self.total)} (weights {human(self.weights)}, activations {human(self.activations)} "
            f"at batch {self.batch}, {mode})"
        )


def human(n: float) -> str:
    """Bytes as ``12.3 GiB`` (``>1e280 PiB`` for a count too large to divide as a float)."""
    if abs(n) > 10**280 * 1024**5:  # compared exactly, however large an int; dividing it would overflow
        return ">1e280 PiB"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def parse_size(text: str) -> int:
    """``8G``, ``512M``, ``1.5GiB``, ``2000000000`` -> bytes. Raises ``ValueError`` for anything else."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(?:I?B)?\s*", text.upper())
    if m is None or float(m.group(1)) <= 0:
        raise ValueError(f"must be a size such as 8G or 512M, got {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def machine_memory() -> int | None:
    """Physical memory of this machine in bytes (None where it cannot be read)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def set_limit(limit: int | None) -> None:
    """Set the limit of this process (``--max-memory``); None goes back to the default."""
    global _limit
    _limit = limit


def memory_limit() -> int | None:
    """The limit in force: :func:`set_limit`, else ``$E3D_MAX_MEMORY``, else a share of the RAM."""
    if _limit is not None:
        return _limit
    env = os.environ.get("E3D_MAX_MEMORY")
    if env:
        try:
            return parse_size(env)
        except ValueError as e:
            raise MemoryLimitError(f"E3D_MAX_MEMORY {e}") from None
    ram = machine_memory()
    return int(ram * DEFAULT_SHARE) if ram else None


def estimate_memory(spec: NetSpec, *, batch: int = 1, training: bool = False) -> Footprint:
    """The analytic :class:`Footprint` of ``spec`` at its clip and ``batch`` (nothing is built)."""
    cost = spec_totals(spec)
    bn_stats = sum(2 * layer.out_shape[0] for _, unit in spec.unit_layers() for layer in unit if layer.kind == "bn")
    weights = (cost.params + bn_stats) * FLOAT_BYTES
    activations = cost.activations * batch * FLOAT_BYTES
    if training:
        weights += 2 * cost.params * FLOAT_BYTES  # gradients and SGD momentum
        activations *= 2  # and their gradients in the backward pass
    return Footprint(weights, activations, batch, training)


def check_memory(spec: NetSpec, *, batch: int = 1, training: bool = False, limit: int | None = None) -> Footprint:
    """Raise :class:`MemoryLimitError` when ``spec``'s estimate exceeds ``limit`` (default
    :func:`memory_limit`); returns the estimate."""
    foot = estimate_memory(spec, batch=batch, training=training)
    cap = limit if limit is not None else memory_limit()
    if cap is not None and foot.total > cap:
        raise MemoryLimitError(
            f"{spec.summary()} needs {foot.describe()}, above the limit of {human(cap)}; shrink it, lower the batch, or raise --max-memory"
        )
    return foot
