"""Count multiply-adds, parameters, paper-convention FLOPs and activations.

* :func:`count_spec` reads the layers traced from a ``NetSpec`` (no model is built; microseconds).
* :func:`count_module` runs any ``nn.Module`` (eager or TorchScript) once under a torch dispatch
  mode that sees every aten operator, turns each into a :class:`space.Layer` and applies the same
  rules (:func:`profiler.costs.layer_cost`). Each operator is attributed to the innermost module
  running it, so functional code inside a module is counted too. Operators without a cost rule are
  listed in ``not_counted`` with their call and element counts, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from math import prod
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from profiler.costs import ARITHMETIC_KINDS, ELEMENTWISE_KINDS, MAC_KINDS, Cost, conv_type, layer_cost
from space.ops import Layer, Shape, triple
from space.spec import NetSpec


@dataclass
class OpStat:
    """Totals over a group of operator calls."""

    calls: int = 0
    macs: int = 0
    paper_flops: int = 0
    activations: int = 0
    elements: int = 0

    def add(self, cost: Cost, elements: int) -> None:
        """Accumulate one call."""
        self.calls += 1
        self.macs += cost.macs
        self.paper_flops += cost.paper_flops
        self.activations += cost.activations
        self.elements += elements


@dataclass
class Counts:
    """The cost of one inference of one clip."""

    input_shape: Shape
    macs: int = 0
    params: int = 0
    paper_flops: int = 0
    activations: int = 0
    by_operator: dict[str, OpStat] = field(default_factory=dict)
    by_module: dict[str, OpStat] = field(default_factory=dict)
    not_counted: dict[str, OpStat] = field(default_factory=dict)
    layers: list[tuple[str, str, Cost]] = field(default_factory=list)

    def add(self, layer: Layer, cost: Cost) -> None:
        """Accumulate one layer (or operator call)."""
        self.macs += cost.macs
        self.paper_flops += cost.paper_flops
        self.activations += cost.activations
        elements = prod(layer.out_shape)
        op = conv_type(layer) if layer.kind == "conv" else layer.kind
        self.by_operator.setdefault(op, OpStat()).add(cost, elements)
        self.by_module.setdefault(layer.name, OpStat()).add(cost, elements)
        if layer.kind not in MAC_KINDS:
            self.not_counted.setdefault(op, OpStat()).add(cost, elements)
        self.layers.append((layer.name, op, cost))

    def grouped(self, depth: int) -> dict[str, OpStat]:
        """``by_module`` summed to the first ``depth`` parts of each path (stages count two parts)."""
        out: dict[str, OpStat] = {}
        for name, stat in self.by_module.items():
            parts = name.split(".") if name else ["(top)"]
            cut = depth + 1 if parts[0] == "stages" else depth
            g = out.setdefault(".".join(parts[:cut]), OpStat())
            g.calls += stat.calls
            g.macs += stat.macs
            g.paper_flops += stat.paper_flops
            g.activations += stat.activations
            g.elements += stat.elements
        return out


def not_counted_category(op: str) -> str:
    """Why an operator contributes nothing to ``macs``."""
    if op in ARITHMETIC_KINDS:
        return "arithmetic, not multiply-adds (in paper_flops)"
    if op in ELEMENTWISE_KINDS or op in _ELEMENTWISE:
        return "element-wise arithmetic (in neither convention)"
    if op in _MOVEMENT or op in ("dropout", "flatten", "split", "shuffle", "subsample", "pad", "cat", "resolve_conj", "resolve_neg"):
        return "data movement, no arithmetic"
    if op in _SELECTION:
        return "comparison and selection, no arithmetic"
    return "unrecognised: no cost rule"


def count_layers(layers: Iterable[Layer], input_shape: Shape, params: int | None = None) -> Counts:
    """Apply the cost rules to layers; ``params`` overrides the per-layer parameter sum."""
    counts = Counts(input_shape)
    total_params = 0
    for layer in layers:
        cost = layer_cost(layer)
        total_params += cost.params
        counts.add(layer, cost)
    counts.params = total_params if params is None else params
    return counts


def count_spec(spec: NetSpec, *, sgs_bins: Sequence[int] | None = None) -> Counts:
    """Analytic count of a spec for one clip of ``spec.clip`` (no model is built), with breakdowns.

    With SGS layers the cost depends on the clip: ``sgs_bins`` gives the bins one clip keeps at
    each (``Net.sgs_bins`` measures them); None counts the most expensive clip (every SGS layer
    keeps its maximum), an upper bound.
    """
    return count_layers(spec.trace(sgs_bins), spec.input_shape)


def spec_totals(spec: NetSpec, *, sgs_bins: Sequence[int] | None = None) -> Cost:
    """Just the totals of :func:`count_spec` (macs, params, paper_flops, activations): the fast path
    for screening thousands of candidate specs."""
    macs = params = paper = acts = 0
    for layer in spec.trace(sgs_bins):
        c = layer_cost(layer)
        macs += c.macs
        params += c.params
        paper += c.paper_flops
        acts += c.activations
    return Cost(macs, params, paper, acts)


def count_module(model: nn.Module, input_shape: Sequence[int], *, clip: torch.Tensor | None = None) -> Counts:
    """Count any module by running it once (eval, inference mode) on a zero clip of ``input_shape``.

    ``input_shape`` is per clip, (C, T, H, W). The model runs on the device of its first parameter
    (``meta`` works and is instant). Its training flag is restored afterwards. ``clip`` runs that
    clip, (C, T, H, W), instead: what a data-dependent model (SGS) executes depends on it.
    """
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if clip is not None:
        if tuple(clip.shape) != tuple(input_shape):
            raise ValueError(f"clip of shape {tuple(clip.shape)} given for input_shape {tuple(input_shape)}")
        x = clip[None].to(device)
    else:
        x = torch.zeros((1, *input_shape), device=device)
    names = {id(m): name for name, m in model.named_modules()}
    stack = [""]

    def push(module: nn.Module, args: Any) -> None:
        stack.append(names.get(id(module), stack[-1]))

    def pop(module: nn.Module, args: Any, out: Any) -> None:
        stack.pop()

    mode = _AtenCounter(stack)
    was_training = model.training
    model.eval()
    pre = nn.modules.module.register_module_forward_pre_hook(push)
    post = nn.modules.module.register_module_forward_hook(pop)
    try:
        with torch.inference_mode(), mode:
            model(x)
    finally:
        pre.remove()
        post.remove()
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    return count_layers(mode.layers, tuple(input_shape), params=params)


# -- aten operators -> layers ------------------------------------------------------------------

_MATMUL = {"bmm"}
"""Products of two activations (no weights): SGS's merge."""
_CONV = {"convolution", "_convolution", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"}
_LINEAR = {"linear", "addmm", "mm", "matmul", "baddbmm"}
_BN = {"batch_norm", "native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training", "cudnn_batch_norm"}
_SIMPLE = {
    "relu": "relu",
    "relu6": "relu6",
    "sigmoid": "sigmoid",
    "add": "add",
    "mul": "mul",
    "cat": "cat",
    "dropout": "dropout",
    "native_dropout": "dropout",
    "feature_dropout": "dropout",
}
_MAXPOOL = {"max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices", "max_pool3d_with_indices"}
_AVGPOOL = {"avg_pool1d", "avg_pool2d", "avg_pool3d"}
_GAP = {"adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "_adaptive_avg_pool2d", "_adaptive_avg_pool3d"}
_MOVEMENT = {
    "view", "_unsafe_view", "reshape", "transpose", "permute", "flatten", "split", "split_with_sizes", "chunk", "slice",
    "select", "clone", "contiguous", "expand", "t", "unsqueeze", "squeeze", "constant_pad_nd", "pad", "detach", "alias",
    "_to_copy", "copy", "to", "unbind", "narrow", "stack", "zeros", "zeros_like", "empty", "empty_like", "lift_fresh",
}  # fmt: skip
_ELEMENTWISE = {"sub", "rsub", "div", "pow", "sum", "cumsum", "abs", "clamp", "clamp_min", "clamp_max", "neg", "sqrt", "mean", "round"}
"""Arithmetic of the small per-slice tensors of SGS (and the like): neither convention counts it."""
_SELECTION = {
    "eq", "ne", "gt", "ge", "lt", "le", "scatter", "index", "index_put", "nonzero", "unique", "_unique2", "arange", "new_zeros",
    "max", "min", "argsort", "sort", "masked_select", "index_select", "any", "all", "item", "_local_scalar_dense",
}  # fmt: skip
"""Comparisons, indexing and constructors: no arithmetic."""


def _first_tensor(out: Any) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        return next((o for o in out if isinstance(o, torch.Tensor)), None)
    return None


def _arg(args: Sequence[Any], kwargs: dict[str, Any], i: int, name: str, default: Any = None) -> Any:
    return args[i] if len(args) > i else kwargs.get(name, default)


def aten_layer(op: str, args: Sequence[Any], kwargs: dict[str, Any], out: Any, name: str) -> Layer:
    """Describe one aten call as a :class:`Layer` (batch axis dropped), kind ``op`` if unknown."""
    y = _first_tensor(out)
    x = args[0] if args and isinstance(args[0], torch.Tensor) else None
    out_shape: Shape = tuple(y.shape[1:]) if y is not None and y.dim() > 1 else tuple(y.shape) if y is not None else ()
    in_shape: Shape = tuple(x.shape[1:]) if x is not None and x.dim() > 1 else tuple(x.shape) if x is not None else ()
    if op in _CONV:
        w = args[1]
        transposed = bool(_arg(args, kwargs, 6, "transposed", False)) if op in ("convolution", "_convolution") else "transpose" in op
        groups = int(_arg(args, kwargs, 8 if op in ("convolution", "_convolution") else 6, "groups", 1))
        bias = _arg(args, kwargs, 2, "bias") is not None
        kernel = tuple(w.shape[2:])
        if transposed:
            in_shape, out_shape = out_shape, in_shape
        return Layer(name, "conv", in_shape, out_shape, kernel=kernel, groups=groups, bias=bias)
    if op in _MATMUL:
        shape = tuple(y.shape[1:]) if y is not None else ()
        return Layer(name, "matmul", (*shape[:-1], args[0].shape[-1]), shape)
    if op in _LINEAR:
        if op in ("addmm", "baddbmm"):
            a, w = args[1], args[2]
            fan_in = a.shape[-1]
        elif op == "linear":
            w = args[1]
            fan_in = w.shape[-1]
        else:
            w = args[1]
            fan_in = args[0].shape[-1]
        bias = op in ("addmm", "baddbmm") or (op == "linear" and _arg(args, kwargs, 2, "bias") is not None)
        n_out = w.shape[0] if op == "linear" else w.shape[-1]
        shape = tuple(y.shape[1:]) if y is not None and y.dim() > 1 else (n_out,)
        return Layer(name, "linear", (*shape[:-1], fan_in), shape, bias=bias)
    if op in _BN:
        return Layer(name, "bn", out_shape, out_shape)
    if op == "hardtanh":
        lo, hi = _arg(args, kwargs, 1, "min_val", -1.0), _arg(args, kwargs, 2, "max_val", 1.0)
        return Layer(name, "relu6" if (lo, hi) == (0, 6) else "hardtanh", in_shape, out_shape)
    if op in _MAXPOOL or op in _AVGPOOL:
        kernel = triple(_pad3(_arg(args, kwargs, 1, "kernel_size")))
        return Layer(name, "maxpool" if op in _MAXPOOL else "avgpool", in_shape, out_shape, kernel=kernel)
    if op in _GAP:
        kernel = tuple(i // max(o, 1) for i, o in zip(in_shape[1:], out_shape[1:], strict=True))
        return Layer(name, "gap", in_shape, out_shape, kernel=kernel)
    return Layer(name, _SIMPLE.get(op, op), in_shape, out_shape)


def _pad3(k: Any) -> tuple[int, int, int]:
    """Pool kernels of 1D/2D pools padded to three dims so the window volume stays right."""
    ks = [k] if isinstance(k, int) else list(k)
    if len(ks) == 1:
        ks = ks * 3 if isinstance(k, int) else [*ks, 1, 1]
    while len(ks) < 3:
        ks.append(1)
    return (int(ks[0]), int(ks[1]), int(ks[2]))


class _AtenCounter(TorchDispatchMode):
    """Records every aten operator call as a layer named after the innermost running module."""

    def __init__(self, stack: list[str]) -> None:
        super().__init__()
        self.stack = stack
        self.layers: list[Layer] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        op = func.overloadpacket.__name__.rstrip("_")  # in-place variants (relu_) count as their op
        self.layers.append(aten_layer(op, args, kwargs, out, self.stack[-1]))
        return out
