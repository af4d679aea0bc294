"""Analytic counts equal module counts exactly; Table 8's MFLOPs within 2%; nothing silently 0."""

from __future__ import annotations

import random
import warnings
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import space
from profiler import count_module, count_spec
from profiler.counting import CountingError, spec_totals
from profiler.optimize import OptimizeOptions, optimize_for_inference
from space import NetSpec, SpecError, StageSpec, StemSpec
from tests.conftest import ALL_MODELS, preset_widths


def module_counts(spec: NetSpec) -> object:
    with torch.device("meta"):
        model = space.build(spec)
    return count_module(model, spec.input_shape)


def assert_same(spec: NetSpec) -> None:
    a, b = count_spec(spec), module_counts(spec)
    assert (a.macs, a.params, a.paper_flops, a.activations) == (b.macs, b.params, b.paper_flops, b.activations)  # type: ignore[attr-defined]
    per = lambda c: {k: (v.calls, v.macs, v.paper_flops, v.activations) for k, v in c.by_module.items() if v.macs or v.paper_flops}  # noqa: E731
    assert per(a) == per(b)
    kinds = ("bn", "relu", "relu6", "sigmoid", "maxpool", "avgpool", "gap", "add", "mul")
    arith = lambda c: {k: (v.calls, v.elements) for k, v in c.not_counted.items() if k in kinds}  # noqa: E731
    assert arith(a) == arith(b)
    assert tuple(spec_totals(spec)) == (a.macs, a.params, a.paper_flops, a.activations)


@pytest.mark.parametrize(("name", "width"), preset_widths())
def test_analytic_equals_module_count_for_every_preset(name: str, width: float) -> None:
    assert_same(space.paper_spec(name, width_mult=width))


@pytest.mark.parametrize("row", space.table8(), ids=lambda r: f"{r.model}-{r.width_mult}")
def test_paper_mflops_within_2_percent_of_table8(row: space.PaperRow) -> None:
    spec = space.paper_spec(row.model, width_mult=row.width_mult)
    assert abs(count_spec(spec).paper_flops / 1e6 / row.mflops - 1) < 0.02


def test_mobilenetv2_matches_the_documented_reference_counts() -> None:
    """architectures.md: 519.05 M multiply-adds, 561.09 M in the paper's convention (4 s.f.)."""
    c = count_spec(space.paper_spec("mobilenetv2"))
    assert round(c.macs / 1e6, 2) == 519.05
    assert abs(c.paper_flops / 1e6 - 561.09) < 0.05


def random_stage(rng: random.Random, cin: int) -> StageSpec:
    block = rng.choice(["fire", "dwsep", "inverted_residual", "shuffle_v1", "shuffle_v2", "basic", "bottleneck", "sev"])
    stride = rng.choice([(1, 1, 1), (2, 2, 2), (1, 2, 2)])
    act = rng.choice(["relu", "relu6"])
    repeats = rng.randint(1, 3)
    if block == "fire":
        c = 2 * rng.randint(2, 24)
        return StageSpec(block, c, repeats, stride, act, squeeze=rng.randint(1, 12), bypass=rng.random() < 0.5)
    if block == "inverted_residual":
        return StageSpec(block, rng.randint(2, 40), repeats, stride, act, expansion=rng.choice([1.0, 2.5, 4.0, 6.0]))
    if block == "shuffle_v1":
        g = rng.choice([1, 2, 3, 4])
        c = cin + 4 * g * rng.randint(1, 6)
        return StageSpec(block, c, repeats, stride if stride != (1, 1, 1) else (2, 2, 2), act, groups=g, first_groups=rng.choice([None, 1]))
    if block == "shuffle_v2":
        return StageSpec(block, 2 * rng.randint(2, 24), repeats, stride, act)
    if block == "basic":
        return StageSpec(block, rng.randint(cin, cin + 24), repeats, stride, act, shortcut=rng.choice(["A", "B"]))
    if block == "bottleneck":
        g = rng.choice([1, 2, 4])
        e = rng.choice([1, 2, 4])
        return StageSpec(block, g * e * rng.randint(1, 12), repeats, stride, act, expansion=float(e), groups=g, shortcut="B")
    if block == "sev":
        g = rng.choice([1, 2, 3, 4])
        t_kernel, se = rng.choice([1, 3, 5]), rng.random() < 0.5
        return StageSpec(block, g * rng.randint(1, 16), repeats, stride, act, groups=g, t_kernel=t_kernel, se=se)
    return StageSpec(block, rng.randint(2, 48), repeats, stride, act)


