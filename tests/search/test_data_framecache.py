"""The decoded-frame cache: one decode per video, reduced size, atomic entries, a full disk, datasets through it."""

from __future__ import annotations

import io
import itertools
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from search.data import DataWarning, FrameCache, VideoReadError, open_dataset
from search.data import framecache as fc
from space.files import WriteError
from tests.search.video_fixtures import decoded_levels, level, level_frames, write_video


def entries(root: Path) -> list[Path]:
    return sorted(root.glob("*.frames")) if root.exists() else []


@pytest.mark.parametrize(("size", "scales", "side"), [((112, 112), (1.0, 0.5), 224), ((48, 64), (1.0,), 64), ((112, 112), (0.7,), 160)])
def test_the_short_side_is_the_smallest_at_which_no_crop_is_enlarged(size: tuple[int, int], scales: tuple[float, ...], side: int) -> None:
    assert fc.short_side_for(size, scales) == side


def test_a_video_is_decoded_once_then_read_from_its_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    video = write_video(tmp_path / "v.mkv", level_frames(30, 32, 48), codec="ffv1")
    cache = FrameCache(tmp_path / "frames", 64)
    first, n = cache.clip(video, lambda n: [0, n - 1, 5])
    assert n == 30 and first.shape == (3, 32, 48, 3) and len(entries(tmp_path / "frames")) == 1

    def no_decode(path: Path, short_side: int) -> np.ndarray:
        raise AssertionError("decoded again")

    monkeypatch.setattr(fc, "decode_video", no_decode)
    again, n2 = cache.clip(video, lambda n: [0, n - 1, 5])
    assert n2 == 30 and decoded_levels(again) == pytest.approx([level(0), level(29), level(5)], abs=2)
    assert np.abs(again.astype(int) - first.astype(int)).max() <= 4  # JPEG at quality 90 of uniform frames


def test_the_first_read_of_a_video_gives_the_pixels_of_every_later_read(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (6, 32, 48, 3), dtype=np.uint8)  # far from lossless in JPEG
    video = write_video(tmp_path / "v.mkv", noise, codec="ffv1")
    cache = FrameCache(tmp_path / "frames", 64)
    first, _ = cache.clip(video, lambda n: [3, 1, 1])
    again, _ = cache.clip(video, lambda n: [3, 1, 1])
    assert np.array_equal(first, again)  # the first read skipped the JPEG round-trip: epoch 1 saw other pixels


@pytest.mark.parametrize(("short_side", "stored"), [(16, (16, 24)), (200, (32, 48))])
def test_frames_are_shrunk_to_the_short_side_and_never_enlarged(tmp_path: Path, short_side: int, stored: tuple[int, int]) -> None:
    video = write_video(tmp_path / "v.mkv", level_frames(10, 32, 48), codec="ffv1")
    cache = FrameCache(tmp_path / "frames", short_side)
    cache.clip(video, lambda n: [0])
    clip, _ = cache.clip(video, lambda n: [0])
    assert clip.shape[1:3] == stored


def test_an_entry_reads_as_pillow_decodes_its_frames_in_the_plans_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (6, 20, 28, 3), dtype=np.uint8)
    entry = tmp_path / "e.frames"
    entry.write_bytes(fc.pack(frames))
    got, n = fc.unpack(entry, lambda n: [4, 1, 1, 5, 0]) or (None, 0)
    data = entry.read_bytes()
    base = fc._HEAD.size + 8 * 7
    offsets = np.frombuffer(data[fc._HEAD.size : base], "<u8")
    jpegs = [data[base + int(a) : base + int(b)] for a, b in itertools.pairwise(offsets)]
    pillow = [np.asarray(Image.open(io.BytesIO(j)).convert("RGB")) for j in jpegs]
    assert n == 6 and got is not None and got.shape == (5, 20, 28, 3)
    for k, i in enumerate([4, 1, 1, 5, 0]):
        assert np.array_equal(got[k], pillow[i])


def test_an_entry_with_a_corrupt_frame_is_not_read(tmp_path: Path) -> None:
    entry = tmp_path / "e.frames"
    data = bytearray(fc.pack(np.zeros((2, 16, 16, 3), np.uint8)))
    start = fc._HEAD.size + 8 * 3
    data[start : start + 4] = b"\0\0\0\0"  # the first frame's JPEG start-of-image marker
    entry.write_bytes(bytes(data))
    assert fc.unpack(entry, lambda n: [0]) is None


def _set_field(offset: int, value: int) -> bytes:
    """An entry of two 16x16 frames whose little-endian uint64 at ``offset`` is ``value``."""
    data = bytearray(fc.pack(np.zeros((2, 16, 16, 3), np.uint8)))
    data[offset : offset + 8] = value.to_bytes(8, "little")
    return bytes(data)


