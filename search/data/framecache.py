"""Decoded-frame cache: each video file is decoded once, its frames stored as JPEG at a reduced size.

Without it every clip decodes its video from the first frame to the end of the window it samples, at
the file's own resolution: a folder of 720p H.264 files loads slower than a small network trains
(docs/SPEED.md, "Does the loader keep up?"). With it, the first clip of a video decodes the whole
video once, shrunk by the decoder's scaler (area averaging) so that its shorter side is
``short_side`` pixels (never enlarged), and stores every frame as a JPEG in one file; every later clip
reads and decodes only the frames it takes. This is what the paper's own pipeline does by hand
(frames extracted to JPEG folders before training). The first clip takes its frames from those JPEGs
too, so that every read of a video gives the same pixels (the first epoch and the next, or an
evaluation, see the same clips).

``short_side`` comes from the transform (:func:`short_side_for`): the smallest side at which no crop of
the multi-scale set is enlarged to the clip size, so the cache costs no detail the crops would use
(frames are resampled twice and JPEG-compressed, which moves pixel values a little).

One file per video, ``<root>/<key>.frames``: the key hashes the video's resolved path, size and
modification time with the short side and JPEG quality, so a changed video is decoded again. A file
is written under a temporary name and renamed when complete, so an interrupted run or a full disk
leaves no partial entry; when writing fails, a :class:`DataWarning` says so once and the videos not
cached yet are read as without the cache from then on (:func:`search.data.video.read_clip`). A file that is not a complete entry is
replaced.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import struct
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import simplejpeg
from PIL import Image

from search.data.errors import DataWarning, VideoReadError
from search.data.video import Plan, decode_frames, error_reason, read_clip
from space.files import WriteError, atomic_write

MAGIC = b"E3DFRM1\0"
_HEAD = struct.Struct("<8sQQQ")  # magic, frames, height, width; then frames + 1 uint64 offsets
QUALITY = 90
"""JPEG quality of the stored frames."""


def short_side_for(size: tuple[int, int], scales: Sequence[float]) -> int:
    """The shorter side at which the smallest crop scale still covers ``size`` pixels (no crop is enlarged)."""
    return math.ceil(max(size) / min(scales))


def decode_video(path: Path, short_side: int) -> np.ndarray:
    """Every frame of a video file as uint8 (N, H, W, 3), shrunk so that the shorter side is at most ``short_side``."""
    got, count, _ = decode_frames(path, None, None, short_side=short_side)
    if count == 0:
        raise VideoReadError(path, "no frames decode")
    return np.stack([got[i] for i in range(count)])


def _encode(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=QUALITY)
    return buf.getvalue()


def _decode_jpeg(data: bytes, out: np.ndarray) -> None:
    """Decode one stored frame into ``out`` (uint8 (H, W, 3)) with libjpeg-turbo through simplejpeg: the
    same pixels as Pillow's decoder (the same library), 1.4x faster, and no intermediate copies."""
    if simplejpeg.decode_jpeg(data, "RGB", buffer=out).shape != out.shape:
        raise ValueError("a stored frame's size differs from the entry's")


def _decode_all(jpegs: Sequence[bytes], h: int, w: int) -> np.ndarray:
    """Stored frames of ``h`` x ``w`` pixels as uint8 (K, H, W, 3): the pixels every read of the entry gives."""
    frames = np.empty((len(jpegs), h, w, 3), np.uint8)
    for k, data in enumerate(jpegs):
        _decode_jpeg(data, frames[k])
    return frames


def pack(frames: np.ndarray) -> bytes:
    """The cache entry of uint8 frames (N, H, W, 3): a header, the offsets, then one JPEG per frame."""
    return _pack([_encode(f) for f in frames], frames.shape[1], frames.shape[2])


def _pack(jpegs: Sequence[bytes], h: int, w: int) -> bytes:
    """The cache entry of frames of ``h`` x ``w`` pixels stored as ``jpegs``."""
    offsets = np.concatenate([[0], np.cumsum([len(j) for j in jpegs])]).astype("<u8")
    return _HEAD.pack(MAGIC, len(jpegs), h, w) + offsets.tobytes() + b"".join(jpegs)


