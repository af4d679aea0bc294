"""Finalization: finalists retrained with new seeds and scored on the test split, with verdicts."""

from __future__ import annotations

import errno
import io
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import search.data
from e3d.cli import main
from search.budget import Budget
from search.finalize import FinalizeError, best_preset, candidates, format_table
from search.searchspace import preset_params, spec_from_params
from search.study import SearchConfig, presets_in_budget
from space.spec import NetSpec
from tests.search.conftest import TINY
from tests.search.test_study import fake_fit


def run(*args: str) -> int:
    """``e3d search`` with the tiny settings; ``--finalize`` with only a worker's (it refuses the settings a study stores)."""
    base = ["--quiet", "--jobs", "1"] if "--finalize" in args else TINY
    try:
        return main(["search", *base, *args])
    except SystemExit as e:
        return int(e.code or 0)


def row(number: int, acc: float, spec: str, macs: float, source: str = "search") -> dict[str, Any]:
    params = json.dumps({"n": number})
    return {
        "number": number,
        "state": "COMPLETE",
        "feasible": True,
        "accuracy": acc,
        "source": source,
        "spec_json": spec,
        "macs": macs,
        "params_json": params,
    }


def test_candidates_are_distinct_architectures_by_validation_accuracy() -> None:
    df = pd.DataFrame(
        [
            row(0, 90.0, "a", 5.0, source="baseline"),  # a preset is never a candidate
            row(1, 50.0, "b", 5.0),
            row(2, 70.0, "b", 5.0),  # b's mean is 60
            row(3, 60.0, "c", 4.0),  # ties with b: fewer multiply-adds first
            row(4, 65.0, "d", 9.0),
            {**row(5, 99.0, "e", 1.0), "feasible": False},  # rejected
        ]
    )
    chosen = candidates(df, top_k=3)
    assert [f.label for f in chosen] == ["search #4", "search #3", "search #1"]
    assert [f.val_accuracy for f in chosen] == [65.0, 60.0, 60.0]
    assert chosen[1].params == {"n": 3} and chosen[1].role == "candidate"
    assert len(candidates(df, top_k=1)) == 1


def test_a_table_without_a_preset_says_there_are_no_verdicts() -> None:
    one = {"label": "search #1", "summary": "", "role": "candidate", "macs": 5e6, "val_accuracy": 50.0, "verdict_text": ""}
    table = pd.DataFrame([{**one, "test_mean": 40.0, "test_sd": 1.0, "n": 2}])
    text = format_table(table, seeds=(1, 2), test_videos=16)
    assert "no preset fits the budget: no verdicts" in text and "against the preset" not in text  # was "verdicts against the preset"
    preset = {**one, "label": "preset mobilenet 0.5x", "role": "preset", "test_mean": 30.0, "test_sd": 1.0, "n": 2}
    assert "verdicts against the preset by" in format_table(
        pd.DataFrame([one | table.iloc[0].to_dict(), preset]), seeds=(1, 2), test_videos=16
    )


def test_without_trained_presets_the_preset_to_beat_meets_the_latency_bound_too() -> None:
    config = SearchConfig(budget=Budget(mflops=200, latency_ms=50.0), families=("mobilenetv2", "shufflenet"), baselines=False)
    fits = presets_in_budget(config, latency=lambda spec: 10.0)
    costliest = max(fits, key=lambda f: f[2])
    slow = spec_from_params(preset_params(*costliest[:2]), clip=config.budget.clip).to_json()

    def latency(spec: NetSpec) -> float:  # the costliest preset is over the bound, the others well within
        return 99.0 if spec.to_json() == slow else 10.0

    empty = pd.DataFrame(columns=["number", "state", "feasible", "accuracy", "source", "spec_json", "macs"])
    chosen = best_preset(empty, config, latency=latency)
    assert chosen is not None and chosen.params != preset_params(*costliest[:2])
    assert chosen.params == preset_params(*max((f for f in fits if f != costliest), key=lambda f: f[2])[:2])
    with pytest.raises(FinalizeError, match="latency"):
        best_preset(empty, config)  # a bound nothing prices is not ignored