def random_spec(rng: random.Random) -> NetSpec | None:
    stem = StemSpec(
        rng.choice([3, 4, 6, 8, 12]), kernel=rng.choice([(3, 3, 3), (1, 3, 3)]), act=rng.choice(["relu", "relu6"]), pool=rng.random() < 0.5
    )
    stages, cin = [], stem.channels
    for _ in range(rng.randint(1, 4)):
        st = random_stage(rng, cin)
        stages.append(st)
        cin = st.channels
    head = rng.choice([space.HeadSpec(), space.HeadSpec(channels=rng.randint(8, 32)), space.HeadSpec("conv")])
    clip = (rng.choice([4, 8, 16]), rng.choice([24, 32, 40]), rng.choice([24, 32, 40]))
    try:
        return NetSpec("custom", stem, tuple(stages), head, clip=clip, num_classes=rng.randint(2, 20), dropout=rng.choice([0.0, 0.3]))
    except SpecError:
        return None


def test_analytic_equals_module_count_for_random_specs() -> None:
    rng = random.Random(1234)
    specs = [s for s in (random_spec(rng) for _ in range(400)) if s is not None]
    assert len(specs) >= 60, "the generator should produce plenty of valid specs"
    assert len({s.stages[0].block for s in specs}) == 8, "every block type appears"
    for spec in specs[:80]:
        assert_same(spec)


def test_random_family_knobs_count_exactly() -> None:
    rng = random.Random(7)
    for _ in range(25):
        name = rng.choice(["mobilenet", "mobilenetv2", "shufflenet", "shufflenetv2", "squeezenet", "sevnet"])
        factory = space.model_info(name).factory
        n_stages = {"mobilenet": 5, "mobilenetv2": 7, "shufflenet": 3, "shufflenetv2": 3, "squeezenet": 4, "sevnet": 4}[name]
        kw: dict[str, object] = {
            "width_mult": rng.uniform(0.15, 2.5),
            "depths": [rng.randint(1, 4) for _ in range(n_stages)],
            "stage_mults": [rng.choice([0.75, 1.0, 1.25]) for _ in range(n_stages)],
        }
        if name == "mobilenetv2":
            kw["expansions"] = [rng.choice([1.0, 3.0, 6.0]) for _ in range(n_stages)]
        if name == "shufflenet":
            kw["groups"] = rng.choice([1, 2, 3, 4, 8])
        if name == "sevnet":
            kw |= {"groups": rng.choice([1, 2, 4, 8]), "t_kernel": rng.choice([1, 3]), "se": rng.random() < 0.5}
        assert_same(factory(**kw, clip=(16, 112, 112)))


class Functional(nn.Module):
    """Convolves functionally and uses an element-wise op (tanh) that is listed, not counted."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(5, 3, 3, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(F.conv3d(x, self.w, padding=1)).mean((2, 3, 4))


def test_functional_ops_inside_modules_are_counted_or_listed() -> None:
    c = count_module(Functional(), (3, 4, 6, 6))
    assert c.macs == 5 * 4 * 6 * 6 * 3 * 27
    assert "tanh" in c.not_counted and c.not_counted["tanh"].elements == 5 * 4 * 6 * 6
    from profiler.counting import not_counted_category

    assert not_counted_category("tanh").startswith("element-wise") and not c.lower_bound
    assert not_counted_category("_cdist_forward").startswith("unrecognised")
    assert not_counted_category("sigmoid").startswith("arithmetic")
    assert not_counted_category("maxpool").startswith("arithmetic")


@pytest.mark.parametrize("name", ALL_MODELS)
def test_torchscript_modules_count_like_eager(name: str) -> None:
    spec = space.paper_spec(name, width_mult=0.5, sample_size=48)
    model = space.build(spec).eval()
    traced = torch.jit.trace(model, torch.zeros(1, *spec.input_shape))
    a, b = count_spec(spec), count_module(traced, spec.input_shape)
    assert (a.macs, a.params, a.paper_flops) == (b.macs, b.params, b.paper_flops)
    assert not b.lower_bound, b.unrecognised  # ShuffleNet's channel shuffle divides ints (floor_divide): was a lower bound


@pytest.mark.parametrize("bf16", [False, True])
def test_an_optimized_graph_counts_its_pools_as_convolutions_like_eager(bf16: bool) -> None:
    """ShuffleNetV1's shortcut pools run as depthwise convolutions in the optimized graph
    (``profiler.optimize.pools_as_convs``); counted as the pools they compute, the graph costs what the spec does."""
    spec = space.paper_spec("shufflenet", width_mult=0.5, sample_size=48)
    model = space.build(spec).eval()
    graph = optimize_for_inference(model, options=OptimizeOptions(bf16=bf16), check=False).graph
    a, b = count_spec(spec), count_module(graph, spec.input_shape)
    assert a.macs == b.macs  # (the paper's FLOPs differ: BatchNorm is folded into the convolutions)
    assert b.params <= a.params  # folded too; the pools' constant weights are no parameters


@pytest.mark.parametrize("fill", [0.5, 1 / 27 + 1e-3])
def test_a_depthwise_conv_that_does_not_average_counts_as_a_conv(fill: float) -> None:
    conv = nn.Conv3d(4, 4, 3, padding=1, groups=4, bias=False)
    nn.init.constant_(conv.weight, fill)
    counts = count_module(conv, (4, 2, 4, 4))
    assert counts.macs == 4 * 2 * 4 * 4 * 27


def test_an_eager_depthwise_conv_of_averaging_weights_counts_as_a_conv_and_frozen_as_a_pool() -> None:
    """Only a frozen graph's constant weights can be a pool that ``pools_as_convs`` rewrote; an eager module's
    parameters are a conv's, even where they happen to be 1 / window (a smoothing init)."""
    conv = nn.Conv3d(4, 4, 3, padding=1, groups=4, bias=False).eval()
    nn.init.constant_(conv.weight, 1 / 27)
    assert count_module(conv, (4, 2, 4, 4)).macs == 4 * 2 * 4 * 4 * 27
    frozen = torch.jit.freeze(torch.jit.script(conv))
    assert count_module(frozen, (4, 2, 4, 4)).macs == 0


