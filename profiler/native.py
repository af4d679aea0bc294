"""Small C kernels for what PyTorch's CPU backend does slowly, compiled on first use for this CPU.

The sources ship with the package (``profiler/kernels/*.c``). :func:`library` compiles one with the system's
C compiler (``$CC``, default ``cc``; ``-O3 -march=native``) into the cache folder (:func:`cache_root`) under a
name that hashes the source, the compiler's version and the CPU's flags, so that a cache folder shared between
machines never runs code built for another CPU; the library is written under a temporary name and renamed.
Where there is no compiler, the build fails, or ``E3D_NATIVE=0`` is set, it returns None and the caller runs
PyTorch's code instead.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import tempfile
from functools import cache
from pathlib import Path

from profiler.cpu import detect_cpu

KERNELS = Path(__file__).with_name("kernels")
FLAGS = ("-O3", "-march=native", "-shared", "-fPIC")


def cache_root() -> Path:
    """``$E3D_CACHE``, default ``~/.cache/e3d``: e3d's calibrations and compiled kernels."""
    return Path(os.environ.get("E3D_CACHE") or Path.home() / ".cache" / "e3d")


def enabled() -> bool:
    """Whether native kernels may be used (``E3D_NATIVE=0`` turns them off)."""
    return os.environ.get("E3D_NATIVE", "1") != "0"


def library(name: str) -> ctypes.CDLL | None:
    """The compiled kernel ``profiler/kernels/{name}.c`` (built once per source, compiler and CPU), or None
    where native kernels are off or it cannot be built here (:func:`unavailable` says why)."""
    return _load(name) if enabled() else None


def unavailable(name: str) -> str | None:
    """Why :func:`library` gives no ``name`` here, in a few words; None where it loads."""
    if not enabled():
        return "turned off by E3D_NATIVE=0"
    return None if _load(name) is not None else _failures.get(name, "it could not be loaded")


_failures: dict[str, str] = {}
"""Why each kernel that :func:`_load` could not give failed."""


@cache
def _load(name: str) -> ctypes.CDLL | None:
    compiler = os.environ.get("CC", "cc")
    source = (KERNELS / f"{name}.c").read_bytes()
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, check=True, timeout=60).stdout
        target = cache_root() / "kernels" / f"{name}-{_digest(source, version, compiler)}.so"
        if not target.exists():
            _build(compiler, KERNELS / f"{name}.c", target)
        return ctypes.CDLL(str(target))
    except FileNotFoundError:
        _failures[name] = f"no C compiler: {compiler!r} not found (set $CC)"
    except subprocess.CalledProcessError as e:
        lines = (e.stderr or b"").decode(errors="replace").strip().splitlines()
        _failures[name] = f"{compiler} failed: {lines[0] if lines else f'exit code {e.returncode}'}"
    except (OSError, subprocess.SubprocessError) as e:
        _failures[name] = f"{type(e).__name__}: {e}"
    return None


def _digest(source: bytes, compiler_version: bytes, compiler: str) -> str:
    """A short hash of what the library's machine code depends on."""
    parts = [source, compiler_version, compiler.encode(), " ".join(FLAGS).encode(), _cpu_flags().encode()]
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]


def _cpu_flags() -> str:
    """The CPU's model name and flags (what ``-march=native`` reads), as :func:`profiler.cpu.detect_cpu` finds them."""
    cpu = detect_cpu()
    return f"{cpu.name}: {' '.join(sorted(cpu.flags))}"


def _build(compiler: str, source: Path, target: Path) -> None:
    """Compile ``source`` to the shared library ``target`` (written under a temporary name, then renamed)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run([compiler, *FLAGS, "-o", tmp, str(source)], capture_output=True, check=True, timeout=300)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
