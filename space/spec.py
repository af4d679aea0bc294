"""``NetSpec``: the one declarative description of a network.

A spec is frozen, validated on construction (a bad spec raises :class:`SpecError` naming the field
and the reason) and round-trips through JSON exactly. The builder, the analytic counter, the search
and analysis all read it. Channel counts in a spec are the resolved ones; ``width_mult`` records the
global multiplier they were derived with (see :mod:`space.families`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property, lru_cache
from operator import attrgetter
from pathlib import Path
from typing import Any

from space.blocks import BLOCKS, BlockFn, head, similarity_sampling, stem
from space.ops import ACTIVATIONS, BlockError, Layer, Shape, Tracer, Triple

FORMAT = "e3d.netspec/1"
"""Value of the ``format`` key that marks a JSON file as an e3d spec."""


class E3DError(Exception):
    """Base of the errors that are the user's input, not a bug: the CLI prints them in one line."""


class SpecError(E3DError, ValueError):
    """An invalid spec field. ``field`` is its path, e.g. ``stages[2].groups``."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class JSONError(E3DError, ValueError):
    """JSON text that cannot be read: malformed, or beyond what Python parses (a number of too many digits,
    nesting too deep). The message is the reason alone; callers name the file or option."""


def parse_json(text: str | bytes) -> Any:
    """``json.loads(text)``, every way it can fail on the text turned into one :class:`JSONError` line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise JSONError(f"not valid JSON ({e})") from None
    except RecursionError:
        raise JSONError("not readable JSON (nested too deeply)") from None
    except ValueError as e:  # an integer past sys.get_int_max_str_digits()
        raise JSONError(f"not readable JSON ({str(e).split(';')[0]})") from None


MAX_INT = 1 << 20
"""The largest integer a spec field may hold (channels, classes, repeats, clip sides): no video network that can be
built needs more, and beyond it counts are numbers with dozens of digits that describe nothing."""


def _int(path: str, value: object, *, minimum: int = 1, name: str = "") -> int:
    """``value`` if it is an integer in [``minimum``, :data:`MAX_INT`]; else :class:`SpecError` for field ``path.name`` (or ``path``)."""
    if type(value) is int and minimum <= value <= MAX_INT:  # the common case, first (bool is not int here)
        return value
    path = f"{path}.{name}" if name else path
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(path, f"must be an integer, got {value!r}")
    if value < minimum:
        raise SpecError(path, f"must be >= {minimum}, got {value}")
    raise SpecError(path, f"must be at most {MAX_INT:,}, got {value:,}")


def _float(path: str, value: object, *, name: str = "") -> float:
    if type(value) is float and math.isfinite(value):
        return value
    path = f"{path}.{name}" if name else path
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpecError(path, f"must be a finite number, got {value!r}")
    return float(value)


def _bool(path: str, value: object, *, name: str = "") -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"{path}.{name}" if name else path, f"must be true or false, got {value!r}")
    return value


def _triple(path: str, value: object, *, name: str = "") -> Triple:
    if type(value) is tuple and len(value) == 3 and all(type(v) is int and v >= 1 for v in value):
        return value  # already a valid triple
    path = f"{path}.{name}" if name else path
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise SpecError(path, f"must be 3 integers (T, H, W), got {value!r}")
    t, h, w = (_int(f"{path}[{i}]", v) for i, v in enumerate(value))
    return (t, h, w)


def _choice(path: str, value: object, choices: tuple[str, ...], *, name: str = "") -> str:
    if value not in choices:
        raise SpecError(f"{path}.{name}" if name else path, f"must be one of {', '.join(choices)}; got {value!r}")
    return str(value)


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


@dataclass(frozen=True)
class StemSpec:
    """The first convolution: ``channels`` out, BN, activation; ``pool`` adds MaxPool3d(3, 2, 1)."""

    channels: int
    kernel: Triple = (3, 3, 3)
    stride: Triple = (1, 2, 2)
    bias: bool = False
    act: str = "relu"
    pool: bool = False

    def __post_init__(self) -> None:
        _int("stem.channels", self.channels)
        _set(self, "kernel", _triple("stem.kernel", self.kernel))
        _set(self, "stride", _triple("stem.stride", self.stride))
        _bool("stem.bias", self.bias)
        _choice("stem.act", self.act, ACTIVATIONS)
        _bool("stem.pool", self.pool)


