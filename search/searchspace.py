"""The search space, declared in one place: every family's knobs and their ranges.

A candidate is a flat dict of Optuna parameters (``family`` plus that family's knobs, named
``<family>.<knob>``); :func:`spec_from_params` turns it into a ``NetSpec`` through the family's
factory, :func:`sample_params` draws it from an Optuna trial, and :func:`preset_params` gives the
parameters of the paper's own presets so that they can be enqueued as baselines.

SEVNet (``sevnet``) is in the space too but not among the default :data:`FAMILIES` (the paper's five);
name it to search it. With ``sgs=True`` every family also samples where to put a Similarity Guided
Sampling layer (``<family>.sgs``: -1 for none, else the stage it follows; see :mod:`space.sgs`) and,
when it has one, its bin width (``<family>.sgs_bin_width``: how much change starts a new bin, the
layer's accuracy-versus-cost knob).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import islice
from typing import Any

import optuna

from profiler.costs import Cost
from profiler.counting import collector_paused, spec_totals
from space import families as fam
from space.registry import model_info
from space.sgs import with_sgs
from space.spec import NetSpec, SGSSpec, SpecError

Clip = tuple[int, int, int]


@dataclass(frozen=True)
class FamilySpace:
    """Ranges of one family's knobs (each contains the paper's own value)."""

    width: tuple[float, float]
    """Global width multiplier, sampled log-uniformly."""
    depths: tuple[tuple[int, int], ...]
    """Units per stage, (low, high) inclusive."""
    stage_mults: tuple[float, ...] = (0.75, 1.0, 1.25)
    """Choices of a per-stage width factor on top of the global multiplier."""
    expansions: tuple[float, ...] = ()
    """MobileNetV2: choices of the expansion ratio t of every stage after the first."""
    groups: tuple[int, ...] = ()
    """ShuffleNetV1: choices of the pointwise group count; SEVNet: of the spatial conv's."""
    t_kernels: tuple[int, ...] = ()
    """SEVNet: choices of the temporal kernel."""
    se: bool = False
    """SEVNet: squeeze-and-excitation on or off is a knob."""
    head_acts: tuple[str, ...] = ()
    """SqueezeNet: choices of the activation over the class scores (the paper's is the last)."""
    sgs_after: tuple[int, ...] = ()
    """Stages an SGS layer may follow (those that leave at least 4 frames of a 16-frame clip)."""
    paper_depths: tuple[int, ...] = ()


SPACE: dict[str, FamilySpace] = {
    "squeezenet": FamilySpace(
        width=(0.25, 1.5), depths=((1, 3),) * 4, head_acts=("none", "relu"), sgs_after=(0, 1), paper_depths=(2, 2, 2, 2)
    ),
    "mobilenet": FamilySpace(
        width=(0.25, 2.0),
        depths=((1, 2), (1, 3), (1, 3), (2, 8), (1, 3)),
        sgs_after=(0, 1),
        paper_depths=tuple(n for _, n, _ in fam.MOBILENET_STAGES),
    ),
    "mobilenetv2": FamilySpace(
        width=(0.15, 1.4),
        depths=((1, 2), (1, 3), (1, 4), (2, 5), (1, 4), (1, 4), (1, 2)),
        expansions=(3.0, 4.0, 6.0),
        sgs_after=(0, 1, 2),
        paper_depths=tuple(n for _, _, n, _ in fam.MOBILENETV2_STAGES),
    ),
    "shufflenet": FamilySpace(
        width=(0.25, 2.0), depths=((2, 6), (4, 10), (2, 6)), groups=(1, 2, 3, 4, 8), sgs_after=(0,), paper_depths=(4, 8, 4)
    ),
    "shufflenetv2": FamilySpace(width=(0.25, 2.0), depths=((2, 6), (4, 10), (2, 6)), sgs_after=(0,), paper_depths=(4, 8, 4)),
    "sevnet": FamilySpace(
        width=(0.25, 2.0),
        depths=((1, 2), (1, 4), (1, 6), (1, 3)),
        groups=(1, 2, 4, 8),
        t_kernels=(1, 3),
        se=True,
        sgs_after=(0, 1, 2),
        paper_depths=tuple(n for _, n, _ in fam.SEVNET_STAGES),
    ),
}
"""Every family's knobs: the paper's five, then SEVNet."""

