"""Errors and warnings of the data layer.

Every error that is the user's input (a missing path, an empty split, a split file that names videos
that are not there) derives from :class:`space.E3DError`, so the CLI prints it as one line and exits 2.
"""

from __future__ import annotations

from pathlib import Path

from space import E3DError


class DataError(E3DError, ValueError):
    """A dataset that cannot be used as given; the message names the path and the problem."""


class VideoReadError(DataError):
    """One video (file or frame folder) that cannot be decoded: ``path`` and ``reason``."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"cannot read {path}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return type(self), (self.path, self.reason)


class DataWarning(UserWarning):
    """A video skipped as unreadable, or a header frame count that disagrees with the decoded one."""