@pytest.mark.parametrize(
    "data",
    [
        _set_field(8, 1 << 62 | 2),
        _set_field(8, 3),
        _set_field(8, 0),
        _set_field(16, 1 << 40 | 16),
        _set_field(24, 1 << 40 | 16),
        _set_field(16, 0),
        _set_field(16, 17),
        _set_field(fc._HEAD.size + 8, 1 << 63),
        _set_field(fc._HEAD.size, 8),
    ],
    ids=[
        "frames-bit-62",
        "frames-off-by-one",
        "no-frames",
        "height-bit-40",
        "width-bit-40",
        "no-height",
        "height-off",
        "offset-huge",
        "first-offset",
    ],
)
def test_an_entry_with_a_corrupt_header_is_not_read(tmp_path: Path, data: bytes) -> None:
    entry = tmp_path / "e.frames"
    entry.write_bytes(data)
    assert fc.unpack(entry, lambda n: [0, n - 1]) is None


def test_a_changed_video_gets_a_new_entry_and_a_broken_entry_is_replaced(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.mkv", level_frames(10), codec="ffv1")
    cache = FrameCache(tmp_path / "frames", 32)
    cache.clip(video, lambda n: [0])
    old = cache.entry(video)
    write_video(video, level_frames(12), codec="ffv1")
    os.utime(video, ns=(old.stat().st_mtime_ns + 10**9, old.stat().st_mtime_ns + 10**9))
    _, n = cache.clip(video, lambda n: [0])
    assert n == 12 and cache.entry(video) != old
    entry = cache.entry(video)
    entry.write_bytes(entry.read_bytes()[:-100])  # truncated, as a copy cut short would be
    clip, n = cache.clip(video, lambda n: [n - 1])
    assert n == 12 and decoded_levels(clip) == pytest.approx([level(11)], abs=2)
    assert fc.unpack(entry, lambda n: [0]) is not None


def test_a_full_disk_warns_once_and_videos_are_read_from_their_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(path: Path, write: object) -> Path:
        raise WriteError(f"cannot write {path}: no space left on the device")

    monkeypatch.setattr(fc, "atomic_write", full)
    videos = [write_video(tmp_path / f"v{i}.mkv", level_frames(10), codec="ffv1") for i in range(2)]
    cache = FrameCache(tmp_path / "frames", 32)
    with pytest.warns(DataWarning, match="frame cache off: .*no space left"):
        clip, n = cache.clip(videos[0], lambda n: [3])
    assert n == 10 and decoded_levels(clip) == pytest.approx([level(3)], abs=2) and not cache.writable

    def no_decode(path: Path, short_side: int) -> np.ndarray:
        raise AssertionError("decoded whole although the cache is off")

    monkeypatch.setattr(fc, "decode_video", no_decode)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clip, n = cache.clip(videos[1], lambda n: [4])  # read as without the cache: only up to the frames it takes
    assert n == 10 and decoded_levels(clip) == pytest.approx([level(4)], abs=2)
    assert entries(tmp_path / "frames") == []


def test_an_unreadable_video_raises_with_its_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 50)
    with pytest.raises(VideoReadError, match=r"bad\.mp4"):
        FrameCache(tmp_path / "frames", 32).clip(bad, lambda n: [0])


def folder(root: Path) -> Path:
    for split in ("train", "val"):
        for c in ("a", "b"):
            write_video(root / split / c / "v.mkv", level_frames(20, 64, 80), codec="ffv1")
    return root


def test_datasets_read_video_files_through_the_cache_unless_told_not_to(tmp_path: Path) -> None:
    root = folder(tmp_path / "d")
    kw = {"split": "val", "clip": (8, 16, 16), "progress": False, "cache_dir": tmp_path / "cache"}
    cached, direct = open_dataset(root, **kw), open_dataset(root, frame_cache=False, **kw)  # type: ignore[arg-type]
    for i in range(len(cached)):
        a, b = cached[i], direct[i]
        assert isinstance(a, tuple) and isinstance(b, tuple) and a[1] == b[1]
        assert (a[0] - b[0]).abs().max() < 0.1  # the same centre crop, resampled twice and JPEG-stored
    assert len(entries(tmp_path / "cache" / "frames")) == 2
    train = open_dataset(root, split="train", clip=(8, 16, 16), progress=False, cache_dir=tmp_path / "cache")
    assert train.frame_cache is not None and train.frame_cache.short_side == 32  # type: ignore[attr-defined]


def test_a_header_that_overstates_the_frames_warns_through_the_cache(tmp_path: Path) -> None:
    whole = write_video(tmp_path / "whole.mkv", level_frames(40), codec="ffv1")
    for split in ("train", "val"):
        write_video(tmp_path / "d" / split / "a" / "v.mkv", level_frames(10), codec="ffv1")
    cut = tmp_path / "d" / "test" / "a" / "cut.mkv"
    cut.parent.mkdir(parents=True)
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.warns(DataWarning, match=r"cut.mkv: header says 40 frames but \d+ decode"):  # when the test split counts
        ds = open_dataset(tmp_path / "d", split="test", clip=(8, 16, 16), progress=False, cache_dir=tmp_path / "cache")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the windows were planned on the decoded count: nothing to re-plan
        item = ds[len(ds) - 1]
    assert isinstance(item, tuple)
