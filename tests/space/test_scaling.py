"""Scaling axes: every axis on every family moves the cost the expected way and keeps a valid spec."""

from __future__ import annotations

import dataclasses
import math

import optuna
import pytest

import space
from profiler.counting import spec_totals
from search.searchspace import SPACE, sample_params, spec_from_params
from space.scaling import AXES, Axis, axes_of, family_knobs, has_bottleneck, scale, scale_many
from space.sgs import with_sgs
from space.spec import NetSpec, SpecError

FAMILIES = space.list_models()


def base(family: str) -> NetSpec:
    info = space.model_info(family)
    return space.paper_spec(family, width_mult=min(info.paper_widths), num_classes=10)


def macs(spec: NetSpec) -> int:
    return spec_totals(spec).macs


CASES = [(f, a) for f in FAMILIES for a in axes_of(base(f))]


@pytest.mark.parametrize(("family", "axis"), CASES, ids=[f"{f}-{a}" for f, a in CASES])
def test_every_axis_moves_the_cost_the_expected_way_and_round_trips(family: str, axis: str) -> None:
    spec = base(family)
    up = scale(spec, axis, 2.0)
    assert macs(up) > macs(spec)
    assert NetSpec.from_json(up.to_json()) == up
    try:
        down = scale(spec, axis, 0.5)
    except SpecError as e:  # only ShuffleNetV1 cannot halve its 16 frames (it needs 16 for its strides)
        assert (family, axis, e.field) == ("shufflenet", "frames", "frames")
        return
    assert macs(down) < macs(spec)
    assert NetSpec.from_json(down.to_json()) == down


@pytest.mark.parametrize("factor", [0, -1.0, math.nan, math.inf, True, "2"])
@pytest.mark.parametrize("axis", AXES)
def test_factors_that_are_not_positive_numbers_are_refused_naming_the_axis(axis: str, factor: object) -> None:
    for family in ("mobilenetv2", "shufflenet"):
        with pytest.raises(SpecError) as e:
            scale(base(family), axis, factor)  # type: ignore[arg-type]
        assert e.value.field == axis and "positive" in e.value.reason


def test_an_axis_the_family_lacks_is_refused_naming_it() -> None:
    spec = base("shufflenetv2")
    assert "expansion" not in axes_of(spec)
    with pytest.raises(SpecError, match=r"^expansion: shufflenetv2 has no expansion axis; its axes: width, depth, frames, resolution$"):
        scale(spec, "expansion", 2.0)
    assert axes_of(base("mobilenetv2")) == axes_of(base("shufflenet")) == AXES


def test_the_families_with_a_bottleneck_knob_have_the_expansion_axis() -> None:
    assert {f for f in FAMILIES if "expansion" in axes_of(base(f))} == {"mobilenetv2", "shufflenet"}
    assert [has_bottleneck(s) for s in base("mobilenetv2").stages] == [False] + [True] * 6  # t = 1 expands nothing
    assert [has_bottleneck(s) for s in base("shufflenet").stages] == [True] * 3
    assert not any(has_bottleneck(s) for f in FAMILIES if f not in ("mobilenetv2", "shufflenet") for s in base(f).stages)


@pytest.mark.parametrize("family", ["mobilenetv2", "shufflenet"])
def test_expansions_must_give_one_factor_per_stage(family: str) -> None:
    factory = space.model_info(family).factory
    n = len(factory().stages)
    with pytest.raises(SpecError, match=rf"^expansions: {family} has {n} stages, got 2 expansions$"):
        factory(expansions=[2.0, 2.0])
    with pytest.raises(SpecError) as e:
        factory(expansions=[2.0] * (n - 1) + [0.0])
    assert e.value.field == f"stages[{n - 1}].expansion" and "positive" in e.value.reason


