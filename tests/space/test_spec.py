"""NetSpec: validation names the field and the reason; JSON round trips exactly."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

import space
from space import HeadSpec, NetSpec, SpecError, StageSpec, StemSpec


def tiny(**stage: Any) -> NetSpec:
    """A one-stage network with a modified stage (block defaults to dwsep)."""
    st = {"block": "dwsep", "channels": 8, "repeats": 1, "stride": (2, 2, 2), **stage}
    return NetSpec("custom", StemSpec(6), (StageSpec(**st),), clip=(8, 32, 32), num_classes=5)


def raises(field: str, fn: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(SpecError) as e:
        fn(*args, **kwargs)
    assert e.value.field == field, str(e.value)
    assert str(e.value).startswith(f"{field}: ")
    return e.value.reason


def test_a_valid_spec_is_frozen_and_hashable() -> None:
    spec = tiny()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.num_classes = 3  # type: ignore[misc]
    assert hash(spec) == hash(tiny())


@pytest.mark.parametrize(
    ("field", "stage", "words"),
    [
        ("stages[0].channels", {"channels": 0}, ">= 1"),
        ("stages[0].channels", {"channels": -4}, ">= 1"),
        ("stages[0].repeats", {"repeats": 0}, ">= 1"),
        ("stages[0].channels", {"channels": 10**30}, "at most 1,048,576"),  # was counted: params with 60 digits
        ("stages[0].repeats", {"repeats": 1 << 21}, "at most 1,048,576"),
        ("stages[0].block", {"block": "octconv"}, "unknown block type"),
        ("stages[0].stride[1]", {"stride": (1, 0, 1)}, ">= 1"),
        ("stages[0].stride", {"stride": (2, 2)}, "3 integers"),
        ("stages[0].act", {"act": "gelu"}, "one of relu, relu6"),
        ("stages[0].groups", {"block": "shuffle_v1", "channels": 48, "groups": 5}, "groups=5"),
        ("stages[0].groups", {"block": "shuffle_v1", "channels": 40, "groups": 3}, "bottleneck width 10"),
        ("stages[0].groups", {"block": "bottleneck", "channels": 64, "expansion": 4.0, "groups": 3}, "does not divide"),
        ("stages[0].channels", {"block": "shuffle_v2", "channels": 9}, "odd"),
        ("stages[0].channels", {"block": "fire", "channels": 9, "squeeze": 2}, "odd"),
        ("stages[0].squeeze", {"block": "fire", "channels": 8, "squeeze": 0}, "positive"),
        ("stages[0].expansion", {"block": "inverted_residual", "expansion": -1.0}, "positive"),
        ("stages[0].expansion", {"block": "shuffle_v1", "channels": 48, "groups": 3, "expansion": 0.0}, "positive"),
        ("stages[0].expansion", {"block": "bottleneck", "channels": 10, "expansion": 4.0}, "does not divide"),
        ("stages[0].expansion", {"expansion": 6.0}, "not used by block 'dwsep'"),
        ("stages[0].groups", {"block": "shuffle_v2", "channels": 8, "groups": 2}, "not used by block"),
        ("stages[0].shortcut", {"block": "basic", "shortcut": "C"}, "one of A, B"),
        ("stages[0].stride", {"block": "shuffle_v1", "channels": 48, "groups": 3, "stride": (1, 1, 1)}, "must downsample"),
    ],
)
def test_bad_stage_fields_name_the_field(field: str, stage: dict[str, Any], words: str) -> None:
    assert words in raises(field, tiny, **stage)


def test_strides_that_shrink_the_clip_too_far_are_rejected() -> None:
    """At 8 frames ShuffleNetV1's third stage sees T=1, below its 2x3x3 average-pool shortcut."""
    assert space.paper_spec("shufflenet", sample_duration=16).layers
    reason = raises("stages[2].stride", space.paper_spec, "shufflenet", sample_duration=8)
    assert "average pool" in reason and "1x7x7" in reason and "clip 8x112x112" in reason
    stages = (StageSpec("shuffle_v1", 48, 1, (2, 2, 2), groups=3),)
    raises("stages[0].stride", NetSpec, "custom", StemSpec(6), stages, clip=(8, 2, 2))


def test_odd_time_under_a_shufflenet_downsampling_unit_is_rejected() -> None:
    """The average-pool shortcut floors an odd T while the depthwise branch rounds it up."""
    spec = tiny(block="shuffle_v1", channels=48, groups=3)
    assert spec.layers  # valid at T=8
    reason = raises("stages[0].stride", spec.replace, clip=(7, 32, 32))
    assert "disagree" in reason


