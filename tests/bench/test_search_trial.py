"""bench.search_trial and bench.train_proxy: small runs end to end (README quotes both)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from bench import loader_throughput, search_trial, train_proxy


def test_search_trial_splits_a_trial_and_gives_a_rate(capsys: pytest.CaptureFixture[str]) -> None:
    search_trial.main(["--candidates", "1", "--epochs", "1", "--train-samples", "16", "--val-samples", "10"])
    out = capsys.readouterr().out
    assert re.search(r"sampling \+ screening: [\d.]+ ms per candidate \(TPE over \d+ trials\)", out)
    rows = [line for line in out.splitlines() if re.match(r"\w+ w[\d.]+ ", line)]
    assert len(rows) == 1 and rows[0].rstrip().endswith("%")
    assert re.search(r"mean trained trial: [\d.]+ s -> \d+ trained trials per hour", out)


def test_train_proxy_prints_a_row_per_task_model_and_seed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--tasks", "motion", "--models", "shufflenet:0.5", "--epochs", "2", "--train-samples", "16", "--seeds", "0", "1"]
    train_proxy.main([*args, "--cache-dir", str(tmp_path)])
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("motion")]
    assert [(r[1], r[2], r[3]) for r in rows] == [("shufflenet", "0.5x", "0"), ("shufflenet", "0.5x", "1")]
    assert all(len(r) == 10 for r in rows)  # task, model (2), seed, step, 2 validation accuracies, train top-1, clips/s, s


@pytest.mark.parametrize("main", [train_proxy.main, loader_throughput.main])
def test_a_model_without_a_width_is_one_line_and_exit_2(main: Callable[[list[str]], None], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--models", "shufflenet"])  # was a ValueError traceback (not enough values to unpack)
    assert e.value.code == 2
    assert "expected NAME:WIDTH, got 'shufflenet'" in capsys.readouterr().err
