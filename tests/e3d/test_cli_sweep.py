"""``e3d sweep``: every paper preset x seed, in the search's results format, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import space
from e3d.cli import main
from search.searchspace import FAMILIES
from tests.search.test_study import fake_fit

TINY = ["--proxy-clip", "8x32x32", "--train-samples", "32", "--val-samples", "16", "--epochs", "1", "--batch-size", "8", "--quiet"]


def test_sweep_trains_every_preset_once_per_seed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("search.train.fit", fake_fit([]))
    measured: list[space.NetSpec] = []

    def meter(mode: str) -> Any:
        def measure(spec: space.NetSpec) -> float:
            measured.append(spec)
            return 10.0

        return measure

    monkeypatch.setattr("search.study.latency_meter", meter)
    assert main(["sweep", "--families", "mobilenet,mobilenetv2", "--seeds", "2", "--out", str(tmp_path), *TINY]) == 0
    df = pd.read_csv(tmp_path / "trials_full.csv")
    assert (df["source"] == "sweep").all() and (df["state"] == "COMPLETE").all()
    expected = {(f, w) for f in ("mobilenet", "mobilenetv2") for w in space.model_info(f).paper_widths}
    for seed in (0, 1):
        rows = df[df["seed"] == seed]
        assert set(zip(rows["family"], rows["width_mult"], strict=True)) == expected
    assert len(df) == 2 * len(expected)
    assert (df["latency_ms"] == 10.0).all() and len(measured) == len(df)
    presets = {space.paper_spec(f, width_mult=w, num_classes=measured[0].num_classes) for f, w in expected}
    assert set(measured) == presets, "the swept networks are the paper's presets (with the proxy task's head)"


def test_sweep_resumes_where_it_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = fake_fit([])
    calls = {"n": 0}

    def stop_on_third(*a: Any, **k: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr("search.train.fit", stop_on_third)
    args = ["sweep", "--families", "shufflenetv2", "--seeds", "1", "--no-latency", "--out", str(tmp_path), *TINY]
    assert main(args) == 130
    assert len(pd.read_csv(tmp_path / "trials_full.csv").query("state == 'COMPLETE'")) == 2
    monkeypatch.setattr("search.train.fit", real)
    assert main(["sweep", "--resume", "--out", str(tmp_path), "--quiet"]) == 0
    df = pd.read_csv(tmp_path / "trials_full.csv")
    done = df[df["state"] == "COMPLETE"]
    assert sorted(done["width_mult"]) == sorted(space.model_info("shufflenetv2").paper_widths)
    assert len(FAMILIES) == 5, "a sweep covers the paper's five families unless told otherwise"


def test_a_sweep_refuses_to_go_on_with_a_search_study(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from search import study as st
    from search.budget import Budget

    storage = st.open_storage(st.sqlite_url(tmp_path / "study.db"))
    st.open_study("e3d-search", storage, st.SearchConfig(budget=Budget(100.0), families=("mobilenet",)))
    code = main(["sweep", "--resume", "--out", str(tmp_path), "--study-name", "e3d-search", "--quiet"])
    err = capsys.readouterr().err  # was exit 0, the search's stored trial count set to 0
    assert code == 2 and "study 'e3d-search' is a search, not a sweep" in err


def test_a_worker_joining_a_sweep_with_other_seeds_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("search.train.fit", fake_fit([]))
    args = ["sweep", "--families", "shufflenetv2", "--no-latency", "--out", str(tmp_path), *TINY]
    assert main([*args, "--seeds", "1"]) == 0
    capsys.readouterr()
    assert main([*args, "--seeds", "2"]) == 2  # was 0: joined, trained no second seed
    assert "exists with other settings (seeds: stored 1, given 2); pass --resume" in capsys.readouterr().err
    assert main([*args, "--seeds", "1"]) == 0, "a worker with the same seeds joins"
    capsys.readouterr()
    assert main([*args, "--seeds", "1", "--heartbeat", "1"]) == 2  # was 0: it failed the others' live trials as stale
    assert "exists with other settings (heartbeat: stored 10, given 1)" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["sweep", "scale"])
def test_commands_that_never_finalize_take_no_test_samples(capsys: pytest.CaptureFixture[str], command: str) -> None:
    with pytest.raises(SystemExit) as e:
        main([command, "shufflenet", "--test-samples", "20"] if command == "scale" else [command, "--test-samples", "20"])
    assert e.value.code == 2 and "unrecognized arguments: --test-samples 20" in capsys.readouterr().err  # was accepted, unused
