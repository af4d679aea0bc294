"""VideoDataset over real files: multi-worker loading, unreadable videos skipped or fatal, test windows."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from search.data import DataWarning, ErrorReport, Indexed, Unreadable, VideoReadError, collate_indexed, open_dataset
from search.data.video import count_frames
from tests.search.video_fixtures import level_frames, write_frames, write_video


def dataset(root: Path) -> Path:
    """train/val folders of 2 classes: mp4, webm and frame-folder videos, 40 frames each, and one corrupt file."""
    for split in ("train", "val"):
        write_video(root / split / "a" / "one.mp4", level_frames(40, 32, 40))
        write_video(root / split / "a" / "two.webm", level_frames(40, 32, 40), codec="libvpx")
        write_frames(root / split / "b" / "three", level_frames(40, 32, 40))
        write_video(root / split / "b" / "four.mkv", level_frames(40, 32, 40), codec="ffv1")
    (root / "train" / "b" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 then nothing useful" * 3)
    return root


def test_items_are_normalised_clips_and_labels(tmp_path: Path) -> None:
    ds = open_dataset(dataset(tmp_path / "d"), split="val", clip=(8, 24, 24), progress=False)
    assert ds.format == "folder" and ds.class_names == ["a", "b"] and len(ds) == 4
    clip, label = ds[0]  # type: ignore[misc]
    assert clip.shape == (3, 8, 24, 24) and clip.dtype == torch.float32 and label == 0
    assert ds.transform.flip is False and ds.sampling.mode == "center"
    train = open_dataset(tmp_path / "d", split="train", clip=(8, 24, 24), progress=False)
    assert train.transform.flip is True and train.sampling.mode == "random"  # flip defaults on outside gesture data


def test_a_corrupt_video_is_skipped_and_reported_with_workers(tmp_path: Path) -> None:
    ds = open_dataset(dataset(tmp_path / "d"), split="train", clip=(8, 24, 24), progress=False)
    loader = DataLoader(Indexed(ds), batch_size=5, num_workers=2, collate_fn=collate_indexed)
    report = ErrorReport(ds)
    with pytest.warns(DataWarning, match=r"skipping .*broken.mp4: "):
        batches = list(loader)
        for b in batches:
            report(b.unreadable)
    assert report.count == 1 and sum(len(b.labels) for b in batches) == 4


def test_fail_fast_raises_in_the_main_process_with_path_and_reason(tmp_path: Path) -> None:
    ds = open_dataset(dataset(tmp_path / "d"), split="train", clip=(8, 24, 24), on_error="raise", progress=False)
    bad = next(i for i in range(len(ds)) if isinstance(ds[i], Unreadable))
    loader = DataLoader(Indexed(ds), batch_size=5, num_workers=2, collate_fn=collate_indexed)
    report = ErrorReport(ds)
    with pytest.raises(VideoReadError, match=r"broken\.mp4") as e:
        for b in loader:
            report(b.unreadable)
    assert e.value.path.endswith("broken.mp4") and bad >= 0


def test_the_test_split_takes_every_window_and_skips_unreadable_videos_when_counting(tmp_path: Path) -> None:
    root = dataset(tmp_path / "d")
    write_video(root / "test" / "a" / "long.mp4", level_frames(50, 32, 40))
    write_video(root / "test" / "b" / "short.mkv", level_frames(5, 32, 40), codec="ffv1")
    (root / "test" / "b" / "empty.mp4").write_bytes(b"")
    with pytest.warns(DataWarning, match="empty.mp4: empty file"):
        ds = open_dataset(root, split="test", clip=(16, 24, 24), progress=False)
    assert ds.sampling.mode == "all"
    videos = [r.path.name for r in ds.records]  # type: ignore[attr-defined]
    per_video = {videos[v]: ds.clip_videos.count(v) for v in set(ds.clip_videos)}
    assert per_video == {"long.mp4": 3, "short.mkv": 1}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clips = [ds[i] for i in range(len(ds))]
    assert all(isinstance(c, tuple) and c[0].shape == (3, 16, 24, 24) for c in clips)
    with pytest.raises(VideoReadError, match=r"empty\.mp4"):
        open_dataset(root, split="test", clip=(16, 24, 24), on_error="raise", progress=False)


@pytest.mark.parametrize("frame_cache", [True, False])
def test_the_test_split_plans_windows_on_the_frames_that_decode_not_the_header(tmp_path: Path, frame_cache: bool) -> None:
    root = dataset(tmp_path / "d")
    whole = write_video(tmp_path / "whole.mkv", level_frames(48, 32, 40), codec="ffv1")
    cut = root / "test" / "a" / "cut.mkv"
    cut.parent.mkdir(parents=True)
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    decoded = count_frames(cut).decoded or 0
    assert count_frames(cut, decode=False).header == 48 and 16 <= decoded < 40
    with pytest.warns(DataWarning, match=r"cut.mkv: header says 48 frames but \d+ decode"):  # said while counting
        ds = open_dataset(root, split="test", clip=(8, 24, 24), cache_dir=tmp_path / "cache", frame_cache=frame_cache, progress=False)
    assert len(ds) == decoded // 8  # was 6, from the header: the windows past the end all repeated the last one
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 'header says 48 frames' re-plan: the count is the decoded one
        clips = [ds[i] for i in range(len(ds))]
    assert len({c[0].numpy().tobytes() for c in clips if isinstance(c, tuple)}) == len(ds)


def test_the_same_epoch_and_seed_give_the_same_clips(tmp_path: Path) -> None:
    ds = open_dataset(dataset(tmp_path / "d"), split="val", clip=(8, 24, 24), sampling="random", progress=False)
    ds.set_epoch(1, seed=5)
    a = [ds[i] for i in range(len(ds))]
    b = [ds[i] for i in range(len(ds))]
    assert all(torch.equal(x[0], y[0]) for x, y in zip(a, b, strict=True))  # type: ignore[index]
