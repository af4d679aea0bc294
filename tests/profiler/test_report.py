from profiler.latency import Latency
from profiler.report import _latency_lines, fmt_count, signed


def test_a_signed_difference_that_rounds_to_zero_is_plus_zero() -> None:
    assert [signed(x) for x in (1.256, -0.4, -0.001, -0.0, 0.0)] == ["+1.26", "-0.40", "+0.00", "+0.00", "+0.00"]  # was "-0.00"
    assert signed(-0.04, 1) == "+0.0" and signed(-0.06, 1) == "-0.1"


def test_counts_are_shown_in_millions_thousands_or_units() -> None:
    assert [fmt_count(n) for n in (519_050_000, -2_500, 12)] == ["519.05 M", "-2.5 k", "12"]


def test_the_latency_line_says_the_dtype_is_the_input_s() -> None:
    lat = Latency(10.0, 1.0, 9.5, 10.5, 800.0, 8, (16, 112, 112), "cpu", "some cpu", 2, "2.13.0", "float32", 1, 3)
    first = _latency_lines(lat, {"precision": {"precision": "bf16"}})[0]
    assert "float32 input, median of 3" in first  # read as if a bf16 run had timed in float32
