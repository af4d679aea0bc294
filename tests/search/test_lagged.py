"""A lagged search: trial k learns from the trials below k - lag only, after they finished, so that the
seed decides the search whatever the number of workers and the order their trials finish in."""

from __future__ import annotations

import dataclasses
import datetime
import json
import random
import threading
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from search import lagged
from search import study as st
from search.budget import Budget
from search.lagged import LaggedPruner, LaggedSampler, StudyOnly, lag_for, seen_by, surplus, trial_seed, window
from space.spec import SpecError

PROXY = st.ProxyConfig(clip=(8, 32, 32), train_samples=24, val_samples=8, epochs=3, batch_size=8, threads=1)


def tpe(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=4)


def finished(study: optuna.Study, values: list[float], *, trained: bool = True) -> None:
    """Add one completed trial per value, x = value (a landscape TPE can model), trained or rejected by the screen."""
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for v in values:
        study.add_trial(optuna.trial.create_trial(params={"x": v}, distributions=dist, value=v, user_attrs={"trained": trained}))


def running(study: optuna.Study, n: int, *, screened: bool = True) -> list[int]:
    """Start ``n`` trials that no one finishes yet (ids), in training or not yet past the screen."""
    ids = [study._storage.create_new_trial(study._study_id) for _ in range(n)]
    for i in ids if screened else []:
        study._storage.set_trial_user_attr(i, "trained", True)
    return ids


def test_a_trial_learns_from_all_before_it_but_the_last_that_train() -> None:
    study = optuna.create_study()
    finished(study, [0.1, 0.2])
    finished(study, [0.3], trained=False)  # trial 2: rejected by the screen
    finished(study, [0.4])
    assert window(study.get_trials(), 4, 2) == {0, 2}  # 1 and 3 are the last two that trained
    assert window(study.get_trials(), 4, 0) == {0, 1, 2, 3}
    running(study, 1)  # trial 4, in training
    assert window(study.get_trials(), 5, 0) is None  # trial 5 learns from trial 4: it waits ...
    assert window(study.get_trials(), 5, 1) == {0, 1, 2, 3}  # ... unless trial 4 is among the last that train
    running(study, 1, screened=False)  # trial 5, not past the screen yet
    assert window(study.get_trials(), 6, 2) is None  # may be rejected, or train: not known yet
    view = StudyOnly(study, frozenset({0, 2}))
    assert [t.number for t in view.get_trials()] == [0, 2] and view.direction == study.direction
    assert seen_by(study, 4, 0) is study
    assert [t.number for t in seen_by(study, 4, 2).get_trials()] == [0, 2]


def test_the_lag_is_zero_for_one_job_and_twice_the_jobs_otherwise() -> None:
    assert [lag_for(j) for j in (1, 2, 16)] == [0, 4, 32]


def test_trial_seeds_are_pure_and_distinct() -> None:
    assert trial_seed(3, 7) == trial_seed(3, 7)
    assert len({trial_seed(s, n) for s in (0, 1) for n in range(50)}) == 100


def sampled_x(study: optuna.Study, sampler: optuna.samplers.BaseSampler) -> float:
    study.sampler = sampler
    return float(study.ask().suggest_float("x", 0, 1))


def study_with_window(*, window_done: bool) -> optuna.Study:
    """Trials 0-7 finished; trials 8 and 9 still training, or finished best of all."""
    base = [0.9, 0.1, 0.8, 0.2, 0.85, 0.15, 0.7, 0.3]
    study = optuna.create_study(direction="maximize")
    finished(study, [*base, 0.99, 0.98] if window_done else base)
    if not window_done:
        running(study, 2)
    return study


def test_what_runs_inside_the_window_does_not_change_a_lagged_trial() -> None:
    def lagged_x(seed: int, *, window_done: bool) -> float:
        return sampled_x(study_with_window(window_done=window_done), LaggedSampler(tpe, seed=seed, lag=2))

    def plain_x(seed: int, *, window_done: bool) -> float:
        return sampled_x(study_with_window(window_done=window_done), tpe(trial_seed(seed, 10)))

    seeds = range(5)
    assert all(lagged_x(s, window_done=False) == lagged_x(s, window_done=True) for s in seeds)
    # an unlagged sampler with the same seed sees trials 8-9 in one study and not in the other
    assert any(plain_x(s, window_done=False) != plain_x(s, window_done=True) for s in seeds)


