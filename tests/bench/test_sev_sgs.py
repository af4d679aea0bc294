"""bench/sev_sgs.py: the published SEVNet and SGS tables (and each SGS arm's verdict against no SGS) come from its
rows, a tiny run trains every variant once and a rerun trains nothing again, bad input is one line."""

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


def test_each_sgs_arm_gets_a_verdict_against_the_same_network_without_sgs() -> None:
    outcomes = []
    for task in ("motion", "digits"):
        df, extra = pd.read_csv(RESULTS / task / "trials.csv"), sev_sgs.read_extra(RESULTS / task / "sgs.csv")
        table = sev_sgs.sgs_verdicts(df, extra)
        assert table.startswith("| with SGS vs without | bin width | verdict |") and table in sev_sgs.report(df, extra)
        outcomes += [row.split("| ")[3].split(":")[0] for row in table.splitlines()[2:]]
    assert len(outcomes) == 24 and outcomes.count("loss") == 3 and outcomes.count("tie") == 21  # 6 families x 2 bin widths x 2 tasks
    sevnet = sev_sgs.sgs_verdicts(df[df["family"] == "sevnet"], extra).splitlines()
    assert sevnet[2].startswith("| sevnet | 0.1 | tie: -0.8 pp, p=0.687 (Welch's t-test")
    no_plain = df[df["number"].map(lambda n: extra[n]["sgs"])]
    assert sev_sgs.sgs_verdicts(no_plain, extra) == "(no SGS verdicts: no family trained both with and without SGS)"


@pytest.mark.parametrize("bad", [["--seeds", "0"], ["--bin-widths", "0.5,x"], ["--bin-widths", "1.5"], ["--families", "resnet18"]])
def test_bad_input_is_one_line_and_exit_2(bad: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        sev_sgs.main(bad)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "error: argument" in err[0]
