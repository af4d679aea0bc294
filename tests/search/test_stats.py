"""The one statistics helper against values computed by hand."""

from __future__ import annotations

import math

import pytest

from search.stats import TEST, compare, compare_agreement, compare_paired, holm, sample_sd, summarize, welch_p


def test_summary_of_two_values_uses_the_sample_sd() -> None:
    s = summarize([70.0, 74.0])
    assert (s.mean, s.n) == (72.0, 2)
    assert s.sd == pytest.approx(math.sqrt(8.0))  # population sd would be 2.0
    assert s.format() == "72.0 ± 2.8 (n=2)"


def test_summary_of_three_values_and_of_one() -> None:
    assert summarize([1.0, 2.0, 3.0]).sd == pytest.approx(1.0)
    one = summarize([42.0])
    assert one.n == 1 and math.isnan(one.sd)
    assert one.format() == "42.0 (n=1)"
    assert math.isnan(sample_sd([5.0]))


def test_summary_refuses_nothing_and_nan() -> None:
    with pytest.raises(ValueError, match="no values"):
        summarize([])
    with pytest.raises(ValueError, match="NaN"):
        summarize([1.0, math.nan])


def test_welch_with_two_runs_each_is_a_tie_at_ten_points() -> None:
    # t = 10 / sqrt(8) with 2 degrees of freedom: p = 1 - t / sqrt(t^2 + 2)
    t = 10 / math.sqrt(8)
    v = compare([70.0, 74.0], [60.0, 64.0])
    assert v.p == pytest.approx(1 - t / math.sqrt(t * t + 2))
    assert v.outcome == "tie" and v.diff == pytest.approx(10.0)


def test_welch_with_three_runs_each_decides() -> None:
    win = compare([80.0, 81.0, 82.0], [70.0, 71.0, 72.0])
    loss = compare([70.0, 71.0, 72.0], [80.0, 81.0, 82.0])
    assert win.outcome == "win" and loss.outcome == "loss"
    assert win.p == pytest.approx(loss.p) and win.p < 1e-3
    assert "Welch" in win.format() and "sample sd" in win.reason
    assert win.format().startswith("win: +10.0 pp, p=") and win.format("%·M", 0).startswith("win: +10 %·M, p=")


def test_equal_means_tie_and_zero_spread_is_no_verdict() -> None:
    assert compare([50.0, 52.0], [52.0, 50.0]).outcome == "tie"
    same = compare([60.0, 60.0], [60.0, 60.0])
    assert same.outcome == "tie" and same.p == 1.0
    apart = compare([61.0, 61.0], [60.0, 60.0])  # was a "win" at p=0: two seeds that agree are no evidence of no spread
    assert apart.outcome == "tie" and math.isnan(apart.p) and "undefined" in apart.reason
    assert compare([61.0, 61.2, 61.1], [60.0, 60.0, 60.0]).outcome == "win"  # one side varies: a test


def test_a_paired_comparison_tests_the_mean_difference() -> None:
    # differences 1, 2, 3: mean 2, sample sd 1, t = 2 sqrt(3) with 2 degrees of freedom
    t = 2 * math.sqrt(3)
    v = compare_paired([11.0, 22.0, 33.0], [10.0, 20.0, 30.0])
    assert v.diff == pytest.approx(2.0) and v.p == pytest.approx(1 - t / math.sqrt(t * t + 2))
    assert v.outcome == "tie" and "paired t-test over 3 items" in v.reason


def test_pairing_finds_a_steady_shift_that_the_spread_between_items_hides() -> None:
    b = [10.0, 30.0, 50.0, 70.0, 90.0]
    a = [x + s for x, s in zip(b, (1.0, 1.2, 0.8, 1.1, 0.9), strict=True)]
    assert compare(a, b).outcome == "tie"
    assert compare_paired(a, b).outcome == "win" and compare_paired(b, a).outcome == "loss"
    assert compare_paired(a, b).p < 1e-3


def test_a_paired_comparison_of_constant_differences_or_of_one_pair_is_no_test() -> None:
    steady = compare_paired([2.0, 3.0], [1.0, 2.0])
    assert steady.outcome == "tie" and math.isnan(steady.p) and "undefined" in steady.reason
    assert compare_paired([1.0, 2.0], [1.0, 2.0]).outcome == "tie"
    one = compare_paired([5.0], [1.0])
    assert one.outcome == "tie" and math.isnan(one.p)
    with pytest.raises(ValueError, match="equal lengths"):
        compare_paired([1.0, 2.0], [1.0])


