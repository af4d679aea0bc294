"""Hypervolume and dominance of 2-D (accuracy up, macs down) fronts, against hand-computed areas."""

from __future__ import annotations

import pytest

from search.front import coverage, dominates, hypervolume, hypervolumes_by_seed, pareto_front, pick_members


def test_dominance_needs_one_strict_improvement() -> None:
    assert dominates((60.0, 100.0), (50.0, 100.0))
    assert dominates((60.0, 90.0), (60.0, 100.0))
    assert not dominates((60.0, 100.0), (60.0, 100.0))  # a tie dominates nothing
    assert not dominates((70.0, 200.0), (60.0, 100.0))  # better and costlier: incomparable


def test_single_point_is_its_rectangle() -> None:
    # (1000 - 200) x (60 - 10) = 800 x 50
    assert hypervolume([(60.0, 200.0)], ref_accuracy=10.0) == pytest.approx(40_000.0)
    assert hypervolume([], ref_accuracy=10.0) == 0.0


def test_staircase_of_three_points() -> None:
    # points (40, 100), (60, 400), (80, 700), ref (20, 1000):
    # strips: 900 x 20 + 600 x 20 + 300 x 20 = 18000 + 12000 + 6000
    front = [(60.0, 400.0), (40.0, 100.0), (80.0, 700.0)]
    assert hypervolume(front, ref_accuracy=20.0) == pytest.approx(36_000.0)


def test_dominated_points_and_ties_add_nothing() -> None:
    base = hypervolume([(40.0, 100.0), (80.0, 700.0)], ref_accuracy=20.0)
    assert base == pytest.approx(900 * 20 + 300 * 40)
    # a dominated point, a duplicate, and a same-cost point that is less accurate
    more = [(40.0, 100.0), (80.0, 700.0), (30.0, 500.0), (40.0, 100.0), (35.0, 100.0), (80.0, 800.0)]
    assert hypervolume(more, ref_accuracy=20.0) == pytest.approx(base)
    # same accuracy, cheaper: the cheaper one counts alone
    assert hypervolume([(50.0, 300.0), (50.0, 200.0)], ref_accuracy=10.0) == pytest.approx(800 * 40)


def test_points_beyond_the_reference_add_nothing() -> None:
    inside = hypervolume([(50.0, 500.0)], ref_accuracy=10.0)
    beyond = [(50.0, 500.0), (95.0, 1000.0), (99.0, 1500.0), (10.0, 1.0), (5.0, 50.0)]
    assert hypervolume(beyond, ref_accuracy=10.0) == pytest.approx(inside) == pytest.approx(500 * 40)
    assert hypervolume([(95.0, 1200.0)], ref_accuracy=10.0) == 0.0
    assert hypervolume([(60.0, 100.0)], ref_accuracy=10.0, ref_macs=200.0) == pytest.approx(100 * 50)


def test_pareto_front_keeps_non_dominated_by_cost() -> None:
    pts = [(80.0, 700.0), (30.0, 500.0), (40.0, 100.0), (40.0, 100.0), (60.0, 400.0), (60.0, 450.0)]
    assert pareto_front(pts) == [(40.0, 100.0), (60.0, 400.0), (80.0, 700.0)]


def test_coverage_looks_only_at_no_costlier_networks() -> None:
    presets = [("p-small", 50.0, 100.0), ("p-big", 70.0, 800.0), ("p-tiny", 30.0, 10.0)]
    searched = [("s1", 55.0, 90.0), ("s2", 69.0, 500.0), ("s3", 90.0, 900.0)]
    out = {c.preset: c for c in coverage(presets, searched)}
    assert out["p-small"].covered and out["p-small"].best == "s1"
    assert not out["p-big"].covered and out["p-big"].best == "s2"  # s3 is more accurate but costs more
    assert not out["p-tiny"].covered and out["p-tiny"].best is None


def test_pick_members_spreads_over_cost() -> None:
    front = [(10.0 + i, 100.0 * i) for i in range(1, 11)]
    assert pick_members(front, 20) == front
    picked = pick_members(front, 4)
    assert len(picked) == 4 and picked[0] == front[0] and picked[-1] == front[-1]
    assert pick_members(front, 1) == [front[-1]]  # the most accurate


def test_hypervolume_per_seed_covers_every_network() -> None:
    runs = [("a", 1, 60.0, 200.0), ("b", 1, 40.0, 100.0), ("a", 2, 50.0, 200.0), ("b", 2, 40.0, 100.0), ("a", 3, 70.0, 200.0)]
    hv = hypervolumes_by_seed(runs, ref_accuracy=10.0)
    assert set(hv) == {1, 2}  # seed 3 lacks b
    assert hv[1] == pytest.approx(900 * 30 + 800 * 20)
    assert hv[2] == pytest.approx(900 * 30 + 800 * 10)
