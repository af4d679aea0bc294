"""Parallel local jobs: N worker processes on one SQLite study, every trial run once."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

import search.jobs
from search import study as st
from search.budget import Budget
from search.interrupts import interrupt_signals
from search.jobs import JobsError, JobSpec, oversubscription, parse_jobs, run_jobs, usable_cores
from tests.profiler.test_allocator import GLIBC

PROXY = st.ProxyConfig(clip=(8, 32, 32), train_samples=24, val_samples=8, epochs=1, batch_size=8, threads=1)


def test_jobs_values_and_the_oversubscription_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_jobs("3") == 3 and usable_cores() >= 1
    monkeypatch.setattr("search.jobs.usable_cores", lambda: 5)
    assert parse_jobs("auto") == 5
    for bad in ("0", "-1", "two"):
        with pytest.raises(ValueError, match="positive integer or auto"):
            parse_jobs(bad)
    assert parse_jobs("20") == 20  # oversubscribed: a warning when the jobs start
    with pytest.raises(ValueError, match=r"at most 20 \(4 per core here"):
        parse_jobs("21")
    assert oversubscription(2, None, cores=2) is None
    warning = oversubscription(3, None, cores=2)
    assert warning is not None and "3 jobs x 1 thread = 3 > 2 cores" in warning
    assert oversubscription(2, 2, cores=2) is not None


def test_a_sqlite_storage_writes_ahead_and_commits_without_waiting_for_the_disk(tmp_path: Path) -> None:
    storage = st.open_storage(st.sqlite_url(tmp_path / "study.db"))
    optuna.create_study(storage=storage, study_name="s")
    with sqlite3.connect(tmp_path / "study.db") as con:  # the mode is stored in the file
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with storage.engine.connect() as con:
        assert con.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL (FULL is 2)


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
    assert {r["allocator"] for r in reports} == {"keep" if GLIBC else "system"}  # each job set malloc up as the CLI does
    assert {r["threads"] for r in reports} == {1}  # one thread for the whole job, not only while training
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


@pytest.mark.slow
def test_more_threads_than_cores_is_a_warning_before_the_jobs_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    config = st.SearchConfig(budget=Budget(), families=("mobilenet",), proxy=PROXY, kind="sweep")
    spec = JobSpec(url, "missing", config, n_trials=0, timeout=None, heartbeat=2, latency=None)  # fails fast
    study, _, _ = st.open_study("other", st.open_storage(url), config)
    monkeypatch.setattr("search.jobs.usable_cores", lambda: 1)
    for jobs, warned in ((1, False), (2, True)):
        with pytest.raises(JobsError):
            run_jobs(study, spec, jobs=jobs)
        err = capsys.readouterr().err
        assert ("warning: 2 jobs x 1 thread = 2 > 1 cores here" in err) == warned


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
def test_a_cpu_budget_stops_the_search_after_the_trial_that_reached_it(tmp_path: Path, jobs: int) -> None:
    from search.fidelity import CPU_ATTR, cpu_seconds

    url = f"sqlite:///{tmp_path / 'study.db'}"
    config = st.SearchConfig(budget=Budget(mflops=200), families=("mobilenet",), proxy=PROXY, pruner="none", baselines=False)
    study, config, _ = st.open_study("cpu", st.open_storage(url, heartbeat=2), config)
    st.load_proxy(config.proxy, progress=False)
    budget_s = 1.5
    if jobs == 1:
        st.run_worker(study, config, st.load_proxy(config.proxy, progress=False), n_trials=10**9, cpu_budget_s=budget_s)
    else:
        run_jobs(study, JobSpec(url, "cpu", config, 10**9, None, 2, None, cpu_budget_s=budget_s), jobs=jobs)
    done = sorted(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)), key=lambda t: t.datetime_complete)
    assert done and all(t.user_attrs[CPU_ATTR] > 0 for t in done)  # every trial stores its CPU time
    spent = cpu_seconds(done)
    # it reached the budget, and after the trial that did only the ones already running elsewhere finished
    assert spent >= budget_s and spent - sum(t.user_attrs[CPU_ATTR] for t in done[-jobs:]) < budget_s
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))


@pytest.mark.slow
def test_a_cpu_budget_stops_searched_trials_between_epochs_and_never_a_preset(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    proxy = dataclasses.replace(PROXY, epochs=3)
    config = st.SearchConfig(budget=Budget(mflops=200), families=("mobilenet",), proxy=proxy, pruner="none", baselines=False)
    study, config, _ = st.open_study("cpu-epochs", st.open_storage(url), config)
    study.enqueue_trial(st.preset_params("mobilenet", 0.5), user_attrs={"source": "baseline"})
    st.run_worker(study, config, st.load_proxy(config.proxy, progress=False), n_trials=10**9, cpu_budget_s=1e-6)
    trained = [t for t in study.get_trials() if t.user_attrs.get("trained")]
    baseline, searched = trained[0], trained[1]
    assert baseline.user_attrs["source"] == "baseline" and baseline.state == TrialState.COMPLETE
    assert searched.state == TrialState.PRUNED and searched.user_attrs["stopped"] == "cpu budget"
    assert searched.user_attrs["epochs"] == 1  # after its first epoch, not at its end
    assert len(trained) == 2  # and no searched trial started after it


@pytest.mark.slow
def test_a_worker_waits_for_a_dead_workers_trial_and_runs_its_retry(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    config = st.SearchConfig(budget=Budget(), families=("mobilenet",), proxy=PROXY, pruner="none", baselines=False, kind="sweep")
    storage = st.open_storage(url, heartbeat=1)
    study, config, _ = st.open_study("dead", storage, config)
    study.enqueue_trial(st.preset_params("mobilenet", 0.5), user_attrs={"source": "sweep", "seed": 0, "label": "preset mobilenet 0.5x"})
    taken = study.ask()  # a worker takes the queued run, beats once, and dies
    storage.record_heartbeat(taken._trial_id)
    st.run_worker(study, config, st.load_proxy(config.proxy, progress=False), n_trials=0)
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL  # failed as stale once its grace period passed ...
    assert [t.state for t in trials[1:]] == [TrialState.COMPLETE] and trials[1].user_attrs.get("trained")  # ... and re-run here


def test_a_worker_done_with_its_share_stops_once_the_others_trials_finish_not_a_heartbeat_later(tmp_path: Path) -> None:
    """The worker that finishes first waited a whole heartbeat (10 s by default) at a time, so a run of jobs
    ended up to a heartbeat after its last trial; it now looks every ``WAIT_POLL_S``."""
    storage = st.open_storage(f"sqlite:///{tmp_path / 'study.db'}", heartbeat=60)
    study = optuna.create_study(storage=storage, study_name="s")
    elsewhere = study.ask()  # a trial another worker is training
    storage.record_heartbeat(elsewhere._trial_id)
    timer = threading.Timer(1.0, study.tell, (elsewhere, 1.0))
    timer.start()
    started = time.monotonic()
    assert st._wait_for_others(study) is False  # nothing left to run, once that trial is done ...
    assert time.monotonic() - started < 30  # ... well before the heartbeat
    timer.join()


FORK = multiprocessing.get_context("fork")


def _at_once(target: Any, *args: Any, processes: int = 4) -> None:
    """Run ``target(*args, start)`` in ``processes`` forked processes that all begin at ``start``; each must exit 0."""
    start = time.time() + 1.0
    procs = [FORK.Process(target=target, args=(*args, start)) for _ in range(processes)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * processes


def _open_at(url: str, errors: Any, start: float) -> None:
    while time.time() < start:
        pass
    try:
        st.open_storage(url, heartbeat=1)
    except st.StorageError as e:
        errors.put(str(e))


def test_workers_creating_one_new_sqlite_storage_at_once_all_open_it(tmp_path: Path) -> None:
    """Fails without the creation lock: the tables, indices and alembic_version row were created by
    each process at once, and one of them failed (``table ... already exists``, ``UNIQUE constraint
    failed: alembic_version``, ``attempt to write a readonly database``)."""
    errors = FORK.Queue()
    for round_ in range(6):
        _at_once(_open_at, st.sqlite_url(tmp_path / f"study{round_}.db"), errors)
    found = [errors.get() for _ in range(errors.qsize())]
    assert not found, found


def _pop_all(url: str, popped: Any, start: float) -> None:
    study = optuna.load_study(study_name="queue", storage=st.open_storage(url))
    while time.time() < start:
        pass
    while (trial_id := study._pop_waiting_trial_id()) is not None:
        popped.put(trial_id)


def test_workers_popping_one_sqlite_queue_at_once_take_each_trial_once(tmp_path: Path) -> None:
    """Fails without immediate transactions on SQLite: Python's sqlite3 began a transaction only at
    the UPDATE, so two workers both read a trial as WAITING, both marked it RUNNING and both trained
    it, and the second's result could not be told (``Cannot tell a COMPLETE trial``)."""
    url = st.sqlite_url(tmp_path / "study.db")
    study = optuna.create_study(study_name="queue", storage=st.open_storage(url))
    for i in range(60):
        study.enqueue_trial({}, user_attrs={"i": i})
    popped = FORK.Queue()
    _at_once(_pop_all, url, popped)
    ids = [popped.get() for _ in range(popped.qsize())]
    assert sorted(ids) == sorted(t._trial_id for t in study.get_trials()), Counter(ids).most_common(3)


