"""Scaling axes: pure ``NetSpec -> NetSpec`` functions along width, depth, frames, resolution and expansion.

Every axis multiplies one knob by a factor and returns a new, validated spec (or raises
:class:`~space.spec.SpecError` naming the axis):

* ``width``: the global width multiplier, or one stage's width factor (``width:2``); channels are
  rounded by the family's own rules (:mod:`space.families`), so scaling a preset by the ratio of two
  paper widths gives exactly the other preset.
* ``depth``: units per stage (all stages, or ``depth:1``), rounded to the nearest integer, at least 1.
* ``frames`` / ``resolution``: the clip's T, or H and W, set to the size nearest to ``factor`` times the
  current one that the network's strides accept.
* ``expansion``: the bottleneck / expansion ratio (X3D's bottleneck width) of the families whose factory
  has an ``expansions`` knob: MobileNetV2's expansion ratio t, ShuffleNetV1's bottleneck width as a
  factor of ``channels // 4``. The whole-network axis scales every stage whose block has an inner width
  to scale (:attr:`space.blocks.BlockType.has_bottleneck`: every ShuffleNetV1 stage, the MobileNetV2
  stages that expand, t != 1); ``expansion:3`` scales one stage.

Width, depth and expansion act on the family's factory knobs, recovered from the spec
(:func:`family_knobs`), so any spec a family factory makes (a preset, a search's candidate) scales;
a hand-edited one, or one with SGS layers, is refused with a clear error. The cost of a scaled spec
comes from the analytic counter (``profiler.counting.spec_totals``), without building it.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from space.blocks import BLOCKS
from space.registry import model_info
from space.spec import NetSpec, SpecError, StageSpec

AXES = ("width", "depth", "frames", "resolution", "expansion")
"""Every scaling axis e3d knows."""
STAGE_AXES = ("width", "depth", "expansion")
"""Axes that can act on one stage only (``width:2``)."""
CLIP_AXES = ("frames", "resolution")


@dataclass(frozen=True)
class Axis:
    """A scaling axis, optionally restricted to one stage (``stage``, 0-based)."""

    name: str
    stage: int | None = None

    def __post_init__(self) -> None:
        if self.name not in AXES:
            raise SpecError("axis", f"unknown axis {self.name!r}; choose from {', '.join(AXES)}")
        if self.stage is not None and self.name not in STAGE_AXES:
            raise SpecError(self.name, f"acts on the whole clip, not on one stage; only {', '.join(STAGE_AXES)} take a stage")
        if self.stage is not None and (isinstance(self.stage, bool) or not isinstance(self.stage, int) or self.stage < 0):
            raise SpecError(self.name, f"stage must be a non-negative integer, got {self.stage!r}")

    def __str__(self) -> str:
        return self.name if self.stage is None else f"{self.name}:{self.stage}"

    @classmethod
    def parse(cls, text: str | Axis) -> Axis:
        """``width``, ``depth:2`` ... -> :class:`Axis` (an :class:`Axis` is returned as it is)."""
        if isinstance(text, Axis):
            return text
        name, _, stage = str(text).strip().partition(":")
        if not stage:
            return cls(name)
        if not stage.isdigit():
            raise SpecError(name or "axis", f"stage must be a non-negative integer, got {stage!r} in {text!r}")
        return cls(name, int(stage))


def has_axis(spec: NetSpec, axis: Axis | str) -> bool:
    """Whether ``spec``'s family can be scaled along ``axis``."""
    a = Axis.parse(axis)
    if a.name == "expansion":
        return "expansions" in _factory_params(spec.family)
    return True


def check_axis(spec: NetSpec, axis: Axis | str) -> Axis:
    """``axis`` parsed; :class:`SpecError` when ``spec``'s family has no such axis, or the network no such stage."""
    a = Axis.parse(axis)
    if not has_axis(spec, a):
        raise SpecError(str(a), f"{spec.family} has no {a.name} axis; its axes: {', '.join(axes_of(spec))}")
    if a.stage is not None and a.stage >= len(spec.stages):
        raise SpecError(str(a), f"{spec.family} has stages 0..{len(spec.stages) - 1}, got stage {a.stage}")
    return a


def has_bottleneck(stage: StageSpec) -> bool:
    """Whether the whole-network expansion axis scales ``stage``: its block has an inner width that its
    ``expansion`` sets (a ShuffleNetV1 unit's bottleneck; a MobileNetV2 unit's expanded width, which a
    unit with t = 1 lacks)."""
    test = BLOCKS[stage.block].has_bottleneck
    return test is not None and test(stage.expansion)


def axes_of(spec: NetSpec) -> tuple[str, ...]:
    """The whole-network axes ``spec``'s family has, in :data:`AXES` order."""
    return tuple(a for a in AXES if has_axis(spec, a))


def check_factor(axis: Axis | str, factor: float) -> float:
    """``factor`` as a float; :class:`SpecError` naming the axis unless it is a finite number > 0."""
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < math.inf:
        raise SpecError(str(axis), f"factor must be a positive number, got {factor!r}")
    return float(factor)


# -- the family's knobs ------------------------------------------------------------------------


def _factory_params(family: str) -> Mapping[str, inspect.Parameter]:
    return inspect.signature(model_info(family).factory).parameters


def _channels(spec: NetSpec) -> list[int]:
    return [s.channels for s in spec.stages]


