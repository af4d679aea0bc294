"""Similarity Guided Sampling: bins follow the clip's change, gradients flow, the spec field validates."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import space
from space import NetSpec, SpecError
from space.checkpoints import is_e3d_state
from space.sgs import bin_weights, with_sgs
from space.spec import SGSSpec

CLIP = (16, 48, 48)


def sgs_spec(family: str = "sevnet", after: int = 0, width: float = 0.5, **kw: object) -> NetSpec:
    spec = space.paper_spec(family, width_mult=width, num_classes=5, sample_size=CLIP[1], sample_duration=CLIP[0])
    return with_sgs(spec, after, **kw)  # type: ignore[arg-type]


def static_and_random(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` clips whose 16 frames are one random frame repeated, and ``n`` of 16 independent random frames."""
    g = torch.Generator().manual_seed(seed)
    static = torch.randn(n, 3, 1, *CLIP[1:], generator=g).expand(-1, -1, CLIP[0], -1, -1).contiguous()
    return static, torch.randn(n, 3, *CLIP, generator=g)


def test_bin_weights_merge_a_static_clip_into_one_bin_and_keep_unrelated_slices_apart() -> None:
    g = torch.Generator().manual_seed(0)
    static = torch.randn(1, 8, 1, 4, 4, generator=g).expand(-1, -1, 12, -1, -1)
    unrelated = torch.randn(1, 8, 12, 4, 4, generator=g)
    w, kept = bin_weights(torch.cat((static, unrelated)), bins=12, bin_width=0.5)
    assert kept.tolist() == [1, 12]
    assert torch.allclose(w[0, 0], torch.full((12,), 1 / 12)), "one bin: the average of all slices"
    assert torch.equal(w[0, 1:], torch.zeros(11, 12)), "rows past a clip's count are zero"
    assert torch.allclose(w.sum(-1)[1], torch.ones(12)), "every kept bin is a weighted average"
    assert (w[1].argmax(1) == torch.arange(12)).all(), "bins stay in temporal order"
    _, few = bin_weights(unrelated, bins=4, bin_width=0.5)
    assert few.tolist() == [4], "more change than bins: spread over all of them"


def test_a_clip_keeps_a_multiple_of_multiple_bins_by_repeating_its_last() -> None:
    z = torch.zeros(1, 2, 8, 2, 2)
    z[:, :, 4:, 0, 0] = 1.0  # two static halves: two bins
    z[:, :, :4, 1, 1] = 1.0
    w, kept = bin_weights(z, bins=8, bin_width=0.5)
    assert kept.tolist() == [2]
    w4, kept4 = bin_weights(z, bins=8, bin_width=0.5, multiple=4)
    assert kept4.tolist() == [4]
    assert torch.equal(w4[0, :2], w[0]) and torch.equal(w4[0, 2], w4[0, 1]) and torch.equal(w4[0, 3], w4[0, 1])


@pytest.mark.parametrize("family", ["sevnet", "mobilenetv2", "mobilenet", "squeezenet"])
def test_a_static_clip_keeps_fewer_bins_than_independent_random_frames(family: str) -> None:
    model = space.build(sgs_spec(family)).eval()
    static, rnd = static_and_random(4, seed=1)
    bins_static = model.sgs_bins(static)[:, 0]
    bins_random = model.sgs_bins(rnd)[:, 0]
    assert bins_static.max() < bins_random.min(), (bins_static.tolist(), bins_random.tolist())
    assert bins_random.max() <= model.spec.sgs[0].bins


def test_the_temporal_size_after_sgs_varies_per_clip_and_a_batch_equals_its_clips_one_by_one() -> None:
    model = space.build(sgs_spec()).eval()
    static, rnd = static_and_random(2, seed=2)
    x = torch.stack((static[0], rnd[0], static[1], rnd[1]))
    with torch.no_grad():
        logits, bins = model.forward_with_bins(x)
        alone = [model.forward_with_bins(c[None]) for c in x]
    assert len(set(bins[:, 0].tolist())) > 1, "static and random clips keep different numbers of bins"
    for i, (y, b) in enumerate(alone):
        assert torch.equal(b[0], bins[i])
        assert torch.allclose(y[0], logits[i], atol=1e-5, rtol=1e-4)
    seen: list[int] = []
    hook = model.stages[1].register_forward_pre_hook(lambda m, inp: seen.append(inp[0].shape[2]))
    with torch.no_grad():
        model(x)
    hook.remove()
    assert sorted(seen) == sorted(set(bins[:, 0].tolist())), "the rest runs once per group, at that group's T"


