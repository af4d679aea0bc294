"""Proxy fidelity: how well a cheap training protocol ranks architectures, and where ranks settle.

The inputs are plain tables (``bench/proxy_fidelity.py`` makes them by training a fixed set of
architectures under several protocols through the search's own trials):

* runs: one row per trained run, columns ``architecture, protocol, seed, accuracy, cpu_seconds``
  (accuracy: validation top-1 % after the run's last epoch; cpu_seconds: the process CPU time of
  the trial, all threads);
* epochs: one row per run and epoch, columns ``architecture, protocol, seed, epoch, accuracy``
  (epoch counts from 1; the search's per-epoch reports).

A protocol's ranking is the order of the architectures by their mean accuracy over its seeds. Its
*fidelity* is Spearman's rho (and Kendall's tau) between that ranking and the reference protocol's;
its *noise ceiling* is the mean Spearman between the rankings of two of its own seeds (a protocol
cannot agree with the reference better than with itself, give or take the averaging over seeds).
Its cost is CPU-minutes per *pass*: one seed over the whole set. Fidelity per CPU-minute is the
Spearman divided by that cost.

Every rank correlation comes from :mod:`search.stats` (:func:`~search.stats.spearman`,
:func:`~search.stats.kendall`).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.stats import Verdict, compare_agreement, kendall, spearman
from space.spec import E3DError

if TYPE_CHECKING:  # pandas is imported where tables are made: search jobs, which import this module, make none
    import pandas as pd

RUN_COLUMNS = ("architecture", "protocol", "seed", "accuracy", "cpu_seconds")
EXTRA_RUN_COLUMNS = ("family", "macs", "precision")
"""Also on the runs table: the architecture's family and multiply-adds, and what the run ran as
(``precision`` user attribute: e.g. ``fp32 channels-last``, what ``--precision auto`` chose)."""
EPOCH_COLUMNS = ("architecture", "protocol", "seed", "epoch", "accuracy")
SETTLED = 0.8
"""Default threshold: epoch-e ranks have settled when their Spearman with the final ranks is at least this."""


_TOLERANCE = 1e-9
"""A Spearman this close below the threshold counts as reaching it (0.8 computes as 0.7999...)."""


class FidelityError(E3DError):
    """A fidelity table that cannot answer the question asked of it."""


class RungScheduleError(E3DError):
    """A rung schedule that does not fit the epochs of a trial."""


def _check(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise FidelityError(f"{what} table lacks column(s) {', '.join(missing)}")


def ranking(runs: pd.DataFrame, protocol: str) -> pd.Series:
    """Mean accuracy over seeds of each architecture under ``protocol`` (indexed by architecture)."""
    _check(runs, RUN_COLUMNS[:4], "runs")
    rows = runs[runs["protocol"] == protocol]
    if rows.empty:
        raise FidelityError(f"no runs of protocol {protocol!r} (protocols: {', '.join(map(str, runs['protocol'].unique()))})")
    return rows.groupby("architecture")["accuracy"].mean()


def _paired(*scores: pd.Series) -> list[list[float]]:
    """Per-architecture scores as lists over the architectures all of them have (in one order)."""
    import pandas as pd

    both = pd.concat([s.rename(i) for i, s in enumerate(scores)], axis=1, join="inner").dropna()
    return [both[i].tolist() for i in range(len(scores))]


def rank_agreement(a: pd.Series, b: pd.Series) -> tuple[float, float, int]:
    """(Spearman, Kendall, n) between two per-architecture scores over the architectures both have."""
    x, y = _paired(a, b)
    return spearman(x, y), kendall(x, y), len(x)


def _seed_scores(runs: pd.DataFrame, protocol: str) -> dict[Any, pd.Series]:
    """Each seed's accuracies under ``protocol`` (indexed by architecture), by seed."""
    rows = runs[runs["protocol"] == protocol]
    return {s: g.set_index("architecture")["accuracy"] for s, g in rows.groupby("seed")}


