from profiler.report import fmt_count, signed


def test_a_signed_difference_that_rounds_to_zero_is_plus_zero() -> None:
    assert [signed(x) for x in (1.256, -0.4, -0.001, -0.0, 0.0)] == ["+1.26", "-0.40", "+0.00", "+0.00", "+0.00"]  # was "-0.00"
    assert signed(-0.04, 1) == "+0.0" and signed(-0.06, 1) == "-0.1"


def test_counts_are_shown_in_millions_thousands_or_units() -> None:
    assert [fmt_count(n) for n in (519_050_000, -2_500, 12)] == ["519.05 M", "-2.5 k", "12"]