class _NoMultiplyAdds(nn.Module):
    """Operators without multiply-adds that the counter once left without a category (a LOWER BOUND)."""

    def __init__(self) -> None:
        super().__init__()
        self.prelu, self.embedding = nn.PReLU(), nn.Embedding(10, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled, indices = F.max_pool3d(x, 2, return_indices=True)
        outs = [F.adaptive_max_pool3d(x, 2), F.max_unpool3d(pooled, indices, 2), F.interpolate(x, scale_factor=2)]
        outs += [self.prelu(x), self.embedding(torch.arange(3)), F.glu(x, 1), F.mish(x), F.pixel_shuffle(x.flatten(1, 2), 2)]
        return torch.stack([o.sum() for o in outs])


def test_operators_without_multiply_adds_have_a_category_and_no_lower_bound() -> None:
    counts = count_module(_NoMultiplyAdds(), (4, 2, 4, 4))
    assert not counts.lower_bound and not counts.unrecognised
    assert counts.macs == 0 and {"_unsafe_index", "embedding", "pixel_shuffle", "mish"} <= set(counts.not_counted)


class _SharedConv(nn.Module):
    """One conv called twice, and a linear layer under two names."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv3d(4, 4, 1), nn.Linear(4, 2)
        self.fc2 = self.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.conv(x)).mean((2, 3, 4))
        return self.fc(x) + self.fc2(x)


def test_a_shared_modules_parameters_are_on_its_first_call_only() -> None:
    counts = count_module(_SharedConv(), (4, 2, 4, 4))
    rows = [(name, cost.macs, cost.params) for name, _, cost in counts.layers if cost.macs]
    assert rows == [("conv", 512, 20), ("conv", 512, 0), ("fc", 8, 10), ("fc", 8, 0)]
    assert sum(cost.params for _, _, cost in counts.layers) == counts.params == 30


def test_count_module_restores_training_mode() -> None:
    model = space.create_model("mobilenet", width_mult=0.5, sample_size=48)
    model.train()
    count_module(model, (3, 16, 48, 48))
    assert model.training


class _SkipsStillClips(nn.Module):
    """Skips its conv on a clip with no motion, as some video models do: an all-zero clip takes that path."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x[:, :, 1:] - x[:, :, :-1]).abs().mean() < 1e-3:
            return torch.zeros(x.shape[0], 4)
        return self.conv(x).mean((2, 3, 4))


def test_count_module_counts_on_random_clips_without_touching_the_global_rng() -> None:
    model = _SkipsStillClips()
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    counts = count_module(model, (3, 2, 4, 4))
    assert counts.macs == 3 * 4 * 2 * 4 * 4
    assert torch.equal(torch.rand(1), expected)


def test_units_traced_alike_share_one_trace_and_one_cost() -> None:
    from profiler.counting import clear_caches, unit_cost

    a = space.paper_spec("mobilenetv2", width_mult=0.7, sample_size=48)
    b = space.paper_spec("mobilenetv2", width_mult=0.7, sample_size=48, num_classes=10)  # only the head differs
    assert a.traced_segments()[:-1] == b.traced_segments()[:-1] and a.traced_segments()[-1] != b.traced_segments()[-1]
    unit_a, unit_b = a.traced_segments()[2][1][1], b.traced_segments()[2][1][1]
    assert a.unit_layers()[3][1] is b.unit_layers()[3][1]
    assert unit_a == unit_b and unit_cost(unit_a) == unit_cost(unit_b)
    before = spec_totals(a)
    clear_caches()
    assert spec_totals(a) == before == tuple(count_layers_of(a))


def count_layers_of(spec: NetSpec) -> tuple[int, int, int, int]:
    c = count_spec(spec)
    return (c.macs, c.params, c.paper_flops, c.activations)


def test_a_failing_unit_is_not_cached() -> None:
    for _ in range(2):
        with pytest.raises(SpecError, match=r"stages\[2\]\.stride"):
            space.paper_spec("shufflenet", sample_duration=8)


@pytest.mark.parametrize(
    ("block", "change"),
    [
        ("inverted_residual", {"expansion": 4.0}),
        ("inverted_residual", {"act": "relu6"}),
        ("shuffle_v1", {"groups": 2}),
        ("shuffle_v1", {"first_groups": 1}),
        ("sev", {"se": True}),
        ("sev", {"t_kernel": 1}),
        ("fire", {"bypass": False}),
        ("fire", {"squeeze": 6}),
        ("bottleneck", {"shortcut": "A"}),
        ("dwsep", {"repeats": 3}),
        ("dwsep", {"stride": (1, 2, 2)}),
    ],
)
def test_specs_that_differ_in_one_field_are_priced_apart(block: str, change: dict[str, object]) -> None:
    """The trace and cost caches are keyed by value: a cached segment is never reused for a spec
    that differs in one field, and every spec's cached totals equal its count from scratch."""
    from profiler.counting import clear_caches

    bases: dict[str, dict[str, Any]] = {
        "inverted_residual": {"expansion": 6.0},
        "shuffle_v1": {"groups": 4},
        "sev": {"groups": 4},
        "fire": {"squeeze": 4, "bypass": True},
        "bottleneck": {"expansion": 4.0},
        "dwsep": {},
    }
    base = bases[block]
    channels = 48 if block != "shuffle_v1" else 96

    def make(**kw: object) -> NetSpec:
        fields: dict[str, Any] = {"repeats": 2, "stride": (2, 2, 2), **base, **kw}
        return NetSpec("custom", StemSpec(24), (StageSpec(block, channels, **fields),), clip=(8, 32, 32), num_classes=10)

    a, b = make(), make(**change)
    cached = (spec_totals(a), spec_totals(b), spec_totals(a))
    assert cached[0] == cached[2]
    assert a.traced_segments()[1] != b.traced_segments()[1] and a.layers != b.layers
    clear_caches()
    assert (spec_totals(a), spec_totals(b)) == cached[:2] == (tuple(count_layers_of(a)), tuple(count_layers_of(b)))
    assert_same(b)


def test_an_invalid_stage_equal_to_a_cached_valid_one_is_still_refused() -> None:
    """``True == 1`` in Python: the caches must not let a stage with ``groups=True`` through because an
    equal-comparing valid one (``groups=1``) was priced before."""
    ok = NetSpec("custom", StemSpec(8), (StageSpec("shuffle_v1", 32, stride=(2, 2, 2), groups=1),), clip=(4, 16, 16))
    spec_totals(ok)
    with pytest.raises(SpecError, match=r"stages\[0\]\.groups"):
        NetSpec("custom", StemSpec(8), (StageSpec("shuffle_v1", 32, stride=(2, 2, 2), groups=True),), clip=(4, 16, 16))
    with pytest.raises(SpecError, match=r"stages\[0\]\.stride"):
        NetSpec("custom", StemSpec(8), (StageSpec("shuffle_v1", 32, stride=(True, 2, 2), groups=1),), clip=(4, 16, 16))


@pytest.mark.parametrize("enabled", [True, False])
def test_collector_paused_pauses_then_restores_the_collector(enabled: bool) -> None:
    import gc

    from profiler.counting import collector_paused

    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        with pytest.raises(KeyError), collector_paused():
            assert not gc.isenabled()
            with collector_paused():  # nested: the outer pause holds after the inner one ends
                pass
            assert not gc.isenabled()
            raise KeyError("a failing candidate")
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


def _dynamic_int8() -> nn.Module:
    """A model whose Linear runs as quantized::linear_dynamic (below the dispatcher the counter sees)."""
    from torch.ao.quantization import quantize_dynamic

    float_model = nn.Sequential(nn.Conv3d(3, 4, 1), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation
        return quantize_dynamic(float_model, {nn.Linear}, dtype=torch.qint8)


@pytest.mark.parametrize("script", [False, True])
def test_an_int8_model_is_refused_not_counted_short_of_its_quantized_ops(script: bool) -> None:
    model = _dynamic_int8()
    if script:
        model = torch.jit.trace(model, torch.zeros(1, 3, 2, 4, 4))
    with pytest.raises(CountingError, match=r"int8 .* cannot be counted: its .*(Linear|quantized::linear_dynamic)"):
        count_module(model, (3, 2, 4, 4))
