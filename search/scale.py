"""Scaling studies: train a network's scaled versions with the search's trial machinery.

Three modes (``ScaleConfig.mode``), each planned as *points* (a spec, trained once per seed):

* ``axes``: the base and, for each axis, the factors that give the asked cost ratios (0.25x-4x);
* ``compound`` (EfficientNet): a small grid at one step of ``step`` x the base cost, splitting the
  cost between the axes (shares of ``1/grid`` each); the most accurate split gives per-axis factors
  per step (the exponents), and the base scaled by them to the power ``phi`` is trained at each target;
* ``expand`` (X3D): from the base, each step tries one expansion per axis sized to ``step`` x the
  current cost (the last step lands on the target), trains them, and keeps the one with the best
  accuracy gain per multiply-add, until the target cost.

Points are enqueued as fixed trials of an Optuna study (the storage, heartbeats, retries and workers
of :mod:`search.study`; every worker runs the same command). :func:`plan` is a pure function of the
results so far, so any worker plans the next step the same way and a resumed run continues where it
stopped. Costs are multiply-adds of the spec at its clip (``clip``, default 16x112x112, like the
search's budget); training uses the proxy clip scaled with it (a 2x-frames point trains on 2x-frames
proxy clips, rendered at that size).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from profiler.counting import spec_totals
from profiler.cpu import detect_cpu
from search.budget import validate_for_clip
from search.searchspace import Clip
from search.stats import summarize
from search.study import Objective, ProxyData, SearchConfig, load_proxy, run_worker, worker_id
from space.files import write_text
from space.scaling import Axis, check_axis, has_axis, scale, scale_many
from space.spec import E3DError, NetSpec, SpecError

MODES = ("axes", "compound", "expand")
NEAR_TARGET = 0.95
"""An expansion stops once its path costs this share of the target (``--to``) or more."""
SCALE_ATTR = "e3d_scale"
"""Study user attribute holding the :class:`ScaleConfig`."""
POINT_ATTRS = ("point", "mode", "step", "axis", "factor", "factors", "target_ratio", "spec", "proxy_clip", "seed", "source")
"""Trial user attributes that define a point's run (copied when an interrupted one is re-run)."""


class ScaleError(E3DError):
    """A scaling study that cannot be planned as asked (target below the base, nothing to train)."""


@dataclass(frozen=True)
class ScaleConfig:
    """What a scaling study trains: the base spec (at the counting clip), the mode and its settings."""

    base: str
    """The base spec as JSON, at the clip its cost is counted on."""
    mode: str = "axes"
    axes: tuple[str, ...] = ("width", "depth", "frames", "resolution")
    ratios: tuple[float, ...] = (0.25, 0.5, 2.0, 4.0)
    """``axes``: cost ratios to the base; ``compound``: the targets of the fitted compound scaling."""
    factors: tuple[float, ...] = ()
    """``axes``: factors of each axis to train instead of cost ratios (e.g. 0.5, 2: half and twice the frames)."""
    step: float = 2.0
    """``expand``: cost ratio of each expansion step; ``compound``: cost ratio of the grid."""
    to_macs: float | None = None
    """``expand``: stop once the path costs at least this (multiply-adds)."""
    grid: int = 2
    """``compound``: each axis takes 0, 1/grid, ..., 1 of the grid step's cost."""
    seeds: int = 1
    proxy_clip: Clip = (16, 48, 48)
    versus: str | None = None
    """``expand``: also train the base scaled along this one axis (e.g. ``width``) to each path point's cost."""
    batch_size: int = 2
    """Clips per training step (the proxy's): every point must train in such batches at its proxy clip."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ScaleError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        for what, values in (("axis", self.axes), ("factor", [f"{f:g}" for f in self.factors]), ("ratio", [f"{r:g}" for r in self.ratios])):
            twice = next((v for i, v in enumerate(values) if v in values[:i]), None)
            if twice is not None:  # its point would be planned twice, under one id
                raise ScaleError(f"{what} {twice} is given twice; give each once")
        spec = self.spec
        for a in self.axes:
            check_axis(spec, a)
        if not self.axes:
            raise ScaleError("choose at least one axis")
        if self.versus is not None and not has_axis(spec, self.versus):
            raise SpecError(str(Axis.parse(self.versus)), f"{spec.family} has no {Axis.parse(self.versus).name} axis to compare with")
        for a, f in itertools.product(self.axes, self.factors):
            check_trainable(spec, a, f, self.proxy_clip, batch_size=self.batch_size)  # before any training
        for r in self.ratios:
            if not 0 < r < math.inf:
                raise ScaleError(f"cost ratios must be positive numbers, got {r}")
        if not self.step > 1:
            raise ScaleError(f"the step must be a cost ratio above 1, got {self.step}")
        if self.mode == "expand" and self.to_macs is None:
            raise ScaleError("an expansion needs a target cost (--to, e.g. 1000M)")
        if self.seeds < 1 or self.grid < 1:
            raise ScaleError("seeds and grid must be at least 1")

    @property
    def spec(self) -> NetSpec:
        """The base spec."""
        return NetSpec.from_json(self.base)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (stored on the study)."""
        data: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(self)))
        return data

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ScaleConfig:
        """Inverse of :meth:`to_dict`."""
        tuples = {k: tuple(d[k]) for k in ("axes", "ratios", "factors", "proxy_clip") if k in d}
        return cls(**{**d, **tuples})


