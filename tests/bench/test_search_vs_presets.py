"""bench/search_vs_presets.py: the front benchmark end to end on tiny settings, resume, one-line errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest

from bench import search_vs_presets as svp


def test_budget_floor_and_tiny_presets() -> None:
    with pytest.raises(svp.BenchError, match="cannot pay for one trial"):
        svp.check_budget(10.0, 30.0)
    with pytest.raises(svp.BenchError, match="cannot pay for one trial"):
        svp.check_budget(0.0, 0.0)
    svp.check_budget(60.0, 30.0)
    assert svp.presets(("mobilenetv2",), tiny=True) == [("mobilenetv2", 0.2), ("mobilenetv2", 1.0)]
    assert len(svp.presets(("mobilenet", "mobilenetv2", "shufflenet", "shufflenetv2", "squeezenet"))) == 17


def test_bad_budgets_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert svp.main(["--mode", "budgets", "--budgets", "lots", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == "error: --budgets takes numbers such as 100,200,500, got 'lots'"
    assert svp.main(["--mode", "front", "--families", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: families: unknown family 'nope'") and "\n" not in err
    with pytest.raises(SystemExit) as stop:
        svp.main(["--jobs", "0", "--out", str(tmp_path)])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().endswith("error: argument --jobs: must be a positive integer or auto, got '0'")


def counts(out: Path) -> dict[str, int]:
    url = f"sqlite:///{out / 'bench.db'}"
    return {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(url, include_best_trial=False)}


def trained(out: Path) -> int:
    """Trials of every study in the bench's storage that finished training."""
    url = f"sqlite:///{out / 'bench.db'}"
    studies = [optuna.load_study(study_name=s.study_name, storage=url) for s in optuna.get_all_study_summaries(url)]
    return sum(t.state == optuna.trial.TrialState.COMPLETE and bool(t.user_attrs.get("trained")) for s in studies for t in s.trials)


