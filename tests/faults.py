"""Disk faults for tests: a tiny full tmpfs, a read-only folder, and an injected out-of-space error.

The mounts need root (CI containers run as root); elsewhere those fixtures fall back to what the
user can do (``chmod`` for read-only) or skip, and the injected-error tests cover the same code.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _mount(where: Path, options: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    return done.returncode == 0


def _unmount(where: Path) -> None:
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture
def full_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder on a 64 KiB tmpfs that is already full (skips where tmpfs cannot be mounted)."""
    where = tmp_path / "full"
    if not _mount(where, "size=64k"):
        pytest.skip("mounting a tmpfs needs root")
    try:
        with contextlib.suppress(OSError), open(where / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        yield where
    finally:
        _unmount(where)


@pytest.fixture
def readonly_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder nobody can write to: a read-only tmpfs as root, ``chmod 555`` otherwise."""
    where = tmp_path / "readonly"
    if _mount(where, "ro,size=64k"):
        try:
            yield where
        finally:
            _unmount(where)
        return
    where.chmod(0o555)
    try:
        yield where
    finally:
        where.chmod(0o755)


def no_space(monkeypatch: pytest.MonkeyPatch, folder: Path, *, after_bytes: int = 0) -> None:
    """Make every file opened for writing under ``folder`` fail with ENOSPC once ``after_bytes``
    bytes were written to it (an injected full disk)."""
    real_open = builtins.open
    root = str(folder.resolve())

    class Full:
        def __init__(self, f: Any) -> None:
            self.f, self.n = f, 0

        def write(self, data: Any) -> int:
            self.n += len(data)
            if self.n > after_bytes:
                raise OSError(errno.ENOSPC, "No space left on device", self.f.name)
            return int(self.f.write(data))

        def __getattr__(self, name: str) -> Any:
            return getattr(self.f, name)

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: object) -> None:
            self.f.close()

    def fake_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        f = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax") and os.path.abspath(file).startswith(root):
            return Full(f)
        return f

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)  # what Path.open and Path.write_bytes call


def listing(folder: Path) -> list[str]:
    """Names in ``folder`` (hidden ones too), sorted."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []
