"""Count multiply-adds, parameters, paper-convention FLOPs and activations.

* :func:`count_spec` reads the layers traced from a ``NetSpec`` (no model is built; microseconds).
* :func:`count_module` runs any ``nn.Module`` (eager or TorchScript) once under a torch dispatch
  mode that sees every aten operator, turns each into :class:`space.Layer` s and applies the same
  rules (:func:`profiler.costs.layer_cost`). Each operator is attributed to the innermost module
  running it, so functional code inside a module is counted too. Operators without a cost rule are
  listed in ``not_counted`` with their call and element counts and input shapes, never dropped
  silently; when one of them is *unrecognised* (it might multiply-add), ``lower_bound`` is True.

The module counter reads every operator's **full** input and output shapes: it never assumes that
the first axis is the clip batch, so frames or attention heads folded into the batch axis (a 2D CNN
run on ``(B*T, C, H, W)``, pooling convolutions on ``(B*heads, ...)``, ``bmm`` over heads) are counted
whole. It runs a batch of ``batch`` clips and divides by it: the counts are per clip.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from math import prod
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from profiler.costs import ARITHMETIC_KINDS, ELEMENTWISE_KINDS, MAC_KINDS, Cost, conv_type, layer_cost, layer_terms
from profiler.einsum import einsum_steps
from space.ops import Layer, Shape, triple
from space.spec import CACHE_SIZE, E3DError, NetSpec, UnitKey, trace_unit

MAX_SHAPES = 3
"""Distinct input shapes kept per operator that is not counted (for the report)."""


@dataclass
class OpStat:
    """Totals over a group of operator calls (``shapes``: a few distinct input shapes, for ops not counted)."""

    calls: int = 0
    macs: int = 0
    paper_flops: int = 0
    activations: int = 0
    elements: int = 0
    shapes: list[str] = field(default_factory=list)

    def add(self, cost: Cost, elements: int, shape: str = "") -> None:
        """Accumulate one call."""
        self.calls += 1
        self.macs += cost.macs
        self.paper_flops += cost.paper_flops
        self.activations += cost.activations
        self.elements += elements
        if shape and shape not in self.shapes and len(self.shapes) < MAX_SHAPES:
            self.shapes.append(shape)


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

    def add(self, layer: Layer, cost: Cost, elements: int | None = None, shape: str = "") -> None:
        """Accumulate one layer (or operator call); ``elements`` defaults to its output size."""
        self.macs += cost.macs
        self.paper_flops += cost.paper_flops
        self.activations += cost.activations
        elements = prod(layer.out_shape) if elements is None else elements
        op = conv_type(layer) if layer.kind == "conv" else layer.kind
        self.by_operator.setdefault(op, OpStat()).add(cost, elements)
        self.by_module.setdefault(layer.name, OpStat()).add(cost, elements)
        if layer.kind not in MAC_KINDS:
            self.not_counted.setdefault(op, OpStat()).add(cost, elements, shape)
        self.layers.append((layer.name, op, cost))

    @property
    def unrecognised(self) -> dict[str, OpStat]:
        """Operators without a cost rule that may hide multiply-adds."""
        return {op: s for op, s in self.not_counted.items() if not_counted_category(op) == UNRECOGNISED}

    @property
    def lower_bound(self) -> bool:
        """True when ``macs`` may miss the multiply-adds of unrecognised operators."""
        return bool(self.unrecognised)

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


UNRECOGNISED = "unrecognised: no cost rule"


def not_counted_category(op: str) -> str:
    """Why an operator contributes nothing to ``macs``."""
    if op in ARITHMETIC_KINDS:
        return "arithmetic, not multiply-adds (in paper_flops)"
    if op in ELEMENTWISE_KINDS or op in _ELEMENTWISE or op in _NORMS:
        return "element-wise arithmetic (in neither convention)"
    if op in _MOVEMENT or op in ("dropout", "flatten", "split", "shuffle", "subsample", "pad", "cat", "resolve_conj", "resolve_neg"):
        return "data movement, no arithmetic"
    if op in _SELECTION:
        return "comparison and selection, no arithmetic"
    return UNRECOGNISED


def count_layers(
    layers: Iterable[Layer], input_shape: Shape, params: int | None = None, *, batch: int = 1, shapes: Sequence[str] | None = None
) -> Counts:
    """Apply the cost rules to layers; ``params`` overrides the per-layer parameter sum.

    ``batch``: the layers are of a batch of that many clips; every count but the parameters is divided
    by it (rounded per layer). ``shapes``: each layer's input shapes, kept for operators not counted.
    """
    counts = Counts(input_shape)
    total_params = 0
    for i, layer in enumerate(layers):
        cost = layer_cost(layer)
        total_params += cost.params
        elements = prod(layer.out_shape)
        if batch != 1:
            cost = Cost(_per_clip(cost.macs, batch), cost.params, _per_clip(cost.paper_flops, batch), _per_clip(cost.activations, batch))
            elements = _per_clip(elements, batch)
        counts.add(layer, cost, elements, shapes[i] if shapes is not None else "")
    counts.params = total_params if params is None else params
    return counts


def _per_clip(n: int, batch: int) -> int:
    return n // batch if n % batch == 0 else round(n / batch)


def count_spec(spec: NetSpec, *, sgs_bins: Sequence[int] | None = None) -> Counts:
    """Analytic count of a spec for one clip of ``spec.clip`` (no model is built), with breakdowns.

    With SGS layers the cost depends on the clip: ``sgs_bins`` gives the bins one clip keeps at
    each (``Net.sgs_bins`` measures them); None counts the most expensive clip (every SGS layer
    keeps its maximum), an upper bound.
    """
    return count_layers(spec.trace(sgs_bins), spec.input_shape)


def spec_totals(spec: NetSpec, *, sgs_bins: Sequence[int] | None = None) -> Cost:
    """Just the totals of :func:`count_spec` (macs, params, paper_flops, activations): the fast path
    for screening thousands of candidate specs. Sums one cached cost per segment (the stem, a stage, an
    SGS layer, the head): a segment or a unit traced alike in any spec is priced once."""
    macs = params = paper = acts = 0
    for _, trace in spec.traced_segments(spec.sgs_map(sgs_bins)):
        c = _SEGMENT_COSTS.get(id(trace))
        if c is None or c[0] is not trace:
            c = _segment_cost(trace)
        macs += c[1]
        params += c[2]
        paper += c[3]
        acts += c[4]
    return Cost(macs, params, paper, acts)


Entry = tuple[Any, int, int, int, int]
"""``(key object, macs, params, paper_flops, activations)``: a flat tuple, which the garbage collector stops tracking."""

_SEGMENT_COSTS: dict[int, Entry] = {}
"""Costs of traced segments by the identity of the trace (``NetSpec.traced_segments`` returns the same trace
object for every segment traced alike while it is cached); each entry holds its trace, so the identity stays valid."""

_UNIT_COSTS: dict[int, Entry] = {}
"""Costs of units by the identity of the unit key (a trace holds ``space.spec``'s one key object per unit)."""


def _segment_cost(trace: tuple[Any, ...]) -> Entry:
    """The summed cost of a segment's units (``trace[1:]``), remembered in ``_SEGMENT_COSTS``."""
    macs = params = paper = acts = 0
    c: Entry | None = None
    for unit in trace[1:]:
        if c is None or c[0] is not unit:  # a stage's repeated units are one key object: looked up once
            c = _UNIT_COSTS.get(id(unit))
            if c is None or c[0] is not unit:
                c = _remember(_UNIT_COSTS, (unit, *unit_cost(unit)))
        macs += c[1]
        params += c[2]
        paper += c[3]
        acts += c[4]
    return _remember(_SEGMENT_COSTS, (trace, macs, params, paper, acts))


def _remember(cache: dict[int, Entry], entry: Entry) -> Entry:
    """Store ``entry`` under the identity of its first item; empty the cache when it is full."""
    if len(cache) >= CACHE_SIZE:
        cache.clear()
    cache[id(entry[0])] = entry
    return entry


def unit_cost(unit: UnitKey) -> Cost:
    """The summed cost of one unit's layers (``NetSpec.traced_segments`` names units by key)."""
    terms = map(layer_terms, trace_unit(unit)[1])
    return Cost(*map(sum, zip(*terms, strict=True)))  # macs, params, paper_flops, activations: each summed


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a burst of screening; resume it as it was after.

    Pricing a candidate allocates many short-lived containers and makes no reference cycles, so
    reference counting frees them all. A running collector, though, passes over the young objects
    every few hundred allocations, promotes whatever is alive at that moment (the candidate being
    priced, cache entries not yet untracked) and, once enough has been promoted, scans every object
    of the process (some 280,000 with torch imported): about a fifth of the steady screening time.
    Used around chunks of a few thousand candidates (:func:`search.searchspace.price_candidates`),
    ending each with a collection of the young generation, so whatever cycles a chunk made (an
    exception's traceback) are freed then and the time of that pass is paid inside the chunk."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
            gc.collect(0)


def clear_caches() -> None:
    """Forget the cached unit and segment traces, their costs and the family factories' shared spec parts
    (what a fresh process starts with)."""
    from space.families import clear_shared_parts
    from space.spec import clear_trace_cache

    clear_trace_cache()
    clear_shared_parts()
    _UNIT_COSTS.clear()
    _SEGMENT_COSTS.clear()


class CountingError(E3DError):
    """A model whose operators the counter cannot see."""


def quantized_ops(model: nn.Module) -> list[str]:
    """The quantized operators (``quantized::conv3d``) of a TorchScript model, or the quantized modules of an
    eager one: they run below the dispatcher that :func:`count_module` counts at, and fail there."""
    if isinstance(model, torch.jit.ScriptModule):
        try:
            nodes = list(_nodes(model.inlined_graph.nodes()))
        except (RuntimeError, AttributeError):
            return []
        return sorted({n.kind() for n in nodes if n.kind().startswith("quantized::")})
    return sorted({type(m).__name__ for m in model.modules() if type(m).__module__.startswith("torch.ao.nn.quantized")})


def _nodes(nodes: Iterable[torch.Node]) -> Iterator[torch.Node]:
    """Every node of a TorchScript graph, those inside blocks (if, loop) too."""
    for node in nodes:
        yield node
        for block in node.blocks():
            yield from _nodes(block.nodes())


def random_clips(batch: int, input_shape: Sequence[int], seed: int = 0) -> torch.Tensor:
    """``batch`` standard-normal clips of ``input_shape`` on the CPU, from a generator seeded with ``seed``
    (the global RNG is not touched): the same clips on every call."""
    return torch.randn((batch, *input_shape), generator=torch.Generator().manual_seed(seed))


def count_module(model: nn.Module, input_shape: Sequence[int], *, clip: torch.Tensor | None = None, batch: int = 1) -> Counts:
    """Count any module by running it once (eval, inference mode) on random clips of ``input_shape``.

    ``input_shape`` is per clip, (C, T, H, W). The model runs on the device of its first parameter
    (``meta`` works and is instant) on a batch of ``batch`` clips, and the counts are divided by
    ``batch``: a model whose cost per clip does not depend on the batch gives the same counts at
    every ``batch``. The clips are standard normal from a fixed seed (the global RNG is left alone), as
    latency and memory run on random clips: a model whose control flow depends on its input (it skips
    work on a still, all-zero clip) is counted on the path it takes on real data. Its training flag is
    restored afterwards (frozen TorchScript has none). ``clip`` runs that clip, (C, T, H, W), instead:
    what a data-dependent model (SGS) executes depends on it.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    quantized = quantized_ops(model)
    if quantized:
        raise CountingError(
            f"an int8 (quantized) model cannot be counted: its {', '.join(quantized)} run where e3d's counter cannot see them; "
            "profile the preset, spec or module it was exported from"
        )
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if clip is not None:
        if tuple(clip.shape) != tuple(input_shape):
            raise ValueError(f"clip of shape {tuple(clip.shape)} given for input_shape {tuple(input_shape)}")
        x = clip[None].to(device).expand(batch, *clip.shape).contiguous()
    else:
        x = torch.empty((batch, *input_shape), device=device) if device.type == "meta" else random_clips(batch, input_shape).to(device)
    names = {id(m): name for name, m in model.named_modules()}
    stack = [""]
    mode = _AtenCounter(stack)
    calls: list[tuple[str, int, int]] = []  # each call of a named module: (name, its first layer, the layer after its last)
    starts: list[int] = []

    def push(module: nn.Module, args: Any) -> None:
        stack.append(names.get(id(module), stack[-1]))
        starts.append(len(mode.layers))

    def pop(module: nn.Module, args: Any, out: Any) -> None:
        name, start = stack.pop(), starts.pop()
        if id(module) in names:
            calls.append((name, start, len(mode.layers)))

    was_training = getattr(model, "training", None)
    if was_training is not None:
        model.eval()
    pre = nn.modules.module.register_module_forward_pre_hook(push)
    post = nn.modules.module.register_module_forward_hook(pop)
    try:
        with torch.inference_mode(), mode:
            model(x)
    finally:
        pre.remove()
        post.remove()
        if was_training is not None:
            model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    # frozen TorchScript keeps its weights as constants: count those of its conv, linear and norm layers
    counts = count_layers(mode.layers, tuple(input_shape), params=params or None, batch=batch, shapes=mode.shapes)
    return _params_on_first_call(counts, calls)


def _params_on_first_call(counts: Counts, calls: Sequence[tuple[str, int, int]]) -> Counts:
    """``counts`` with the parameters of a module's layers kept on its first call only (a module called
    twice holds its weights once), so that the per-layer parameters sum to ``params`` as they do for specs.
    ``calls``: each module call as (name, first layer index, last + 1), in the order the calls ended."""
    seen: set[str] = set()
    for name, start, end in sorted(calls, key=lambda c: c[1]):
        if name in seen:
            for i in range(start, end):
                layer, op, cost = counts.layers[i]
                if layer == name:
                    counts.layers[i] = (layer, op, cost._replace(params=0))
        seen.add(name)
    return counts


# -- aten operators -> layers ------------------------------------------------------------------

_CONV = {"convolution", "_convolution", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"}
_LINEAR = {"linear", "addmm"}
"""A weight times an activation (``addmm``: what ``linear`` decomposes to)."""
_MATMUL = {"matmul", "mm", "bmm", "baddbmm", "addbmm", "dot", "vdot", "mv", "addmv"}
"""Products of two tensors, any of which may be an activation (attention, SGS's merge)."""
_ATTENTION = {
    "scaled_dot_product_attention", "_scaled_dot_product_attention_math", "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_fused_attention_overrideable",
}  # fmt: skip
_FUSED_ATTENTION = {"_native_multi_head_attention", "_transformer_encoder_layer_fwd"}
"""The inference fast paths of ``nn.MultiheadAttention`` and ``nn.TransformerEncoderLayer``."""
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
    "roll", "unflatten", "movedim", "new_empty", "full", "full_like", "ones", "ones_like", "repeat", "expand_as", "view_as",
    "as_strided", "index_copy", "fill", "zero", "_reshape_alias", "unfold", "tensor_split", "swapaxes", "flip",
    "pixel_shuffle", "pixel_unshuffle", "max_unpool2d", "max_unpool3d",
}  # fmt: skip
_ELEMENTWISE = {
    "sub", "rsub", "div", "pow", "sum", "cumsum", "abs", "clamp", "clamp_min", "clamp_max", "neg", "sqrt", "mean", "round",
    "tanh", "gelu", "silu", "hardswish", "hardsigmoid", "leaky_relu", "elu", "softplus", "exp", "log", "erf", "rsqrt",
    "reciprocal", "softmax", "_softmax", "log_softmax", "_log_softmax", "addcmul", "addcdiv", "lerp", "sign", "floor",
    "ceil", "amax", "amin", "var", "var_mean", "std", "std_mean", "prod", "cos", "sin", "where",
    "masked_fill", "logsumexp", "norm", "linalg_vector_norm", "square", "maximum", "minimum", "true_divide",
    "floor_divide", "remainder", "fmod", "prelu", "_prelu_kernel", "glu", "mish",
}  # fmt: skip
"""Element-wise arithmetic and reductions: neither convention counts them as multiply-adds."""
_NORMS = {"layer_norm", "native_layer_norm", "group_norm", "native_group_norm", "instance_norm", "rms_norm", "_fused_rms_norm"}
"""Normalisations other than BatchNorm (a few element-wise operations per element; BatchNorm folds into the conv)."""
_SELECTION = {
    "eq", "ne", "gt", "ge", "lt", "le", "scatter", "index", "index_put", "nonzero", "unique", "_unique2", "arange", "new_zeros",
    "max", "min", "argsort", "sort", "masked_select", "index_select", "any", "all", "item", "_local_scalar_dense", "argmax",
    "argmin", "topk", "gather", "tril", "triu", "logical_not", "logical_and", "logical_or", "bitwise_not", "randn", "rand",
    "new_ones", "scalar_tensor", "linspace", "equal", "allclose", "is_nonzero", "isnan", "isinf", "isfinite",
    "_unsafe_index", "embedding", "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
}  # fmt: skip
"""Comparisons, indexing and constructors: no arithmetic."""
_RULES = (
    _CONV | _LINEAR | _MATMUL | _ATTENTION | _FUSED_ATTENTION | _BN | set(_SIMPLE) | _MAXPOOL | _AVGPOOL | _GAP | {"hardtanh", "einsum"}
)  # fmt: skip
KNOWN_OPS = frozenset(_RULES | _MOVEMENT | _ELEMENTWISE | _NORMS | _SELECTION)
"""aten operators the counter has a rule or a category for; any other is decomposed when torch can."""


def _tensors(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    return []


def _arg(args: Sequence[Any], kwargs: dict[str, Any], i: int, name: str, default: Any = None) -> Any:
    return args[i] if len(args) > i else kwargs.get(name, default)


def _size(t: torch.Tensor) -> Shape:
    return tuple(int(d) for d in t.shape)


def fold(shape: Sequence[int]) -> Shape:
    """A full shape ``(N, C, D1, D2, ...)`` as a layer shape ``(C, N * D1, D2, ...)``: channels first, the
    leading (batch) axis folded into the next, so that every element is still counted, whatever that
    axis holds (clips, frames or heads). ``(N, C)`` becomes ``(C, N)``."""
    s = tuple(shape)
    if len(s) >= 3:
        return (s[1], s[0] * s[2], *s[3:])
    if len(s) == 2:
        return (s[1], s[0])
    return s


def shape_text(args: Sequence[Any]) -> str:
    """The shapes of an operator's tensor arguments, ``1x3x16x112x112, 8`` (lists of tensors flattened)."""
    return ", ".join("x".join(map(str, t.shape)) or "scalar" for t in _tensors(list(args)))[:120]


def aten_layers(op: str, args: Sequence[Any], kwargs: dict[str, Any], out: Any, name: str) -> list[Layer]:
    """Describe one aten call as layers (usually one; an einsum of n operands gives n - 1 products).

    Shapes are the operator's full shapes (see :func:`fold`); an operator without a rule becomes a
    layer of kind ``op`` (listed as not counted).
    """
    outs = _tensors(out)
    y = outs[0] if outs else None
    x = args[0] if args and isinstance(args[0], torch.Tensor) else None
    out_shape = fold(_size(y)) if y is not None else ()
    in_shape = fold(_size(x)) if x is not None else ()
    if op in _CONV:
        return [_conv_layer(op, args, kwargs, y, name)]
    if op in _ATTENTION:
        return [_attention_layer(args, y, name)]
    if op in _FUSED_ATTENTION:
        return _fused_attention_layers(op, args, name)
    if op == "einsum":
        return [Layer(name, kind, (k,), shape) for kind, shape, k in einsum_steps(str(args[0]), [_size(t) for t in args[1]])]
    if op in _MATMUL:
        a = args[1] if op in ("baddbmm", "addbmm", "addmv") else args[0]
        k = int(a.shape[-1])
        if op == "addbmm":  # sums the batch of products: (b, n, k) @ (b, k, m) -> (n, m)
            k *= int(a.shape[0])
        return [Layer(name, "matmul", (k,), _size(y) if y is not None else ())]
    if op in _LINEAR:
        if op == "addmm":
            fan_in, bias = int(args[1].shape[-1]), True
        else:
            fan_in, bias = int(args[1].shape[-1]), _arg(args, kwargs, 2, "bias") is not None
        shape = _size(y) if y is not None else ()
        return [Layer(name, "linear", (*shape[:-1], fan_in), shape, bias=bias)]
    if op in _BN:
        return [Layer(name, "bn", out_shape, out_shape)]
    if op == "hardtanh":
        lo, hi = _arg(args, kwargs, 1, "min_val", -1.0), _arg(args, kwargs, 2, "max_val", 1.0)
        return [Layer(name, "relu6" if (lo, hi) == (0, 6) else "hardtanh", in_shape, out_shape)]
    if op in _MAXPOOL or op in _AVGPOOL:
        kernel = triple(_pad3(_arg(args, kwargs, 1, "kernel_size")))
        return [Layer(name, "maxpool" if op in _MAXPOOL else "avgpool", in_shape, out_shape, kernel=kernel)]
    if op in _GAP:
        window = tuple(i // max(o, 1) for i, o in zip(in_shape[1:], out_shape[1:], strict=True))
        return [Layer(name, "gap", in_shape, out_shape, kernel=window)]  # type: ignore[arg-type]
    return [Layer(name, _SIMPLE.get(op, op), in_shape, out_shape)]


def _conv_layer(op: str, args: Sequence[Any], kwargs: dict[str, Any], y: torch.Tensor | None, name: str) -> Layer:
    """A convolution of any dimension, batched or not; transposed ones counted from their input."""
    x, w = args[0], args[1]
    full = op in ("convolution", "_convolution")
    transposed = bool(_arg(args, kwargs, 6, "transposed", False)) if full else "transpose" in op
    groups = int(_arg(args, kwargs, 8 if full else 6, "groups", 1))
    bias = _arg(args, kwargs, 2, "bias") is not None
    kernel = _size(w)[2:]
    xs = _size(x) if x.dim() == w.dim() else (1, *_size(x))  # an unbatched input
    ys = _size(y) if y is not None and y.dim() == w.dim() else (1, *(_size(y) if y is not None else ()))
    in_shape, out_shape = fold(xs), fold(ys)
    if transposed:
        in_shape, out_shape = out_shape, in_shape
    if not transposed and not bias and _is_averaging(w, groups):
        return Layer(name, "avgpool", in_shape, out_shape, kernel=triple(kernel))
    return Layer(name, "conv", in_shape, out_shape, kernel=kernel, groups=groups, bias=bias)  # type: ignore[arg-type]


def _is_averaging(w: torch.Tensor, groups: int) -> bool:
    """Whether a convolution's weight makes it an average pool that counts its padding: depthwise, every weight
    1 / window (in the weight's dtype), as :func:`profiler.optimize.pools_as_convs` writes one. Counted as the pool
    it computes, an optimized graph costs what its eager model does. That graph is frozen, its weights constants:
    a weight that is an ``nn.Parameter`` (an eager module's, or unfrozen TorchScript's) is a trained conv's, whatever
    its values, and counts as a conv. Weights on the meta device have no values."""
    if isinstance(w, nn.Parameter) or w.device.type == "meta" or groups != w.shape[0] or w.shape[1] != 1:
        return False
    mean = torch.tensor(1.0 / prod(w.shape[2:]), dtype=torch.float32).to(w.dtype)
    return bool((w == mean).all())


def _attention_layer(args: Sequence[Any], y: torch.Tensor | None, name: str) -> Layer:
    """Scaled dot-product attention: each of the ``q.shape[:-1]`` queries meets S keys, E + Ev multiply-adds each."""
    q, k, v = args[0], args[1], args[2]
    s, e, ev = int(k.shape[-2]), int(q.shape[-1]), int(v.shape[-1])
    out = _size(y) if y is not None else (*_size(q)[:-1], ev)
    return Layer(name, "attention", (s, e + ev), out)


def _fused_attention_layers(op: str, args: Sequence[Any], name: str) -> list[Layer]:
    """What the fused fast paths compute, as the layers they fuse: the q, k and v projections,
    scaled dot-product attention and the output projection (and the encoder layer's feed-forward
    network); layer norms and residual adds are element-wise."""
    q = args[0]
    k, v = (q, q) if op == "_transformer_encoder_layer_fwd" else (args[1], args[2])
    heads = int(args[4] if op == "_native_multi_head_attention" else args[2])
    lq, lk = _size(q)[:-1], _size(k)[:-1]
    e = int(q.shape[-1])
    layers = [
        Layer(name, "linear", (*lq, e), (*lq, e), bias=True),
        Layer(name, "linear", (*lk, e), (*lk, e), bias=True),
        Layer(name, "linear", (*_size(v)[:-1], e), (*_size(v)[:-1], e), bias=True),
        Layer(name, "attention", (int(k.shape[-2]), 2 * e // heads), (*lq[:-1], heads, lq[-1], e // heads)),
        Layer(name, "linear", (*lq, e), (*lq, e), bias=True),
    ]
    if op == "_transformer_encoder_layer_fwd":
        hidden = int(args[14].shape[0])  # ffn_weight_1: (hidden, embed)
        layers += [Layer(name, "linear", (*lq, e), (*lq, hidden), bias=True), Layer(name, "linear", (*lq, hidden), (*lq, e), bias=True)]
    return layers


def _pad3(k: Any) -> tuple[int, int, int]:
    """Pool kernels of 1D/2D pools padded to three dims so the window volume stays right."""
    ks = [k] if isinstance(k, int) else list(k)
    if len(ks) == 1:
        ks = ks * 3 if isinstance(k, int) else [*ks, 1, 1]
    while len(ks) < 3:
        ks.append(1)
    return (int(ks[0]), int(ks[1]), int(ks[2]))


class _AtenCounter(TorchDispatchMode):
    """Records every aten operator call as layers named after the innermost running module.

    An operator the counter knows nothing about is decomposed into the operators it is made of
    when torch has a decomposition for it (``cdist``, ``tensordot``, ``kron`` ...), and recorded as
    unrecognised when it has none.
    """

    def __init__(self, stack: list[str]) -> None:
        super().__init__()
        self.stack = stack
        self.layers: list[Layer] = []
        self.shapes: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        op = func.overloadpacket.__name__.rstrip("_")  # in-place variants (relu_) count as their op
        if op not in KNOWN_OPS:
            with self:
                decomposed = func.decompose(*args, **kwargs)
            if decomposed is not NotImplemented:
                return decomposed
        out = func(*args, **kwargs)
        layers = aten_layers(op, args, kwargs, out, self.stack[-1])
        self.layers += layers
        shape = "" if layers and layers[0].kind in MAC_KINDS else shape_text(args)
        self.shapes += [shape] * len(layers)
        return out
