"""The findings' computations on hand-made rows and on Table 8 (checked against the table's own numbers)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy.stats import spearmanr

import space
from analysis import (
    DATASETS,
    PLATFORMS,
    depth_comparison,
    from_study,
    normalize,
    paper_findings,
    paper_frame,
    rank_correlation,
    speed_rank_correlation,
    width_curves,
    width_drops,
    width_summary,
)
from search.results import COLUMNS
from tests.analysis.helpers import T, make_study


def rows(points: list[dict[str, object]]) -> pd.DataFrame:
    base = {"state": "COMPLETE", "feasible": True, "params": 1.0}
    return normalize(pd.DataFrame([{**base, "number": i, **p} for i, p in enumerate(points)]))


def test_width_curves_average_seeds_and_ignore_unfinished() -> None:
    study = make_study(
        [
            T("mobilenet", 1.0, 50.0, source="sweep"),
            T("mobilenet", 1.0, 54.0, seed=1, source="sweep"),
            T("mobilenet", 1.0, 58.0, seed=2, source="sweep"),
            T("mobilenet", 0.5, 40.0, source="sweep"),
            T("mobilenet", 0.25, 99.0, state="PRUNED", source="sweep"),
            T("mobilenet", 2.0, None, feasible=False, source="sweep"),
        ]
    )
    c = width_curves(from_study(study).trials)
    assert c["width_mult"].tolist() == [0.5, 1.0]
    one = c[c["width_mult"] == 1.0].iloc[0]
    assert one["n"] == 3 and one["accuracy_mean"] == 54.0 and one["accuracy_std"] == 4.0
    assert (one["accuracy_min"], one["accuracy_max"]) == (50.0, 58.0)
    assert math.isnan(c[c["width_mult"] == 0.5]["accuracy_std"].item())


def test_width_drops_between_adjacent_widths() -> None:
    df = rows(
        [{"family": "f", "width_mult": w, "macs": w * 1e8, "accuracy": a} for w, a in [(2.0, 60.0), (1.0, 55.0), (0.5, 45.0), (0.25, 25.0)]]
        + [{"family": "g", "width_mult": 1.0, "macs": 1e8, "accuracy": 10.0}]
    )
    d = width_drops(df)
    assert d["family"].tolist() == ["f", "f", "f"]  # g has one width: no step
    assert list(zip(d["wide"], d["narrow"], strict=True)) == [(2.0, 1.0), (1.0, 0.5), (0.5, 0.25)]
    assert d["drop"].tolist() == [5.0, 10.0, 20.0]
    assert d["drop_per_tenth"].tolist() == pytest.approx([0.5, 2.0, 8.0])
    assert d["below"].tolist() == [False, False, True]
    s = width_summary(d)
    assert (s.below, s.n_below, s.above, s.n_above) == (8.0, 1, pytest.approx(1.25), 2)
    assert s.ratio == pytest.approx(6.4)


def test_depth_comparison_picks_the_best_deeper_model_that_costs_no_more() -> None:
    df = rows(
        [
            {"family": "mobilenet", "width_mult": 1.0, "macs": 100.0, "accuracy": 40.0},
            {"family": "squeezenet", "width_mult": 1.0, "macs": 30.0, "accuracy": 30.0},
            {"family": "shufflenet", "width_mult": 1.0, "macs": 90.0, "accuracy": 45.0},
            {"family": "mobilenetv2", "width_mult": 1.0, "macs": 100.0, "accuracy": 47.0},  # equal cost counts
            {"family": "shufflenetv2", "width_mult": 1.0, "macs": 101.0, "accuracy": 90.0},  # costlier: never chosen
        ]
    )
    d = depth_comparison(df)
    assert d["family"].tolist() == ["squeezenet", "mobilenet"]
    squeeze, mobile = d.iloc[0], d.iloc[1]
    assert pd.isna(squeeze["deeper_family"]) and pd.isna(squeeze["gain"])  # nothing deeper is that cheap
    assert mobile["deeper_family"] == "mobilenetv2" and mobile["gain"] == 7.0


def test_rank_correlation_and_discordant_pairs() -> None:
    up = pd.DataFrame({"x": [1, 2, 3, 4], "y": [10, 20, 30, 40]})
    assert rank_correlation(up, "x", "y").rho == pytest.approx(1.0) and rank_correlation(up, "x", "y").discordant == 0.0
    down = up.assign(y=[40, 30, 20, 10])
    assert rank_correlation(down, "x", "y").rho == pytest.approx(-1.0) and rank_correlation(down, "x", "y").discordant == 1.0
    one_swap = up.assign(y=[20, 10, 30, 40])  # 1 of 6 pairs reversed
    c = rank_correlation(one_swap, "x", "y")
    assert c.discordant == pytest.approx(1 / 6) and c.rho == pytest.approx(spearmanr([1, 2, 3, 4], [20, 10, 30, 40]).statistic)
    few = rank_correlation(up.head(2), "x", "y")
    assert math.isnan(few.rho) and few.n == 2 and "undefined" in few.describe()


def test_speed_correlation_counts_every_timed_architecture_trained_or_not() -> None:
    df = rows(
        [
            {"family": "a", "width_mult": 1.0, "macs": 1.0, "accuracy": 1.0, "latency_ms": 30.0},
            {"family": "b", "width_mult": 1.0, "macs": 2.0, "accuracy": 1.0, "latency_ms": 20.0},
            {"family": "c", "width_mult": 1.0, "macs": 3.0, "accuracy": None, "latency_ms": 10.0, "feasible": False},
            {"family": "d", "width_mult": 1.0, "macs": 4.0, "accuracy": 1.0},
            {"state": "WAITING", "family": None, "width_mult": None, "macs": None, "params": None},  # queued, nothing known yet
        ]
    )
    c = speed_rank_correlation(df)
    assert c.n == 3 and c.rho == pytest.approx(-1.0)


def test_paper_frame_is_table8_in_the_trials_schema() -> None:
    table = [r for r in space.table8() if not r.model.startswith("res")]
    df = paper_frame("jester")
    assert list(df.columns[: len(COLUMNS)]) == COLUMNS and len(df) == len(table) == 17
    assert df["accuracy"].tolist() == [r.jester_top1 for r in table]
    assert df["paper_mflops"].tolist() == [r.mflops for r in table]
    assert (df["source"] == "paper").all() and (df["state"] == "COMPLETE").all()
    assert df["titanxp_latency_ms"].tolist() == pytest.approx([8000 / r.titanxp_clips_s for r in table])
    # e3d's multiply-adds are within a few % of the table's MFLOPs (which add BN, activations, ...)
    assert ((df["macs"] / 1e6) / df["paper_mflops"]).between(0.85, 1.0).all()
    assert len(paper_frame("ucf101", resnets=True)) == 21


def test_paper_findings_agree_with_the_table() -> None:
    f = paper_findings()
    by = {(r.model, r.width_mult): r for r in space.table8()}
    k = f.datasets["kinetics600"].drops.set_index(["family", "narrow"])
    mbv2 = by["mobilenetv2", 0.45].kinetics600_top1 - by["mobilenetv2", 0.2].kinetics600_top1
    assert k.loc[("mobilenetv2", 0.2), "drop"] == pytest.approx(mbv2)
    assert k.loc[("shufflenetv2", 0.25), "wide"] == 1.0
    for key in DATASETS:
        w = f.datasets[key].widths
        assert w.n_below == 3 and w.n_above == 9 and w.below > w.above  # the collapse below 0.5x, on every dataset
        depth = f.datasets[key].depth
        assert len(depth) == 5 and (depth["gain"] > 0).all()  # deeper wins at every shallower model's budget
    eff = [r for r in space.table8() if not r.model.startswith("res")]
    for key in PLATFORMS:
        expected = spearmanr([r.mflops for r in eff], [1 / getattr(r, f"{key}_clips_s") for r in eff]).statistic
        assert f.speed[key].rho == pytest.approx(expected) and f.speed[key].n == 17
        assert 0 < f.speed[key].rho < 0.9  # FLOPs rank speed only loosely
    assert f.speed_with_resnets["titanxp"].n == 21
