"""Module counts of video models e3d did not write: against torch.utils.flop_counter (an independent
count), with frames or heads folded into the batch axis, einsum, matrix products, 1D and transposed
convolutions, attention and unknown operators."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from profiler.backends import BackendError, count_flop_counter, count_fvcore, count_ptflops
from profiler.compare import compare_counters, render_comparison
from profiler.counting import count_module
from profiler.einsum import einsum_macs
from tests.profiler.video_archs import ARCHS, CLIP, EinsumAttention, TSMNet, VideoTransformer


def sdpa_macs(model: nn.Module) -> int:
    """Closed form of the SDPA blocks of a VideoTransformer: heads x L x S x (E + Ev) per block."""
    if not isinstance(model, VideoTransformer):
        return 0
    tokens = (CLIP[1] // 2) * (CLIP[2] // 8) * (CLIP[3] // 8)
    dim, heads = 32, 4
    return heads * tokens * tokens * 2 * (dim // heads)


@pytest.mark.parametrize("make", list(ARCHS.values()), ids=list(ARCHS))
def test_counts_agree_with_flop_counter_per_kind_and_in_total(make: Callable[[], nn.Module]) -> None:
    torch.manual_seed(0)
    model = make().eval()
    c = compare_counters(model, CLIP, backends=("flop_counter",))
    kinds, fc = c.e3d_by_kind(), c.backends["flop_counter"].by_operator
    assert kinds["conv"] == fc["convolution"]
    assert kinds["linear"] == fc.get("addmm", 0) + fc.get("mm", 0)
    attention = sdpa_macs(model)
    assert kinds.get("attention (sdpa)", 0) == attention
    # flop_counter sees einsum as the bmm it decomposes to; sdpa only when torch takes the math path
    extra = fc.get("bmm", 0) - kinds.get("matmul / einsum", 0)
    assert extra in (0, attention)
    assert c.e3d.macs == c.backends["flop_counter"].total + attention - extra
    assert not c.e3d.lower_bound, c.e3d.unrecognised


@pytest.mark.parametrize("make", list(ARCHS.values()), ids=list(ARCHS))
def test_per_clip_counts_do_not_depend_on_the_batch(make: Callable[[], nn.Module]) -> None:
    model = make()
    one, three = count_module(model, CLIP), count_module(model, CLIP, batch=3)
    assert (one.macs, one.paper_flops, one.activations, one.params) == (three.macs, three.paper_flops, three.activations, three.params)
    assert {k: v.macs for k, v in one.by_module.items()} == {k: v.macs for k, v in three.by_module.items()}


def test_frames_folded_into_the_batch_are_all_counted() -> None:
    c = count_module(TSMNet(), CLIP)
    per_frame = 16 * 16 * 16 * 3 * 9  # stem: 3 -> 16 channels, 3x3, stride 2 on 32x32
    assert c.by_module["stem.0"].macs == CLIP[1] * per_frame


def test_heads_folded_into_the_batch_are_all_counted() -> None:
    thw, dim, heads = (4, 4, 4), 32, 4
    attn = EinsumAttention(dim, heads, pool=True, thw=thw)
    c = count_module(attn, (64, dim))
    d = dim // heads
    assert c.by_module["pool_q"].macs == heads * d * 64 * 27  # depthwise 3x3x3 on (heads, d, 4, 4, 4)
    assert c.by_module["pool_kv"].macs == 2 * heads * d * 16 * 27  # k and v, strided to (4, 2, 2)
    assert c.by_operator["einsum"].macs == 2 * heads * 64 * 16 * d


class BMM(nn.Module):
    """Attention scores with the heads in the batch axis of ``op``: bmm, baddbmm (plus a bias) or addbmm
    (plus a bias, summed over the batch axis: over clips and heads)."""

    def __init__(self, op: str = "bmm") -> None:
        super().__init__()
        self.op = op

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        q = x.view(b, n, 4, c // 4).transpose(1, 2).reshape(b * 4, n, c // 4)
        if self.op == "bmm":
            return torch.bmm(q, q.transpose(1, 2))
        return getattr(torch, self.op)(torch.ones(n, n), q, q.transpose(1, 2))


@pytest.mark.parametrize("op", ["bmm", "baddbmm", "addbmm"])
def test_batched_matrix_products_with_heads_in_the_batch_axis(op: str) -> None:
    macs = 4 * 10 * 10 * 4  # 4 heads of (10 x 4) @ (4 x 10); addbmm's sum over them adds no multiply-adds of its own
    one, two = count_module(BMM(op), (10, 16)), count_module(BMM(op), (10, 16), batch=2)
    assert one.macs == two.macs == one.by_operator["matmul"].macs == macs
    assert not one.lower_bound


class PerFrame(nn.Module):
    """``layer`` on every frame: (B, C, T, ...) run as (B*T, C, ...), frames folded into the batch axis."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        b, c, t = x.shape[:3]
        return self.layer(x.transpose(1, 2).reshape(b * t, c, *x.shape[3:]))


