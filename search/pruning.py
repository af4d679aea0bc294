"""Multi-fidelity pruning at rungs: successive halving for accuracy, a dominance rule for fronts.

A *rung* is an epoch (counted from 1) after which a trial is judged against the trials that reached
the same epoch before it. Rungs belong where ranks have settled: :func:`search.fidelity.rung_schedule`
chooses them from a measured per-epoch table; without a measurement, :func:`default_rungs` puts one
rung at the last epoch but one (never epoch 1 of a longer trial: the reproduction saw ranks after
epoch 1 that the end reversed).

Warm-up, two ways:

* in epochs: nothing is pruned before the first rung, nor after the last epoch (it saves nothing);
* in trials: a rung decides only once ``min_trials`` trials (this one included) have reported
  there; before that every trial passes it. The first trials therefore always run to the end and
  set the bar.

Rules (pure functions of the reports at one rung):

* single objective (:func:`halving_keeps`): successive halving's promotion. A trial goes on when its
  accuracy is among the best ``ceil(keep * n)`` of the ``n`` reported at the rung (ties go on);
* ``--objective pareto`` (:func:`pareto_keeps`): Optuna prunes no multi-objective trial, so e3d
  judges the ``(accuracy, macs)`` report itself. A trial stops when at least ``dominated_fraction``
  of the other trials that reached the rung dominate it (at least as accurate at that epoch and no
  more costly, strictly better in one); a report on the front of its rung is never stopped.

:func:`replay` asks what a schedule would have done to runs that were trained to the end (the
proxy-fidelity benchmark's): the CPU time it saves, and whether the winners survive it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.fidelity import CPU_ATTR, check_rungs, stop_trial
from search.front import Point, dominates, pareto_front
from search.lagged import seen_by

RUNG_ATTR = "rung_reports"
"""Trial user attribute of a multi-objective trial's reports: ``{"<epoch>": accuracy}``."""


@dataclass(frozen=True)
class Rungs:
    """Where and how hard to prune."""

    epochs: tuple[int, ...]
    """Rung epochs, counted from 1 (validated against the trial's epochs by :func:`search.fidelity.check_rungs`)."""
    keep: float = 0.5
    """Share of the trials at a rung that go on (successive halving's 1 / eta)."""
    min_trials: int = 4
    """Warm-up: trials that must have reported at a rung (this one included) before it prunes."""
    dominated_fraction: float = 0.5
    """Pareto rule: share of the other trials at the rung that must dominate a report to stop it."""

    def __post_init__(self) -> None:
        if not 0.0 < self.keep <= 1.0:
            raise ValueError(f"keep must be in (0, 1], got {self.keep}")
        if not 0.0 < self.dominated_fraction <= 1.0:
            raise ValueError(f"dominated_fraction must be in (0, 1], got {self.dominated_fraction}")
        if self.min_trials < 1:
            raise ValueError(f"min_trials must be at least 1, got {self.min_trials}")


def default_rungs(epochs: int) -> tuple[int, ...]:
    """One rung at epoch ``epochs - 1`` for trials of three or more epochs; none for shorter ones."""
    return check_rungs((epochs - 1,), epochs) if epochs >= 3 else ()


def halving_keeps(value: float, reported: Sequence[float], keep: float) -> bool:
    """Whether ``value`` is among the best ``ceil(keep * n)`` of ``reported`` (which holds it; ties go on)."""
    n = len(reported)
    slots = max(1, math.ceil(keep * n - 1e-9))
    better = sum(1 for v in reported if v > value)
    return better < slots


def pareto_keeps(point: Point, others: Sequence[Point], dominated_fraction: float) -> bool:
    """Whether ``point`` goes on: fewer than ``dominated_fraction`` of ``others`` (the other trials'
    reports at the rung) dominate it. A point nobody dominates always goes on."""
    beaten_by = sum(1 for q in others if dominates(q, point))
    return beaten_by == 0 or beaten_by < dominated_fraction * len(others)


