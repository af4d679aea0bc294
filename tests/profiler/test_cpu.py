"""profiler/cpu.py: a CPU is named by its model, vector ISA and flags, wherever e3d names one."""

from __future__ import annotations

import torch

from profiler.cpu import CpuInfo, cpu_name, detect_cpu
from profiler.latency import device_name


def test_cpus_of_one_model_name_with_other_flags_are_named_apart() -> None:
    avx2 = CpuInfo("AMD EPYC", "AVX2", frozenset({"avx2", "fma"}))
    avx512 = CpuInfo("AMD EPYC", "AVX512", frozenset({"avx2", "avx512f", "avx512_bf16", "fma"}))
    assert avx2.describe() == "AMD EPYC (AVX2: avx2)"
    assert avx512.describe() == "AMD EPYC (AVX512: avx2, avx512f, avx512_bf16)"
    assert not avx2.bf16 and avx512.bf16
    assert CpuInfo("Some CPU", "DEFAULT", frozenset()).describe() == "Some CPU (DEFAULT: no AVX)"


def test_this_cpu_is_named_with_its_isa_where_a_device_is_named() -> None:
    cpu = detect_cpu()
    assert cpu.name == cpu_name() and cpu.isa == torch.backends.cpu.get_cpu_capability()
    assert device_name(torch.device("cpu")) == cpu.describe() != cpu.name