@dataclass(frozen=True)
class StageSpec:
    """A stage: ``repeats`` units of one block type, all with ``channels`` outputs.

    The first unit has ``stride`` (T, H, W); the others stride 1. The remaining fields are block
    parameters; each block type reads only the ones listed for it in :data:`space.blocks.BLOCKS`
    and the others must stay at their defaults. ``first_groups`` applies to the first unit only.
    """

    block: str
    channels: int
    repeats: int = 1
    stride: Triple = (1, 1, 1)
    act: str = "relu"
    expansion: float = 1.0
    groups: int = 1
    first_groups: int | None = None
    squeeze: int = 0
    bypass: bool = False
    shortcut: str = "B"
    t_kernel: int = 3
    se: bool = False

    def validate(self, path: str) -> None:
        """Check every field's own value (shapes are checked by tracing the whole spec). A stage is
        immutable: once valid, it is not checked again (a spec's ``replace`` reuses its stages), nor is
        a stage whose every field has the value and type of one found valid before (:func:`_exact_key`)."""
        if self.__dict__.get("_valid"):
            return
        if not _known_valid(self):
            self._check(path)
            if len(_VALID_STAGES) >= CACHE_SIZE:
                _VALID_STAGES.clear()
            _VALID_STAGES.add(_exact_key(self))  # after _check made stride a tuple and expansion a float
        _set(self, "_valid", True)

    def _check(self, path: str) -> None:
        block = BLOCKS.get(self.block)
        if block is None:
            raise SpecError(f"{path}.block", f"unknown block type {self.block!r}; choose from {', '.join(sorted(BLOCKS))}")
        _int(path, self.channels, name="channels")
        _int(path, self.repeats, name="repeats")
        _set(self, "stride", _triple(path, self.stride, name="stride"))
        _choice(path, self.act, ACTIVATIONS, name="act")
        _set(self, "expansion", _float(path, self.expansion, name="expansion"))
        if self.expansion <= 0:
            raise SpecError(f"{path}.expansion", f"must be positive, got {self.expansion}")
        _int(path, self.groups, name="groups")
        if self.first_groups is not None:
            _int(path, self.first_groups, name="first_groups")
        _int(path, self.squeeze, minimum=0, name="squeeze")
        _bool(path, self.bypass, name="bypass")
        _choice(path, self.shortcut, ("A", "B"), name="shortcut")
        _int(path, self.t_kernel, name="t_kernel")
        if self.t_kernel % 2 == 0:
            raise SpecError(f"{path}.t_kernel", f"must be odd (a 'same'-padded kernel), got {self.t_kernel}")
        _bool(path, self.se, name="se")
        names, defaults = _unused_fields(self.block)
        if tuple([getattr(self, name) for name in names]) != defaults:
            name, default = next((n, d) for n, d in zip(names, defaults, strict=True) if getattr(self, n) != d)
            raise SpecError(f"{path}.{name}", f"is not used by block {self.block!r}; leave it at {default!r}")

    def unit_kwargs(self, cin: int, index: int) -> dict[str, Any]:
        """Keyword arguments of unit ``index`` of this stage, whose input has ``cin`` channels."""
        kw: dict[str, Any] = {"cin": cin, "channels": self.channels, "act": self.act}
        kw["stride"] = self.stride if index == 0 else (1, 1, 1)
        for name in BLOCKS[self.block].fields:
            kw[name] = getattr(self, name) if index == 0 or not name.startswith("first_") else None
        return kw


_STAGE_COMMON = frozenset({"block", "channels", "repeats", "stride", "act"})

_VALID_STAGES: set[tuple[Any, ...]] = set()
"""Exact keys of stages found valid (:func:`_exact_key`)."""


