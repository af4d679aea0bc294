"""``e3d paper``: the findings printed from Table 8 equal the table's own arithmetic."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from scipy.stats import spearmanr

import space
from e3d.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["paper", *argv])
    return code, capsys.readouterr().out


def test_prints_the_three_findings_from_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys)
    assert code == 0
    by = {(r.model, r.width_mult): r for r in space.table8()}
    # (iv) the drop from mobilenetv2 0.45x to 0.2x on each dataset, as printed in its row
    row = next(line for line in out.splitlines() if re.match(r"\| mobilenetv2 +\| 0\.45x -> 0\.2x", line))
    cells = [c.strip() for c in row.split("|")[3:6]]
    wide, narrow = by["mobilenetv2", 0.45], by["mobilenetv2", 0.2]
    expected = [
        wide.kinetics600_top1 - narrow.kinetics600_top1,
        wide.jester_top1 - narrow.jester_top1,
        wide.ucf101_top1 - narrow.ucf101_top1,
    ]
    assert cells == [f"{v:+.2f}" for v in expected]
    assert row.rstrip("| ").endswith("yes")
    assert out.count("steeper below 0.5x") == 3
    # (i) the best deeper model at mobilenet 1.0x's 241 MFLOPs on Kinetics-600: shufflenetv2 1.0x
    gain = by["shufflenetv2", 1.0].kinetics600_top1 - by["mobilenet", 1.0].kinetics600_top1
    assert f"shufflenetv2 1x (195): {gain:+.2f}" in out
    assert out.count("more accurate in 5 of 5 comparisons") == 3
    # (vi) Spearman of MFLOPs with time per clip on each platform
    eff = [r for r in space.table8() if not r.model.startswith("res")]
    for name, key in (("Titan Xp", "titanxp_clips_s"), ("Jetson TX2", "tx2_clips_s")):
        rho = spearmanr([r.mflops for r in eff], [1 / getattr(r, key) for r in eff]).statistic
        assert re.search(rf"\| {name} +\| 17 efficient +\| {rho:.2f} \|", out), name


def test_out_writes_the_findings_and_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "--out", str(tmp_path))
    assert code == 0
    text = (tmp_path / "paper_findings.md").read_text()
    assert text.startswith("# The paper's findings") and "(vi) Do FLOPs predict speed?" in text
    for stem in ("paper_accuracy", "paper_width", "paper_speed"):
        assert (tmp_path / f"{stem}.png").stat().st_size > 0 and (tmp_path / f"{stem}.svg").stat().st_size > 0
    assert "wrote" in out


@pytest.mark.parametrize(
    ("out", "words"),
    [("afile", "afile is a file, not a folder"), ("afile/sub", "afile is a file, not a folder"), ("dir", "it is a folder")],
)
def test_an_out_that_cannot_be_written_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], out: str, words: str) -> None:
    from tests.e3d.fixtures import run as run_cli

    (tmp_path / "afile").write_text("keep")
    (tmp_path / "dir" / "paper_findings.md").mkdir(parents=True)  # in the way of the findings file
    code, _, err = run_cli(capsys, "paper", "--out", str(tmp_path / out))
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
    assert (tmp_path / "afile").read_text() == "keep"
