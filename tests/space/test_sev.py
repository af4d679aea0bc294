"""SEV modules and the SEVNet family: every configuration builds, counts exactly and trains a step."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
import torch.nn.functional as F

import space
from profiler import count_spec
from space import HeadSpec, NetSpec, SpecError, StageSpec, StemSpec
from space.families import sevnet
from tests.profiler.test_counting import assert_same

CONFIGS = list(itertools.product((1, 4), (1, 3, 5), (False, True), ((1, 1, 1), (2, 2, 2), (1, 2, 2))))


def one_stage(groups: int, t_kernel: int, se: bool, stride: tuple[int, int, int], *, channels: int = 16) -> NetSpec:
    """A stem, one SEV stage of two units (the first changes width: a projection shortcut; the second
    keeps it: the identity) and a linear head, on a small clip."""
    stage = StageSpec("sev", channels, 2, stride, groups=groups, t_kernel=t_kernel, se=se)
    return NetSpec("custom", StemSpec(8), (stage,), HeadSpec(), clip=(4, 16, 16), num_classes=5)


@pytest.mark.parametrize(("groups", "t_kernel", "se", "stride"), CONFIGS)
def test_every_sev_configuration_builds_counts_exactly_and_trains_a_step(
    groups: int, t_kernel: int, se: bool, stride: tuple[int, int, int]
) -> None:
    spec = one_stage(groups, t_kernel, se, stride)
    assert_same(spec)  # analytic == aten-level module count: totals, per module, per arithmetic kind
    model = space.build(spec)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(3, 3, 4, 16, 16), torch.tensor([0, 1, 4])
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    opt.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert {f"stages.0.{u}.temporal.weight" for u in (0, 1)} <= changed
    assert ("stages.0.0.se_expand.weight" in changed) == se


@pytest.mark.parametrize(("groups", "t_kernel", "se", "stride"), CONFIGS[::5])
def test_sev_layout_is_pointwise_then_spatial_grouped_then_temporal(
    groups: int, t_kernel: int, se: bool, stride: tuple[int, int, int]
) -> None:
    spec = one_stage(groups, t_kernel, se, stride)
    convs = {layer.name: layer for layer in spec.layers if layer.kind == "conv" and layer.name.startswith("stages.0.0.")}
    order = [n.rsplit(".", 1)[1] for n in convs]
    assert order[:3] == ["pw", "spatial", "temporal"]
    pw, sp, tc = convs["stages.0.0.pw"], convs["stages.0.0.spatial"], convs["stages.0.0.temporal"]
    assert (pw.kernel, pw.groups, pw.stride) == ((1, 1, 1), 1, (1, 1, 1))
    assert (sp.kernel, sp.groups, sp.stride) == ((1, 3, 3), groups, (1, stride[1], stride[2]))
    assert (tc.kernel, tc.groups, tc.stride) == ((t_kernel, 1, 1), 1, (stride[0], 1, 1))
    assert "stages.0.0.downsample" in convs, "the width changes in the first unit: a projection shortcut"
    assert not any(n.startswith("stages.0.1.downsample") for n in (layer.name for layer in spec.layers)), "the second: the identity"
    se_convs = [n for n in convs if ".se_" in n]
    assert bool(se_convs) == se
    if se:
        assert convs["stages.0.0.se_reduce"].out_shape == (16 // 4, 1, 1, 1)
        kinds = [layer.kind for layer in spec.layers if layer.name.startswith("stages.0.0.se_") or layer.kind == "mul"]
        assert "sigmoid" in kinds and "mul" in kinds


def test_sev_fields_are_checked_and_named() -> None:
    def field(**kw: object) -> str:
        with pytest.raises(SpecError) as e:
            NetSpec("custom", StemSpec(8), (StageSpec("sev", **kw),), HeadSpec(), clip=(4, 16, 16))  # type: ignore[arg-type]
        return e.value.field

    assert field(channels=10, groups=4) == "stages[0].groups"
    assert field(channels=8, t_kernel=2) == "stages[0].t_kernel"
    assert field(channels=8, se=1) == "stages[0].se"
    with pytest.raises(SpecError, match="not used by block 'dwsep'") as e:
        NetSpec("custom", StemSpec(8), (StageSpec("dwsep", 8, se=True),), HeadSpec(), clip=(4, 16, 16))
    assert e.value.field == "stages[0].se"


@pytest.mark.parametrize("width", space.model_info("sevnet").paper_widths)
def test_sevnet_presets_grow_with_width(width: float) -> None:
    spec = space.paper_spec("sevnet", width_mult=width)
    smaller = space.paper_spec("sevnet", width_mult=width * 0.8)
    assert count_spec(smaller).macs < count_spec(spec).macs
    assert all(s.block == "sev" and s.channels % 4 == 0 for s in spec.stages)
    after_stage0 = [layer for layer in spec.layers if layer.name.startswith("stages.0.")][-1]
    assert after_stage0.out_shape[1] == 16, "the stem and the first stage keep all 16 frames (room for SGS)"


def test_sevnet_knobs_reach_every_stage() -> None:
    spec = sevnet(width_mult=0.5, depths=(2, 1, 1, 2), stage_mults=(1.0, 1.25, 1.0, 0.75), groups=8, t_kernel=1, se=True)
    assert [s.repeats for s in spec.stages] == [2, 1, 1, 2]
    assert all(s.groups == 8 and s.t_kernel == 1 and s.se for s in spec.stages)
    assert all(s.channels % 8 == 0 for s in spec.stages)
    base = sevnet(width_mult=0.5, groups=8)
    assert spec.stages[1].channels > base.stages[1].channels and spec.stages[3].channels < base.stages[3].channels
    with pytest.raises(SpecError, match="groups"):
        sevnet(groups=0)
    with pytest.raises(SpecError) as e:
        sevnet(depths=(1, 2))
    assert e.value.field == "depths"


def test_sev_fields_round_trip_and_old_json_still_loads() -> None:
    spec = sevnet(width_mult=0.5, t_kernel=5, se=True, clip=(16, 48, 48))
    assert NetSpec.from_json(spec.to_json()) == spec
    old = json.loads(space.paper_spec("mobilenet", width_mult=0.5).to_json())
    for stage in old["stages"]:
        del stage["t_kernel"], stage["se"]
    assert NetSpec.from_dict(old) == space.paper_spec("mobilenet", width_mult=0.5)
