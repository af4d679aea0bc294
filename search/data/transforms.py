"""Spatial transforms as in the paper, on whole clips (the same crop and flip for every frame).

Training: a square crop whose side is ``min(H, W)`` times a scale drawn from
:data:`PAPER_SCALES`, at a random position (or at one of the four corners or the centre), an optional
horizontal flip, a resize to the clip size and a per-channel normalisation. Evaluation: the centre
square at scale 1 (what resizing the short side and centre-cropping gives), resized and normalised.
Everything is a few torch ops on uint8 frames; randomness comes from the ``numpy`` generator passed in.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

PAPER_SCALES = (1.0, 2**-0.25, 2**-0.5, 2**-0.75, 0.5)
"""Crop scales of the multi-scale crop: {1, 2^-1/4, 2^-1/2, 2^-3/4, 1/2}."""
POSITIONS = ("random", "corner")
CORNERS = ("center", "top_left", "top_right", "bottom_left", "bottom_right")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Crop:
    """A square crop of side ``side`` at (``top``, ``left``), then an optional horizontal ``flip``."""

    top: int
    left: int
    side: int
    flip: bool = False


def center_crop(h: int, w: int) -> Crop:
    """The largest centred square of an ``h`` x ``w`` frame."""
    side = min(h, w)
    return Crop((h - side) // 2, (w - side) // 2, side)


@dataclass(frozen=True)
class SpatialTransform:
    """Crop, flip, resize to ``size`` (H, W) and normalise a clip; ``train`` selects the random crop."""

    size: tuple[int, int]
    train: bool = False
    scales: tuple[float, ...] = PAPER_SCALES
    position: str = "random"
    flip: bool = False
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.position not in POSITIONS:
            raise ValueError(f"crop position must be one of {', '.join(POSITIONS)}; got {self.position!r}")
        if not self.scales or not all(0 < s <= 1 for s in self.scales):
            raise ValueError(f"crop scales must be in (0, 1]; got {self.scales}")
        if min(self.size) < 1:
            raise ValueError(f"clip size must be positive; got {self.size}")

    def crop(self, h: int, w: int, rng: np.random.Generator | None) -> Crop:
        """The crop for a frame of ``h`` x ``w``: drawn from ``rng`` in training, the centre otherwise."""
        if not self.train:
            return center_crop(h, w)
        if rng is None:
            raise ValueError("a training transform needs a generator")
        side = max(1, int(min(h, w) * self.scales[int(rng.integers(len(self.scales)))]))
        if self.position == "random":
            top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        else:
            corner = CORNERS[int(rng.integers(len(CORNERS)))]
            top = {"center": (h - side) // 2, "top_left": 0, "top_right": 0}.get(corner, h - side)
            left = {"center": (w - side) // 2, "top_left": 0, "bottom_left": 0}.get(corner, w - side)
        flip = bool(self.flip and rng.random() < 0.5)
        return Crop(top, left, side, flip)

    def __call__(self, frames: np.ndarray | Tensor, rng: np.random.Generator | None = None) -> Tensor:
        """uint8 frames (T, H, W, C) with C in {1, 3} -> float32 clip (3, T, *size), normalised."""
        x = frames.numpy() if isinstance(frames, Tensor) else np.asarray(frames)
        if x.ndim != 4 or x.shape[-1] not in (1, 3) or x.dtype != np.uint8:
            raise ValueError(f"expected uint8 frames (T, H, W, 1 or 3), got {x.dtype} {tuple(x.shape)}")
        c = self.crop(x.shape[1], x.shape[2], rng)
        return apply_crop(x, c, self.size, self.mean, self.std)


def apply_crop(
    frames: np.ndarray, crop: Crop, size: tuple[int, int], mean: tuple[float, float, float], std: tuple[float, float, float]
) -> Tensor:
    """Cut ``crop`` out of uint8 frames (T, H, W, C), resize to ``size``, flip, normalise -> (3, T, *size).

    The whole clip is resized at once by torch's antialiased bilinear resampling of uint8 images, Pillow's
    ``BILINEAR`` filter with other fixed-point rounding: the same pixels as Pillow for the built-in tasks' crops,
    one grey level apart in under 2% of them for some other shrinking sizes, and up to two levels in under 10%
    when a crop is enlarged (``tests/search/test_data_transforms.py``); 5-7x faster than Pillow frame by frame.
    """
    x = torch.tensor(frames[:, crop.top : crop.top + crop.side, crop.left : crop.left + crop.side]).permute(0, 3, 1, 2)
    if tuple(x.shape[2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    if crop.flip:
        x = x.flip(-1)
    shift, scale = _normaliser(tuple(mean), tuple(std))
    x = x.transpose(0, 1).to(torch.float32, memory_format=torch.contiguous_format)  # (C, T, h, w)
    return (x - shift).mul_(scale)  # (3, T, h, w); a grey frame feeds all three channels


@functools.cache
def _normaliser(mean: tuple[float, float, float], std: tuple[float, float, float]) -> tuple[Tensor, Tensor]:
    """The per-channel shift and scale (3, 1, 1, 1) that map 0-255 pixels to ``(v / 255 - mean) / std``."""
    shift = torch.tensor([m * 255 for m in mean], dtype=torch.float32).view(3, 1, 1, 1)
    scale = torch.tensor([1 / (s * 255) for s in std], dtype=torch.float32).view(3, 1, 1, 1)
    return shift, scale
