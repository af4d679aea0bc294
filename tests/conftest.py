"""Shared fixtures: a small clip on which every preset runs, and the paper-code layer listing."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import space
from profiler.latency import torch_threads
from search.searchspace import SPACE

DATA = Path(__file__).parent / "data"

SMALL_CLIP = (16, 48, 48)
"""Smallest clip that keeps every preset valid: ShuffleNetV1's average-pool shortcut needs an even T
and at least 2x3x3 inputs at every downsampling unit (16 -> 2 frames, 48 -> 3 pixels there)."""


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, give each worker's torch its share of the cores (``-n 2`` on 2 cores: one thread
    each). Two workers of two threads on two cores stall each other: the threads of every small op wait a
    time slice for a core the other worker holds."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


ALL_MODELS = space.list_models()
SCALABLE = list(SPACE)
"""The search space's families (:data:`search.searchspace.SPACE`); :func:`preset_widths` adds width 0.37 to them, 0.25 to the rest."""


def preset_widths() -> list[tuple[str, float]]:
    """Every registered preset at each paper width plus one width the paper never used."""
    cases = []
    for name in ALL_MODELS:
        info = space.model_info(name)
        widths = sorted({*info.paper_widths, 0.37 if name in SCALABLE else 0.25})
        cases += [(name, w) for w in widths]
    return cases


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test shares one cache (proxy tasks, decoded video frames) inside pytest's temporary folder, never ~/.cache."""
    cache = tmp_path_factory.getbasetemp() / "proxy-cache"
    monkeypatch.setenv("E3D_CACHE", str(cache))
    return cache


@pytest.fixture(autouse=True)
def _one_job_per_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--jobs auto`` (the default of search, sweep and scale) is one worker, in the test's own process:
    ``pytest -n 2`` already runs a test on each core, and stand-ins patched into this process reach no
    worker process. Tests of the workers give ``--jobs N``; ``test_cli_jobs`` tests the default itself."""
    monkeypatch.setattr("search.jobs.usable_cores", lambda: 1)


@pytest.fixture
def measure_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """:class:`profiler.measuring.MeasuringProcess` calls in the test's own process, where stand-in measure
    functions patched in are seen (a closure does not pickle to a child). ``test_measuring`` tests the child."""
    from profiler.measuring import MeasuringProcess

    monkeypatch.setattr(MeasuringProcess, "__call__", lambda self, fn, *args: fn(*args))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One torch thread: several times faster than two when other jobs share the two cores."""
    with torch_threads(1):
        yield


@dataclass(frozen=True)
class PaperModel:
    """One model of the paper-code listing: name, width, exact parameter count and its layers."""

    family: str
    width: float
    params: int
    lines: tuple[str, ...]


_FAMILY = {"3D-ShuffleNetV1": "shufflenet", "3D-ShuffleNetV2": "shufflenetv2", "3D-MobileNetV1": "mobilenet",
           "3D-MobileNetV2": "mobilenetv2", "3D-SqueezeNet": "squeezenet"}  # fmt: skip


def paper_code_models() -> list[PaperModel]:
    """The 17 efficient models of ``tests/data/paper_code_layers.txt`` (copied from shared/reference)."""
    text = (DATA / "paper_code_layers.txt").read_text()
    models = []
    for block in re.split(r"^===== ", text, flags=re.M)[1:]:
        head, *lines = block.splitlines()
        m = re.match(r"(\S+)(?: ([\d.]+)x)?\s+params=(\d+)", head)
        assert m, head
        body = tuple(ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("output"))
        models.append(PaperModel(_FAMILY[m.group(1)], float(m.group(2) or 1), int(m.group(3)), body))
    return models
