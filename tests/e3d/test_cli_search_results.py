"""``e3d search --export-results DIR``: the run folder's files rebuilt from its study, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.analysis.helpers import MIXED, make_study
from tests.e3d.fixtures import run


def test_export_results_rebuilds_the_files_of_a_run_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    make_study(MIXED, storage=f"sqlite:///{tmp_path / 'study.db'}")
    (tmp_path / "trials.csv").write_text("number\n0\n")  # a truncated leftover
    code, out, err = run(capsys, "search", "--export-results", str(tmp_path))
    assert code == 0, err
    assert "trials.csv" in out and "recipe.json" in out
    assert len(pd.read_csv(tmp_path / "trials.csv")) == len(MIXED) == len(pd.read_csv(tmp_path / "trials_full.csv"))
    assert (tmp_path / "best.json").is_file() and (tmp_path / "recipe.json").is_file()


def test_export_results_without_a_study_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "search", "--export-results", str(tmp_path))
    assert code == 2 and "no study.db in" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == [], "nothing created"


def test_analyze_names_a_run_folder_by_its_folder_not_its_full_record() -> None:
    from e3d.commands.analyze import _short

    assert _short("runs/s200/trials_full.csv") == "s200" == _short("runs/s200/trials.csv")
    assert _short("my-study") == "my-study"
