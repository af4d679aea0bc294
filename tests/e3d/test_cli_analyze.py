"""``e3d analyze``: figures, summary.md and the printed Pareto table; one-line errors with exit code 2."""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from search.results import study_frame, write_outputs
from tests.analysis.helpers import MIXED, T, make_study
from tests.analysis.scale_runs import save_run, versus_run
from tests.e3d.fixtures import run as run_cli

FIGURES = ["accuracy_vs_macs", "width_curves", "paper_accuracy", "paper_width", "paper_speed"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    return run_cli(capsys, "analyze", *argv)


def test_csv_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = make_study(MIXED, storage=f"sqlite:///{tmp_path / 'study.db'}", budget_mflops=60.0)
    write_outputs(study_frame(study), tmp_path)
    code, out, _ = run(capsys, "--csv", str(tmp_path), "--out", str(tmp_path / "a"))
    assert code == 0
    for stem in FIGURES:
        assert (tmp_path / "a" / f"{stem}.png").stat().st_size > 0 and (tmp_path / "a" / f"{stem}.svg").stat().st_size > 0
    assert not (tmp_path / "a" / "latency_vs_macs.png").exists()  # nothing was timed
    # the printed table is the front: mobilenetv2 0.2x, shufflenet 0.5x, mobilenet 1.0x (trials 0, 4, 3)
    table = [line for line in out.splitlines() if line.startswith("|")][2:]
    assert [line.split("|")[1].strip() for line in table] == ["0", "4", "3"]
    assert "42.00 ± 2.83 (2)" not in out  # dominated, so not printed
    summary = (tmp_path / "a" / "summary.md").read_text()
    assert "8 trials: 5 trained, 1 pruned, 1 failed, 1 rejected by the budget" in summary
    assert "Budget: multiply-adds <= 60 M per 16x112x112 clip." in summary
    assert re.search(r"\| mobilenet +\| +0\.5x \| +2 \| +42\.00 \| +2\.83 \| +40\.00 \| +44\.00 \|", summary)  # seeds: mean, sd
    assert "## The paper's Table 8, for comparison" in summary and "paper_accuracy.svg" in summary


def test_sqlite_study_with_latency(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    make_study(
        [
            T("mobilenet", 0.5, 40.0, latency_ms=30.0),
            T("mobilenet", 1.0, 50.0, latency_ms=60.0),
            T("shufflenet", 0.5, 45.0, latency_ms=50.0),
        ],
        storage=url,
        name="timed",
    )
    code, out, _ = run(capsys, "--study", "timed", "--storage", url, "--out", str(tmp_path / "a"), "--no-paper", "--budget-mflops", "250")
    assert code == 0 and "Pareto front of timed" in out
    assert (tmp_path / "a" / "latency_vs_macs.svg").exists() and not (tmp_path / "a" / "paper_accuracy.png").exists()
    summary = (tmp_path / "a" / "summary.md").read_text()
    assert "Budget: multiply-adds <= 250 M" in summary and "Spearman rho 0.50 (p 0.67, n 3)" in summary
    assert "## Pareto front: accuracy vs latency per batch of 8 (ms)" in summary
    assert f"e3d analyze --study timed --storage {url}" in summary


def test_each_figure_names_the_cpus_and_the_day(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import analysis.plots

    titles: dict[str, str] = {}
    real = analysis.plots.save_figure

    def save(fig: Any, out: Path, stem: str, **kw: Any) -> list[Path]:
        titles[stem] = " ".join(ax.get_title() for ax in fig.axes)
        return real(fig, out, stem, **kw)

    monkeypatch.setattr(analysis.plots, "save_figure", save)
    study = make_study([T("mobilenet", 0.5, 40.0, latency_ms=30.0), T("shufflenet", 0.5, 45.0, latency_ms=50.0)])
    write_outputs(study_frame(study).assign(cpu="Some CPU"), tmp_path)
    assert run(capsys, "--csv", str(tmp_path), "--out", str(tmp_path / "a"), "--no-paper")[0] == 0
    where = f"trained on Some CPU; drawn {datetime.date.today():%Y-%m-%d}"
    assert sorted(titles) == ["accuracy_vs_macs", "latency_vs_macs", "width_curves"]
    assert all(where in t for t in titles.values()), titles  # were without CPU and date


@pytest.mark.slow
def test_measure_latency_fills_the_missing_latencies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # tiny specs on a small clip so that timing takes a second
    study = make_study([T("mobilenetv2", 0.2, 30.0), T("shufflenetv2", 0.25, 35.0)])
    df = study_frame(study)
    df["spec_json"] = [s.replace('"clip": [16, 112, 112]', '"clip": [4, 32, 32]') for s in df["spec_json"]]
    df.to_csv(tmp_path / "trials.csv", index=False)
    code, _, err = run(
        capsys, "--csv", str(tmp_path / "trials.csv"), "--out", str(tmp_path / "a"), "--measure-latency", "--quiet", "--no-paper"
    )
    assert code == 0 and "Latency of 2 architecture(s) measured by e3d analyze on" in err
    assert (tmp_path / "a" / "latency_vs_macs.png").exists()


def error_line(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, _, err = run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_unknown_study_lists_the_others(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    make_study(MIXED, storage=url, name="real")
    line = error_line(capsys, "--study", "typo", "--storage", url, "--out", str(tmp_path / "a"))
    assert line == "e3d analyze: error: no study 'typo' in this storage; studies there: real"


def test_empty_study(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    make_study([], storage=url, name="empty")
    assert "has no trials" in error_line(capsys, "--study", "empty", "--storage", url, "--out", str(tmp_path / "a"))


def test_no_finished_trial(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = make_study([T("mobilenet", 2.0, None, feasible=False), T("shufflenet", 1.0, None, state="FAIL")])
    write_outputs(study_frame(study), tmp_path)
    line = error_line(capsys, "--csv", str(tmp_path), "--out", str(tmp_path / "a"))
    assert "none of its trials finished training" in line and "2 trials: 0 trained, 0 pruned, 1 failed, 1 rejected by the budget" in line


def test_csv_missing_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pd.DataFrame({"state": ["COMPLETE"], "family": ["mobilenet"]}).to_csv(tmp_path / "t.csv", index=False)
    line = error_line(capsys, "--csv", str(tmp_path / "t.csv"), "--out", str(tmp_path / "a"))
    assert "lacks the columns width_mult, macs, params, accuracy" in line


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--study", "x", "--out", "o"], "--study needs --storage"),
        (["--csv", "t.csv", "--storage", "sqlite:///x.db", "--out", "o"], "--storage goes with --study"),
        (["--csv", "t.csv"], "--out"),
        (["--out", "o"], "one of the arguments --study --csv --scale is required"),
        (["--csv", "t.csv", "--study", "x", "--out", "o"], "not allowed with argument"),
    ],
)
def test_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert message in error_line(capsys, *argv)


def test_scale_runs_are_compared_side_by_side(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folders = [str(save_run(versus_run(), tmp_path / name)) for name in ("shufflenet-motion", "mobilenetv2-digits")]
    code, out, _ = run(capsys, "--scale", *folders, "--out", str(tmp_path / "cmp"))
    assert code == 0
    assert "| axis | shufflenet-motion | mobilenetv2-digits |" in out and f"wrote {tmp_path / 'cmp' / 'summary.md'}" in out
    assert (tmp_path / "cmp" / "gains.png").stat().st_size > 0
    assert f"Made by `e3d analyze --scale {' '.join(folders)} --out {tmp_path / 'cmp'}`" in (tmp_path / "cmp" / "summary.md").read_text()


@pytest.mark.parametrize("extra", [["--strict"], ["--budget-mflops", "60"], ["--csv", "x"]])
def test_scale_refuses_the_options_of_a_search(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str]) -> None:
    code, _, err = run(capsys, "--scale", str(tmp_path), *extra, "--out", str(tmp_path / "cmp"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "cmp").exists()
