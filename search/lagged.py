"""A search that ``--seed`` decides however many workers run it side by side.

With one worker, trial k is sampled and judged after every trial before it has finished, so the seed
decides everything. With several, what trial k sees depends on which of the others happen to be
done: timing, not the seed. A *lagged* search (``SearchConfig.lag`` = L > 0) removes that:

* trial k's sampler and pruner learn from every trial numbered below k except the last L of those
  that train (:func:`window`): trials rejected by the budget screen finish at once and do not count,
  so a worker that rejects many in a row is not held up. Trial k waits before it starts until every
  trial it learns from has finished (:func:`wait_for_window`); with L twice the workers, such waits
  are rare;
* trial k's sampler is a TPE sampler seeded from (seed, k) (:func:`trial_seed`), not one stream
  per worker, so it does not matter which worker takes which trial;
* the workers stop together after the n-th trained searched trial *by number*: a later searched trial
  that started meanwhile is not trained (:func:`surplus`), whichever worker ran ahead.

Training is deterministic per seed on one thread, so a lagged search run again with the same seed
gives the same trials, the same pruning decisions and the same results, whatever number of workers
runs it: the lag is the study's, set when it is created (``e3d search --jobs N``: 2N).
Hyperband's brackets read the storage directly and are not lagged: a Hyperband search is decided by
its seed with one worker only.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

T = TypeVar("T")
POLL_S = 0.5
"""How often a waiting trial looks at the storage again."""
WAITED_ATTR = "lag_wait_s"
"""Trial user attribute: the seconds the trial waited for the trials it learns from."""
SURPLUS_ATTR = "surplus"
"""Trial user attribute: True on a searched trial numbered after the search's last counted one (not run)."""
BEATING_ATTR = "e3d_heartbeat"
"""Trial system attribute, set once the trial's first heartbeat is recorded (:func:`heartbeat`)."""


def grace_period(interval: int) -> int:
    """Seconds without a heartbeat after which a running trial's worker counts as dead."""
    return 2 * interval + 5


def lag_for(jobs: int) -> int:
    """The lag of a search that ``jobs`` workers run: 0 for one (it sees every trial before its own), else 2 x jobs."""
    return 0 if jobs <= 1 else 2 * jobs


def trial_seed(seed: int, number: int) -> int:
    """The sampler seed of trial ``number`` of a lagged search with ``--seed seed`` (a pure function)."""
    import numpy as np

    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, number, 1]).generate_state(1)[0])


def trains(t: FrozenTrial) -> bool:
    """Whether ``t`` passed the budget screen and trains (``trained`` is set as its training starts)."""
    return bool(t.user_attrs.get("trained"))


def window(trials: Sequence[FrozenTrial], number: int, lag: int) -> frozenset[int] | None:
    """The numbers of the trials that trial ``number`` learns from: all below it but the ``lag`` latest
    of those that train. None while not yet known: a trial below it has not passed the screen or
    finished, or one it learns from is still running."""
    below = [t for t in trials if t.number < number]
    if not all(t.state.is_finished() or trains(t) for t in below):
        return None
    training = sorted(t.number for t in below if trains(t))
    hidden = set(training[len(training) - lag :]) if lag > 0 else set()
    seen = [t for t in below if t.number not in hidden]
    if not all(t.state.is_finished() for t in seen):
        return None
    return frozenset(t.number for t in seen)


class StudyOnly:
    """``study`` holding only the trials ``numbers``: what a trial of a lagged search learns from.
    Reads always go to the storage (Optuna's per-trial cache may predate a wait)."""

    def __init__(self, study: optuna.Study, numbers: frozenset[int]) -> None:
        self._study = study
        self._numbers = numbers

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = True, states: Sequence[TrialState] | None = None, use_cache: bool = False) -> list[FrozenTrial]:
        trials = self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=False)
        return [t for t in trials if t.number in self._numbers]

    def get_trials(self, deepcopy: bool = True, states: Sequence[TrialState] | None = None) -> list[FrozenTrial]:
        """The study's trials among ``numbers`` (``optuna.Study.get_trials``'s arguments)."""
        return self._get_trials(deepcopy=deepcopy, states=states)


def seen_by(study: optuna.Study, number: int, lag: int) -> optuna.Study:
    """What trial ``number`` of a search with ``lag`` learns from: the whole study for lag 0, else its
    :func:`window` (known once the trial has started, so this does not wait then)."""
    if lag <= 0:
        return study
    view: Any = StudyOnly(study, wait_for_window(study, number, lag))
    return view  # quacks as a Study for Optuna's samplers and pruners


def _fail_stale(study: optuna.Study) -> None:
    """Fail the trials whose worker died: their heartbeat is older than the grace period, or they have
    none and started longer ago (:func:`orphans`)."""
    interval = getattr(study._storage, "get_heartbeat_interval", lambda: None)()
    if interval is None:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    for trial_id in orphans(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)), grace_period(interval)):
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):  # another worker failed it first
            study._storage.set_trial_state_values(trial_id, TrialState.FAIL)


def orphans(running: Sequence[FrozenTrial], grace_s: float, *, now: datetime.datetime | None = None) -> list[int]:
    """The ids of the ``running`` trials that never recorded a heartbeat (:data:`BEATING_ATTR`) and
    started more than ``grace_s`` ago: a worker stopped between Optuna creating the trial and
    :func:`heartbeat`'s first beat (microseconds apart) left it so, and Optuna's stale-trial check
    passes over a trial without a heartbeat; every later trial waited on it for ever."""
    now = now or datetime.datetime.now()
    return [t._trial_id for t in running if BEATING_ATTR not in t.system_attrs and _age_s(t, now) > grace_s]


