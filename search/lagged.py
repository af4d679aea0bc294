"""A search that ``--seed`` decides however many workers run it side by side.

With one worker, trial k is sampled and judged after every trial before it has finished, so the seed
decides everything. With several, what trial k sees depends on which of the others happen to be
done: timing, not the seed. A *lagged* search (``SearchConfig.lag`` = L > 0) removes that:

* trial k's sampler and pruner see only the trials numbered below k - L (:class:`StudyBefore`), and
  trial k waits before it starts until all of those have finished (:func:`wait_until_finished`);
  with L at least twice the workers, such waits are rare;
* trial k's sampler is a TPE sampler seeded from (seed, k) (:func:`trial_seed`), not one stream
  per worker, so it does not matter which worker takes which trial;
* the workers stop together after the n-th trained searched trial *by number*: a later searched trial
  that started meanwhile is not trained (:func:`surplus`), whichever worker ran ahead.

Training is deterministic per seed on one thread, so a lagged search run again with the same seed
gives the same trials, the same pruning decisions and the same results, with 1, 2 or 16 workers.
Hyperband's brackets read the storage directly and are not lagged: a Hyperband search is decided by
its seed with one worker only.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

POLL_S = 0.5
"""How often a waiting trial looks at the storage again."""
WAITED_ATTR = "lag_wait_s"
"""Trial user attribute: the seconds the trial waited for the trials it learns from."""


def lag_for(jobs: int) -> int:
    """The lag of a search that ``jobs`` workers run: 0 for one (it sees every trial before its own), else 2 x jobs."""
    return 0 if jobs <= 1 else 2 * jobs


def trial_seed(seed: int, number: int) -> int:
    """The sampler seed of trial ``number`` of a lagged search with ``--seed seed`` (a pure function)."""
    import numpy as np

    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, number, 1]).generate_state(1)[0])


class StudyBefore:
    """``study`` as trial ``end + lag`` of a lagged search may see it: only its trials numbered below
    ``end``. Reads always go to the storage (Optuna's per-trial cache may predate a wait)."""

    def __init__(self, study: optuna.Study, end: int) -> None:
        self._study = study
        self._end = end

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = True, states: Sequence[TrialState] | None = None, use_cache: bool = False) -> list[FrozenTrial]:
        trials = self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=False)
        return [t for t in trials if t.number < self._end]

    def get_trials(self, deepcopy: bool = True, states: Sequence[TrialState] | None = None) -> list[FrozenTrial]:
        """The study's trials numbered below ``end`` (``optuna.Study.get_trials``'s arguments)."""
        return self._get_trials(deepcopy=deepcopy, states=states)


def seen_by(study: optuna.Study, number: int, lag: int) -> optuna.Study:
    """What trial ``number`` of a search with ``lag`` learns from: the whole study for lag 0, else
    the trials numbered below ``number - lag``."""
    if lag <= 0:
        return study
    view: Any = StudyBefore(study, number - lag)
    return view  # quacks as a Study for Optuna's samplers and pruners


def _fail_stale(study: optuna.Study) -> None:
    """Fail the trials whose worker died (their heartbeat is older than the grace period)."""
    if getattr(study._storage, "get_heartbeat_interval", lambda: None)() is None:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def wait_until(study: optuna.Study, known: Callable[[list[FrozenTrial]], bool]) -> None:
    """Poll the study's trials until ``known`` says so; a dead worker's trial fails meanwhile."""
    while not known(study.get_trials(deepcopy=False)):
        _fail_stale(study)
        time.sleep(POLL_S)


def wait_until_finished(study: optuna.Study, end: int) -> None:
    """Return once every trial numbered below ``end`` has finished."""
    wait_until(study, lambda trials: all(t.state.is_finished() for t in trials if t.number < end))


class LaggedSampler(optuna.samplers.BaseSampler):
    """Samples trial k with ``make(trial_seed(seed, k))`` on the trials below k - ``lag``, after they
    have finished. ``make`` builds the underlying sampler (TPE in :mod:`search.study`)."""

    def __init__(self, make: Callable[[int], optuna.samplers.BaseSampler], *, seed: int, lag: int) -> None:
        self._make = make
        self._seed = seed
        self._lag = lag
        self._samplers: dict[int, optuna.samplers.BaseSampler] = {}

    def _for(self, trial: FrozenTrial) -> optuna.samplers.BaseSampler:
        if trial.number not in self._samplers:
            self._samplers = {trial.number: self._make(trial_seed(self._seed, trial.number))}  # one trial at a time
        return self._samplers[trial.number]

    def _seen(self, study: optuna.Study, trial: FrozenTrial) -> optuna.Study:
        return seen_by(study, trial.number, self._lag)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Wait until the trials this one learns from have finished (how long: :data:`WAITED_ATTR`).
        Stopped meanwhile (Ctrl-C), the trial fails at once, untrained, so that no trial waits on it."""
        start = time.perf_counter()
        try:
            wait_until_finished(study, trial.number - self._lag)
        except KeyboardInterrupt:
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            raise
        study._storage.set_trial_user_attr(trial._trial_id, WAITED_ATTR, round(time.perf_counter() - start, 3))
        self._for(trial).before_trial(self._seen(study, trial), trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        """The underlying sampler's, on the trials this one sees."""
        return self._for(trial).infer_relative_search_space(self._seen(study, trial), trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        """The underlying sampler's, on the trials this one sees."""
        return self._for(trial).sample_relative(self._seen(study, trial), trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution) -> Any:
        """The underlying sampler's, on the trials this one sees."""
        return self._for(trial).sample_independent(self._seen(study, trial), trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        """The underlying sampler's (it may write the trial's constraints)."""
        self._for(trial).after_trial(study, trial, state, values)


class LaggedPruner(optuna.pruners.BasePruner):
    """``pruner`` judging trial k on the trials below k - ``lag`` only (finished before k started)."""

    def __init__(self, pruner: optuna.pruners.BasePruner, lag: int) -> None:
        self.pruner = pruner
        self.lag = lag

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """The wrapped pruner's decision on what the trial sees."""
        return self.pruner.prune(seen_by(study, trial.number, self.lag), trial)


def surplus(study: optuna.Study, number: int, n_trials: int, counts: Callable[[FrozenTrial], bool]) -> bool:
    """Whether trial ``number`` comes after the ``n_trials``-th finished trial that ``counts`` (a
    trained searched one) by number; waits for the trials before it while that is not yet known."""
    answer: list[bool] = []

    def known(trials: list[FrozenTrial]) -> bool:
        below = [t for t in trials if t.number < number]
        done = sum(1 for t in below if t.state.is_finished() and counts(t))
        open_ = sum(1 for t in below if not t.state.is_finished())
        if done >= n_trials or done + open_ < n_trials:
            answer.append(done >= n_trials)
            return True
        return False

    wait_until(study, known)
    return answer[0]


__all__ = [
    "WAITED_ATTR",
    "LaggedPruner",
    "LaggedSampler",
    "StudyBefore",
    "lag_for",
    "seen_by",
    "surplus",
    "trial_seed",
    "wait_until_finished",
]
