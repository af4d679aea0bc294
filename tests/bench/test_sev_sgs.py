"""bench/sev_sgs.py: the published SEVNet and SGS tables come from its rows, a tiny run trains every variant once
and a rerun trains nothing again, bad input is one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench import sev_sgs

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results" / "sev-sgs"


@pytest.mark.parametrize("task", ["motion", "digits"])
def test_the_published_tables_are_what_the_bench_writes_from_its_rows(tmp_path: Path, task: str) -> None:
    folder = shutil.copytree(RESULTS / task, tmp_path / task)
    (folder / "summary.md").unlink()
    text = sev_sgs.from_results(folder)
    assert (folder / "summary.md").read_text() == (RESULTS / task / "summary.md").read_text() == text + "\n"
    assert "sample sd" in text and "Welch" in text


def test_a_tiny_run_trains_each_variant_once_and_a_rerun_trains_none_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--tiny", "--families", "mobilenet", "sevnet", "--seeds", "1", "--bin-widths", "0.5", "--out", str(tmp_path)]
    assert sev_sgs.main(argv) == 0
    out = capsys.readouterr().out
    rows = pd.read_csv(tmp_path / "motion" / "trials_full.csv")
    assert len(rows) == 4 and rows["accuracy"].notna().all()  # two families, each without and with SGS, all trained
    assert pd.read_csv(tmp_path / "motion" / "sgs.csv")["sgs"].tolist().count(True) == 2
    for family in ("mobilenet", "sevnet"):
        assert f"| {family} |" in out and "after stage 0, bin width 0.5" in out
    assert (tmp_path / "motion" / "summary.md").read_text() == out
    assert sev_sgs.main(argv) == 0
    assert len(pd.read_csv(tmp_path / "motion" / "trials_full.csv")) == 4
    capsys.readouterr()
    assert sev_sgs.main(argv[1:]) == 2  # the default protocol into the tiny run's study: refused in one line
    assert "exists with other settings" in capsys.readouterr().err


def test_without_sevnet_the_summary_says_there_are_no_verdicts() -> None:
    folder = RESULTS / "motion"
    df, extra = pd.read_csv(folder / "trials.csv"), sev_sgs.read_extra(folder / "sgs.csv")
    assert sev_sgs.verdicts(df[df["family"] != "sevnet"], extra) == "(no verdicts: SEVNet without SGS has not trained)"
    assert sev_sgs.verdicts(df, extra).startswith("| SEVNet vs | verdict |")


@pytest.mark.parametrize("bad", [["--seeds", "0"], ["--bin-widths", "0.5,x"], ["--bin-widths", "1.5"], ["--families", "resnet18"]])
def test_bad_input_is_one_line_and_exit_2(bad: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        sev_sgs.main(bad)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "error: argument" in err[0]
