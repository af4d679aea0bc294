"""profiler.allocator: freed memory kept for reuse (no page faults on a second large allocation), the
opt-out, bad values, and where the setting is recorded."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from profiler import allocator as al
from profiler import precision

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

SECOND_ALLOCATION = """
import resource, torch
from profiler.allocator import keep_freed_memory
state = keep_freed_memory()
torch.empty(16 * 2**20).fill_(1.0)  # 64 MiB, freed at once
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.empty(12 * 2**20).fill_(1.0)  # 48 MiB: past glibc's largest mmap threshold (32 MiB), and fits the freed block
print(state, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def second_allocation(setting: str) -> tuple[str, int]:
    """(allocator state, page faults of a 48 MiB allocation after a 64 MiB one was freed) in a fresh process
    with ``E3D_MALLOC=setting``."""
    env = {**os.environ, al.ENV: setting}
    out = subprocess.run([sys.executable, "-c", SECOND_ALLOCATION], env=env, capture_output=True, text=True, check=True)
    state, faults = out.stdout.split()
    return state, int(faults)


@pytest.mark.skipif(not GLIBC, reason="the setting is glibc's")
def test_kept_memory_is_reused_without_page_faults() -> None:
    pages = 48 * 2**20 // os.sysconf("SC_PAGE_SIZE")
    assert second_allocation("system")[0] == "system"
    assert second_allocation("system")[1] > pages // 2  # mapped afresh: every page faults in again
    state, faults = second_allocation("keep")
    assert state == "keep" and faults < pages // 20  # the freed block is reused


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The module as in a process that has not set malloc up yet."""
    monkeypatch.setattr(al, "_state", None)
    return monkeypatch


def test_an_unknown_setting_is_a_one_line_error(fresh: pytest.MonkeyPatch) -> None:
    fresh.setenv(al.ENV, "fast")
    with pytest.raises(al.AllocatorError, match="E3D_MALLOC='fast': choose keep or system"):
        al.keep_freed_memory()
    assert al.allocator() == "system"


def test_system_and_a_preloaded_allocator_are_left_alone(fresh: pytest.MonkeyPatch) -> None:
    fresh.setattr(al.ctypes, "CDLL", lambda *_: pytest.fail("mallopt called"))
    fresh.setenv(al.ENV, "system")
    assert al.keep_freed_memory() == "system"
    fresh.setattr(al, "_state", None)
    fresh.setenv(al.ENV, "keep")
    fresh.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    assert al.keep_freed_memory() == al.allocator() == "system"


def test_it_is_applied_once(fresh: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    fresh.setattr(al, "_apply", lambda: calls.append("x") or "keep")
    assert al.keep_freed_memory() == al.keep_freed_memory() == al.allocator() == "keep"
    assert calls == ["x"]


def test_calibrations_are_cached_per_allocator(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = set()
    for state in al.CHOICES:
        monkeypatch.setattr(precision, "allocator", lambda state=state: state)
        keys.add(precision.cache_key("train", "net", batch_size=16, device="cpu", threads=1))
    assert len(keys) == 2
