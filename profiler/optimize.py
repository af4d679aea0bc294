"""The optimized inference path: what e3d deploys, profiles and searches with.

:func:`optimize_for_inference` turns an eager model into the fastest numerically equivalent
version this CPU runs:

1. :func:`fold_batchnorm`: every BatchNorm3d is folded into the convolution before it (the conv
   gets ``w * g / sqrt(var + eps)`` and a bias), the BatchNorm becomes ``nn.Identity``; every plain
   average pool becomes a depthwise convolution (:func:`pools_as_convs`);
2. weights and the input clip in the channels-last-3d memory format (N, T, H, W, C in memory),
   which oneDNN's 3D convolutions and pools prefer (in bf16 only the weights: the stem convolution
   takes the 3-channel clip as it comes and outputs channels-last-3d);
3. ``torch.jit.trace`` and ``torch.jit.freeze``: a graph with the weights as constants;
4. run with TorchScript's oneDNN Graph fuser on (``torch.jit.enable_onednn_fusion``), which
   fuses each conv with the activation and residual add after it (it compiles on the first calls).

The result is checked against the eager model on an example clip (:func:`relative_error`); a
mismatch above ``tolerance`` raises :class:`NumericalMismatchError`.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from space.modules import set_inplace
from space.ops import triple
from space.spec import E3DError

FLOAT_TOLERANCE = 1e-4
"""Largest :func:`relative_error` accepted between an optimized float model and the eager one."""
BF16_TOLERANCE = 5e-2
"""Largest :func:`relative_error` accepted between an optimized bf16 model and the eager model under
bf16 autocast (bf16 keeps 8 bits of mantissa; measured 0.6% on an untrained MobileNetV2 0.45x)."""


class NumericalMismatchError(E3DError):
    """An optimized or exported model does not compute what the eager model computes."""


def relative_error(actual: Tensor, expected: Tensor) -> float:
    """Max absolute difference over the max absolute value of ``expected`` (0 when both are 0).

    Element-wise ratios blow up where the reference is near 0, so the error is taken relative to
    the scale of the whole output (the logits of a batch).
    """
    if actual.shape != expected.shape:
        raise NumericalMismatchError(f"output shapes differ: {tuple(actual.shape)} vs {tuple(expected.shape)}")
    a, e = actual.detach().double(), expected.detach().double()
    diff = (a - e).abs().max().item()
    scale = e.abs().max().item()
    if scale == 0:
        return 0.0 if diff == 0 else float("inf")
    return float(diff / scale)


def fold_conv_bn(conv: nn.Conv3d, bn: nn.BatchNorm3d) -> nn.Conv3d:
    """A new Conv3d computing ``bn(conv(x))`` with ``bn`` in inference mode (running statistics)."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BatchNorm without running statistics")
    if bn.num_features != conv.out_channels:
        raise ValueError(f"BatchNorm of {bn.num_features} features after a conv with {conv.out_channels} outputs")
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(conv.out_channels, dtype=torch.float64)
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach().double()
    shift = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(scale)
    folded = nn.Conv3d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        groups=conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    with torch.no_grad():
        folded.weight.copy_(w * scale.reshape(-1, 1, 1, 1, 1))
        folded.bias.copy_((b - bn.running_mean.double()) * scale + shift)  # type: ignore[union-attr]
    return folded.train(conv.training)


def conv_bn_pairs(model: nn.Module) -> Iterator[tuple[nn.Module, str, str]]:
    """(parent, conv name, BatchNorm name) for every ``X``/``X_bn`` Conv3d/BatchNorm3d sibling pair.

    e3d's blocks name the BatchNorm after the conv it follows (``space.blocks.conv_bn``), so the
    pair is found by name; the forward order is the blocks' contract.
    """
    for parent in model.modules():
        children = dict(parent.named_children())
        for name, child in children.items():
            conv = children.get(name[:-3]) if name.endswith("_bn") else None
            if isinstance(child, nn.BatchNorm3d) and isinstance(conv, nn.Conv3d):
                yield parent, name[:-3], name


