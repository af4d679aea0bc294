"""Loading and analysing a study held in a real PostgreSQL server.

``.ci/run`` starts PostgreSQL and exports ``E3D_TEST_POSTGRES_URL``. Locally, without it, these tests
skip; in CI (``CI=true``) a missing server is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from analysis import AnalysisError, load_study
from e3d.cli import main
from tests.analysis.helpers import MIXED, make_study

URL = os.environ.get("E3D_TEST_POSTGRES_URL")
if not URL and os.environ.get("CI") == "true":
    raise RuntimeError("CI must run the PostgreSQL analysis tests: E3D_TEST_POSTGRES_URL is not set (.ci/run starts PostgreSQL)")
pytestmark = pytest.mark.skipif(not URL, reason="no PostgreSQL server (set E3D_TEST_POSTGRES_URL)")


@pytest.fixture
def name() -> Iterator[str]:
    study = f"analysis-{uuid.uuid4().hex[:8]}"
    yield study
    optuna.delete_study(study_name=study, storage=str(URL))


def test_study_in_postgres_loads_and_analyses(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_study(MIXED, storage=str(URL), name=name, budget_mflops=90.0)
    results = load_study(name, storage=str(URL))
    assert len(results.trials) == len(MIXED) and results.budget_mflops == 90.0
    with pytest.raises(AnalysisError, match=rf"no study 'missing-{name}'.*{name}"):
        load_study(f"missing-{name}", storage=str(URL))
    assert main(["analyze", "--study", name, "--storage", str(URL), "--out", str(tmp_path), "--no-paper"]) == 0
    out = capsys.readouterr().out
    assert f"Pareto front of {name}" in out
    summary = (tmp_path / "summary.md").read_text()
    assert "Budget: multiply-adds <= 90 M" in summary
    assert "--storage postgresql://***@" in summary and ":e3d@" not in summary  # no credentials written down
