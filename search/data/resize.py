"""Shrink a dataset once so that the loader keeps up: ``e3d data resize SRC DST --short-side N``.

The trainer decodes each video at its own resolution for every clip it samples; a 720p file costs
many times what the 112-pixel crops need (docs/SPEED.md, "Does the loader keep up?"). This copies a
dataset folder tree to DST with every video re-encoded and every frame image rescaled so that its
shorter side is ``short_side`` pixels (aspect kept; never enlarged), and every other file (split
lists, annotation files) copied as it is. Names, folders and frame counts stay the same, so every
layout e3d reads (folder, UCF-101, Jester, Kinetics, JSON) reads the copy as it read the original.

Each file is written under a hidden temporary name and renamed when complete: an interrupted run
leaves no partial file, and running it again skips the files already done.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image

from search.data.errors import DataError, VideoReadError
from search.data.video import _READ_ERRORS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, _open, _reason, scaled_size
from space.files import FILE_ERRNOS, check_writable, replacing

CONTAINERS = {".mp4": ("mp4", "libx264"), ".m4v": ("mp4", "libx264"), ".mov": ("mov", "libx264"),
              ".mkv": ("matroska", "libx264"), ".avi": ("avi", "mpeg4"), ".webm": ("webm", "libvpx")}  # fmt: skip
"""Container format and the codec each video suffix is written with."""


def copy_file(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` through a hidden temporary name (:func:`space.files.replacing`)."""
    with replacing(dst) as tmp:
        shutil.copyfile(src, tmp)


def resize_video(src: Path, dst: Path, short_side: int) -> bool:
    """Re-encode ``src`` into ``dst`` with the shorter side ``short_side``, every frame kept at the same
    rate, and return True; a video that is not larger is copied as it is (False). :class:`VideoReadError`
    when ``src`` cannot be read; a file that cannot be written (a full disk) is a :class:`WriteError`."""
    fmt, codec = CONTAINERS[dst.suffix.lower()]
    container, stream = _open(src)
    width, height = scaled_size(stream.codec_context.width, stream.codec_context.height, short_side)
    if (width, height) == (stream.codec_context.width, stream.codec_context.height):
        container.close()
        copy_file(src, dst)
        return False
    n = 0
    with replacing(dst) as tmp, container:
        try:
            with av.open(str(tmp), "w", format=fmt) as out:
                rate = stream.average_rate or stream.guessed_rate or 25
                o = out.add_stream(codec, rate=rate)
                o.width, o.height, o.pix_fmt = width, height, "yuv420p"
                step = 1 / Fraction(rate)
                if codec != "libx264":  # the others default to a low bit rate: 2 bits per pixel, at least 500 kbit/s
                    o.bit_rate = max(500_000, int(2 * width * height * float(rate)))
                for frame in container.decode(stream):
                    small = frame.reformat(width=width, height=height, format="yuv420p")
                    small.pts, small.time_base = n, step  # frame n at the stream's rate
                    out.mux(o.encode(small))
                    n += 1
                out.mux(o.encode())
        except _READ_ERRORS as e:
            if isinstance(e, OSError) and e.errno in FILE_ERRNOS:
                raise  # writing failed: replacing names the file
            raise VideoReadError(src, f"{_reason(e)} after {n} frames") from None
    return True


def resize_image(src: Path, dst: Path, short_side: int) -> bool:
    """Save ``src`` rescaled so that its shorter side is ``short_side`` (bilinear) as ``dst`` and return
    True; an image that is not larger is copied as it is (False). :class:`VideoReadError` when ``src``
    cannot be read (not an image, truncated); a file that cannot be written is a :class:`WriteError`."""
    try:
        with Image.open(src) as im:
            size, fmt = scaled_size(im.width, im.height, short_side), im.format
            small = None if size == im.size else im.resize(size, Image.Resampling.BILINEAR)  # decodes the whole image
    except _READ_ERRORS as e:
        raise VideoReadError(src, _reason(e)) from None
    if small is None:
        copy_file(src, dst)
        return False
    extra = {"quality": 95} if fmt == "JPEG" else {}
    with replacing(dst) as tmp:
        small.save(tmp, format=fmt, **extra)
    return True


@dataclass
class ResizeReport:
    """What :func:`resize_tree` did."""

    videos: int = 0
    images: int = 0
    copied: int = 0
    """Files copied unchanged: split lists, annotations, and videos or images not larger than the short side."""
    skipped: int = 0
    """Files already in the destination (an earlier run wrote them)."""
    unreadable: dict[str, str] = field(default_factory=dict)
    """Videos and frame images that could not be read, with the reason (left out of the copy)."""

    def summary(self) -> str:
        """One line."""
        bad = len(self.unreadable)
        return (
            f"{self.videos} videos re-encoded, {self.images} frame images rescaled, {self.copied} files copied as they are, "
            f"{self.skipped} already there" + (f", {bad} unreadable files left out" if bad else "")
        )


def files(root: Path) -> Iterator[Path]:
    """Every file under ``root`` (following no hidden file or folder), in a stable order."""
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith("."):
                yield Path(folder) / name


def _write(src: Path, dst: Path, short_side: int) -> str:
    """Write ``dst`` from ``src``; returns the :class:`ResizeReport` count it adds to."""
    suffix = src.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return "videos" if resize_video(src, dst, short_side) else "copied"
    if suffix in IMAGE_EXTENSIONS:
        return "images" if resize_image(src, dst, short_side) else "copied"
    copy_file(src, dst)
    return "copied"


def resize_tree(src: Path, dst: Path, short_side: int, *, progress: bool = True) -> ResizeReport:
    """Copy the tree ``src`` to ``dst``, shrinking videos and frame images (see the module doc)."""
    from tqdm import tqdm

    if short_side < 16:
        raise DataError(f"--short-side must be at least 16 pixels; got {short_side}")
    if not src.is_dir():
        raise DataError(f"{src} is not a folder")
    if dst.resolve() == src.resolve() or dst.resolve().is_relative_to(src.resolve()):
        raise DataError(f"the destination {dst} must lie outside {src}")
    check_writable(dst)  # a file, or a folder that cannot be written: one line before any work
    report = ResizeReport()
    todo = list(files(src))
    for path in tqdm(todo, desc="resizing", unit="file", disable=not progress):
        out = dst / path.relative_to(src)
        if out.exists():
            report.skipped += 1
            continue
        try:
            kind = _write(path, out, short_side)
        except VideoReadError as e:
            report.unreadable[str(path)] = e.reason
            continue
        setattr(report, kind, getattr(report, kind) + 1)
    return report