def _exact_key(stage: StageSpec) -> tuple[Any, ...]:
    """The stage's field values but its channels and repeats, their types and its stride's types, in one
    flat tuple: equal only for stages whose every other field has the same value and type (``True == 1``
    and ``1.0 == 1``; their types differ). Channels and repeats are checked on their own (each is valid as
    any integer >= 1, whatever the other fields), so a search's stages of new widths or depths need no
    full check."""
    block, _, _, *rest = _values(stage)
    return (block, type(block), *rest, *map(type, rest), *map(type, stage.stride))


def _known_valid(stage: StageSpec) -> bool:
    """True if the stage's channels and repeats are integers in [1, :data:`MAX_INT`] and a stage with exactly its other field
    values and types was found valid before."""
    if type(stage.stride) is not tuple or type(stage.channels) is not int or type(stage.repeats) is not int:
        return False
    if not (1 <= stage.channels <= MAX_INT and 1 <= stage.repeats <= MAX_INT):
        return False
    try:
        return _exact_key(stage) in _VALID_STAGES
    except TypeError:  # a field that cannot be hashed: not a valid stage
        return False


@cache
def _unused_fields(block: str) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """The StageSpec fields that ``block`` does not read, and their defaults (which they must keep)."""
    unused = [f for f in dataclasses.fields(StageSpec) if f.name not in _STAGE_COMMON and f.name not in BLOCKS[block].fields]
    return tuple(f.name for f in unused), tuple(f.default for f in unused)


HEAD_ACTIVATIONS = (*ACTIVATIONS, "none")
"""A head's activation: one of the block activations, or none."""


@dataclass(frozen=True)
class HeadSpec:
    """Classifier: ``linear`` ([1x1x1 conv to ``channels``], global average, dropout, Linear) or
    ``conv`` (dropout, 1x1x1 conv with bias to the classes, activation, global average).

    ``act`` is one of :data:`space.ops.ACTIVATIONS` or ``"none"`` (no activation: a conv head's
    class scores are then averaged as they are)."""

    kind: str = "linear"
    channels: int = 0
    act: str = "relu"

    def __post_init__(self) -> None:
        _choice("head.kind", self.kind, ("linear", "conv"))
        _int("head.channels", self.channels, minimum=0)
        if self.kind == "conv" and self.channels:
            raise SpecError("head.channels", "a 'conv' head has no extra conv; leave it at 0")
        _choice("head.act", self.act, HEAD_ACTIVATIONS)


@dataclass(frozen=True)
class SGSSpec:
    """Similarity Guided Sampling after the last unit of stage ``after_stage``.

    Every temporal slice, averaged on a coarse grid, is embedded in ``embed`` channels by a 1x1x1
    conv with bias; the change between neighbouring slices (0: identical, ~1: unrelated), summed
    along the clip, places each slice on a line of bins ``bin_width`` apart, and slices that land on
    the same bins are averaged together (see :mod:`space.sgs`). A clip keeps between ``multiple``
    and ``bins`` of them, a multiple of ``multiple`` (the last bin is repeated to get there): for
    networks that need, say, an even T further on.
    """

    after_stage: int
    bins: int
    embed: int = 8
    bin_width: float = 0.5
    multiple: int = 1

    def validate(self, path: str, stages: int) -> None:
        """Check each field's own value (shapes and bin counts are checked by tracing)."""
        _int(f"{path}.after_stage", self.after_stage, minimum=0)
        if self.after_stage >= stages:
            raise SpecError(f"{path}.after_stage", f"the network has stages 0..{stages - 1}, got {self.after_stage}")
        _int(f"{path}.bins", self.bins)
        _int(f"{path}.embed", self.embed)
        _set(self, "bin_width", _float(f"{path}.bin_width", self.bin_width))
        if self.bin_width <= 0:
            raise SpecError(f"{path}.bin_width", f"must be positive, got {self.bin_width}")
        _int(f"{path}.multiple", self.multiple)
        if self.bins % self.multiple:
            raise SpecError(f"{path}.bins", f"must be a multiple of multiple={self.multiple}, got {self.bins}")

    @property
    def path(self) -> str:
        """Module path of the SGS unit in the built model: ``sgs.<after_stage>``."""
        return f"sgs.{self.after_stage}"

    def counts(self) -> range:
        """Every number of bins a clip can keep."""
        return range(self.multiple, self.bins + 1, self.multiple)


