"""Closed-form counts of single layers, through both the analytic and the module counter."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from profiler import count_module
from profiler.costs import layer_cost
from space.ops import Layer, Tracer


def conv_case(
    cin: int, cout: int, k: tuple[int, int, int], s: tuple[int, int, int], p: tuple[int, int, int], g: int, bias: bool
) -> tuple[int, int]:
    """(macs, params) by hand for input 3D size 8x10x12."""
    t, h, w = ((n + 2 * pp - kk) // ss + 1 for n, kk, ss, pp in zip((8, 10, 12), k, s, p, strict=True))
    out_elems = cout * t * h * w
    per_out = (cin // g) * k[0] * k[1] * k[2]
    return out_elems * per_out, cout * per_out + (cout if bias else 0)


CONVS = [
    # cin, cout, kernel, stride, padding, groups, bias
    (4, 6, (3, 3, 3), (1, 1, 1), (1, 1, 1), 1, False),  # dense, padded
    (4, 6, (3, 3, 3), (1, 1, 1), (1, 1, 1), 1, True),  # with bias
    (6, 9, (3, 3, 3), (2, 2, 2), (1, 1, 1), 3, False),  # grouped, strided
    (8, 8, (3, 3, 3), (2, 2, 2), (1, 1, 1), 8, False),  # depthwise, strided
    (8, 16, (1, 1, 1), (1, 1, 1), (0, 0, 0), 1, True),  # pointwise
    (3, 5, (7, 7, 7), (1, 2, 2), (3, 3, 3), 1, False),  # ResNet stem shape
    (4, 4, (3, 3, 3), (1, 1, 1), (0, 0, 0), 1, False),  # unpadded: the output shrinks
]


@pytest.mark.parametrize("case", CONVS, ids=str)
def test_conv3d_closed_form(case: tuple) -> None:  # type: ignore[type-arg]
    cin, cout, k, s, p, g, bias = case
    macs, params = conv_case(*case)
    module = nn.Conv3d(cin, cout, k, s, p, groups=g, bias=bias)
    counts = count_module(module, (cin, 8, 10, 12))
    assert (counts.macs, counts.params) == (macs, params)
    assert counts.params == sum(x.numel() for x in module.parameters())
    out = module(torch.zeros(1, cin, 8, 10, 12)).shape[1:]
    assert counts.paper_flops == macs + (out.numel() if bias else 0)
    if p == tuple(kk // 2 for kk in k):  # e3d layers use 'same' padding k // 2
        tracer = Tracer()
        tracer.conv("c", (cin, 8, 10, 12), cout, kernel=k, stride=s, groups=g, bias=bias)
        cost = layer_cost(tracer.layers[0])
        assert (cost.macs, cost.params) == (macs, params)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_closed_form(bias: bool) -> None:
    counts = count_module(nn.Linear(20, 7, bias=bias), (20,))
    assert counts.macs == 20 * 7
    assert counts.params == 20 * 7 + (7 if bias else 0)
    assert counts.paper_flops == (2 * 20 - 1) * 7
    cost = layer_cost(Layer("fc", "linear", (20,), (7,), bias=bias))
    assert (cost.macs, cost.params, cost.paper_flops) == (140, 140 + (7 if bias else 0), 273)


def test_paper_convention_for_norm_activation_and_pools() -> None:
    x = (4, 8, 8, 8)
    n = 4 * 8 * 8 * 8
    assert count_module(nn.BatchNorm3d(4), x).paper_flops == 2 * n
    assert count_module(nn.ReLU(), x).paper_flops == n
    assert count_module(nn.ReLU6(), x).paper_flops == n
    assert count_module(nn.MaxPool3d(3, 2, 1), x).paper_flops == 2 * (4 * 4 * 4 * 4)  # kernel - 1 per output
    assert count_module(nn.AvgPool3d((2, 3, 3), 2, (0, 1, 1)), x).paper_flops == 18 * (4 * 4 * 4 * 4)
    assert count_module(nn.AdaptiveAvgPool3d(1), x).paper_flops == n
    for m in (nn.BatchNorm3d(4), nn.ReLU(), nn.MaxPool3d(3, 2, 1)):
        assert count_module(m, x).macs == 0