@dataclass(frozen=True)
class Point:
    """One network of the study: ``spec`` (at the counting clip), trained at ``proxy_clip`` once per seed."""

    mode: str
    step: int
    axis: str
    factors: Mapping[str, float]
    target_ratio: float
    spec: NetSpec
    proxy_clip: Clip

    @property
    def curve(self) -> str:
        """The curve it belongs to: its axis (single-axis points), ``compound``, ``grid`` or ``base``."""
        if self.mode == "versus":
            return f"{next(iter(self.factors))} only"
        return next(iter(self.factors)) if self.mode in ("axes", "expand") else self.mode

    @property
    def id(self) -> str:
        """Unique within a study, e.g. ``expand/2/depth``."""
        return f"{self.mode}/{self.step}/{self.axis}"

    @functools.cached_property
    def macs(self) -> int:
        """Multiply-adds per clip (analytic, without building)."""
        return macs(self.spec)

    def attrs(self, seed: int) -> dict[str, Any]:
        """The user attributes of this point's trial for ``seed``."""
        factor = next(iter(self.factors.values())) if len(self.factors) == 1 else math.nan
        return {
            "source": "scale",
            "point": self.id,
            "mode": self.mode,
            "step": self.step,
            "axis": self.axis,
            "factor": factor,
            "factors": json.dumps(dict(self.factors)),
            "target_ratio": self.target_ratio,
            "spec": self.spec.to_json(),
            "proxy_clip": list(self.proxy_clip),
            "seed": seed,
        }


@dataclass(frozen=True)
class Result:
    """A point's accuracy over the seeds finished so far (``done`` counts failed runs too)."""

    accuracies: tuple[float, ...]
    done: int
    pending: bool

    @property
    def mean(self) -> float:
        """Mean accuracy (NaN when no run finished with one)."""
        return summarize(self.accuracies).mean if self.accuracies else math.nan


# -- sizing a step -----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=65536)
def macs(spec: NetSpec) -> int:
    """Multiply-adds of ``spec`` per clip (memoised: planning prices the same specs again each round)."""
    return spec_totals(spec).macs


@functools.lru_cache(maxsize=4096)
def _scaled(spec: NetSpec, axis: str, factor: float) -> NetSpec:
    return scale(spec, axis, factor)


@functools.lru_cache(maxsize=4096)
def factor_for_cost(
    spec: NetSpec, axis: str, ratio: float, *, cost: Callable[[NetSpec], float] = macs, tolerance: float = 1.25
) -> tuple[float, NetSpec] | None:
    """The factor along ``axis`` whose spec costs nearest ``ratio`` x ``spec``'s cost, and that spec.

    Bisection on the log of the factor (cost grows with every axis); sizes the strides refuse count
    as too far. None when the nearest reachable cost is off by more than ``tolerance`` x (depth
    cannot go below one unit per stage, a clip below the strides' minimum).
    """
    base = cost(spec)
    target = math.log(ratio)
    lo, hi = (0.0, 3 * target) if ratio > 1 else (3 * target, 0.0)
    best: tuple[float, float, NetSpec] | None = None
    for _ in range(28):
        x = (lo + hi) / 2
        try:
            s = _scaled(spec, axis, math.exp(x))
            got = math.log(cost(s) / base)
        except SpecError:
            s, got = None, -math.inf if ratio > 1 else math.inf  # invalid: treat as short of the target
        if s is not None and (best is None or abs(got - target) < best[0]):
            best = (abs(got - target), math.exp(x), s)
            if best[0] < 0.005:  # within 0.5%: close enough, and each try traces a network
                break
        if got < target:
            lo = x
        else:
            hi = x
    if best is None or best[0] > math.log(tolerance):
        return None
    return round(best[1], 4), best[2]