SGS_BIN_WIDTHS = (0.1, 0.25, 0.5)
"""Choices of an SGS layer's bin width (0.5 is ``SGSSpec``'s default)."""

FAMILIES = ("squeezenet", "mobilenet", "mobilenetv2", "shufflenet", "shufflenetv2")
"""The paper's five families: what a search or sweep covers unless told otherwise."""


def check_families(families: Sequence[str]) -> tuple[str, ...]:
    """Validate a list of family names (:class:`SpecError` names the bad one)."""
    out = tuple(dict.fromkeys(families))
    if not out:
        raise SpecError("families", "choose at least one family")
    for f in out:
        if f not in SPACE:
            raise SpecError("families", f"unknown family {f!r}; choose from {', '.join(SPACE)}")
    return out


def parse_families(text: str | None) -> tuple[str, ...]:
    """A ``--families`` option: comma-separated names (checked by :func:`check_families`), all of :data:`FAMILIES` when
    not given (None); an empty list or name (``''``, ``shufflenet,``) is a :class:`SpecError`, never all families."""
    if text is None:
        return check_families(FAMILIES)
    if "" in (names := text.split(",")):
        what = f"an empty family name in {text!r}" if text else "none given"
        raise SpecError("families", f"{what}; give comma-separated families such as mobilenet,shufflenet")
    return check_families(names)


def sample_params(trial: optuna.Trial, families: Sequence[str], *, sgs: bool = False) -> dict[str, Any]:
    """Draw a family and its knobs from ``trial`` (Optuna records every distribution); with ``sgs``,
    also where an SGS layer goes (``<family>.sgs``, -1: none)."""
    family = str(trial.suggest_categorical("family", list(families)))
    fs = SPACE[family]
    params: dict[str, Any] = {"family": family, f"{family}.width_mult": trial.suggest_float(f"{family}.width_mult", *fs.width, log=True)}
    depths, mults = stage_keys(family)
    for k, (lo, hi) in zip(depths, fs.depths, strict=True):
        params[k] = trial.suggest_int(k, lo, hi)
    for k in mults:
        params[k] = trial.suggest_categorical(k, list(fs.stage_mults))
    if fs.expansions:
        params[f"{family}.expansion"] = trial.suggest_categorical(f"{family}.expansion", list(fs.expansions))
    if fs.groups:
        params[f"{family}.groups"] = trial.suggest_categorical(f"{family}.groups", list(fs.groups))
    if fs.t_kernels:
        params[f"{family}.t_kernel"] = trial.suggest_categorical(f"{family}.t_kernel", list(fs.t_kernels))
    if fs.se:
        params[f"{family}.se"] = trial.suggest_categorical(f"{family}.se", [False, True])
    if fs.head_acts:
        params[f"{family}.head_act"] = trial.suggest_categorical(f"{family}.head_act", list(fs.head_acts))
    if sgs and fs.sgs_after:
        params[f"{family}.sgs"] = trial.suggest_categorical(f"{family}.sgs", [-1, *fs.sgs_after])
        if params[f"{family}.sgs"] >= 0:
            params[f"{family}.sgs_bin_width"] = trial.suggest_categorical(f"{family}.sgs_bin_width", list(SGS_BIN_WIDTHS))
    return params


