"""Shrink a dataset once so that the loader keeps up: ``e3d data resize SRC DST --short-side N``.

The trainer decodes each video at its own resolution for every clip it samples; a 720p file costs
many times what the 112-pixel crops need (docs/SPEED.md, "Does the loader keep up?"). This copies a
dataset folder tree to DST with every video re-encoded and every frame image rescaled so that its
shorter side is ``short_side`` pixels (aspect kept; never enlarged), and every other file (split
lists, annotation files) copied as it is. Names, folders and frame counts stay the same, so every
layout e3d reads (folder, UCF-101, Jester, Kinetics, JSON) reads the copy as it read the original.

Each file is written under a hidden temporary name and renamed when complete: an interrupted run
leaves no partial file, and running it again skips the files already done (DST remembers its short side in
:data:`MARKER`; another one is refused, and so is a non-empty DST without the marker, whose files were not
written here). Symbolic links to folders are followed (but not back up to a folder above them). A video or frame
image that cannot be read is copied as it is, so the copy is exactly as unreadable as the original (a frame folder
missing a frame would read as a shorter video).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image

from search.data.errors import DataError, VideoReadError
from search.data.video import IMAGE_EXTENSIONS, READ_ERRORS, SCALER_THREADS, VIDEO_EXTENSIONS, error_reason, open_video, scaled_size
from space.files import FILE_ERRNOS, check_writable, replacing, write_text

CONTAINERS = {".mp4": ("mp4", "libx264"), ".m4v": ("mp4", "libx264"), ".mov": ("mov", "libx264"),
              ".mkv": ("matroska", "libx264"), ".avi": ("avi", "mpeg4"), ".webm": ("webm", "libvpx")}  # fmt: skip
"""Container format and the codec each video suffix is written with."""
MARKER = ".e3d-resize"
"""The hidden file in DST that holds the short side its files were written at (JSON; no suffix, so that no layout reads it)."""


def copy_file(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` through a hidden temporary name (:func:`space.files.replacing`)."""
    with replacing(dst) as tmp:
        shutil.copyfile(src, tmp)


def resize_video(src: Path, dst: Path, short_side: int) -> bool:
    """Re-encode ``src`` into ``dst`` with the shorter side ``short_side``, every frame kept at the same
    rate, and return True; a video that is not larger is copied as it is (False). :class:`VideoReadError`
    when ``src`` cannot be read; a file that cannot be written (a full disk) is a :class:`WriteError`."""
    fmt, codec = CONTAINERS[dst.suffix.lower()]
    container, stream = open_video(src)
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
                    small = frame.reformat(width=width, height=height, format="yuv420p", threads=SCALER_THREADS)
                    small.pts, small.time_base = n, step  # frame n at the stream's rate
                    out.mux(o.encode(small))
                    n += 1
                out.mux(o.encode())
        except READ_ERRORS as e:
            if isinstance(e, OSError) and e.errno in FILE_ERRNOS:
                raise  # writing failed: replacing names the file
            raise VideoReadError(src, f"{error_reason(e)} after {n} frames") from None
    return True


def resize_image(src: Path, dst: Path, short_side: int) -> bool:
    """Save ``src`` rescaled so that its shorter side is ``short_side`` (bilinear) as ``dst`` and return
    True; an image that is not larger is copied as it is (False). :class:`VideoReadError` when ``src``
    cannot be read (not an image, truncated); a file that cannot be written is a :class:`WriteError`."""
    try:
        with Image.open(src) as im:
            size, fmt = scaled_size(im.width, im.height, short_side), im.format
            small = None if size == im.size else im.resize(size, Image.Resampling.BILINEAR)  # decodes the whole image
    except READ_ERRORS as e:
        raise VideoReadError(src, error_reason(e)) from None
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
    """Videos and frame images that could not be read, with the reason (copied as they are)."""

    def summary(self) -> str:
        """One line."""
        bad = len(self.unreadable)
        return (
            f"{self.videos} videos re-encoded, {self.images} frame images rescaled, {self.copied} files copied as they are, "
            f"{self.skipped} already there" + (f", {bad} unreadable files copied as they are" if bad else "")
        )


def files(root: Path, chain: tuple[str, ...] = ()) -> Iterator[Path]:
    """Every file under ``root`` in a stable order: no hidden file or folder; linked folders followed, except one
    that leads back to a folder above it (``chain``: the real paths of the folders above)."""
    chain += (os.path.realpath(root),)
    entries = sorted((e for e in os.scandir(root) if not e.name.startswith(".")), key=lambda e: (e.is_dir(), e.name))
    for entry in entries:
        if not entry.is_dir():
            if entry.is_file():
                yield Path(entry.path)
        elif os.path.realpath(entry.path) not in chain:
            yield from files(Path(entry.path), chain)


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
    _claim(dst, short_side)
    report = ResizeReport()
    todo = list(files(src))
    for path in tqdm(todo, desc="resizing", unit="file", disable=not progress or None):
        out = dst / path.relative_to(src)
        if out.exists():
            report.skipped += 1
            continue
        try:
            kind = _write(path, out, short_side)
        except VideoReadError as e:
            report.unreadable[str(path)] = e.reason
            copy_file(path, out)
            continue
        setattr(report, kind, getattr(report, kind) + 1)
    return report


def _has_files(dst: Path) -> bool:
    """True when the folder ``dst`` holds anything a copy could collide with (hidden names are never copied)."""
    try:
        return any(not e.name.startswith(".") for e in os.scandir(dst))
    except FileNotFoundError:
        return False


def _claim(dst: Path, short_side: int) -> None:
    """Record ``short_side`` in ``dst``'s :data:`MARKER`; :class:`DataError` when ``dst`` holds a copy at another one."""
    marker = dst / MARKER
    try:
        before = json.loads(marker.read_text()).get("short_side") if marker.is_file() else None
    except (OSError, ValueError, AttributeError):
        before = None  # unreadable: the files say nothing either way; this run's size is recorded
    if not marker.exists() and _has_files(dst):
        raise DataError(f"{dst} is not empty and has no {MARKER} from an earlier e3d data resize; copy into an empty or new folder")
    if before not in (None, short_side):
        raise DataError(f"{dst} holds a copy at --short-side {before}; run it with --short-side {before} to finish it, or copy elsewhere")
    if before is None:
        write_text(marker, json.dumps({"short_side": short_side}) + "\n")
