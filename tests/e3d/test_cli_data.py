"""``e3d data check``: a summary of classes, splits, frames and unreadable files."""

from __future__ import annotations

from pathlib import Path

import pytest

from e3d.cli import build_parser
from e3d.commands.data import FORMATS
from search.data import ALL_FORMATS
from tests.e3d.fixtures import run
from tests.search.test_data_layouts import ucf101
from tests.search.video_fixtures import level_frames, write_frames, write_video


def test_the_cli_offers_every_format() -> None:
    assert set(FORMATS) == set(ALL_FORMATS)


def test_summarises_a_folder_dataset_and_lists_unreadable_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = tmp_path / "d"
    for split in ("train", "val"):
        write_video(root / split / "jump" / "a.mp4", level_frames(30))
        write_frames(root / split / "run" / "b", level_frames(12))
    whole = write_video(tmp_path / "whole.mkv", level_frames(40), codec="ffv1")
    (root / "train" / "run" / "cut.mkv").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    (root / "train" / "jump" / "empty.mp4").write_bytes(b"")
    code, out, err = run(capsys, "data", "check", str(root), "--workers", "0")
    assert code == 1, err
    assert "\r" not in err, "no progress bar where stderr is no terminal (was drawn into logs)"
    assert "(folder layout)" in out and "classes  2: jump, run" in out
    lines = {ln.split()[0]: ln.split()[1:] for ln in out.splitlines() if ln.split() and ln.split()[0] in ("train", "val", "test")}
    assert lines["train"][0] == "4" and lines["val"][0] == "2" and lines["test"][0] == "2"
    assert "frames   min 12  median" in out and "max 30" in out
    assert "header   1 video(s)" in out and "cut.mkv: header 40, decoded" in out
    assert "unreadable 1 video(s)" in out and "empty.mp4: empty file" in out

    (root / "train" / "jump" / "empty.mp4").unlink()
    code, out, _ = run(capsys, "data", "check", str(root), "--quick")
    assert code == 0 and "unreadable 0" in out and "from headers" in out


def test_a_proxy_task(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "data", "check", str(tmp_path), "--format", "motion", "--num-samples", "6")
    assert code == 0, err
    assert "classes  10: move_left, move_right" in out and "6 videos of 32x56x56, 6 clips" in out


def test_bad_paths_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "data", "check", str(tmp_path / "nowhere"))
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "data", "check", str(tmp_path), "--format", "ucf101")
    assert code == 2 and "no classInd.txt under" in err


def test_a_dataset_training_refuses_for_an_empty_split_is_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = tmp_path / "d"
    write_video(root / "train" / "jump" / "a.mp4", level_frames(8))
    (root / "val" / "jump").mkdir(parents=True)
    code, out, err = run(capsys, "data", "check", str(root), "--workers", "0")  # was 0, though training refuses it
    assert code == 2 and "no videos in the 'val' split" in err and len(err.strip().splitlines()) == 1
    assert "unreadable 0" in out  # the report comes first
    ucf = ucf101(tmp_path / "ucf")
    (ucf / "ucfTrainTestlist" / "trainlist01.txt").write_text("")
    code, _, err = run(capsys, "data", "check", str(ucf), "--workers", "0")
    assert code == 2 and "no videos in the 'train' split" in err and len(err.strip().splitlines()) == 1


def test_a_binary_csv_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_bytes(bytes(range(128, 256)))
    for extra in ((), ("--format", "kinetics")):
        code, _, err = run(capsys, "data", "check", str(tmp_path), *extra)
        assert code == 2 and len(err.strip().splitlines()) == 1, err


def test_a_proxy_task_too_large_for_memory_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "data", "check", str(tmp_path), "--format", "digits", "--num-samples", "1000000000")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "needs about 91.3 TiB of memory" in err, err


def test_check_help_names_its_own_argument(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "data", "check", "--help")
    assert code == 0 and "layout of PATH" in " ".join(out.split()) and "--data" not in out  # said "layout of --data"


@pytest.mark.parametrize("command", ["check", "resize"])
def test_the_memory_limit_is_an_option_of_each_data_command(command: str) -> None:
    args = build_parser().parse_args(["data", command, "motion", *(["out"] if command == "resize" else []), "--max-memory", "1G"])
    assert args.max_memory == 2**30  # was refused: the option sat on `e3d data` only


def test_checking_a_proxy_task_keeps_to_the_memory_limit(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("E3D_CACHE", str(tmp_path))
    monkeypatch.setattr("profiler.footprint._limit", None)  # restored after the test: the option sets it for the process
    code, _, err = run(capsys, "data", "check", "motion", "--num-samples", "4", "--max-memory", "1K")
    assert code == 2 and err.startswith("e3d data check: error: generating motion/") and "above the limit of 1.0 KiB" in err
    assert len(err.strip().splitlines()) == 1
