"""The newcomer's journey of the README, end to end on small settings: search -> train best.json ->
export with the trained weights -> profile the export -> analyze. Each step takes the previous one's
output as the README and the search's own "next:" hint say."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pandas as pd
import pytest

import space
from search.train import load_checkpoint
from tests.e3d.fixtures import run

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

VAL = 200
SEARCH = [
    "search",
    "--task",
    "digits",
    "--families",
    "shufflenet",
    "--budget-mflops",
    "60",
    "--no-baselines",
    "--no-finalize",
    "--trials",
    "1",
    "--train-samples",
    "400",
    "--val-samples",
    str(VAL),
    "--epochs",
    "3",
    "--threads",
    "1",
    "--quiet",
]


def hinted_train(stdout: str) -> list[str]:
    """The ``e3d train ...`` command of the search's "next:" line, as a user would copy it."""
    line = next(ln for ln in stdout.splitlines() if ln.startswith("next:") and "e3d train" in ln)
    command = line.split("e3d train", 1)[1].split("|")[0]
    return ["train", *command.split()]


def test_search_train_export_profile_analyze(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("E3D_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    code, stdout, err = run(capsys, *SEARCH, "--out", str(out))
    assert code == 0, err
    best = out / "best.json"
    assert best.is_file() and (out / "recipe.json").is_file() and (out / "trials.csv").is_file()

    # train best.json exactly as the hint says: the search's recipe, so the same epochs as its trial
    code, stdout, err = run(capsys, *hinted_train(stdout), "--out", str(tmp_path / "train"), "--quiet", "--threads", "1")
    assert code == 0, err
    assert "recipe   the search's" in stdout
    state = load_checkpoint(tmp_path / "train")
    study = optuna.load_study(study_name="e3d-search", storage=f"sqlite:///{out / 'study.db'}")
    trial = next(t for t in study.trials if t.user_attrs.get("trained") and t.state.name == "COMPLETE")
    val = [e["val_top1"] for e in state["history"]]
    assert val == pytest.approx([trial.intermediate_values[i] for i in range(3)]), "e3d train repeats the search's training"
    chance = 100 / 10
    assert val[-1] > chance + 3 * math.sqrt(chance * (100 - chance) / VAL), f"best.json did not learn: {val}"

    # export the trained weights, then profile the export: the search's count of the spec
    net = tmp_path / "net.pt"
    argv = ["export", str(best), "--checkpoint", str(tmp_path / "train" / "last.pt"), "--format", "torchscript", "--optimize"]
    code, _, err = run(capsys, *argv, "--out", str(net))
    assert code == 0, err
    code, stdout, err = run(capsys, "profile", str(net), "--json", "--warmup", "1", "--repeats", "2")
    assert code == 0, err
    profiled = json.loads(stdout)
    row = pd.read_csv(out / "trials_full.csv").set_index("number").loc[trial.number]
    assert profiled["macs"] == row["macs"], "the export runs the multiply-adds the search counted"
    assert profiled["params"] <= row["params"]  # BatchNorm folded into the convolutions
    assert space.NetSpec.load(best) == space.NetSpec.from_json(trial.user_attrs["spec"])

    code, stdout, err = run(capsys, "analyze", "--csv", str(out), "--out", str(tmp_path / "analysis"), "--no-paper", "--quiet")
    assert code == 0, err
    assert (tmp_path / "analysis" / "summary.md").is_file() and (tmp_path / "analysis" / "accuracy_vs_macs.png").is_file()
