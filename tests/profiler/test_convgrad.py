"""profiler/convgrad.py: e3d's depthwise, grouped pointwise and bias gradients equal PyTorch's, repeat exactly, and stay out of the way."""

from __future__ import annotations

import copy
import ctypes
import itertools
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import space
from profiler import native
from profiler.convgrad import (
    MIN_GROUP_INPUTS,
    BiasedConv3d,
    DepthwiseConv3d,
    GroupedPointwiseConv3d,
    channel_split,
    depthwise_grad_input,
    depthwise_grad_weight,
    e3d_class,
    grouped_pointwise_grad_weight,
    is_depthwise,
    use_e3d_grads,
)
from profiler.latency import torch_threads
from profiler.precision import ExecConfig, candidates, detect_cpu
from tests.conftest import ALL_MODELS, SMALL_CLIP

CL = torch.channels_last_3d


@pytest.mark.parametrize(
    ("kernel", "stride", "padding"),
    [
        (3, (1, 1, 1), 1),
        (3, (2, 2, 2), 1),
        (3, (1, 2, 2), 1),
        (5, (2, 1, 2), 2),
        (3, (2, 2, 2), 0),
        (1, (2, 2, 2), 0),  # no tap reaches the odd positions
        (3, (3, 1, 2), 2),  # more padding than the kernel needs
        (3, (1, 1, 1), 2),
    ],
)
@pytest.mark.parametrize("size", [(8, 9, 10), (7, 7, 6), (1, 2, 3)])
@pytest.mark.parametrize("fmt", [CL, torch.contiguous_format])
def test_the_input_gradient_equals_pytorchs(
    kernel: int, stride: tuple[int, int, int], padding: int, size: tuple[int, ...], fmt: torch.memory_format
) -> None:
    if min(size) + 2 * padding < kernel:
        pytest.skip("no output: the kernel is larger than the padded input")
    x = torch.randn(2, 4, *size, dtype=torch.float64).contiguous(memory_format=fmt).requires_grad_()
    w = torch.randn(4, 1, kernel, kernel, kernel, dtype=torch.float64)
    y = F.conv3d(x, w, None, stride, padding, 1, 4)
    g = torch.randn_like(y)
    (expected,) = torch.autograd.grad(y, x, g)
    got = depthwise_grad_input(g, w, x.shape, stride=stride, padding=(padding,) * 3)
    assert got.shape == x.shape and got.is_contiguous(memory_format=fmt) == g.is_contiguous(memory_format=fmt)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


@pytest.fixture
def kernel() -> None:
    """The weight-gradient kernel is built here (it must be under CI, which has a C compiler)."""
    if native.library("depthwise_wgrad") is None:
        assert not os.environ.get("CI"), "CI has a C compiler: the kernel must build"
        pytest.skip("no C compiler here: the kernel cannot be built")


Triple = tuple[int, int, int]


