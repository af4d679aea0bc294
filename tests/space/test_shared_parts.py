"""The family factories share equal spec parts between specs (one validated object per stage), and a
stage's repeated units are traced once: neither may change a count or let an invalid knob through."""

from __future__ import annotations

import random

import pytest

import space
from bench.counting import RandomTrial
from profiler.counting import clear_caches, count_spec, spec_totals
from search.searchspace import SPACE, sample_params, spec_from_params
from space import blocks
from space import spec as spec_module
from space.blocks import BlockType
from space.ops import Layer, Ops, Tracer, Triple, X
from space.spec import NetSpec, SpecError, StageSpec, StemSpec


def totals(spec: NetSpec) -> tuple[int, int, int, int]:
    c = count_spec(spec)
    return (c.macs, c.params, c.paper_flops, c.activations)


def test_equal_stages_of_two_specs_are_one_object() -> None:
    a = space.paper_spec("mobilenet", width_mult=0.5)
    b = space.paper_spec("mobilenet", width_mult=0.5, num_classes=10)
    assert a is not b
    assert all(x is y for x, y in zip(a.stages, b.stages, strict=True)) and a.stem is b.stem
    clear_caches()  # what the benchmark's uncached path and a fresh process start from
    c = space.paper_spec("mobilenet", width_mult=0.5)
    assert c == a and not any(x is y for x, y in zip(a.stages, c.stages, strict=True)) and c.stem is not a.stem


def test_specs_of_shared_parts_count_exactly_like_specs_of_fresh_parts() -> None:
    """Random candidates of every family, priced through the caches with shared parts, against the same
    specs read back from JSON (new, unshared parts) and counted from scratch."""
    trial = RandomTrial(random.Random(5))
    specs = [spec_from_params(sample_params(trial, list(SPACE), sgs=True)) for _ in range(120)]  # type: ignore[arg-type]
    cached = [tuple(spec_totals(s)) for s in specs]
    clear_caches()
    fresh = [NetSpec.from_json(s.to_json()) for s in specs]
    assert all(f == s and f.stages[0] is not s.stages[0] for f, s in zip(fresh, specs, strict=True))
    assert cached == [tuple(spec_totals(f)) for f in fresh] == [totals(f) for f in fresh]


@pytest.mark.parametrize(
    ("family", "valid", "invalid", "field"),
    [
        ("mobilenet", {"depths": [1, 1, 1, 2, 1]}, {"depths": [True, 1, 1, 2, 1]}, r"stages\[0\]\.repeats"),
        ("sevnet", {"se": False}, {"se": 0}, r"stages\[0\]\.se"),
        ("sevnet", {"t_kernel": 3}, {"t_kernel": 3.0}, r"stages\[0\]\.t_kernel"),
        ("sevnet", {"t_kernel": 3}, {"t_kernel": [3]}, r"stages\[0\]\.t_kernel"),
    ],
)
def test_a_knob_equal_to_a_shared_valid_one_but_of_another_type_is_refused(
    family: str, valid: dict[str, object], invalid: dict[str, object], field: str
) -> None:
    """``True == 1`` and ``3.0 == 3``: the shared parts are keyed by type too, so a stage made valid before
    is not handed out for a knob that only compares equal; an unhashable one is refused by validation."""
    factory = space.model_info(family).factory
    factory(**valid)
    for _ in range(2):
        with pytest.raises(SpecError, match=field):
            factory(**invalid)


def halve_frames(ops: Ops[X], x: X, *, cin: int, channels: int, stride: Triple, act: str) -> X:
    """A test block whose every unit halves T: a stage's repeated units each see another input."""
    x = blocks.conv_bn(ops, "conv", x, channels, stride=stride, act=act)
    return ops.pool("pool", x, "max", 1, (2, 1, 1), 0)


