"""``e3d profile --data``: min/mean/max over a dataset's clips, one clip's exact count, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import space
from profiler.counting import spec_totals
from profiler.datacost import dataset_bins
from search.data import proxy_dataset
from space.sgs import with_sgs
from tests.e3d.test_cli_models import run


@pytest.fixture
def sgs_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("E3D_CACHE", str(tmp_path / "cache"))
    spec = with_sgs(space.paper_spec("mobilenetv2", width_mult=0.2, num_classes=10, sample_size=48), 0)
    path = tmp_path / "net.json"
    spec.save(path)
    return path


def test_profile_data_reports_min_mean_max_and_one_clip(capsys: pytest.CaptureFixture[str], sgs_file: Path) -> None:
    code, out, err = run(
        capsys, "profile", str(sgs_file), "--no-latency", "--data", "motion", "--samples", "6", "--clip-index", "2", "--json"
    )
    assert code == 0, err
    d = json.loads(out)
    spec = space.NetSpec.load(sgs_file)
    torch.manual_seed(0)  # as the autouse fixture seeded the command's: the same untrained weights
    model = space.build(spec)
    bins = dataset_bins(model, proxy_dataset("motion", split="val", num_samples=6, progress=False))
    macs = [spec_totals(spec, sgs_bins=b).macs for b in bins]
    assert d["data"]["clips"] == 6 and d["data"]["source"] == "motion/val"
    assert (d["data"]["macs_min"], d["data"]["macs_max"]) == (min(macs), max(macs))
    assert d["data"]["macs_mean"] == pytest.approx(sum(macs) / 6, abs=0.1)
    assert d["data"]["macs_upper_bound"] == spec_totals(spec).macs
    assert d["clip"]["bins"] == list(bins[2]) and d["clip"]["macs"] == d["clip"]["executed_macs"] == d["macs"] == macs[2]
    code, out, _ = run(capsys, "profile", str(sgs_file), "--no-latency", "--data", "motion", "--samples", "6")
    assert code == 0 and "mean" in out and "SGS after stage 0" in out and "bins kept on average" in out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--clip-index", "1"], "give --data too"),
        (["--data", "motion", "--samples", "3", "--clip-index", "5"], "past the 3 clips"),
        (["--data", "nowhere/at/all"], "nowhere"),
        (["--weights", "missing.pt"], "no such checkpoint file: missing.pt"),
    ],
)
def test_bad_data_options_are_one_line_errors(capsys: pytest.CaptureFixture[str], sgs_file: Path, argv: list[str], words: str) -> None:
    code, _, err = run(capsys, "profile", str(sgs_file), "--no-latency", *argv)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err


def test_a_network_without_sgs_costs_the_same_on_every_clip(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = space.paper_spec("mobilenet", width_mult=0.5, num_classes=10, sample_size=48)
    spec.save(tmp_path / "plain.json")
    code, out, _ = run(capsys, "profile", str(tmp_path / "plain.json"), "--no-latency", "--data", "digits", "--samples", "3", "--json")
    d = json.loads(out)["data"]
    assert code == 0 and d["macs_min"] == d["macs_max"] == spec_totals(spec).macs and d["sgs"] == []


def test_sweep_with_sgs_runs_each_preset_with_and_without(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd

    from e3d.cli import main
    from tests.search.test_study import fake_fit

    monkeypatch.setenv("E3D_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("search.train.fit", fake_fit([]))
    # 16x48x48: at 16x32x32 a lone clip that keeps one bin would reach a 1x1x1 BatchNorm (search.budget.check_batch_norms)
    tiny = ["--proxy-clip", "16x48x48", "--train-samples", "16", "--val-samples", "8", "--epochs", "1", "--batch-size", "8", "--quiet"]
    assert main(["sweep", "--families", "sevnet", "--sgs", "--seeds", "1", "--no-latency", "--out", str(tmp_path), *tiny]) == 0
    df = pd.read_csv(tmp_path / "trials_full.csv")
    widths = space.model_info("sevnet").paper_widths
    assert len(df) == 2 * len(widths) and (df["state"] == "COMPLETE").all() and df["feasible"].all()
    sgs = df[df["spec.sgs.0.after_stage"].notna()]
    assert sorted(sgs["width_mult"]) == sorted(widths) and (sgs["spec.sgs.0.after_stage"] == 0).all()
    plain = df[df["spec.sgs.0.after_stage"].isna()].set_index("width_mult")["macs"]
    upper = {w: spec_totals(with_sgs(space.paper_spec("sevnet", width_mult=w, num_classes=10), 0)).macs for w in widths}
    for _, row in sgs.iterrows():
        assert row["macs"] <= upper[row["width_mult"]], "an SGS row records its mean cost, at most its most expensive clip"
    assert len(plain) == len(widths)