def test_top_level_fields_are_checked() -> None:
    spec = tiny()
    raises("num_classes", spec.replace, num_classes=0)
    raises("dropout", spec.replace, dropout=1.0)
    raises("width_mult", spec.replace, width_mult=0.0)
    raises("width_mult", spec.replace, width_mult=float("nan"))
    raises("clip[0]", spec.replace, clip=(0, 32, 32))
    raises("stages", spec.replace, stages=())
    raises("stem.channels", StemSpec, 0)
    raises("stem.act", StemSpec, 4, act="swish")
    raises("head.kind", HeadSpec, "mlp")
    raises("head.channels", HeadSpec, "conv", 16)


def test_json_round_trip_is_exact_for_every_preset_and_width() -> None:
    for name in space.list_models():
        for width in (0.3, 1.0, 1.7):
            spec = space.paper_spec(name, width_mult=width)
            text = spec.to_json()
            assert NetSpec.from_json(text) == spec
            assert NetSpec.from_dict(json.loads(text)) == spec
            assert NetSpec.from_json(text).to_json() == text


def test_json_errors_name_the_field() -> None:
    d = tiny().to_dict()
    raises("format", NetSpec.from_dict, {**d, "format": "other/2"})
    raises("stages[0].colour", NetSpec.from_dict, {**d, "stages": [{**d["stages"][0], "colour": 1}]})
    raises("stages[0].channels", NetSpec.from_dict, {**d, "stages": [{**d["stages"][0], "channels": "8"}]})
    raises("stages[0].bypass", NetSpec.from_dict, {**d, "stages": [{**d["stages"][0], "bypass": 1}]})
    raises("stem", NetSpec.from_dict, {k: v for k, v in d.items() if k != "stem"})
    raises("family", NetSpec.from_dict, {k: v for k, v in d.items() if k != "family"})
    raises("spec", NetSpec.from_json, "{not json")
    raises("spec", NetSpec.from_json, "[1, 2]")
    assert "4300 digits" in raises("spec", NetSpec.from_json, '{"stem": {"channels": 1' + "0" * 5000 + "}}")
    assert "nested too deeply" in raises("spec", NetSpec.from_json, '{"stem": ' + "[" * 100_000)


def test_load_reports_the_file(tmp_path: Any) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "e3d.netspec/1"}')
    assert str(bad) in raises("stem", NetSpec.load, bad)
    raises("spec", NetSpec.load, tmp_path / "missing.json")


def test_first_groups_applies_to_the_first_unit_only() -> None:
    spec = space.paper_spec("shufflenet", width_mult=1.0)
    pw1 = {layer.name: layer.groups for layer in spec.layers if layer.name.endswith(".pw1")}
    assert pw1["stages.0.0.pw1"] == 1
    assert pw1["stages.0.1.pw1"] == 3 and pw1["stages.1.0.pw1"] == 3


def test_a_conv_head_without_activation_passes_negative_scores_through() -> None:
    import torch

    from profiler.counting import spec_totals

    paper = space.paper_spec("squeezenet", width_mult=0.25, num_classes=10, sample_size=32, sample_duration=8)
    bare = paper.replace(head=HeadSpec("conv", act="none"))
    assert NetSpec.from_json(bare.to_json()) == bare
    raises("head.act", HeadSpec, "conv", act="swish")
    a, b = spec_totals(paper), spec_totals(bare)
    assert (a.macs, a.params) == (b.macs, b.params)
    assert a.paper_flops - b.paper_flops == 10  # the ReLU over 10 class maps of 1x1x1, and nothing else
    torch.manual_seed(0)
    model = space.build(bare).eval()
    with torch.no_grad():
        scores = model(torch.randn(4, 3, 8, 32, 32))
    assert (scores < 0).any()  # the paper's ReLU head could give none


def test_a_shufflenet_unit_of_any_other_expansion_has_a_bottleneck_of_whole_groups() -> None:
    """At expansion 1 the bottleneck is the paper's channels // 4, which the groups must divide; any other
    factor rounds channels * expansion / 4 down to whole groups (at least one)."""
    assert "bottleneck width 10" in raises("stages[0].groups", tiny, block="shuffle_v1", channels=42, groups=3)
    for expansion, mid in ((0.01, 3), (0.5, 3), (1.01, 9), (1.5, 15), (4.0, 42)):
        spec = tiny(block="shuffle_v1", channels=42, groups=3, expansion=expansion)
        assert [layer.out_shape[0] for layer in spec.layers if layer.name.endswith("pw1")] == [mid]
        assert NetSpec.from_json(spec.to_json()) == spec
