"""The 3D block library: every block written once, shared by every family that uses it.

Each block is a function ``block(ops, x, *, cin, channels, stride, act, **fields)`` over the op
vocabulary of :mod:`space.ops`; ``fields`` are the :class:`space.spec.StageSpec` fields the block
declares in :data:`BLOCKS`. Layer names inside a block become module names in the built model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from space.ops import Ops, Triple, X

ONE: Triple = (1, 1, 1)


def conv_bn(
    ops: Ops[X],
    name: str,
    x: X,
    out: int,
    *,
    kernel: int | Triple = 1,
    stride: int | Triple = 1,
    groups: int = 1,
    bias: bool = False,
    act: str | None = None,
) -> X:
    """Convolution, BatchNorm and an optional activation, named ``name``, ``name_bn``, ``name_act``."""
    x = ops.conv(name, x, out, kernel=kernel, stride=stride, groups=groups, bias=bias)
    x = ops.bn(f"{name}_bn", x)
    return ops.act(f"{name}_act", x, act) if act else x


def stem(ops: Ops[X], x: X, *, channels: int, kernel: Triple, stride: Triple, bias: bool, act: str, pool: bool) -> X:
    """First convolution (and the optional 3x3x3 stride-2 max-pool after it)."""
    x = conv_bn(ops, "conv", x, channels, kernel=kernel, stride=stride, bias=bias, act=act)
    return ops.pool("pool", x, "max", 3, 2, 1) if pool else x


def head(ops: Ops[X], x: X, *, kind: str, channels: int, act: str, num_classes: int, dropout: float) -> X:
    """Classifier. ``linear``: [1x1x1 conv] -> global average -> dropout -> Linear.

    ``conv`` (SqueezeNet): dropout -> 1x1x1 conv with bias -> activation -> global average.
    ``act="none"`` leaves the activation out.
    """
    if kind == "conv":
        x = ops.dropout("dropout", x, dropout) if dropout else x
        x = ops.conv("fc", x, num_classes, bias=True)
        x = x if act == "none" else ops.act("fc_act", x, act)
        return ops.flatten(ops.global_pool("pool", x))
    if channels:
        x = conv_bn(ops, "conv", x, channels, act=None if act == "none" else act)
    x = ops.flatten(ops.global_pool("pool", x))
    x = ops.dropout("dropout", x, dropout) if dropout else x
    return ops.linear("fc", x, num_classes)


def fire(ops: Ops[X], x: X, *, cin: int, channels: int, stride: Triple, act: str, squeeze: int, bypass: bool) -> X:
    """SqueezeNet Fire: squeeze 1x1, then 1x1 and 3x3x3 expands concatenated.

    A stride other than 1 max-pools (3, stride, padding 1) in front. With ``bypass`` the input is
    added wherever input and output channels agree (SqueezeNet's simple bypass).
    """
    ops.check(channels % 2 == 0, "channels", f"Fire splits its output between two expands; {channels} is odd")
    ops.check(squeeze > 0, "squeeze", f"squeeze channels must be positive, got {squeeze}")
    if stride != ONE:
        x = ops.pool("pool", x, "max", 3, stride, 1)
    s = conv_bn(ops, "squeeze", x, squeeze, bias=True, act=act)
    e1 = conv_bn(ops, "expand1x1", s, channels // 2, bias=True)
    e3 = conv_bn(ops, "expand3x3", s, channels // 2, kernel=3, bias=True)
    y = ops.cat(e1, e3)
    if bypass and cin == channels:
        y = ops.add(y, x)
    return ops.act("act", y, act)


def dwsep(ops: Ops[X], x: X, *, cin: int, channels: int, stride: Triple, act: str) -> X:
    """MobileNetV1 block: 3x3x3 depthwise (with the stride), then 1x1 pointwise, each with BN and act."""
    x = conv_bn(ops, "dw", x, cin, kernel=3, stride=stride, groups=cin, act=act)
    return conv_bn(ops, "pw", x, channels, act=act)


def inverted_residual(ops: Ops[X], x: X, *, cin: int, channels: int, stride: Triple, act: str, expansion: float) -> X:
    """MobileNetV2 block: [1x1 expand to round(cin * expansion)] -> 3x3x3 depthwise -> linear 1x1.

    The expand conv is left out when ``expansion`` is 1; the input is added back when the stride
    is 1 and the channel count is unchanged.
    """
    ops.check(expansion > 0, "expansion", f"must be positive, got {expansion}")
    hidden = round(cin * expansion)
    y = x
    if expansion != 1:
        y = conv_bn(ops, "expand", y, hidden, act=act)
    y = conv_bn(ops, "dw", y, hidden, kernel=3, stride=stride, groups=hidden, act=act)
    y = conv_bn(ops, "project", y, channels)
    return ops.add(x, y) if stride == ONE and cin == channels else y


def shuffle_v1(
    ops: Ops[X], x: X, *, cin: int, channels: int, stride: Triple, act: str, expansion: float, groups: int, first_groups: int | None
) -> X:
    """ShuffleNetV1 unit: grouped 1x1 -> channel shuffle -> 3x3x3 depthwise -> grouped 1x1.

    The bottleneck is :func:`shuffle_v1_bottleneck` wide: ``channels // 4`` (the paper's) at
    ``expansion`` 1, else ``channels * expansion / 4`` rounded down to a multiple of ``groups`` (at
    least ``groups``). A stride-1 unit adds its input; a downsampling unit produces ``channels - cin``
    channels and concatenates an average-pooled input (kernel (stride_T, 3, 3), padding (0, 1, 1))
    after them. ``first_groups`` overrides the groups of the first 1x1 (the paper leaves it
    ungrouped when its input has 24 channels).
    """
    ops.check(expansion > 0, "expansion", f"must be positive, got {expansion}")
    ops.check(groups > 0, "groups", f"must be positive, got {groups}")
    mid = shuffle_v1_bottleneck(channels, expansion, groups)
    down = stride != ONE
    ops.check(down or cin == channels, "stride", f"a unit that changes channels ({cin} -> {channels}) must downsample")
    ops.check(mid % groups == 0, "groups", f"groups={groups} must divide the bottleneck width {mid} (channels // 4)")  # only at expansion 1
    out = channels - cin if down else channels
    ops.check(out > 0, "channels", f"a downsampling unit needs more output channels ({channels}) than input ({cin})")
    y = conv_bn(ops, "pw1", x, mid, groups=first_groups or groups, act=act)
    y = ops.shuffle(y, groups)
    y = conv_bn(ops, "dw", y, mid, kernel=3, stride=stride, groups=mid)
    y = conv_bn(ops, "pw2", y, out, groups=groups)
    if down:
        y = ops.cat(y, ops.pool("shortcut", x, "avg", (stride[0], 3, 3), stride, (0, 1, 1)))
    else:
        y = ops.add(y, x)
    return ops.act("act", y, act)


def shuffle_v1_bottleneck(channels: int, expansion: float, groups: int) -> int:
    """The bottleneck width of a ShuffleNetV1 unit: exactly the paper's ``channels // 4`` at ``expansion``
    1 (which ``groups`` must divide), else ``channels * expansion / 4`` rounded down to a multiple of
    ``groups`` and at least ``groups`` (so that any positive ``expansion`` makes a valid unit)."""
    if expansion == 1:
        return channels // 4
    width = int(channels * expansion / 4 + 1e-9)  # a product a rounding error below an integer is that integer
    return max(groups, width // groups * groups)


def shuffle_v2(ops: Ops[X], x: X, *, cin: int, channels: int, stride: Triple, act: str) -> X:
    """ShuffleNetV2 unit, then a channel shuffle with 2 groups.

    Basic unit (stride 1, channels unchanged): split channels in half, transform the second half
    (1x1, 3x3x3 depthwise, 1x1) and concatenate. Downsampling unit (stride or channel change):
    branch ``b1`` (depthwise, 1x1) and the main branch both see the whole input and each produce
    half of the output channels.
    """
    ops.check(channels % 2 == 0, "channels", f"ShuffleNetV2 splits channels in half; {channels} is odd")
    half = channels // 2
    if stride == ONE and cin == channels:
        x1, x2 = ops.split(x)
        y = conv_bn(ops, "pw1", x2, half, act=act)
        y = conv_bn(ops, "dw", y, half, kernel=3, groups=half)
        y = ops.cat(x1, conv_bn(ops, "pw2", y, half, act=act))
    else:
        b = conv_bn(ops, "b1_dw", x, cin, kernel=3, stride=stride, groups=cin)
        b = conv_bn(ops, "b1_pw", b, half, act=act)
        y = conv_bn(ops, "pw1", x, half, act=act)
        y = conv_bn(ops, "dw", y, half, kernel=3, stride=stride, groups=half)
        y = ops.cat(b, conv_bn(ops, "pw2", y, half, act=act))
    return ops.shuffle(y, 2)


def _shortcut(ops: Ops[X], x: X, *, cin: int, channels: int, stride: Triple, shortcut: str) -> X:
    """ResNet shortcut. A: strided subsampling plus zero channels. B: strided 1x1 conv and BN."""
    if stride == ONE and cin == channels:
        return x
    ops.check(shortcut in ("A", "B"), "shortcut", f"must be 'A' or 'B', got {shortcut!r}")
    if shortcut == "A":
        return ops.pad_channels(ops.subsample(x, stride), channels)
    return conv_bn(ops, "downsample", x, channels, stride=stride)


def basic(ops: Ops[X], x: X, *, cin: int, channels: int, stride: Triple, act: str, shortcut: str) -> X:
    """ResNet basic block: two 3x3x3 convs and a shortcut."""
    y = conv_bn(ops, "conv1", x, channels, kernel=3, stride=stride, act=act)
    y = conv_bn(ops, "conv2", y, channels, kernel=3)
    y = ops.add(y, _shortcut(ops, x, cin=cin, channels=channels, stride=stride, shortcut=shortcut))
    return ops.act("act", y, act)


def bottleneck(ops: Ops[X], x: X, *, cin: int, channels: int, stride: Triple, act: str, expansion: float, groups: int, shortcut: str) -> X:
    """ResNet/ResNeXt bottleneck: 1x1 to ``channels / expansion``, grouped 3x3x3, 1x1 back, shortcut."""
    mid = int(channels / expansion) if expansion > 0 else 0
    ops.check(mid > 0 and mid * expansion == channels, "expansion", f"{expansion} does not divide channels={channels}")
    y = conv_bn(ops, "conv1", x, mid, act=act)
    y = conv_bn(ops, "conv2", y, mid, kernel=3, stride=stride, groups=groups, act=act)
    y = conv_bn(ops, "conv3", y, channels)
    y = ops.add(y, _shortcut(ops, x, cin=cin, channels=channels, stride=stride, shortcut=shortcut))
    return ops.act("act", y, act)


SE_RATIO = 4
"""Squeeze-and-excitation bottleneck: ``channels // SE_RATIO`` hidden units (at least 1)."""


def squeeze_excite(ops: Ops[X], x: X, *, channels: int) -> X:
    """Squeeze-and-excitation: global average, 1x1x1 conv (bias) to ``channels // 4``, ReLU, 1x1x1 conv (bias)
    back, sigmoid, and every channel of ``x`` scaled by its gate."""
    s = ops.global_pool("se_pool", x)
    s = ops.act("se_act", ops.conv("se_reduce", s, max(1, channels // SE_RATIO), bias=True), "relu")
    s = ops.act("se_gate", ops.conv("se_expand", s, channels, bias=True), "sigmoid")
    return ops.scale(x, s)


def sev(ops: Ops[X], x: X, *, cin: int, channels: int, stride: Triple, act: str, groups: int, t_kernel: int, se: bool) -> X:
    """SEV module: channel-wise 1x1x1 conv, spatial group conv 1x3x3 (``groups``, spatial stride), temporal
    conv ``t_kernel``x1x1 (temporal stride), each with BN (the last without activation), optional
    squeeze-and-excitation, then a residual add and the activation.

    The shortcut is the identity when the shape is unchanged, otherwise a strided 1x1x1 conv with BN.
    """
    ops.check(groups > 0 and channels % groups == 0, "groups", f"groups={groups} must divide channels={channels}")
    y = conv_bn(ops, "pw", x, channels, act=act)
    y = conv_bn(ops, "spatial", y, channels, kernel=(1, 3, 3), stride=(1, stride[1], stride[2]), groups=groups, act=act)
    y = conv_bn(ops, "temporal", y, channels, kernel=(t_kernel, 1, 1), stride=(stride[0], 1, 1))
    if se:
        y = squeeze_excite(ops, y, channels=channels)
    y = ops.add(y, _shortcut(ops, x, cin=cin, channels=channels, stride=stride, shortcut="B"))
    return ops.act("act", y, act)


SGS_GRID = 4
"""SGS compares slices on a coarse grid of at most 4 x 4 cells (adaptive average pooling)."""


def similarity_sampling(ops: Ops[X], x: X, *, bins: int, embed: int, bin_width: float, multiple: int) -> X:
    """Similarity Guided Sampling (a unit of its own between stages).

    Each temporal slice is averaged on a coarse grid (so that pixel noise cancels and the layout of
    the content remains) and embedded in ``embed`` channels by a 1x1x1 conv with bias; similar
    neighbouring slices are then merged into bins (:meth:`space.ops.Ops.merge_similar`; the tensor
    side is :mod:`space.sgs`).
    """
    z = ops.conv("embed", ops.grid_pool("pool", x, SGS_GRID), embed, bias=True)
    return ops.merge_similar("merge", x, z, bins=bins, bin_width=bin_width, multiple=multiple)


BlockFn = Callable[..., Any]


@dataclass(frozen=True)
class BlockType:
    """A block function and the stage fields it reads (besides channels, stride and act)."""

    fn: BlockFn
    fields: tuple[str, ...]
    has_bottleneck: Callable[[float], bool] | None = None
    """For blocks whose ``expansion`` sets an inner (bottleneck / expanded) width: whether a stage with a
    given ``expansion`` has such a width to scale (the expansion axis of :mod:`space.scaling` scales
    every stage that has one). None: ``expansion`` sets no inner width the axis may scale."""


BLOCKS: dict[str, BlockType] = {
    "fire": BlockType(fire, ("squeeze", "bypass")),
    "dwsep": BlockType(dwsep, ()),
    "inverted_residual": BlockType(inverted_residual, ("expansion",), has_bottleneck=lambda t: t != 1),  # t = 1: no expand
    "shuffle_v1": BlockType(shuffle_v1, ("expansion", "groups", "first_groups"), has_bottleneck=lambda t: True),
    "shuffle_v2": BlockType(shuffle_v2, ()),
    "basic": BlockType(basic, ("shortcut",)),
    "bottleneck": BlockType(bottleneck, ("expansion", "groups", "shortcut")),
    "sev": BlockType(sev, ("groups", "t_kernel", "se")),
}
"""The block library: block type name (as written in a spec) -> definition."""