@functools.lru_cache(maxsize=4096)
def proxy_clip_for(spec: NetSpec, base: NetSpec, proxy: Clip, *, batch_size: int = 2) -> Clip:
    """The training clip of ``spec``: ``proxy`` scaled as ``spec``'s clip is to ``base``'s, the nearest at which it can
    train in batches of ``batch_size`` (:func:`search.budget.validate_for_clip`)."""
    want = [p * c / b for p, c, b in zip(proxy, spec.clip, base.clip, strict=True)]
    order = lambda w: sorted(range(max(1, round(w) - 3), round(w) + 4), key=lambda n: (abs(n - w), n))  # noqa: E731
    for t, h in itertools.product(order(want[0]), order(want[1])):
        clip = (t, h, max(1, round(h * want[2] / want[1])))
        try:
            validate_for_clip(spec, clip, batch_size=batch_size)
            return clip
        except SpecError:
            continue
    raise SpecError("clip", f"{spec.summary()} cannot run at a proxy clip near {'x'.join(f'{w:.0f}' for w in want)}")


def check_trainable(spec: NetSpec, axis: str, factor: float, proxy: Clip, *, batch_size: int = 2) -> NetSpec:
    """``spec`` scaled by ``factor`` along ``axis``; :class:`SpecError` naming the axis when the scaled
    network fits its strides neither at the counting clip (:func:`space.scaling.scale`) nor at the
    proxy clip scaled with it, in batches of ``batch_size`` (:func:`proxy_clip_for`)."""
    scaled = scale(spec, axis, factor)
    try:
        proxy_clip_for(scaled, spec, proxy, batch_size=batch_size)
    except SpecError as e:
        raise SpecError(axis, f"factor {factor:g} is below what the strides allow at the proxy clip: {e.reason}") from None
    return scaled


def _point(cfg: ScaleConfig, mode: str, step: int, axis: str, factors: Mapping[str, float], ratio: float, spec: NetSpec) -> Point:
    return Point(mode, step, axis, dict(factors), ratio, spec, proxy_clip_for(spec, cfg.spec, cfg.proxy_clip, batch_size=cfg.batch_size))


def base_point(cfg: ScaleConfig) -> Point:
    """The unscaled network."""
    return _point(cfg, "base", 0, "base", {}, 1.0, cfg.spec)


# -- planning ----------------------------------------------------------------------------------------


@dataclass
class Plan:
    """Every point the results so far call for, the expansion path (or compound exponents), and whether all is done."""

    points: list[Point]
    finished: bool
    path: list[Point] = field(default_factory=list)
    exponents: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _complete(cfg: ScaleConfig, results: Mapping[str, Result], points: Iterable[Point]) -> bool:
    return all(p.id in results and results[p.id].done >= cfg.seeds and not results[p.id].pending for p in points)


def plan(cfg: ScaleConfig, results: Mapping[str, Result]) -> Plan:
    """The points to train given the ``results`` so far (pure: every worker plans the same)."""
    if cfg.mode == "axes":
        return _plan_axes(cfg, results)
    if cfg.mode == "compound":
        return _plan_compound(cfg, results)
    return _plan_expand(cfg, results)


def _plan_axes(cfg: ScaleConfig, results: Mapping[str, Result]) -> Plan:
    out = Plan([base_point(cfg)], False)
    spec = cfg.spec
    for axis in cfg.axes:
        for f in cfg.factors:  # scaled as asked: a factor the axis cannot take is an error naming it
            s = scale(spec, axis, f)
            out.points.append(_point(cfg, "axes", 0, f"{axis}x{f:g}", {axis: f}, macs(s) / macs(spec), s))
        for r in () if cfg.factors else cfg.ratios:
            found = factor_for_cost(spec, axis, r)
            if found is None:
                out.notes.append(f"{axis}: no factor gives {r:g}x the base cost; left out")
                continue
            f, s = found
            out.points.append(_point(cfg, "axes", 0, f"{axis}@{r:g}", {axis: f}, r, s))
    out.finished = _complete(cfg, results, out.points)
    return out