CONVS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], int]] = {
    # aten's conv1d and conv_transpose{1,2,3}d (what these modules call in inference mode), counted like convolution:
    # output elements x C_in / groups x kernel; a transposed one: input elements x C_out / groups x kernel
    "conv1d": (lambda: nn.Conv1d(4, 6, 3), (4, 10), 6 * 8 * 4 * 3),
    "conv1d, frames in the batch axis": (lambda: PerFrame(nn.Conv1d(4, 6, 3)), (4, 5, 10), 5 * 6 * 8 * 4 * 3),
    "conv_transpose1d, stride 2": (lambda: nn.ConvTranspose1d(4, 6, 3, stride=2), (4, 5), 4 * 5 * 6 * 3),
    "conv_transpose2d, 2 groups": (lambda: nn.ConvTranspose2d(4, 6, 3, groups=2), (4, 5, 5), 4 * 5 * 5 * 3 * 3 * 3),
    "conv_transpose2d, frames in the batch axis": (
        lambda: PerFrame(nn.ConvTranspose2d(4, 6, 3, groups=2)),
        (4, 3, 5, 5),
        3 * 4 * 5 * 5 * 3 * 3 * 3,
    ),
    "conv_transpose3d, stride 2": (lambda: nn.ConvTranspose3d(4, 6, 2, stride=2), (4, 2, 3, 3), 4 * 2 * 3 * 3 * 6 * 2 * 2 * 2),
}


@pytest.mark.parametrize(("make", "shape", "macs"), list(CONVS.values()), ids=list(CONVS))
def test_1d_and_transposed_convolutions_count_their_multiply_adds(make: Callable[[], nn.Module], shape: tuple[int, ...], macs: int) -> None:
    model = make()
    one, two = count_module(model, shape), count_module(model, shape, batch=2)
    assert one.macs == two.macs == macs
    assert count_flop_counter(model, shape).total == macs
    assert not one.lower_bound


EQUATIONS = [
    ("ij,jk->ik", [(5, 6), (6, 7)]),
    ("bij,bjk->bik", [(3, 5, 6), (3, 6, 7)]),
    ("bhid,bhjd->bhij", [(2, 4, 10, 8), (2, 4, 12, 8)]),
    ("bhij,bhjd->bhid", [(2, 4, 10, 12), (2, 4, 12, 8)]),
    ("...id,...jd->...ij", [(2, 3, 5, 8), (2, 3, 6, 8)]),
    ("bid,bjd", [(2, 5, 8), (2, 6, 8)]),
    ("ntc,cd->ntd", [(2, 9, 16), (16, 24)]),
    ("bi,ij,bj->b", [(3, 8), (8, 8), (3, 8)]),
    ("bi,bj->bij", [(3, 4), (3, 5)]),
    ("bij,bij->bij", [(3, 4, 5), (3, 4, 5)]),
    ("bij->bji", [(3, 4, 5)]),
]


class Einsum(nn.Module):
    def __init__(self, equation: str, shapes: list[tuple[int, ...]]) -> None:
        super().__init__()
        self.equation, self.shapes = equation, shapes

    def forward(self, x: Tensor) -> Tensor:
        operands = [torch.randn(s) + x.sum() for s in self.shapes]
        return torch.einsum(self.equation, *operands)