@dataclass(frozen=True)
class NetSpec:
    """A whole network: stem, stages, head, input clip (T, H, W) and classes.

    ``sgs`` inserts Similarity Guided Sampling layers after some stages; then the temporal size
    after them, and so the cost, depends on the clip: :attr:`layers` describe the most expensive
    clip and :meth:`trace` any other.
    """

    family: str
    stem: StemSpec
    stages: tuple[StageSpec, ...]
    head: HeadSpec = field(default_factory=HeadSpec)
    clip: Triple = (16, 112, 112)
    num_classes: int = 600
    dropout: float = 0.2
    width_mult: float = 1.0
    in_channels: int = 3
    sgs: tuple[SGSSpec, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.family, str) or not self.family:
            raise SpecError("family", f"must be a non-empty name, got {self.family!r}")
        for name, kind in (("stem", StemSpec), ("head", HeadSpec)):
            if not isinstance(getattr(self, name), kind):
                raise SpecError(name, f"must be a {kind.__name__}")
        stages = tuple(self.stages) if isinstance(self.stages, (list, tuple)) else None
        if not stages:
            raise SpecError("stages", "must be a non-empty list of stages")
        for i, stage in enumerate(stages):
            if not isinstance(stage, StageSpec):
                raise SpecError(f"stages[{i}]", "must be a StageSpec")
            if not stage.__dict__.get("_valid"):  # a shared stage is checked once (StageSpec.validate)
                stage.validate(f"stages[{i}]")
        _set(self, "stages", stages)
        _set(self, "clip", _triple("clip", self.clip))
        _int("num_classes", self.num_classes)
        _set(self, "dropout", _float("dropout", self.dropout))
        if not 0 <= self.dropout < 1:
            raise SpecError("dropout", f"must be in [0, 1), got {self.dropout}")
        _set(self, "width_mult", _float("width_mult", self.width_mult))
        if self.width_mult <= 0:
            raise SpecError("width_mult", f"must be positive, got {self.width_mult}")
        _int("in_channels", self.in_channels)
        sgs = tuple(self.sgs) if isinstance(self.sgs, (list, tuple)) else None
        if sgs is None:
            raise SpecError("sgs", "must be a list of SGS layers")
        for i, layer in enumerate(sgs):
            if not isinstance(layer, SGSSpec):
                raise SpecError(f"sgs[{i}]", "must be an SGSSpec")
            layer.validate(f"sgs[{i}]", len(stages))
            if i and layer.after_stage <= sgs[i - 1].after_stage:
                raise SpecError(f"sgs[{i}].after_stage", "SGS layers must follow distinct stages in increasing order")
        _set(self, "sgs", sgs)
        _set(self, "_traced", self._walk(None))  # trace now: shape errors surface at construction
        if sgs:
            self._check_sgs_counts()

    def _check_sgs_counts(self) -> None:
        """Every bin count of every SGS layer must run through the rest of the network.

        The layers between two SGS layers see only the first one's count, so checking each
        layer's counts with the others at their maximum covers every combination. (A later layer
        keeps at most the slices it gets, which its maximum may exceed when an earlier one keeps few.)
        """
        at_most = {layer.path: layer.bins for layer in self.sgs}
        for i, layer in enumerate(self.sgs):
            for k in layer.counts():
                if k == layer.bins:
                    continue  # traced already
                try:
                    self._trace({**at_most, layer.path: k})
                except SpecError as e:
                    raise SpecError(
                        f"sgs[{i}].multiple",
                        f"when SGS keeps {k} bins, {e.field}: {e.reason}; choose a multiple so that every count SGS can keep fits",
                    ) from None

    # -- structure -------------------------------------------------------------------------

    def segments(self) -> Iterator[tuple[SegmentKey, Any]]:
        """Walk the network as segments: the stem, each stage and the SGS layers after it, the head, as
        (key, spec part). :func:`segment_units` expands one into its units."""
        for kind, context, part in self._parts():
            yield (kind, *context, *_values(part)), part

    def _parts(self) -> Iterator[tuple[str, tuple[Any, ...], Any]]:
        """Each segment's kind, what its part's own fields leave out (a stage's index and input channels, the
        head's classes and dropout) and its part."""
        yield "stem", (), self.stem
        cin = self.stem.channels
        for i, stage in enumerate(self.stages):
            yield "stage", (i, cin), stage
            cin = stage.channels
            for layer in self.sgs:
                if layer.after_stage == i:
                    yield "sgs", (), layer
        yield "head", (self.num_classes, self.dropout), self.head

    def units(self) -> Iterator[tuple[str, BlockFn, dict[str, Any]]]:
        """Walk the network as (module path, block function, keyword arguments) per unit."""
        for key, part in self.segments():
            yield from segment_units(key, part)

    @property
    def input_shape(self) -> Shape:
        """Per-sample input shape (C, T, H, W)."""
        return (self.in_channels, *self.clip)

    @cached_property
    def layers(self) -> tuple[Layer, ...]:
        """Every layer with its input and output shape, in execution order (traced, not built).

        With SGS layers, each keeps its maximum number of bins: the most expensive clip.
        """
        return _named(self.unit_layers())

    def traced_segments(self, sgs_bins: Mapping[str, int] | None = None) -> Traced:
        """Per segment, its trace key and its trace (:data:`Traced`): plain tuples, equal for segments and
        units traced alike in any spec, and the same trace object while it is cached (cache keys for their
        costs). ``sgs_bins`` maps SGS paths to bins."""
        traced: Traced = self.__dict__["_traced"] if sgs_bins is None else self._walk(sgs_bins)
        return traced

    def unit_layers(self, sgs_bins: Mapping[str, int] | None = None) -> UnitLayers:
        """Per unit, its module path and its layers named relative to it (:func:`trace_unit`)."""
        return tuple(
            (_unit_path(key, j), trace_unit(unit)[1]) for key, trace in self.traced_segments(sgs_bins) for j, unit in enumerate(trace[1:])
        )

    def trace(self, sgs_bins: Sequence[int] | None = None) -> tuple[Layer, ...]:
        """The layers for a clip that keeps ``sgs_bins[i]`` bins at SGS layer ``i`` (None: the maximum)."""
        return self.layers if sgs_bins is None else self._trace(self.sgs_map(sgs_bins))

    def sgs_map(self, sgs_bins: Sequence[int] | None) -> dict[str, int] | None:
        """``sgs_bins`` checked (:class:`SpecError` otherwise) and keyed by SGS unit path, for :meth:`unit_layers`."""
        if sgs_bins is None:
            return None
        if len(sgs_bins) != len(self.sgs):
            raise SpecError("sgs_bins", f"the spec has {len(self.sgs)} SGS layers, got {len(sgs_bins)} bin counts")
        for i, (layer, k) in enumerate(zip(self.sgs, sgs_bins, strict=True)):
            if isinstance(k, bool) or int(k) != k or int(k) not in layer.counts():
                counts = f"{layer.multiple}..{layer.bins} bins (multiples of {layer.multiple})"
                raise SpecError(f"sgs_bins[{i}]", f"sgs[{i}] keeps {counts}, got {k}")
        return {layer.path: int(k) for layer, k in zip(self.sgs, sgs_bins, strict=True)}

    def _trace(self, sgs_bins: Mapping[str, int] | None) -> tuple[Layer, ...]:
        return _named(self.unit_layers(sgs_bins))

    def _walk(self, sgs_bins: Mapping[str, int] | None) -> Traced:
        """Trace segment by segment; a segment traced before with the same key and input is not traced again.

        Each part remembers its own segments by what its fields leave out of the key and by its input (parts
        are immutable, and the family factories share equal ones between specs), so a part seen before
        needs no key built from its fields."""
        x: Shape = self.input_shape
        out = []
        for kind, context, part in self._parts():
            bins = sgs_bins.get(part.path) if sgs_bins and kind == "sgs" else None
            memo = part.__dict__.get("_segments")
            if memo is None or memo[0] != _generation:  # new part, or _SEGMENTS was cleared since
                memo = part.__dict__["_segments"] = (_generation, {})
            seen: dict[tuple[Any, ...], tuple[SegmentKey, tuple[Any, ...]]] = memo[1]
            where = (*context, x, bins)
            segment = seen.get(where)
            if segment is None:
                segment = seen[where] = self._segment((kind, *context, *_values(part)), part, x, bins)
            x = segment[1][0]
            out.append(segment)
        return tuple(out)

    def _segment(self, key: SegmentKey, part: Any, x: Shape, bins: int | None) -> tuple[SegmentKey, tuple[Any, ...]]:
        """A segment's trace key and trace, from ``_SEGMENTS`` or traced now (:class:`SpecError` if it fails)."""
        trace_key = (*key, x, bins)
        trace = _SEGMENTS.get(trace_key)
        if trace is None:
            try:
                trace = _trace_segment(trace_key, part)
            except BlockError as e:
                raise SpecError(f"{self._field_path(key)}.{e.field}", f"{e.reason} (clip {'x'.join(map(str, self.clip))})") from None
        return trace_key, trace

    def _field_path(self, key: SegmentKey) -> str:
        """The spec field of a segment: ``stages[2]``, ``sgs[0]``, ``stem`` or ``head``."""
        if key[0] == "stage":
            return f"stages[{key[1]}]"
        if key[0] == "sgs":
            return f"sgs[{[layer.after_stage for layer in self.sgs].index(key[1])}]"
        return str(key[0])

    def replace(self, **changes: Any) -> NetSpec:
        """A copy with some top-level fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    # -- JSON -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict with every field and the format marker."""
        d = dataclasses.asdict(self)
        if not self.sgs:
            del d["sgs"]  # specs without SGS read exactly as before it existed
        return {"format": FORMAT, **_lists(d)}

    def to_json(self) -> str:
        """JSON text (one stage per line) that :meth:`from_json` turns back into an equal spec."""
        d = self.to_dict()
        lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in d.items() if k != "stages"]
        stages = ",\n".join(f"    {json.dumps(s)}" for s in d["stages"])
        lines.insert(3, f'  "stages": [\n{stages}\n  ]')
        return "{\n" + ",\n".join(lines) + "\n}"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NetSpec:
        """Parse a dict made by :meth:`to_dict` (missing fields take their defaults)."""
        if not isinstance(data, Mapping):
            raise SpecError("spec", f"must be a JSON object, got {type(data).__name__}")
        data = dict(data)
        fmt = data.pop("format", FORMAT)
        if fmt != FORMAT:
            raise SpecError("format", f"expected {FORMAT!r}, got {fmt!r}")
        stem_d = _section(data, "stem", required=True)
        stages_d = data.pop("stages", None)
        if not isinstance(stages_d, list):
            raise SpecError("stages", "must be a list of stages")
        head_d = _section(data, "head", required=False)
        sgs_d = data.pop("sgs", [])
        if not isinstance(sgs_d, list):
            raise SpecError("sgs", "must be a list of SGS layers")
        top = _kwargs(NetSpec, data, "")
        return cls(
            stem=StemSpec(**_kwargs(StemSpec, stem_d, "stem.")),
            stages=tuple(StageSpec(**_kwargs(StageSpec, _as_dict(s, f"stages[{i}]"), f"stages[{i}].")) for i, s in enumerate(stages_d)),
            head=HeadSpec(**_kwargs(HeadSpec, head_d, "head.")),
            sgs=tuple(SGSSpec(**_kwargs(SGSSpec, _as_dict(s, f"sgs[{i}]"), f"sgs[{i}].")) for i, s in enumerate(sgs_d)),
            **top,
        )

    @classmethod
    def from_json(cls, text: str) -> NetSpec:
        """Parse JSON text made by :meth:`to_json`."""
        try:
            data = parse_json(text)
        except JSONError as e:
            raise SpecError("spec", str(e)) from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> NetSpec:
        """Read a spec JSON file."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8-sig")  # an editor's byte-order mark is not part of the JSON
        except (OSError, UnicodeDecodeError) as e:
            raise SpecError("spec", f"cannot read {p}: {e}") from None
        try:
            return cls.from_json(text)
        except SpecError as e:
            raise SpecError(e.field, f"{e.reason} (in {p})") from None

    def save(self, path: str | Path) -> None:
        """Write the spec as JSON."""
        Path(path).write_text(self.to_json() + "\n")

    def summary(self) -> str:
        """One line: family, width, per-stage channels x repeats, clip."""
        stages = " ".join(f"{s.channels}x{s.repeats}" for s in self.stages)
        sgs = "".join(f" sgs@{layer.after_stage}<={layer.bins}" for layer in self.sgs)
        return f"{self.family} w{self.width_mult:g} stem{self.stem.channels} [{stages}]{sgs} clip{'x'.join(map(str, self.clip))}"


UnitLayers = tuple[tuple[str, tuple[Layer, ...]], ...]
"""(module path, layers named relative to it) per unit, in execution order."""

SegmentKey = tuple[Any, ...]
"""A segment, the units traced and cached together, as one flat tuple: ``("stem", *stem fields)``,
``("stage", index, input channels, *stage fields)``, ``("sgs", *SGS fields)`` or ``("head", num_classes,
dropout, *head fields)``, each part's fields in order (:func:`_values`). A trace key appends the input shape
and the SGS bins. Made of validated specs only, whose fields have their exact types (no ``True`` for 1), so
equal keys describe the same units."""

UnitKey = tuple[str, tuple[str, ...], tuple[Any, ...], Shape, int | None]
"""A unit as a plain tuple: (block function name, keyword names, keyword values, input shape, SGS bins)."""

Traced = tuple[tuple[SegmentKey, tuple[Any, ...]], ...]
"""Per segment, its trace key and its trace ``(output shape, *unit keys)``."""

_FNS: tuple[BlockFn, ...] = (stem, head, similarity_sampling, *(b.fn for b in BLOCKS.values()))
_UNIT_FNS = {fn.__name__: fn for fn in _FNS}
"""Every unit's block function by name (the first item of a :data:`UnitKey`)."""

