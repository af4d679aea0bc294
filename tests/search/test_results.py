"""The run folder's result files: the short trials.csv, the full record, safe concurrent writes, rebuilding from the study."""

from __future__ import annotations

import csv
import json
import threading
from pathlib import Path

import optuna
import pandas as pd
import pytest

import space
from analysis import AnalysisError, load_csv
from search.results import (
    COLUMNS,
    INTERRUPTED_NOTE,
    SHORT_COLUMNS,
    export_results,
    frame,
    recipe,
    short_table,
    study_frame,
    trial_counts,
    write_outputs,
)
from tests.analysis.helpers import MIXED, T, make_study


def test_short_table_has_a_status_per_trial_and_one_line_specs(tmp_path: Path) -> None:
    trials = [*MIXED, T("mobilenet", 0.5, None, state="RUNNING")]
    study = make_study(trials)
    write_outputs(study_frame(study), tmp_path)
    short = pd.read_csv(tmp_path / "trials.csv")
    assert list(short.columns) == SHORT_COLUMNS
    expected = [
        "rejected" if not t.feasible else {"COMPLETE": "trained", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running"}[t.state]
        for t in trials
    ]
    assert short["status"].tolist() == expected
    assert short.loc[short["status"] == "rejected", "note"].notna().all()
    text = (tmp_path / "trials.csv").read_text()
    assert len(text.splitlines()) == len(trials) + 1, "one line per trial: no multi-line cell"
    for spec_json, t in zip(short["spec"], trials, strict=True):
        assert space.NetSpec.from_json(spec_json) == space.paper_spec(t.family, width_mult=t.width, num_classes=10)
    full = pd.read_csv(tmp_path / "trials_full.csv")
    assert list(full.columns[: len(COLUMNS)]) == COLUMNS and len(full) == len(trials)


def test_trial_counts_say_how_every_trial_ended() -> None:
    df = study_frame(make_study([*MIXED, T("mobilenet", 0.5, None, state="RUNNING")]))
    assert trial_counts(df) == "9 trials: 5 trained, 1 pruned, 1 failed, 1 rejected by the budget, 1 running"
    assert trial_counts(df[df["state"] == "PRUNED"]) == "1 trial: 0 trained, 1 pruned, 0 failed, 0 rejected by the budget"


def test_a_lagged_searchs_surplus_trial_is_neither_trained_nor_pruned() -> None:
    df = study_frame(
        make_study([T("mobilenet", 1.0, 50.0), T("mobilenet", 0.5, 40.0, state="PRUNED"), T("mobilenet", 0.5, None, state="PRUNED")])
    )
    df["surplus"] = [None, None, True]
    assert short_table(df)["status"].tolist() == ["trained", "pruned", "surplus"]
    assert trial_counts(df) == "3 trials: 1 trained, 1 pruned, 0 failed, 0 rejected by the budget, 1 not run (surplus)"


def test_an_interrupted_trial_is_said_to_be_one() -> None:
    df = study_frame(
        make_study([T("mobilenet", 1.0, 50.0), T("mobilenet", 0.5, None, state="FAIL"), T("mobilenet", 2.0, None, state="FAIL")])
    )
    df["interrupted"] = [None, True, None]  # as search.study marks a trial stopped by Ctrl-C
    short = short_table(df)
    assert short["status"].tolist() == ["trained", "interrupted", "failed"]  # was "failed", with no note
    assert short["note"].tolist()[1] == INTERRUPTED_NOTE
    assert trial_counts(df) == "3 trials: 1 trained, 0 pruned, 1 failed, 1 interrupted, 0 rejected by the budget"


def test_every_trials_cpu_time_is_in_both_tables(tmp_path: Path) -> None:
    study = make_study([T("mobilenet", 1.0, 50.0, cpu_seconds=61.234), T("mobilenet", 0.5, None, state="RUNNING")])
    write_outputs(study_frame(study), tmp_path)
    assert pd.read_csv(tmp_path / "trials_full.csv")["cpu_seconds"].tolist()[0] == 61.234
    short = pd.read_csv(tmp_path / "trials.csv")["cpu_seconds"]
    assert short[0] == 61.2 and pd.isna(short[1])


def test_integers_stay_integers_while_a_trial_has_no_values_yet(tmp_path: Path) -> None:
    study = make_study([T("mobilenet", 1.0, 50.0), T("mobilenet", 0.5, None, state="RUNNING")])
    write_outputs(study_frame(study), tmp_path)
    row = next(csv.DictReader((tmp_path / "trials_full.csv").open()))  # the cells as written
    for col in ("number", "macs", "params", "seed", "epochs", "spec.stages.0.channels", "spec.stages.0.repeats"):
        assert row[col].lstrip("-").isdigit(), f"{col} written as {row[col]!r}"
    assert row["width_mult"] == "1.0" and row["accuracy"] == "50.0", "floats stay floats"
    short = next(csv.DictReader((tmp_path / "trials.csv").open()))
    assert short["number"] == "0" and short["epochs"] == "1" and short["seed"] == "0"
    row = frame([{"number": 0, "state": "COMPLETE", "width_mult": 0.35059771201, "macs": 59512345, "params": 327123, "accuracy": 41.23456}])
    read = short_table(row).iloc[0]
    assert (read["width_mult"], read["macs_m"], read["params_m"], read["accuracy"]) == (0.3506, 59.5, 0.327, 41.23), "rounded for reading"


def test_workers_sharing_a_folder_never_collide_on_a_temporary_name(tmp_path: Path) -> None:
    df = study_frame(make_study(MIXED))
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(15):
                write_outputs(df, tmp_path)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.json", "pareto.json", "trials.csv", "trials_full.csv"]


def test_export_results_rebuilds_every_row_and_the_recipe_from_the_study(tmp_path: Path) -> None:
    study = make_study(MIXED, storage=f"sqlite:///{tmp_path / 'study.db'}")
    write_outputs(study_frame(study).head(1), tmp_path)  # a stale snapshot with fewer rows
    paths = export_results(optuna.load_study(study_name="hand-made", storage=f"sqlite:///{tmp_path / 'study.db'}"), tmp_path)
    assert len(pd.read_csv(paths["trials"])) == len(MIXED) == len(pd.read_csv(paths["full"]))
    made = json.loads(paths["recipe"].read_text())
    assert made["clip"] == [8, 32, 32] and made["task"] == "motion" and made["epochs"] == 1
    assert len(load_csv(tmp_path).trials) == len(MIXED), "analysis reads the full record of a run folder"


def test_recipe_takes_the_best_trials_seed_and_the_schedule() -> None:
    proxy = {"task": "digits", "clip": [16, 48, 48], "lr": 0.05, "epochs": 3, "batch_size": 16, "schedule": "cosine", "warmup": 0.1}
    config = {"proxy": proxy, "seed": 4}
    assert recipe(config)["seed"] == 4
    assert recipe(config)["schedule"] == "cosine" and recipe(config)["warmup"] == 0.1
    made = recipe(config, {"seed": 7, "accuracy": 61.234})
    assert made["seed"] == 7 and made["best_accuracy"] == 61.23 and made["lr"] == 0.05 and made["task"] == "digits"


def test_a_short_table_alone_is_refused_by_analysis_with_one_line(tmp_path: Path) -> None:
    short_table(study_frame(make_study(MIXED))).to_csv(tmp_path / "trials.csv", index=False)
    with pytest.raises(AnalysisError, match="short table"):
        load_csv(tmp_path / "trials.csv")
