"""The loader benchmark on a folder of real (tiny) videos, end to end, and its verdict arithmetic."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import loader_throughput as lt
from profiler.precision import candidates
from tests.search.video_fixtures import level_frames, write_video


def _folder(root: Path) -> Path:
    for c in ("left", "right"):
        for i in range(2):
            write_video(root / c / f"{c}{i}.mp4", level_frames(20))
    return root


def test_a_row_keeps_up_at_twice_the_fastest_step() -> None:
    row = lt.Row("motion", (16, 48, 48), 100.0, 150.0, "m 1x", "fp32 eager", 40.0, 50.0, 30.0)
    assert row.ratio == 2.0 and row.keeps_up
    slow = lt.Row("motion", (16, 48, 48), 99.0, 150.0, "m 1x", "fp32 eager", 40.0, 50.0, 30.0)
    assert not slow.keeps_up
    assert "| 99.0 | 150.0 | m 1x | fp32 eager | 40.0 | 50.0 | 30.0 | 1.98x (below 2x) |" in lt.table([slow])
    assert "| 2.00x (keeps up) | - | - |" in lt.table([row])
    video = lt.Row("folder v", (16, 112, 112), 99.0, 150.0, "m 1x", "fp32 eager", 40.0, 50.0, 30.0, first_pass=12.25, direct=6.0)
    assert lt.table([video]).endswith("| 1.98x (below 2x) | 12.2 | 6.0 |")


@pytest.mark.slow
def test_a_folder_of_videos_is_measured_at_the_paper_clip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _folder(tmp_path / "videos")
    lt.main(["--sources", str(folder), "--models", "shufflenet:0.25", "--batches", "1", "--cache-dir", str(tmp_path / "cache")])
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| folder videos |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "16x112x112" and cells[4] == "shufflenet 0.25x"
    assert cells[5] in {c.label for c in candidates(training=True)}  # what auto chose for training
    loader, fastest = float(cells[2]), float(cells[7])
    assert loader > 0 and fastest > 0
    assert abs(float(cells[9].split("x")[0]) - loader / fastest) < 0.05 * loader / fastest + 0.01  # printed values are rounded
    assert float(cells[10]) > 0 and float(cells[11]) > 0  # first pass and no frame cache, side by side
    assert len(list((tmp_path / "cache" / "frames").glob("*.frames"))) == 4  # read through the cache: one entry per video
    assert "the loader keeps up (2x the fastest step) in" in out and "of 1 rows" in out