_SEGMENTS: dict[SegmentKey, tuple[Any, ...]] = {}
"""Traced segments by trace key. Keys and traces are flat tuples of numbers, strings and older such tuples,
which the garbage collector stops tracking at its next pass (a nested new tuple can take a pass per level,
and each object still tracked when it reaches the oldest generation brings the next full collection closer)."""

_generation = 0
"""Bumped whenever ``_SEGMENTS`` is cleared: each spec part's own memo of its segments (``NetSpec._walk``)
is dropped at its next use, so it holds no more than ``_SEGMENTS`` does."""


def _clear_segments() -> None:
    global _generation
    _SEGMENTS.clear()
    _generation += 1


CACHE_SIZE = 1 << 18
"""Entries each large trace or cost cache holds (an LRU cache drops its least recently used entry, a
plain dict empties when full)."""


_FIELDS: dict[type, attrgetter[Any]] = {
    cls: attrgetter(*(f.name for f in dataclasses.fields(cls))) for cls in (StemSpec, StageSpec, HeadSpec, SGSSpec)
}


def _values(part: object) -> tuple[Any, ...]:
    """A spec part's field values, in order (every part has at least two fields, so this is a tuple)."""
    values: tuple[Any, ...] = _FIELDS[type(part)](part)
    return values


def segment_units(key: SegmentKey, part: Any) -> Iterator[tuple[str, BlockFn, dict[str, Any]]]:
    """The units of one segment (``part`` is its spec part) as (module path, block function, keyword arguments),
    each unit with a dictionary of its own."""
    j = 0
    for fn, kw, repeats in segment_calls(key, part):
        for _ in range(repeats):
            yield _unit_path(key, j), fn, dict(kw)
            j += 1


