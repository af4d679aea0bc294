"""Pareto fronts on hand-made points: dominance, ties, infeasible, pruned and failed trials, seeds."""

from __future__ import annotations

import math

import pandas as pd

from analysis import architectures, from_study, normalize, pareto_points, pareto_table
from tests.analysis.helpers import MIXED, T, make_study


def rows(points: list[dict[str, object]]) -> pd.DataFrame:
    """Trial rows without specs: each point is its own architecture unless family/width/costs repeat."""
    base = {"state": "COMPLETE", "feasible": True, "source": "search"}
    return normalize(pd.DataFrame([{**base, "number": i, **p} for i, p in enumerate(points)]))


def test_front_keeps_only_undominated_points() -> None:
    df = rows(
        [
            {"family": "a", "width_mult": 1.0, "macs": 10e6, "params": 1, "accuracy": 50.0},
            {"family": "b", "width_mult": 1.0, "macs": 20e6, "params": 1, "accuracy": 60.0},
            {"family": "c", "width_mult": 1.0, "macs": 30e6, "params": 1, "accuracy": 55.0},  # dominated by b
            {"family": "d", "width_mult": 1.0, "macs": 10e6, "params": 1, "accuracy": 45.0},  # dominated by a (same cost)
            {"family": "e", "width_mult": 1.0, "macs": 40e6, "params": 1, "accuracy": 70.0},
        ]
    )
    front = pareto_table(df)
    assert front["family"].tolist() == ["a", "b", "e"]
    assert front["macs"].is_monotonic_increasing and front["accuracy"].is_monotonic_increasing


def test_exact_ties_are_all_on_the_front() -> None:
    df = rows(
        [
            {"family": "a", "width_mult": 1.0, "macs": 10e6, "params": 1, "accuracy": 50.0},
            {"family": "b", "width_mult": 1.0, "macs": 10e6, "params": 2, "accuracy": 50.0},
            {"family": "c", "width_mult": 1.0, "macs": 10e6, "params": 3, "accuracy": 49.0},
        ]
    )
    assert sorted(pareto_table(df)["family"]) == ["a", "b"]
    # against params the tie is broken: a is cheaper at equal accuracy
    assert pareto_table(df, cost="params")["family"].tolist() == ["a"]


def test_infeasible_pruned_failed_and_running_trials_never_make_the_front() -> None:
    df = rows(
        [
            {"family": "ok", "width_mult": 1.0, "macs": 50e6, "params": 1, "accuracy": 40.0},
            {"family": "rejected", "width_mult": 1.0, "macs": 5e6, "params": 1, "accuracy": 99.0, "feasible": False},
            {"family": "pruned", "width_mult": 1.0, "macs": 5e6, "params": 1, "accuracy": 99.0, "state": "PRUNED"},
            {"family": "failed", "width_mult": 1.0, "macs": 5e6, "params": 1, "accuracy": 99.0, "state": "FAIL"},
            {"family": "running", "width_mult": 1.0, "macs": 5e6, "params": 1, "accuracy": 99.0, "state": "RUNNING"},
            {"family": "no-accuracy", "width_mult": 1.0, "macs": 5e6, "params": 1, "accuracy": None},
        ]
    )
    points = pareto_points(df)
    assert points["family"].tolist() == ["ok"] and points["on_front"].tolist() == [True]


def test_unknown_cost_is_left_out_not_counted_as_zero() -> None:
    df = rows(
        [
            {"family": "timed", "width_mult": 1.0, "macs": 50e6, "params": 1, "accuracy": 40.0, "latency_ms": 100.0},
            {"family": "untimed", "width_mult": 1.0, "macs": 60e6, "params": 1, "accuracy": 90.0},
        ]
    )
    assert pareto_table(df, cost="latency_ms")["family"].tolist() == ["timed"]
    assert pareto_table(df, cost="macs")["family"].tolist() == ["timed", "untimed"]
    assert pareto_points(rows([]), cost="latency_ms").empty


def test_seeds_of_one_architecture_are_one_point_with_mean_and_spread() -> None:
    df = from_study(make_study(MIXED)).trials
    arch = architectures(df)
    assert len(arch) == 4  # mobilenetv2 0.2, mobilenet 0.5 (two seeds), mobilenet 1.0, shufflenet 0.5
    two = arch[arch["n"] == 2].iloc[0]
    assert two["family"] == "mobilenet" and two["width_mult"] == 0.5
    assert two["accuracy"] == 42.0 and math.isclose(two["accuracy_std"], math.sqrt(8.0))
    assert two["trials"] == "1,2"
    front = pareto_table(df)
    # shufflenet 0.5 (cheaper, 50%) dominates mobilenet 0.5's mean of 42%
    assert ("mobilenet", 0.5) not in set(zip(front["family"], front["width_mult"], strict=True))
    assert front["family"].tolist() == ["mobilenetv2", "shufflenet", "mobilenet"]


def test_a_lucky_seed_does_not_make_the_front_alone() -> None:
    study = make_study([T("mobilenet", 0.5, 10.0), T("mobilenet", 0.5, 90.0, seed=1), T("shufflenet", 0.5, 60.0, macs=100e6)])
    front = pareto_table(from_study(study).trials)
    # mobilenet 0.5 (94 M macs): mean 50 < 60 of a (slightly) costlier shufflenet, both on the front
    assert set(front["family"]) == {"mobilenet", "shufflenet"}
    assert front.loc[front["family"] == "mobilenet", "accuracy"].item() == 50.0
