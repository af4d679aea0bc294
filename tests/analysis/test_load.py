"""Loading results: the DataFrame's schema from a study and from a CSV, and bad input."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pandas as pd
import pytest

from analysis import REQUIRED, AnalysisError, from_study, load_csv, load_study
from search.results import COLUMNS, study_frame, write_outputs
from tests.analysis.helpers import MIXED, make_study


def test_study_frame_schema_one_row_per_trial_with_flattened_spec() -> None:
    study = make_study(MIXED)
    df = from_study(study).trials
    assert len(df) == len(MIXED)
    assert list(df.columns[: len(COLUMNS)]) == COLUMNS
    extra = list(df.columns[len(COLUMNS) :])
    assert extra and all(c.startswith("spec.") for c in extra)
    assert "spec.stages.0.channels" in extra and "spec.width_mult" in extra
    for col in ("width_mult", "macs", "params", "accuracy", "latency_ms", "seed"):
        assert df[col].dtype == "float64", col
    assert str(df["feasible"].dtype) == "boolean" and str(df["number"].dtype) == "Int64"
    assert df["number"].tolist() == list(range(len(MIXED)))
    assert df["state"].tolist() == [t.state for t in MIXED]
    assert df["feasible"].tolist() == [t.feasible for t in MIXED]
    # the spec's fields agree with the trial's own
    assert (df["spec.width_mult"].astype(float) == df["width_mult"]).all()
    assert (df["spec.family"] == df["family"]).all()
    # a failed trial has no accuracy even if its objective was never reported
    assert df.loc[df["state"] == "FAIL", "accuracy"].isna().all()


def test_budget_and_clip_come_from_the_stored_config() -> None:
    results = from_study(make_study(MIXED, budget_mflops=123.0))
    assert results.budget_mflops == 123.0 and results.budget_clip == (16, 112, 112)
    assert results.config is not None and results.config["proxy"]["task"] == "motion"


def test_csv_round_trip_equals_the_study(tmp_path: Path) -> None:
    study = make_study(MIXED)
    write_outputs(study_frame(study), tmp_path)
    from_csv = load_csv(tmp_path / "trials.csv").trials
    direct = from_study(study).trials
    assert list(from_csv.columns) == list(direct.columns)
    cols = ["number", "state", "feasible", "family", "width_mult", "macs", "params", "accuracy", "seed"]
    pd.testing.assert_frame_equal(from_csv[cols], direct[cols], check_dtype=True)


def test_the_trials_of_a_scale_run_are_sent_to_its_own_analysis(tmp_path: Path) -> None:
    write_outputs(study_frame(make_study(MIXED)), tmp_path)
    (tmp_path / "scale.json").write_text("{}")  # e3d scale writes it beside its trials.csv
    with pytest.raises(AnalysisError, match=r"a run of e3d scale .* analyse it with --scale"):
        load_csv(tmp_path)  # was read as a search: reused points counted as seeds, clips mixed in a width's row


def test_run_folder_reads_the_budget_from_its_study_db(tmp_path: Path) -> None:
    study = make_study(MIXED, storage=f"sqlite:///{tmp_path / 'study.db'}", budget_mflops=77.0)
    write_outputs(study_frame(study), tmp_path)
    results = load_csv(tmp_path)
    assert results.budget_mflops == 77.0 and len(results.trials) == len(MIXED)
    optuna.create_study(study_name="hand-made.final", storage=f"sqlite:///{tmp_path / 'study.db'}")  # as finalizing leaves it
    assert load_csv(tmp_path).budget_mflops == 77.0, "was None (budget unknown) once the finalists' study was beside it"


def test_a_clip_column_of_another_form_leaves_the_clip_unknown(tmp_path: Path) -> None:
    df = study_frame(make_study(MIXED, budget_mflops=None))
    for text, clip in (("8x32x40", (8, 32, 40)), ("abc", None), ("16x112", None)):  # "abc" was a ValueError traceback
        df["spec.clip"] = text
        df.to_csv(tmp_path / "t.csv", index=False)
        assert load_csv(tmp_path / "t.csv").budget_clip == clip


def test_sqlite_study_loads_by_name(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    make_study(MIXED, storage=url, name="mine")
    results = load_study("mine", storage=url)
    assert results.name == "mine" and len(results.trials) == len(MIXED)


def test_unknown_study_lists_the_ones_that_exist(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    make_study(MIXED, storage=url, name="alpha")
    make_study(MIXED[:1], storage=url, name="beta")
    with pytest.raises(AnalysisError, match=r"no study 'gamma'.*studies there: alpha, beta"):
        load_study("gamma", storage=url)


def test_empty_study_is_an_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    make_study([], storage=url, name="empty")
    with pytest.raises(AnalysisError, match="'empty' has no trials"):
        load_study("empty", storage=url)


def test_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    with pytest.raises(AnalysisError, match="no SQLite database"):
        load_study("x", storage=f"sqlite:///{tmp_path / 'typo.db'}")
    assert not (tmp_path / "typo.db").exists()


def test_csv_missing_columns_names_them(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    pd.DataFrame({"state": ["COMPLETE"], "family": ["mobilenet"], "width_mult": [1.0], "params": [1e6]}).to_csv(path, index=False)
    with pytest.raises(AnalysisError, match=r"lacks the columns macs, accuracy") as e:
        load_csv(path)
    assert "\n" not in str(e.value)


def test_minimal_csv_with_only_the_required_columns_loads(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    pd.DataFrame({c: [v] for c, v in zip(REQUIRED, ["complete", "mobilenet", 1.0, 2e8, 3e6, 50.0], strict=True)}).to_csv(path, index=False)
    df = load_csv(path).trials
    assert list(df.columns[: len(COLUMNS)]) == COLUMNS
    assert df["state"].tolist() == ["COMPLETE"] and df["feasible"].isna().all() and df["number"].tolist() == [0]


NUMBERED = ",".join(("number", *REQUIRED)) + "\n"
"""The header of a CSV of the required columns with trial numbers."""

ROW = "COMPLETE,mobilenet,1.0,2e8,3e6,50"
"""The required columns of a trained trial."""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        (",".join(REQUIRED) + "\n", "has no trials"),
        (",".join(REQUIRED) + "\nCOMPLETE,mobilenet,1.0,lots,3e6,50\n", "t.csv: column 'macs' holds a value that is not a number: 'lots'"),
        (NUMBERED + f"0,{ROW}\n1.5,{ROW}\n", "column 'number' holds a value that is not a trial number (a whole number): 1.5 (row 2)"),
        (NUMBERED + f"1e30,{ROW}\n", "column 'number' holds a value that is not a trial number (a whole number): 1e+30 (row 1)"),
    ],
)
def test_bad_csv_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(AnalysisError, match=re.escape(message)):  # a 1.5 or 1e30 number was pandas' TypeError traceback
        load_csv(path)


def test_missing_csv(tmp_path: Path) -> None:
    with pytest.raises(AnalysisError, match="no such file"):
        load_csv(tmp_path / "nope.csv")
    with pytest.raises(AnalysisError, match="no such file"):
        load_csv(tmp_path)  # a folder without trials.csv


def _corrupt(tmp_path: Path, how: str) -> Path:
    """A run folder of MIXED whose full record was damaged in one way."""
    study = make_study(MIXED)
    write_outputs(study_frame(study), tmp_path)
    path = tmp_path / "trials_full.csv"
    df = pd.read_csv(path)
    done = df.index[(df["state"] == "COMPLETE") & df["accuracy"].notna() & df["spec_json"].notna()]
    if how == "truncated spec":
        df.loc[done[:2], "spec_json"] = df.loc[done[:2], "spec_json"].str.slice(0, 40)  # cut alike: two networks as one
    elif how == "duplicated row":
        df = pd.concat([df, df.loc[[done[0]]]], ignore_index=True)
    elif how == "negative macs":
        df.loc[done[0], "macs"] = -5e6
    elif how == "infinite latency":
        df.loc[done[0], "latency_ms"] = float("inf")
    elif how == "width -1":
        df.loc[done[0], "width_mult"] = -1.0
    elif how == "accuracy 130":
        df.loc[done[0], "accuracy"] = 130.0
    elif how == "missing params":
        df.loc[done[0], "params"] = None
    df.to_csv(path, index=False)
    return tmp_path


@pytest.mark.parametrize(
    ("how", "phrase"),
    [
        ("truncated spec", "unparsable spec_json: 2 rows"),
        ("duplicated row", "duplicated trial: 1 row"),
        ("negative macs", "negative cost: 1 row"),
        ("infinite latency", "infinite cost: 1 row"),  # --strict kept it
        ("width -1", "width_mult not a positive number: 1 row"),  # was analysed as a "-1x" network, --strict too
        ("accuracy 130", "accuracy outside [0, 100]: 1 row"),
        ("missing params", "trained trial without macs or params: 1 row"),
    ],
)
def test_corrupt_rows_are_dropped_and_counted_or_refused_with_strict(tmp_path: Path, how: str, phrase: str) -> None:
    from analysis import architectures

    folder = _corrupt(tmp_path, how)
    results = load_csv(folder)
    assert any(phrase in d for d in results.dropped), results.dropped
    df = results.trials
    assert not df["number"].duplicated().any() and (df["macs"].dropna() >= 0).all()
    assert df["accuracy"].dropna().between(0, 100).all()
    trained = df[(df["state"] == "COMPLETE") & df["accuracy"].notna()]
    assert len(architectures(df)) == trained["spec_json"].nunique(), "no two architectures averaged as one"
    with pytest.raises(AnalysisError, match=re.escape(phrase)) as e:
        load_csv(folder, strict=True)
    assert "\n" not in str(e.value)


def test_analyze_warns_once_about_dropped_rows_and_strict_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.e3d.fixtures import run

    folder = _corrupt(tmp_path / "run", "duplicated row")
    code, _, err = run(capsys, "analyze", "--csv", str(folder), "--out", str(tmp_path / "a"), "--no-paper", "--quiet")
    assert code == 0, err
    assert err.count("warning: dropped corrupt rows") == 1 and "duplicated trial: 1 row" in err
    code, out, err = run(capsys, "analyze", "--csv", str(folder), "--out", str(tmp_path / "b"), "--no-paper", "--strict")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "duplicated trial" in err
