"""The CUDA paths from the command line: train (mixed precision, resume), evaluate, profile and a sweep.

Skipped on a machine without a CUDA device (CI has none); run on a GPU machine with
``pytest tests/e3d/test_cli_cuda.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from search.train import load_checkpoint
from tests.e3d.fixtures import run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

TINY = ["--sample-duration", "8", "--sample-size", "32", "--num-samples", "16", "--batch-size", "8", "--quiet"]
SMALL = ["--width-mult", "0.25", "--num-classes", "10", "--frames", "8", "--size", "32"]


def half() -> str:
    """What ``--precision auto`` means on this GPU: bf16 where it has it, else fp16."""
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def train_argv(tmp_path: Path, out: Path, *more: str) -> list[str]:
    data = ["--format", "digits", "--cache-dir", str(tmp_path / "c")]
    return ["train", "mobilenet", "--width-mult", "0.25", *data, "--out", str(out), "--device", "cuda", *TINY, *more]


@pytest.mark.parametrize("asked", ["auto", "fp16", "fp32"])
def test_train_on_cuda_records_its_precision_resumes_and_evaluates(capsys: pytest.CaptureFixture[str], tmp_path: Path, asked: str) -> None:
    out = tmp_path / "run"
    expected = half() if asked == "auto" else asked
    code, stdout, err = run(capsys, *train_argv(tmp_path, out, "--epochs", "1", "--precision", asked))
    assert code == 0, err
    assert f"run as   precision {expected}" in stdout and "on cuda" in stdout, stdout
    state = load_checkpoint(out)
    assert state["exec"]["precision"] == expected and state["exec"]["device"].startswith("cuda")
    assert (state["scaler"] is not None) == (expected == "fp16")
    code, stdout, err = run(capsys, *train_argv(tmp_path, out, "--epochs", "2", "--precision", asked, "--resume"))
    assert code == 0, err
    assert "resuming" in stdout and load_checkpoint(out)["epoch"] == 2
    code, stdout, err = run(capsys, "evaluate", str(out), "--json", "--quiet", "--split", "val", "--device", "cuda", "--precision", asked)
    assert code == 0, err
    m = json.loads(stdout)
    assert m["run_as"]["precision"] == expected and 0 <= m["top1"] <= 100


@pytest.mark.parametrize("asked", ["fp32", "fp16", "bf16"])
def test_profile_times_on_cuda_in_each_precision(capsys: pytest.CaptureFixture[str], asked: str) -> None:
    if asked == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    timing = ["--batch-size", "2", "--warmup", "2", "--repeats", "3", "--json"]
    code, out, err = run(capsys, "profile", "mobilenet", *SMALL, *timing, "--device", "cuda", "--precision", asked)
    assert code == 0, err
    d = json.loads(out)
    assert d["precision"]["precision"] == asked and d["clips_per_s"] > 0 and d["device"].startswith("cuda")


def test_a_sweep_on_cuda_trains_every_preset_in_mixed_precision(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    tiny = ["--proxy-clip", "8x32x32", "--train-samples", "24", "--val-samples", "8", "--epochs", "1", "--batch-size", "8", "--quiet"]
    code, _, err = run(
        capsys, "sweep", "--families", "mobilenet", "--seeds", "1", "--device", "cuda", "--precision", "auto", "--out", str(tmp_path), *tiny
    )
    assert code == 0, err
    trials = pd.read_csv(tmp_path / "trials.csv")
    assert len(trials) == 4 and (trials["status"] == "trained").all(), trials
    assert trials["precision"].str.startswith(half()).all(), trials["precision"]
