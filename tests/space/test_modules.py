"""space/modules.py: activations built in place compute exactly what out-of-place ones do."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import space
from space.modules import FEW_CHANNELS, Runner, batch_norm, max_pool, set_inplace
from tests.conftest import ALL_MODELS, SMALL_CLIP


@pytest.mark.parametrize("name", ALL_MODELS)
def test_in_place_activations_change_neither_outputs_nor_gradients(name: str, one_torch_thread: None) -> None:
    model = space.create_model(name, width_mult=0.25, num_classes=5, sample_size=SMALL_CLIP[1], sample_duration=SMALL_CLIP[0])
    acts = [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]
    assert acts and all(m.inplace for m in acts)
    twin = set_inplace(copy.deepcopy(model), False)
    x = torch.randn(2, 3, *SMALL_CLIP)
    outs = []
    for m in (model, twin):
        m.train()
        torch.manual_seed(1)  # the same dropout masks
        y = m(x)
        y.square().sum().backward()
        outs.append((y.detach(), [p.grad for p in m.parameters()]))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=0, atol=0)
    for a, b in zip(outs[0][1], outs[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


class _Copies(TorchDispatchMode):
    """Counts the aten clones run inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.clones = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.clones += func.overloadpacket.__name__ == "clone"
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_in_place_activations_keep_no_copy_of_their_input_in_training(name: str, one_torch_thread: None) -> None:
    model = space.create_model(name, width_mult=0.25, num_classes=5, sample_size=SMALL_CLIP[1], sample_duration=SMALL_CLIP[0]).train()
    twin = set_inplace(copy.deepcopy(model), False)
    x = torch.randn(2, 3, *SMALL_CLIP)
    counts = []
    for m in (model, twin):
        with _Copies() as mode:
            m(x)
        counts.append(mode.clones)
    assert counts[0] == counts[1]  # PyTorch's own in-place ReLU6 copies its input for the backward pass


@pytest.mark.parametrize("view", [False, True])
def test_relu6_in_place_gradients_equal_pytorchs_at_the_edges(view: bool) -> None:
    values = torch.tensor([-1.0, 0.0, 1e-7, 3.0, 6.0 - 1e-6, 6.0, 7.0, float("nan")])
    runner = Runner({"a": nn.ReLU6(inplace=True)})
    x = values.repeat(4).requires_grad_()
    grads = []
    for act in (lambda t: runner.act("a", t, "relu6"), lambda t: torch.nn.functional.relu6(t)):
        t = x * 1.0
        y = act(t[1:] if view else t)
        y.backward(torch.arange(1.0, y.numel() + 1))
        grads.append((y.detach(), x.grad))
        x.grad = None
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=0, atol=0)


def _pool_inputs(model: nn.Module) -> list[bool]:
    """Run ``model``'s max pools with a hook that records whether each input was channels-last-3d."""
    seen: list[bool] = []
    for m in model.modules():
        if isinstance(m, nn.MaxPool3d):
            m.register_forward_pre_hook(lambda _m, a: seen.append(a[0].is_contiguous(memory_format=torch.channels_last_3d)))
    return seen


