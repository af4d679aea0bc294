"""bench.core_sharing: the share kept, the cache size, and a tiny run end to end."""

from __future__ import annotations

import pytest

from bench import core_sharing as cs


def test_the_share_kept_is_the_mean_rate_together_over_the_rate_alone() -> None:
    assert cs.kept(40.0, [20.0, 30.0]) == pytest.approx(0.625)
    assert cs.kept(10.0, [10.0]) == 1.0


def test_the_last_level_cache_is_read_in_mib() -> None:
    size = cs.l3_mib()
    assert size is None or 0.01 < size < 4096


def test_a_tiny_run_prints_every_workload_alone_and_together(capsys: pytest.CaptureFixture[str]) -> None:
    assert cs.main(["--sizes-mib", "0.1", "--seconds", "0.05", "--processes", "2", "--rounds", "2"]) == 0
    out = capsys.readouterr().out
    rows = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| ") and "workload" not in line]
    assert rows == ["matmul", "add 0.1 MiB"]
    cells = next(line for line in out.splitlines() if line.startswith("| matmul")).split("|")
    shares = [float(k) for k in cells[5].split(",")]
    assert len(shares) == 2 and 0 < float(cells[6]) < 10 and min(shares) <= float(cells[6]) <= max(shares)


def test_a_non_positive_duration_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cs.main(["--seconds", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --seconds and --sizes-mib must be positive"
