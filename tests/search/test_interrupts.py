"""SIGTERM as Ctrl-C: raised as KeyboardInterrupt within, the previous handler back after; an e3d search
with two jobs stopped by SIGTERM marks its trials in training interrupted and says how to continue."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import weakref
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from search import study as st
from search.interrupts import interrupt_signals
from tests.search.conftest import TINY


def test_sigterm_raises_keyboard_interrupt_within_and_the_default_comes_back() -> None:
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with pytest.raises(KeyboardInterrupt), interrupt_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler runs at once; without it the process would end here
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


@pytest.mark.parametrize(("signum", "default"), [(signal.SIGTERM, signal.SIG_DFL), (signal.SIGINT, signal.default_int_handler)])
def test_an_interrupt_landing_in_a_weakref_callback_is_delivered_after_it(
    signum: int, default: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    """Python drops an exception raised in a weakref or gc callback (SQLAlchemy has such callbacks);
    the interrupt must not be dropped with it, nor its traceback printed."""

    def callback(_: object) -> None:
        os.kill(os.getpid(), signum)
        for _ in range(10_000):  # the handler runs here, inside the callback
            pass

    class Thing:
        pass

    previous = signal.signal(signum, default)
    try:
        with pytest.raises(KeyboardInterrupt), interrupt_signals():
            thing = Thing()
            ref = weakref.ref(thing, callback)
            del thing
            time.sleep(5)
        assert ref() is None and "Traceback" not in capfd.readouterr().err
        assert signal.getsignal(signum) is default
    finally:
        signal.signal(signum, previous)


QUIET = textwrap.dedent(
    """
    import logging, os, signal, time
    from search.interrupts import interrupt_signals

    pool = logging.getLogger("sqlalchemy.pool.impl.QueuePool")
    try:
        with interrupt_signals():
            pool.error("before the interrupt")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    except KeyboardInterrupt:
        pass
    with interrupt_signals():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except KeyboardInterrupt:
            try:
                raise RuntimeError("Cannot operate on a closed database.")
            except RuntimeError:
                pool.error("Error closing cursor", exc_info=True)  # as SQLAlchemy logs it while unwinding
    with interrupt_signals():
        pool.error("in the next run")
    """
)


def test_what_sqlalchemy_logs_after_an_interrupt_is_dropped_and_nothing_before() -> None:
    """An interrupt inside a query can make SQLAlchemy log "Error closing cursor" with a traceback
    (seen in CI: a search with two jobs stopped by SIGTERM); a program without logging set up
    (e3d's command line) must print its warnings before an interrupt and none after."""
    done = subprocess.run([sys.executable, "-c", QUIET], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["before the interrupt", "in the next run"]


@pytest.mark.parametrize(("event", "nth"), [("before_cursor_execute", n) for n in range(3)] + [("checkin", 0)])
def test_an_interrupt_landing_in_a_storage_write_is_raised_after_it(tmp_path: Path, event: str, nth: int) -> None:
    """A signal that lands inside SQLAlchemy (as the write's ``nth`` statement goes out, or as its connection
    goes back to the pool) stops the process only once the storage call is over: the write is saved and its
    connection back in the pool. Raised in the middle, the write was lost, or its connection left checked out
    with SQLite's write lock held, so that the next write waited a minute and failed."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    storage = st.open_storage(url, heartbeat=60)
    trial = optuna.create_study(storage=storage, study_name="s").ask()
    calls: list[object] = []

    def land_here(*_args: Any) -> None:
        calls.append(None)
        if len(calls) == nth + 1:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10_000):  # the handler runs here
                pass

    sqlalchemy.event.listen(storage.engine if event != "checkin" else storage.engine.pool, event, land_here)
    with pytest.raises(KeyboardInterrupt), interrupt_signals():
        trial.set_user_attr("trained", True)
        time.sleep(5)  # not reached: the interrupt comes out of set_user_attr
    assert len(calls) > nth and storage.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    saved = optuna.load_study(study_name="s", storage=st.open_storage(url, heartbeat=60)).get_trials()[0]
    assert saved.user_attrs == {"trained": True}


def test_an_ignored_sigterm_stays_ignored() -> None:
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with interrupt_signals():
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)


VICTIM = textwrap.dedent(
    """
    import sys, time
    import search.train
    from search.train import FitResult
    from e3d.cli import main

    def slow_fit(model, train, val, config, **_):
        time.sleep(120)  # "training" long enough to be stopped in
        return FitResult(30.0, 30.0, 1, 0.01, [])

    search.train.fit = slow_fit
    sys.exit(main(["search", *sys.argv[2:], "--out", sys.argv[1]]))
    """
)


def _training(db: Path) -> int:
    """Trials in training in the victim's study, read without writing (0 before the study exists)."""
    if not db.is_file():
        return 0
    query = (
        "SELECT COUNT(*) FROM trials JOIN trial_user_attributes USING (trial_id) "
        "WHERE state = 'RUNNING' AND key = 'trained' AND value_json = 'true'"
    )
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return int(con.execute(query).fetchone()[0])
    except sqlite3.OperationalError:  # the schema is being created, or a writer holds the lock
        return 0


@pytest.mark.slow
def test_sigterm_stops_a_search_with_two_jobs_as_ctrl_c_does(tmp_path: Path) -> None:
    st.load_proxy(st.ProxyConfig(clip=(8, 32, 32), train_samples=32, val_samples=16), progress=False)  # the cache, once
    out = tmp_path / "run"
    argv = [*TINY, "--trials", "4", "--no-baselines", "--no-finalize", "--jobs", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    victim = subprocess.Popen([sys.executable, "-c", VICTIM, str(out), *argv], stderr=subprocess.PIPE, env=env, start_new_session=True)
    deadline, running = time.time() + 240, 0
    while running < 2 and time.time() < deadline and victim.poll() is None:
        time.sleep(0.5)
        running = _training(out / "study.db")
    assert running == 2, "the two jobs never both started training"
    os.killpg(victim.pid, signal.SIGTERM)  # the parent and both jobs, as `kill -TERM -PGID` or a scheduler
    _, err = victim.communicate(timeout=120)
    text = err.decode()
    assert victim.returncode == 130, text[-3000:]
    assert "Traceback" not in text and "e3d search --resume" in text
    study = optuna.load_study(study_name="e3d-search", storage=f"sqlite:///{out / 'study.db'}")
    assert not study.get_trials(states=(TrialState.RUNNING,))  # none left for the heartbeat to fail later
    stopped = [t for t in study.trials if t.user_attrs.get("interrupted")]
    assert len(stopped) == 2 and all(t.state == TrialState.FAIL for t in stopped)


@pytest.mark.parametrize("outcome", [TrialState.COMPLETE, TrialState.PRUNED])
def test_an_interrupt_between_a_finished_trial_and_its_tell_waits_for_the_tell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outcome: TrialState
) -> None:
    """Optuna's step from the objective's return to its tell is not a storage call: an interrupt raised there left
    the trial RUNNING, so that a search killed at that moment lost a trained trial (failed as stale, trained again)."""
    import optuna.study._optimize as optimize

    from search.budget import Budget

    real = optimize._tell_with_warning

    def interrupted_tell(*args: Any, **kwargs: Any) -> Any:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(10_000):  # the handler runs here, before the tell
            pass
        return real(*args, **kwargs)

    def objective(trial: optuna.Trial) -> float:
        if outcome == TrialState.PRUNED:
            raise optuna.TrialPruned
        return 50.0

    monkeypatch.setattr(optimize, "_tell_with_warning", interrupted_tell)
    config = st.SearchConfig(budget=Budget(100.0), families=("mobilenet",), baselines=False)
    study, config, _ = st.open_study("s", st.open_storage(f"sqlite:///{tmp_path / 'study.db'}", heartbeat=60), config)
    with pytest.raises(KeyboardInterrupt), interrupt_signals():
        st.run_worker(study, config, None, n_trials=5, objective=objective)  # type: ignore[arg-type]
    assert [t.state for t in study.get_trials()] == [outcome]


def test_a_queued_trial_stopped_before_training_is_marked_interrupted_and_queued_again(tmp_path: Path) -> None:
    from search.budget import Budget

    config = st.SearchConfig(budget=Budget(100.0), families=("mobilenet",), baselines=False)
    study, config, _ = st.open_study("s", st.open_storage(f"sqlite:///{tmp_path / 'study.db'}", heartbeat=60), config)
    study.enqueue_trial({"family": "mobilenet"}, user_attrs={"source": "baseline"})

    def objective(trial: optuna.Trial) -> float:
        raise KeyboardInterrupt  # as Ctrl-C while the candidate is screened, before any training

    with pytest.raises(KeyboardInterrupt):
        st.run_worker(study, config, None, n_trials=5, objective=objective)  # type: ignore[arg-type]
    (stopped,) = study.get_trials()
    assert stopped.state == TrialState.FAIL and stopped.user_attrs["interrupted"], "was a failure like any other: never run again"
    assert st.requeue_interrupted(study) == 1
    assert study.get_trials()[-1].system_attrs["fixed_params"] == {"family": "mobilenet"}, "was queued with no params: another network"
