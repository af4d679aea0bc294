"""Clip datasets: items are (clip float32 [3, T, H, W], label), ready for a multi-worker DataLoader.

:class:`ClipDataset` is the common base: class names, the video each item belongs to
(:attr:`ClipDataset.clip_videos`, for video-level accuracy) and per-item randomness drawn from
``(seed, epoch, index)``, so the same seed gives the same clips whatever the number of loader workers.
:class:`VideoDataset` reads videos from disk. An unreadable video is reported with
its path and reason: its item is an :class:`Unreadable` record, which the collate functions drop and
the trainer reports (a :class:`DataWarning` once per video), or raises as :class:`VideoReadError` in the
main process when ``on_error="raise"`` (so a loader worker never dies on a bad file).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate
from tqdm import tqdm

from search.data.errors import DataError, DataWarning, VideoReadError
from search.data.framecache import FrameCache
from search.data.layouts import VideoRecord
from search.data.sampling import TemporalSampling
from search.data.transforms import SpatialTransform
from search.data.video import Plan, count_frames, count_mismatch, read_clip

ON_ERROR = ("skip", "raise")
Item = tuple[Tensor, int]


@dataclass(frozen=True)
class Unreadable:
    """The item of a video that could not be read: its path and the reason."""

    path: str
    reason: str

    def error(self) -> VideoReadError:
        """The matching exception."""
        return VideoReadError(self.path, self.reason)


class ClipDataset(Dataset[Item | Unreadable]):
    """Base of every e3d dataset: ``items`` are (video index, window start or None) pairs."""

    def __init__(
        self,
        *,
        class_names: Sequence[str],
        labels: Sequence[int],
        items: Sequence[tuple[int, int | None]],
        sampling: TemporalSampling,
        transform: SpatialTransform,
        seed: int = 0,
        name: str = "",
        format: str = "",
        on_error: str = "skip",
    ) -> None:
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}; got {on_error!r}")
        self.class_names = list(class_names)
        self.format = format
        self.on_error = on_error
        self.video_labels = list(labels)
        self.items = list(items)
        self.sampling = sampling
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        self.name = name

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    @property
    def num_videos(self) -> int:
        """Number of videos (an item is one clip of one video)."""
        return len(self.video_labels)

    @property
    def clip_videos(self) -> list[int]:
        """The video index of every item, for averaging clip scores per video."""
        return [v for v, _ in self.items]

    @property
    def labels(self) -> list[int]:
        """The label of every item."""
        return [self.video_labels[v] for v, _ in self.items]

    def set_epoch(self, epoch: int, seed: int | None = None) -> None:
        """Select the random crops and windows of ``epoch`` (and, optionally, of another ``seed``)."""
        self.epoch = epoch
        if seed is not None:
            self.seed = seed

    def __len__(self) -> int:
        return len(self.items)

    def _rng(self, index: int) -> np.random.Generator | None:
        if self.sampling.mode != "random" and not self.transform.train:
            return None
        return np.random.default_rng([self.seed, self.epoch, index])

    def _plan_position(self, rng: np.random.Generator | None) -> float | None:
        return float(rng.random()) if rng is not None and self.sampling.mode == "random" else None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.name or '?'}: {len(self)} clips of {self.num_videos} videos, {self.num_classes} classes, "
            f"{self.sampling.mode} {self.sampling.frames}x{self.sampling.step}, {'x'.join(map(str, self.transform.size))})"
        )


class VideoDataset(ClipDataset):
    """Clips of video files or frame folders listed by ``records`` (see :mod:`search.data.layouts`);
    video files are read through ``frame_cache`` when one is given (see :mod:`search.data.framecache`)."""

    def __init__(
        self,
        records: Sequence[VideoRecord],
        class_names: Sequence[str],
        *,
        sampling: TemporalSampling,
        transform: SpatialTransform,
        seed: int = 0,
        on_error: str = "skip",
        name: str = "",
        format: str = "",
        progress: bool = True,
        frame_cache: FrameCache | None = None,
    ) -> None:
        if not records:
            raise DataError(f"no videos in {name or 'the dataset'}")
        self.records = list(records)
        self.frame_cache = frame_cache
        self.on_error = on_error
        self.unreadable: dict[str, str] = {}
        self._counts: dict[int, int] = {}
        items: list[tuple[int, int | None]]
        if sampling.mode == "all":
            items = []
            bar = tqdm(
                self.records,
                desc=f"counting frames ({name})",
                unit="video",
                disable=not progress or len(records) < 200 or None,
                leave=False,
            )
            for v, rec in enumerate(bar):
                try:
                    n = self._decoded_frames(rec.path)
                except VideoReadError as e:
                    self._fail(e)
                    continue
                self._counts[v] = n
                items += [(v, s) for s in sampling.starts(n)]
            if not items:
                raise DataError(f"none of the {len(records)} videos of {name or 'the dataset'} can be read")
        else:
            items = [(v, None) for v in range(len(self.records))]
        super().__init__(
            class_names=class_names,
            labels=[r.label for r in self.records],
            items=items,
            sampling=sampling,
            transform=transform,
            seed=seed,
            name=name,
            format=format,
            on_error=on_error,
        )

    def _decoded_frames(self, path: Path) -> int:
        """Frames of the video at ``path`` that decode (what the test split plans its windows on): a frame
        folder's images, or a video file decoded once, through the frame cache when there is one (so the
        clips read later decode nothing again); a header that states another count is a :class:`DataWarning`."""
        header = count_frames(path, decode=False).header
        if path.is_dir():
            return header or 0
        if self.frame_cache is not None and self.frame_cache.writable:
            n = self.frame_cache.clip(path, lambda n: [0])[1]
        else:
            n = count_frames(path).decoded or 0
        if header is not None and header != n:
            warnings.warn(count_mismatch(path, header, n), stacklevel=4)
        return n

    def _fail(self, e: VideoReadError) -> None:
        if self.on_error == "raise":
            raise e
        if e.path not in self.unreadable:
            self.unreadable[e.path] = e.reason
            warnings.warn(DataWarning(f"skipping {e.path}: {e.reason}"), stacklevel=3)

    def __getitem__(self, index: int) -> Item | Unreadable:
        v, start = self.items[index]
        rec = self.records[v]
        rng = self._rng(index)
        u = self._plan_position(rng)
        sampling = self.sampling

        def plan(n: int) -> list[int]:
            return sampling.window(start, n) if start is not None else sampling.indices(n, u)

        try:
            frames, n = self._read(v, plan)
            clip = self.transform(frames, rng)
        except VideoReadError as e:
            return Unreadable(e.path, e.reason)
        self._counts[v] = n
        return clip, rec.label

    def _read(self, v: int, plan: Plan) -> tuple[np.ndarray, int]:
        """Frames of video ``v`` and its frame count: through the frame cache for a video file, if there is one."""
        path = self.records[v].path
        if self.frame_cache is None or path.is_dir():
            return read_clip(path, plan, frames=self._counts.get(v))
        frames, n = self.frame_cache.clip(path, plan)
        known = self._counts.get(v)
        if known is not None and known != n:
            warnings.warn(count_mismatch(path, known, n), stacklevel=3)
        return frames, n


def collate(batch: Sequence[Item | Unreadable | None]) -> tuple[Tensor, Tensor] | None:
    """Stack (clip, label) items into (clips, labels), dropping unreadable ones; None if none is left."""
    kept = [b for b in batch if isinstance(b, tuple)]
    if not kept:
        return None
    clips, labels = default_collate(kept)
    return clips, labels


class Indexed(Dataset[tuple[int, Item | Unreadable]]):
    """A dataset whose items carry their index: ``(index, item)``, for per-video accounting."""

    def __init__(self, data: Dataset[Any]) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[int, Item | Unreadable]:
        return index, self.data[index]


class Batch(NamedTuple):
    """A collated batch of :class:`Indexed` items: indices, clips, labels and the unreadable items dropped."""

    indices: Tensor
    clips: Tensor
    labels: Tensor
    unreadable: list[Unreadable]


def collate_indexed(batch: Sequence[tuple[int, Item | Unreadable]]) -> Batch:
    """Collate :class:`Indexed` items; unreadable ones are set aside (clips may then be empty)."""
    kept = [(i, b) for i, b in batch if isinstance(b, tuple)]
    bad = [b for _, b in batch if isinstance(b, Unreadable)]
    if not kept:
        return Batch(torch.empty(0, dtype=torch.long), torch.empty(0), torch.empty(0, dtype=torch.long), bad)
    clips, labels = default_collate([b for _, b in kept])
    return Batch(torch.tensor([i for i, _ in kept]), clips, labels, bad)


class ErrorReport:
    """Reports unreadable videos met while loading: a :class:`DataWarning` once per path, or raise."""

    def __init__(self, data: Dataset[Any]) -> None:
        self.fail_fast = getattr(data, "on_error", "skip") == "raise"
        self.seen: set[str] = set()
        self.count = 0

    def __call__(self, bad: Sequence[Unreadable]) -> None:
        """Account for the unreadable items of one batch."""
        for b in bad:
            if self.fail_fast:
                raise b.error()
            self.count += 1
            if b.path not in self.seen:
                self.seen.add(b.path)
                warnings.warn(DataWarning(f"skipping {b.path}: {b.reason}"), stacklevel=2)


class FrameCounts(Dataset[tuple[str, int | None, int | None, str | None]]):
    """Items ``(path, header frames, decoded frames, error reason)`` of videos: parallel checking with workers."""

    def __init__(self, paths: Sequence[Path], *, decode: bool = True) -> None:
        self.paths = list(paths)
        self.decode = decode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[str, int | None, int | None, str | None]:
        path = self.paths[index]
        try:
            c = count_frames(path, decode=self.decode)
        except VideoReadError as e:
            return str(path), None, None, e.reason
        return str(path), c.header, c.decoded, None
