"""Data-dependent cost: the per-clip count of a network with SGS equals what actually executes."""

from __future__ import annotations

from math import prod

import pytest
import torch
from torch import nn

import space
from profiler import count_module, count_spec
from profiler.counting import spec_totals
from profiler.datacost import clip_counts, data_cost, dataset_bins
from space.sgs import BinMerge, with_sgs

CLIP = (16, 48, 48)
CASES = [("sevnet", 0), ("sevnet", 2), ("mobilenetv2", 1), ("mobilenet", 0), ("squeezenet", 0), ("shufflenetv2", 0), ("shufflenet", 0)]


def sgs_model(family: str, after: int) -> space.Net:
    spec = space.paper_spec(family, width_mult=0.5, num_classes=7, sample_size=CLIP[1], sample_duration=CLIP[0])
    return space.build(with_sgs(spec, after)).eval()


def executed_macs(model: nn.Module, clip: torch.Tensor) -> int:
    """Multiply-adds of one clip counted with forward hooks on the modules that multiply: every
    Conv3d, Linear and SGS merge, from the shapes they actually saw."""
    total = 0

    def conv(m: nn.Conv3d, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * (m.in_channels // m.groups) * prod(m.kernel_size)

    def linear(m: nn.Linear, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * m.in_features

    def merge(m: BinMerge, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        weights = inp[0]  # (1, K, T) times (1, T, D)
        total += out.numel() * weights.shape[2]

    hooks = []
    for m in model.modules():
        fn = conv if isinstance(m, nn.Conv3d) else linear if isinstance(m, nn.Linear) else merge if isinstance(m, BinMerge) else None
        if fn is not None:
            hooks.append(m.register_forward_hook(fn))  # type: ignore[arg-type]
    try:
        with torch.no_grad():
            model(clip[None])
    finally:
        for h in hooks:
            h.remove()
    return total


def clips(seed: int) -> torch.Tensor:
    """A static clip, a clip of independent random frames, and a clip half static then moving."""
    g = torch.Generator().manual_seed(seed)
    static = torch.randn(3, 1, *CLIP[1:], generator=g).expand(-1, CLIP[0], -1, -1)
    rnd = torch.randn(3, *CLIP, generator=g)
    half = torch.cat((static[:, :8], rnd[:, 8:]), 1)
    return torch.stack((static, rnd, half))


@pytest.mark.parametrize(("family", "after"), CASES)
def test_per_clip_count_equals_the_multiply_adds_executed(family: str, after: int) -> None:
    model = sgs_model(family, after)
    spec = model.spec
    seen = set()
    for clip in clips(seed=len(family) + after):
        bins, counts = clip_counts(model, clip)
        seen.add(bins)
        assert counts.macs == executed_macs(model, clip), bins
        module = count_module(model, spec.input_shape, clip=clip)  # aten-level: every operator that ran
        assert (counts.macs, counts.params, counts.paper_flops, counts.activations) == (
            module.macs,
            module.params,
            module.paper_flops,
            module.activations,
        )
        per = lambda c: {k: (v.calls, v.macs, v.paper_flops) for k, v in c.by_module.items() if v.macs or v.paper_flops}  # noqa: E731
        assert per(counts) == per(module)
        assert counts.macs <= count_spec(spec).macs, "the traced maximum bounds every clip"
    if family != "shufflenet":  # its SGS must keep 4 of 4 bins (see test_sgs.py)
        assert len(seen) > 1, "the clips should keep different numbers of bins"


def test_merge_and_similarity_are_reported_not_hidden() -> None:
    model = sgs_model("sevnet", 0)
    _, counts = clip_counts(model, clips(0)[1])
    assert counts.by_operator["matmul"].macs > 0
    from profiler.counting import not_counted_category

    assert not_counted_category("similarity").startswith("element-wise")
    module = count_module(model, model.spec.input_shape, clip=clips(0)[1])
    unknown = [op for op in module.not_counted if not_counted_category(op).startswith("unrecognised")]
    assert not unknown, f"every operator SGS runs has a category: {unknown}"


def test_data_cost_reports_min_mean_max_over_clips() -> None:
    model = sgs_model("mobilenetv2", 0)
    data = [(c, 0) for c in clips(1)]
    bins = dataset_bins(model, data, batch_size=2)  # type: ignore[arg-type]
    cost = data_cost(model.spec, bins)
    per_clip = [spec_totals(model.spec, sgs_bins=b).macs for b in bins]
    assert cost.macs == per_clip
    assert (cost.min_macs, cost.max_macs) == (min(per_clip), max(per_clip))
    assert cost.mean_macs == pytest.approx(sum(per_clip) / 3)
    assert cost.min_macs < cost.max_macs <= cost.upper.macs
    d = cost.as_dict()
    assert d["clips"] == 3 and d["sgs"][0]["max_bins"] == 16
    # counted at another clip size (the budget's) with the bins measured here
    big = model.spec.replace(clip=(16, 112, 112))
    assert data_cost(big, bins).mean_macs > cost.mean_macs


def test_without_sgs_every_clip_costs_the_same() -> None:
    spec = space.paper_spec("mobilenet", width_mult=0.5, num_classes=7, sample_size=48)
    model = space.build(spec)
    bins = dataset_bins(model, [(c, 0) for c in clips(2)], batch_size=3)  # type: ignore[arg-type]
    cost = data_cost(spec, bins)
    assert bins == [(), (), ()] and cost.min_macs == cost.max_macs == count_spec(spec).macs


def test_traced_paths_refuse_sgs_and_the_search_times_it_eagerly() -> None:
    from profiler.optimize import DataDependentModelError, optimize_for_inference
    from search.study import latency_meter

    spec = with_sgs(space.paper_spec("sevnet", width_mult=0.25, num_classes=7, sample_size=32), 0)
    with pytest.raises(DataDependentModelError, match="Similarity Guided Sampling"):
        optimize_for_inference(space.build(spec))
    assert latency_meter("optimized")(spec) > 0
