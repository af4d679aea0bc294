"""Latency tables: what each layer of a network costs on one device, and a predictor built on them.

A *table* holds, for one device, precision, clip and batch size, the measured latency of every
distinct priced operation (:class:`Op`) that a set of networks contains: a convolution together
with the BatchNorm and activation that follow it (what the optimized path fuses), or one other
layer (pooling, add, concatenation, shuffle, linear, ...), keyed by operation, channels, kernel,
stride, padding, groups and input/output size. Each entry is timed on the eager path and, on CPU,
on the optimized path (:func:`profiler.optimize.optimize_for_inference`).

Pricing an operation (:meth:`LatencyTable.price`) takes its entry when the table has one; otherwise
a per-operation regression fitted on the entries of its class (same operation, kernel, stride,
padding and kind of grouping): ``ms = c0 + c1 * macs + c2 * elements`` (non-negative coefficients,
fitted on relative error), used only when the operation's multiply-adds and elements both lie within
the range the class was measured at. Anything else raises :class:`UnpricedLayerError`: never a silent extrapolation.

A network's predicted latency (:meth:`LatencyTable.predict`) is the sum over its operations of
their prices, then a fitted per-network overhead: ``const + scale * sum``, fitted on a few
calibration networks measured whole with the table. Prediction reads the spec's shape trace (the
same layers :mod:`profiler.counting` counts); no model is built.

Tables are JSON files written atomically every few seconds and whenever a build stops, so an
interrupted build resumes without re-measuring what it has (:func:`build_table`).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

import torch
from torch import Tensor, nn

from profiler.latency import _time, device_name, resolve_device, torch_threads
from space.ops import Layer, Shape, Triple
from space.spec import E3DError, NetSpec

SCHEMA = "e3d-latency-table/1"
PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
MODES = ("eager", "optimized")
"""The eager model, and e3d's optimized inference path (CPU, fp32)."""
ACT_KINDS = ("relu", "relu6", "sigmoid")
FUNCTIONAL = ("flatten", "add", "cat", "split", "shuffle", "subsample", "pad", "mul")
"""Functional layer kinds (no module) that a table can time."""


class LatencyTableError(E3DError):
    """A latency table that is corrupt, incomplete, or measured with other settings than asked."""


class UnpricedLayerError(LatencyTableError):
    """An operation the table has no entry for and cannot interpolate."""


# -- operations ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    """One priced operation: a conv with the BatchNorm and activation after it, or one other layer.

    ``kinds`` are its layer kinds (``("conv", "bn", "relu")``, ``("add",)``); shapes are per clip,
    (C, T, H, W) or (C,). For ``cat`` the second input has ``out_shape[0] - in_shape[0]`` channels.
    """

    kinds: tuple[str, ...]
    in_shape: Shape
    out_shape: Shape
    kernel: Triple = (1, 1, 1)
    stride: Triple = (1, 1, 1)
    padding: Triple = (0, 0, 0)
    groups: int = 1
    bias: bool = False

    @property
    def key(self) -> str:
        """The table key: operation, shapes, kernel, stride, padding, groups and bias."""
        return f"{self.cls}|{_dims(self.in_shape)}>{_dims(self.out_shape)}|g{self.groups}"

    @property
    def cls(self) -> str:
        """The regression class: operation, kernel, stride, padding, kind of grouping, bias."""
        name = "+".join(self.kinds)
        if self.kinds[0] not in ("conv", "maxpool", "avgpool", "subsample"):
            return name
        grouping = "dw" if self.groups == self.in_shape[0] == self.out_shape[0] else "g" if self.groups > 1 else "1"
        k, s, p = (_dims(t) for t in (self.kernel, self.stride, self.padding))
        return f"{name}|k{k}|s{s}|p{p}|{grouping}|{'bias' if self.bias else 'nobias'}"

    @property
    def macs(self) -> int:
        """Multiply-adds per clip (convolutions and linear layers; 0 otherwise)."""
        if self.kinds[0] == "conv":
            return math.prod(self.out_shape) * (self.in_shape[0] // self.groups) * math.prod(self.kernel)
        return self.in_shape[0] * self.out_shape[0] if self.kinds[0] == "linear" else 0

    @property
    def elements(self) -> int:
        """Input plus output elements per clip (the memory the operation moves)."""
        return math.prod(self.in_shape) + math.prod(self.out_shape)

    @property
    def dims(self) -> tuple[int, ...]:
        """Shapes and groups: a designed sample takes each class's extremes of every one."""
        return (*self.in_shape, *self.out_shape, self.groups)

    @property
    def features(self) -> tuple[int, int]:
        """What a class regression prices from: multiply-adds and elements moved (per clip)."""
        return (self.macs, self.elements)

    def layers(self) -> list[Layer]:
        """The traced layers this operation stands for (named as e3d's blocks name them)."""
        names = {"conv": "conv", "bn": "conv_bn", **{a: "conv_act" for a in ACT_KINDS}}
        out = []
        for kind in self.kinds:
            shape = self.out_shape if kind in ("bn", *ACT_KINDS) and self.kinds[0] == "conv" else self.in_shape
            attrs = {"kernel": self.kernel, "stride": self.stride, "padding": self.padding, "groups": self.groups, "bias": self.bias}
            out.append(Layer(names.get(kind, kind), kind, shape, self.out_shape, **(attrs if kind != "bn" else {})))  # type: ignore[arg-type]
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Op:
        """Inverse of :meth:`to_dict` (``ValueError``/``KeyError``/``TypeError`` on a malformed dict)."""
        return cls(
            tuple(str(k) for k in d["kinds"]),
            _ints(d["in_shape"]),
            _ints(d["out_shape"]),
            _triple(d["kernel"]),
            _triple(d["stride"]),
            _triple(d["padding"]),
            int(d["groups"]),
            bool(d["bias"]),
        )


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