def test_a_job_whose_e3d_command_was_killed_outright_stops_as_on_sigterm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its parent gone (``kill -9``), a job interrupts itself: its trial in training is then marked interrupted
    and queued again, as on Ctrl-C, instead of training on unseen. Here the parent it is told of is not its parent."""

    def work(spec: JobSpec, index: int, messages: Any) -> None:
        time.sleep(10)

    monkeypatch.setattr(search.jobs, "_work", work)
    started = time.monotonic()
    with pytest.raises(SystemExit) as stopped:
        search.jobs._job(None, 0, None, parent=os.getpid())  # type: ignore[arg-type]
    assert stopped.value.code == 130 and time.monotonic() - started < 5


def _wait_to_be_interrupted(seconds: float, ready: Any) -> None:
    """A stand-in job: stops as a job does on Ctrl-C or SIGTERM (exit 130), else after ``seconds``."""
    with interrupt_signals():
        ready.set()
        try:
            time.sleep(seconds)
        except KeyboardInterrupt:
            sys.exit(130)


def test_after_a_stop_the_jobs_still_running_get_sigterm() -> None:
    """``kill PID`` of the e3d command reaches it alone: its jobs must be told, or they train on while it waits
    for them at exit (196 s in a search by hand). Jobs that stop by themselves within the grace get nothing."""
    context = multiprocessing.get_context("spawn")
    ready = [context.Event(), context.Event()]
    quick = context.Process(target=_wait_to_be_interrupted, args=(0.5, ready[0]))  # stops on a signal that reached it too
    deaf = context.Process(target=_wait_to_be_interrupted, args=(600, ready[1]))  # the signal reached only its parent
    for p in (quick, deaf):
        p.start()
    try:
        assert all(r.wait(timeout=120) for r in ready)
        started = time.monotonic()
        search.jobs._stop([quick, deaf])
        assert (quick.exitcode, deaf.exitcode) == (0, 130)
        assert time.monotonic() - started < search.jobs.STOP_GRACE_S + 10
    finally:
        for p in (quick, deaf):
            p.kill()


WORKER = f"""
import sys
from search import study as st
from search.budget import Budget
proxy = st.{PROXY!r}
config = st.SearchConfig(budget=Budget(), families=("mobilenet",), proxy=proxy, pruner="none", baselines=False, kind="sweep")
study, config, _ = st.open_study("s", st.open_storage(st.sqlite_url(sys.argv[1])), config)
st.enqueue_sweep(study, config.families, (0,))
st.run_worker(study, config, st.load_proxy(config.proxy, progress=False), n_trials=0)
print(len(study.trials), *sorted(m for m in ("pandas", "scipy.stats") if m in sys.modules))
"""


def test_a_job_trains_without_importing_pandas_or_scipy(tmp_path: Path) -> None:
    """Each job is a new process: what it imports delays its first trial (about a second for these two)."""
    env = {**os.environ, "E3D_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", WORKER, str(tmp_path / "s.db")], capture_output=True, text=True, env=env, check=True)
    trials, *imported = done.stdout.split()
    assert int(trials) >= 1 and imported == []
