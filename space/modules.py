"""Build a ``NetSpec`` into an ``nn.Module``.

Each unit (stem, every block of every stage, head) becomes a :class:`Unit`: its submodules are made
from the layers the tracer recorded for it (:func:`make_module`), and its forward runs the same
block function with :class:`Runner`, which maps each named call to the submodule of that name.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from space.blocks import BlockFn
from space.ops import Layer, Triple
from space.sgs import BinMerge, merge_similar
from space.spec import NetSpec

_ACT: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "relu6": nn.ReLU6, "sigmoid": nn.Sigmoid}
_INPLACE = ("relu", "relu6")
"""Built in place, as the paper's code does: every block function applies an activation to a tensor
that it made just before and uses nowhere else (a convolution's, BatchNorm's, sum's or concatenation's
output), so overwriting it saves a full-size copy (tests/space/test_modules.py checks every preset)."""


def make_module(layer: Layer) -> nn.Module:
    """The ``nn.Module`` for one traced layer (only for kinds in ``space.ops.MODULE_KINDS``)."""
    k = layer.kind
    if k == "conv":
        return nn.Conv3d(
            layer.in_shape[0],
            layer.out_shape[0],
            layer.kernel,
            stride=layer.stride,
            padding=layer.padding,
            groups=layer.groups,
            bias=layer.bias,
        )
    if k == "bn":
        return nn.BatchNorm3d(layer.out_shape[0])
    if k in _INPLACE:
        return _ACT[k](inplace=True)
    if k in _ACT:
        return _ACT[k]()
    if k == "maxpool":
        return nn.MaxPool3d(layer.kernel, layer.stride, layer.padding)
    if k == "avgpool":
        return nn.AvgPool3d(layer.kernel, layer.stride, layer.padding)
    if k == "gap":
        size = layer.out_shape[1:]
        return nn.AdaptiveAvgPool3d(1) if size == (1, 1, 1) else nn.AdaptiveAvgPool3d((None, size[1], size[2]))
    if k == "dropout":
        return nn.Dropout(layer.p)
    if k == "linear":
        return nn.Linear(layer.in_shape[0], layer.out_shape[0])
    if k == "matmul":
        return BinMerge()
    raise ValueError(f"layer kind {k!r} is functional, not a module")


def set_inplace(model: nn.Module, inplace: bool) -> nn.Module:
    """Make every ReLU and ReLU6 of ``model`` in place or not (changing ``model``); returns it."""
    for m in model.modules():
        if isinstance(m, (nn.ReLU, nn.ReLU6)):
            m.inplace = inplace
    return model


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Reshape (N, g, C/g, T, H, W), swap the two channel axes, flatten back.

    A channels-last-3d input is shuffled in its own layout (one copy, channels-last-3d output)
    instead of being converted to contiguous and back. Under FX symbolic tracing (int8
    quantization) the layout is unknown and the generic version is recorded.
    """
    n, c, t, h, w = x.shape
    if not isinstance(x, torch.fx.Proxy) and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last_3d):
        y = x.permute(0, 2, 3, 4, 1).reshape(n, t, h, w, groups, c // groups).transpose(4, 5).reshape(n, t, h, w, c)
        return y.permute(0, 4, 1, 2, 3)
    return x.reshape(n, groups, c // groups, t, h, w).transpose(1, 2).reshape(n, c, t, h, w)


def max_pool(pool: nn.Module, x: Tensor) -> Tensor:
    """``pool(x)`` for a max pool; on the CPU without autograd, run in channels-last-3d layout.

    PyTorch's CPU kernel for a contiguous 5-D max pool is slower than its channels-last one, by 1.1-5.6x
    with both conversions counted on the pool shapes tried (docs/SPEED.md); ShuffleNetV1's stem pool was
    over a third of its eager forward. The maximum is exact, so the output is identical; it comes back in
    the input's layout. Training keeps the plain call (its backward through the conversions was slower at
    112x112), and so do FX and TorchScript tracing (a trace must not depend on the grad mode), other
    devices and inputs already channels-last.
    """
    cl = torch.channels_last_3d
    if isinstance(x, torch.fx.Proxy) or torch.jit.is_tracing() or torch.is_grad_enabled():
        return pool(x)
    if x.device.type != "cpu" or x.is_contiguous(memory_format=cl):
        return pool(x)
    return pool(x.contiguous(memory_format=cl)).contiguous()


def avg_pool(pool: nn.Module, x: Tensor) -> Tensor:
    """``pool(x)`` for an average pool, in ``x``'s layout when that is channels-last-3d on the CPU (its
    gradient too: :func:`layout_grad`).

    PyTorch's CPU average pool returns a contiguous tensor for a channels-last-3d input (torch 2.13). In
    ShuffleNetV1's downsampling units that output is concatenated with the channels-last branch, so all
    later layers, and their gradients back to the stem's max pool, ran contiguous or were converted at
    every layer (docs/SPEED.md). Converting the small pooled tensor back keeps the network in one layout;
    the values are the same. FX and TorchScript tracing keep the plain call.
    """
    if isinstance(x, torch.fx.Proxy) or torch.jit.is_tracing():
        return pool(x)
    out = pool(layout_grad(x))
    return out.contiguous(memory_format=torch.channels_last_3d) if _channels_last_on_cpu(x) else out


FEW_CHANNELS = 8
"""BatchNorm layers with fewer channels than this train in contiguous layout (:func:`batch_norm`)."""


def batch_norm(bn: nn.Module, x: Tensor) -> Tensor:
    """``bn(x)``; in training on the CPU with ``x`` channels-last-3d and fewer than :data:`FEW_CHANNELS`
    channels, computed on a contiguous copy and returned channels-last-3d (its gradient too: :func:`layout_grad`).

    PyTorch's channels-last BatchNorm trains several times slower than its contiguous one on a few channels
    (torch 2.13): with 3 channels at 16x24x24 and batch 16 a forward and backward pass took 9-13 ms against 1.5
    ms contiguous, and 4-6 ms with both copies, on an AMD EPYC with AVX2 (one thread). Such layers are the
    narrow ones of MobileNetV2 and SqueezeNet below about 0.5x, in every MobileNetV2 under the default 100 M
    budget (docs/SPEED.md). From 8 channels on, the copies cost more than they save at one thread; inference
    keeps the plain call (its kernel is as fast), and so do FX and TorchScript tracing and other devices.
    """
    if not (_records_grad(x) and bn.training and x.shape[1] < FEW_CHANNELS and _channels_last_on_cpu(x)):
        return bn(x)
    return bn(layout_grad(x).contiguous()).contiguous(memory_format=torch.channels_last_3d)


def _channels_last_on_cpu(x: Tensor) -> bool:
    """A 5-D CPU tensor in channels-last-3d layout (and not also contiguous, as tensors with one channel or
    one position are)."""
    return x.device.type == "cpu" and x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous()


class _LayoutGrad(torch.autograd.Function):
    """The identity, whose gradient is made channels-last-3d."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad.contiguous(memory_format=torch.channels_last_3d)


def layout_grad(x: Tensor) -> Tensor:
    """``x``, and in training on the CPU with ``x`` channels-last-3d, a gradient passed back in that layout too.

    The backward of PyTorch's global average pool returns a contiguous gradient whatever the input's layout
    (torch 2.13). Element-wise backward kernels keep the layout of the gradient they receive, so in networks
    whose units pass it on unchanged (an identity shortcut, a concatenation) the whole backward pass ran
    contiguous against channels-last activations, with conversions at every convolution and max pool
    (docs/SPEED.md). Converting it once at the head, where the tensor is small, keeps the backward in one
    layout. FX and TorchScript tracing, inference and other devices get ``x`` itself.
    """
    return _LayoutGrad.apply(x) if _records_grad(x) and _channels_last_on_cpu(x) else x


def _records_grad(x: Tensor) -> bool:
    """Whether autograd records an operation on ``x`` here (a tensor, not an FX proxy or a TorchScript trace)."""
    return not (isinstance(x, torch.fx.Proxy) or torch.jit.is_tracing()) and torch.is_grad_enabled() and x.requires_grad


def _hooked(m: nn.Module) -> bool:
    """Whether a forward hook (``m``'s own or a global one) would see a call of ``m``."""
    g = nn.modules.module
    return bool(m._forward_hooks or m._forward_pre_hooks or g._global_forward_hooks or g._global_forward_pre_hooks)


class _ReLU6InPlace(torch.autograd.Function):
    """ReLU6 in place whose backward reads its output, not a copy of its input.

    PyTorch's in-place ReLU6 (``hardtanh_``) saves a copy of its input for the backward pass, because its
    gradient formula reads the input (torch 2.13): a full-size copy per activation in training, the memory
    and time that building it in place should save. The gradient passes where the input lies strictly
    between 0 and 6, which is exactly where the output does, so reading the output gives the same gradient,
    bit for bit (NaN included: none passes).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        ctx.mark_dirty(x)
        y = F.hardtanh(x, 0.0, 6.0, inplace=True)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.hardtanh_backward(grad, y, 0.0, 6.0)


class Runner:
    """Tensor interpreter of the op vocabulary: named layers call the unit's submodules."""

    def __init__(self, modules: dict[str, nn.Module]) -> None:
        self.m = modules

    def check(self, ok: bool, field: str, reason: str) -> None:
        """Checks ran at trace time; nothing to do on tensors."""

    def conv(self, name: str, x: Tensor, out: int, **_: Any) -> Tensor:
        """Run the convolution module ``name``."""
        return self.m[name](x)

    def bn(self, name: str, x: Tensor) -> Tensor:
        """Run the BatchNorm module ``name`` (through :func:`batch_norm`)."""
        return batch_norm(self.m[name], x)

    def act(self, name: str, x: Tensor, kind: str) -> Tensor:
        """Run the activation module ``name`` (an in-place ReLU6 that autograd records, on a tensor that is
        not a view and with no hook to see the call, as :class:`_ReLU6InPlace`)."""
        m = self.m[name]
        if type(m) is nn.ReLU6 and m.inplace and _records_grad(x) and x._base is None and not _hooked(m):
            return _ReLU6InPlace.apply(x)
        return m(x)

    def pool(self, name: str, x: Tensor, kind: str, kernel: Any, stride: Any, padding: Any) -> Tensor:
        """Run the pooling module ``name`` (a max pool through :func:`max_pool`, an average pool through
        :func:`avg_pool`)."""
        return max_pool(self.m[name], x) if kind == "max" else avg_pool(self.m[name], x)

    def global_pool(self, name: str, x: Tensor) -> Tensor:
        """Run the global average pooling module ``name`` (its gradient in ``x``'s layout: :func:`layout_grad`)."""
        return self.m[name](layout_grad(x))

    def grid_pool(self, name: str, x: Tensor, cells: int) -> Tensor:
        """Run the adaptive (grid) average pooling module ``name``."""
        return self.m[name](x)

    def dropout(self, name: str, x: Tensor, p: float) -> Tensor:
        """Run the dropout module ``name``."""
        return self.m[name](x)

    def linear(self, name: str, x: Tensor, out: int) -> Tensor:
        """Run the linear module ``name``."""
        return self.m[name](x)

    def flatten(self, x: Tensor) -> Tensor:
        """Flatten all but the batch axis."""
        return x.flatten(1)

    def add(self, a: Tensor, b: Tensor) -> Tensor:
        """Element-wise sum."""
        return a + b

    def cat(self, a: Tensor, b: Tensor) -> Tensor:
        """Concatenate along channels (each part's gradient a contiguous tensor: :func:`layout_grad`)."""
        return torch.cat((layout_grad(a), layout_grad(b)), 1)

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Two channel halves."""
        a, b = x.chunk(2, 1)
        return a, b

    def shuffle(self, x: Tensor, groups: int) -> Tensor:
        """Channel shuffle."""
        return channel_shuffle(x, groups)

    def subsample(self, x: Tensor, stride: Triple) -> Tensor:
        """Every ``stride``-th position (what a 1x1x1 average pool with that stride computes; its gradient
        in ``x``'s layout: :func:`layout_grad`)."""
        return layout_grad(x)[:, :, :: stride[0], :: stride[1], :: stride[2]]

    def pad_channels(self, x: Tensor, channels: int) -> Tensor:
        """Zero channels appended up to ``channels``."""
        return F.pad(x, (0, 0, 0, 0, 0, 0, 0, channels - x.shape[1]))

    def scale(self, x: Tensor, s: Tensor) -> Tensor:
        """Channel-wise product with a (N, C, 1, 1, 1) gate."""
        return x * s

    def merge_similar(self, name: str, x: Tensor, z: Tensor, *, bins: int, bin_width: float, multiple: int) -> Tensor:
        """Similarity Guided Sampling with the merge module ``name`` (see :mod:`space.sgs`)."""
        merge = self.m[name]
        assert isinstance(merge, BinMerge)
        return merge_similar(merge, x, z, bins=bins, bin_width=bin_width, multiple=multiple)


class Unit(nn.Module):
    """One unit of a network: the modules its block function names, and that function as forward."""

    def __init__(self, fn: BlockFn, kwargs: dict[str, Any], layers: list[Layer], path: str) -> None:
        super().__init__()
        self.fn = fn
        self.kwargs = kwargs
        start = len(path) + 1
        for layer in layers:
            if layer.is_module:
                self.add_module(layer.name[start:], make_module(layer))

    def forward(self, x: Tensor) -> Tensor:
        """Run the block function on tensors."""
        return self.fn(Runner(self._modules), x, **self.kwargs)  # type: ignore[arg-type]

    def extra_repr(self) -> str:
        """Show which block function this unit runs."""
        return f"block={self.fn.__name__}"


class Net(nn.Module):
    """A network built from a spec: ``stem``, ``stages`` (a list of unit sequences), ``head``, and
    ``sgs`` (SGS units keyed by the stage they follow) when the spec has SGS layers.

    With SGS the temporal size after an SGS unit depends on the clip: the batch is split into groups
    of clips that kept the same number of bins, and the rest of the network runs once per group (in
    training too, so BatchNorm after SGS normalises over each group). Outputs are put back in the
    batch's order. A batch whose clips all keep the same number runs as one, as without SGS.
    """

    def __init__(self, spec: NetSpec) -> None:
        super().__init__()
        self.spec = spec
        by_unit: dict[str, list[Layer]] = {}
        for layer in spec.layers:
            by_unit.setdefault(_unit_of(layer.name), []).append(layer)
        stages: list[list[Unit]] = [[] for _ in spec.stages]
        sgs: dict[str, Unit] = {}
        for path, fn, kw in spec.units():
            unit = Unit(fn, kw, by_unit.get(path, []), path)
            if path == "stem":
                self.stem = unit
            elif path == "head":
                self.head = unit
            elif path.startswith("sgs."):
                sgs[path.split(".")[1]] = unit
            else:
                stages[int(path.split(".")[1])].append(unit)
        self.stages = nn.ModuleList(nn.Sequential(*units) for units in stages)
        if sgs:
            self.sgs = nn.ModuleDict(sgs)
        self.reset_parameters()

    def steps(self) -> list[tuple[nn.Module, int]]:
        """Execution order: (module, index of the SGS layer in ``spec.sgs``, or -1 for the others)."""
        after = [layer.after_stage for layer in self.spec.sgs]
        out: list[tuple[nn.Module, int]] = [(self.stem, -1)]
        for i, stage in enumerate(self.stages):
            out.append((stage, -1))
            if i in after:
                out.append((self.sgs[str(i)], after.index(i)))
        out.append((self.head, -1))
        return out

    def reset_parameters(self) -> None:
        """He-normal convolutions (fan out), unit BatchNorm, small-normal classifier, zero biases."""
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def features(self, x: Tensor) -> Tensor:
        """Stem and stages: the feature map before the head (networks without SGS, whose T is fixed)."""
        if self.spec.sgs:
            raise ValueError("with SGS the feature map's T differs between clips; use forward or forward_with_bins")
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        """Class scores (logits) for a batch of clips (N, C, T, H, W)."""
        if not self.spec.sgs:
            return self.head(self.features(x))
        steps = self.steps()
        out = self._run(x, steps, 0, len(steps), None)
        assert out is not None
        return out

    def forward_with_bins(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Logits and the bins each clip kept at each SGS layer, (N, number of SGS layers)."""
        bins = torch.zeros(x.shape[0], len(self.spec.sgs), dtype=torch.long)
        steps = self.steps()
        out = self._run(x, steps, 0, len(steps), (bins, torch.arange(x.shape[0])))
        assert out is not None
        return out, bins

    @torch.no_grad()
    def sgs_bins(self, x: Tensor) -> Tensor:
        """The bins each clip keeps at each SGS layer, (N, number of SGS layers), running the network
        only as far as its last SGS layer. Set the mode (train/eval) first: BatchNorm depends on it."""
        bins = torch.zeros(x.shape[0], len(self.spec.sgs), dtype=torch.long)
        steps = self.steps()
        last = max((i for i, (_, col) in enumerate(steps) if col >= 0), default=-1)
        self._run(x, steps, 0, last + 1, (bins, torch.arange(x.shape[0])))
        return bins

    def _run(
        self, x: Tensor, steps: list[tuple[nn.Module, int]], start: int, stop: int, record: tuple[Tensor, Tensor] | None
    ) -> Tensor | None:
        """Run ``steps[start:stop]``; after an SGS unit, the rest once per group of clips that kept the same
        number of bins, outputs back in the batch's order. ``record`` = (bins table, rows of this batch in
        it) collects the bins. A run that stops before the head returns None."""
        for j in range(start, stop):
            module, col = steps[j]
            x = module(x)
            if col < 0:
                continue
            kept = module.get_submodule("merge").last_bins
            assert isinstance(kept, Tensor)
            kept = kept.cpu()
            if record is not None:
                record[0][record[1], col] = kept
            counts = kept.unique().tolist()
            if len(counts) == 1:
                x = x[:, :, : counts[0]]
                continue
            outs, order = [], []
            for k in counts:
                sel = (kept == k).nonzero().squeeze(1)
                sub = None if record is None else (record[0], record[1][sel])
                outs.append(self._run(x[sel.to(x.device), :, :k], steps, j + 1, stop, sub))
                order.append(sel)
            if any(o is None for o in outs):
                return None
            inverse = torch.argsort(torch.cat(order)).to(x.device)
            return torch.cat(outs)[inverse]  # type: ignore[arg-type]
        return x if stop == len(steps) else None


def _unit_of(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[: {"stages": 3, "sgs": 2}.get(parts[0], 1)])


def build(spec: NetSpec) -> Net:
    """Build the ``nn.Module`` a spec describes (freshly initialised, in training mode)."""
    return Net(spec)
