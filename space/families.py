"""The paper's families as keyword-only factories that turn knobs into a ``NetSpec``.

Knobs: ``width_mult`` (global), ``stage_mults`` (a width factor per stage on top of it), ``depths``
(units per stage), and the family's own (MobileNetV2 ``expansions``, ShuffleNetV1 ``groups`` and
``expansions``).
At the paper's widths and default knobs every factory reproduces the paper's code exactly
(``../shared/reference/architectures.md``); at any other width > 0 it rounds channels so that the
network still builds. The rounding rules are pure helpers below.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, TypeVar

from space.ops import Triple
from space.registry import register_model
from space.spec import CACHE_SIZE, HeadSpec, NetSpec, SpecError, StageSpec, StemSpec

S2: Triple = (2, 2, 2)
S1: Triple = (1, 1, 1)
Clip = tuple[int, int, int]


P = TypeVar("P", StemSpec, StageSpec, HeadSpec)


def _shared(part: type[P]) -> Callable[..., P]:
    """``part``'s constructor, returning the part made by an earlier call with equal arguments of the
    same types when there is one. Parts are immutable, so specs can share them, and a shared part
    validated once is not checked again (a search builds the same stages over and over).

    The cache compares the types of the arguments themselves, not of what they hold: every tuple
    passed (strides, kernels) must be one of this module's constants. An unhashable argument (a
    list where an integer belongs) is passed on unshared, for validation to reject.
    """
    shared = lru_cache(maxsize=CACHE_SIZE, typed=True)(part)
    _SHARED.append(shared.cache_clear)

    def make(*args: Any, **kwargs: Any) -> P:
        try:
            return shared(*args, **kwargs)
        except TypeError:
            return part(*args, **kwargs)

    return make


_SHARED: list[Callable[[], None]] = []
"""What forgets each kind of shared part."""

_stem, _stage, _head = _shared(StemSpec), _shared(StageSpec), _shared(HeadSpec)


def clear_shared_parts() -> None:
    """Forget the shared parts, so that the next factory calls make and validate new ones (what a fresh
    process does; benchmarks time the uncached path with it)."""
    for clear in _SHARED:
        clear()


def floor_width(channels: float) -> int:
    """The paper's rule ``int(c * w)``, never below 1."""
    return max(1, int(_finite(channels)))


