"""bench/search_throughput.py: the architectures it takes, bad input, and a tiny run of both configurations."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from bench import search_throughput as st
from space.spec import E3DError


def test_spread_takes_evenly_spaced_ranks_with_both_ends_dearest_first() -> None:
    archs = [(f"a{i}", {"i": i}) for i in range(10)]
    assert [label for label, _ in st.spread(archs, 4)] == ["a9", "a6", "a3", "a0"]  # dearest first: the shortest run last
    assert st.spread(archs, 1) == archs[:1] and st.spread(archs, 10) == archs[::-1]
    with pytest.raises(E3DError, match="between 1 and 10"):
        st.spread(archs, 11)


def test_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert st.main(["--tiny", "--architectures", "0", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --architectures") and "\n" not in err


@pytest.mark.slow
def test_a_tiny_run_trains_the_same_architectures_both_ways(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert st.main(["--tiny", "--architectures", "2", "--jobs", "2", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "throughput.md").read_text().strip() == out.strip()
    rows = [line for line in out.splitlines() if line.startswith(("| before |", "| after |"))]
    assert len(rows) == 2 and all("| 2 |" in r for r in rows)  # both trained the 2 architectures
    assert "after / before: **" in out and "trained trials per hour (2 jobs" in out
    table = [line for line in out.splitlines() if line.startswith(("| preset", "| sampled"))]
    assert len(table) == 2 and all(" - |" not in line for line in table)
    # a second run calibrates again: nothing cached by the first makes auto look free
    assert st.main(["--tiny", "--architectures", "2", "--jobs", "2", "--out", str(tmp_path)]) == 0
    storage = f"sqlite:///{tmp_path / 'throughput.db'}"
    last = sorted(s.study_name for s in optuna.get_all_study_summaries(storage) if s.study_name.startswith("throughput.after"))[-1]
    reasons = [t.user_attrs["run_as"]["reason"] for t in optuna.load_study(study_name=last, storage=storage).trials]
    assert len(reasons) == 2 and all(r.startswith("calibrated") and "cached" not in r for r in reasons), reasons