def test_expansion_scales_every_shufflenet_bottleneck_and_round_trips() -> None:
    spec = base("shufflenet")
    assert [s.groups for s in spec.stages] == [3, 3, 3]

    def bottlenecks(s: NetSpec) -> list[int]:
        return [layer.out_shape[0] for layer in s.layers if layer.name.endswith(".0.pw1")]

    assert bottlenecks(spec) == [s.channels // 4 for s in spec.stages]
    cost = macs(spec)
    for f in (0.05, 0.5, 0.8, 1.5, 2.0, 3.3):
        scaled = scale(spec, "expansion", f)
        assert [s.expansion for s in scaled.stages] == [f] * 3
        assert [s.channels for s in scaled.stages] == [s.channels for s in spec.stages]
        # the paper's channels // 4, times the factor, rounded down to a multiple of the groups (at least one group)
        assert bottlenecks(scaled) == [max(3, int(s.channels * f / 4) // 3 * 3) for s in spec.stages]
        assert (macs(scaled) > cost) if f > 1 else (macs(scaled) < cost)
        assert NetSpec.from_json(scaled.to_json()) == scaled
        assert family_knobs(scaled)["expansions"] == [f] * 3
        assert scale(scaled, "expansion", 1 / f) == spec
    one = scale(spec, "expansion:1", 2.0)
    assert [s.expansion for s in one.stages] == [1.0, 2.0, 1.0]
    assert scale_many(spec, {"expansion": 2.0, "width": 2.0}) == space.families.shufflenet(
        width_mult=2 * spec.width_mult, expansions=[2.0] * 3, num_classes=10
    )


def test_frames_below_what_the_strides_allow_is_one_error_naming_the_axis() -> None:
    with pytest.raises(SpecError) as e:
        scale(base("shufflenet"), "frames", 0.25)
    assert e.value.field == "frames" and "\n" not in str(e.value)
    with pytest.raises(SpecError) as e:
        scale(base("shufflenet"), "resolution", 0.05)
    assert e.value.field == "resolution"


def test_width_follows_the_family_rounding_so_presets_scale_into_presets() -> None:
    assert scale(space.paper_spec("shufflenet", width_mult=0.5), "width", 2.0) == space.paper_spec("shufflenet", width_mult=1.0)
    assert scale(space.paper_spec("mobilenetv2", width_mult=0.45), "width", 0.7 / 0.45) == space.paper_spec("mobilenetv2", width_mult=0.7)
    assert scale(space.paper_spec("mobilenet"), "depth", 2.0) == space.families.mobilenet(depths=[2, 4, 4, 12, 4])


def test_one_stage_axes_change_only_that_stage() -> None:
    spec = base("mobilenetv2")
    wide = scale(spec, "width:3", 2.0)
    assert [s.channels != t.channels for s, t in zip(spec.stages, wide.stages, strict=True)] == [i == 3 for i in range(7)]
    assert wide.width_mult == spec.width_mult
    deep = scale(spec, "depth:1", 2.0)
    assert [s.repeats for s in deep.stages] == [s.repeats * (2 if i == 1 else 1) for i, s in enumerate(spec.stages)]
    fat = scale(spec, "expansion:0", 3.0)
    assert [s.expansion for s in fat.stages] == [3.0] + [6.0] * 6
    every = scale(spec, "expansion", 0.5)  # the expanding stages: all but the first (t = 1)
    assert [s.expansion for s in every.stages] == [1.0] + [3.0] * 6
    with pytest.raises(SpecError, match=r"^width:9: mobilenetv2 has stages 0\.\.6, got stage 9$"):
        scale(spec, "width:9", 2.0)


def test_frames_and_resolution_change_only_the_clip_to_a_valid_size() -> None:
    spec = base("mobilenet")
    assert scale(spec, "frames", 2.0) == spec.replace(clip=(32, 112, 112))
    assert scale(spec, "resolution", 1.5).clip == (16, 168, 168)
    odd = scale(base("shufflenet"), "resolution", 1.26)  # 141 is the nearest size ShuffleNetV1's strides take
    assert abs(odd.clip[1] - 141) <= 3 and odd.clip[1] == odd.clip[2]


def test_compound_scaling_applies_every_factor_at_once() -> None:
    spec = base("mobilenetv2")
    both = scale_many(spec, {"width": 1.5, "depth": 2.0, Axis("resolution"): 1.25})
    assert both == scale(scale(scale(spec, "width", 1.5), "depth", 2.0), "resolution", 1.25)
    assert macs(both) > macs(scale(spec, "width", 1.5))


def test_axis_names_parse_and_bad_ones_are_refused() -> None:
    assert Axis.parse("width:2") == Axis("width", 2) and str(Axis("depth", 1)) == "depth:1"
    for bad, field in (("height", "axis"), ("frames:1", "frames"), ("width:x", "width")):
        with pytest.raises(SpecError) as e:
            Axis.parse(bad)
        assert e.value.field == field


def test_the_knobs_of_every_search_candidate_are_recovered() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    checked = 0
    for _ in range(60):
        params = sample_params(study.ask(), list(SPACE))
        try:
            spec = spec_from_params(params, clip=(16, 112, 112), num_classes=10)
        except SpecError:
            continue  # a candidate the search would reject too
        kw = family_knobs(spec)
        assert space.model_info(spec.family).factory(**kw) == spec
        checked += 1
    assert checked > 30


def test_a_hand_edited_spec_or_one_with_sgs_is_refused() -> None:
    spec = base("mobilenet")
    edited = spec.replace(stages=(dataclasses.replace(spec.stages[0], act="relu6"), *spec.stages[1:]))
    with pytest.raises(SpecError, match="not one the family's factory makes"):
        scale(edited, "width", 2.0)
    assert scale(edited, "frames", 2.0).clip[0] == 32  # the clip axes need no knobs
    with pytest.raises(SpecError) as e:
        scale(with_sgs(spec, 0), "width", 2.0)
    assert e.value.field == "sgs"
