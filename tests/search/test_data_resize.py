"""``e3d data resize``: a copy of a dataset tree with smaller videos and frames, the same names and frame counts."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from search.data import open_dataset
from search.data.resize import MARKER, resize_tree, scaled_size
from search.data.video import count_frames, read_clip
from tests.e3d.fixtures import run
from tests.search.video_fixtures import CODECS, decoded_levels, level_frames, write_frames, write_video


def test_the_short_side_is_scaled_with_the_aspect_kept_even_and_never_enlarged() -> None:
    assert scaled_size(1280, 720, 128) == (228, 128)
    assert scaled_size(720, 1280, 128) == (128, 228)
    assert scaled_size(176, 144, 128) == (156, 128)
    assert scaled_size(100, 90, 128) == (100, 90)  # smaller already: kept


def _tree(root: Path) -> Path:
    for suffix, codec in CODECS:
        write_video(root / "jump" / f"a.{suffix}", level_frames(20, h=64, w=96), codec=codec)
    write_frames(root / "run" / "b", level_frames(12, h=96, w=64))
    write_video(root / "run" / "small.mp4", level_frames(8, h=24, w=32))  # no larger than the short side: copied
    (root / "splits.txt").write_text("jump/a.mp4\nrun/b\n")
    return root


def _size(path: Path) -> tuple[int, int]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return s.codec_context.width, s.codec_context.height


@pytest.mark.slow
def test_every_video_and_frame_shrinks_with_names_frames_and_levels_kept(tmp_path: Path) -> None:
    src, dst = _tree(tmp_path / "src"), tmp_path / "dst"
    report = resize_tree(src, dst, 32, progress=False)
    assert (report.videos, report.images, report.copied, report.skipped) == (len(CODECS), 12, 2, 0)
    assert (dst / "run" / "small.mp4").read_bytes() == (src / "run" / "small.mp4").read_bytes()
    for suffix, _ in CODECS:
        out = dst / "jump" / f"a.{suffix}"
        assert _size(out) == (48, 32) and count_frames(out) == count_frames(src / "jump" / f"a.{suffix}"), suffix  # header and decoded
        clip, _ = read_clip(out, lambda n: range(0, n, 4))
        before, _ = read_clip(src / "jump" / f"a.{suffix}", lambda n: range(0, n, 4))  # lossy codecs shift levels a little
        assert np.allclose(decoded_levels(clip), decoded_levels(before), atol=3), suffix
    assert (dst / "splits.txt").read_text() == (src / "splits.txt").read_text()
    clip, n = read_clip(dst / "run" / "b", lambda n: range(n))
    assert n == 12 and clip.shape[1:3] == (48, 32)
    assert [p.name for p in dst.rglob(".*")] == [MARKER], "no temporary file is left"
    data = open_dataset(dst, split="train", clip=(8, 32, 32), progress=False)  # the folder layout reads the copy
    assert tuple(data.class_names) == ("jump", "run")


def test_an_interrupted_run_leaves_no_partial_file_and_the_next_one_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    write_frames(src / "run" / "b", level_frames(6, h=96, w=64))
    import search.data.resize as rs

    real, calls = rs.Image.Image.save, []

    def save(self: object, fp: object, *args: object, **kwargs: object) -> None:
        calls.append(fp)
        if len(calls) == 3:
            real(self, fp, *args, **kwargs)  # type: ignore[arg-type]
            raise KeyboardInterrupt  # Ctrl-C while the third frame is being written
        real(self, fp, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(rs.Image.Image, "save", save)
    with pytest.raises(KeyboardInterrupt):
        resize_tree(src, tmp_path / "dst", 32, progress=False)
    assert sorted(p.name for p in (tmp_path / "dst" / "run" / "b").iterdir()) == ["image_00001.jpg", "image_00002.jpg"]
    monkeypatch.undo()
    report = resize_tree(src, tmp_path / "dst", 32, progress=False)
    assert (report.images, report.skipped) == (4, 2)


def test_an_unreadable_video_is_listed_and_copied_as_it_is(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    write_video(src / "jump" / "good.mp4", level_frames(8, h=64, w=96))
    (src / "jump" / "empty.mp4").write_bytes(b"")
    code, out, _ = run(capsys, "data", "resize", str(src), str(tmp_path / "dst"), "--short-side", "32")
    assert code == 1 and "1 videos re-encoded" in out and "unreadable 1" not in out
    assert "unreadable: " in out and "empty.mp4: empty file" in out
    assert sorted(p.name for p in (tmp_path / "dst" / "jump").iterdir()) == ["empty.mp4", "good.mp4"]  # a split list still finds it


@pytest.mark.parametrize(
    ("where", "words"),
    [("inside", "must lie outside"), ("missing", "is not a folder"), ("file", "is a file, not a folder"), ("below-file", "is a file")],
)
def test_bad_folders_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str, words: str) -> None:
    src = tmp_path / "src"
    write_frames(src / "run" / "b", level_frames(1, h=96, w=64))
    (tmp_path / "file").write_text("")
    dst = {"inside": src / "copy", "file": tmp_path / "file", "below-file": tmp_path / "file" / "copy"}.get(where, tmp_path / "dst")
    args = (str(tmp_path / "nowhere") if where == "missing" else str(src), str(dst))
    code, _, err = run(capsys, "data", "resize", *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and words in err


def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "lists").mkdir(parents=True)
    (src / "lists" / "train.txt").write_text("a\n" * 1000)

    def full(a: object, b: Path) -> None:  # shutil copies through file descriptors, past builtins.open
        Path(b).write_text("a\n" * 10)  # a part written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device", str(b))

    monkeypatch.setattr(shutil, "copyfile", full)
    code, _, err = run(capsys, "data", "resize", str(src), str(dst), "--short-side", "32")
    last = err.strip().splitlines()[-1]  # after the progress bar
    assert code == 2 and err.count("error") == 1 and last.startswith("e3d data resize: error: cannot write") and "no space left" in last
    assert not [p for p in dst.rglob("*") if p.is_file() and p.name != MARKER], "neither the file nor its temporary part is left"


def test_an_unreadable_frame_image_is_listed_and_copied_as_it_is(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    write_frames(src / "run" / "b", level_frames(3, h=96, w=64))
    frame = src / "run" / "b" / "image_00002.jpg"
    frame.write_bytes(frame.read_bytes()[: frame.stat().st_size // 3])  # truncated
    (src / "run" / "b" / "image_00003.jpg").write_text("not an image")
    code, out, err = run(capsys, "data", "resize", str(src), str(tmp_path / "dst"), "--short-side", "32")
    assert code == 1 and "1 frame images rescaled" in out and "2 unreadable files copied as they are" in out, err
    assert "image_00002.jpg: Truncated File Read" in out and "image_00003.jpg: cannot identify image file" in out
    copy = tmp_path / "dst" / "run" / "b"  # was image_00001.jpg alone: a readable video one frame long
    assert sorted(p.name for p in copy.iterdir()) == ["image_00001.jpg", "image_00002.jpg", "image_00003.jpg"]
    assert (copy / "image_00002.jpg").read_bytes() == frame.read_bytes()


def test_ctrl_c_says_that_the_same_command_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_frames(src / "run" / "b", level_frames(3, h=96, w=64))
    import search.data.resize as rs

    real, calls = rs.Image.Image.save, []

    def save(self: object, fp: object, *args: object, **kwargs: object) -> None:
        calls.append(fp)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C at the second frame
        real(self, fp, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(rs.Image.Image, "save", save)
    code, _, err = run(capsys, "data", "resize", str(src), str(dst), "--short-side", "32")
    hint = f"interrupted; the files done so far are in {dst}: the same command goes on from there"
    assert code == 130 and err.strip().splitlines()[-1] == hint
    monkeypatch.undo()
    code, out, _ = run(capsys, "data", "resize", str(src), str(dst), "--short-side", "32")
    assert code == 0 and "2 frame images rescaled, 0 files copied as they are, 1 already there" in out


def test_another_short_side_is_refused_where_a_copy_was_made(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_frames(src / "run" / "b", level_frames(2, h=96, w=64))
    assert run(capsys, "data", "resize", str(src), str(dst), "--short-side", "48")[0] == 0
    code, _, err = run(capsys, "data", "resize", str(src), str(dst), "--short-side", "32")  # was "2 already there": 48 kept
    assert code == 2 and "holds a copy at --short-side 48" in err and len(err.strip().splitlines()) == 1
    code, out, _ = run(capsys, "data", "resize", str(src), str(dst), "--short-side", "48")
    assert code == 0 and "2 already there" in out


def test_a_non_empty_destination_without_the_marker_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_frames(src / "run" / "b", level_frames(2, h=96, w=64))
    write_frames(dst / "run" / "b", level_frames(1, h=96, w=64))  # someone else's file, at full size
    code, _, err = run(capsys, "data", "resize", str(src), str(dst), "--short-side", "32")  # was "1 already there"
    assert code == 2 and f"is not empty and has no {MARKER}" in err and len(err.strip().splitlines()) == 1
    assert not (dst / MARKER).exists()
    (dst / ".DS_Store").write_text("")
    shutil.rmtree(dst / "run")
    assert run(capsys, "data", "resize", str(src), str(dst), "--short-side", "32")[0] == 0  # hidden files are never copied over


def test_linked_folders_are_followed_but_not_round_a_loop(tmp_path: Path) -> None:
    real, src = tmp_path / "real", tmp_path / "src"
    write_frames(real / "cat" / "b", level_frames(2, h=96, w=64))
    src.mkdir()
    (src / "cat").symlink_to(real / "cat")  # was left out of the copy
    (src / "dog").symlink_to(real / "cat")  # the same folder under another name: a class of its own
    (real / "cat" / "up").symlink_to(src)  # a link back to an ancestor: not followed
    resize_tree(src, tmp_path / "dst", 32, progress=False)
    found = sorted(str(p.relative_to(tmp_path / "dst")) for p in (tmp_path / "dst").rglob("*.jpg"))
    assert found == [f"{c}/b/image_0000{i}.jpg" for c in ("cat", "dog") for i in (1, 2)]
