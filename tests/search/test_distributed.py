"""Several workers on one study in a real PostgreSQL server, including one killed mid-trial.

``.ci/run`` starts PostgreSQL and exports ``E3D_TEST_POSTGRES_URL``. Locally, without it, these tests
skip; in CI (``CI=true``) a missing server is a failure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search import study as st
from tests.search.conftest import TINY

URL = os.environ.get("E3D_TEST_POSTGRES_URL")
if not URL and os.environ.get("CI") == "true":
    raise RuntimeError("CI must run the distributed-search tests: E3D_TEST_POSTGRES_URL is not set (.ci/run starts PostgreSQL)")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not URL, reason="no PostgreSQL server (set E3D_TEST_POSTGRES_URL)")]

N = 5


def worker(name: str, out: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "e3d", "search", *TINY, "--storage", str(URL), "--study-name", name]
    cmd += ["--trials", str(N), "--no-baselines", "--heartbeat", "1", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def prepare_data() -> None:
    """Generate the proxy data once, so that workers do not race to create the cache."""
    st.load_proxy(st.ProxyConfig(clip=(8, 32, 32), train_samples=32, val_samples=16), progress=False)


def load(name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=st.open_storage(str(URL), heartbeat=1))


def accounted(study: optuna.Study) -> None:
    states = {t.state for t in study.trials}
    assert states <= {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL}, states
    assert len({t.number for t in study.trials}) == len(study.trials)


def test_two_workers_share_one_study(tmp_path: Path) -> None:
    prepare_data()
    name = f"two-{uuid.uuid4().hex[:8]}"
    procs = [worker(name, tmp_path / f"w{i}") for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-2000:]
    study = load(name)
    accounted(study)
    trained = [t for t in study.trials if t.user_attrs.get("trained")]
    assert N <= len(trained) <= N + 1, "each worker checks the count between trials: at most one extra"
    assert len({t.user_attrs["worker"] for t in trained}) == 2, "both workers trained candidates"
    params = [tuple(sorted(t.params.items())) for t in trained]
    assert len(set(params)) == len(params), "no candidate was trained twice"


def test_a_killed_worker_s_trial_fails_and_is_rerun(tmp_path: Path) -> None:
    prepare_data()
    name = f"kill-{uuid.uuid4().hex[:8]}"
    victim = worker(name, tmp_path / "victim")
    killed = None
    deadline = time.time() + 300
    while killed is None and time.time() < deadline:
        time.sleep(0.2)
        try:
            running = load(name).get_trials(states=(TrialState.RUNNING,))
        except KeyError:  # study not created yet
            continue
        mine = [t for t in running if t.user_attrs.get("trained") and t.user_attrs.get("worker", "").endswith(f":{victim.pid}")]
        if mine:
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            killed = mine[0].number
    assert killed is not None, "the victim never started training"
    survivor = worker(name, tmp_path / "survivor")
    _, err = survivor.communicate(timeout=600)
    assert survivor.returncode == 0, err.decode()[-2000:]
    study = load(name)
    accounted(study)
    dead = study.trials[killed]
    assert dead.state == TrialState.FAIL
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1 and retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert retries[0].params == dead.params and retries[0].user_attrs["source"] == "retry"
    assert st.count_trained(study, source="search") >= N