OpFields = tuple[tuple[str, ...], Shape, Shape, Triple, Triple, Triple, int, bool]
"""An operation as a plain tuple (the fields of :class:`Op`, in order): the predictor's cache key."""


def op_fields(layers: Sequence[Layer]) -> Iterator[OpFields]:
    """Group traced layers into operations: each conv with the ``<name>_bn`` and ``<name>_act`` layers
    right after it; every other layer alone (``dropout`` is the identity at inference: left out)."""
    i, n = 0, len(layers)
    while i < n:
        layer = layers[i]
        kinds: tuple[str, ...] = (layer.kind,)
        end = i + 1
        if layer.kind == "conv":
            if end < n and layers[end].kind == "bn" and layers[end].name == layer.name + "_bn":
                kinds, end = (*kinds, "bn"), end + 1
            if end < n and layers[end].kind in ACT_KINDS and layers[end].name == layer.name + "_act":
                kinds, end = (*kinds, layers[end].kind), end + 1
        if layer.kind != "dropout":
            out = layers[end - 1].out_shape
            yield (kinds, layer.in_shape, out, layer.kernel, layer.stride, layer.padding, layer.groups, layer.bias)
        i = end


def priced_ops(layers: Sequence[Layer]) -> list[Op]:
    """The operations of a network's traced layers (see :func:`op_fields`)."""
    return [Op(*f) for f in op_fields(layers)]


def collect_ops(specs: Iterable[NetSpec]) -> dict[str, Op]:
    """Every distinct operation of ``specs`` (first seen first), keyed by :attr:`Op.key`."""
    out: dict[str, Op] = {}
    for spec in specs:
        for op in priced_ops(spec.layers):
            out.setdefault(op.key, op)
    return out


def design_sample(ops: Mapping[str, Op], max_entries: int, *, keep: Iterable[str] = ()) -> list[Op]:
    """The operations to measure: all of them when at most ``max_entries``; otherwise, per class, the
    ones at the extremes of every dimension (so the measured ranges cover every collected operation),
    the ``keep`` keys, and then points spread evenly over each class's cost, in proportion to its size."""
    if len(ops) <= max_entries:
        return list(ops.values())
    classes: dict[str, list[Op]] = {}
    for op in ops.values():
        classes.setdefault(op.cls, []).append(op)
    chosen = {k: ops[k] for k in keep if k in ops}
    for members in classes.values():
        for d in range(len(members[0].dims) + 2):
            ranked = sorted(members, key=lambda o, d=d: ((*o.dims, *o.features)[d], o.elements))  # type: ignore[misc]
            for op in (ranked[0], ranked[-1]):
                chosen.setdefault(op.key, op)
    left = max_entries - len(chosen)
    for members in classes.values():
        share = round(left * len(members) / len(ops))
        ranked = sorted(members, key=lambda o: (o.macs, o.elements))
        for j in range(share):
            op = ranked[round((j + 0.5) * (len(ranked) - 1) / max(share, 1))]
            chosen.setdefault(op.key, op)
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


