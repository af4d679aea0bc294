"""The op vocabulary every e3d block is written in, and its shape interpreter.

A block is a plain function ``block(ops, x, *, cin, channels, stride, ...)`` that calls the
methods below. The same function is run by two interpreters:

* :class:`Tracer` (here, pure Python): ``x`` is a shape ``(C, T, H, W)``. It checks every
  shape, records one :class:`Layer` per call and is what validation and the analytic counter
  read. No model is built and torch is not imported.
* ``space.modules.Runner``: ``x`` is a tensor and each named call runs the module that the
  builder created from the traced :class:`Layer` of the same name.

Because both interpreters run the same block function, the built model and the analytic count
cannot describe different networks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Generic, NamedTuple, Protocol, TypeVar

Shape = tuple[int, ...]
"""Per-sample shape: ``(C, T, H, W)`` for feature maps, ``(C,)`` after flattening."""

Triple = tuple[int, int, int]
"""A 3D size, kernel, stride or padding, always in (T, H, W) order."""

X = TypeVar("X")

ACTIVATIONS = ("relu", "relu6")
GATES = ("sigmoid",)
"""Activations a block may use inside it (squeeze-and-excitation), but not as a stage's ``act``."""


class BlockError(Exception):
    """A block cannot be built with the given parameters; ``field`` names the spec field to blame."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def triple(value: int | Sequence[int]) -> Triple:
    """Expand an int to ``(v, v, v)``; pass a 3-sequence through as a tuple."""
    if type(value) is tuple and len(value) == 3:
        return value
    if isinstance(value, int):
        return (value, value, value)
    t = tuple(int(v) for v in value)
    if len(t) != 3:
        raise ValueError(f"expected 3 values (T, H, W), got {len(t)}")
    return (t[0], t[1], t[2])


def conv_out(size: Triple, kernel: Triple, stride: Triple, padding: Triple) -> Triple:
    """Output size of a convolution or pooling window (floor mode), per dimension."""
    return (
        (size[0] + 2 * padding[0] - kernel[0]) // stride[0] + 1,
        (size[1] + 2 * padding[1] - kernel[1]) // stride[1] + 1,
        (size[2] + 2 * padding[2] - kernel[2]) // stride[2] + 1,
    )


class Layer(NamedTuple):
    """One operation of a network as the tracer saw it.

    ``name`` is the module path in the built model (``"stages.1.0.pw1"``) for layers that are
    modules; functional operations (``add``, ``mul``, ``cat``, ``split``, ``shuffle``, ``pad``,
    ``subsample``, ``flatten``, ``similarity``) carry the path of the unit that performs them.
    """

    name: str
    kind: str
    in_shape: Shape
    out_shape: Shape
    kernel: Triple = (1, 1, 1)
    stride: Triple = (1, 1, 1)
    padding: Triple = (0, 0, 0)
    groups: int = 1
    bias: bool = False
    p: float = 0.0

    @property
    def is_module(self) -> bool:
        """True for layers that the builder turns into an ``nn.Module``."""
        return self.kind in MODULE_KINDS


MODULE_KINDS = frozenset({"conv", "bn", "relu", "relu6", "sigmoid", "maxpool", "avgpool", "gap", "dropout", "linear", "matmul"})
"""Layer kinds that become modules; every other kind is a functional op inside a unit."""


class Ops(Protocol, Generic[X]):
    """What a block function may call. ``X`` is a shape (tracing) or a tensor (running)."""

    def check(self, ok: bool, field: str, reason: str) -> None:
        """Raise :class:`BlockError` naming ``field`` unless ``ok`` (checked when tracing; a no-op on tensors)."""

    def conv(
        self,
        name: str,
        x: X,
        out: int,
        *,
        kernel: int | Triple = 1,
        stride: int | Triple = 1,
        groups: int = 1,
        bias: bool = False,
    ) -> X:
        """3D convolution ``name`` to ``out`` channels, with 'same' padding ``kernel // 2``."""

    def bn(self, name: str, x: X) -> X:
        """BatchNorm3d ``name`` over the channels."""

    def act(self, name: str, x: X, kind: str) -> X:
        """Element-wise activation ``name`` of ``kind``, one of :data:`ACTIVATIONS` or :data:`GATES`."""

    def pool(self, name: str, x: X, kind: str, kernel: int | Triple, stride: int | Triple, padding: int | Triple) -> X:
        """Max or average pooling ``name`` (``kind`` is ``"max"`` or ``"avg"``; avg counts padding)."""

    def global_pool(self, name: str, x: X) -> X:
        """Global average pooling ``name`` over all of T, H and W."""

    def grid_pool(self, name: str, x: X, cells: int) -> X:
        """Adaptive average pooling ``name`` of H and W to at most ``cells`` x ``cells`` (T kept)."""

    def dropout(self, name: str, x: X, p: float) -> X:
        """Dropout ``name`` with probability ``p`` (identity at inference)."""

    def linear(self, name: str, x: X, out: int) -> X:
        """Fully connected layer ``name`` with bias, to ``out`` features, on a flattened input."""

    def flatten(self, x: X) -> X:
        """Flatten a pooled ``(C, 1, 1, 1)`` map to ``(C,)``."""

    def add(self, a: X, b: X) -> X:
        """Element-wise sum of two maps of the same shape."""

    def cat(self, a: X, b: X) -> X:
        """Concatenate along channels; T, H and W must agree."""

    def split(self, x: X) -> tuple[X, X]:
        """Split the channels into two halves."""

    def shuffle(self, x: X, groups: int) -> X:
        """Channel shuffle: reshape to (groups, C / groups), transpose, flatten."""

    def subsample(self, x: X, stride: Triple) -> X:
        """Keep every ``stride``-th position (a 1x1x1 average pool with that stride)."""

    def pad_channels(self, x: X, channels: int) -> X:
        """Append zero channels up to ``channels`` (ResNet shortcut A)."""

    def scale(self, x: X, s: X) -> X:
        """Multiply every channel of ``x`` by its entry of the ``(C, 1, 1, 1)`` gate ``s`` (broadcast)."""

    def merge_similar(self, name: str, x: X, z: X, *, bins: int, bin_width: float, multiple: int) -> X:
        """Similarity Guided Sampling ``name``: merge the T slices of ``x`` into bins, guided by the embedding ``z``."""