def noise_ceiling(runs: pd.DataFrame, protocol: str) -> float:
    """Mean Spearman between the rankings of every two seeds of ``protocol`` (NaN with one seed)."""
    by_seed = _seed_scores(runs, protocol)
    rhos = [rank_agreement(by_seed[s], by_seed[t])[0] for s, t in itertools.combinations(sorted(by_seed), 2)]
    rhos = [r for r in rhos if not math.isnan(r)]
    return sum(rhos) / len(rhos) if rhos else math.nan


def cpu_minutes_per_pass(runs: pd.DataFrame, protocol: str) -> float:
    """CPU-minutes of one seed of ``protocol`` over the whole set (its total over its seeds)."""
    _check(runs, RUN_COLUMNS, "runs")
    rows = runs[runs["protocol"] == protocol]
    seeds = rows["seed"].nunique()
    return float(rows["cpu_seconds"].sum()) / 60.0 / seeds if seeds else math.nan


@dataclass(frozen=True)
class Fidelity:
    """How one protocol ranks the set against the reference."""

    protocol: str
    seeds: int
    architectures: int
    """Architectures both protocols ranked."""
    spearman: float
    kendall: float
    one_run: float
    """Spearman of one seed's accuracies with the reference, averaged over seeds: what a search sees,
    which trains each candidate once."""
    noise_ceiling: float
    cpu_minutes: float
    """Per pass (one seed over the set)."""

    @property
    def per_cpu_minute(self) -> float:
        """Spearman with the reference per CPU-minute of one pass."""
        return self.spearman / self.cpu_minutes if self.cpu_minutes > 0 else math.nan


def fidelity(runs: pd.DataFrame, protocol: str, reference: str) -> Fidelity:
    """The :class:`Fidelity` of ``protocol`` against ``reference``."""
    ref = ranking(runs, reference)
    rho, tau, n = rank_agreement(ranking(runs, protocol), ref)
    one_run = [rank_agreement(scores, ref)[0] for scores in _seed_scores(runs, protocol).values()]
    seeds = len(one_run)
    single = math.fsum(one_run) / seeds if seeds and not any(map(math.isnan, one_run)) else math.nan
    return Fidelity(protocol, seeds, n, rho, tau, single, noise_ceiling(runs, protocol), cpu_minutes_per_pass(runs, protocol))


def fidelity_table(runs: pd.DataFrame, reference: str) -> list[Fidelity]:
    """One :class:`Fidelity` per protocol in ``runs`` (the reference too: its rho is 1 by definition,
    its noise ceiling and cost are what the others are measured against)."""
    return [fidelity(runs, p, reference) for p in dict.fromkeys(runs["protocol"])]


def agreement_verdicts(runs: pd.DataFrame, reference: str, baseline: str) -> dict[str, Verdict]:
    """For every protocol but ``reference`` and ``baseline``: does it rank the architectures more like
    ``reference`` than ``baseline`` does (:func:`search.stats.compare_agreement` over the architectures
    all three ranked)?"""
    ref, base = ranking(runs, reference), ranking(runs, baseline)
    out = {}
    for p in dict.fromkeys(runs["protocol"]):
        if p not in (reference, baseline):
            out[str(p)] = compare_agreement(*_paired(ranking(runs, p), base, ref))
    return out


def _f(x: float, digits: int = 2) -> str:
    return "-" if math.isnan(x) else f"{x:.{digits}f}"


def format_fidelity(rows: Sequence[Fidelity], reference: str) -> str:
    """A markdown table of :func:`fidelity_table`."""
    lines = [
        f"| protocol | seeds | architectures | Spearman vs {reference} | Kendall vs {reference} | one run: Spearman vs {reference} | "
        "seed-to-seed Spearman | CPU-min per pass | Spearman per CPU-min |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.protocol} | {r.seeds} | {r.architectures} | {_f(r.spearman)} | {_f(r.kendall)} | {_f(r.one_run)} | "
            f"{_f(r.noise_ceiling)} | {_f(r.cpu_minutes, 1)} | {_f(r.per_cpu_minute, 3)} |"
        )
    return "\n".join(lines)


