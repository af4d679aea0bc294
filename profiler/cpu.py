"""The CPU this process runs on, as the OS and torch see it: its model name, vector ISA and flags.

The model name alone does not tell CPUs apart that differ in what matters here: this project's machines
include an AMD EPYC with AVX2 only and one with AVX-512 and AVX512-BF16, both named "AMD EPYC". Wherever a
CPU is named (calibration caches, latency tables, trials, bench reports) it is named by
:meth:`CpuInfo.describe`.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from functools import cache

import torch


def _cpuinfo(field: str) -> str | None:
    """The value of the first ``field`` line of ``/proc/cpuinfo`` (None where there is none or it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


@cache
def cpu_name() -> str:
    """The CPU model as the OS reports it."""
    return _cpuinfo("model name") or platform.processor() or platform.machine() or "cpu"


@dataclass(frozen=True)
class CpuInfo:
    """The CPU as the OS and torch see it: model name, torch's vector ISA and the relevant flags."""

    name: str
    isa: str
    flags: frozenset[str]

    @property
    def bf16(self) -> bool:
        """Native bf16 arithmetic: AVX512-BF16 or AMX-BF16."""
        return bool({"avx512_bf16", "amx_bf16"} & self.flags)

    def describe(self) -> str:
        """Such as ``Intel(R) Xeon(R) Processor (AVX512: avx2, avx512f, avx512_bf16, amx_bf16)``: the model name, which
        does not tell CPUs of one family apart (two EPYCs of this project: one with AVX2 only, one with AVX512-BF16),
        with torch's vector ISA and the flags that decide e3d's kernels and precisions."""
        shown = [f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8") if f in self.flags]
        return f"{self.name} ({self.isa}: {', '.join(shown) or 'no AVX'})"


@cache
def detect_cpu() -> CpuInfo:
    """This machine's CPU (flags from ``/proc/cpuinfo``; none where it cannot be read)."""
    flags = frozenset((_cpuinfo("flags") or "").split())
    return CpuInfo(cpu_name(), torch.backends.cpu.get_cpu_capability(), flags)