def segment_calls(key: SegmentKey, part: Any) -> Iterator[tuple[BlockFn, dict[str, Any], int]]:
    """The units of one segment as (block function, keyword arguments, how many units in a row are called
    so): a stage's first unit, then its other ``repeats - 1``, which all take the same arguments."""
    kind = key[0]
    if kind == "stage":
        fn = BLOCKS[part.block].fn
        yield fn, part.unit_kwargs(key[2], 0), 1
        if part.repeats > 1:
            yield fn, part.unit_kwargs(part.channels, 1), part.repeats - 1
    elif kind == "stem":
        s = part
        yield stem, {"channels": s.channels, "kernel": s.kernel, "stride": s.stride, "bias": s.bias, "act": s.act, "pool": s.pool}, 1
    elif kind == "sgs":
        g = part
        yield similarity_sampling, {"bins": g.bins, "embed": g.embed, "bin_width": g.bin_width, "multiple": g.multiple}, 1
    else:
        h = part
        yield head, {"kind": h.kind, "channels": h.channels, "act": h.act, "num_classes": key[1], "dropout": key[2]}, 1


def _unit_path(key: SegmentKey, j: int) -> str:
    """Module path of unit ``j`` of a segment: ``stages.2.0``, ``sgs.1`` (``SGSSpec.path``), ``stem`` or ``head``."""
    if key[0] == "stage":
        return f"stages.{key[1]}.{j}"
    return f"sgs.{key[1]}" if key[0] == "sgs" else str(key[0])