def _read_index(f: BinaryIO) -> tuple[int, int, int, np.ndarray] | None:
    """(frames, height, width, offsets) of the open entry ``f``; None unless the header and offsets fit the file.

    Every count is bounded by the file's size before it sizes a read, so a corrupt header cannot ask for
    more than the file holds; the frame size is checked against the frames themselves (:func:`_frame_bytes`).
    """
    head = f.read(_HEAD.size)
    if len(head) != _HEAD.size or head[:8] != MAGIC:
        return None
    _, n, h, w = _HEAD.unpack(head)
    size = os.fstat(f.fileno()).st_size
    if n < 1 or h < 1 or w < 1 or 8 * (n + 1) > size - _HEAD.size:
        return None
    offsets = np.frombuffer(f.read(8 * (n + 1)), "<u8")
    if len(offsets) != n + 1 or offsets[0] != 0 or np.any(offsets[1:] < offsets[:-1]):
        return None
    if size != _HEAD.size + 8 * (n + 1) + int(offsets[-1]):
        return None
    return n, h, w, offsets


def _frame_bytes(f: BinaryIO, offsets: np.ndarray, wanted: Sequence[int], h: int, w: int) -> list[bytes] | None:
    """The stored JPEGs of frames ``wanted``; None when one is not an ``h`` x ``w`` JPEG (a corrupt header or frame)."""
    base = _HEAD.size + 8 * len(offsets)
    jpegs = []
    for i in wanted:
        f.seek(base + int(offsets[i]))
        jpegs.append(f.read(int(offsets[i + 1]) - int(offsets[i])))
        if simplejpeg.decode_jpeg_header(jpegs[-1])[:2] != (h, w):
            return None
    return jpegs


def unpack(path: Path, plan: Plan) -> tuple[np.ndarray, int] | None:
    """Frames ``plan(n)`` of the entry at ``path`` and its frame count ``n``; None when it is not a complete entry."""
    try:
        with open(path, "rb") as f:
            index = _read_index(f)
            if index is None:
                return None
            n, h, w, offsets = index
            indices = list(plan(n))
            wanted = sorted(set(indices))
            jpegs = _frame_bytes(f, offsets, wanted, h, w)
        if jpegs is None:
            return None
        frames = _decode_all(jpegs, h, w)
    except (OSError, ValueError):
        return None
    if indices == wanted:
        return frames, n
    return frames[np.searchsorted(wanted, indices)], n


class FrameCache:
    """Clips of video files read through the cache under ``root`` (see the module doc)."""

    def __init__(self, root: str | Path, short_side: int) -> None:
        if short_side < 1:
            raise ValueError(f"short_side must be positive; got {short_side}")
        self.root = Path(root)
        self.short_side = short_side
        self.writable = True
        """False after a write failed: videos not cached yet are then read as without the cache."""

    def entry(self, path: Path) -> Path:
        """The cache file of the video at ``path`` (a function of its path, size and modification time)."""
        st = path.stat()
        key = f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0{self.short_side}\0{QUALITY}"
        return self.root / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.frames"

    def clip(self, path: Path, plan: Plan) -> tuple[np.ndarray, int]:
        """The frames ``plan(n)`` of the video at ``path`` (uint8 (K, H, W, 3)) and its frame count ``n``.

        Raises :class:`VideoReadError` when the video cannot be read.
        """
        try:
            entry = self.entry(path)
        except OSError as e:
            raise VideoReadError(path, error_reason(e)) from None
        got = unpack(entry, plan)
        if got is not None:
            return got
        if not self.writable:
            return read_clip(path, plan)
        frames = decode_video(path, self.short_side)
        n, h, w = frames.shape[:3]
        jpegs = [_encode(f) for f in frames]
        self._store(entry, _pack(jpegs, h, w))
        return _decode_all([jpegs[i] for i in plan(n)], h, w), n

    def _store(self, entry: Path, data: bytes) -> None:
        try:
            atomic_write(entry, lambda f: f.write(data))
        except WriteError as e:
            self.writable = False
            warnings.warn(DataWarning(f"frame cache off: {e}; reading videos from their files"), stacklevel=3)