def test_repeated_units_that_change_the_shape_are_traced_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(blocks.BLOCKS, "halve_frames", BlockType(halve_frames, ()))
    monkeypatch.setitem(spec_module._UNIT_FNS, "halve_frames", halve_frames)
    spec = NetSpec("custom", StemSpec(8), (StageSpec("halve_frames", 16, repeats=3),), clip=(16, 16, 16), num_classes=5)
    trace = spec.traced_segments()[1][1]
    assert [unit[3][1] for unit in trace[1:]] == [16, 8, 4] and trace[0] == (16, 2, 8, 8)
    tracer = Tracer()
    x = spec.input_shape
    for path, fn, kw in spec.units():
        tracer.unit = path
        x = fn(tracer, x, **kw)
    assert spec.layers == tuple(tracer.layers)


def test_the_tracer_records_complete_layers() -> None:
    """The tracer makes its layers without the named tuple's constructor: each must still have every field."""
    layers = space.paper_spec("shufflenet", width_mult=0.5).layers
    assert layers and all(type(x) is Layer and len(x) == len(Layer._fields) and Layer(*x) == x for x in layers)
    assert {x.kind for x in layers} >= {"conv", "bn", "relu", "maxpool", "avgpool", "shuffle", "cat", "add", "linear"}


def test_a_part_remembers_its_segments_by_position_and_input() -> None:
    """One stage object at two positions, after stems of two widths, on two clips, before two heads: every
    spec is traced and priced apart, and counts like the same spec made of new parts from scratch."""
    stage = StageSpec("dwsep", 32, repeats=2, stride=(1, 2, 2))
    variants = [(16, (8, 32, 32), 10), (24, (8, 32, 32), 10), (16, (8, 64, 64), 10), (16, (8, 32, 32), 7)]
    specs = [NetSpec("custom", StemSpec(c), (stage, stage), clip=clip, num_classes=n) for c, clip, n in variants]
    cached = [tuple(spec_totals(s)) for s in specs]
    assert len(set(cached)) == len(specs)
    clear_caches()
    assert cached == [totals(NetSpec.from_json(s.to_json())) for s in specs]


def test_one_part_at_two_positions_with_the_same_input_names_each_position() -> None:
    stage = StageSpec("dwsep", 16)
    spec = NetSpec("custom", StemSpec(16), (stage, stage), clip=(4, 16, 16), num_classes=3)
    names = [layer.name for layer in spec.layers]
    assert "stages.0.0.dw" in names and "stages.1.0.dw" in names and len(names) == len(set(names))
    assert [key[:2] for key, _ in spec.traced_segments()] == [("stem", 16), ("stage", 0), ("stage", 1), ("head", 3)]


def test_clearing_the_trace_cache_also_clears_each_parts_own_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = space.paper_spec("shufflenet", width_mult=0.5)
    first = spec._walk(None)
    traced: list[object] = []
    real = spec_module._trace_segment
    monkeypatch.setattr(spec_module, "_trace_segment", lambda key, part: traced.append(key) or real(key, part))
    assert spec._walk(None) == first and not traced  # remembered by the parts
    spec_module.clear_trace_cache()
    assert spec._walk(None) == first and len(traced) == len(first)  # traced again, every segment


def test_a_stage_of_a_new_width_or_depth_is_checked_without_a_full_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stage equal to a valid one but for its channels and repeats needs only those two checked: a search
    makes stages of new widths and depths all the time. An invalid count is still refused."""
    from space.spec import clear_trace_cache

    clear_trace_cache()
    StageSpec("dwsep", 32, 2, (2, 2, 2)).validate("stages[0]")
    checked = []
    real = StageSpec._check
    monkeypatch.setattr(StageSpec, "_check", lambda self, path: (checked.append(path), real(self, path)))
    StageSpec("dwsep", 37, 5, (2, 2, 2)).validate("stages[1]")
    assert checked == []
    for channels, repeats, field in ((0, 2, "channels"), (True, 2, "channels"), (37.0, 2, "channels"), (37, 0, "repeats")):
        with pytest.raises(SpecError, match=rf"stages\[2\]\.{field}"):
            StageSpec("dwsep", channels, repeats, (2, 2, 2)).validate("stages[2]")  # type: ignore[arg-type]
    assert checked == ["stages[2]"] * 4
    StageSpec("dwsep", 37, 5, (2, 2, 2), act="relu6").validate("stages[3]")  # another field: checked in full
    assert checked[-1] == "stages[3]"
