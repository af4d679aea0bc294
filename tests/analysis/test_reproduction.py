"""The numbers of docs/REPRODUCTION.md come from analysis.reproduction, with the sample sd."""

from __future__ import annotations

import datetime
import math
from pathlib import Path

import pandas as pd
import pytest

from analysis.reproduction import accuracy, main

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"


def test_accuracy_is_mean_and_sample_sd_over_seeds() -> None:
    rows = [
        {"number": i, "state": "COMPLETE", "feasible": True, "family": "mobilenet", "width_mult": 1.0, "seed": s, "accuracy": a}
        for i, (s, a) in enumerate([(0, 70.0), (1, 74.0)])
    ]
    out = accuracy(pd.DataFrame(rows)).iloc[0]
    assert out["mean"] == 72.0 and out["n"] == 2
    assert out["sd"] == pytest.approx(math.sqrt(8.0))  # population sd: 2.0
    assert (out["seed0"], out["seed1"]) == (70.0, 74.0)


def test_the_published_table_is_what_the_code_prints(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--motion", str(RESULTS / "motion" / "trials.csv"), "--digits", str(RESULTS / "digits" / "trials.csv")]
    assert main([*args, "--latency", str(RESULTS / "paper_table.json")]) == 0
    assert capsys.readouterr().out == (RESULTS / "reproduction.md").read_text()


def test_the_main_figure_names_the_cpu_and_the_day(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import analysis.plots

    drawn: list[str] = []
    monkeypatch.setattr(analysis.plots, "save_figure", lambda fig, out, stem: drawn.extend(ax.get_title() for ax in fig.axes))
    args = ["--motion", str(RESULTS / "motion"), "--digits", str(RESULTS / "digits"), "--figure", str(tmp_path / "width")]
    assert main([*args, "--latency", str(RESULTS / "paper_table.json")]) == 0
    assert sum(f"trained on AMD EPYC; drawn {datetime.date.today():%Y-%m-%d}" in t for t in drawn) == 2  # was "this machine"