def test_a_lagged_trial_waits_for_the_trials_it_learns_from(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lagged, "POLL_S", 0.01)
    study = optuna.create_study()
    first, second = running(study, 2)
    finish_at = time.perf_counter() + 0.3
    threading.Timer(0.3, lambda: study._storage.set_trial_state_values(first, TrialState.COMPLETE, [1.0])).start()
    study.sampler = LaggedSampler(tpe, seed=0, lag=1)
    study.ask()  # trial 2 learns from trial 0 only (trial 1 is the last one that trains)
    assert time.perf_counter() >= finish_at
    assert study._storage.get_trial(second).state == TrialState.RUNNING  # not waited for
    assert study.get_trials()[2].user_attrs[lagged.WAITED_ATTR] >= 0.25


def test_a_trial_stopped_while_it_waits_fails_untrained(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(_: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(lagged.time, "sleep", interrupt)
    study = optuna.create_study()
    running(study, 1)
    study.sampler = LaggedSampler(tpe, seed=0, lag=0)
    with pytest.raises(KeyboardInterrupt):
        study.ask()
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING, TrialState.FAIL]
    assert study.get_trials()[1].user_attrs == {"interrupted": True}  # was counted "failed"; nothing to queue again
    assert st.requeue_interrupted(study) == 0


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_trial_whose_worker_dies_while_it_waits_goes_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(storage=storage, sampler=LaggedSampler(tpe, seed=0, lag=0))
    running(study, 1)  # trial 0 trains elsewhere

    def killed(_: float) -> None:
        raise SystemExit  # the worker ends while trial 1 waits for trial 0 (as SIGKILL leaves it: running)

    monkeypatch.setattr(lagged.time, "sleep", killed)
    with pytest.raises(SystemExit):
        study.ask()
    monkeypatch.undo()
    time.sleep(2.5)  # past the grace period
    optuna.storages.fail_stale_trials(study)  # what every other worker does while it waits
    assert study.get_trials()[1].state == TrialState.FAIL  # was running for ever (no heartbeat): later trials waited on it


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_trial_left_running_before_its_first_heartbeat_fails_after_the_grace_period(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(storage=storage, sampler=LaggedSampler(tpe, seed=0, lag=0))
    [orphan] = running(study, 1, screened=False)  # its worker died between Optuna's create and the first heartbeat
    monkeypatch.setattr(lagged, "grace_period", lambda interval: 0.2)
    polls: list[float] = []
    sleep = time.sleep

    def poll(s: float) -> None:
        polls.append(s)
        if len(polls) > 40:
            raise TimeoutError("still waiting on a trial nobody runs")  # was: for ever
        sleep(0.05)

    monkeypatch.setattr(lagged.time, "sleep", poll)
    trial = study.ask()
    assert study._storage.get_trial(orphan).state == TrialState.FAIL and trial.number == 1
    assert lagged.BEATING_ATTR in study._storage.get_trial(trial._trial_id).system_attrs  # a live one is never taken for dead
    assert lagged.orphans(study.get_trials(states=(TrialState.RUNNING,)), 0.0) == []


def test_orphans_are_the_running_trials_without_a_heartbeat_older_than_the_grace() -> None:
    study = optuna.create_study()
    old, new, beating = running(study, 3, screened=False)
    study._storage.set_trial_system_attr(beating, lagged.BEATING_ATTR, True)
    trials = study.get_trials()
    now = trials[1].datetime_start + datetime.timedelta(seconds=10)
    trials[0].datetime_start = now - datetime.timedelta(seconds=100)
    assert lagged.orphans(trials, 5.0, now=now) == [old, new]
    assert lagged.orphans(trials, 30.0, now=now) == [old]


def test_a_lagged_pruner_judges_on_the_trials_below_the_window() -> None:
    study = optuna.create_study(direction="maximize")
    for v in (0.9, 0.9, 0.1, 0.1, 0.1):  # trials 0-4, each trained and reported v at step 0
        t = study.ask()
        t.set_user_attr("trained", True)
        t.report(v, 0)
        study.tell(t, v)
    trial = study.ask()
    trial.report(0.5, 0)
    frozen = study._storage.get_trial(trial._trial_id)
    median = optuna.pruners.MedianPruner(n_startup_trials=0, n_warmup_steps=0)
    assert not median.prune(study, frozen)  # all five: median 0.1, 0.5 is above it
    assert LaggedPruner(median, 2).prune(study, frozen)  # trials 0-2 (3 and 4 are the last two): median 0.9


def test_surplus_is_the_trials_after_the_nth_counted_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lagged, "POLL_S", 0.01)
    study = optuna.create_study()
    finished(study, [0.1, 0.2, 0.3])

    def counts(t: Any) -> bool:
        return t.number != 1  # trial 1 was, say, rejected by the screen

    assert not surplus(study, 2, 2, counts)  # trials 0-1 hold one counted trial
    assert surplus(study, 3, 2, counts)  # trials 0-2 hold two
    (late,) = running(study, 1)  # trial 3, unknown yet: trial 4 waits for it
    threading.Timer(0.2, lambda: study._storage.set_trial_state_values(late, TrialState.COMPLETE, [1.0])).start()
    assert surplus(study, 4, 3, counts) and study._storage.get_trial(late).state == TrialState.COMPLETE


def stand_in_fit(model: Any, train: Any, val: Any, config: Any, *, on_epoch: Any = None, **_: Any) -> Any:
    """Training stood in: an accuracy per epoch that depends on the network, after a random pause, so
    that two workers finish their trials in another order each run."""
    from search.train import FitResult

    acc = float(sum(p.numel() for p in model.parameters()) % 97)
    for epoch in range(config.epochs):
        time.sleep(random.SystemRandom().random() * 0.03)
        if on_epoch is not None:
            on_epoch(epoch, {"val_top1": acc * (epoch + 1) / config.epochs, "val_loss": 1.0, "train_loss": 1.0})
    return FitResult(acc, acc, config.epochs, 0.01, [])


def two_worker_search(db: Path, *, n_trials: int, lag: int) -> list[tuple[int, str, str, float | None]]:
    """A search of ``n_trials`` by two workers (threads) of one study; each trial as (number, state, params,
    value), up to the last one it ran (the surplus trials after it were not run)."""
    url = f"sqlite:///{db}"
    config = st.SearchConfig(budget=Budget(mflops=60), families=("mobilenet", "mobilenetv2"), proxy=PROXY, seed=3, lag=lag)
    study, config, _ = st.open_study("lagged", st.open_storage(url), config)
    st.enqueue_baselines(study, config)
    data = st.load_proxy(config.proxy, progress=False)

    def worker() -> None:
        mine, stored, _ = st.open_study("lagged", st.open_storage(url), None, resume=True)
        st.run_worker(mine, stored, data, n_trials=n_trials)

    workers = [threading.Thread(target=worker) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    trials = sorted(study.get_trials(), key=lambda t: t.number)
    last = max(t.number for t in trials if not t.user_attrs.get("surplus"))
    assert all(t.user_attrs.get("surplus") for t in trials if t.number > last)  # how many started depends on timing
    return [(t.number, t.state.name, json.dumps(t.params, sort_keys=True), t.value) for t in trials if t.number <= last]


@pytest.mark.slow
def test_two_workers_of_a_lagged_search_give_the_same_search_every_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("search.train.fit", stand_in_fit)
    monkeypatch.setattr(lagged, "POLL_S", 0.01)
    n = st.TPE_STARTUP + 4  # past the random start-up: TPE models what each trial saw
    first = two_worker_search(tmp_path / "a.db", n_trials=n, lag=4)
    again = two_worker_search(tmp_path / "b.db", n_trials=n, lag=4)
    assert first == again
    assert {"PRUNED", "COMPLETE"} <= {state for _, state, _, _ in first}  # the median pruner judged too
    study = optuna.load_study(study_name="lagged", storage=f"sqlite:///{tmp_path / 'a.db'}")
    assert st.count_trained(study, source="search") == n  # a trial past the n-th ran untrained, if one started


def test_a_worker_that_joins_follows_the_studys_lag(tmp_path: Path) -> None:
    storage = st.open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    config = st.SearchConfig(budget=Budget(mflops=60), families=("mobilenet",), proxy=PROXY, lag=4)
    st.open_study("s", storage, config)
    study, joined, created = st.open_study("s", storage, dataclasses.replace(config, lag=0))  # --jobs 1 on another machine
    assert not created and joined.lag == 4
    assert isinstance(study.sampler, LaggedSampler) and isinstance(study.pruner, LaggedPruner)
    with pytest.raises(SpecError, match="lag"):
        dataclasses.replace(config, lag=-1)


def test_a_lagged_sampler_runs_under_hyperband_whose_pruner_is_left_unlagged() -> None:
    config = st.SearchConfig(budget=Budget(mflops=60), families=("mobilenet",), proxy=PROXY, pruner="hyperband", lag=4)
    assert isinstance(st._pruner(config), optuna.pruners.HyperbandPruner)  # its brackets read the storage itself
    study = optuna.create_study(direction="maximize", sampler=st._sampler(config), pruner=st._pruner(config))

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("trained", True)
        x = trial.suggest_float("x", 0, 1)
        for step in range(3):
            trial.report(x * (step + 1), step)
            if trial.should_prune():
                raise optuna.TrialPruned
        return x

    study.optimize(objective, n_trials=14)
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 14