# -- where ranks settle -----------------------------------------------------------------------------


def epoch_agreement(epochs: pd.DataFrame, final_epoch: int) -> dict[int, float]:
    """Spearman between the architectures' mean accuracies after each epoch ``e < final_epoch`` and
    after ``final_epoch`` (one protocol's per-epoch table)."""
    _check(epochs, EPOCH_COLUMNS, "epochs")
    if epochs["protocol"].nunique() > 1:
        raise FidelityError(f"the epochs table mixes protocols ({', '.join(map(str, epochs['protocol'].unique()))}); pass one")
    have = sorted(int(e) for e in epochs["epoch"].unique())
    if final_epoch not in have:
        raise FidelityError(f"the epochs table has no epoch {final_epoch} (it has {', '.join(map(str, have)) or 'none'})")
    mean = epochs.groupby(["epoch", "architecture"])["accuracy"].mean()
    final = mean.loc[final_epoch]
    return {e: rank_agreement(mean.loc[e], final)[0] for e in have if e < final_epoch}


def check_rungs(rungs: Sequence[int], epochs: int) -> tuple[int, ...]:
    """Validate a rung schedule for trials of ``epochs`` epochs: increasing epochs in 1 .. epochs - 1
    (a rung after the last epoch saves nothing). Raises :class:`RungScheduleError` in one line."""
    out = tuple(int(r) for r in rungs)
    if len(out) > epochs - 1:
        raise RungScheduleError(
            f"{len(out)} rung(s) ({', '.join(map(str, out))}) for {epochs}-epoch trials: at most {max(epochs - 1, 0)} "
            "(a rung must leave an epoch after it)"
        )
    if any(r < 1 or r >= epochs for r in out):
        raise RungScheduleError(f"rungs must be epochs 1 .. {epochs - 1} of {epochs}-epoch trials, got {', '.join(map(str, out))}")
    if list(out) != sorted(set(out)):
        raise RungScheduleError(f"rungs must be increasing epochs, got {', '.join(map(str, out))}")
    return out


def rung_schedule(
    fidelity_table: pd.DataFrame, epochs: int, threshold: float = SETTLED, *, max_rungs: int | None = None
) -> tuple[int, ...]:
    """Rungs for ``epochs``-epoch trials where ranks have settled: the epochs from the first one whose
    Spearman with the final (epoch ``epochs``) ranks is at least ``threshold`` and stays so at every
    later epoch, up to ``epochs - 1`` (at most ``max_rungs`` of them, the earliest). Empty when ranks
    settle only at the end: then pruning cannot save time without ranking on noise.

    ``fidelity_table`` is one protocol's per-epoch table (:data:`EPOCH_COLUMNS`), measured with at
    least ``epochs`` epochs. Asking for more rungs than the trials have epochs is a
    :class:`RungScheduleError`."""
    if epochs < 1:
        raise RungScheduleError(f"trials need at least one epoch, got {epochs}")
    if max_rungs is not None and max_rungs > epochs - 1:
        raise RungScheduleError(f"{max_rungs} rungs asked for {epochs}-epoch trials: at most {max(epochs - 1, 0)}")
    rho = epoch_agreement(fidelity_table, epochs)
    settled: list[int] = []
    for e in sorted(rho, reverse=True):  # from the last epoch back: stop at the first unsettled one
        if math.isnan(rho[e]) or rho[e] < threshold - _TOLERANCE:
            break
        settled.insert(0, e)
    chosen = settled[:max_rungs] if max_rungs is not None else settled
    return check_rungs(chosen, epochs)


