"""Reading frames from a video file (PyAV) or a folder of frames (Pillow).

A video is read by *planning* which frames to take from its frame count: ``plan(n)`` returns the
frame indices of a clip of a video with ``n`` frames (see :mod:`search.data.sampling`). The count
comes from the container header (or a folder listing); when the header overstates it, decoding ends
early, the plan is redone with the count that actually decoded and a :class:`DataWarning` says so.
Anything that cannot be decoded raises :class:`VideoReadError` naming the path and the reason.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from search.data.errors import DataWarning, VideoReadError

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v"})
"""File suffixes read as video containers (case-insensitive)."""
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png"})
"""File suffixes read as frames inside a frame folder (case-insensitive)."""

Plan = Callable[[int], Sequence[int]]
"""Frame indices of one clip, given the number of frames of the video."""

_DIGITS = re.compile(r"(\d+)")
SCALER_THREADS = 1
"""Threads of FFmpeg's scaler. PyAV's default, 0, starts a pool of slice threads per scaler: once, in a DataLoader
worker, freeing that pool hung for ever (the pool's thread waiting on its condition, the worker joining it; gdb,
2026-12-07, a full-suite run). One thread starts no pool."""
READ_ERRORS = (av.error.FFmpegError, OSError, ValueError, RuntimeError, EOFError, IndexError, MemoryError, SyntaxError)
"""What reading a video file or frame image can raise (PyAV, Pillow, the OS); each becomes a :class:`VideoReadError`."""


def natural_key(name: str) -> tuple[object, ...]:
    """Sort key that orders ``img_2`` before ``img_10``."""
    return tuple(int(p) if p.isdigit() else p for p in _DIGITS.split(name))


def frame_files(folder: Path) -> list[Path]:
    """The image files of a frame folder in natural order (``image_00001.jpg``, ``00001.jpg``, ...); hidden names
    (macOS ``._image_00001.jpg`` metadata files and the like) are not frames, as the layout scanner skips them too."""
    try:
        names = [n for n in os.listdir(folder) if not n.startswith(".") and Path(n).suffix.lower() in IMAGE_EXTENSIONS]
    except OSError as e:
        raise VideoReadError(folder, e.strerror or str(e)) from None
    return [folder / n for n in sorted(names, key=natural_key)]


def error_reason(e: BaseException) -> str:
    """The first line of why ``e`` happened (its OS message, its text, or its type's name)."""
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return text.strip().splitlines()[0] if text.strip() else type(e).__name__


@dataclass(frozen=True)
class FrameCount:
    """What a video claims and what it has: ``header`` (None when unstated) and ``decoded`` (None if not decoded)."""

    header: int | None
    decoded: int | None

    @property
    def frames(self) -> int | None:
        """The count to trust: the decoded one when known, else the header's."""
        return self.decoded if self.decoded is not None else self.header

    @property
    def disagrees(self) -> bool:
        """True when both are known and differ."""
        return self.header is not None and self.decoded is not None and self.header != self.decoded


def _header_frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int | None:
    if stream.frames and stream.frames > 0:
        return int(stream.frames)
    rate = stream.average_rate or stream.guessed_rate
    if not rate:
        return None
    if stream.duration and stream.time_base:
        n = round(float(stream.duration * stream.time_base * rate))
        return n if n > 0 else None
    if container.duration:
        n = round(container.duration / av.time_base * float(rate))
        return n if n > 0 else None
    return None


def open_video(path: Path) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    """Open the video file ``path`` and its first video stream; :class:`VideoReadError` when it cannot be."""
    if not path.exists():
        raise VideoReadError(path, "no such file")
    if path.is_file() and path.stat().st_size == 0:
        raise VideoReadError(path, "empty file")
    try:
        container = av.open(str(path), mode="r")
    except READ_ERRORS as e:
        raise VideoReadError(path, error_reason(e)) from None
    if not container.streams.video:
        container.close()
        raise VideoReadError(path, "no video stream")
    return container, container.streams.video[0]


def scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the shorter side ``short_side``, the aspect kept and both even (4:2:0 video
    needs even sides); the size itself when its shorter side is not larger already."""
    if min(width, height) <= short_side:
        return width, height
    f = short_side / min(width, height)
    return max(2, round(width * f / 2) * 2), max(2, round(height * f / 2) * 2)


def decode_frames(
    path: Path, wanted: set[int] | None, last: int | None, *, short_side: int | None = None
) -> tuple[dict[int, np.ndarray], int, bool]:
    """Decode frames 0..last (all when None), converting only ``wanted`` ones (all when None) to RGB arrays,
    shrunk by the decoder's scaler (area averaging) to at most ``short_side`` on the shorter side when given.

    Returns the arrays by index, the number of frames decoded and whether the stream ended.
    """
    container, stream = open_video(path)
    size: dict[str, Any] = {}
    if short_side is not None:
        width, height = scaled_size(stream.codec_context.width, stream.codec_context.height, short_side)
        size = {"width": width, "height": height, "interpolation": "AREA"}
    got: dict[int, np.ndarray] = {}
    count = 0
    try:
        for i, frame in enumerate(container.decode(stream)):
            if wanted is None or i in wanted:
                got[i] = frame.to_ndarray(format="rgb24", threads=SCALER_THREADS, **size)
            count = i + 1
            if last is not None and i >= last:
                return got, count, False
    except READ_ERRORS as e:
        raise VideoReadError(path, f"{error_reason(e)} after {count} frames") from None
    finally:
        container.close()
    return got, count, True


def header_frames(path: Path) -> int | None:
    """Frame count stated by a container header (or duration x frame rate); None when it states neither."""
    container, stream = open_video(path)
    try:
        return _header_frames(container, stream)
    finally:
        container.close()


def count_frames(path: Path, *, decode: bool = True) -> FrameCount:
    """Header and (with ``decode``) decoded frame counts of a video file or frame folder.

    A frame folder's count is its number of images; with ``decode`` every image is opened too, and
    images of different sizes are a :class:`VideoReadError`, as when a clip is read.
    Raises :class:`VideoReadError` when the video cannot be read.
    """
    if path.is_dir():
        files = frame_files(path)
        if not files:
            raise VideoReadError(path, "no jpg/png frames in the folder")
        if decode:
            _same_size(path, {_load_image(f).shape for f in files})  # as the loader requires
        return FrameCount(len(files), len(files) if decode else None)
    container, stream = open_video(path)
    try:
        header = _header_frames(container, stream)
    finally:
        container.close()
    if not decode:
        return FrameCount(header, None)
    _, count, _ = decode_frames(path, set(), None)
    if count == 0:
        raise VideoReadError(path, "no frames decode")
    return FrameCount(header, count)


def _load_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except READ_ERRORS as e:
        raise VideoReadError(path, error_reason(e)) from None


def count_mismatch(path: Path, header: int, decoded: int) -> DataWarning:
    """The warning for a video whose header states ``header`` frames where ``decoded`` decode."""
    return DataWarning(f"{path}: header says {header} frames but {decoded} decode; using {decoded}")


def read_clip(path: Path, plan: Plan, *, frames: int | None = None) -> tuple[np.ndarray, int]:
    """The frames ``plan(n)`` of a video as a uint8 array (K, H, W, 3), and the frame count ``n`` used.

    ``frames`` is a known count (skips the header). A header that overstates the count is handled:
    the clip is planned again from the frames that decode, with a :class:`DataWarning`.
    """
    if path.is_dir():
        files = frame_files(path)
        if not files:
            raise VideoReadError(path, "no jpg/png frames in the folder")
        idx = list(plan(len(files)))
        images = {i: _load_image(files[i]) for i in set(idx)}
        return _stack(path, [images[i] for i in idx]), len(files)
    n = frames if frames is not None else header_frames(path)
    if n is None:  # nothing stated: count by decoding once
        _, n, _ = decode_frames(path, set(), None)
    if n <= 0:
        raise VideoReadError(path, "no frames decode")
    idx = list(plan(n))
    got, count, ended = decode_frames(path, set(idx), max(idx))
    if ended and count <= max(idx):
        if count == 0:
            raise VideoReadError(path, "no frames decode")
        warnings.warn(count_mismatch(path, n, count), stacklevel=2)
        n = count
        idx = list(plan(n))
        if not set(idx) <= got.keys():
            got, _, _ = decode_frames(path, set(idx), max(idx))
    return _stack(path, [got[i] for i in idx]), n


def _same_size(path: Path, shapes: set[tuple[int, ...]]) -> None:
    if len(shapes) != 1:
        raise VideoReadError(path, f"frames differ in size: {sorted(shapes)}")


def _stack(path: Path, frames: list[np.ndarray]) -> np.ndarray:
    _same_size(path, {f.shape for f in frames})
    return np.stack(frames)
