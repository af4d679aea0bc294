"""bench/__init__.py: every bench report says when (UTC), on which CPU (with its ISA), cores, load and torch."""

from __future__ import annotations

import os
import re

import pytest
import torch

import bench
from bench import machine_stamp
from profiler.cpu import detect_cpu


def test_the_stamp_names_the_time_in_utc_the_cpu_with_its_isa_the_cores_the_load_and_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "getloadavg", lambda: (1.34, 0.0, 0.0))
    text = machine_stamp()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC, .+", text)
    assert f", {detect_cpu().describe()}, {os.cpu_count()} cores, load 1.3, torch {torch.__version__}" in text
    assert text.endswith(torch.__version__)  # no threads asked, none said


@pytest.mark.parametrize(
    ("threads", "said"), [(1, "1 torch thread(s)"), (2, "2 torch thread(s)"), ("1 torch thread per trial", "1 torch thread per trial")]
)
def test_the_stamp_ends_with_the_threads_it_is_given(threads: int | str, said: str) -> None:
    assert machine_stamp(threads=threads).endswith(f"torch {torch.__version__}, {said}")


def test_the_stamp_says_so_where_the_os_has_no_load_average(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(bench.os, "getloadavg")
    assert ", load ?, " in machine_stamp()