def compound_grid(spec: NetSpec, axes: Sequence[str], *, step: float = 2.0, grid: int = 2) -> list[dict[str, float]]:
    """EfficientNet's grid at one step: every split of ``step`` x the cost between ``axes`` in shares of
    ``1/grid``; each axis' factor is the one that alone buys its share (``step ** share``)."""
    combos = []
    for shares in itertools.product(range(grid + 1), repeat=len(axes)):
        if sum(shares) != grid:
            continue
        factors: dict[str, float] = {}
        for axis, k in zip(axes, shares, strict=True):
            if k:
                found = factor_for_cost(spec, axis, step ** (k / grid))
                if found is None:
                    break
                factors[axis] = found[0]
        else:
            combos.append(factors)
    return combos


def fit_compound(combos: Sequence[Mapping[str, float]], scores: Sequence[float], *, step: float = 2.0) -> dict[str, float]:
    """The exponents of the best-scoring combination: per axis, log(factor) / log(step), so that
    scaling by ``factor ** phi`` costs about ``step ** phi``. NaN scores never win."""
    ranked = [(s, i) for i, s in enumerate(scores) if not math.isnan(s)]
    if not ranked:
        raise ScaleError("no grid point finished with an accuracy; cannot fit the compound exponents")
    best = combos[max(ranked)[1]]
    return {axis: math.log(f) / math.log(step) for axis, f in best.items()}


def compound_spec(spec: NetSpec, exponents: Mapping[str, float], *, ratio: float, step: float = 2.0) -> tuple[float, NetSpec]:
    """``phi`` and the base scaled by ``step ** (exponent * phi)`` per axis, with ``phi`` chosen so that it
    costs about ``ratio`` x the base (bisection)."""
    base = macs(spec)
    lo, hi = (0.0, 4 * math.log(ratio, step)) if ratio > 1 else (4 * math.log(ratio, step), 0.0)
    best: tuple[float, float, NetSpec] | None = None
    for _ in range(28):
        phi = (lo + hi) / 2
        try:
            s = scale_many(spec, {a: step ** (e * phi) for a, e in exponents.items()})
            got = macs(s) / base
        except SpecError:
            s, got = None, 0.0 if ratio > 1 else math.inf
        if s is not None and (best is None or abs(math.log(got / ratio)) < best[0]):
            best = (abs(math.log(got / ratio)), phi, s)
        lo, hi = (phi, hi) if got < ratio else (lo, phi)
    if best is None:
        raise ScaleError(f"compound scaling cannot reach {ratio:g}x the base cost")
    return round(best[1], 4), best[2]


def _plan_compound(cfg: ScaleConfig, results: Mapping[str, Result]) -> Plan:
    spec = cfg.spec
    combos = compound_grid(spec, cfg.axes, step=cfg.step, grid=cfg.grid)
    grid = [_point(cfg, "grid", 1, "+".join(f"{a}={f:g}" for a, f in c.items()), c, cfg.step, scale_many(spec, c)) for c in combos]
    out = Plan([base_point(cfg), *grid], False)
    if not _complete(cfg, results, out.points):
        return out
    out.exponents = fit_compound(combos, [results[p.id].mean for p in grid], step=cfg.step)
    for r in cfg.ratios:
        phi, s = compound_spec(spec, out.exponents, ratio=r, step=cfg.step)
        factors = {a: round(cfg.step ** (e * phi), 4) for a, e in out.exponents.items()}
        out.points.append(_point(cfg, "compound", 2, f"compound@{r:g}", factors, r, s))
    out.finished = _complete(cfg, results, out.points)
    return out


def expansions(cfg: ScaleConfig, current: Point, step: int) -> list[Point]:
    """Step ``step`` of an expansion: one candidate per axis, each about ``cfg.step`` x ``current``'s
    cost (less for the last step, which lands on the target). An axis whose nearest size does not add to
    the cost (a factor that rounds to the same frames) has no candidate."""
    assert cfg.to_macs is not None
    ratio = min(cfg.step, cfg.to_macs / current.macs)
    out = []
    for axis in cfg.axes:
        found = factor_for_cost(current.spec, axis, ratio)
        if found is not None and macs(found[1]) > current.macs:
            f, s = found
            out.append(_point(cfg, "expand", step, axis, {axis: f}, ratio, s))
    return out


