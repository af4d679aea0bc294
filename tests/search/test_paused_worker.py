"""A worker paused past the heartbeat grace period (SIGSTOP, a suspended laptop) wakes without
crashing: its trial was failed and queued again by another worker, and it goes on."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search import study as st
from tests.search.conftest import TINY


def _no_finalize() -> list[str]:
    """``--no-finalize`` where the search has finalization (this test is about the search's trials)."""
    from e3d.cli import build_parser

    actions = build_parser()._subparsers._group_actions[0].choices["search"]._option_string_actions  # type: ignore[union-attr,index]
    return ["--no-finalize"] if "--no-finalize" in actions else []


VICTIM = textwrap.dedent(
    """
    import sys, time
    import search.train
    from search.train import FitResult
    from e3d.cli import main

    def slow_fit(model, train, val, config, *, on_epoch=None, **_):
        for _ in range(150):  # 15 s of "training" (time to be paused in it, even on a busy machine), then a report
            time.sleep(0.1)
        if on_epoch is not None:
            on_epoch(0, {"val_top1": 30.0, "val_loss": 1.0, "train_loss": 1.0})
        return FitResult(30.0, 30.0, 1, 0.01, [])

    search.train.fit = slow_fit
    sys.exit(main(["search", *sys.argv[2:], "--out", sys.argv[1]]))
    """
)


def _stop_outside_a_transaction(victim: subprocess.Popen[bytes], db: Path) -> None:
    """SIGSTOP ``victim`` at a moment it holds no SQLite lock. Every transaction of a worker takes the
    write lock (``BEGIN IMMEDIATE``; its heartbeat thread writes each second), and a process stopped
    inside one keeps the lock until it runs again: the test's own reads would then wait for it and fail
    with "database is locked" (what CI saw), which is not the behaviour under test."""
    for _ in range(200):
        victim.send_signal(signal.SIGSTOP)
        probe = sqlite3.connect(db, timeout=0.5, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:
            victim.send_signal(signal.SIGCONT)
            time.sleep(0.05)
        finally:
            probe.close()
    raise AssertionError("the victim held the database lock at every try")


def _has_beaten(db: Path, trial_id: int) -> bool:
    """Whether the trial's worker has recorded a heartbeat: Optuna never fails a trial without one as stale,
    and with fast commits a worker can be seen training before its heartbeat thread first ran."""
    with sqlite3.connect(db, timeout=5) as con:
        return con.execute("SELECT COUNT(*) FROM trial_heartbeats WHERE trial_id = ?", (trial_id,)).fetchone()[0] > 0


@pytest.mark.slow
def test_a_paused_worker_wakes_and_goes_on(tmp_path: Path) -> None:
    st.load_proxy(st.ProxyConfig(clip=(8, 32, 32), train_samples=32, val_samples=16), progress=False)  # the cache, once
    out = tmp_path / "run"
    argv = [*TINY, "--trials", "2", "--no-baselines", "--heartbeat", "1", *_no_finalize()]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    victim = subprocess.Popen([sys.executable, "-c", VICTIM, str(out), *argv], stderr=subprocess.PIPE, env=env)
    storage = None
    paused = None
    deadline = time.time() + 240
    while paused is None and time.time() < deadline:
        time.sleep(0.2)
        if not (out / "study.db").is_file():
            continue
        storage = storage or st.open_storage(f"sqlite:///{(out / 'study.db').resolve()}", heartbeat=1)
        try:
            study = optuna.load_study(study_name="e3d-search", storage=storage)
        except KeyError:
            continue
        trials = study.get_trials(states=(TrialState.RUNNING,))
        running = [t for t in trials if t.user_attrs.get("trained") and _has_beaten(out / "study.db", t._trial_id)]
        if running:
            _stop_outside_a_transaction(victim, out / "study.db")
            paused = running[0].number
    assert paused is not None and storage is not None, "the victim never started training"
    time.sleep(2 * 1 + 5 + 2)  # past the grace period of a 1 s heartbeat
    study = optuna.load_study(study_name="e3d-search", storage=storage)
    optuna.storages.fail_stale_trials(study)  # what another worker does when it starts a trial
    assert study.trials[paused].state == TrialState.FAIL, f"trial {paused} is {study.trials[paused].state.name}, not failed as stale"
    victim.send_signal(signal.SIGCONT)
    _, err = victim.communicate(timeout=300)
    text = err.decode()
    assert victim.returncode == 0, text[-3000:]
    assert "Traceback" not in text and "Cannot tell" not in text
    assert f"trial {paused}: this worker was paused longer than the heartbeat grace period" in text
    study = optuna.load_study(study_name="e3d-search", storage=storage)
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == paused]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE and retries[0].params == study.trials[paused].params
    assert st.count_trained(study, source="search") >= 2


def test_an_objective_s_own_error_is_not_taken_for_a_takeover() -> None:
    def buggy(trial: optuna.Trial) -> float:
        raise ValueError("a bug in the objective")

    guarded = st._Guarded(buggy)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with pytest.raises(ValueError, match="a bug"):
        optuna.create_study().optimize(guarded, n_trials=1)
    assert guarded.taken_over is None and not st._taken_over(guarded)
