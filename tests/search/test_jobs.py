"""Parallel local jobs: N worker processes on one SQLite study, every trial run once."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search import study as st
from search.budget import Budget
from search.jobs import JobSpec, enable_wal, oversubscription, parse_jobs, run_jobs, usable_cores

PROXY = st.ProxyConfig(clip=(8, 32, 32), train_samples=24, val_samples=8, epochs=1, batch_size=8, threads=1)


def test_jobs_values_and_the_oversubscription_warning() -> None:
    assert parse_jobs("3") == 3 and parse_jobs("auto") == usable_cores() >= 1
    for bad in ("0", "-1", "two"):
        with pytest.raises(ValueError, match="positive integer or auto"):
            parse_jobs(bad)
    assert oversubscription(2, None, cores=2) is None
    warning = oversubscription(3, None, cores=2)
    assert warning is not None and "3 jobs x 1 thread = 3 > 2 cores" in warning
    assert oversubscription(2, 2, cores=2) is not None


def test_a_sqlite_storage_is_switched_to_write_ahead_logging(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    st.open_storage(url)
    assert enable_wal(url)
    with sqlite3.connect(tmp_path / "study.db") as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert not enable_wal("postgresql://h/db")


@pytest.mark.slow
def test_two_jobs_run_every_queued_trial_exactly_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    config = st.SearchConfig(budget=Budget(), families=("mobilenet",), proxy=PROXY, pruner="none", baselines=False, kind="sweep")
    study, config, created = st.open_study("jobs", st.open_storage(url, heartbeat=2), config)
    assert created
    queued = st.enqueue_sweep(study, config.families, (0, 1))
    st.load_proxy(config.proxy, progress=False)  # the proxy data is made once, before the jobs read it
    seen: list[int] = []
    reports = run_jobs(
        study,
        JobSpec(url, "jobs", config, n_trials=0, timeout=None, heartbeat=2, latency=None),
        jobs=2,
        on_trial=lambda t: seen.append(t.number),
    )
    trials = optuna.load_study(study_name="jobs", storage=url).get_trials()
    assert len(trials) == queued == 8 and sorted(seen) == [t.number for t in trials]
    assert all(t.state == TrialState.COMPLETE and t.user_attrs.get("trained") for t in trials)
    runs = Counter((t.params["mobilenet.width_mult"], t.user_attrs["seed"]) for t in trials)
    assert len(runs) == 8 and set(runs.values()) == {1}  # none lost, none run twice
    assert len(reports) == 2 and sum(r["trained"] for r in reports) == 8
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both jobs trained
    assert {t.user_attrs["precision"] for t in trials} == {"fp32 eager"}


@pytest.mark.slow
def test_a_job_that_fails_is_one_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    config = st.SearchConfig(budget=Budget(), families=("mobilenet",), proxy=PROXY, kind="sweep")
    spec = JobSpec(url, "missing", dataclasses.replace(config), n_trials=0, timeout=None, heartbeat=2, latency=None)
    study, _, _ = st.open_study("other", st.open_storage(url), config)
    with pytest.raises(Exception, match="job 0: StudyConfigError: no study 'missing' to resume"):
        run_jobs(study, spec, jobs=1)