def gain_per_macs(result: Result, point: Point, before: Result, start: Point) -> float:
    """Accuracy points gained per million multiply-adds added (NaN without an accuracy)."""
    return (result.mean - before.mean) / max(1e-9, (point.macs - start.macs) / 1e6)


def _plan_expand(cfg: ScaleConfig, results: Mapping[str, Result]) -> Plan:
    assert cfg.to_macs is not None
    current = base_point(cfg)
    out = Plan([current], False, path=[current])
    step = 0
    while _complete(cfg, results, [current]):
        if current.macs >= NEAR_TARGET * cfg.to_macs:
            out.finished = True
            break
        step += 1
        candidates = expansions(cfg, current, step)
        if not candidates:
            out.notes.append(f"step {step}: no axis can grow {current.spec.summary()}; stopped")
            out.finished = True
            break
        out.points += candidates
        for axis in cfg.axes:
            if axis not in {c.curve for c in candidates}:
                ratio = min(cfg.step, cfg.to_macs / current.macs)
                out.notes.append(
                    f"step {step}: no {axis} factor gives {ratio:.2f}x the cost of {current.id} (the strides' sizes); left out"
                )
        if not _complete(cfg, results, candidates):
            break
        gains = [gain_per_macs(results[c.id], c, results[current.id], current) for c in candidates]
        current = candidates[max(range(len(gains)), key=lambda i: -math.inf if math.isnan(gains[i]) else gains[i])]
        out.path.append(current)
        out.points += _versus(cfg, current)
    if out.finished and cfg.versus is not None:
        out.finished = _complete(cfg, results, [p for p in out.points if p.mode == "versus"])
    return out


def _versus(cfg: ScaleConfig, point: Point) -> list[Point]:
    """The base scaled along ``cfg.versus`` alone to ``point``'s cost (none without ``versus``, or when out of reach)."""
    if cfg.versus is None:
        return []
    ratio = point.macs / macs(cfg.spec)
    found = factor_for_cost(cfg.spec, cfg.versus, ratio)
    if found is None:
        return []
    f, s = found
    return [_point(cfg, "versus", point.step, f"{cfg.versus}@{point.step}", {cfg.versus: f}, ratio, s)]


# -- the study ------------------------------------------------------------------------------------------


def results_of(trials: Iterable[FrozenTrial]) -> dict[str, Result]:
    """Each point's accuracies from the study's trials (an interrupted run awaits its re-run)."""
    runs: dict[str, dict[int, float]] = {}  # point -> seed -> accuracy (NaN: failed in training)
    pending: set[str] = set()
    for t in trials:
        pid = t.user_attrs.get("point")
        if pid is None:
            continue
        seeds = runs.setdefault(pid, {})
        seed = int(t.user_attrs.get("seed", 0))
        if t.state in (TrialState.WAITING, TrialState.RUNNING):
            pending.add(pid)
        elif seed in seeds:
            continue  # two workers queued the same run at once: the first to finish counts
        elif t.state == TrialState.COMPLETE and t.user_attrs.get("accuracy") is not None:
            seeds[seed] = float(t.user_attrs["accuracy"])
        elif t.state == TrialState.FAIL and "error" in t.user_attrs:
            seeds[seed] = math.nan  # a run that failed in training (non-finite loss) counts, without an accuracy
    return {pid: Result(tuple(a for _, a in sorted(s.items()) if not math.isnan(a)), len(s), pid in pending) for pid, s in runs.items()}


def enqueue(study: optuna.Study, cfg: ScaleConfig, points: Sequence[Point]) -> int:
    """Enqueue every (point, seed) the study does not hold yet; returns how many."""
    have = {(t.user_attrs.get("point"), t.user_attrs.get("seed")) for t in study.get_trials(deepcopy=False)}
    n = 0
    for p in points:
        for seed in range(cfg.seeds):
            if (p.id, seed) not in have:
                study.enqueue_trial({}, user_attrs=p.attrs(seed))
                n += 1
    return n


