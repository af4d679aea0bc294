"""Latency tables: what each block of a network costs on one device, and a predictor built on them.

A *table* holds, for one device, precision, clip and batch size, the measured latency of distinct
*blocks* (:class:`Block`): the units a spec is made of (the stem, one block of a stage with its input
channels, output channels, stride and other arguments at its input size, the head), exactly as
:meth:`space.spec.NetSpec.traced_segments` cuts a network into units. Each is built and timed alone as
one module, on the eager path and, on CPU, on the optimized path
(:func:`profiler.optimize.optimize_for_inference`: BatchNorm folded, average pools as convolutions,
channels-last-3d, frozen TorchScript), so whatever a block's layers cost together (a concatenation that changes the fused
graph's layout, a shuffle) is in its entry. The table also holds ``call_ms``: what calling a module
that does nothing costs on each path, which every block timed alone pays once and a whole network
pays once in all.

Pricing a block (:meth:`LatencyTable.price`) takes its entry when the table has one; otherwise a
regression fitted on the entries of its class (same block function, same arguments other than
sizes, same sequence of layer kinds): ``ms = c0 + c1 * macs + c2 * elements + c3 * elements^1.5``
(non-negative coefficients, fitted on relative error; the last term, for a class of at least
:data:`SIZE_TERM_ENTRIES` entries, lets the cost of an element grow with the block, whose large maps
miss the caches), used only when the block's multiply-adds and elements both
lie within the range the class was measured at. Anything else raises :class:`UnpricedLayerError`:
never a silent extrapolation.

A network's predicted latency (:meth:`LatencyTable.predict`) is ``call + sum over its blocks of
(price - call)``, times a per-network scale: the median ratio of measured to summed over calibration
networks measured whole with the table (the network's own family's, when the table has enough of them),
each summed as a prediction sums it: from the entries the table happens to have and the regressions,
so that the scale also corrects what the regressions miss on average.
Prediction reads the spec's traced units; no model is built.

A block timed while something else takes a core (two threads on a two-core machine wait a whole
time slice at every parallel region) can read 10-200x slow; after measuring, a build times again
every entry more than :data:`RECHECK_RATIO` times its class's fit and keeps the faster reading.

A build times its blocks and calibration networks, and :func:`compare` its networks, in a seeded random
order (:func:`measuring_order`): a machine whose speed drifts while it measures (a shared VM's does, by 10% and
more within minutes) then spreads that drift over every class, family and group as noise, instead of making the
ones measured together all slow or all fast, and the scale fitted on the calibration networks sees the same
machine on average as the blocks it scales.

A build ends by timing up to :data:`REPEAT_NETWORKS` of its calibration networks a second time
(:func:`repeatability`): how far those second timings lie from the first, minutes apart, is what this
device's own readings vary by, and so the floor under any prediction's error on it (``repeat``, printed
by ``e3d latency-table`` and next to every prediction of ``e3d profile``).

Tables are JSON files written atomically every few seconds and whenever a build stops, so an
interrupted build resumes without re-measuring what it has (:func:`build_table`).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import json
import math
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import fmean, median
from typing import Any

import torch
from torch import nn

from profiler.allocator import ENV, allocator
from profiler.latency import device_name, resolve_device, time_model, torch_threads
from space.blocks import BLOCKS
from space.ops import Layer, Shape, Triple
from space.spec import E3DError, JSONError, NetSpec, StageSpec, UnitKey, parse_json, trace_unit

SCHEMA = "e3d-latency-table/2"
"""Version 2: block entries (version 1 held operation entries and is refused)."""
PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
MODES = ("eager", "optimized")
"""The eager model, and e3d's optimized inference path (CPU, fp32)."""
SIZE_ARGS = frozenset({"cin", "channels", "squeeze", "expansion", "num_classes", "dropout"})
"""Block arguments that set sizes: a regression class spans them (its features follow them)."""
UNPRICED_BLOCKS = ("similarity_sampling",)
"""Similarity Guided Sampling: its cost depends on the clip; a table never prices it."""


class LatencyTableError(E3DError):
    """A latency table that is corrupt, incomplete, or measured with other settings than asked."""


class UnpricedLayerError(LatencyTableError):
    """A block the table has no entry for and cannot interpolate."""


# -- blocks ----------------------------------------------------------------------------------------


@functools.cache
def _block_fns() -> dict[str, Any]:
    """Every block function a unit can run, by name."""
    from space.blocks import BLOCKS, head, stem

    fns: tuple[Any, ...] = (stem, head, *(b.fn for b in BLOCKS.values()))
    return {fn.__name__: fn for fn in fns}


