"""Video data for training: real dataset layouts, the built-in proxy tasks, sampling and transforms.

Public API::

    proxy_dataset(task, *, split, clip=(16, 48, 48), num_samples=None, seed=0, cache_dir=None) -> ClipDataset
    open_dataset(path_or_task, *, format=None, split, clip=None, ...) -> ClipDataset
    read_layout(root, *, format=None, annotations=None, fold=1, allow_missing=False) -> Layout

Every dataset yields ``(clip, label)`` with ``clip`` a normalised float32 tensor (3, T, H, W) and exposes
``num_classes``, ``class_names`` and ``clip_videos`` (the video of each item, for video accuracy).
Training splits take a random window and a multi-scale crop, validation the centre window and centre
crop, test every non-overlapping window (see :mod:`search.data.sampling` and :mod:`search.data.transforms`).
"""

from __future__ import annotations

from pathlib import Path

from search.data.datasets import Batch, ClipDataset, ErrorReport, Indexed, Unreadable, VideoDataset, collate, collate_indexed
from search.data.errors import DataError, DataWarning, VideoReadError
from search.data.framecache import FrameCache, short_side_for
from search.data.layouts import FORMATS, SPLITS, Layout, VideoRecord, detect_format, read_layout
from search.data.proxy import (
    DEFAULT_SAMPLES,
    PROXY_SCALES,
    PROXY_TASKS,
    ProxyDataset,
    ProxyOptions,
    class_names,
    default_cache_dir,
    load_or_generate,
)
from search.data.sampling import TemporalSampling
from search.data.transforms import IMAGENET_MEAN, IMAGENET_STD, PAPER_SCALES, SpatialTransform
from search.data.video import count_frames, read_clip

ALL_FORMATS = (*FORMATS, *PROXY_TASKS)
"""Everything ``open_dataset`` (and ``e3d train --format``) reads."""
GESTURE_FORMATS = frozenset({"jester", "motion", "digits"})
"""Formats whose classes change under a horizontal flip (left vs right), so flipping is off by default."""
_SAMPLING = {"train": "random", "val": "center", "test": "all"}
DEFAULT_FRAME_STEP = {"jester": 2, "motion": 2}
"""Frame step where it is not 1: the paper takes 16 of 32 frames for Jester so that a clip spans the whole
gesture; on the motion task the same doubles what a 16-frame clip sees move (and, measured, roughly
doubles the accuracy reached in three epochs; see the README)."""


def _check_clip(clip: tuple[int, int, int]) -> tuple[int, int, int]:
    if len(clip) != 3 or not all(isinstance(c, int) and c >= 1 for c in clip):
        raise DataError(f"clip must be 3 positive integers (T, H, W); got {clip!r}")
    return clip


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")


def _check_task(task: str) -> None:
    """Raise :class:`DataError` unless ``task`` is one of :data:`PROXY_TASKS`."""
    if task not in PROXY_TASKS:
        raise DataError(f"unknown proxy task {task!r}; choose from {', '.join(PROXY_TASKS)}")


def _sample_count(split: str, num_samples: int | None) -> int:
    """How many proxy videos to render: ``num_samples``, else the split's :data:`DEFAULT_SAMPLES`; at least 1."""
    n = DEFAULT_SAMPLES[split] if num_samples is None else num_samples
    if n < 1:
        raise DataError(f"num_samples must be >= 1; got {n}")
    return n


def _clip_cutting(
    fmt: str,
    split: str,
    sampling: str | None,
    clip: tuple[int, int, int],
    frame_step: int | None,
    scales: tuple[float, ...],
    *,
    position: str = "random",
    flip: bool = False,
) -> tuple[TemporalSampling, SpatialTransform]:
    """How a split cuts clips (T, H, W) from ``fmt`` videos: its sampling (the split's default unless given) and transform."""
    t, h, w = clip
    mode = sampling or _SAMPLING[split]
    temporal = TemporalSampling(mode, t, frame_step or DEFAULT_FRAME_STEP.get(fmt, 1))
    return temporal, SpatialTransform((h, w), train=mode == "random", scales=scales, position=position, flip=flip and mode == "random")