def requeue_interrupted_points(study: optuna.Study) -> int:
    """Enqueue again each point run that Ctrl-C stopped in training (with all its point attributes)."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    n = 0
    for t in trials:
        if t.state == TrialState.FAIL and t.user_attrs.get("interrupted") and "point" in t.user_attrs and t.number not in retried:
            attrs = {k: t.user_attrs[k] for k in POINT_ATTRS if k in t.user_attrs}
            study.enqueue_trial({}, user_attrs={**attrs, "retry_of": t.number})
            n += 1
    return n


def taken_by(trials: Iterable[FrozenTrial], number: int, point: str, seed: int) -> int | None:
    """The earlier trial that runs or ran ``point`` at ``seed`` (two workers that planned a step at the
    same moment both queue it), or None when trial ``number`` is the one to train it. Optuna hands out
    queued trials oldest first, so the earlier of two twins always starts first."""
    for t in trials:
        a = t.user_attrs
        if t.number < number and t.state in (TrialState.RUNNING, TrialState.COMPLETE) and a.get("point") == point and a.get("seed") == seed:
            return t.number
    return None


def network(spec: str) -> dict[str, Any]:
    """What a spec JSON builds: every field but ``width_mult``, a label that building and counting ignore
    (two width factors that round to the same channels make one network)."""
    fields: dict[str, Any] = json.loads(spec)
    fields.pop("width_mult", None)
    return fields


def trained_before(trials: Iterable[FrozenTrial], spec: str, proxy_clip: Sequence[int], seed: int) -> FrozenTrial | None:
    """A finished run of the same network (:func:`network`), proxy clip and seed under another point of
    the study, whose result training again would repeat (width alone landing on a width step's network)."""
    run = (network(spec), list(proxy_clip), seed)
    done = (t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("accuracy") is not None and "spec" in t.user_attrs)
    for t in done:
        if (network(t.user_attrs["spec"]), t.user_attrs.get("proxy_clip"), t.user_attrs.get("seed")) == run:
            return t
    return None


def reuse(trial: optuna.Trial, done: FrozenTrial) -> float:
    """Record ``done``'s run as ``trial``'s (all but its point attributes), marked ``reused_from``."""
    for k, v in done.user_attrs.items():
        if k not in (*POINT_ATTRS, "retry_of"):
            trial.set_user_attr(k, v)
    trial.set_user_attr("trained", False)
    trial.set_user_attr("reused_from", done.number)
    return float(done.user_attrs["accuracy"])


@dataclass
class ScaleObjective(Objective):
    """Train one enqueued point: its spec at its proxy clip, on the proxy data of that clip."""

    cache: dict[Clip, ProxyData] = field(default_factory=dict)
    progress: bool = False

    def _data(self, clip: Clip) -> ProxyData:
        if clip not in self.cache:
            proxy = dataclasses.replace(self.config.proxy, clip=clip)
            self.cache[clip] = load_proxy(proxy, progress=self.progress)
        return self.cache[clip]

    def __call__(self, trial: optuna.Trial) -> float:
        """Train the point of ``trial`` and return its held-out accuracy."""
        a = trial.user_attrs
        if "point" not in a:  # another worker took the last queued point: nothing to train
            raise optuna.TrialPruned("no scaling point queued")
        trials = trial.study.get_trials(deepcopy=False)
        twin = taken_by(trials, trial.number, a["point"], int(a["seed"]))
        if twin is not None:
            raise optuna.TrialPruned(f"trial {twin} trains this point and seed")
        same = trained_before(trials, a["spec"], a["proxy_clip"], int(a["seed"]))
        if same is not None:
            return reuse(trial, same)
        try:  # stopped anywhere in the point's own work (data, timing, training, its record): run it again
            return self._run(trial, a)
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            raise

    def _run(self, trial: optuna.Trial, a: dict[str, Any]) -> float:
        """Train the point's network, recording it and how it did; its held-out accuracy."""
        spec = NetSpec.from_json(a["spec"])
        clip: Clip = (int(a["proxy_clip"][0]), int(a["proxy_clip"][1]), int(a["proxy_clip"][2]))
        c = spec_totals(spec)
        self.data = self._data(clip)
        latency = self.latency(spec) if self.latency is not None else None
        info = {"family": spec.family, "width_mult": spec.width_mult, "summary": spec.summary(), "macs": c.macs, "params": c.params,
                "paper_mflops": round(c.paper_flops / 1e6, 3), "activations": c.activations, "feasible": True, "rejected_reason": "",
                "latency_ms": latency, "task": self.data.task, "worker": worker_id(),
                "cpu": detect_cpu().describe(), "trained": True}  # fmt: skip
        for k, v in info.items():
            trial.set_user_attr(k, v)
        accuracy, best, epochs = self._train(trial, validate_for_clip(spec, clip, batch_size=self.config.proxy.batch_size), int(a["seed"]))
        trial.set_user_attr("accuracy", accuracy)
        trial.set_user_attr("best_accuracy", best)
        trial.set_user_attr("epochs", epochs)
        return accuracy


def run_scale(
    study: optuna.Study,
    search: SearchConfig,
    cfg: ScaleConfig,
    *,
    latency: Callable[[NetSpec], float] | None = None,
    on_trial: Callable[[FrozenTrial], None] | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    progress: bool = False,
    poll: float = 5.0,
) -> Plan:
    """Plan, enqueue and train until the plan is finished (several workers may run this on one study).

    ``on_plan(plan)`` is called after each planning round (once its points are enqueued). Returns the final plan.
    """
    objective = ScaleObjective(search, ProxyData(None, None, 0, search.proxy.task), latency, progress=progress)
    while True:
        requeue_interrupted_points(study)
        current = plan(cfg, results_of(study.get_trials(deepcopy=False)))
        enqueue(study, cfg, current.points)
        if on_plan is not None:
            on_plan(current)
        if current.finished:
            return current
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if waiting:
            run_worker(study, search, objective.data, n_trials=0, latency=latency, on_trial=on_trial, objective=objective)
        else:
            time.sleep(poll)  # the points left are running on other workers


def points_frame(cfg: ScaleConfig, final: Plan, trials: Iterable[FrozenTrial]) -> pd.DataFrame:
    """One row per planned point: where it sits, its cost, its accuracy over seeds (mean, sample sd) and
    the CPUs that trained it."""
    trials = list(trials)
    results = results_of(trials)
    latency: dict[str, list[float]] = {}
    cpus: dict[str, dict[str, None]] = {}
    for t in trials:
        if t.user_attrs.get("latency_ms") is not None and "point" in t.user_attrs:
            latency.setdefault(t.user_attrs["point"], []).append(float(t.user_attrs["latency_ms"]))
        if t.user_attrs.get("cpu") and "point" in t.user_attrs:
            cpus.setdefault(t.user_attrs["point"], {})[str(t.user_attrs["cpu"])] = None
    on_path = {p.id for p in final.path}
    rows = []
    for p in final.points:
        r = results.get(p.id, Result((), 0, False))
        s = summarize(r.accuracies) if r.accuracies else None
        c = spec_totals(p.spec)
        rows.append({
            "point": p.id, "mode": p.mode, "step": p.step, "axis": p.curve, "factors": json.dumps(dict(p.factors)),
            "target_ratio": p.target_ratio, "macs": c.macs, "params": c.params, "paper_mflops": round(c.paper_flops / 1e6, 3),
            "cost_ratio": c.macs / macs(cfg.spec), "accuracy_mean": s.mean if s else math.nan, "accuracy_sd": s.sd if s else math.nan,
            "seeds_done": len(r.accuracies), "latency_ms": summarize(latency[p.id]).mean if p.id in latency else math.nan,
            "on_path": p.id in on_path, "clip": "x".join(map(str, p.spec.clip)), "proxy_clip": "x".join(map(str, p.proxy_clip)),
            "summary": p.spec.summary(), "spec": json.dumps(p.spec.to_dict()), "cpu": "; ".join(cpus.get(p.id, {})),
        })  # fmt: skip
    return pd.DataFrame(rows)


def path_frame(points: pd.DataFrame, final: Plan) -> pd.DataFrame:
    """The expansion path: the base, then each step's chosen expansion (rows of :func:`points_frame`)."""
    ids = [p.id for p in final.path]
    rows = points.set_index("point").loc[ids].reset_index() if ids else points.iloc[0:0]
    return rows[["step", "point", "axis", "factors", "macs", "cost_ratio", "accuracy_mean", "accuracy_sd", "summary"]]


def write_scale_outputs(out: Path, cfg: ScaleConfig, final: Plan, trials: Sequence[FrozenTrial], *, study: str) -> dict[str, Path]:
    """Write ``points.csv``, ``path.csv`` and ``scale.json`` (naming the ``study``) into the run folder (each renamed into place)."""
    points = points_frame(cfg, final, trials)
    paths = {"points": out / "points.csv", "path": out / "path.csv", "config": out / "scale.json"}
    write_text(paths["points"], points.to_csv(index=False))
    write_text(paths["path"], path_frame(points, final).to_csv(index=False))
    settings = {**cfg.to_dict(), "study": study, "exponents": final.exponents, "notes": final.notes}
    write_text(paths["config"], json.dumps(settings, indent=1) + "\n")
    return paths