def _weight_case(channels: int, kernel: Triple, stride: Triple, padding: Triple, size: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    x = torch.randn(3, channels, *size).contiguous(memory_format=CL)
    w = torch.randn(channels, 1, *kernel)
    g = torch.randn_like(F.conv3d(x, w, None, stride, padding, 1, channels)).contiguous(memory_format=CL)
    return x, w, g


@pytest.mark.parametrize(
    ("kernel_size", "stride", "padding"),
    [
        ((3, 3, 3), (1, 1, 1), (1, 1, 1)),
        ((3, 3, 3), (2, 2, 2), (1, 1, 1)),
        ((3, 3, 3), (1, 2, 2), (1, 1, 1)),
        ((3, 3, 3), (2, 2, 2), (0, 0, 0)),
        ((3, 3, 3), (1, 1, 1), (2, 0, 2)),  # more padding than the kernel needs, and none
        ((1, 3, 3), (1, 1, 1), (0, 1, 1)),
        ((3, 1, 1), (2, 1, 1), (1, 0, 0)),  # one tap along the width: the general row path
        ((5, 5, 5), (2, 1, 3), (2, 2, 2)),
    ],
)
@pytest.mark.parametrize("channels", [3, 16, 20, 37])  # fewer than one vector, one, and a partial last vector
@pytest.mark.parametrize("size", [(6, 9, 10), (1, 3, 2)])
def test_the_weight_gradient_equals_pytorchs(
    kernel: None, kernel_size: Triple, stride: Triple, padding: Triple, channels: int, size: tuple[int, ...]
) -> None:
    if any(n + 2 * p < k for n, p, k in zip(size, padding, kernel_size, strict=True)):
        pytest.skip("no output: the kernel is larger than the padded input")
    x, w, g = _weight_case(channels, kernel_size, stride, padding, size)
    expected = torch.ops.aten.convolution_backward(
        g.double(), x.double(), w.double(), None, stride, padding, [1] * 3, False, [0] * 3, channels, [False, True, False]
    )[1]
    got = depthwise_grad_weight(g, x, w, stride=stride, padding=padding)
    assert got.shape == w.shape and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


def test_the_kernel_holds_as_many_channels_per_vector_as_the_cpus_registers(kernel: None) -> None:
    """A vector type wider than the registers is kept in memory between operations (1.5-7x slower on AVX2)."""
    lib = native.library("depthwise_wgrad")
    assert lib is not None
    lib.depthwise_wgrad_lanes.restype = ctypes.c_long
    flags = detect_cpu().flags
    assert lib.depthwise_wgrad_lanes() == (16 if "avx512f" in flags else 8 if "avx" in flags else 4)


def test_the_weight_gradient_does_not_depend_on_the_threads(kernel: None) -> None:
    x, w, g = _weight_case(53, (3, 3, 3), (1, 2, 2), (1, 1, 1), (5, 8, 8))
    results = []
    for threads in (1, 2, 3):
        with torch_threads(threads):
            results.append(depthwise_grad_weight(g, x, w, stride=(1, 2, 2), padding=(1, 1, 1)))
    assert torch.equal(results[0], results[1]) and torch.equal(results[0], results[2])


@pytest.mark.parametrize(("channels", "threads"), [(53, 2), (53, 8), (16, 2), (3, 2), (96, 3)])
def test_the_channels_are_split_in_whole_vectors_covering_each_once(channels: int, threads: int) -> None:
    parts = channel_split(channels, threads)
    assert 1 <= len(parts) <= threads and parts[0][0] == 0 and parts[-1][1] == channels
    assert all(hi == lo for (_, hi), (lo, _) in itertools.pairwise(parts))
    assert all(lo % 16 == 0 and hi > lo for lo, hi in parts)


def test_other_layouts_and_native_kernels_turned_off_run_pytorchs_weight_gradient(monkeypatch: pytest.MonkeyPatch) -> None:
    x, w, g = _weight_case(20, (3, 3, 3), (1, 1, 1), (1, 1, 1), (4, 6, 6))
    args = (None, (1, 1, 1), (1, 1, 1), [1] * 3, False, [0] * 3, 20, [False, True, False])
    plain = torch.ops.aten.convolution_backward(g.contiguous(), x.contiguous(), w, *args)[1]
    assert torch.equal(depthwise_grad_weight(g.contiguous(), x.contiguous(), w, stride=(1, 1, 1), padding=(1, 1, 1)), plain)
    monkeypatch.setenv("E3D_NATIVE", "0")
    got = depthwise_grad_weight(g, x, w, stride=(1, 1, 1), padding=(1, 1, 1))
    assert torch.equal(got, torch.ops.aten.convolution_backward(g, x, w, *args)[1])


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_model_trains_to_the_same_gradients_and_they_repeat_exactly(name: str, one_torch_thread: None) -> None:
    model = space.create_model(name, width_mult=0.25, num_classes=5, sample_size=SMALL_CLIP[1], sample_duration=SMALL_CLIP[0])
    model.to(memory_format=CL).train()  # type: ignore[call-overload]
    fast = copy.deepcopy(model)
    swapped = use_e3d_grads(fast)
    assert swapped == sum(e3d_class(m) is not None for m in model.modules())
    assert fast.state_dict().keys() == model.state_dict().keys()
    x = torch.randn(2, 3, *SMALL_CLIP).contiguous(memory_format=CL)
    grads = []
    for m in (model, fast, fast):
        m.zero_grad(set_to_none=True)
        torch.manual_seed(1)  # the same dropout masks
        m(x).square().sum().backward()
        grads.append([p.grad.clone() for p in m.parameters() if p.grad is not None])
    scale = max(g.abs().max().item() for g in grads[0])  # some gradients are zero but for rounding (a bias before a BatchNorm)
    for plain, mine, again in zip(*grads, strict=True):
        torch.testing.assert_close(mine, plain, rtol=1e-3, atol=1e-5 * scale)  # float rounding apart
        assert torch.equal(mine, again)  # deterministic: resumes stay exact


def test_only_plain_depthwise_wide_grouped_pointwise_and_biased_layers_are_swapped_and_only_once() -> None:
    wide = 2 * MIN_GROUP_INPUTS
    net = nn.Sequential(
        nn.Conv3d(4, 4, 3, padding=1, groups=4),
        nn.Conv3d(wide, 6, 1, groups=2),
        nn.Conv3d(4, 8, 3, padding=1),
        nn.Conv3d(4, 8, 3, padding=1, groups=4, bias=False),  # two outputs per group: not depthwise
        nn.Conv3d(8, 8, 3, padding=2, dilation=2, groups=8, bias=False),
        nn.Conv3d(8, 8, 1, bias=False),  # one group
        nn.Conv3d(wide - 2, 6, 1, groups=2, bias=False),  # fewer inputs per group than MIN_GROUP_INPUTS
        nn.Conv3d(wide, 6, 1, stride=2, groups=2, bias=False),
        nn.Conv3d(wide, 6, 3, padding="same", groups=2),
    )
    assert use_e3d_grads(net) == 3
    assert [type(m) for m in net[:3]] == [DepthwiseConv3d, GroupedPointwiseConv3d, BiasedConv3d]
    assert [type(m) for m in net[3:]] == [nn.Conv3d] * 6
    assert use_e3d_grads(net) == 0  # already swapped


def _grad_fn_name(layer: nn.Module, x: torch.Tensor) -> str:
    return type(layer(x).grad_fn).__name__


@pytest.mark.parametrize(
    ("layer", "fn"),
    [
        (nn.Conv3d(32, 32, 3, padding=1, groups=32), "Depthwise"),
        (nn.Conv3d(32, 8, 1, groups=2), "GroupedPointwise"),
        (nn.Conv3d(32, 8, 3, padding=1, stride=(1, 2, 2)), "Biased"),
    ],
)
def test_it_runs_only_for_float32_training_on_a_cpu_without_autocast(layer: nn.Conv3d, fn: str) -> None:
    plain = copy.deepcopy(layer)
    use_e3d_grads(layer)
    x = torch.randn(1, 32, 4, 6, 6, requires_grad=True)
    assert fn in _grad_fn_name(layer, x)
    assert fn not in _grad_fn_name(layer.double(), x.double())
    layer.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fn not in _grad_fn_name(layer, x)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), plain(x), rtol=0, atol=0)