def decides(rungs: Rungs, epoch: int, reached: int) -> bool:
    """Whether the rule applies after ``epoch`` when ``reached`` trials (this one included) have
    reported there: a rung epoch, past the warm-up."""
    return epoch in rungs.epochs and reached >= rungs.min_trials


class RungPruner(optuna.pruners.BasePruner):
    """Successive halving at fixed rungs for a single-objective study (reports: ``trial.report(value,
    epoch_index)``, epochs from 0 as :class:`search.study.Objective` reports them). Only completed
    and pruned trials count at a rung, so the decision is reproducible from the study's history."""

    def __init__(self, rungs: Rungs) -> None:
        self.rungs = rungs

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """Whether ``trial`` stops after its last report."""
        step = trial.last_step
        if step is None or step + 1 not in self.rungs.epochs:
            return False
        value = trial.intermediate_values[step]
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        others = [t.intermediate_values[step] for t in done if step in t.intermediate_values and t.number != trial.number]
        reported = [*others, value]
        if not decides(self.rungs, step + 1, len(reported)):
            return False
        return not halving_keeps(value, reported, self.rungs.keep)


def pareto_should_prune(study: optuna.Study, trial: optuna.Trial, *, epoch: int, accuracy: float, macs_m: float, rungs: Rungs) -> bool:
    """Record this multi-objective trial's report after ``epoch`` (counted from 1) and say whether
    :func:`pareto_keeps` stops it there, against the completed and pruned trials that reported at
    that epoch (their ``macs`` user attribute, in M)."""
    reports = dict(trial.user_attrs.get(RUNG_ATTR, {}))
    reports[str(epoch)] = accuracy
    trial.set_user_attr(RUNG_ATTR, reports)
    if epoch not in rungs.epochs:
        return False
    others = rung_points(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)), epoch, trial.number)
    if not decides(rungs, epoch, len(others) + 1):
        return False
    return not pareto_keeps((accuracy, macs_m), others, rungs.dominated_fraction)


def rung_points(trials: Sequence[FrozenTrial], epoch: int, exclude: int | None = None) -> list[Point]:
    """``(accuracy at epoch, macs M)`` of the trials that reported at ``epoch``."""
    out = []
    for t in trials:
        reports = t.user_attrs.get(RUNG_ATTR, {})
        if t.number != exclude and str(epoch) in reports and t.user_attrs.get("macs") is not None:
            out.append((float(reports[str(epoch)]), float(t.user_attrs["macs"]) / 1e6))
    return out


def saved_cpu_seconds(trials: Sequence[FrozenTrial], epochs: int) -> float:
    """CPU seconds that pruning saved, estimated: each pruned trial's epochs not run, at its own CPU time
    per epoch run (``cpu_seconds`` / ``epochs``; setting up the trial is counted in, so this errs high).
    A trial stopped because the search's CPU budget was spent (``stopped``) was not pruned: not counted."""
    saved = 0.0
    for t in trials:
        ran, cpu = t.user_attrs.get("epochs"), t.user_attrs.get(CPU_ATTR)
        if t.state == TrialState.PRUNED and "stopped" not in t.user_attrs and ran and cpu is not None and ran < epochs:
            saved += float(cpu) / ran * (epochs - ran)
    return saved


def search_rungs(*, pruner: str, epochs: int, rungs: Sequence[int] = ()) -> Rungs | None:
    """The rungs of a search with ``--pruner rungs`` (None for any other pruner): ``rungs`` (checked
    against ``epochs``), or :func:`default_rungs` of its epochs, with the defaults of :class:`Rungs`."""
    if pruner != "rungs":
        return None
    return Rungs(check_rungs(rungs, epochs) if rungs else default_rungs(epochs))