def _age_s(t: FrozenTrial, now: datetime.datetime) -> float:
    """Seconds since ``t`` started (0 if it has not)."""
    return 0.0 if t.datetime_start is None else (now - t.datetime_start).total_seconds()


def wait_until(study: optuna.Study, known: Callable[[list[FrozenTrial]], T | None], *, alive: Callable[[], None] = lambda: None) -> T:
    """Poll the study's trials until ``known`` gives an answer (not None), calling ``alive`` at every poll; a dead
    worker's trial fails meanwhile."""
    while (answer := known(study.get_trials(deepcopy=False))) is None:
        alive()
        _fail_stale(study)
        time.sleep(POLL_S)
    return answer


def wait_for_window(study: optuna.Study, number: int, lag: int, *, alive: Callable[[], None] = lambda: None) -> frozenset[int]:
    """Trial ``number``'s :func:`window`, once known (``alive``: as in :func:`wait_until`)."""
    return wait_until(study, lambda trials: window(trials, number, lag), alive=alive)


def heartbeat(study: optuna.Study, trial_id: int) -> Callable[[], None]:
    """Records the trial's heartbeat now, and returns what records it again at most once per half heartbeat
    interval: a trial that waits for its window (before Optuna's own heartbeat starts, after sampling) is
    alive to the other workers, and one whose worker stopped meanwhile goes stale and fails like any other
    (it was left running for ever, and every later trial waited on it). Nothing where the storage keeps none."""
    storage: Any = study._storage  # an RDB storage wrapped in a cache, which answers for it
    interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
    if interval is None:
        return lambda: None
    last = [-math.inf]

    def beat() -> None:
        if time.monotonic() - last[0] >= interval / 2:
            storage.record_heartbeat(trial_id)
            last[0] = time.monotonic()

    beat()
    storage.set_trial_system_attr(trial_id, BEATING_ATTR, True)
    return beat


class LaggedSampler(optuna.samplers.BaseSampler):
    """Samples trial k with ``make(trial_seed(seed, k))`` on its :func:`window` of ``lag``, once that is
    known. ``make`` builds the underlying sampler (TPE in :mod:`search.study`)."""

    def __init__(self, make: Callable[[int], optuna.samplers.BaseSampler], *, seed: int, lag: int) -> None:
        self._make = make
        self._seed = seed
        self._lag = lag
        self._trial: tuple[int, optuna.samplers.BaseSampler, frozenset[int]] | None = None
        """The trial this worker runs: its number, sampler and window."""

    def _current(
        self, study: optuna.Study, trial: FrozenTrial, *, alive: Callable[[], None] = lambda: None
    ) -> tuple[optuna.samplers.BaseSampler, optuna.Study]:
        if self._trial is None or self._trial[0] != trial.number:
            numbers = wait_for_window(study, trial.number, self._lag, alive=alive)
            self._trial = (trial.number, self._make(trial_seed(self._seed, trial.number)), numbers)
        _, sampler, numbers = self._trial
        view: Any = StudyOnly(study, numbers)
        return sampler, view

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Wait until the trials this one learns from have finished (how long: :data:`WAITED_ATTR`), with a
        :func:`heartbeat`. Stopped meanwhile (Ctrl-C), the trial fails at once, untrained and marked
        ``interrupted``, so that no trial waits on it."""
        start = time.perf_counter()
        try:
            sampler, view = self._current(study, trial, alive=heartbeat(study, trial._trial_id))
            study._storage.set_trial_user_attr(trial._trial_id, WAITED_ATTR, round(time.perf_counter() - start, 3))
        except KeyboardInterrupt:
            study._storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            raise
        sampler.before_trial(view, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        """The underlying sampler's, on the trials this one learns from."""
        sampler, view = self._current(study, trial)
        return sampler.infer_relative_search_space(view, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        """The underlying sampler's, on the trials this one learns from."""
        sampler, view = self._current(study, trial)
        return sampler.sample_relative(view, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution) -> Any:
        """The underlying sampler's, on the trials this one learns from."""
        sampler, view = self._current(study, trial)
        return sampler.sample_independent(view, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        """The underlying sampler's (it may write the trial's constraints)."""
        self._current(study, trial)[0].after_trial(study, trial, state, values)


class LaggedPruner(optuna.pruners.BasePruner):
    """``pruner`` judging trial k on its :func:`window` of ``lag`` only (finished before k started)."""

    def __init__(self, pruner: optuna.pruners.BasePruner, lag: int) -> None:
        self.pruner = pruner
        self.lag = lag

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """The wrapped pruner's decision on what the trial sees."""
        return self.pruner.prune(seen_by(study, trial.number, self.lag), trial)


def surplus(study: optuna.Study, number: int, n_trials: int, counts: Callable[[FrozenTrial], bool]) -> bool:
    """Whether trial ``number`` comes after the ``n_trials``-th finished trial that ``counts`` (a
    trained searched one) by number; waits for the trials before it while that is not yet known."""

    def known(trials: list[FrozenTrial]) -> bool | None:
        below = [t for t in trials if t.number < number]
        done = sum(1 for t in below if t.state.is_finished() and counts(t))
        open_ = sum(1 for t in below if not t.state.is_finished())
        return True if done >= n_trials else False if done + open_ < n_trials else None

    return wait_until(study, known)


__all__ = [
    "SURPLUS_ATTR",
    "WAITED_ATTR",
    "LaggedPruner",
    "LaggedSampler",
    "StudyOnly",
    "lag_for",
    "seen_by",
    "surplus",
    "trains",
    "trial_seed",
    "wait_for_window",
    "window",
]
