"""profiler/native.py: kernels are built once per source, compiler and CPU, atomically, and are optional."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from profiler import native


@pytest.fixture
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty cache folder and no library loaded yet in this process (restored afterwards)."""
    monkeypatch.setenv("E3D_CACHE", str(tmp_path))
    native._load.cache_clear()
    yield tmp_path / "kernels"
    native._load.cache_clear()


def test_a_kernel_is_built_once_and_then_loaded_from_the_cache(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if native.library("depthwise_wgrad") is None:
        pytest.skip("no C compiler here")
    (built,) = fresh.glob("depthwise_wgrad-*.so")
    native._load.cache_clear()

    def no_build(*args: object) -> None:
        raise AssertionError("built again")

    monkeypatch.setattr(native, "_build", no_build)
    assert native.library("depthwise_wgrad") is not None and list(fresh.iterdir()) == [built]


def test_no_compiler_or_turned_off_means_no_kernel_and_says_why(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "/nonexistent/cc")
    assert native.library("depthwise_wgrad") is None
    assert native.unavailable("depthwise_wgrad") == "no C compiler: '/nonexistent/cc' not found (set $CC)"
    monkeypatch.delenv("CC")
    native._load.cache_clear()
    monkeypatch.setenv("E3D_NATIVE", "0")
    assert native.library("depthwise_wgrad") is None and not fresh.exists()
    assert native.unavailable("depthwise_wgrad") == "turned off by E3D_NATIVE=0"


def test_a_compiler_that_fails_is_named_with_its_first_error_line(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "false")  # runs, and fails on --version too
    assert native.library("depthwise_wgrad") is None
    assert native.unavailable("depthwise_wgrad") == "false failed: exit code 1"


def test_a_failed_build_leaves_nothing_behind(tmp_path: Path) -> None:
    bad = tmp_path / "bad.c"
    bad.write_text("this is not C\n")
    target = tmp_path / "out" / "bad.so"
    with pytest.raises((subprocess.CalledProcessError, OSError)):  # OSError: no compiler at all
        native._build("cc", bad, target)
    assert list(target.parent.iterdir()) == []


def test_the_library_name_changes_with_source_compiler_and_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    base = native._digest(b"int f;", b"cc 1", "cc")
    others = {native._digest(b"int g;", b"cc 1", "cc"), native._digest(b"int f;", b"cc 2", "cc"), native._digest(b"int f;", b"cc 1", "gcc")}
    monkeypatch.setattr(native, "_cpu_flags", lambda: "flags: avx2 (another CPU)")
    others.add(native._digest(b"int f;", b"cc 1", "cc"))
    monkeypatch.undo()
    assert len(others | {base}) == 5 and native._digest(b"int f;", b"cc 1", "cc") == base
