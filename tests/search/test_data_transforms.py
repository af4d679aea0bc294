"""Spatial transforms: multi-scale crop (random and corner), flip, resize, normalisation, centre crop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from search.data import IMAGENET_MEAN, IMAGENET_STD, PAPER_SCALES, SpatialTransform
from search.data.transforms import Crop, apply_crop


def ramp(t: int = 4, h: int = 60, w: int = 80) -> np.ndarray:
    """Frames whose red channel is the column index, so crops and flips are visible."""
    x = np.zeros((t, h, w, 3), np.uint8)
    x[..., 0] = np.arange(w, dtype=np.uint8)[None, None, :]
    return x


def unnormalise(clip: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1, 1) * 255
    return clip * std + mean


def test_paper_scales() -> None:
    assert pytest.approx((1, 0.8409, 0.7071, 0.5946, 0.5), abs=1e-4) == PAPER_SCALES


def test_evaluation_takes_the_centre_square_at_scale_1() -> None:
    t = SpatialTransform((60, 60))
    assert t.crop(60, 80, None) == Crop(0, 10, 60)
    clip = t(ramp())
    assert clip.shape == (3, 4, 60, 60) and clip.dtype == torch.float32
    red = unnormalise(clip)[0, 0, 0]
    assert red[0].item() == pytest.approx(10, abs=0.01) and red[-1].item() == pytest.approx(69, abs=0.01)


def test_training_crops_use_the_paper_scales_at_random_positions() -> None:
    t = SpatialTransform((32, 32), train=True)
    rng = np.random.default_rng(0)
    crops = [t.crop(60, 80, rng) for _ in range(400)]
    assert {c.side for c in crops} == {int(60 * s) for s in PAPER_SCALES}
    assert all(0 <= c.top <= 60 - c.side and 0 <= c.left <= 80 - c.side for c in crops)
    assert len({(c.top, c.left) for c in crops}) > 100
    assert not any(c.flip for c in crops)  # flip is off unless asked for


def test_corner_crops_sit_at_a_corner_or_the_centre() -> None:
    t = SpatialTransform((32, 32), train=True, position="corner", scales=(0.5,))
    rng = np.random.default_rng(1)
    assert {(c.top, c.left) for c in (t.crop(60, 80, rng) for _ in range(200))} == {(15, 25), (0, 0), (0, 50), (30, 0), (30, 50)}


def test_flip_mirrors_about_half_the_clips_and_resize_hits_the_size() -> None:
    t = SpatialTransform((16, 24), train=True, flip=True, scales=(1.0,))
    rng = np.random.default_rng(2)
    flips = [t.crop(60, 80, rng).flip for _ in range(400)]
    assert 150 < sum(flips) < 250
    frames = ramp()
    clip = t(frames, np.random.default_rng(3))
    assert clip.shape == (3, 4, 16, 24)
    plain = apply_crop(frames, Crop(0, 10, 60), (16, 24), IMAGENET_MEAN, IMAGENET_STD)
    flipped = apply_crop(frames, Crop(0, 10, 60, flip=True), (16, 24), IMAGENET_MEAN, IMAGENET_STD)
    assert torch.equal(flipped, plain.flip(-1))


@pytest.mark.parametrize(
    ("side", "size", "levels", "share"),
    [
        *[(side, (48, 48), 0, 0.0) for side in (56, 47, 39, 33, 28)],  # the built-in tasks' crops: Pillow's pixels
        (53, (48, 48), 1, 0.02),
        (133, (112, 112), 1, 0.02),
        (17, (9, 13), 1, 0.02),
        (64, (112, 112), 2, 0.10),  # enlarged
    ],
)
def test_the_resize_is_pillows_bilinear_filter_up_to_rounding(side: int, size: tuple[int, int], levels: int, share: float) -> None:
    frames = np.random.default_rng(side).integers(0, 256, (4, side, side + 3, 3), dtype=np.uint8)
    got = unnormalise(apply_crop(frames, Crop(0, 2, side), size, IMAGENET_MEAN, IMAGENET_STD)).round()
    pil = [np.asarray(Image.fromarray(f[:, 2 : 2 + side]).resize(size[::-1], Image.Resampling.BILINEAR)) for f in frames]
    diff = (got - torch.from_numpy(np.stack(pil)).permute(3, 0, 1, 2).float()).abs()
    assert diff.max() <= levels and (diff > 0).float().mean() <= share


def test_grey_frames_feed_three_channels() -> None:
    grey = np.full((2, 20, 20, 1), 128, np.uint8)
    clip = SpatialTransform((10, 10))(grey)
    assert clip.shape == (3, 2, 10, 10)
    expected = [(128 / 255 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    assert clip[:, 0, 0, 0].tolist() == pytest.approx(expected, abs=1e-5)


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="position"):
        SpatialTransform((8, 8), position="middle")
    with pytest.raises(ValueError, match="scales"):
        SpatialTransform((8, 8), scales=(1.5,))
    with pytest.raises(ValueError, match="uint8"):
        SpatialTransform((8, 8))(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="generator"):
        SpatialTransform((8, 8), train=True).crop(8, 8, None)