@cache
def stage_keys(family: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The names of a family's per-stage parameters: its depths and its width factors."""
    n = len(SPACE[family].depths)
    return tuple(f"{family}.depth{i}" for i in range(n)), tuple(f"{family}.mult{i}" for i in range(n))


def factory_kwargs(params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The family and the factory keyword arguments a parameter dict describes."""
    family = params["family"]
    fs = SPACE[family]
    depths, mults = stage_keys(family)
    kw: dict[str, Any] = {
        "width_mult": float(params[f"{family}.width_mult"]),
        "depths": [int(params[k]) for k in depths],
        "stage_mults": [float(params[k]) for k in mults],
    }
    if fs.expansions:
        kw["expansions"] = [1.0] + [float(params[f"{family}.expansion"])] * (len(depths) - 1)
    if fs.groups:
        kw["groups"] = int(params[f"{family}.groups"])
    if fs.t_kernels:
        kw["t_kernel"] = int(params[f"{family}.t_kernel"])
    if fs.se:
        kw["se"] = bool(params[f"{family}.se"])
    if fs.head_acts and f"{family}.head_act" in params:  # studies from before the knob: the paper's
        kw["head_act"] = str(params[f"{family}.head_act"])
    return family, kw


def spec_from_params(params: Mapping[str, Any], *, clip: Clip = (16, 112, 112), num_classes: int = 600) -> NetSpec:
    """Build the ``NetSpec`` of a candidate (with its SGS layer, if it has one: :func:`space.sgs.with_sgs`)."""
    family, kw = factory_kwargs(params)
    spec = model_info(family).factory(**kw, clip=clip, num_classes=num_classes)
    after = int(params.get(f"{family}.sgs", -1))
    if after < 0:
        return spec
    return with_sgs(spec, after, bin_width=float(params.get(f"{family}.sgs_bin_width", SGSSpec.bin_width)))


def price_candidates(
    params: Iterable[Mapping[str, Any]], *, clip: Clip = (16, 112, 112), num_classes: int = 600, chunk: int = 2000
) -> list[Cost]:
    """The totals (``spec_totals``) of each candidate's spec: the screening of a large search, a latency
    table or a scaling study, priced ``chunk`` candidates at a time with the cyclic garbage collector
    paused (:func:`profiler.counting.collector_paused`). A candidate that is not a valid spec raises its
    :class:`SpecError`."""
    out: list[Cost] = []
    candidates = iter(params)
    while batch := list(islice(candidates, chunk)):
        out += _price(batch, clip, num_classes)
    return out


def _price(params: Sequence[Mapping[str, Any]], clip: Clip, num_classes: int) -> list[Cost]:
    with collector_paused():
        return [spec_totals(spec_from_params(p, clip=clip, num_classes=num_classes)) for p in params]


def _default(family: str, knob: str) -> Any:
    """The default of a family factory's keyword argument (the preset's value)."""
    return inspect.signature(model_info(family).factory).parameters[knob].default


def preset_params(family: str, width_mult: float) -> dict[str, Any]:
    """Parameters that make :func:`spec_from_params` return the preset ``family`` at ``width_mult`` (no SGS)."""
    fs = SPACE[family]
    params: dict[str, Any] = {"family": family, f"{family}.width_mult": float(width_mult)}
    depths, mults = stage_keys(family)
    params.update(zip(depths, fs.paper_depths, strict=True))
    params.update(dict.fromkeys(mults, 1.0))
    if fs.expansions:
        params[f"{family}.expansion"] = 6.0
    if fs.groups:
        params[f"{family}.groups"] = _default(family, "groups")
    if fs.t_kernels:
        params[f"{family}.t_kernel"] = _default(family, "t_kernel")
    if fs.se:
        params[f"{family}.se"] = _default(family, "se")
    if fs.head_acts:
        params[f"{family}.head_act"] = _default(family, "head_act")
    if fs.sgs_after:
        params[f"{family}.sgs"] = -1
    return params


def paper_presets(families: Sequence[str]) -> list[tuple[str, float]]:
    """(family, width) of every Table 8 preset of the given families."""
    return [(f, w) for f in families for w in model_info(f).paper_widths]


def corner_params(family: str) -> list[dict[str, Any]]:
    """The smallest candidates of a family: lowest width, depths and stage factors, each group
    count, the smallest expansion and temporal kernel, no SE, no activation over the class scores,
    no SGS (cost grows with every other knob; an SGS layer can make a clip cheaper, but costs more
    on the most expensive clip)."""
    fs = SPACE[family]
    base: dict[str, Any] = {"family": family, f"{family}.width_mult": fs.width[0]}
    depths, mults = stage_keys(family)
    base.update(zip(depths, (lo for lo, _ in fs.depths), strict=True))
    base.update(dict.fromkeys(mults, min(fs.stage_mults)))
    if fs.expansions:
        base[f"{family}.expansion"] = min(fs.expansions)
    if fs.t_kernels:
        base[f"{family}.t_kernel"] = min(fs.t_kernels)
    if fs.se:
        base[f"{family}.se"] = False
    if fs.head_acts:
        base[f"{family}.head_act"] = "none"
    return [{**base, f"{family}.groups": g} for g in fs.groups] if fs.groups else [base]