def _trace_segment(trace_key: SegmentKey, part: Any) -> tuple[Any, ...]:
    """Trace a segment unit by unit (each cached by :func:`_unit`) and remember ``(output shape, *unit keys)``
    in ``_SEGMENTS``. A call repeated on the input it just returned (a stage's units after the first keep
    their shape) is the same unit, not looked up again. Raises :class:`BlockError` (and remembers nothing)
    on a bad unit."""
    x, bins = trace_key[-2:]
    units = []
    for fn, kw, repeats in segment_calls(trace_key, part):
        call = (fn.__name__, tuple(kw), tuple(kw.values()))
        unit, y = _unit((*call, x, bins))
        units.append(unit)
        for _ in range(repeats - 1):
            if y != x:  # the unit changed the shape: the next one has another input
                x = y
                unit, y = _unit((*call, x, bins))
            units.append(unit)
        x = y
    if len(_SEGMENTS) >= CACHE_SIZE:
        _clear_segments()
    trace = _SEGMENTS[trace_key] = (x, *units)
    return trace


@lru_cache(maxsize=CACHE_SIZE)
def _unit(unit: UnitKey) -> tuple[UnitKey, Shape]:
    """The first key equal to ``unit`` (one object per unit, kept untracked by the garbage collector) and
    the unit's output shape. A failing trace raises :class:`BlockError` and is not cached."""
    return unit, trace_unit(unit)[0]


