"""Writing files so that a failure never leaves a truncated file under the final name.

Every file e3d writes goes through :func:`atomic_write` (or :func:`write_text` / :func:`write_bytes`):
the content goes to a unique temporary name in the same folder (``.<name>.<pid>.<random>.tmp``), is
flushed to disk, and is renamed over the final path; on any error the temporary file is removed and
the final path keeps what it held before. Out-of-space and permission errors become one
:class:`WriteError` line naming the path. :func:`check_writable` tests a folder before long work.

Objects that serialise themselves (``torch.save``, ``torch.jit.save``, ``fig.savefig``) should write
to a ``BytesIO`` first: a C++ writer that hits a full disk can abort the whole process.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from space.spec import E3DError

_WHY = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOENT: "no such folder",
    errno.ENOTDIR: "a parent is not a folder",
    errno.EISDIR: "it is a folder",
}


FILE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS})
"""Errors of the disk or of permissions, not of the program: reported in one line (exit 2) by the CLI."""


class WriteError(E3DError):
    """A file or folder that cannot be written (full disk, no permission, read-only file system)."""


def describe_os_error(e: OSError) -> str:
    """The reason of an ``OSError`` in a few words (``no space left on the device``)."""
    if e.errno in _WHY:
        return _WHY[e.errno]
    return e.strerror or str(e) or type(e).__name__


def write_error(path: str | Path, e: OSError, *, what: str = "write") -> WriteError:
    """A one-line :class:`WriteError` for ``e`` while writing ``path``."""
    return WriteError(f"cannot {what} {path}: {describe_os_error(e)}")


def file_name(path: str | Path) -> Path:
    """``path`` as a ``Path``; :class:`WriteError` when it names no file to write (``""``, ``.``, ``..``)."""
    p = Path(path)
    if p.name in ("", ".", ".."):
        raise WriteError(f"cannot write {str(path)!r}: it names no file (give a file name)")
    return p


def check_file(path: str | Path) -> Path:
    """Raise :class:`WriteError` unless a file can be written at ``path``: it names a file, is no folder, and its
    folder can be written (:func:`check_writable`). For output files, before long work."""
    p = file_name(path)
    if p.is_dir():
        raise WriteError(f"cannot write {p}: it is a folder")
    check_writable(p.parent)
    return p


def temporary_name(path: Path) -> Path:
    """A unique temporary name beside ``path`` (same folder, so the rename is atomic)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(file)`` on a temporary binary file beside ``path``, then rename it to ``path``.

    The parent folder is created. Any error removes the temporary file; an ``OSError`` (full disk,
    permissions) is raised as :class:`WriteError` naming ``path``. Returns ``path``.
    """
    with replacing(path) as tmp, open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_write`)."""
    return atomic_write(path, lambda f: f.write(data))


def write_text(path: str | Path, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (:func:`atomic_write`)."""
    return write_bytes(path, text.encode(encoding))


def _in_folder(path: str | Path) -> Path:
    """``path`` (:func:`file_name`), with its folder created."""
    p = file_name(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(p.parent, e, what="create the folder") from None
    return p


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for writers that need a file name (``with replacing(p) as tmp:
    library.save(tmp)``); renamed to ``path`` when the block ends, removed when it raises."""
    p = _in_folder(path)
    tmp = temporary_name(p)
    try:
        yield tmp
        os.replace(tmp, p)
    except OSError as e:
        _remove(tmp)
        raise write_error(p, e) from None
    except BaseException:
        _remove(tmp)
        raise


@contextlib.contextmanager
def replacing_files(path: str | Path) -> Iterator[Path]:
    """:func:`replacing` for writers that put more files beside the one they are given (ONNX's external
    weights, ``model.onnx.data``): yields ``path``'s name inside a temporary folder beside ``path``. When
    the block ends, the other files written there are renamed beside ``path`` first and ``path`` itself
    last, so that it never refers to files not yet in place; the folder is removed whatever happens."""
    p = _in_folder(path)
    folder = temporary_name(p)
    try:
        folder.mkdir()
        yield folder / p.name
        for f in sorted(folder.iterdir()):
            if f.name != p.name:
                os.replace(f, p.with_name(f.name))
        os.replace(folder / p.name, p)
    except OSError as e:
        raise write_error(p, e) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def check_writable(folder: str | Path, *, create: bool = False) -> Path:
    """Raise :class:`WriteError` unless files can be written in ``folder``.

    Call it before long work, so that a read-only, full or misnamed output folder is one line at
    the start rather than a traceback at the end. A folder that does not exist yet is created when
    ``create``; otherwise its nearest existing ancestor is tested (nothing is left behind).
    """
    p = Path(folder)
    if create:
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise write_error(p, e, what="create the folder") from None
    probe_in = p
    while not probe_in.exists() and probe_in != probe_in.parent:
        probe_in = probe_in.parent
    if not probe_in.is_dir():
        raise WriteError(f"cannot write to {p}: {probe_in} is a file, not a folder")
    probe = temporary_name(probe_in / "probe")
    try:
        with open(probe, "wb") as f:
            f.write(b"e3d")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise write_error(p, e, what="write to") from None
    finally:
        _remove(probe)
    return p


def missing_parents(path: str | Path) -> list[Path]:
    """The folders above and including ``path`` that do not exist yet, outermost first (to remove
    them again when a command fails before writing anything)."""
    p = Path(path).absolute()
    out = []
    while not p.exists() and p != p.parent:
        out.append(p)
        p = p.parent
    return out[::-1]


def remove_empty(folders: list[Path]) -> None:
    """Remove those of ``folders`` that are empty, innermost first (the others are kept)."""
    for f in reversed(folders):
        with contextlib.suppress(OSError):
            f.rmdir()