def make_divisible(value: float, divisor: int) -> int:
    """Nearest multiple of ``divisor`` (at least ``divisor``), never more than 10% below ``value``."""
    rounded = max(divisor, int(_finite(value) + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _finite(channels: float) -> float:
    """``channels``, or :class:`SpecError` naming ``width_mult`` when the product overflowed to infinity."""
    if not math.isfinite(channels):
        raise SpecError("width_mult", "too large: the channel counts overflow to infinity")
    return channels


def interpolate(width_mult: float, table: Sequence[tuple[float, float]]) -> float:
    """Piecewise-linear in ``width_mult`` through ``(width, value)`` points; proportional outside them."""
    ws = [w for w, _ in table]
    if width_mult <= ws[0]:
        return table[0][1] * width_mult / ws[0]
    if width_mult >= ws[-1]:
        return table[-1][1] * width_mult / ws[-1]
    i = bisect_right(ws, width_mult) - 1
    (w0, v0), (w1, v1) = table[i], table[i + 1]
    return v0 + (v1 - v0) * (width_mult - w0) / (w1 - w0)


def _knobs(
    name: str, default: Sequence[int], depths: Sequence[int] | None, stage_mults: Sequence[float] | None, width_mult: float
) -> tuple[tuple[int, ...], tuple[float, ...]]:
    if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or not 0 < width_mult < math.inf:
        raise SpecError("width_mult", f"must be a positive number, got {width_mult!r}")
    d = tuple(default if depths is None else depths)
    m = tuple(1.0 for _ in default) if stage_mults is None else tuple(stage_mults)
    if len(d) != len(default):
        raise SpecError("depths", f"{name} has {len(default)} stages, got {len(d)} depths")
    if len(m) != len(default):
        raise SpecError("stage_mults", f"{name} has {len(default)} stages, got {len(m)} factors")
    for i, f in enumerate(m):
        if not 0 < f < math.inf:
            raise SpecError(f"stage_mults[{i}]", f"must be a positive number, got {f}")
    return d, m


# -- SqueezeNet 1.1 with simple bypass -------------------------------------------------------

SQUEEZENET_STAGES = ((128, 16, S1), (256, 32, S2), (384, 48, S2), (512, 64, S2))
"""(output channels, squeeze channels, stride) per stage of two Fire blocks."""


@register_model("squeezenet")
def squeezenet(
    *,
    width_mult: float = 1.0,
    depths: Sequence[int] | None = None,
    stage_mults: Sequence[float] | None = None,
    num_classes: int = 600,
    clip: Clip = (16, 112, 112),
    dropout: float = 0.5,
    head_act: str = "relu",
) -> NetSpec:
    """3D SqueezeNet 1.1 with simple bypass (Fire blocks).

    The paper has no width knob for it; e3d's ``width_mult`` scales every conv. ``head_act`` is the
    activation over the class scores: the paper's ReLU, or ``"none"`` (with few classes the ReLU can
    zero every score and stop learning; see docs/PROXY_FIDELITY.md)."""
    d, m = _knobs("squeezenet", (2, 2, 2, 2), depths, stage_mults, width_mult)
    stages = tuple(
        _stage("fire", make_divisible(c * width_mult * f, 2), n, s, squeeze=floor_width(sq * width_mult * f), bypass=True)
        for (c, sq, s), n, f in zip(SQUEEZENET_STAGES, d, m, strict=True)
    )
    return NetSpec(
        "squeezenet",
        _stem(floor_width(64 * width_mult), bias=True, pool=True),
        stages,
        _head("conv", act=head_act),
        clip=clip,
        num_classes=num_classes,
        dropout=dropout,
        width_mult=width_mult,
    )


# -- MobileNetV1 -------------------------------------------------------------------------------

MOBILENET_STAGES = ((64, 1, S2), (128, 2, S2), (256, 2, S2), (512, 6, S2), (1024, 2, S1))
"""(channels, units, stride of the first unit); strides sit one group earlier than in 2D."""


@register_model("mobilenet", paper_widths=(0.5, 1.0, 1.5, 2.0))
def mobilenet(
    *,
    width_mult: float = 1.0,
    depths: Sequence[int] | None = None,
    stage_mults: Sequence[float] | None = None,
    num_classes: int = 600,
    clip: Clip = (16, 112, 112),
    dropout: float = 0.2,
) -> NetSpec:
    """3D MobileNetV1 (depthwise-separable blocks, no skip connections).

    Widths ``int(c * w)``."""
    d, m = _knobs("mobilenet", [n for _, n, _ in MOBILENET_STAGES], depths, stage_mults, width_mult)
    stages = tuple(_stage("dwsep", floor_width(c * width_mult * f), n, s) for (c, _, s), n, f in zip(MOBILENET_STAGES, d, m, strict=True))
    return NetSpec(
        "mobilenet",
        _stem(floor_width(32 * width_mult)),
        stages,
        _head(),
        clip=clip,
        num_classes=num_classes,
        dropout=dropout,
        width_mult=width_mult,
    )


# -- MobileNetV2 -------------------------------------------------------------------------------

MOBILENETV2_STAGES = ((1, 16, 1, S1), (6, 24, 2, S2), (6, 32, 3, S2), (6, 64, 4, S2), (6, 96, 3, S1), (6, 160, 3, S2), (6, 320, 1, S1))
"""(expansion t, channels c, units n, stride s of the first unit)."""


@register_model("mobilenetv2", paper_widths=(0.2, 0.45, 0.7, 1.0))
def mobilenetv2(
    *,
    width_mult: float = 1.0,
    depths: Sequence[int] | None = None,
    stage_mults: Sequence[float] | None = None,
    expansions: Sequence[float] | None = None,
    num_classes: int = 600,
    clip: Clip = (16, 112, 112),
    dropout: float = 0.2,
) -> NetSpec:
    """3D MobileNetV2 (inverted residuals with linear bottlenecks).

    Widths ``int(c * w)`` (no rounding to 8), last conv 1280 (``int(1280 w)`` above 1.0x).
    ``expansions`` gives t per stage (the paper: 1, then 6)."""
    d, m = _knobs("mobilenetv2", [n for _, _, n, _ in MOBILENETV2_STAGES], depths, stage_mults, width_mult)
    t = tuple(e for e, _, _, _ in MOBILENETV2_STAGES) if expansions is None else tuple(expansions)
    if len(t) != len(MOBILENETV2_STAGES):
        raise SpecError("expansions", f"mobilenetv2 has {len(MOBILENETV2_STAGES)} stages, got {len(t)} expansions")
    stages = tuple(
        _stage("inverted_residual", floor_width(c * width_mult * f), n, s, act="relu6", expansion=e)
        for (_, c, _, s), n, f, e in zip(MOBILENETV2_STAGES, d, m, t, strict=True)
    )
    last = floor_width(1280 * width_mult) if width_mult > 1.0 else 1280
    return NetSpec(
        "mobilenetv2",
        _stem(floor_width(32 * width_mult), act="relu6"),
        stages,
        _head(channels=last, act="relu6"),
        clip=clip,
        num_classes=num_classes,
        dropout=dropout,
        width_mult=width_mult,
    )


# -- ShuffleNetV1 ------------------------------------------------------------------------------

SHUFFLENET_WIDTHS = {1: (144, 288, 567), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088), 8: (384, 768, 1536)}
"""Stage widths at 1.0x per group count, as in the paper's code (stem 24)."""


@register_model("shufflenet", paper_widths=(0.5, 1.0, 1.5, 2.0))
def shufflenet(
    *,
    width_mult: float = 1.0,
    groups: int = 3,
    depths: Sequence[int] | None = None,
    stage_mults: Sequence[float] | None = None,
    expansions: Sequence[float] | None = None,
    num_classes: int = 600,
    clip: Clip = (16, 112, 112),
    dropout: float = 0.2,
) -> NetSpec:
    """3D ShuffleNetV1 (pointwise group convs and channel shuffle; groups 3).

    Stage widths are rounded to multiples of ``4 * groups`` and the stem to multiples of
    ``groups`` (the paper's ``int(c * w)`` at its widths, which are such multiples), and each stage
    is kept wider than the one before (its first unit concatenates its input). The first 1x1 of
    the network is ungrouped when the stem has 24 channels, as in the paper. ``expansions`` gives
    each stage's bottleneck width as a factor of the paper's ``channels // 4`` (default 1; other
    factors round it down to a multiple of ``groups``, see :func:`space.blocks.shuffle_v1_bottleneck`)."""
    if groups not in SHUFFLENET_WIDTHS:
        raise SpecError("groups", f"must be one of {', '.join(map(str, SHUFFLENET_WIDTHS))}; got {groups!r}")
    d, m = _knobs("shufflenet", (4, 8, 4), depths, stage_mults, width_mult)
    t = tuple(1.0 for _ in d) if expansions is None else tuple(expansions)
    if len(t) != len(d):
        raise SpecError("expansions", f"shufflenet has {len(d)} stages, got {len(t)} expansions")
    stem_c = make_divisible(24 * width_mult, groups)
    widths, prev = [], stem_c
    for c, f in zip(SHUFFLENET_WIDTHS[groups], m, strict=True):
        # a downsampling unit concatenates its input, so every stage must be wider than the last
        prev = max(make_divisible(c * width_mult * f, 4 * groups), prev + 4 * groups - prev % (4 * groups))
        widths.append(prev)
    first = 1 if stem_c == 24 else None
    stages = tuple(
        _stage("shuffle_v1", c, n, S2, expansion=e, groups=groups, first_groups=first if i == 0 else None)
        for i, (c, n, e) in enumerate(zip(widths, d, t, strict=True))
    )
    return NetSpec(
        "shufflenet",
        _stem(stem_c, pool=True),
        stages,
        _head(),
        clip=clip,
        num_classes=num_classes,
        dropout=dropout,
        width_mult=width_mult,
    )


# -- ShuffleNetV2 ------------------------------------------------------------------------------

SHUFFLENETV2_TABLE = {
    0.25: (32, 64, 128, 1024),
    0.5: (48, 96, 192, 1024),
    1.0: (116, 232, 464, 1024),
    1.5: (176, 352, 704, 1024),
    2.0: (224, 488, 976, 2048),
}
"""The paper's width table (stage 1-3 channels, last conv) per width multiplier."""


def shufflenetv2_widths(width_mult: float) -> tuple[int, int, int, int]:
    """Stage and last-conv widths: the paper's table at its widths, linear between them, even."""
    points = sorted(SHUFFLENETV2_TABLE.items())
    c = [make_divisible(interpolate(width_mult, [(w, v[i]) for w, v in points]), 2) for i in range(4)]
    return (c[0], c[1], c[2], c[3])


@register_model("shufflenetv2", paper_widths=(0.25, 1.0, 1.5, 2.0))
def shufflenetv2(
    *,
    width_mult: float = 1.0,
    depths: Sequence[int] | None = None,
    stage_mults: Sequence[float] | None = None,
    num_classes: int = 600,
    clip: Clip = (16, 112, 112),
    dropout: float = 0.2,
) -> NetSpec:
    """3D ShuffleNetV2 (channel split, concat and shuffle).

    Widths follow the paper's table at its widths and interpolate it elsewhere."""
    d, m = _knobs("shufflenetv2", (4, 8, 4), depths, stage_mults, width_mult)
    *widths, last = shufflenetv2_widths(width_mult)
    stages = tuple(_stage("shuffle_v2", make_divisible(c * f, 2), n, S2) for c, n, f in zip(widths, d, m, strict=True))
    return NetSpec(
        "shufflenetv2",
        _stem(24, pool=True),
        stages,
        _head(channels=last),
        clip=clip,
        num_classes=num_classes,
        dropout=dropout,
        width_mult=width_mult,
    )


# -- SEVNet (not in Table 8: the SEV module of Wang and Yang, 2020) ----------------------------

SEVNET_STAGES = ((24, 1, (1, 2, 2)), (48, 2, S2), (96, 3, S2), (192, 1, (1, 2, 2)))
"""(channels, units, stride of the first unit) per stage at 1.0x: e3d's layout, see ``docs/SEV_SGS.md``.
The first stage keeps the clip's full temporal resolution (the stem halves only H and W)."""


@register_model("sevnet", paper_widths=(0.5, 1.0, 1.5, 2.0))
def sevnet(
    *,
    width_mult: float = 1.0,
    depths: Sequence[int] | None = None,
    stage_mults: Sequence[float] | None = None,
    groups: int = 4,
    t_kernel: int = 3,
    se: bool = False,
    num_classes: int = 600,
    clip: Clip = (16, 112, 112),
    dropout: float = 0.2,
) -> NetSpec:
    """3D SEVNet (SEV modules: channel-wise, spatial-grouped and temporal convs, optional SE).

    Not one of the paper's families: e3d's presets at 0.5-2.0x (its ``paper_widths`` are e3d's
    choice). Stage widths are rounded to multiples of lcm(4, ``groups``), the stem to multiples of 4;
    ``groups`` is the spatial conv's group count, ``t_kernel`` the temporal kernel, ``se`` adds
    squeeze-and-excitation to every module."""
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise SpecError("groups", f"must be a positive integer, got {groups!r}")
    d, m = _knobs("sevnet", [n for _, n, _ in SEVNET_STAGES], depths, stage_mults, width_mult)
    divisor = math.lcm(4, groups)
    stages = tuple(
        _stage("sev", make_divisible(c * width_mult * f, divisor), n, s, groups=groups, t_kernel=t_kernel, se=se)
        for (c, _, s), n, f in zip(SEVNET_STAGES, d, m, strict=True)
    )
    return NetSpec(
        "sevnet",
        _stem(make_divisible(16 * width_mult, 4)),
        stages,
        _head(),
        clip=clip,
        num_classes=num_classes,
        dropout=dropout,
        width_mult=width_mult,
    )


# -- ResNets and ResNeXt (Table 8's baselines) -------------------------------------------------


def _resnet_family(
    family: str,
    *,
    block: str,
    default_depths: tuple[int, ...],
    planes: tuple[int, ...],
    expansion: int,
    groups: int,
    shortcut: str,
    doc: str,
) -> Callable[..., NetSpec]:
    """Make the keyword-only factory of one ResNet/ResNeXt depth."""

    def factory(
        *,
        width_mult: float = 1.0,
        depths: Sequence[int] | None = None,
        stage_mults: Sequence[float] | None = None,
        shortcut: str = shortcut,
        num_classes: int = 600,
        clip: Clip = (16, 112, 112),
        dropout: float = 0.0,
    ) -> NetSpec:
        d, m = _knobs(family, default_depths, depths, stage_mults, width_mult)
        stages = tuple(
            _stage(
                block,
                p * expansion if width_mult * f == 1 else make_divisible(p * width_mult * f * expansion, groups * expansion),
                n,
                S1 if i == 0 else S2,
                expansion=float(expansion) if block == "bottleneck" else 1.0,
                groups=groups,
                shortcut=shortcut,
            )
            for i, (p, n, f) in enumerate(zip(planes, d, m, strict=True))
        )
        stem_spec = _stem(floor_width(64 * width_mult), kernel=(7, 7, 7), pool=True)
        return NetSpec(family, stem_spec, stages, _head(), clip=clip, num_classes=num_classes, dropout=dropout, width_mult=width_mult)

    factory.__name__ = factory.__qualname__ = family
    factory.__doc__ = doc
    return register_model(family)(factory)


R34 = (64, 128, 256, 512)
resnet18 = _resnet_family(
    "resnet18", block="basic", default_depths=(2, 2, 2, 2), planes=R34, expansion=1, groups=1, shortcut="A",
    doc="3D ResNet-18 (basic blocks, shortcut A as in Table 8).",
)  # fmt: skip
resnet50 = _resnet_family(
    "resnet50", block="bottleneck", default_depths=(3, 4, 6, 3), planes=R34, expansion=4, groups=1, shortcut="A",
    doc="3D ResNet-50 (bottlenecks of expansion 4, shortcut A as in Table 8).",
)  # fmt: skip
resnet101 = _resnet_family(
    "resnet101", block="bottleneck", default_depths=(3, 4, 23, 3), planes=R34, expansion=4, groups=1, shortcut="A",
    doc="3D ResNet-101 (bottlenecks of expansion 4, shortcut A as in Table 8).",
)  # fmt: skip
resnext101 = _resnet_family(
    "resnext101", block="bottleneck", default_depths=(3, 4, 23, 3), planes=(128, 256, 512, 1024), expansion=2, groups=32, shortcut="B",
    doc="3D ResNeXt-101 (cardinality 32, bottleneck expansion 2, shortcut B).",
)  # fmt: skip