@pytest.mark.parametrize(("channels", "out", "groups"), [(32, 8, 2), (48, 96, 3), (64, 64, 4)])
@pytest.mark.parametrize("size", [(4, 6, 6), (1, 1, 1)])
@pytest.mark.parametrize("fmt", [CL, torch.contiguous_format])
def test_the_grouped_pointwise_weight_gradient_equals_pytorchs(
    channels: int, out: int, groups: int, size: tuple[int, ...], fmt: torch.memory_format
) -> None:
    x = torch.randn(3, channels, *size).contiguous(memory_format=fmt)
    w = torch.randn(out, channels // groups, 1, 1, 1)
    g = torch.randn(3, out, *size).contiguous(memory_format=fmt)
    args = (None, [1] * 3, [0] * 3, [1] * 3, False, [0] * 3, groups, [False, True, False])
    expected = torch.ops.aten.convolution_backward(g.double(), x.double(), w.double(), *args)[1]
    got = grouped_pointwise_grad_weight(g, x, groups)
    assert got.shape == w.shape and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


@pytest.mark.parametrize(
    "layer", [nn.Conv3d(48, 24, 1, groups=3), nn.Conv3d(48, 24, 3, padding=(0, 1, 1), stride=(1, 2, 2))], ids=["grouped", "biased"]
)
@pytest.mark.parametrize("x_grad", [True, False])  # a first layer needs no input gradient
def test_grouped_pointwise_and_biased_layers_train_to_pytorchs_gradients_and_they_repeat_exactly(layer: nn.Conv3d, x_grad: bool) -> None:
    layer = layer.to(memory_format=CL)  # type: ignore[call-overload]
    fast = copy.deepcopy(layer)
    assert use_e3d_grads(fast) == 1
    x = torch.randn(2, 48, 3, 5, 5).contiguous(memory_format=CL)
    grads = []
    with torch_threads(2):
        for m in (layer, fast, fast):
            xi = x.clone().requires_grad_(x_grad)
            m.zero_grad(set_to_none=True)
            m(xi).sin().sum().backward()
            grads.append([xi.grad, m.weight.grad, m.bias.grad])
    for plain, mine, again in zip(*grads, strict=True):
        if plain is None:
            assert mine is None and again is None
            continue
        torch.testing.assert_close(mine, plain, rtol=1e-4, atol=1e-5)
        assert torch.equal(mine, again)


def test_auto_trains_channels_last_with_it_and_explicit_fp32_does_not() -> None:
    training = [c for c in candidates(training=True) if c.precision == "fp32"]
    assert [c.label for c in training] == ["fp32 eager", "fp32 channels-last+dw"]
    net = space.create_model("mobilenet", width_mult=0.25, num_classes=5, sample_size=32, sample_duration=8)
    layers = sum(is_depthwise(m) for m in net.modules())
    training[1].prepare(net)
    assert layers > 0 and sum(type(m) is DepthwiseConv3d for m in net.modules()) == layers
    plain = space.create_model("mobilenet", width_mult=0.25, num_classes=5, sample_size=32, sample_duration=8)
    ExecConfig("fp32", True).prepare(plain)
    assert not any(type(m) is DepthwiseConv3d for m in plain.modules())
    assert (
        ExecConfig.from_dict(training[1].as_dict()) == training[1] and ExecConfig.from_dict({"channels_last": True}).depthwise_grad is False
    )