def stop_if_dominated(trial: optuna.Trial, *, epoch: int, accuracy: float, rungs: Rungs, lag: int = 0) -> None:
    """In a multi-objective search, raise :class:`optuna.TrialPruned` when :func:`pareto_should_prune`
    stops ``trial`` after ``epoch`` (its ``accuracy`` and ``epochs`` attributes say where), judged on
    the trials it sees in a search with ``lag`` (:func:`search.lagged.seen_by`)."""
    macs_m = float(trial.user_attrs["macs"]) / 1e6
    if pareto_should_prune(seen_by(trial.study, trial.number, lag), trial, epoch=epoch, accuracy=accuracy, macs_m=macs_m, rungs=rungs):
        why = f"({accuracy:.1f}%, {macs_m:.1f} M) dominated by >= {rungs.dominated_fraction:.0%} of the trials at epoch {epoch}"
        stop_trial(trial, why, epoch=epoch, accuracy=accuracy)


# -- replaying a rung schedule on measured runs --------------------------------------------------------


@dataclass(frozen=True)
class Replay:
    """What a rung schedule would have done to fully trained runs, had they arrived one by one."""

    passes: int
    """Seeds x arrival orders replayed."""
    cpu_saved: float
    """Mean share of the runs' CPU time that the stopped runs would not have spent (cost taken as
    proportional to epochs)."""
    winners_kept: float
    """Mean share of the winners that ran to the end: the best final accuracy (any of a tie) for a
    single objective, every member of the final (accuracy, macs) front for ``pareto``."""


def stopped_at(points: Sequence[Sequence[Point]], rungs: Rungs, *, pareto: bool) -> list[int | None]:
    """For runs arriving in the given order (``points[i][e - 1]``: run i's (accuracy, macs M) after
    epoch e), the rung each one is stopped at, or None: it runs to the end. Each run is judged against
    the runs before it that reached the rung, by the rules of :class:`RungPruner` and
    :func:`pareto_should_prune`."""
    reached: dict[int, list[Point]] = {r: [] for r in rungs.epochs}
    out: list[int | None] = []
    for run in points:
        stop = None
        for r in rungs.epochs:
            point, others = run[r - 1], reached[r]
            reached[r] = [*others, point]
            if decides(rungs, r, len(others) + 1) and not _keeps(point, others, rungs, pareto=pareto):
                stop = r
                break
        out.append(stop)
    return out


def _keeps(point: Point, others: Sequence[Point], rungs: Rungs, *, pareto: bool) -> bool:
    if pareto:
        return pareto_keeps(point, others, rungs.dominated_fraction)
    return halving_keeps(point[0], [*(o[0] for o in others), point[0]], rungs.keep)


def _winners(final: Sequence[Point], *, pareto: bool) -> list[int]:
    if pareto:
        front = set(pareto_front(final))
        return [i for i, p in enumerate(final) if p in front]
    best = max(p[0] for p in final)
    return [i for i, p in enumerate(final) if p[0] == best]


def replay(runs: Sequence[Sequence[Sequence[Point]]], costs: Sequence[Sequence[float]], rungs: Rungs, *,
           pareto: bool = False, orders: int = 50, seed: int = 0) -> Replay:  # fmt: skip
    """Replay ``rungs`` on measured runs: ``runs[s][i][e - 1]`` is (accuracy, macs M) of architecture i
    after epoch e in seed s (every run has all epochs), ``costs[s][i]`` its CPU time. Each seed is
    replayed in ``orders`` random arrival orders (a search meets architectures in no set order)."""
    rng = random.Random(seed)
    saved, kept = [], []
    for points, cost in zip(runs, costs, strict=True):
        epochs = len(points[0])
        winners = _winners([p[-1] for p in points], pareto=pareto)
        for _ in range(orders):
            order = rng.sample(range(len(points)), len(points))
            stops = dict(zip(order, stopped_at([points[i] for i in order], rungs, pareto=pareto), strict=True))
            saved.append(sum(cost[i] * (epochs - r) / epochs for i, r in stops.items() if r) / sum(cost))
            ok = [i for i in winners if stops[i] is None]
            kept.append((1.0 if ok else 0.0) if not pareto else len(ok) / len(winners))
    return Replay(len(saved), sum(saved) / len(saved), sum(kept) / len(kept))