def format_epochs(rho: dict[int, float], final_epoch: int) -> str:
    """A markdown table of :func:`epoch_agreement`."""
    lines = [f"| epoch | Spearman vs epoch {final_epoch} |", "|---:|---:|"]
    lines += [f"| {e} | {_f(r)} |" for e, r in sorted(rho.items())]
    return "\n".join(lines)


# -- the architectures measured -----------------------------------------------------------------------


def architecture_set(*, seed: int = 0, sampled: int = 7, max_macs: float = 1000e6) -> list[tuple[str, dict[str, Any]]]:
    """The fixed, stratified set whose ranking is measured: ``(label, search params)`` pairs.

    Every family of :data:`search.searchspace.FAMILIES` at the lowest and the highest of its Table 8
    widths (SqueezeNet has one), then ``sampled`` specs drawn from the search space by a random
    sampler seeded with ``seed``, the families taken in turn, each under ``max_macs`` multiply-adds
    per 16x112x112 clip (the defaults give 16 architectures). A pure function of its arguments."""
    from profiler.counting import spec_totals
    from search.searchspace import FAMILIES, paper_presets, preset_params, sample_params, spec_from_params

    out: list[tuple[str, dict[str, Any]]] = []
    for family in FAMILIES:
        widths = sorted(w for f, w in paper_presets([family]) if f == family)
        for w in dict.fromkeys((widths[0], widths[-1])):
            out.append((f"preset {family} {w:g}x", preset_params(family, w)))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    studies = [optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed * 1000 + k)) for k in range(len(FAMILIES))]
    for i in range(sampled):
        family = FAMILIES[i % len(FAMILIES)]
        for _ in range(1000):  # redraw (the family's seeded stream) until one is under max_macs
            params = sample_params(studies[i % len(FAMILIES)].ask(), (family,))
            if spec_totals(spec_from_params(params)).macs <= max_macs:
                break
        else:
            raise FidelityError(f"no {family} spec under {max_macs / 1e6:g} M multiply-adds in 1000 draws")
        out.append((f"sampled {family} {params[f'{family}.width_mult']:.2f}x #{i}", params))
    return out


# -- from the trials of a study ----------------------------------------------------------------------

CPU_ATTR = "cpu_seconds"
"""Trial user attribute: the process CPU time (all threads) the trial took, set by :class:`CpuTimed`."""


_TRIAL_START: ContextVar[float | None] = ContextVar("e3d_trial_cpu_start", default=None)


class CpuTimed:
    """An objective wrapper that stores the CPU time of each trial on it (:data:`CPU_ATTR`)."""

    def __init__(self, objective: Callable[[optuna.Trial], Any]) -> None:
        self.objective = objective

    def __call__(self, trial: optuna.Trial) -> Any:
        """Run the wrapped objective; its CPU time is stored however it ends (returned, pruned, failed)."""
        start = time.process_time()
        token = _TRIAL_START.set(start)
        try:
            return self.objective(trial)
        finally:
            _TRIAL_START.reset(token)
            trial.set_user_attr(CPU_ATTR, time.process_time() - start)


def trial_cpu_seconds() -> float | None:
    """CPU seconds of the trial that :class:`CpuTimed` is running in this context so far, on the clock
    it stores at the end (None outside one)."""
    start = _TRIAL_START.get()
    return None if start is None else time.process_time() - start


def stop_trial(trial: optuna.Trial, why: str, *, epoch: int, accuracy: float, **attrs: Any) -> NoReturn:
    """Stop ``trial`` after ``epoch`` (raise :class:`optuna.TrialPruned` with ``why``): it records the
    ``accuracy`` it reached, the ``epochs`` it ran and any further ``attrs``."""
    for key, value in {"accuracy": accuracy, "epochs": epoch, **attrs}.items():
        trial.set_user_attr(key, value)
    raise optuna.TrialPruned(why)