@pytest.mark.parametrize("name", ALL_MODELS)
def test_max_pools_run_channels_last_without_autograd_and_compute_the_same(name: str, one_torch_thread: None) -> None:
    model = space.create_model(name, width_mult=0.25, num_classes=5, sample_size=SMALL_CLIP[1], sample_duration=SMALL_CLIP[0]).eval()
    seen = _pool_inputs(model)
    x = torch.randn(2, 3, *SMALL_CLIP)
    with torch.no_grad():
        fast = model(x)
    pools = len(seen)
    assert all(seen)  # every max pool (if the network has any) got a channels-last input
    slow = model(x)  # autograd on: the plain call
    assert not any(seen[pools:]) and len(seen) == 2 * pools
    torch.testing.assert_close(fast, slow.detach(), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_max_pool_keeps_the_input_layout_and_values(dtype: torch.dtype) -> None:
    pool = nn.MaxPool3d(3, 2, 1)
    x = torch.randn(2, 8, 6, 10, 10).to(dtype)
    with torch.inference_mode():
        y = max_pool(pool, x)
        assert y.is_contiguous() and torch.equal(y, pool(x))
        xcl = x.contiguous(memory_format=torch.channels_last_3d)
        assert max_pool(pool, xcl).is_contiguous(memory_format=torch.channels_last_3d)


@pytest.mark.parametrize("channels", [3, FEW_CHANNELS])
def test_batch_norm_of_few_channels_trains_on_a_contiguous_copy_with_the_same_results(channels: int, one_torch_thread: None) -> None:
    cl = torch.channels_last_3d
    bn, twin = nn.BatchNorm3d(channels), nn.BatchNorm3d(channels)
    seen: list[bool] = []
    bn.register_forward_pre_hook(lambda _m, a: seen.append(a[0].is_contiguous()))
    x = torch.randn(4, channels, 3, 5, 5).contiguous(memory_format=cl).requires_grad_()
    xt = x.detach().clone().contiguous(memory_format=cl).requires_grad_()
    g = torch.randn(x.shape).contiguous(memory_format=cl)
    y, yt = batch_norm(bn, x), twin(xt)
    y.backward(g)
    yt.backward(g)
    assert seen == [channels < FEW_CHANNELS]
    assert y.is_contiguous(memory_format=cl) and x.grad is not None and x.grad.is_contiguous(memory_format=cl)
    for a, b in [(y, yt), (x.grad, xt.grad), (bn.weight.grad, twin.weight.grad), (bn.running_var, twin.running_var)]:
        torch.testing.assert_close(a, b)
    with torch.no_grad():
        batch_norm(bn.eval(), x)
    assert seen[-1] is False  # inference keeps the plain call


def _channels_innermost(t: torch.Tensor) -> bool:
    """A 5-D tensor whose channels are its fastest-moving axis (channels-last-3d, or a channel slice of one)."""
    return t.shape[1] == 1 or t.stride(1) == 1


def _dense_channels_last(t: torch.Tensor) -> bool:
    """A 5-D tensor laid out as a whole channels-last-3d tensor (not a channel slice of a larger one)."""
    return t.is_contiguous(memory_format=torch.channels_last_3d)


def _record_layouts(model: nn.Module, ok: Callable[[torch.Tensor], bool] = _channels_innermost) -> list[str]:
    """Hooks on every leaf module: each 5-D output, and the gradient later passed back to it, that is not
    ``ok`` (channels-innermost) is recorded as 'module: output' or 'module: gradient'; the output of a BatchNorm
    of fewer than ``FEW_CHANNELS`` channels is computed contiguous on purpose (:func:`batch_norm`)."""
    bad: list[str] = []

    def check(name: str, what: str, t: torch.Tensor) -> None:
        if t.dim() == 5 and not ok(t):
            bad.append(f"{name}: {what} {tuple(t.shape)} strides {t.stride()}")

    def hook(name: str) -> Any:
        def record(m: nn.Module, _a: Any, out: Any) -> None:
            if isinstance(out, torch.Tensor):
                if not (isinstance(m, nn.BatchNorm3d) and m.num_features < FEW_CHANNELS):
                    check(name, "output", out)
                if out.requires_grad:
                    out.register_hook(lambda g: check(name, "gradient", g))

        return record

    for name, m in model.named_modules():
        if not list(m.children()):
            m.register_forward_hook(hook(name))
    return bad


@pytest.mark.parametrize("name", ALL_MODELS)
def test_channels_last_training_stays_channels_last_forward_and_backward(name: str, one_torch_thread: None) -> None:
    """An average pool's output and the global pool's gradient come back contiguous from PyTorch; left so,
    ShuffleNetV1's whole backward pass ran contiguous against channels-last activations (docs/SPEED.md)."""
    cl = torch.channels_last_3d
    model = space.create_model(name, width_mult=0.25, num_classes=5, sample_size=SMALL_CLIP[1], sample_duration=SMALL_CLIP[0])
    model.to(memory_format=cl).train()  # type: ignore[call-overload]
    x = torch.randn(16, 3, *SMALL_CLIP).contiguous(memory_format=cl).requires_grad_()  # one thread: oneDNN from batch 16
    bad = _record_layouts(model)
    model(x).square().sum().backward()
    bad += [f"input: gradient strides {x.grad.stride()}"] if x.grad is not None and not _channels_innermost(x.grad) else []
    assert not [b for b in bad if not b.split(":")[0].endswith(("shortcut", "pool"))], bad


@pytest.mark.parametrize("name", ALL_MODELS)
def test_channels_last_gradients_reach_every_layer_whole_not_as_channel_slices(name: str, one_torch_thread: None) -> None:
    """The gradient of a concatenation is, for each part, a channel slice of the whole; PyTorch's BatchNorm
    backward takes a slow path for such a gradient (SqueezeNet's training step: 1.16-1.18x, docs/SPEED.md)."""
    cl = torch.channels_last_3d
    model = space.create_model(name, width_mult=0.25, num_classes=5, sample_size=SMALL_CLIP[1], sample_duration=SMALL_CLIP[0])
    model.to(memory_format=cl).train()  # type: ignore[call-overload]
    x = torch.randn(16, 3, *SMALL_CLIP).contiguous(memory_format=cl)
    bad = _record_layouts(model, ok=_dense_channels_last)
    model(x).square().sum().backward()
    assert not [b for b in bad if "gradient" in b and not b.split(":")[0].endswith(("shortcut", "pool"))], bad


def test_the_space_package_loads_its_modules_on_first_use() -> None:
    """``space.Net`` and ``space.build`` (torch) are imported when first asked for; the spec, registry and paper tables without torch."""
    assert space.build is space.modules.build and space.Net is space.modules.Net
    with pytest.raises(AttributeError, match="module 'space' has no attribute 'nope'"):
        _ = space.nope  # type: ignore[attr-defined]