@pytest.mark.slow
def test_tiny_front_benchmark_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import search.train

    args = ["--mode", "front", "--tiny", "--families", "mobilenetv2", "--final-seeds", "2", "--max-members", "1"]
    args += ["--out", str(tmp_path), "--quiet"]
    real, calls = search.train.fit, {"n": 0, "stop": 3}

    def interrupted(*a: Any, **k: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == calls["stop"]:  # Ctrl-C in the first searched trial, after the two presets
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(search.train, "fit", interrupted)
    assert svp.main(args) == 130 and trained(tmp_path) == 2
    calls.update(n=0, stop=0)
    assert svp.main(args) == 0
    assert calls["n"] == trained(tmp_path) - 2  # the two finished before Ctrl-C were not trained again
    monkeypatch.undo()
    out = capsys.readouterr().out
    runs = pd.read_csv(tmp_path / "front.csv")
    assert sorted(runs.groupby("role")["label"].nunique().items()) == [("candidate", 1), ("preset", 2)]
    assert set(runs["seed"]) == {1, 2} and runs["test_accuracy"].between(0, 100).all()
    from profiler.cpu import detect_cpu

    assert (runs["cpu"] == detect_cpu().describe()).all() and (tmp_path / "front.png").stat().st_size > 0  # each run says where it ran
    assert "Hypervolume" in out and "presets: " in out and "of 2" in out and "Welch" in out
    studies = counts(tmp_path)
    assert set(studies) == {"presets", "front", "front.final"} and studies["front.final"] == 6
    # again: everything is held, nothing is trained
    import search.train

    def no_training(*a: Any, **k: Any) -> Any:
        raise AssertionError("retrained a finished run")

    monkeypatch.setattr(search.train, "fit", no_training)
    assert svp.main(args) == 0 and counts(tmp_path) == studies
    capsys.readouterr()
    # a CPU budget below the cheapest preset's time, and a front of a study without completed trials
    assert svp.main([*args, "--cpu-minutes", "1e-9"]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot pay for one trial" in err and "\n" not in err
    from search.budget import Budget
    from search.study import SearchConfig, open_storage, open_study, sqlite_url

    empty = SearchConfig(budget=Budget(mflops=1000), families=("mobilenetv2",), objective="pareto")
    open_study("empty", open_storage(sqlite_url(tmp_path / "bench.db")), empty)
    assert svp.main([*args, "--front-of", "empty"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no completed searched trials" in err and "\n" not in err
    # a third seed trains only the third seed's runs
    monkeypatch.undo()
    assert svp.main([*args[:6], "3", *args[7:]]) == 0
    assert counts(tmp_path) == {**studies, "empty": 0, "front.final": 9}
    assert set(pd.read_csv(tmp_path / "front.csv")["seed"]) == {1, 2, 3}


def test_front_report_from_hand_made_runs() -> None:
    rows = []
    for seed, (s1, s2, p1, p2) in {1: (60.0, 80.0, 50.0, 70.0), 2: (62.0, 82.0, 52.0, 71.0)}.items():
        rows += [
            {"label": "search #1", "role": "candidate", "seed": seed, "test_accuracy": s1, "macs_m": 100.0},
            {"label": "search #2", "role": "candidate", "seed": seed, "test_accuracy": s2, "macs_m": 600.0},
            {"label": "preset a", "role": "preset", "seed": seed, "test_accuracy": p1, "macs_m": 150.0},
            {"label": "preset b", "role": "preset", "seed": seed, "test_accuracy": p2, "macs_m": 500.0},
        ]
    text = svp.front_report(pd.DataFrame(rows), chance=10.0)
    # seed 1: searched 900 x 50 + 400 x 20 = 53000; presets 850 x 40 + 500 x 20 = 44000
    # seed 2: searched 900 x 52 + 400 x 20 = 54800; presets 850 x 42 + 500 x 19 = 45200
    assert "searched front: 53900 ± 1273 (n=2)" in text and "presets: 44600 ± 849 (n=2)" in text
    assert "verdict, searched vs presets: win: +9300 %·M, p=" in text  # the hypervolume's own unit
    # preset a (150 M) is beaten by search #1 (100 M); preset b (500 M) has only search #1 below it: 61 < 70.5
    assert "1 of 2" in text
    assert "| preset a | 150.0 | 51.0 ± 1.4 (n=2) | search #1 | 100.0 | 61.0 ± 1.4 (n=2) | win" in text


def test_front_members_need_completed_searched_trials() -> None:
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    study = optuna.create_study(directions=["maximize", "minimize"], study_name="s")
    with pytest.raises(svp.BenchError, match="no completed searched trials"):
        svp.front_members(study, 8)
    for i, (acc, macs) in enumerate([(50.0, 100.0), (40.0, 200.0), (70.0, 300.0), (60.0, 50.0)]):
        attrs = {"trained": True, "feasible": True, "source": "search", "accuracy": acc, "macs": macs * 1e6}
        study.add_trial(
            create_trial(values=[acc, macs], params={"x": i / 10}, distributions={"x": FloatDistribution(0, 1)}, user_attrs=attrs)
        )
    members = svp.front_members(study, 8)
    assert [m.label for m in members] == ["search #3", "search #2"]  # (60, 50) and (70, 300)
    assert [m.label for m in svp.front_members(study, 1)] == ["search #2"]


@pytest.mark.slow
def test_tiny_budgets_benchmark_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--mode", "budgets", "--tiny", "--families", "mobilenetv2", "--budgets", "60", "--cpu-minutes", "0.08"]
    args += ["--final-seeds", "2", "--top-k", "1", "--out", str(tmp_path), "--quiet", "--jobs", "2"]
    assert svp.main(args) == 0
    out = capsys.readouterr().out
    table = pd.read_csv(tmp_path / "budget60.csv")
    assert list(table["role"]) == ["candidate", "preset"] and list(table["n"]) == [2, 2]
    assert table.loc[0, "verdict"] in ("win", "tie", "loss")
    assert "## 60 M multiply-adds" in out and "verdict of the top candidate by validation" in out
    counts = r"searched \d+ trials?: \d+ trained, \d+ pruned, 0 failed, \d+ rejected by the budget"
    assert re.search(counts + r" \(\d+ of the pruned stopped when the budget was spent\); pruning saved them ~[\d.]+ CPU-min", out)
    searched = [
        t for t in optuna.load_study(study_name="budget60", storage=f"sqlite:///{tmp_path / 'bench.db'}").trials
        if t.user_attrs.get("source") == "search"
    ]  # fmt: skip
    searched.sort(key=lambda t: t.datetime_complete)
    spent = sum(t.user_attrs["cpu_seconds"] for t in searched)
    # two jobs: it stopped once the trial that reached the budget and the one running beside it ended
    assert spent >= 0.08 * 60 and spent - sum(t.user_attrs["cpu_seconds"] for t in searched[-2:]) < 0.08 * 60
    final = optuna.load_study(study_name="budget60.final", storage=f"sqlite:///{tmp_path / 'bench.db'}").trials
    assert len({t.user_attrs["worker"] for t in final}) == 2  # both jobs scored test-split runs


def test_finalists_without_a_test_accuracy_are_named_with_the_reason() -> None:
    study = optuna.create_study()
    for label, attrs in [
        ("search #1", {"test_accuracy": 50.0}),
        ("search #1", {"rejected_reason": "over budget"}),  # scored with another seed
        ("preset x", {"rejected_reason": "a 2x3x3 average pool needs a larger input"}),
        ("preset y", {}),
    ]:
        study.add_trial(optuna.trial.create_trial(value=0.0, user_attrs={"label": label, **attrs}))
    assert svp.not_scored(study) == {"preset x": "a 2x3x3 average pool needs a larger input", "preset y": "no test accuracy"}


@pytest.mark.parametrize(("jobs", "lag"), [("1", 0), ("2", 4), ("3", 6)])
@pytest.mark.parametrize("mode", ["front", "budgets"])
def test_searches_are_lagged_as_e3d_search_makes_them(mode: str, jobs: str, lag: int, tmp_path: Path) -> None:
    args = svp.parse(["--mode", mode, "--jobs", jobs, "--out", str(tmp_path)])
    config = svp.search_config(args, svp.TINY, mflops=100.0)
    assert (config.lag, config.seed, config.budget.mflops) == (lag, 0, 100.0)


@pytest.mark.parametrize("lag", [0, 4])
def test_search_line_says_whether_and_how_long_trials_waited(lag: int) -> None:
    from search.lagged import WAITED_ATTR

    study = optuna.create_study(direction="maximize")
    for waited, source in [(0.5, "search"), (1.25, "search"), (0.25, "baseline")]:
        t = study.ask()
        t.set_user_attr("source", source)
        t.set_user_attr(WAITED_ATTR, waited)
        study.tell(t, 50.0)
    line = svp.search_line(study, 60.0, epochs=3, lag=lag)
    assert line.startswith("lagged by 4 (its trials waited 2.0 s in all); " if lag else "not lagged; ")
    assert "searched 2 trials" in line


def test_the_budgets_verdicts_are_corrected_for_their_number_from_the_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for mflops, p in ((100, 0.004), (200, 0.043), (500, 0.03)):
        rows = [{"role": "candidate", "p": p}, {"role": "candidate", "p": 0.9}, {"role": "preset", "p": None}]
        pd.DataFrame(rows).to_csv(tmp_path / f"budget{mflops}.csv", index=False)
    assert svp.main(["--mode", "budgets", "--from-results", "--out", str(tmp_path)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.endswith(
        "100 M: p=0.004, adjusted 0.012, stands; 200 M: p=0.043, adjusted 0.06, a tie; 500 M: p=0.03, adjusted 0.06, a tie"
    )
    assert svp.main(["--mode", "budgets", "--from-results", "--out", str(tmp_path / "none")]) == 2
    assert svp.main(["--mode", "front", "--from-results", "--out", str(tmp_path)]) == 2