@dataclass(frozen=True)
class Block:
    """One unit of a network: its block function, that function's arguments, and its input shape.

    ``names`` and ``values`` are the keyword arguments in the order the spec passes them; the input
    shape is per clip, (C, T, H, W). Equal blocks are built and run alike in any network.
    """

    fn: str
    names: tuple[str, ...]
    values: tuple[Any, ...]
    in_shape: Shape

    @classmethod
    def of(cls, unit: UnitKey) -> Block:
        """The block of a traced unit (``NetSpec.traced_segments`` lists them)."""
        return cls(unit[0], unit[1], unit[2], unit[3])

    @property
    def unit(self) -> UnitKey:
        """The unit key :func:`space.spec.trace_unit` traces (no SGS bins: a table never prices SGS)."""
        return (self.fn, self.names, self.values, self.in_shape, None)

    @functools.cached_property
    def key(self) -> str:
        """The table key: block function, every argument, input shape."""
        args = ",".join(f"{n}={_fmt(v)}" for n, v in zip(self.names, self.values, strict=True))
        return f"{self.fn}|{args}|{_dims(self.in_shape)}"

    @functools.cached_property
    def traced(self) -> tuple[Shape, tuple[Layer, ...]]:
        """Output shape and layers (``ValueError`` for a block that cannot be traced)."""
        from space.ops import BlockError

        if self.fn in UNPRICED_BLOCKS or self.fn not in _block_fns():
            raise ValueError(f"a latency table cannot time block {self.fn!r}")
        try:
            return trace_unit(self.unit)
        except (BlockError, TypeError) as e:
            raise ValueError(f"block {self.key} cannot be traced: {e}") from None

    @property
    def out_shape(self) -> Shape:
        """Output shape per clip."""
        return self.traced[0]

    @functools.cached_property
    def cls(self) -> str:
        """The regression class: block function, arguments other than sizes, layer kinds in order."""
        args = ",".join(f"{n}={_fmt(v)}" for n, v in zip(self.names, self.values, strict=True) if n not in SIZE_ARGS)
        kinds = "+".join(layer.kind for layer in self.traced[1] if layer.kind != "dropout")
        return f"{self.fn}|{args}|{kinds}"

    @functools.cached_property
    def features(self) -> tuple[int, int]:
        """What a class regression prices from: multiply-adds and elements moved (inputs plus outputs
        of every layer), per clip."""
        layers = [layer for layer in self.traced[1] if layer.kind != "dropout"]
        return sum(map(_macs, layers)), sum(math.prod(la.in_shape) + math.prod(la.out_shape) for la in layers)

    @property
    def macs(self) -> int:
        """Multiply-adds per clip (convolutions and linear layers)."""
        return self.features[0]

    @property
    def elements(self) -> int:
        """Elements every layer reads and writes, per clip."""
        return self.features[1]

    @property
    def dims(self) -> tuple[int, ...]:
        """Shapes and features: a designed sample takes each class's extremes of every one."""
        return (*self.in_shape, *self.out_shape, *self.features)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"block": self.fn, "args": dict(zip(self.names, map(_lists, self.values), strict=True)), "in_shape": list(self.in_shape)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Block:
        """Inverse of :meth:`to_dict` (``ValueError``/``KeyError``/``TypeError`` on a malformed dict or a
        block that cannot be traced)."""
        args = d["args"]
        if not isinstance(args, dict):
            raise ValueError(f"expected the block's arguments as an object, got {args!r}")
        args = _as_passed_now(str(d["block"]), args)
        values = tuple(tuple(v) if isinstance(v, list) else v for v in args.values())
        block = cls(str(d["block"]), tuple(args), values, _ints(d["in_shape"]))
        block.traced  # noqa: B018 - a block that cannot be traced is a corrupt entry
        return block


def _as_passed_now(fn: str, args: dict[str, Any]) -> dict[str, Any]:
    """A stored stage block's arguments in the order a spec passes them today (``StageSpec.unit_kwargs``),
    an argument the block gained since the table was written at the stage field's default, which builds
    the block as before (e.g. ShuffleNetV1's ``expansion``). Other blocks, and arguments no stage has, as stored."""
    if fn not in BLOCKS:
        return args
    names = ("cin", "channels", "act", "stride", *BLOCKS[fn].fields)
    defaults = {f.name: f.default for f in dataclasses.fields(StageSpec)}
    if not set(args) <= set(names) or not set(names) - set(args) <= set(defaults):
        return args
    return {n: args[n] if n in args else defaults[n] for n in names}