def unfoldable_batchnorms(model: nn.Module) -> list[str]:
    """The names of ``model``'s BatchNorm layers that :func:`fold_batchnorm` cannot fold: any that is not
    the ``X_bn`` BatchNorm3d of a sibling Conv3d ``X`` (what e3d's blocks build)."""
    paired = {id(getattr(parent, bn)) for parent, _, bn in conv_bn_pairs(model)}
    return [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and id(m) not in paired]


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (in eval mode) with every BatchNorm3d folded into the conv before it.

    The conv keeps its name and gains a bias; the BatchNorm is replaced by ``nn.Identity`` under
    its own name, so e3d's units (which call their modules by name) run unchanged. A BatchNorm3d
    that follows no conv of the same unit raises ``ValueError``.
    """
    left = unfoldable_batchnorms(model)
    if left:
        raise ValueError(f"BatchNorm without a conv to fold into: {', '.join(left)}")
    folded = copy.deepcopy(model).eval()
    pairs = list(conv_bn_pairs(folded))
    for parent, conv_name, bn_name in pairs:
        conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
        setattr(parent, conv_name, fold_conv_bn(conv, bn))
        setattr(parent, bn_name, nn.Identity())
    return folded


def _averaging_conv(pool: nn.AvgPool3d, x: Tensor) -> nn.Conv3d | None:
    """A depthwise Conv3d of weight 1 / window computing ``pool`` on inputs like ``x``, or None where the pool
    is not such a sum (ceil mode, a divisor override, or padding left out of the count)."""
    if pool.ceil_mode or pool.divisor_override is not None or not pool.count_include_pad:
        return None
    kernel, stride, padding = (triple(v) for v in (pool.kernel_size, pool.stride, pool.padding))
    c = x.shape[1]
    conv = nn.Conv3d(c, c, kernel, stride=stride, padding=padding, groups=c, bias=False, device=x.device)
    with torch.no_grad():
        conv.weight.fill_(1.0 / (kernel[0] * kernel[1] * kernel[2]))
    return conv.eval()


def pools_as_convs(model: nn.Module, x: Tensor) -> nn.Module:
    """``model`` (in place) with every AvgPool3d that ``x`` reaches replaced by the depthwise convolution
    that computes it (zero padding, weight 1 / window: ``count_include_pad``'s average).

    PyTorch's CPU average pool is slow next to oneDNN's depthwise convolution (1.4-4.1 ms against
    0.15-0.32 ms for ShuffleNetV1 1x's shortcut pools, batch 8, 16x112x112, 2 threads: docs/SPEED.md), has no
    bf16 kernel, and the oneDNN Graph fuser cannot fuse it. One forward pass of ``x`` finds each pool's
    channel count. Pools ``x`` does not reach, or that are not a plain average, are left as they are.
    """
    pools = [m for m in model.modules() if isinstance(m, nn.AvgPool3d)]
    if not pools:
        return model  # nothing to find: no forward pass
    inputs: dict[nn.Module, Tensor] = {}
    hooks = [p.register_forward_pre_hook(lambda mod, args: inputs.setdefault(mod, args[0])) for p in pools]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return _replace_children(model, lambda m: _averaging_conv(m, inputs[m]) if isinstance(m, nn.AvgPool3d) and m in inputs else None)


def _replace_children(model: nn.Module, replacement: Callable[[nn.Module], nn.Module | None]) -> nn.Module:
    """``model`` (in place) with each submodule for which ``replacement`` gives a module replaced by it under
    its own name (replacements are not visited again)."""
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            new = replacement(child)
            if new is not None:
                setattr(parent, name, new)
    return model


class _Fp32Pool(nn.Module):
    """An average pool run in float32 on a bf16 clip (PyTorch has no bf16 ``avg_pool3d`` on the CPU;
    eager autocast runs it in float32 too), returning bf16."""

    def __init__(self, pool: nn.Module) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, x: Tensor) -> Tensor:
        """The pool of ``x`` in float32, cast back to ``x``'s dtype."""
        return self.pool(x.float()).to(x.dtype)


def pool_in_fp32(model: nn.Module) -> nn.Module:
    """``model`` (in place) with every AvgPool3d wrapped in :class:`_Fp32Pool` under its own name."""
    return _replace_children(model, lambda m: _Fp32Pool(m) if isinstance(m, nn.AvgPool3d) else None)


class _Bf16(nn.Module):
    """Runs the wrapped (bf16-weight) model on a bf16 copy of the clip; returns float32 scores."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        """The wrapped model's output for ``x`` in bf16, as float32."""
        return self.model(x.to(torch.bfloat16)).float()


def eager_reference(model: nn.Module, x: Tensor, *, bf16: bool = False) -> Tensor:
    """What the eager ``model`` (in eval mode) outputs for ``x``: in fp32, or under bf16 autocast
    with channels-last-3d, the reference of a bf16 optimized model. The training flag is restored."""
    was_training = model.training
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        y = model.eval()(x.contiguous(memory_format=torch.channels_last_3d) if bf16 else x).float()
    model.train(was_training)
    return y


class _ChannelsLast(nn.Module):
    """Puts the clip in the channels-last-3d memory format before the wrapped model."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        """The wrapped model on ``x`` laid out as N, T, H, W, C in memory."""
        return self.model(x.contiguous(memory_format=torch.channels_last_3d))


@dataclass(frozen=True)
class OptimizeOptions:
    """Which steps of the optimized path are on (all by default)."""

    fold_bn: bool = True
    channels_last: bool = True
    freeze: bool = True
    fuse: bool = True
    pools_as_convs: bool = True
    """Average pools as depthwise convolutions (:func:`pools_as_convs`)."""
    bf16: bool = False
    """Weights and activations in bf16 (CPUs with AVX512-BF16 or AMX); float32 in and out."""
    int8_engine: str | None = None
    """The quantized engine that packed an int8 graph's weights (None: not int8). A saved int8 graph
    repacks its weights when it is loaded, under the engine selected then, so it must be loaded under this one."""

    def describe(self) -> str:
        """Short text such as ``fold-bn+channels-last+frozen+onednn-graph`` (``fx-int8(onednn)+...`` for int8)."""
        int8 = f"fx-int8({self.int8_engine})"
        steps = (
            (int8, self.int8_engine is not None), ("fold-bn", self.fold_bn), ("pool-conv", self.pools_as_convs), ("bf16", self.bf16),
            ("channels-last", self.channels_last), ("frozen", self.freeze), ("onednn-graph", self.fuse),
        )  # fmt: skip
        return "+".join(s for s, on in steps if on) or "traced"


class OptimizedModel(nn.Module):
    """A traced (and usually frozen) graph, run with the oneDNN Graph fuser when ``fuse``.

    ``graph`` is the TorchScript module that :func:`profiler.export.export_torchscript` saves;
    ``rel_error`` is its :func:`relative_error` against the eager model on the check clip.
    """

    def __init__(self, graph: torch.jit.ScriptModule, *, options: OptimizeOptions, rel_error: float | None = None) -> None:
        super().__init__()
        self.graph = graph
        self.options = options
        self.rel_error = rel_error

    def forward(self, x: Tensor) -> Tensor:
        """Class scores for a batch of clips (N, C, T, H, W) in any memory format."""
        with fuser_context(self.options.fuse), torch.inference_mode():
            return self.graph(x)


@contextlib.contextmanager
def onednn_fusion() -> Iterator[None]:
    """Enable the oneDNN Graph fuser of TorchScript for the block, then restore the previous setting."""
    old = torch.jit.onednn_fusion_enabled()
    torch.jit.enable_onednn_fusion(True)
    try:
        yield
    finally:
        torch.jit.enable_onednn_fusion(old)


def fuser_context(fuse: bool) -> contextlib.AbstractContextManager[None]:
    """:func:`onednn_fusion` when ``fuse``, else nothing."""
    return onednn_fusion() if fuse else contextlib.nullcontext()


class DataDependentModelError(E3DError):
    """A network whose shapes depend on the clip (Similarity Guided Sampling): a traced graph cannot follow it."""


def example_input(model: nn.Module, input_shape: Sequence[int] | None, batch_size: int, *, seed: int = 0) -> Tensor:
    """A reproducible random clip batch: ``input_shape`` (C, T, H, W), or the spec's of an e3d ``Net``.

    Every traced path (optimized, TorchScript, ONNX, int8) starts here, so a network with SGS layers,
    whose temporal size after them depends on the clip, is refused here with
    :class:`DataDependentModelError` instead of being traced for one clip's size.
    """
    if getattr(getattr(model, "spec", None), "sgs", ()):
        raise DataDependentModelError(
            "this network has Similarity Guided Sampling: its temporal size after SGS depends on the clip, which a traced "
            "graph (optimized path, TorchScript, ONNX, int8) would fix to one clip's; run it eagerly"
        )
    if input_shape is None:
        spec = getattr(model, "spec", None)
        if spec is None:
            raise ValueError("input_shape is required for a model without a NetSpec")
        input_shape = spec.input_shape
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, *input_shape, generator=gen)


def trace(model: nn.Module, x: Tensor, *, options: OptimizeOptions) -> torch.jit.ScriptModule:
    """Steps 1-3 of the optimized path: the traced (frozen) graph of ``model`` for inputs like ``x``."""
    m = fold_batchnorm(model) if options.fold_bn else copy.deepcopy(model).eval()
    set_inplace(m, False)  # in-place activations after a concatenation or sum keep the fuser from fusing there
    if options.pools_as_convs:
        m = pools_as_convs(m, x)
    if options.bf16:
        m = _Bf16(pool_in_fp32(m.to(torch.bfloat16)))
    if options.channels_last:
        m = m.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
        # bf16: converting the 3-channel clip costs more than it saves (docs/SPEED.md)
        m = m if options.bf16 else _ChannelsLast(m)
    m.eval()
    with torch.inference_mode(False), torch.no_grad():
        graph = torch.jit.trace(m, x, check_trace=False)
    if options.freeze:
        graph = torch.jit.freeze(graph.eval())
    return graph


def check_close(actual: Tensor, expected: Tensor, *, tolerance: float, what: str) -> float:
    """:func:`relative_error`, raising :class:`NumericalMismatchError` above ``tolerance``."""
    err = relative_error(actual, expected)
    if not err <= tolerance:
        raise NumericalMismatchError(f"{what} differs from the eager model: max relative error {err:.2e} > {tolerance:.0e}")
    return err


def optimize_for_inference(
    model: nn.Module,
    *,
    input_shape: Sequence[int] | None = None,
    batch_size: int = 1,
    options: OptimizeOptions | None = None,
    check: bool = True,
    tolerance: float | None = None,
) -> OptimizedModel:
    """The optimized inference path of ``model`` (see the module doc), checked against eager.

    ``input_shape`` is one clip's (C, T, H, W) (default: the spec's, for an e3d ``Net``); the
    graph is traced on a batch of ``batch_size`` such clips and runs on any batch size (the fuser
    compiles for an input shape on its first two calls at that shape, so trace at the batch size
    you will time, or warm up twice). With ``check`` the optimized model's output on that batch
    must be within ``tolerance`` (:func:`relative_error`) of the eager model's; the check runs the
    optimized model twice, so it is compiled for that batch. The eager model is not modified. With
    ``options.bf16`` the reference is the eager model under bf16 autocast (:func:`eager_reference`) and
    the default tolerance :data:`BF16_TOLERANCE` (else :data:`FLOAT_TOLERANCE`).
    """
    options = options or OptimizeOptions()
    tolerance = tolerance if tolerance is not None else BF16_TOLERANCE if options.bf16 else FLOAT_TOLERANCE
    x = example_input(model, input_shape, batch_size)
    graph = trace(model, x, options=options)
    opt = OptimizedModel(graph, options=options)
    if check:
        expected = eager_reference(model, x, bf16=options.bf16)
        with torch.no_grad():
            opt(x)  # the fuser compiles on the first runs; check a compiled one
            opt.rel_error = check_close(opt(x), expected, tolerance=tolerance, what="the optimized model")
    return opt