def test_gradients_reach_the_layers_before_sgs_and_its_embedding() -> None:
    model = space.build(sgs_spec())
    static, rnd = static_and_random(2, seed=3)
    x = torch.cat((static, rnd))
    loss = F.cross_entropy(model(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    for name in ("stem.conv", "stages.0.0.pw", "sgs.0.embed", "stages.1.0.temporal", "head.fc"):
        grad = model.get_submodule(name).weight.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_sgs_trains_from_scratch_with_the_rest() -> None:
    torch.manual_seed(0)
    model = space.build(sgs_spec())
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    static, rnd = static_and_random(4, seed=4)
    x, y = torch.cat((static, rnd)), torch.tensor([0] * 4 + [1] * 4)
    embed = model.get_submodule("sgs.0.embed").weight.detach().clone()
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert not torch.equal(model.get_submodule("sgs.0.embed").weight, embed)


def test_sgs_is_a_spec_field_that_round_trips() -> None:
    spec = sgs_spec("mobilenetv2", after=1)
    assert spec.sgs == (SGSSpec(after_stage=1, bins=8),)
    assert "sgs@1<=8" in spec.summary()
    again = NetSpec.from_json(spec.to_json())
    assert again == spec
    assert "sgs" not in json.loads(space.paper_spec("mobilenetv2").to_json()), "specs without SGS read as before"
    names = [layer.name for layer in spec.layers if layer.name.startswith("sgs.")]
    assert names == ["sgs.1.pool", "sgs.1.embed", "sgs.1", "sgs.1.merge"]
    state = space.build(spec).state_dict()
    assert any(k.startswith("sgs.1.embed") for k in state) and is_e3d_state(state)
    space.build(again).load_state_dict(state)


def test_trace_takes_one_clips_bins() -> None:
    spec = sgs_spec()
    top = spec.trace()
    assert top == spec.layers
    assert next(la for la in top if la.name == "sgs.0.merge").in_shape == (16, 16), "at most all 16 slices: (K, T)"
    three = spec.trace([3])
    merge = next(la for la in three if la.name == "sgs.0.merge")
    assert merge.in_shape == (3, 16) and next(la for la in three if la.name == "stages.1.0.pw").in_shape[1] == 3
    for bad in ([0], [17], [2, 2], [1.5]):
        with pytest.raises(SpecError) as e:
            spec.trace(bad)  # type: ignore[arg-type]
        assert e.value.field.startswith("sgs_bins")


def test_bad_sgs_fields_name_the_field() -> None:
    base = space.paper_spec("mobilenetv2", width_mult=0.5, sample_size=48)

    def field(*layers: SGSSpec) -> str:
        with pytest.raises(SpecError) as e:
            base.replace(sgs=layers)
        return e.value.field

    assert field(SGSSpec(after_stage=7, bins=4)) == "sgs[0].after_stage"
    assert field(SGSSpec(after_stage=0, bins=17)) == "sgs[0].bins", "more bins than the 16 slices entering SGS"
    assert field(SGSSpec(after_stage=0, bins=6, multiple=4)) == "sgs[0].bins"
    assert field(SGSSpec(after_stage=0, bins=8, bin_width=0.0)) == "sgs[0].bin_width"
    assert field(SGSSpec(after_stage=1, bins=4), SGSSpec(after_stage=1, bins=4)) == "sgs[1].after_stage"
    shufflenet = space.paper_spec("shufflenet", width_mult=0.5, sample_size=48)
    with pytest.raises(SpecError, match="when SGS keeps 1 bins") as e:
        shufflenet.replace(sgs=(SGSSpec(after_stage=0, bins=4),))
    assert e.value.field == "sgs[0].multiple"
    assert with_sgs(shufflenet, 0).sgs[0].multiple == 4, "its average-pool shortcuts need T divisible by 4 after stage 0"
    with pytest.raises(SpecError, match="already"):
        with_sgs(with_sgs(base, 0), 0)


def test_two_sgs_layers_each_validate_every_count() -> None:
    spec = with_sgs(sgs_spec("mobilenetv2", after=0), 2)
    assert [layer.after_stage for layer in spec.sgs] == [0, 2]
    model = space.build(spec).eval()
    static, rnd = static_and_random(2, seed=5)
    with torch.no_grad():
        logits, bins = model.forward_with_bins(torch.cat((static, rnd)))
    assert logits.shape == (4, 5) and bins.shape == (4, 2)
    assert all(spec.trace(tuple(b)) for b in bins.tolist())
