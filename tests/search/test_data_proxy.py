"""The built-in proxy tasks: determinism, disjoint splits, the cache, sizes, labels and loader behaviour."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from profiler import footprint
from search.data import DataError, ProxyOptions, collate, open_dataset, proxy_dataset
from search.data import proxy as proxy_module
from search.data.proxy import MOTION_CLASSES, digit_pool, generate

SMALL = (16, 48, 48)


@pytest.mark.parametrize("task", ["motion", "digits"])
def test_generation_is_deterministic_by_seed(task: str) -> None:
    kw = {"num_samples": 6, "video": (8, 24, 24), "options": ProxyOptions()}
    a, la = generate(task, "train", seed=3, **kw)
    b, lb = generate(task, "train", seed=3, **kw)
    c, _ = generate(task, "train", seed=4, **kw)
    assert a.dtype == np.uint8 and a.shape == (6, 8, 24, 24)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert not np.array_equal(a, c)
    assert a.std() > 10  # not blank


def test_splits_are_disjoint() -> None:
    pools = [set(digit_pool(s).tolist()) for s in ("train", "val", "test")]
    assert [len(p) for p in pools] == [3500, 750, 750]
    assert not (pools[0] & pools[1]) and not (pools[0] & pools[2]) and not (pools[1] & pools[2])
    kw = {"num_samples": 8, "video": (8, 24, 24), "seed": 0, "options": ProxyOptions()}
    train, _ = generate("motion", "train", **kw)
    val, _ = generate("motion", "val", **kw)
    assert not any(np.array_equal(t, v) for t in train for v in val)


def test_cached_on_first_use_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = proxy_dataset("motion", split="val", num_samples=10, cache_dir=tmp_path, progress=False)
    files = sorted(p.name for p in (tmp_path / "proxy").iterdir())
    assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".npy")

    def refuse(*a: object, **k: object) -> None:
        raise AssertionError("generated again")

    monkeypatch.setattr(proxy_module, "generate", refuse)
    again = proxy_dataset("motion", split="val", num_samples=10, cache_dir=tmp_path, progress=False)
    assert np.array_equal(np.asarray(again.videos), np.asarray(first.videos))
    monkeypatch.setenv("E3D_CACHE", str(tmp_path))
    assert proxy_dataset("motion", split="val", num_samples=10, progress=False).path == first.path


def _truncate(npy: Path, meta: Path) -> None:
    npy.write_bytes(npy.read_bytes()[:1000])


def _float32(npy: Path, meta: Path) -> None:
    np.save(npy, np.load(npy).astype(np.float32))


def _set_label(value: object) -> Any:
    """A damage that sets the second cached label to ``value``."""

    def damage(npy: Path, meta: Path) -> None:
        info = json.loads(meta.read_text())
        info["labels"][1] = value
        meta.write_text(json.dumps(info))

    return damage


@pytest.mark.parametrize(
    "damage",
    [
        _truncate,
        _float32,
        lambda npy, meta: npy.write_bytes(b""),
        lambda npy, meta: meta.write_text("{"),
        lambda npy, meta: meta.write_text("[" * 100_000),
        lambda npy, meta: meta.write_text('{"labels": [1]}'),
        lambda npy, meta: meta.unlink(),
        _set_label(-1),
        _set_label(10),
        _set_label(2**70),
        _set_label(1.5),
        _set_label("3"),
        _set_label(None),
    ],
    ids=[
        "truncated",
        "float32",
        "empty",
        "bad-json",
        "deep-json",
        "few-labels",
        "no-json",
        "label-negative",
        "label-too-big",
        "label-huge",
        "label-float",
        "label-str",
        "label-null",
    ],
)
def test_a_damaged_cache_entry_is_generated_again(tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: Any) -> None:
    first = proxy_dataset("digits", split="val", clip=(4, 12, 12), num_samples=3, cache_dir=tmp_path, progress=False)
    expected = np.array(first.videos)
    damage(first.path, first.path.with_suffix(".json"))
    capsys.readouterr()
    again = proxy_dataset("digits", split="val", clip=(4, 12, 12), num_samples=3, cache_dir=tmp_path, progress=False)
    err = capsys.readouterr().err
    assert f"proxy cache {first.path} is damaged" in err and len(err.strip().splitlines()) == 1
    assert np.array_equal(np.asarray(again.videos), expected) and again.video_labels == first.video_labels
    assert sorted(p.suffix for p in (tmp_path / "proxy").iterdir()) == [".json", ".npy"]  # no temporary file left


def test_clip_length_size_and_sample_count_are_configurable(tmp_path: Path) -> None:
    ds = proxy_dataset("digits", split="train", clip=(8, 32, 32), num_samples=12, cache_dir=tmp_path, progress=False)
    assert ds.videos.shape == (12, 16, 38, 38)  # twice the frames, 7/6 of the side
    clip, label = ds[0]
    assert clip.shape == (3, 8, 32, 32) and clip.dtype == torch.float32 and 0 <= label < 10
    assert ds.num_classes == 10 and ds.class_names == [str(d) for d in range(10)]
    test = proxy_dataset("digits", split="test", clip=(8, 32, 32), num_samples=5, cache_dir=tmp_path, progress=False)
    assert len(test) == 10 and test.clip_videos == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]  # every non-overlapping window


def test_digit_direction_labels_and_motion_classes(tmp_path: Path) -> None:
    ds = proxy_dataset(
        "digits", split="val", num_samples=40, cache_dir=tmp_path, options=ProxyOptions(digit_direction=True), progress=False
    )
    assert ds.num_classes == 40 and ds.class_names[:5] == ["0_right", "0_left", "0_up", "0_down", "1_right"]
    assert max(ds.video_labels) < 40
    motion = proxy_dataset("motion", split="val", num_samples=40, cache_dir=tmp_path, progress=False)
    assert motion.class_names == list(MOTION_CLASSES) and len(set(motion.video_labels)) >= 8


def test_motion_classes_differ_only_in_time(tmp_path: Path) -> None:
    """A single frame cannot tell 'move left' from 'move right': the class needs the order of frames."""
    videos, labels = generate("motion", "train", num_samples=64, video=(16, 32, 32), seed=0, options=ProxyOptions(noise=0, distractors=0))
    left, right = videos[labels == 0].astype(float), videos[labels == 1].astype(float)
    # the mean image of each class is the same up to noise, while the motion differs
    assert abs(left.mean() - right.mean()) < 8

    def drift(v: np.ndarray) -> float:
        cols = np.arange(v.shape[-1])
        mass = np.abs(v - np.median(v, axis=1, keepdims=True)).sum(2)  # (n, T, W): what moved, per column
        centre = (mass * cols).sum(-1) / mass.sum(-1)
        return float((centre[:, -1] - centre[:, 0]).mean())

    assert drift(left) < -0.5 and drift(right) > 0.5


def test_workers_map_the_cache_file_instead_of_receiving_a_copy(tmp_path: Path) -> None:
    ds = proxy_dataset("motion", split="train", clip=SMALL, num_samples=32, cache_dir=tmp_path, progress=False)
    _ = ds.videos  # mapped here
    assert len(pickle.dumps(ds)) < 20_000  # the 32 x 32 x 56 x 56 videos are not in the pickle
    loader = DataLoader(ds, batch_size=8, num_workers=2, collate_fn=collate)
    batches = list(loader)
    assert sum(len(b[1]) for b in batches) == 32 and batches[0][0].shape == (8, 3, 16, 48, 48)


def test_same_seed_and_epoch_give_the_same_clips_whatever_the_workers(tmp_path: Path) -> None:
    ds = proxy_dataset("digits", split="train", clip=SMALL, num_samples=8, cache_dir=tmp_path, progress=False)
    ds.set_epoch(3, seed=7)
    in_process = torch.stack([ds[i][0] for i in range(8)])
    two_workers = torch.cat([b[0] for b in DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate)])
    assert torch.equal(in_process, two_workers)
    ds.set_epoch(4)
    assert not torch.equal(in_process, torch.stack([ds[i][0] for i in range(8)]))


def test_open_dataset_reads_a_task_by_name_and_rejects_bad_requests(tmp_path: Path) -> None:
    ds = open_dataset("motion", split="val", num_samples=4, cache_dir=tmp_path, progress=False)
    assert ds.format == "motion" and ds.sampling.mode == "center" and not ds.transform.train
    corner = open_dataset("motion", split="train", num_samples=4, cache_dir=tmp_path, crop_position="corner", progress=False)
    assert corner.transform.train and corner.transform.position == "corner"  # was dropped: every proxy crop was random
    with pytest.raises(DataError, match="unknown proxy task"):
        proxy_dataset("faces", split="train")
    with pytest.raises(DataError, match="unknown split"):
        proxy_dataset("motion", split="dev")
    with pytest.raises(DataError, match="cannot be flipped"):
        open_dataset("motion", split="train", flip=True, cache_dir=tmp_path)
    with pytest.raises(DataError, match="noise"):
        ProxyOptions(noise=2)


def test_what_cannot_fit_in_memory_is_refused_before_generating(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match=r"1000000000 videos of 32x56x56, 3 distractors\) needs about 91.3 TiB of memory"):
        proxy_dataset("digits", split="train", num_samples=10**9, cache_dir=tmp_path, progress=False)
    with pytest.raises(DataError, match="100000000 distractors"):
        proxy_dataset("motion", split="train", num_samples=2, options=ProxyOptions(distractors=10**8), cache_dir=tmp_path, progress=False)
    assert not (tmp_path / "proxy").exists() or not list((tmp_path / "proxy").iterdir())
    cached = proxy_dataset("motion", split="val", clip=(4, 12, 12), num_samples=3, cache_dir=tmp_path, progress=False)
    monkeypatch.setattr(footprint, "_limit", 1000)  # --max-memory 1000: a cached task still opens, a new one is refused
    assert proxy_dataset("motion", split="val", clip=(4, 12, 12), num_samples=3, cache_dir=tmp_path, progress=False).path == cached.path
    with pytest.raises(DataError, match=r"above the limit of 1000 B; ask for fewer videos or distractors, or raise --max-memory$"):
        proxy_dataset("motion", split="test", clip=(4, 12, 12), num_samples=3, cache_dir=tmp_path, progress=False)
    # was "lower --num-samples or --proxy-distractors": options of e3d data, not of e3d search (--train-samples, ...)
