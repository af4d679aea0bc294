"""``e3d sweep/search --jobs`` and ``--precision``: local worker processes, and what each trial ran with."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import profiler.precision as precision
import space
from tests.e3d.fixtures import run
from tests.search.conftest import TINY as SEARCH

TINY = ["--proxy-clip", "8x32x32", "--train-samples", "24", "--val-samples", "8", "--epochs", "1", "--batch-size", "8", "--quiet"]


def test_a_precision_this_machine_lacks_fails_before_any_trial(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(precision, "detect_cpu", lambda: precision.CpuInfo("Fake EPYC", "AVX2", frozenset({"avx2"})))
    code, _, err = run(
        capsys, "sweep", "--families", "mobilenet", "--seeds", "1", "--precision", "bf16", "--out", str(tmp_path / "r"), *TINY
    )
    assert code == 2 and err.strip().splitlines()[-1].startswith("e3d sweep: error: bf16 asked for, but this CPU has neither")
    code, _, err = run(capsys, "search", *SEARCH, "--precision", "bf16", "--out", str(tmp_path / "s"))
    assert code == 2 and err.strip().splitlines()[-1].startswith("e3d search: error: bf16 asked for, but this CPU has neither")
    assert not (tmp_path / "s" / "trials.csv").exists()
    code, _, err = run(capsys, "sweep", "--jobs", "0", "--out", str(tmp_path / "r"), *TINY)
    assert code == 2 and "--jobs: must be a positive integer or auto" in err


def test_jobs_default_to_one_per_core_and_a_search_by_several_lags_two_trials_per_job(monkeypatch: pytest.MonkeyPatch) -> None:
    from e3d.cli import build_parser
    from e3d.commands.search import _search_config

    monkeypatch.setattr("search.jobs.usable_cores", lambda: 3)
    default = SEARCH[: SEARCH.index("--jobs")]  # the tests' search, with --jobs left to its default
    for extra, jobs, lag in (([], 3, 6), (["--jobs", "1"], 1, 0), (["--jobs", "2"], 2, 4)):
        args = build_parser().parse_args(["search", *default, *extra])
        assert (args.jobs, _search_config(args).lag) == (jobs, lag)
    assert build_parser().parse_args(["sweep", *TINY]).jobs == 3


@pytest.mark.slow
def test_a_sweep_with_two_jobs_trains_every_preset_once_and_records_the_precision(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, "sweep", "--families", "mobilenet", "--seeds", "1", "--jobs", "2", "--out", str(tmp_path), *TINY)
    assert code == 0, err
    assert "2 local jobs, 1 torch thread each" in err
    short = pd.read_csv(tmp_path / "trials.csv")
    assert len(short) == 4 and (short["status"] == "trained").all() and (short["precision"] == "fp32 eager").all()
    full = pd.read_csv(tmp_path / "trials_full.csv")
    assert sorted(full["width_mult"]) == sorted(space.model_info("mobilenet").paper_widths) and full["worker"].nunique() == 2


@pytest.mark.slow
def test_a_search_with_two_jobs_and_its_finalization_are_decided_by_the_seed(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    def search(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
        code, _, err = run(capsys, "search", *SEARCH, "--jobs", "2", "--trials", "3", "--seed", "1", "--out", str(out))
        assert code == 0, err
        assert err.count("2 local jobs, 1 torch thread each") == 2, err  # the search, then its finalization
        trials = pd.read_csv(out / "trials.csv")
        return trials[trials["status"] != "surplus"][["number", "status", "spec", "accuracy"]], pd.read_csv(out / "final.csv")

    (trials, final), (trials_again, final_again) = search(tmp_path / "a"), search(tmp_path / "b")
    pd.testing.assert_frame_equal(trials, trials_again)
    pd.testing.assert_frame_equal(final, final_again)
    assert (trials["status"] == "trained").sum() + (trials["status"] == "pruned").sum() >= 3