class Tracer:
    """Shape interpreter: checks shapes, records :class:`Layer`s, builds nothing."""

    def __init__(self, sgs_bins: Mapping[str, int] | None = None) -> None:
        self.layers: list[Layer] = []
        self.unit = ""
        """Module path of the unit being traced; layer names are relative to it."""
        self.sgs_bins = dict(sgs_bins or {})
        """Bins kept by each SGS unit (by path) for one clip; units not named keep their maximum."""

    def _record(
        self,
        name: str,
        kind: str,
        x: Shape,
        y: Shape,
        kernel: Triple = (1, 1, 1),
        stride: Triple = (1, 1, 1),
        padding: Triple = (0, 0, 0),
        groups: int = 1,
        bias: bool = False,
        p: float = 0.0,
    ) -> Shape:
        path = f"{self.unit}.{name}" if name and self.unit else (name or self.unit)
        # Layer(...) with every field, made without the named tuple's constructor, a Python function that
        # takes a quarter of the time of tracing a unit
        self.layers.append(tuple.__new__(Layer, (path, kind, x, y, kernel, stride, padding, groups, bias, p)))
        return y

    def check(self, ok: bool, field: str, reason: str) -> None:
        """Raise :class:`BlockError` naming ``field`` unless ``ok``."""
        if not ok:
            raise BlockError(field, reason)

    def conv(
        self,
        name: str,
        x: Shape,
        out: int,
        *,
        kernel: int | Triple = 1,
        stride: int | Triple = 1,
        groups: int = 1,
        bias: bool = False,
    ) -> Shape:
        """3D convolution with 'same' padding ``k // 2``."""
        k, s = triple(kernel), triple(stride)
        cin = x[0]
        if out <= 0:
            raise BlockError("channels", f"{name} would have {out} output channels")
        if groups <= 0 or cin % groups:
            raise BlockError("groups", f"{name}: groups={groups} does not divide its {cin} input channels")
        if out % groups:
            raise BlockError("groups", f"{name}: groups={groups} does not divide its {out} output channels")
        pad = (k[0] // 2, k[1] // 2, k[2] // 2)
        size = conv_out(_spatial(x), k, s, pad)
        self._check_size(name, x, size, "stride")
        return self._record(name, "conv", x, (out, *size), k, s, pad, groups, bias)

    def bn(self, name: str, x: Shape) -> Shape:
        """BatchNorm3d over the channels."""
        return self._record(name, "bn", x, x)

    def act(self, name: str, x: Shape, kind: str) -> Shape:
        """Element-wise activation, one of :data:`ACTIVATIONS` or :data:`GATES`."""
        if kind not in ACTIVATIONS and kind not in GATES:
            raise BlockError("act", f"unknown activation {kind!r}; choose from {', '.join(ACTIVATIONS)}")
        return self._record(name, kind, x, x)

    def pool(self, name: str, x: Shape, kind: str, kernel: int | Triple, stride: int | Triple, padding: int | Triple) -> Shape:
        """Max or average pooling (``kind`` is ``"max"`` or ``"avg"``; avg counts padding).

        Like PyTorch's AvgPool3d, an average pool needs an unpadded input at least as large as its window.
        """
        k, s, p = triple(kernel), triple(stride), triple(padding)
        if kind == "avg" and any(n < kk for n, kk in zip(_spatial(x), k, strict=True)):
            dims = "x".join(map(str, _spatial(x)))
            raise BlockError("stride", f"{name}: a {'x'.join(map(str, k))} average pool needs an input of at least that size, got {dims}")
        size = conv_out(_spatial(x), k, s, p)
        self._check_size(name, x, size, "stride")
        return self._record(name, f"{kind}pool", x, (x[0], *size), kernel=k, stride=s, padding=p)

    def global_pool(self, name: str, x: Shape) -> Shape:
        """Average over all of T, H and W."""
        return self._record(name, "gap", x, (x[0], 1, 1, 1), kernel=_spatial(x))

    def grid_pool(self, name: str, x: Shape, cells: int) -> Shape:
        """Adaptive average over H and W to at most ``cells`` x ``cells`` (T kept): a ``gap`` layer whose
        nominal window is ``in // out`` per dimension, as the module counter reads adaptive pools."""
        c, t, h, w = _spatial_shape(x)
        out = (c, t, min(cells, h), min(cells, w))
        return self._record(name, "gap", x, out, kernel=(1, h // out[2], w // out[3]))

    def dropout(self, name: str, x: Shape, p: float) -> Shape:
        """Dropout with probability ``p`` (identity at inference)."""
        return self._record(name, "dropout", x, x, p=p)

    def linear(self, name: str, x: Shape, out: int) -> Shape:
        """Fully connected layer with bias on a flattened input."""
        if len(x) != 1:
            raise BlockError("head", f"{name} needs a flat input, got {x}")
        return self._record(name, "linear", x, (out,), bias=True)

    def flatten(self, x: Shape) -> Shape:
        """Flatten a pooled ``(C, 1, 1, 1)`` map to ``(C,)``."""
        n = 1
        for d in x:
            n *= d
        return self._record("", "flatten", x, (n,))

    def add(self, a: Shape, b: Shape) -> Shape:
        """Element-wise sum of two maps of the same shape."""
        if a != b:
            raise BlockError("channels", f"residual add of different shapes {a} and {b}")
        return self._record("", "add", a, a)

    def cat(self, a: Shape, b: Shape) -> Shape:
        """Concatenate along channels; T, H and W must agree."""
        if a[1:] != b[1:]:
            raise BlockError("stride", f"branches disagree in (T, H, W): {a[1:]} vs {b[1:]} (odd size under a stride-2 unit?)")
        return self._record("", "cat", a, (a[0] + b[0], *a[1:]))

    def split(self, x: Shape) -> tuple[Shape, Shape]:
        """Split channels into two halves."""
        if x[0] % 2:
            raise BlockError("channels", f"cannot split an odd channel count {x[0]} in half")
        half = (x[0] // 2, *x[1:])
        self._record("", "split", x, x)
        return half, half

    def shuffle(self, x: Shape, groups: int) -> Shape:
        """Channel shuffle: reshape to (groups, C / groups), transpose, flatten."""
        if x[0] % groups:
            raise BlockError("groups", f"channel shuffle with {groups} groups of {x[0]} channels")
        return self._record("", "shuffle", x, x, groups=groups)

    def subsample(self, x: Shape, stride: Triple) -> Shape:
        """Keep every ``stride``-th position (a 1x1x1 average pool with that stride)."""
        size = conv_out(_spatial(x), (1, 1, 1), stride, (0, 0, 0))
        return self._record("", "subsample", x, (x[0], *size), stride=stride)

    def pad_channels(self, x: Shape, channels: int) -> Shape:
        """Append zero channels up to ``channels`` (ResNet shortcut A)."""
        if channels < x[0]:
            raise BlockError("shortcut", f"shortcut A cannot shrink {x[0]} channels to {channels}")
        return self._record("", "pad", x, (channels, *x[1:]))

    def scale(self, x: Shape, s: Shape) -> Shape:
        """Multiply every channel of ``x`` by its entry of ``s``, a ``(C, 1, 1, 1)`` map (broadcast)."""
        if s != (x[0], 1, 1, 1):
            raise BlockError("channels", f"cannot scale a {x} map by {s}; expected ({x[0]}, 1, 1, 1)")
        return self._record("", "mul", x, x)

    def merge_similar(self, name: str, x: Shape, z: Shape, *, bins: int, bin_width: float, multiple: int) -> Shape:
        """Similarity Guided Sampling: merge the T slices of ``x`` into K bins, guided by the embedding ``z``.

        K depends on the clip. By default the tracer takes the most a clip can keep, ``bins`` (an
        upper bound of the cost, and what validation checks); ``Tracer(sgs_bins={unit: K})`` traces
        one clip's K. Records the similarity arithmetic (no multiply-adds) and the merge, a product
        of the (K, T) bin weights with the (T, C*H*W) slices, as layer ``name``.
        """
        c, t, h, w = _spatial_shape(x)
        if len(z) != 4 or z[1] != t:
            raise BlockError("sgs", f"embedding {z} and features {x} disagree in T")
        if bins < 1 or multiple < 1 or bins % multiple:
            raise BlockError("bins", f"bins={bins} must be a positive multiple of multiple={multiple}")
        if bin_width <= 0:
            raise BlockError("bin_width", f"must be positive, got {bin_width}")
        k = self.sgs_bins.get(self.unit)
        if k is None:
            if bins > t:
                raise BlockError("bins", f"{bins} bins exceed the {t} temporal slices entering SGS")
            k = bins
        elif not (1 <= k <= bins and k % multiple == 0):
            raise BlockError("bins", f"a clip cannot keep {k} bins: between {multiple} and {bins}, a multiple of {multiple}")
        self._record("", "similarity", z, (t,))
        self._record(name, "matmul", (k, t), (k, c * h * w))
        return (c, k, h, w)

    def _check_size(self, name: str, x: Shape, size: Triple, field: str) -> None:
        if size[0] < 1 or size[1] < 1 or size[2] < 1:
            dims = "x".join(str(d) for d in _spatial(x))
            raise BlockError(field, f"{name} shrinks its {dims} input (T x H x W) to {'x'.join(map(str, size))}")


def _spatial_shape(x: Shape) -> tuple[int, int, int, int]:
    t, h, w = _spatial(x)
    return (x[0], t, h, w)


def _spatial(x: Shape) -> Triple:
    if len(x) != 4:
        raise BlockError("head", f"expected a (C, T, H, W) feature map, got {x}")
    return (x[1], x[2], x[3])