def _macs(layer: Layer) -> int:
    if layer.kind == "conv":
        return math.prod(layer.out_shape) * (layer.in_shape[0] // layer.groups) * math.prod(layer.kernel)
    return layer.in_shape[0] * layer.out_shape[0] if layer.kind == "linear" else 0


def _lists(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def _dims(t: Sequence[int]) -> str:
    return "x".join(map(str, t))


def _ints(v: Any) -> tuple[int, ...]:
    if not isinstance(v, list) or not all(isinstance(i, int) for i in v):
        raise ValueError(f"expected a list of integers, got {v!r}")
    return tuple(v)


def _triple(v: Any) -> Triple:
    t = _ints(v)
    if len(t) != 3:
        raise ValueError(f"expected 3 integers, got {v!r}")
    return (t[0], t[1], t[2])


def spec_units(spec: NetSpec) -> Iterator[UnitKey]:
    """A network's units in execution order, as traced (a stage's repeated unit once per repeat)."""
    for _, trace in spec.traced_segments():
        yield from trace[1:]


def spec_blocks(spec: NetSpec) -> list[Block]:
    """A network's blocks in execution order (see :func:`spec_units`)."""
    return [Block.of(u) for u in spec_units(spec)]


def collect_blocks(specs: Iterable[NetSpec]) -> dict[str, Block]:
    """Every distinct block of ``specs`` (first seen first), keyed by :attr:`Block.key`; SGS units are left out."""
    out: dict[str, Block] = {}
    for spec in specs:
        for unit in dict.fromkeys(spec_units(spec)):
            if unit[0] not in UNPRICED_BLOCKS:
                block = Block.of(unit)
                out.setdefault(block.key, block)
    return out


def design_sample(blocks: Mapping[str, Block], max_entries: int, *, keep: Iterable[str] = ()) -> list[Block]:
    """The blocks to measure: all of them when at most ``max_entries``; otherwise, per class, the
    ones at the extremes of every dimension (so the measured ranges cover every collected block),
    the ``keep`` keys, and then points spread evenly over each class's cost, in proportion to its size."""
    if len(blocks) <= max_entries:
        return list(blocks.values())
    classes: dict[str, list[Block]] = {}
    for b in blocks.values():
        classes.setdefault(b.cls, []).append(b)
    chosen = {k: blocks[k] for k in keep if k in blocks}
    for members in classes.values():
        for d in range(len(members[0].dims)):
            ranked = sorted(members, key=lambda b, d=d: (b.dims[d], b.elements))  # type: ignore[misc]
            for b in (ranked[0], ranked[-1]):
                chosen.setdefault(b.key, b)
    left = max_entries - len(chosen)
    for members in classes.values():
        share = round(left * len(members) / len(blocks))
        ranked = sorted(members, key=lambda b: b.features)
        for j in range(share):
            b = ranked[round((j + 0.5) * (len(ranked) - 1) / max(share, 1))]
            chosen.setdefault(b.key, b)
    return list(chosen.values())


# -- settings and measurement ----------------------------------------------------------------------


@dataclass(frozen=True)
class TableSettings:
    """Where and how a table is measured."""

    device: str
    device_name: str
    threads: int
    torch_version: str
    precision: str
    clip: Triple
    batch_size: int
    modes: tuple[str, ...]
    warmup: int
    repeats: int

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise LatencyTableError(f"unknown precision {self.precision!r}; choose from {', '.join(PRECISIONS)}")
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise LatencyTableError(f"unknown path {', '.join(bad) or '(none)'}; choose from {', '.join(MODES)}")
        if "optimized" in self.modes and (not self.device.startswith("cpu") or self.precision != "fp32"):
            raise LatencyTableError("the optimized path (oneDNN) is CPU fp32 only; use --paths eager on this device or precision")
        if min(self.batch_size, self.repeats, self.threads, *self.clip) < 1 or self.warmup < 0:
            raise LatencyTableError("batch size, clip, threads and repeats must be >= 1 and warmup >= 0")

    @classmethod
    def here(
        cls,
        *,
        device: str = "cpu",
        precision: str = "fp32",
        clip: Triple = (16, 112, 112),
        batch_size: int = 8,
        modes: Sequence[str] | None = None,
        threads: int | None = None,
        warmup: int = 2,
        repeats: int = 5,
    ) -> TableSettings:
        """Settings for measuring on ``device`` of this machine (default paths: both on CPU, eager on CUDA)."""
        dev = resolve_device(device)
        chosen = tuple(modes) if modes else (MODES if dev.type == "cpu" and precision == "fp32" else ("eager",))
        n = threads if threads is not None else torch.get_num_threads()
        return cls(str(dev), device_name(dev), n, torch.__version__, precision, clip, batch_size, chosen, warmup, repeats)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TableSettings:
        """Inverse of :meth:`as_dict`."""
        names = {f: d[f] for f in cls.__dataclass_fields__}
        return cls(**{**names, "clip": _triple(d["clip"]), "modes": tuple(str(m) for m in d["modes"])})

    def describe(self) -> str:
        """Short text: device, threads, precision, clip, batch."""
        return (
            f"{self.device} ({self.device_name}), {self.threads} thread{'s' if self.threads != 1 else ''}, torch {self.torch_version}, "
            f"{self.precision}, clip {_dims(self.clip)}, batch {self.batch_size}"
        )


def block_module(block: Block) -> nn.Module:
    """The block as the module a network built from a spec runs (:class:`space.modules.Unit`);
    ``ValueError`` for what a table cannot time (Similarity Guided Sampling)."""
    from space.modules import Unit

    layers = [layer._replace(name=f"u.{layer.name}") for layer in block.traced[1]]
    return Unit(_block_fns()[block.fn], dict(zip(block.names, block.values, strict=True)), layers, "u")


def time_module(model: nn.Module, input_shape: Shape, settings: TableSettings, mode: str) -> float:
    """Median ms of ``model`` on a batch of ``input_shape`` inputs, on the ``mode`` path."""
    from profiler.optimize import OptimizeOptions, optimize_for_inference

    dev, dtype = torch.device(settings.device), PRECISIONS[settings.precision]
    model = model.eval()
    if mode == "optimized":
        options = OptimizeOptions(channels_last=len(input_shape) == 4)
        model = optimize_for_inference(model, input_shape=input_shape, batch_size=settings.batch_size, options=options, check=False)
    else:
        model = model.to(dev, dtype)
    x = torch.randn(settings.batch_size, *input_shape).to(dev, dtype)
    if mode == "optimized" and x.dim() == 5:  # the network's maps are channels-last after its input
        x = x.contiguous(memory_format=torch.channels_last_3d)
    with torch_threads(settings.threads):
        return median(time_model(model, x, dev, settings.warmup, settings.repeats))


def measure_block(block: Block, settings: TableSettings, mode: str) -> float:
    """Measured median ms per batch of one block on the ``mode`` path."""
    return time_module(block_module(block), block.in_shape, settings, mode)


def measure_spec(spec: NetSpec, settings: TableSettings, mode: str) -> float:
    """Measured median ms per batch of a whole network (at its own clip) on the ``mode`` path."""
    from space.modules import build

    return time_module(build(spec), spec.input_shape, settings, mode)


CALL_REPEATS = 51
"""Timed calls of the empty module (:func:`measure_call`) at least: it is short, and noisy."""


def measure_call(settings: TableSettings, mode: str) -> float:
    """Median ms of calling a module that does nothing, on the ``mode`` path: what each block timed
    alone pays once, and a whole network once in all (the optimized path's graph call, most of all)."""
    at_least = dataclasses.replace(settings, repeats=max(settings.repeats, CALL_REPEATS))
    return time_module(nn.Identity(), (1, 1, 1, 1), at_least, mode)


# -- the table -------------------------------------------------------------------------------------


@dataclass
class Regression:
    """``ms = c0 + c1 * macs + c2 * elements + c3 * elements^1.5`` (macs and elements per million) over
    one class, valid within the measured range ``low..high`` of (macs, elements)."""

    coef: tuple[float, float, float, float]
    low: tuple[int, int]
    high: tuple[int, int]

    def covers(self, block: Block) -> bool:
        """Whether the multiply-adds and elements of ``block`` lie within the measured range (interpolation)."""
        (m, e), (m0, e0), (m1, e1) = block.features, self.low, self.high
        return m0 <= m <= m1 and e0 <= e <= e1

    def __call__(self, block: Block) -> float:
        return sum(c * f for c, f in zip(self.coef, regression_features(block), strict=True))


def regression_features(block: Block) -> tuple[float, float, float, float]:
    """The terms a class regression weighs: 1, multiply-adds, elements and elements^1.5 (per million).

    The last one since 2026-12-05: with the first three alone, fitted on relative error over many small
    blocks, the entries of 8 ms or more measured a median 1.05-1.35x their class's price (per block
    function and path, that day's table), and large networks were priced low (docs/LATENCY.md)."""
    e = block.elements / 1e6
    return 1.0, block.macs / 1e6, e, e**1.5


@dataclass(frozen=True)
class Overhead:
    """Per-network correction: ``scale * sum of the blocks``, fitted on ``networks``."""

    scale: float = 1.0
    networks: int = 0


@dataclass(frozen=True)
class Repeat:
    """How well a device repeated its own timings: ``networks`` timed a second time, minutes after the first;
    the mean absolute percentage difference of the second timing from the first, the share (percent) of
    networks whose second timing lies within +-10% of the first, and the geometric mean of second / first
    (away from 1: the device's speed drifted between the two, as :func:`recalibrate` measures)."""

    networks: int
    mape: float
    within_10: float
    ratio: float

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Repeat:
        """Inverse of ``asdict`` (``KeyError``/``TypeError``/``ValueError`` for a missing field or one that is no number)."""
        return cls(int(d["networks"]), float(d["mape"]), float(d["within_10"]), float(d["ratio"]))

    def describe(self) -> str:
        """One line for a person."""
        return (
            f"{self.within_10:.0f}% of {self.networks} calibration networks timed again came within +-10% of their first "
            f"timing (mean difference {self.mape:.1f}%; {self.ratio:.2f}x their first time in the geometric mean)"
        )


Times = dict[str, float]
"""Milliseconds per path (``{"eager": ..., "optimized": ...}``)."""


@dataclass
class LatencyTable:
    """Measured blocks of one device and setting, plus calibration networks (see the module doc)."""

    settings: TableSettings
    entries: dict[str, tuple[Block, Times]] = field(default_factory=dict)
    networks: list[tuple[NetSpec, Times]] = field(default_factory=list)
    call_ms: Times = field(default_factory=dict)
    planned: int = 0
    complete: bool = False
    created: str = ""
    allocator: str = "system"
    """How malloc ran while it was measured (:func:`profiler.allocator.allocator`; tables from before it: system)."""
    recalibrated: str = ""
    """When :func:`recalibrate` last timed the calibration networks again (ISO time; empty: never)."""
    repeat: dict[str, Repeat] = field(default_factory=dict)
    """Per path, how well the device repeated its timings of the calibration networks (:func:`repeatability`;
    empty: not checked, as in tables from before 2026-12-06). Not part of the fingerprint."""
    size_term: bool = field(default=True, compare=False)
    """Whether class regressions get their elements^1.5 term (:func:`fit_regression`); off, they are the
    three-term ones used until 2026-12-05 (``bench.latency_predictor`` scores both). Not saved."""
    rechecked: int = field(default=0, init=False, compare=False, repr=False)
    """Entries the last :func:`build_table` timed again (see :meth:`outliers`); not saved."""
    _fits: dict[str, dict[str, Regression | None]] = field(default_factory=dict, init=False, repr=False)
    _overheads: dict[tuple[str, str | None], Overhead] = field(default_factory=dict, init=False, repr=False)
    _prices: dict[str, dict[UnitKey, float]] = field(default_factory=dict, init=False, repr=False)

    # -- persistence

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (what :meth:`save` writes)."""
        return {
            "schema": SCHEMA,
            "complete": self.complete,
            "created": self.created,
            "allocator": self.allocator,
            "recalibrated": self.recalibrated,
            "repeat": {m: asdict(r) for m, r in self.repeat.items()},
            "planned": self.planned,
            "settings": self.settings.as_dict(),
            "call_ms": self.call_ms,
            "entries": [{**b.to_dict(), "ms": ms} for b, ms in self.entries.values()],
            "networks": [{"summary": s.summary(), "spec": s.to_dict(), "ms": ms} for s, ms in self.networks],
        }

    def save(self, path: str | Path) -> Path:
        """Write the table atomically (a temporary file in the same folder, renamed into place)."""
        from space.files import write_text

        return write_text(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LatencyTable:
        """Inverse of :meth:`to_dict` (``KeyError``/``TypeError``/``ValueError`` when malformed)."""
        if d.get("schema") != SCHEMA:
            raise ValueError(f"schema {d.get('schema')!r}, expected {SCHEMA!r}")
        settings = TableSettings.from_dict(d["settings"])
        call = d["call_ms"]
        table = cls(
            settings,
            call_ms=_times(call, settings.modes) if call else {},
            planned=int(d["planned"]),
            complete=bool(d["complete"]),
            created=str(d["created"]),
            allocator=str(d.get("allocator", "system")),
            recalibrated=str(d.get("recalibrated", "")),
            repeat={str(m): Repeat.from_dict(r) for m, r in d.get("repeat", {}).items()},
        )
        for e in d["entries"]:
            block = Block.from_dict(e)
            table.entries[block.key] = (block, _times(e["ms"], settings.modes))
        for n in d["networks"]:
            table.networks.append((NetSpec.from_dict(n["spec"]), _times(n["ms"], settings.modes)))
        return table

    @classmethod
    def load(cls, path: str | Path, *, complete: bool = True) -> LatencyTable:
        """Read a table; :class:`LatencyTableError` (one line) when it is missing, corrupt, truncated, of
        an older format or, with ``complete``, still being built."""
        path = Path(path)
        try:
            data = parse_json(path.read_text())
        except OSError as e:
            raise LatencyTableError(f"cannot read latency table {path}: {e.strerror}") from None
        except (JSONError, UnicodeDecodeError) as e:
            raise LatencyTableError(f"{path} is not a latency table (corrupt or truncated JSON: {e})") from None
        schema = data.get("schema") if isinstance(data, dict) else None
        if isinstance(schema, str) and schema.startswith("e3d-latency-table/") and schema != SCHEMA:
            raise LatencyTableError(
                f"{path} is a latency table of another format ({schema}; this e3d reads {SCHEMA}, block entries): "
                "build it again with e3d latency-table"
            )
        try:
            table = cls.from_dict(data)
        except (KeyError, TypeError, ValueError, AttributeError, E3DError) as e:
            raise LatencyTableError(f"{path} is a corrupt latency table ({type(e).__name__}: {e})") from None
        if complete and not table.complete:
            raise LatencyTableError(
                f"{path} is incomplete ({len(table.entries)} of {table.planned} blocks measured): "
                "finish it by running the same e3d latency-table command again"
            )
        return table

    def fingerprint(self) -> str:
        """SHA-256 of the settings and every measurement (what identifies a table on a study)."""
        d = self.to_dict()
        body = json.dumps({k: d[k] for k in ("settings", "call_ms", "entries", "networks")}, sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()

    def identity(self) -> dict[str, Any]:
        """The table's settings and fingerprint (stored on a study that screens with it)."""
        return {**self.settings.as_dict(), "entries": len(self.entries), "sha256": self.fingerprint()}

    # -- checks and pricing

    def check(self, *, clip: Sequence[int], batch_size: int, precision: str = "fp32", mode: str = "eager") -> None:
        """:class:`LatencyTableError` naming every setting that differs from what is asked."""
        s = self.settings
        wrong = [
            f"{what} {_fmt(have)} (asked {_fmt(want)})"
            for what, have, want in (
                ("clip", s.clip, tuple(clip)),
                ("batch", s.batch_size, batch_size),
                ("precision", s.precision, precision),
            )
            if have != want
        ]
        if mode not in s.modes:
            wrong.append(f"paths {'/'.join(s.modes)} (asked {mode})")
        if wrong:
            raise LatencyTableError(f"the latency table was measured for {', '.join(wrong)}; build one with those settings")

    def price(self, block: Block, mode: str) -> float:
        """ms per batch of one block timed alone: its entry, or its class's regression within its range."""
        entry = self.entries.get(block.key)
        if entry is not None:
            return entry[1][mode]
        if block.fn in UNPRICED_BLOCKS:
            raise UnpricedLayerError(f"the latency table cannot price {block.fn} (Similarity Guided Sampling depends on the clip)")
        regressions = self._regressions(mode)
        fit = regressions.get(block.cls)
        if fit is None or not fit.covers(block):
            why = (
                "no entries of that kind of block"
                if block.cls not in regressions
                else "too few entries of that kind of block to interpolate"
                if fit is None
                else "outside the measured range"
            )
            raise UnpricedLayerError(f"the latency table cannot price {block.key} ({why}); rebuild it covering this network")
        return max(fit(block), 0.0)

    def block_sum(self, spec: NetSpec, mode: str) -> float:
        """``call + sum over the network's blocks of (price - call)`` (ms per batch, each block at least 0):
        the blocks' own times, and one module call. Each distinct block is priced once per table."""
        prices = self._prices.setdefault(mode, {})
        call = self.call_ms.get(mode, 0.0)
        total = call
        for unit in spec_units(spec):
            p = prices.get(unit)
            if p is None:
                p = prices[unit] = max(self.price(Block.of(unit), mode) - call, 0.0)
            total += p
        return total

    def predict(self, spec: NetSpec, mode: str = "eager", *, per_family: bool = True) -> float:
        """Predicted ms per batch of ``spec``: the sum of its blocks, then the per-network overhead (its
        family's, see :meth:`overhead`; the one fitted on all networks with ``per_family=False``)."""
        if mode not in self.settings.modes:
            raise LatencyTableError(f"the latency table has no {mode} measurements (paths: {', '.join(self.settings.modes)})")
        o = self.overhead(mode, spec.family if per_family else None)
        return o.scale * self.block_sum(spec, mode)

    def predictor(self, mode: str = "eager") -> Callable[[NetSpec], float]:
        """``predict`` for one path, as the search's latency callable."""
        return lambda spec: self.predict(spec, mode)

    def overhead(self, mode: str, family: str | None = None) -> Overhead:
        """The per-network overhead fitted on the calibration networks (none: 0 ms, scale 1); with a
        ``family``, on that family's networks alone when it has :data:`MIN_CALIBRATION` of them (what a
        family's blocks cost together differs by family), else on all of them. Each network is priced as a
        prediction prices it (:meth:`block_sum`); one the table cannot price is left out."""
        key = (mode, family)
        if key not in self._overheads:
            pairs = self._calibration_pairs(mode, family)
            if family is not None and len(pairs) < MIN_CALIBRATION:
                self._overheads[key] = self.overhead(mode)
            else:
                self._overheads[key] = fit_overhead(pairs)
        return self._overheads[key]

    def _calibration_pairs(self, mode: str, family: str | None) -> list[tuple[float, float]]:
        """(block sum, measured ms) of the calibration networks (of ``family``) that the table can price."""
        pairs = []
        for s, ms in self.networks:
            if family is None or s.family == family:
                try:
                    pairs.append((self.block_sum(s, mode), ms[mode]))
                except UnpricedLayerError:
                    continue
        return pairs

    def outliers(self) -> list[Block]:
        """Entries more than :data:`RECHECK_RATIO` times their class's regression on some path."""
        out = []
        for block, ms in self.entries.values():
            fits = [self._regressions(mode).get(block.cls) for mode in self.settings.modes]
            if any(f is not None and ms[m] > RECHECK_RATIO * f(block) for m, f in zip(self.settings.modes, fits, strict=True)):
                out.append(block)
        return out

    def forget_fits(self) -> None:
        """Drop the regressions, prices and overheads computed so far (after entries changed)."""
        self._fits.clear()
        self._prices.clear()
        self._overheads.clear()

    def _regressions(self, mode: str) -> dict[str, Regression | None]:
        if mode not in self._fits:
            classes: dict[str, list[tuple[Block, float]]] = {}
            for block, ms in self.entries.values():
                classes.setdefault(block.cls, []).append((block, ms[mode]))
            self._fits[mode] = {cls: fit_regression(points, size_term=self.size_term) for cls, points in classes.items()}
        return self._fits[mode]


def _fmt(v: Any) -> str:
    if isinstance(v, (tuple, list)):
        return _dims(v) if all(isinstance(i, int) for i in v) else "/".join(map(str, v))
    return str(v)


def _times(v: Any, modes: Sequence[str]) -> Times:
    """A ``{mode: ms}`` dict with a finite positive time for every mode (nothing runs in no time, and the
    overhead fit and recalibration divide by these)."""
    if not isinstance(v, dict):
        raise ValueError(f"expected a dict of times per path, got {v!r}")
    out = {m: float(v[m]) for m in modes}
    if not all(math.isfinite(t) and t > 0 for t in out.values()):
        raise ValueError(f"invalid times {v!r}: each must be a finite number of ms above 0")
    return out


def _nnls(rows: list[list[float]], target: list[float]) -> list[float]:
    """Non-negative least squares on relative error (each row divided by its target)."""
    import numpy as np
    from scipy.optimize import nnls

    a = np.array(rows, dtype=float) / np.array(target, dtype=float)[:, None]
    coef, _ = nnls(a, np.ones(len(target)))
    return [float(c) for c in coef]


def fit_regression(points: Sequence[tuple[Block, float]], *, size_term: bool = True) -> Regression | None:
    """The class regression (None with fewer than 3 distinct entries: exact lookups only); with
    ``size_term`` and at least :data:`SIZE_TERM_ENTRIES` entries, with its elements^1.5 term."""
    distinct = len({b.key for b, _ in points})
    if distinct < 3 or any(ms <= 0 for _, ms in points):
        return None
    terms = 4 if size_term and distinct >= SIZE_TERM_ENTRIES else 3
    coef = _nnls([list(regression_features(b))[:terms] for b, _ in points], [ms for _, ms in points]) + [0.0] * (4 - terms)
    macs, elements = [b.macs for b, _ in points], [b.elements for b, _ in points]
    return Regression((coef[0], coef[1], coef[2], coef[3]), (min(macs), min(elements)), (max(macs), max(elements)))


SIZE_TERM_ENTRIES = 8
"""Distinct entries a class needs before its regression gets the elements^1.5 term: with fewer, a fourth
coefficient could bend the fit towards one slow reading, which then looks like no outlier."""


MIN_CALIBRATION = 4
"""Calibration networks a family needs for an overhead of its own."""


def fit_overhead(pairs: Sequence[tuple[float, float]]) -> Overhead:
    """The median of measured / sum over (sum, measured) pairs with both > 0 (none: scale 1).

    A constant besides the scale was fitted before 2026-12-03; on three tables it priced held-out
    networks no better and, fitted on a few stalled calibration networks, far worse (docs/LATENCY.md).
    """
    ratios = [m / s for s, m in pairs if m > 0 and s > 0]
    return Overhead(median(ratios), len(ratios)) if ratios else Overhead()


# -- building --------------------------------------------------------------------------------------

SAVE_SECONDS = 10.0
"""How often a build saves its table while measuring blocks."""
RECHECK_RATIO = 2.0
"""An entry more than this many times its class's regression is timed again (a stall, most likely)."""
RECHECK_ROUNDS = 2
"""At most this many more timings of an outlier; each path keeps its fastest reading."""
ORDER_SEED = 0
"""The seed of :func:`measuring_order` in a build and in :func:`compare` (unless given)."""
MeasureBlock = Callable[[Block, TableSettings, str], float]
MeasureSpec = Callable[[NetSpec, TableSettings, str], float]
MeasureCall = Callable[[TableSettings, str], float]


def measuring_order(n: int, seed: int = ORDER_SEED) -> list[int]:
    """A seeded random permutation of ``range(n)``: the order in which ``n`` things are timed."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order


def open_for_build(path: Path, settings: TableSettings) -> LatencyTable:
    """The partial table at ``path`` to resume (same settings and allocator required), or a new one."""
    if not path.exists():
        created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        return LatencyTable(settings, created=created, allocator=allocator())
    table = LatencyTable.load(path, complete=False)
    if table.settings != settings:
        have, want = table.settings.as_dict(), settings.as_dict()
        diff = ", ".join(f"{k} {_fmt(have[k])} (asked {_fmt(want[k])})" for k in have if have[k] != want[k])
        raise LatencyTableError(f"{path} holds a table measured with other settings: {diff}; use another --out")
    if table.allocator != allocator():
        raise LatencyTableError(
            f"{path} was measured with malloc as {table.allocator}, this process runs it as {allocator()}: "
            f"resume with {ENV}={table.allocator} or use another --out"
        )
    return table


def _measured(measure: Callable[[str], float], what: str, settings: TableSettings) -> Times:
    """``measure(mode)`` on every path; a block this device or precision cannot run is one line."""
    out = {}
    for mode in settings.modes:
        try:
            out[mode] = measure(mode)
        except (RuntimeError, NotImplementedError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            where = f"{settings.precision} on {settings.device}, {mode}"
            raise LatencyTableError(f"cannot time {what} ({where}): {first}; the table so far is saved") from None
    return out


def build_table(
    blocks: Sequence[Block],
    settings: TableSettings,
    out: str | Path,
    *,
    calibration: Sequence[NetSpec] = (),
    measure: MeasureBlock = measure_block,
    measure_network: MeasureSpec = measure_spec,
    measure_empty: MeasureCall = measure_call,
    progress: bool = True,
) -> LatencyTable:
    """Measure the empty call (once), then every block of ``blocks`` and every ``calibration`` network not
    yet in the table at ``out`` (resuming it when it exists), all in one :func:`measuring_order`; then time
    some calibration networks again (:func:`repeatability`, once per table); marks the table complete at the end.

    The table is saved every :data:`SAVE_SECONDS` and whenever the build stops (an error, Ctrl-C), so
    a resumed build re-measures at most the last few seconds' work (none after Ctrl-C). Progress: a bar
    over everything left, with tqdm's estimate of the time left.
    """
    from tqdm import tqdm

    out = Path(out)
    table = open_for_build(out, settings)
    _check_plan(table, out, blocks, calibration)
    table.planned = len({b.key for b in blocks})
    todo = [b for b in dict.fromkeys(blocks) if b.key not in table.entries]
    done_nets = {s.to_json() for s, _ in table.networks}
    nets = [s for s in calibration if s.to_json() not in done_nets]
    finished, table.complete = table.complete, False
    saved = time.monotonic()
    bar = tqdm(total=len(todo) + len(nets), desc="latency table", unit="block", file=sys.stderr, disable=not progress or None)
    try:
        with bar:
            if not table.call_ms:
                table.call_ms = _measured(functools.partial(measure_empty, settings), "an empty module", settings)
            work: list[Block | NetSpec] = [*todo, *nets]
            for i in measuring_order(len(work)):
                item = work[i]
                if isinstance(item, Block):
                    table.entries[item.key] = (item, _measured(functools.partial(measure, item, settings), item.key, settings))
                else:
                    table.networks.append((item, {m: measure_network(item, settings, m) for m in settings.modes}))
                bar.update(1)
                if time.monotonic() - saved > SAVE_SECONDS:
                    table.save(out)
                    saved = time.monotonic()
            if todo or nets or not finished:  # also when a build stopped while re-timing resumes
                table.rechecked = _recheck(table, measure)
        if not table.repeat:
            table.repeat = repeatability(table, measure_network=measure_network, progress=progress)
        table.complete = True
    finally:
        table.save(out)
    return table


def _check_plan(table: LatencyTable, out: Path, blocks: Sequence[Block], calibration: Sequence[NetSpec]) -> None:
    """:class:`LatencyTableError` when the table being resumed holds blocks or calibration networks that ``blocks``
    and ``calibration`` do not (a resume with other families, samples, seed or calibration would mix two plans)."""
    keys, nets = {b.key for b in blocks}, {s.to_json() for s in calibration}
    stray = sum(k not in keys for k in table.entries)
    stray_nets = sum(s.to_json() not in nets for s, _ in table.networks)
    if stray or stray_nets:
        raise LatencyTableError(
            f"{out} holds {stray} blocks and {stray_nets} calibration networks that this plan does not (other --families, "
            "--samples, --seed, --calibration or --max-entries than it was begun with?); resume with those, or use another --out"
        )


def _recheck(table: LatencyTable, measure: MeasureBlock) -> int:
    """Time every outlier (:meth:`LatencyTable.outliers`) again, up to :data:`RECHECK_ROUNDS` times,
    keeping each path's faster reading; the number of blocks timed again."""
    again: set[str] = set()
    for _ in range(RECHECK_ROUNDS):
        blocks = table.outliers()
        if not blocks:
            break
        for b in blocks:
            new = _measured(functools.partial(measure, b, table.settings), b.key, table.settings)
            old = table.entries[b.key][1]
            table.entries[b.key] = (b, {m: min(old[m], new[m]) for m in old})
            again.add(b.key)
        table.forget_fits()
    return len(again)


def recalibrate(table: LatencyTable, *, measure_network: MeasureSpec = measure_spec, progress: bool = True) -> Times:
    """Time the table's calibration networks again, with its settings, and keep the new times; per path, the
    geometric mean over the networks of the new time over the old (0.95: the device is 5% faster now).

    A device's speed drifts (another tenant of the host, clocks, where a virtual machine's cores sit), and a
    table keeps the speed of the hour it was built. The per-network overhead is fitted on these networks
    (:meth:`LatencyTable.overhead`), so after this every prediction follows the device's speed of the moment
    while the blocks keep their relative costs (speed that moves from minute to minute it cannot follow:
    docs/LATENCY.md measured both outcomes). Stamps :attr:`LatencyTable.recalibrated`; the caller saves the table
    (its fingerprint changes: a study screened with the old one refuses it). Refuses a table measured on
    another device, torch or malloc setting (:func:`check_here`).
    """
    check_here(table)
    if not table.networks:
        raise LatencyTableError("the latency table has no calibration networks to time again (built with --calibration 0)")
    new = _time_again(table, table.networks, measure_network, desc="calibration networks", progress=progress)
    drift = {m: _geometric_mean(r) for m, r in _ratios(new, table.networks).items()}
    table.networks = [(spec, n) for (spec, _), n in zip(table.networks, new, strict=True)]
    table.recalibrated = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    table.forget_fits()
    return drift


REPEAT_NETWORKS = 10
"""Calibration networks a build times a second time at its end (:func:`repeatability`)."""


def repeatability(table: LatencyTable, *, measure_network: MeasureSpec = measure_spec, progress: bool = True) -> dict[str, Repeat]:
    """Time the first :data:`REPEAT_NETWORKS` calibration networks of ``table`` again, with its settings, and say
    per path how far the second timings lie from the first (:class:`Repeat`; empty without networks). What this
    device's own readings vary by, minutes apart, is the floor under any prediction's error on it (docs/LATENCY.md);
    the table's times stay as they are."""
    nets = table.networks[:REPEAT_NETWORKS]
    new = _time_again(table, nets, measure_network, desc="timing again", progress=progress)
    out = {}
    for m, ratios in _ratios(new, nets).items():
        mape, within_10 = error_summary([100 * abs(r - 1) for r in ratios])
        out[m] = Repeat(len(nets), mape, within_10, _geometric_mean(ratios))
    return out


def _time_again(
    table: LatencyTable, networks: Sequence[tuple[NetSpec, Times]], measure_network: MeasureSpec, *, desc: str, progress: bool
) -> list[Times]:
    """Time ``networks`` (some of the table's calibration networks) again with the table's settings, on every path."""
    from tqdm import tqdm

    bar = tqdm(networks, desc=desc, unit="net", file=sys.stderr, disable=not progress or None)
    return [{m: measure_network(spec, table.settings, m) for m in table.settings.modes} for spec, _ in bar]


def _ratios(new: Sequence[Times], networks: Sequence[tuple[NetSpec, Times]]) -> dict[str, list[float]]:
    """Per path, each network's new time over its stored one, in their order."""
    return {m: [n[m] / old[m] for n, (_, old) in zip(new, networks, strict=True)] for m in (new[0] if new else {})}


def _geometric_mean(values: Sequence[float]) -> float:
    return math.exp(fmean(map(math.log, values)))


def check_here(table: LatencyTable) -> None:
    """:class:`LatencyTableError` unless this process measures as the table was measured: the same device
    (a CPU's model, ISA and flags: :func:`profiler.latency.device_name`), torch version and malloc setting
    (threads, clip and batch come from the table's settings)."""
    s = table.settings
    here = {"device": device_name(resolve_device(s.device)), "torch": torch.__version__, "malloc": allocator()}
    have = {"device": s.device_name, "torch": s.torch_version, "malloc": table.allocator}
    diff = [f"{k} {have[k]} (here {here[k]})" for k in have if have[k] != here[k]]
    if diff:
        raise LatencyTableError(f"the latency table was measured with another {', '.join(diff)}; build one here (e3d latency-table)")


def predicted_latency(
    path: str | Path, spec: NetSpec | None, *, batch_size: int, optimized: bool = False, precision: str = "fp32"
) -> dict[str, Any]:
    """What ``e3d profile --latency-table`` adds: the predicted ms per batch of ``spec`` on the eager (or
    optimized) path in ``precision`` (what the profile times in), the table's identity and how well its device
    repeated its own timings on that path (:attr:`LatencyTable.repeat`; None: not checked);
    :class:`LatencyTableError` when the table does not fit. ``auto`` is refused: it chooses the precision
    while timing, so the table could price another one than is timed."""
    if spec is None:
        raise LatencyTableError("--latency-table prices an e3d network: give a preset or a spec file as TARGET")
    table = LatencyTable.load(path)
    if precision == "auto":
        raise LatencyTableError(
            "--precision auto picks the precision while timing; "
            f"with --latency-table give the table's: --precision {table.settings.precision}"
        )
    mode = "optimized" if optimized else "eager"
    table.check(clip=spec.clip, batch_size=batch_size, precision=precision, mode=mode)
    repeat = table.repeat.get(mode)
    return {
        "latency_predicted_ms": round(table.predict(spec, mode), 3),
        "latency_predicted_path": mode,
        "latency_table": table.identity(),
        "latency_table_repeat": asdict(repeat) if repeat else None,
    }


# -- how well the predictor predicts ---------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """One network on one path: predicted (None: the table cannot price it) and measured ms per batch,
    and, when :func:`compare` measured every network twice, the second measurement."""

    name: str
    group: str
    family: str
    mode: str
    macs: int
    predicted_ms: float | None
    measured_ms: float | None
    remeasured_ms: float | None = None


def compare(
    table: LatencyTable,
    specs: Sequence[tuple[str, str, NetSpec]],
    *,
    measure: MeasureSpec = measure_spec,
    remeasure: bool = False,
    progress: bool = True,
    seed: int = ORDER_SEED,
) -> list[Comparison]:
    """Predict and measure every (name, group, spec) on every path of the table, with its settings; the rows
    come in that order, the measurements are taken in ``seed``'s :func:`measuring_order`.

    A network the table cannot price is kept with ``predicted_ms`` None and is not measured. With
    ``remeasure``, a second pass over all of them, in the same order after the first has ended, measures
    each again (``remeasured_ms``): how far two measurements of one network lie apart, minutes apart,
    is the floor under any predictor's error (:func:`noise_floor`).
    """
    from tqdm import tqdm

    from profiler.counting import spec_totals

    todo = [(n, g, s, m) for n, g, s in specs for m in table.settings.modes]
    order = measuring_order(len(todo), seed)
    out: list[Comparison | None] = [None] * len(todo)
    for i in tqdm(order, desc="networks", unit="net", file=sys.stderr, disable=not progress or None):
        name, group, spec, mode = todo[i]
        try:
            predicted: float | None = table.predict(spec, mode)
        except UnpricedLayerError:
            predicted = None
        measured = measure(spec, table.settings, mode) if predicted is not None else None
        out[i] = Comparison(name, group, spec.family, mode, spec_totals(spec).macs, predicted, measured)
    rows = [r for r in out if r is not None]
    if not remeasure:
        return rows
    for i in tqdm(order, desc="again", unit="net", file=sys.stderr, disable=not progress or None):
        r, spec, mode = rows[i], todo[i][2], todo[i][3]
        if r.measured_ms is not None:
            rows[i] = dataclasses.replace(r, remeasured_ms=measure(spec, table.settings, mode))
    return rows


@dataclass(frozen=True)
class Accuracy:
    """How well predictions match measurements over some networks (and multiply-adds alone)."""

    networks: int
    unpriced: int
    spearman: float
    mape: float
    within_10: float
    macs_spearman: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def accuracy(rows: Sequence[Comparison]) -> Accuracy:
    """Spearman rank correlation of predicted vs measured, mean absolute percentage error, the share
    within +-10% (percent), and the Spearman correlation of multiply-adds vs measured, over the
    priced rows (NaN with fewer than 2)."""
    from scipy.stats import spearmanr

    priced = _priced(rows)
    if len(priced) < 2:
        nan = float("nan")
        return Accuracy(len(priced), len(rows) - len(priced), nan, nan, nan, nan)
    pred = [float(r.predicted_ms) for r in priced]  # type: ignore[arg-type]
    meas = [float(r.measured_ms) for r in priced]  # type: ignore[arg-type]
    mape, within_10 = error_summary(percent_errors(priced))
    return Accuracy(
        networks=len(priced),
        unpriced=len(rows) - len(priced),
        spearman=float(spearmanr(pred, meas).statistic),
        mape=mape,
        within_10=within_10,
        macs_spearman=float(spearmanr([r.macs for r in priced], meas).statistic),
    )


def error_summary(errors: Sequence[float]) -> tuple[float, float]:
    """The mean of absolute percentage ``errors`` and the share (percent) of them within +-10% (inclusive,
    despite rounding); NaN for none."""
    if not errors:
        return math.nan, math.nan
    return fmean(errors), 100 * sum(e <= 10 + 1e-10 for e in errors) / len(errors)


def _priced(rows: Sequence[Comparison]) -> list[Comparison]:
    return [r for r in rows if r.predicted_ms is not None and r.measured_ms is not None]


def percent_errors(rows: Sequence[Comparison]) -> list[float]:
    """``100 * |predicted / measured - 1|`` of every priced and measured row, in order."""
    return [100 * abs(r.predicted_ms / r.measured_ms - 1) for r in _priced(rows)]  # type: ignore[operator]


def noise_floor(rows: Sequence[Comparison]) -> Accuracy:
    """:func:`accuracy` of the second measurement taken as the prediction of the first: the best a
    predictor can score against measurements this noisy (rows without a second measurement are left out)."""
    return accuracy([dataclasses.replace(r, predicted_ms=r.remeasured_ms) for r in rows if r.remeasured_ms is not None])


def predictions_per_second(table: LatencyTable, specs: Sequence[NetSpec], mode: str, *, seconds: float = 1.0) -> float:
    """Specs predicted per second (the table warmed on ``specs`` first; unpriceable ones are skipped)."""
    priceable = []
    for s in specs:
        try:
            table.predict(s, mode)
            priceable.append(s)
        except UnpricedLayerError:
            continue
    if not priceable:
        return 0.0
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for s in priceable:
            table.predict(s, mode)
        n += len(priceable)
    return n / (time.perf_counter() - start)