def proxy_dataset(
    task: str,
    *,
    split: str,
    clip: tuple[int, int, int] = (16, 48, 48),
    num_samples: int | None = None,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    options: ProxyOptions | None = None,
    frame_step: int | None = None,
    scales: tuple[float, ...] = PROXY_SCALES,
    sampling: str | None = None,
    crop_position: str = "random",
    progress: bool = True,
) -> ProxyDataset:
    """A built-in proxy task (``motion`` or ``digits``), generated on first use and cached.

    ``num_samples`` videos (default :data:`DEFAULT_SAMPLES` of the split) are rendered from ``seed``;
    ``frame_step`` defaults to :data:`DEFAULT_FRAME_STEP` (2 for motion: a clip spans the whole video);
    the three splits of one task and seed are disjoint. The test split has one item per
    non-overlapping window (two per video with the default 32-frame videos and 16-frame clips).
    ``cache_dir`` defaults to ``$E3D_CACHE`` or ``~/.cache/e3d``.
    """
    _check_task(task)
    _check_split(split)
    _check_clip(clip)
    opts = options or ProxyOptions()
    n = _sample_count(split, num_samples)
    video = opts.video_shape(clip)
    cache = Path(cache_dir or default_cache_dir())
    path, labels = load_or_generate(task, split, num_samples=n, video=video, seed=seed, options=opts, cache_dir=cache, progress=progress)
    names = class_names(task, opts)
    temporal, spatial = _clip_cutting(task, split, sampling, clip, frame_step, scales, position=crop_position)
    return ProxyDataset(path, labels, names, sampling=temporal, transform=spatial, video_frames=video[0], seed=seed, name=f"{task}/{split}")


def _proxy_task(text: str, format: str | None) -> str | None:
    """The proxy task that ``open_dataset`` opens: ``format`` if one, else a task's name not shadowed by a path; None for data on disk."""
    if format is None and text in PROXY_TASKS and not Path(text).exists():
        return text
    return format if format in PROXY_TASKS else None


def _open_proxy(
    task: str,
    text: str,
    split: str,
    *,
    clip: tuple[int, int, int] | None,
    crop_position: str,
    flip: bool | None,
    frame_step: int | None,
    sampling: str | None,
    scales: tuple[float, ...] | None,
    seed: int,
    num_samples: int | None,
    cache_dir: str | Path | None,
    options: ProxyOptions | None,
    progress: bool,
) -> ProxyDataset:
    """``open_dataset`` of a proxy task: never flipped; a path given as ``text`` is the cache folder."""
    if flip:
        raise DataError(f"the {task} proxy task cannot be flipped (left and right are different classes or digits)")
    return proxy_dataset(
        task,
        split=split,
        clip=clip or (16, 48, 48),
        num_samples=num_samples,
        seed=seed,
        cache_dir=cache_dir if cache_dir is not None else (None if text in PROXY_TASKS else text),
        options=options,
        frame_step=frame_step,
        scales=scales or PROXY_SCALES,
        sampling=sampling,
        crop_position=crop_position,
        progress=progress,
    )


def _checked_layout(path: str | Path, format: str | None, annotations: str | Path | None, fold: int, allow_missing: bool) -> Layout:
    """:func:`read_layout` of ``path``, after checking that ``format`` (when given) is a layout on disk."""
    if format is not None and format not in FORMATS:
        raise DataError(f"unknown data format {format!r}; choose from {', '.join(ALL_FORMATS)}")
    return read_layout(path, format=format, annotations=annotations, fold=fold, allow_missing=allow_missing)


def _layout_dataset(
    layout: Layout,
    split: str,
    *,
    clip: tuple[int, int, int] | None,
    frame_step: int | None,
    sampling: str | None,
    scales: tuple[float, ...] | None,
    crop_position: str,
    flip: bool | None,
    seed: int,
    on_error: str,
    progress: bool,
    frame_cache: Path | None,
) -> VideoDataset:
    """``open_dataset`` of a layout on disk: 16x112x112 clips and :data:`PAPER_SCALES` unless given; no flips for gestures;
    video files read through a :class:`FrameCache` in the folder ``frame_cache`` (None: decoded for every clip)."""
    clip = _check_clip(clip or (16, 112, 112))
    do_flip = flip if flip is not None else layout.format not in GESTURE_FORMATS
    items, names = layout.split(split), layout.class_names
    temporal, spatial = _clip_cutting(
        layout.format, split, sampling, clip, frame_step, scales or PAPER_SCALES, position=crop_position, flip=do_flip
    )
    name = f"{layout.root.name}/{split} ({layout.format})"
    cache = None
    if frame_cache is not None:
        cache = FrameCache(frame_cache, short_side_for(spatial.size, spatial.scales if spatial.train else (1.0,)))
    return VideoDataset(
        items,
        names,
        sampling=temporal,
        transform=spatial,
        seed=seed,
        on_error=on_error,
        name=name,
        format=layout.format,
        progress=progress,
        frame_cache=cache,
    )