@lru_cache(maxsize=64)
def trace_unit(unit: UnitKey) -> tuple[Shape, tuple[Layer, ...]]:
    """A unit's output shape and layers (names relative to the unit). Block functions are pure, so this
    is cached, but for the last 64 units only: layers are objects that every garbage collection visits,
    and a large cache of them slows every full collection down (:func:`_unit` keeps the shapes)."""
    name, names, values, x, bins = unit
    tracer = Tracer(None if bins is None else {"": bins})
    y = _UNIT_FNS[name](tracer, x, **dict(zip(names, values, strict=True)))
    return y, tuple(tracer.layers)


def clear_trace_cache() -> None:
    """Forget every cached unit and segment trace and the stages found valid (benchmarks time the uncached
    path with it)."""
    _unit.cache_clear()
    trace_unit.cache_clear()
    _clear_segments()
    _VALID_STAGES.clear()


def _named(units: UnitLayers) -> tuple[Layer, ...]:
    """The layers of every unit with their full module paths."""
    return tuple(
        layer._replace(name=f"{path}.{layer.name}" if layer.name else path) if path else layer for path, layers in units for layer in layers
    )


def _lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    return value


def _as_dict(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(path, f"must be a JSON object, got {value!r}")
    return dict(value)


def _section(data: dict[str, Any], name: str, *, required: bool) -> dict[str, Any]:
    if name not in data:
        if required:
            raise SpecError(name, "is missing")
        return {}
    return _as_dict(data.pop(name), name)


def _kwargs(cls: type, data: dict[str, Any], path: str) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise SpecError(f"{path}{key}", f"unknown field; expected one of {', '.join(sorted(names))}")
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [m for m in missing if m not in ("stem", "stages")]
    if missing:
        raise SpecError(f"{path}{missing[0]}", "is missing")
    return data