@pytest.mark.parametrize(("equation", "shapes"), EQUATIONS, ids=[e for e, _ in EQUATIONS])
def test_einsum_from_its_equation_matches_flop_counter(equation: str, shapes: list[tuple[int, ...]]) -> None:
    model = Einsum(equation, shapes)
    counted = count_module(model, (1,))
    independent = count_flop_counter(model, (1,)).total
    assert counted.macs == einsum_macs(equation, shapes) == independent
    assert not counted.lower_bound


def test_einsum_closed_forms() -> None:
    assert einsum_macs("bhid,bhjd->bhij", [(2, 4, 10, 8), (2, 4, 12, 8)]) == 2 * 4 * 10 * 12 * 8
    assert einsum_macs("bi,bj->bij", [(3, 4), (3, 5)]) == 0  # an outer product multiplies, never adds
    assert einsum_macs("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]) == 2 * 3 * 4 + 2 * 4 * 5


def test_sdpa_is_counted_and_matches_the_closed_form() -> None:
    class SDPA(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            q = x.view(1, 10, 2, 8).transpose(1, 2)
            k = torch.zeros(1, 2, 12, 8) + x.sum()
            v = torch.zeros(1, 2, 12, 6) + x.sum()
            return F.scaled_dot_product_attention(q, k, v)

    c = count_module(SDPA(), (10, 16))
    assert c.by_operator["attention"].macs == 2 * 10 * 12 * (8 + 6)


class Cdist(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.cdist(x, x)


def test_an_operator_without_a_rule_is_listed_with_shapes_and_makes_a_lower_bound() -> None:
    c = count_module(Cdist(), (3, 4))
    assert c.lower_bound and "_cdist_forward" in c.unrecognised
    assert c.unrecognised["_cdist_forward"].calls == 1 and c.unrecognised["_cdist_forward"].shapes == ["1x3x4, 1x3x4"]
    assert not count_module(TSMNet(), CLIP).lower_bound


def test_torchscript_frozen_and_traced_count_like_eager_and_cross_check_with_flop_counter() -> None:
    model = ARCHS["x3d-like (depthwise, SE, swish)"]().eval()
    traced = torch.jit.trace(model, torch.zeros(1, *CLIP))
    frozen = torch.jit.freeze(torch.jit.trace(model, torch.zeros(1, *CLIP)))
    eager = count_module(model, CLIP).macs
    assert count_module(traced, CLIP).macs == count_module(frozen, CLIP).macs == eager
    assert count_flop_counter(frozen, CLIP).total == eager
    for counter in (count_fvcore, count_ptflops):
        with pytest.raises(BackendError, match="cannot count a TorchScript model"):
            counter(traced, CLIP)


def test_comparison_table_names_every_counter() -> None:
    c = compare_counters(ARCHS["r2plus1d ((2+1)D convs)"](), CLIP)
    assert set(c.backends) == {"fvcore", "ptflops", "flop_counter"} and not c.errors
    text = render_comparison([("r2plus1d", c)], CLIP)
    assert "| r2plus1d |" in text and f"{c.e3d.macs:,}" in text


class TorchAttention(nn.Module):
    """nn.MultiheadAttention or nn.TransformerEncoderLayer, which take fused fast paths at inference."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(self.layer, nn.MultiheadAttention):
            return self.layer(x, x, x, need_weights=False)[0]
        return self.layer(x)


@pytest.mark.parametrize("encoder", [False, True], ids=["multihead_attention", "transformer_encoder_layer"])
def test_the_fused_attention_fast_paths_are_counted(encoder: bool) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    tokens, dim, hidden = 10, 32, 64
    layer = nn.TransformerEncoderLayer(dim, 4, hidden, batch_first=True) if encoder else nn.MultiheadAttention(dim, 4, batch_first=True)
    model = TorchAttention(layer).eval()
    c = count_module(model, (tokens, dim))
    projections = 4 * tokens * dim * dim + (2 * tokens * dim * hidden if encoder else 0)
    assert not c.lower_bound and c.macs == projections + tokens * tokens * 2 * dim
    independent = FlopCounterMode(display=False)  # with grad on, torch takes the unfused path, whose linears it counts
    with torch.enable_grad(), independent:
        model(torch.zeros(1, tokens, dim))
    assert independent.get_flop_counts()["Global"][torch.ops.aten.addmm] // 2 == projections
