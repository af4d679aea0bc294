"""measure_latency: eval/inference mode, thread handling, ordered statistics; memory measurement."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from profiler.allocator import allocator
from profiler.latency import DeviceError, measure_latency, resolve_device
from profiler.memory import measure_peak_memory


class Probe(nn.Module):
    """Records the thread count, grad mode and training flag it runs under."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 3, padding=1)
        self.seen: list[tuple[int, bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((torch.get_num_threads(), torch.is_grad_enabled(), self.training))
        return self.conv(x)


def test_threads_are_set_for_the_measurement_and_restored() -> None:
    before = torch.get_num_threads()
    probe = Probe().train()
    lat = measure_latency(probe, batch_size=2, clip=(4, 16, 16), threads=1, warmup=1, repeats=3)
    assert {s[0] for s in probe.seen} == {1}
    assert lat.threads == 1
    assert torch.get_num_threads() == before
    assert probe.training, "training flag restored"
    assert all(not grad and not training for _, grad, training in probe.seen)
    assert len(probe.seen) == 4  # warm-up runs, but is not timed


def test_statistics_are_positive_and_ordered() -> None:
    lat = measure_latency(Probe(), batch_size=4, clip=(4, 16, 16), warmup=0, repeats=5)
    assert 0 < lat.q1_ms <= lat.median_ms <= lat.q3_ms
    assert lat.iqr_ms == pytest.approx(lat.q3_ms - lat.q1_ms)
    assert lat.clips_per_s == pytest.approx(4 * 1000 / lat.median_ms)
    assert lat.device == "cpu" and lat.dtype == "float32" and lat.torch_version == torch.__version__
    assert lat.batch_size == 4 and lat.repeats == 5 and lat.clip == (4, 16, 16)
    assert lat.allocator == allocator()  # how malloc ran is recorded with the timing


def test_missing_cuda_device_is_a_clear_error() -> None:
    with pytest.raises(DeviceError, match="does not exist"):
        resolve_device("cuda:7")
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("tpu")


def test_devices_that_cannot_be_timed_here_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DeviceError, match="'meta': it cannot run a model to time"):
        resolve_device("meta")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(DeviceError, match=r"mps device .* is not available"):
        resolve_device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("mps") == torch.device("mps")


def test_a_device_is_looked_up_each_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(DeviceError, match="does not exist"):  # not the first answer, kept
        resolve_device("cuda:1")


class Hungry(nn.Module):
    """Allocates about 64 MB inside its forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        big = torch.ones(16 * 2**20) + x.mean()
        return big[:1]


def test_peak_memory_sees_memory_allocated_inside_the_pass() -> None:
    mem = measure_peak_memory(Hungry(), batch_size=1, clip=(1, 4, 4))
    assert mem.peak_mb > 40
    assert "RSS" in mem.method or "rss" in mem.method


def test_lifetime_peaks_count_a_child_process_once_it_has_exited() -> None:
    import subprocess
    import sys

    from profiler.memory import lifetime_peaks_gib

    subprocess.run([sys.executable, "-c", "b = b'x' * (300 * 2**20)"], check=True)
    own, child = lifetime_peaks_gib()
    assert own > 0.01 and child >= 0.29