@pytest.mark.slow
def test_tiny_finalize_end_to_end_reads_the_test_split_only_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    opened: list[str] = []
    real_open = search.data.open_dataset

    def recording(*args: Any, split: str, **kwargs: Any) -> Any:
        opened.append(split)
        return real_open(*args, split=split, **kwargs)

    monkeypatch.setattr(search.data, "open_dataset", recording)
    assert run("--out", str(tmp_path), "--trials", "2", "--no-finalize") == 0
    assert "test" not in opened and "final.csv" not in capsys.readouterr().out
    assert run("--out", str(tmp_path), "--finalize", "--final-seeds", "2", "--top-k", "1") == 0
    assert opened.count("test") == 1
    out = capsys.readouterr().out
    table = pd.read_csv(tmp_path / "final.csv")
    assert list(table["role"]) == ["candidate", "preset"] and list(table["n"]) == [2, 2]
    assert table["test_mean"].between(0, 100).all() and table["test_sd"].notna().all()
    assert table.loc[0, "verdict"] in ("win", "tie", "loss") and "Welch" in table.loc[0, "test"]
    assert "test split (16 videos)" in out and "Welch" in (tmp_path / "final.md").read_text()
    # finalizing again finds every run done: nothing retrained, same table
    monkeypatch.setattr("search.train.fit", fake_fit([]))
    assert run("--out", str(tmp_path), "--finalize", "--final-seeds", "2", "--top-k", "1") == 0
    assert pd.read_csv(tmp_path / "final.csv")["test_per_seed"].tolist() == table["test_per_seed"].tolist()


@pytest.mark.slow
def test_ctrl_c_during_finalization_keeps_finished_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("search.train.fit", fake_fit([]))
    assert run("--out", str(tmp_path), "--trials", "1", "--no-finalize") == 0
    calls: list[int] = []
    quiet = fake_fit([])

    def interrupting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return quiet(*args, **kwargs)

    monkeypatch.setattr("search.train.fit", interrupting)
    final = ["--out", str(tmp_path), "--finalize", "--final-seeds", "2", "--top-k", "1"]
    assert run(*final) == 130
    assert run(*final) == 0
    assert len(calls) == 5  # 2 x 2 runs and the interrupted attempt: a finished run is never run again
    assert list(pd.read_csv(tmp_path / "final.csv")["n"]) == [2, 2]


class ClosedPipe(io.StringIO):
    """stdout read by ``| head`` that has exited."""

    def write(self, s: str) -> int:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")


def test_a_closed_stdout_stops_the_lines_not_the_search_and_its_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scores = iter(range(20, 90, 5))
    monkeypatch.setattr("search.train.fit", fake_fit([]))
    monkeypatch.setattr("search.train.evaluate", lambda *a, **k: dict.fromkeys(("top1", "video_top1"), float(next(scores))))
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert run("--out", str(tmp_path), "--trials", "1") == 0  # was 0 at the first trial line, nothing written
    assert (tmp_path / "trials.csv").is_file() and (tmp_path / "best.json").is_file()
    assert list(pd.read_csv(tmp_path / "final.csv")["role"]) == ["candidate", "preset"]
    (tmp_path / "final.csv").write_text("an older table\n")
    monkeypatch.setattr(sys, "stdout", ClosedPipe())  # closed again: the first run left the null device there
    assert run("--out", str(tmp_path), "--finalize", "--final-seeds", "2", "--top-k", "1") == 0
    assert list(pd.read_csv(tmp_path / "final.csv")["n"]) == [2, 2]  # was left as it was


def test_a_search_without_baselines_finalizes_against_a_preset_within_its_latency_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    only = spec_from_params(preset_params("mobilenetv2", 0.2), clip=(16, 112, 112)).to_json()  # the one preset under 60 M
    monkeypatch.setattr("search.train.fit", fake_fit([]))
    monkeypatch.setattr("search.study.latency_meter", lambda mode: lambda spec: 99.0 if spec.to_json() == only else 1.0)
    assert run("--out", str(tmp_path), "--trials", "1", "--no-baselines", "--budget-latency-ms", "50") == 0
    assert list(pd.read_csv(tmp_path / "final.csv")["role"]) == ["candidate"]  # it was over the bound: no preset to beat


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--final-seeds", "0"], "--final-seeds"),
        (["--finalize", "--out", "{missing}"], "nothing to resume"),
    ],
)
def test_bad_finalize_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    args = [a.replace("{missing}", str(tmp_path / "missing")) for a in args]
    assert run(*args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "missing").exists()


def test_finalize_without_a_completed_trial_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from search import study as st
    from search.budget import Budget

    storage = st.open_storage(st.sqlite_url(tmp_path / "study.db"))
    config = st.SearchConfig(budget=Budget(mflops=60), families=("mobilenet", "mobilenetv2"))
    st.open_study("e3d-search", storage, config)
    assert run("--out", str(tmp_path), "--finalize") == 2
    err = capsys.readouterr().err.strip()
    assert "no completed searched trial" in err and len(err.splitlines()) == 1


def test_finalize_of_a_sweep_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from search import study as st
    from search.budget import Budget

    storage = st.open_storage(st.sqlite_url(tmp_path / "study.db"))
    config = st.SearchConfig(budget=Budget(mflops=60), families=("mobilenet",), kind="sweep")
    st.open_study("e3d-sweep", storage, config)
    assert run("--out", str(tmp_path), "--study-name", "e3d-sweep", "--finalize") == 2
    err = capsys.readouterr().err.strip()
    assert "is a sweep, not a search" in err and len(err.splitlines()) == 1