def open_dataset(
    path_or_task: str | Path,
    *,
    format: str | None = None,
    split: str,
    clip: tuple[int, int, int] | None = None,
    frame_step: int | None = None,
    sampling: str | None = None,
    scales: tuple[float, ...] | None = None,
    crop_position: str = "random",
    flip: bool | None = None,
    annotations: str | Path | None = None,
    fold: int = 1,
    allow_missing: bool = False,
    on_error: str = "skip",
    seed: int = 0,
    num_samples: int | None = None,
    cache_dir: str | Path | None = None,
    proxy_options: ProxyOptions | None = None,
    progress: bool = True,
    frame_cache: bool = True,
) -> ClipDataset:
    """Open any dataset the trainer reads: a layout on disk, or a proxy task by name.

    ``format`` is one of :data:`ALL_FORMATS` (guessed from the path when None; a proxy task name as
    ``path_or_task`` selects that task). ``clip`` (T, H, W) defaults to 16x112x112 for real data (the
    paper's input) and 16x48x48 for the proxy tasks; ``scales`` default to :data:`PAPER_SCALES` for real
    data and :data:`PROXY_SCALES` for the proxy tasks. ``sampling`` overrides the split's default
    (random / center / all); ``frame_step`` defaults to :data:`DEFAULT_FRAME_STEP` (2 for Jester, as in the
    paper, and the motion task; else 1); ``flip`` defaults to on except for gesture-like data (:data:`GESTURE_FORMATS`).
    ``on_error="raise"`` fails on the first unreadable video instead of skipping it. ``cache_dir`` (default
    ``$E3D_CACHE`` or ``~/.cache/e3d``) holds the proxy tasks and, under ``frames/``, the frame cache that
    reads each video file once (:mod:`search.data.framecache`; ``frame_cache=False`` decodes every clip from its file).
    """
    _check_split(split)
    text = str(path_or_task)
    task = _proxy_task(text, format)
    if task is not None:
        return _open_proxy(
            task,
            text,
            split,
            clip=clip,
            crop_position=crop_position,
            flip=flip,
            frame_step=frame_step,
            sampling=sampling,
            scales=scales,
            seed=seed,
            num_samples=num_samples,
            cache_dir=cache_dir,
            options=proxy_options,
            progress=progress,
        )
    layout = _checked_layout(path_or_task, format, annotations, fold, allow_missing)
    frames = Path(cache_dir or default_cache_dir()) / "frames" if frame_cache else None
    return _layout_dataset(
        layout,
        split,
        clip=clip,
        frame_step=frame_step,
        sampling=sampling,
        scales=scales,
        crop_position=crop_position,
        flip=flip,
        seed=seed,
        on_error=on_error,
        progress=progress,
        frame_cache=frames,
    )


__all__ = [
    "ALL_FORMATS",
    "DEFAULT_FRAME_STEP",
    "DEFAULT_SAMPLES",
    "FORMATS",
    "GESTURE_FORMATS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PAPER_SCALES",
    "PROXY_SCALES",
    "PROXY_TASKS",
    "SPLITS",
    "Batch",
    "ClipDataset",
    "DataError",
    "DataWarning",
    "ErrorReport",
    "FrameCache",
    "Indexed",
    "Layout",
    "ProxyDataset",
    "ProxyOptions",
    "SpatialTransform",
    "TemporalSampling",
    "Unreadable",
    "VideoDataset",
    "VideoReadError",
    "VideoRecord",
    "class_names",
    "collate",
    "collate_indexed",
    "count_frames",
    "default_cache_dir",
    "detect_format",
    "load_or_generate",
    "open_dataset",
    "proxy_dataset",
    "read_clip",
    "read_layout",
]
