"""bench/search_throughput.py: the architectures it takes, bad input, and a tiny run of both configurations."""

from __future__ import annotations

import datetime
from pathlib import Path

import optuna
import pytest

from bench import search_throughput as st
from profiler.cpu import detect_cpu
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


def result(name: str, seconds: float, n: int) -> st.Result:
    trials = [optuna.trial.create_trial(value=1.0, user_attrs={"label": f"x{i}", "accuracy": 50.0}) for i in range(n)]
    return st.Result(name, f"{name} settings", seconds, trials)


def test_abba_counts_both_rounds_of_each_configuration() -> None:
    # a machine that slows down steadily: each round takes 60 s longer than the one before
    rounds = [result("before", 600, 4), result("after", 360, 4), result("after", 420, 4), result("before", 780, 4)]
    text = st.report(rounds, command="cmd", jobs=2)
    assert "| all | before | | 8 | 23.0 | 20.9 | |" in text and "| all | after | | 8 | 13.0 | 36.9 | |" in text
    assert "after / before: **1.77x**" in text  # (8 / 780 s) / (8 / 1380 s); round 1 against round 2 alone: 1.67x
    numbered = [line.split("|")[1].strip() for line in text.splitlines() if "settings |" in line]
    assert numbered == ["round", "1", "2", "3", "4"]
    assert st.ORDERS["abba"] == ("before", "after", "after", "before")


def test_a_round_reports_the_seconds_its_trials_do_not_span() -> None:
    """Starting the workers, and one waiting for the other at the end, show up there (issue 15's bench)."""
    r = result("after", 100, 2)
    t0 = datetime.datetime(2026, 12, 6, 9, 0, 0)
    for trial, (start, end) in zip(r.trials, [(2, 50), (3, 92)], strict=True):
        trial.datetime_start, trial.datetime_complete = t0 + datetime.timedelta(seconds=start), t0 + datetime.timedelta(seconds=end)
    assert r.outside_trials == pytest.approx(10.0)  # 100 s of wall, trials from 2 s to 92 s
    text = st.report([result("before", 100, 2), r], command="c", jobs=2)
    assert "| 2 | after | after settings | 2 | 1.7 | 72.0 | 10.0 |" in text


@pytest.mark.slow
def test_a_tiny_run_trains_the_same_architectures_both_ways(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert st.main(["--tiny", "--architectures", "2", "--jobs", "2", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "throughput.md").read_text().strip() == out.strip()
    assert f", {detect_cpu().describe()}, " in out.splitlines()[0]  # the CPU with its ISA, not only its model name
    rows = [line for line in out.splitlines() if line.startswith(("| all | before |", "| all | after |"))]
    assert len(rows) == 2 and all("| 4 |" in r for r in rows)  # both rounds of both trained the 2 architectures
    assert "after / before: **" in out and "trained trials per hour (2 jobs" in out
    table = [line for line in out.splitlines() if line.startswith(("| preset", "| sampled"))]
    assert len(table) == 2 and all(" - |" not in line for line in table)
    # the second after round calibrates again: nothing cached by the first makes auto look free
    storage = f"sqlite:///{tmp_path / 'throughput.db'}"
    afters = sorted(s.study_name for s in optuna.get_all_study_summaries(storage) if s.study_name.startswith("throughput.after"))
    assert len(afters) == 2
    reasons = [t.user_attrs["run_as"]["reason"] for t in optuna.load_study(study_name=afters[-1], storage=storage).trials]
    assert len(reasons) == 2 and all(r.startswith("calibrated") and "cached" not in r for r in reasons), reasons
    assert not list(tmp_path.glob("cache-*"))  # each round's cache is removed after it