QUEUED_SOURCES = ("baseline", "sweep")
"""Trial ``source`` of the presets a study was given (not searched)."""


def cpu_seconds(trials: Sequence[FrozenTrial], *, searched: bool = True) -> float:
    """CPU seconds (:data:`CPU_ATTR`) that the searched trials took, or with ``searched`` False the
    given presets (:data:`QUEUED_SOURCES`)."""
    return sum(float(t.user_attrs.get(CPU_ATTR, 0.0)) for t in trials if (t.user_attrs.get("source") not in QUEUED_SOURCES) == searched)


def stop_if_budget_spent(trial: optuna.Trial, cpu_so_far: float, budget_s: float, *, epoch: int, accuracy: float) -> None:
    """Between two epochs of a searched trial: store its CPU time so far (:data:`CPU_ATTR`, which
    :class:`CpuTimed` replaces with the whole trial's at its end), so every worker's budget check counts
    the trials still running, and raise :class:`optuna.TrialPruned` once the study's searched trials
    have used ``budget_s`` CPU seconds together (the trial records ``stopped``, its accuracy and epochs)."""
    trial.set_user_attr(CPU_ATTR, cpu_so_far)
    if cpu_seconds(trial.study.get_trials(deepcopy=False)) < budget_s:
        return
    stop_trial(trial, f"the search's CPU budget is spent (after epoch {epoch})", epoch=epoch, accuracy=accuracy, stopped="cpu budget")


def current_trials(trials: Sequence[FrozenTrial], archs: Sequence[tuple[str, Mapping[str, Any]]]) -> list[FrozenTrial]:
    """The trials that ran an architecture of ``archs`` as it is now: their ``label`` is in ``archs``
    and their parameters (a queued trial's fixed ones) build the same spec: a label whose sampled spec
    changed, or that a smaller set no longer holds, is left out."""
    from search.searchspace import spec_from_params

    specs = {label: spec_from_params(params) for label, params in archs}
    out = []
    for t in trials:
        label = t.user_attrs.get("label")
        if label not in specs:
            continue
        try:
            same = spec_from_params(t.params or t.system_attrs.get("fixed_params", {})) == specs[label]
        except (KeyError, E3DError):
            same = False
        if same:
            out.append(t)
    return out


def trial_tables(trials: Sequence[FrozenTrial], protocol: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs and epochs tables (:data:`RUN_COLUMNS`, :data:`EPOCH_COLUMNS`, plus
    :data:`EXTRA_RUN_COLUMNS` on runs) of the completed trials of one protocol's study; each trial carries its
    architecture's ``label`` and its ``seed`` as user attributes, its per-epoch validation
    accuracies as intermediate values (epoch index from 0)."""
    import pandas as pd

    runs, epochs = [], []
    for t in trials:
        a = t.user_attrs
        if t.state != TrialState.COMPLETE or a.get("label") is None or a.get("accuracy") is None:
            continue
        key = {"architecture": a["label"], "protocol": protocol, "seed": int(a["seed"])}
        runs.append({**key, "accuracy": float(a["accuracy"]), "cpu_seconds": float(a.get(CPU_ATTR, math.nan)),
                     "family": a.get("family"), "macs": a.get("macs"), "precision": a.get("precision")})  # fmt: skip
        epochs += [{**key, "epoch": step + 1, "accuracy": float(v)} for step, v in sorted(t.intermediate_values.items())]
    return pd.DataFrame(runs, columns=[*RUN_COLUMNS, *EXTRA_RUN_COLUMNS]), pd.DataFrame(epochs, columns=list(EPOCH_COLUMNS))


def at_chance(runs: pd.DataFrame, protocol: str, chance: float, *, margin: float = 2.0) -> list[str]:
    """Architectures whose mean accuracy under ``protocol`` is within ``margin`` points of chance."""
    mean = ranking(runs, protocol)
    return sorted(str(a) for a, m in mean.items() if m <= chance + margin)