def test_too_few_runs_is_never_a_win() -> None:
    v = compare([99.0], [10.0, 11.0])
    assert v.outcome == "tie" and math.isnan(v.p) and "too few runs" in v.reason
    with pytest.raises(ValueError):
        welch_p(summarize([1.0]), summarize([1.0, 2.0]))


def test_no_win_at_or_below_chance() -> None:
    a, b = [9.0, 9.5, 9.8], [5.0, 5.5, 5.2]
    assert compare(a, b).outcome == "win"
    v = compare(a, b, chance=10.0)
    assert v.outcome == "tie" and "chance" in v.reason
    assert compare(b, a, chance=10.0).outcome == "loss"  # a loss stays a loss


def test_alpha_is_stated() -> None:
    assert "0.05" in TEST
    assert compare([70.0, 74.0], [60.0, 64.0], alpha=0.1).outcome == "win"  # p = 0.0715


def test_geomean_of_speedups() -> None:
    from search.stats import geomean

    assert geomean([2.0, 8.0]) == pytest.approx(4.0)
    assert geomean(iter([0.5, 2.0, 1.0])) == pytest.approx(1.0)
    assert math.isnan(geomean([]))


def test_a_ranking_closer_to_the_reference_wins_its_agreement_comparison() -> None:
    reference = list(range(12))
    close = [r + 0.6 * (-1) ** r for r in reference]  # neighbours swapped: Spearman 0.96
    reversed_ = reference[::-1]
    win = compare_agreement(close, reversed_, reference)
    assert win.outcome == "win" and win.diff == pytest.approx(1 + (1 - 6 * 12 / (12 * 143))) and win.p < 0.01
    assert "paired bootstrap" in win.reason and "n=12" in win.reason
    assert compare_agreement(reversed_, close, reference).outcome == "loss"
    same = compare_agreement(close, close, reference)
    assert same.outcome == "tie" and same.diff == 0 and same.p == 1
    assert compare_agreement(close, reversed_, reference) == win  # seeded: the same inputs, the same verdict


def test_an_agreement_comparison_without_enough_items_is_a_tie_without_a_test() -> None:
    v = compare_agreement([1, 2], [2, 1], [1, 2])
    assert v.outcome == "tie" and math.isnan(v.p) and "too few" in v.reason
    with pytest.raises(ValueError, match="rank agreement of 3, 2 and 3 values"):
        compare_agreement([1, 2, 3], [1, 2], [1, 2, 3])


@pytest.mark.parametrize(("value", "na", "nb"), [(21 / 300 * 100, 2, 10), (23 / 300 * 100, 2, 9), (56.7, 3, 7)])
def test_equal_runs_on_both_sides_tie_with_p_1(value: float, na: int, nb: int) -> None:
    s = summarize([value] * nb)
    assert (s.mean, s.sd) == (value, 0.0)  # the mean was off by a unit in the last place, the sd 1e-15
    v = compare([value] * na, [value] * nb)
    assert (v.outcome, v.diff, v.p) == ("tie", 0.0, 1.0)  # was a "loss" at p=0.015 for the first


def test_holm_multiplies_the_smallest_p_by_the_number_of_tests_and_keeps_the_adjusted_ps_monotone() -> None:
    out = holm([0.04, 0.01, 0.03])  # sorted 0.01 x 3, 0.03 x 2, 0.04 x 1 -> 0.03, 0.06, max(0.06, 0.04)
    assert [a for a, _ in out] == pytest.approx([0.06, 0.03, 0.06])
    assert [s for _, s in out] == [False, True, False]
    assert holm([0.5, 0.9]) == [(1.0, False), (1.0, False)]  # capped at 1
    assert holm([0.01], alpha=0.05) == [(0.01, True)]  # one test: unchanged
    (a, sig), (b, sig_b) = holm([math.nan, 0.02])
    assert math.isnan(a) and not sig and b == pytest.approx(0.04) and sig_b  # a tie without a test still counts
    assert holm([]) == []