class _Functional(nn.Module):
    """One functional layer (add, cat, shuffle, ...) as a module; a second operand is a fixed buffer."""

    def __init__(self, op: Op, batch_size: int) -> None:
        super().__init__()
        self.kind = op.kinds[0]
        self.op = op
        c_in, c_out = op.in_shape[0], op.out_shape[0]
        other = {"add": (c_in, *op.in_shape[1:]), "cat": (c_out - c_in, *op.in_shape[1:]), "mul": (c_in, 1, 1, 1)}.get(self.kind)
        self.register_buffer("other", torch.randn(batch_size, *other) if other else None)

    def forward(self, x: Tensor) -> Tensor:
        """Run the layer as :class:`space.modules.Runner` runs it."""
        import torch.nn.functional as F

        from space.modules import channel_shuffle

        k, s, other = self.kind, self.op.stride, self.other
        if k in ("add", "mul", "cat"):
            assert isinstance(other, Tensor)
            return x + other if k == "add" else x * other if k == "mul" else torch.cat((x, other), 1)
        if k == "flatten":
            return x.flatten(1)
        if k == "split":
            return x.chunk(2, 1)[1]
        if k == "shuffle":
            return channel_shuffle(x, self.op.groups)
        if k == "subsample":
            return x[:, :, :: s[0], :: s[1], :: s[2]]
        return F.pad(x, (0, 0, 0, 0, 0, 0, 0, self.op.out_shape[0] - self.op.in_shape[0]))


def op_module(op: Op, batch_size: int) -> nn.Module:
    """The operation as a module (a conv group is ``conv``, ``conv_bn``, ``conv_act``, as
    :func:`profiler.optimize.fold_batchnorm` expects); ``ValueError`` for what a table cannot time."""
    from space.modules import make_module

    if op.kinds[0] in FUNCTIONAL:
        return _Functional(op, batch_size)
    if op.kinds[0] in ("matmul", "similarity"):
        raise ValueError(f"{op.kinds[0]} (Similarity Guided Sampling) depends on the clip; a latency table cannot time it")
    return nn.Sequential(OrderedDict((layer.name, make_module(layer)) for layer in op.layers()))


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
        return median(_time(model, x, dev, settings.warmup, settings.repeats))


def measure_op(op: Op, settings: TableSettings, mode: str) -> float:
    """Measured median ms per batch of one operation on the ``mode`` path."""
    return time_module(op_module(op, settings.batch_size), op.in_shape, settings, mode)


def measure_spec(spec: NetSpec, settings: TableSettings, mode: str) -> float:
    """Measured median ms per batch of a whole network (at its own clip) on the ``mode`` path."""
    from space.modules import build

    return time_module(build(spec), spec.input_shape, settings, mode)


# -- the table -------------------------------------------------------------------------------------


@dataclass
class Regression:
    """``ms = c0 + c1 * macs + c2 * elements`` (per million) over one class, valid within the measured
    range ``low..high`` of (macs, elements)."""

    coef: tuple[float, float, float]
    low: tuple[int, int]
    high: tuple[int, int]

    def covers(self, op: Op) -> bool:
        """Whether the multiply-adds and elements of ``op`` lie within the measured range (interpolation)."""
        (m, e), (m0, e0), (m1, e1) = op.features, self.low, self.high
        return m0 <= m <= m1 and e0 <= e <= e1

    def __call__(self, op: Op) -> float:
        c0, c1, c2 = self.coef
        return c0 + c1 * op.macs / 1e6 + c2 * op.elements / 1e6


@dataclass(frozen=True)
class Overhead:
    """Per-network correction: ``const_ms + scale * sum of the operations``, fitted on ``networks``."""

    const_ms: float = 0.0
    scale: float = 1.0
    networks: int = 0