def family_knobs(spec: NetSpec) -> dict[str, Any]:
    """The keyword arguments of the family factory that make ``spec`` (SGS layers aside).

    Per-stage width factors are recovered from the channel counts (a few fixed-point steps through
    the family's rounding). :class:`SpecError` when no knobs reproduce the spec exactly.
    """
    if spec.sgs:
        raise SpecError("sgs", "scaling a spec with SGS layers is not supported; scale the network without them")
    params = _factory_params(spec.family)
    first = spec.stages[0]
    kw: dict[str, Any] = {
        "width_mult": spec.width_mult,
        "depths": [s.repeats for s in spec.stages],
        "num_classes": spec.num_classes,
        "clip": spec.clip,
        "dropout": spec.dropout,
    }
    if "expansions" in params:
        kw["expansions"] = [s.expansion for s in spec.stages]
    if "groups" in params:
        kw["groups"] = spec.stages[-1].groups
    for name in ("t_kernel", "se", "shortcut"):
        if name in params:
            kw[name] = getattr(first, name)
    if "head_act" in params:
        kw["head_act"] = spec.head.act
    factory = model_info(spec.family).factory
    try:
        mults = [1.0] * len(spec.stages)
        for _ in range(8):
            made = factory(**kw, stage_mults=mults)
            if _channels(made) == _channels(spec):
                break
            mults = [m * want / got for m, want, got in zip(mults, _channels(spec), _channels(made), strict=True)]
        made, mults = _match_stages(spec, kw, mults, made)
    except (SpecError, TypeError, ValueError) as e:
        raise SpecError("spec", f"cannot recover the {spec.family} knobs of this spec ({e})") from None
    if made != spec:
        raise SpecError("spec", f"this {spec.family} spec is not one the family's factory makes (edited by hand?); scaling needs its knobs")
    return {**kw, "stage_mults": mults}


def _match_stages(spec: NetSpec, kw: dict[str, Any], mults: list[float], made: NetSpec) -> tuple[NetSpec, list[float]]:
    """Nudge the width factor of each stage that still differs (a second rounded count, such as
    SqueezeNet's squeeze width, depends on it too) by up to 10% until the stage matches."""
    factory = model_info(spec.family).factory
    for i in range(len(mults)):
        if made.stages[i] == spec.stages[i]:
            continue
        for k in sorted(range(-40, 41), key=abs):
            trial = [m * (1 + k / 400) if j == i else m for j, m in enumerate(mults)]
            candidate = factory(**kw, stage_mults=trial)
            if candidate.stages[i] == spec.stages[i]:
                made, mults = candidate, trial
                break
    return made, mults


# -- clip sizes --------------------------------------------------------------------------------


def fit_clip(spec: NetSpec, axis: str, target: float) -> NetSpec:
    """``spec`` with T (``frames``) or H and W (``resolution``) set to the valid size nearest ``target``.

    Sizes within 15% (at least 2) of the target are tried, nearest first; :class:`SpecError` naming
    the axis when none fits the network's strides.
    """
    t, h, w = spec.clip
    size = t if axis == "frames" else h
    want = max(1, round(target))
    reach = max(2, math.ceil(0.15 * target))
    tried = sorted(range(max(1, want - reach), want + reach + 1), key=lambda n: (abs(n - target), n))
    last: SpecError | None = None
    for n in tried:
        clip = (n, h, w) if axis == "frames" else (t, n, max(1, round(n * w / h)))
        try:
            return spec.replace(clip=clip)
        except SpecError as e:
            last = e
    what = "T" if axis == "frames" else "H=W"
    assert last is not None
    raise SpecError(axis, f"no clip with {what} near {target:.1f} (from {size}) fits {spec.family}'s strides: {last.field}: {last.reason}")


# -- applying factors ---------------------------------------------------------------------------


def _scaled_knobs(spec: NetSpec, changes: Mapping[Axis, float]) -> dict[str, Any]:
    kw = family_knobs(spec)
    n = len(spec.stages)
    for axis, f in changes.items():
        every = range(n) if axis.stage is None else [axis.stage]
        if axis.name == "width" and axis.stage is None:
            kw["width_mult"] = round(kw["width_mult"] * f, 6)
        elif axis.name == "width":
            kw["stage_mults"][axis.stage] *= f
        elif axis.name == "depth":
            kw["depths"] = [max(1, round(d * f)) if i in every else d for i, d in enumerate(kw["depths"])]
        elif axis.name == "expansion":
            scaled = [i for i in every if axis.stage is not None or has_bottleneck(spec.stages[i])]
            kw["expansions"] = [round(t * f, 4) if i in scaled else t for i, t in enumerate(kw["expansions"])]
    return kw


def scale_many(spec: NetSpec, factors: Mapping[str, float] | Mapping[Axis, float] | Mapping[Axis | str, float]) -> NetSpec:
    """``spec`` scaled along several axes at once (compound scaling): the network's knobs first, then the clip.

    ``factors`` maps axes (``"width"``, ``Axis("depth", 2)``, ...) to factors > 0.
    """
    changes: dict[Axis, float] = {}
    for key, f in factors.items():
        axis = check_axis(spec, key)
        changes[axis] = check_factor(axis, f)
    knobs = {a: f for a, f in changes.items() if a.name not in CLIP_AXES}
    out = spec
    if knobs:
        try:
            out = model_info(spec.family).factory(**_scaled_knobs(spec, knobs))
        except SpecError as e:
            if e.field in {str(a) for a in knobs} or e.field in ("spec", "sgs"):
                raise
            raise SpecError(", ".join(map(str, knobs)), f"the scaled network is invalid: {e}") from None
    for axis, f in changes.items():
        if axis.name in CLIP_AXES:
            size = out.clip[0] if axis.name == "frames" else out.clip[1]
            out = fit_clip(out, axis.name, size * f)
    return out


def scale(spec: NetSpec, axis: Axis | str, factor: float) -> NetSpec:
    """``spec`` scaled by ``factor`` along one ``axis`` (see the module docstring)."""
    return scale_many(spec, {axis: factor})