@dataclass
class LatencyTable:
    """Measured operations of one device and setting, plus calibration networks (see the module doc)."""

    settings: TableSettings
    entries: dict[str, tuple[Op, dict[str, float]]] = field(default_factory=dict)
    networks: list[tuple[NetSpec, dict[str, float]]] = field(default_factory=list)
    planned: int = 0
    complete: bool = False
    created: str = ""
    _fits: dict[str, dict[str, Regression | None]] = field(default_factory=dict, init=False, repr=False)
    _overheads: dict[str, Overhead] = field(default_factory=dict, init=False, repr=False)
    _prices: dict[str, dict[OpFields, float]] = field(default_factory=dict, init=False, repr=False)

    # -- persistence

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (what :meth:`save` writes)."""
        return {
            "schema": SCHEMA,
            "complete": self.complete,
            "created": self.created,
            "planned": self.planned,
            "settings": self.settings.as_dict(),
            "entries": [{**op.to_dict(), "ms": ms} for op, ms in self.entries.values()],
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
        table = cls(
            TableSettings.from_dict(d["settings"]), planned=int(d["planned"]), complete=bool(d["complete"]), created=str(d["created"])
        )
        for e in d["entries"]:
            op = Op.from_dict(e)
            table.entries[op.key] = (op, _times(e["ms"], table.settings.modes))
        for n in d["networks"]:
            table.networks.append((NetSpec.from_dict(n["spec"]), _times(n["ms"], table.settings.modes)))
        return table

    @classmethod
    def load(cls, path: str | Path, *, complete: bool = True) -> LatencyTable:
        """Read a table; :class:`LatencyTableError` (one line) when it is missing, corrupt, truncated or,
        with ``complete``, still being built."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except OSError as e:
            raise LatencyTableError(f"cannot read latency table {path}: {e.strerror}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise LatencyTableError(f"{path} is not a latency table (corrupt or truncated JSON: {e})") from None
        try:
            table = cls.from_dict(data)
        except (KeyError, TypeError, ValueError, AttributeError, E3DError) as e:
            raise LatencyTableError(f"{path} is a corrupt latency table ({type(e).__name__}: {e})") from None
        if complete and not table.complete:
            raise LatencyTableError(
                f"{path} is incomplete ({len(table.entries)} of {table.planned} operations measured): "
                "finish it by running the same e3d latency-table command again"
            )
        return table

    def fingerprint(self) -> str:
        """SHA-256 of the settings and every measurement (what identifies a table on a study)."""
        d = self.to_dict()
        body = json.dumps({k: d[k] for k in ("settings", "entries", "networks")}, sort_keys=True)
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

    def price(self, op: Op, mode: str) -> float:
        """ms per batch of one operation: its entry, or its class's regression within its range."""
        entry = self.entries.get(op.key)
        if entry is not None:
            value = entry[1][mode]
        else:
            regressions = self._regressions(mode)
            fit = regressions.get(op.cls)
            if fit is None or not fit.covers(op):
                why = (
                    "no entries of that operation"
                    if op.cls not in regressions
                    else "too few entries of that operation to interpolate"
                    if fit is None
                    else "outside the measured range"
                )
                raise UnpricedLayerError(f"the latency table cannot price {op.key} ({why}); rebuild it covering this network")
            value = max(fit(op), 0.0)
        return value

    def layer_sum(self, spec: NetSpec, mode: str) -> float:
        """Sum of the prices of a network's operations (ms per batch), each priced once per table."""
        prices = self._prices.setdefault(mode, {})
        total = 0.0
        for f in op_fields(spec.layers):
            p = prices.get(f)
            if p is None:
                p = prices[f] = self.price(Op(*f), mode)
            total += p
        return total

    def predict(self, spec: NetSpec, mode: str = "eager") -> float:
        """Predicted ms per batch of ``spec``: the sum of its operations, then the per-network overhead."""
        if mode not in self.settings.modes:
            raise LatencyTableError(f"the latency table has no {mode} measurements (paths: {', '.join(self.settings.modes)})")
        o = self.overhead(mode)
        return o.const_ms + o.scale * self.layer_sum(spec, mode)

    def predictor(self, mode: str = "eager") -> Callable[[NetSpec], float]:
        """``predict`` for one path, as the search's latency callable."""
        return lambda spec: self.predict(spec, mode)

    def overhead(self, mode: str) -> Overhead:
        """The per-network overhead fitted on the calibration networks (none: 0 ms, scale 1)."""
        if mode not in self._overheads:
            pairs = [(self.layer_sum(s, mode), ms[mode]) for s, ms in self.networks]
            self._overheads[mode] = fit_overhead(pairs)
        return self._overheads[mode]

    def _regressions(self, mode: str) -> dict[str, Regression | None]:
        if mode not in self._fits:
            classes: dict[str, list[tuple[Op, float]]] = {}
            for op, ms in self.entries.values():
                classes.setdefault(op.cls, []).append((op, ms[mode]))
            self._fits[mode] = {cls: fit_regression(points) for cls, points in classes.items()}
        return self._fits[mode]


def _fmt(v: Any) -> str:
    if isinstance(v, (tuple, list)):
        return _dims(v) if all(isinstance(i, int) for i in v) else "/".join(map(str, v))
    return str(v)


def _times(v: Any, modes: Sequence[str]) -> dict[str, float]:
    """A ``{mode: ms}`` dict with a finite non-negative time for every mode."""
    if not isinstance(v, dict):
        raise ValueError(f"expected a dict of times per path, got {v!r}")
    out = {m: float(v[m]) for m in modes}
    if not all(math.isfinite(t) and t >= 0 for t in out.values()):
        raise ValueError(f"invalid times {v!r}")
    return out


def _nnls(rows: list[list[float]], target: list[float]) -> list[float]:
    """Non-negative least squares on relative error (each row divided by its target)."""
    import numpy as np
    from scipy.optimize import nnls

    a = np.array(rows, dtype=float) / np.array(target, dtype=float)[:, None]
    coef, _ = nnls(a, np.ones(len(target)))
    return [float(c) for c in coef]


def fit_regression(points: Sequence[tuple[Op, float]]) -> Regression | None:
    """The class regression (None with fewer than 3 distinct entries: exact lookups only)."""
    if len({op.key for op, _ in points}) < 3 or any(ms <= 0 for _, ms in points):
        return None
    rows = [[1.0, op.macs / 1e6, op.elements / 1e6] for op, _ in points]
    c0, c1, c2 = _nnls(rows, [ms for _, ms in points])
    macs, elements = [op.macs for op, _ in points], [op.elements for op, _ in points]
    return Regression((c0, c1, c2), (min(macs), min(elements)), (max(macs), max(elements)))


MIN_CALIBRATION = 4
"""Calibration networks needed to fit a constant besides the scale."""


def fit_overhead(pairs: Sequence[tuple[float, float]]) -> Overhead:
    """Fit ``measured = const + scale * sum`` over (sum, measured) pairs: both >= 0, on relative error.

    With fewer than :data:`MIN_CALIBRATION` networks, or when the constant would carry more than
    half of the typical network (the measurements barely grow with the sum: noise, and a ranking
    lost), only the scale is fitted: the median of measured / sum. No networks: 0 ms, scale 1.
    """
    pairs = [(s, m) for s, m in pairs if m > 0 and s > 0]
    if not pairs:
        return Overhead()
    if len(pairs) >= MIN_CALIBRATION:
        const, scale = _nnls([[1.0, s] for s, _ in pairs], [m for _, m in pairs])
        if const <= 0.5 * median(m for _, m in pairs):
            return Overhead(const, scale, len(pairs))
    return Overhead(0.0, median(m / s for s, m in pairs), len(pairs))


# -- building --------------------------------------------------------------------------------------

SAVE_SECONDS = 10.0
"""How often a build saves its table while measuring operations."""
MeasureOp = Callable[[Op, TableSettings, str], float]
MeasureSpec = Callable[[NetSpec, TableSettings, str], float]


def open_for_build(path: Path, settings: TableSettings) -> LatencyTable:
    """The partial table at ``path`` to resume (same settings required), or a new one."""
    if not path.exists():
        return LatencyTable(settings, created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    table = LatencyTable.load(path, complete=False)
    if table.settings != settings:
        have, want = table.settings.as_dict(), settings.as_dict()
        diff = ", ".join(f"{k} {_fmt(have[k])} (asked {_fmt(want[k])})" for k in have if have[k] != want[k])
        raise LatencyTableError(f"{path} holds a table measured with other settings: {diff}; use another --out")
    return table


def _measured(measure: MeasureOp, op: Op, settings: TableSettings, mode: str) -> float:
    """``measure(op, settings, mode)``; an operation this device or precision cannot run is one line."""
    try:
        return measure(op, settings, mode)
    except (RuntimeError, NotImplementedError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        where = f"{settings.precision} on {settings.device}, {mode}"
        raise LatencyTableError(f"cannot time {op.key} ({where}): {first}; the table so far is saved") from None


def build_table(
    ops: Sequence[Op],
    settings: TableSettings,
    out: str | Path,
    *,
    calibration: Sequence[NetSpec] = (),
    measure: MeasureOp = measure_op,
    measure_network: MeasureSpec = measure_spec,
    progress: bool = True,
) -> LatencyTable:
    """Measure every operation of ``ops`` and every ``calibration`` network not yet in the table at
    ``out`` (resuming it when it exists); marks the table complete at the end.

    The table is saved every :data:`SAVE_SECONDS` and whenever the build stops (an error, Ctrl-C), so
    a resumed build re-measures at most the last few seconds' work (none after Ctrl-C). Progress: a bar
    over everything left, with tqdm's estimate of the time left.
    """
    from tqdm import tqdm

    out = Path(out)
    table = open_for_build(out, settings)
    table.planned = len({op.key for op in ops})
    todo = [op for op in dict.fromkeys(ops) if op.key not in table.entries]
    done_nets = {s.to_json() for s, _ in table.networks}
    nets = [s for s in calibration if s.to_json() not in done_nets]
    table.complete = False
    saved = time.monotonic()
    bar = tqdm(total=len(todo) + len(nets), desc="latency table", unit="op", file=sys.stderr, disable=not progress or None)
    try:
        with bar:
            for op in todo:
                table.entries[op.key] = (op, {m: _measured(measure, op, settings, m) for m in settings.modes})
                bar.update(1)
                if time.monotonic() - saved > SAVE_SECONDS:
                    table.save(out)
                    saved = time.monotonic()
            for spec in nets:
                table.networks.append((spec, {m: measure_network(spec, settings, m) for m in settings.modes}))
                bar.update(1)
                table.save(out)
        table.complete = True
    finally:
        table.save(out)
    return table


def predicted_latency(path: str | Path, spec: NetSpec | None, *, batch_size: int, optimized: bool = False) -> dict[str, Any]:
    """What ``e3d profile --latency-table`` adds: the predicted ms per batch of ``spec`` on the eager (or
    optimized) path, and the table's identity; :class:`LatencyTableError` when the table does not fit."""
    if spec is None:
        raise LatencyTableError("--latency-table prices an e3d network: give a preset or a spec file as TARGET")
    table = LatencyTable.load(path)
    mode = "optimized" if optimized else "eager"
    table.check(clip=spec.clip, batch_size=batch_size, precision="fp32", mode=mode)
    return {"latency_predicted_ms": round(table.predict(spec, mode), 3), "latency_predicted_path": mode, "latency_table": table.identity()}


# -- how well the predictor predicts ---------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """One network on one path: predicted (None: the table cannot price it) and measured ms per batch."""

    name: str
    group: str
    family: str
    mode: str
    macs: int
    predicted_ms: float | None
    measured_ms: float | None


def compare(
    table: LatencyTable,
    specs: Sequence[tuple[str, str, NetSpec]],
    *,
    measure: MeasureSpec = measure_spec,
    progress: bool = True,
) -> list[Comparison]:
    """Predict and measure every (name, group, spec) on every path of the table, with its settings.

    A network the table cannot price is kept with ``predicted_ms`` None and is not measured.
    """
    from tqdm import tqdm

    from profiler.counting import spec_totals

    out = []
    todo = [(n, g, s, m) for n, g, s in specs for m in table.settings.modes]
    for name, group, spec, mode in tqdm(todo, desc="networks", unit="net", file=sys.stderr, disable=not progress or None):
        try:
            predicted: float | None = table.predict(spec, mode)
        except UnpricedLayerError:
            predicted = None
        measured = measure(spec, table.settings, mode) if predicted is not None else None
        out.append(Comparison(name, group, spec.family, mode, spec_totals(spec).macs, predicted, measured))
    return out


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

    priced = [r for r in rows if r.predicted_ms is not None and r.measured_ms is not None]
    if len(priced) < 2:
        nan = float("nan")
        return Accuracy(len(priced), len(rows) - len(priced), nan, nan, nan, nan)
    pred = [float(r.predicted_ms) for r in priced]  # type: ignore[arg-type]
    meas = [float(r.measured_ms) for r in priced]  # type: ignore[arg-type]
    errors = [abs(p / m - 1) for p, m in zip(pred, meas, strict=True)]
    return Accuracy(
        networks=len(priced),
        unpriced=len(rows) - len(priced),
        spearman=float(spearmanr(pred, meas).statistic),
        mape=100 * sum(errors) / len(errors),
        within_10=100 * sum(e <= 0.10 + 1e-12 for e in errors) / len(errors),  # +-10% inclusive, despite rounding
        macs_spearman=float(spearmanr([r.macs for r in priced], meas).statistic),
    )


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
