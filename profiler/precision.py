"""Numeric precision and memory format: what a network needs to run fast on this device, chosen by measurement.

An :class:`ExecConfig` is one way to run a network: ``fp32``, ``bf16`` or ``fp16`` autocast, the
contiguous or the channels-last-3d memory format, and the torch thread count. ``--precision`` asks for
one of them, or ``auto``: on a CPU a short calibration times a few training (or inference) steps of
each candidate (:func:`candidates`) and keeps the fastest, unless nothing beats fp32 eager by
:data:`MARGIN` (then fp32 eager: ``auto`` never picks a configuration that measured slower than it);
on a GPU ``auto`` is CUDA mixed precision (bf16 where the GPU has it, else fp16). Calibrations are
cached per CPU (model, ISA and flags), torch version, device, threads, batch, network shape and allocator
(``profiler.allocator``), training ones also per depthwise weight-gradient code (``search.train``), in a
JSON file under the user's cache folder (``$E3D_CACHE`` or ``~/.cache/e3d``), written atomically.

bf16 counts as available on a CPU with native bf16 instructions (AVX512-BF16 or AMX-BF16, read from
the CPU's flags, never assumed); elsewhere torch would emulate it at a fraction of fp32's speed, so
asking for it there is an error (:class:`PrecisionError`), not a silent fp32 run.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from profiler.allocator import allocator
from profiler.convgrad import use_e3d_grads
from profiler.cpu import CpuInfo, detect_cpu
from profiler.latency import torch_threads
from profiler.native import cache_root
from space.files import WriteError, write_text
from space.spec import E3DError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
"""What ``--precision`` accepts."""
MARGIN = 0.03
"""``auto`` keeps fp32 eager unless a candidate's step is at least this fraction faster (timing noise)."""
CLOSE = 1.25
"""A candidate whose first timed step is more than this many times the fastest first step is not timed again."""
CACHE_FILE = "precision.json"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
StepTimer = Callable[[int], list[float]]
"""Times ``n`` more steps (or passes) of one prepared, warmed-up candidate: each one's seconds."""


class PrecisionError(E3DError):
    """A precision this machine or device cannot run (the message names what is missing)."""


@dataclass(frozen=True)
class ExecConfig:
    """One way to run a network: autocast precision, memory format, threads, and why it was chosen."""

    precision: str = "fp32"
    channels_last: bool = False
    threads: int | None = None
    device: str = "cpu"
    reason: str = "the default"
    depthwise_grad: bool = False
    """Train convolutions with e3d's gradients where it has faster ones (:func:`profiler.convgrad.use_e3d_grads`:
    depthwise, grouped pointwise, biases; fp32 on a CPU only). Named when only depthwise ones had them; kept so
    that the configurations stored with earlier results still read."""

    @property
    def label(self) -> str:
        """Such as ``bf16 channels-last``, ``fp32 eager`` or ``fp32 channels-last+dw`` (``+dw``: :attr:`depthwise_grad`)."""
        return f"{self.precision} {'channels-last' if self.channels_last else 'eager'}{'+dw' if self.depthwise_grad else ''}"

    def describe(self) -> str:
        """One line: what runs, on what, and why."""
        threads = f", {self.threads} thread{'s' if self.threads != 1 else ''}" if self.threads else ""
        return f"precision {self.label} on {self.device}{threads}: {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExecConfig:
        """Inverse of :meth:`as_dict` (unknown keys ignored)."""
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Autocast to this precision (nothing for fp32)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(torch.device(self.device).type, dtype=DTYPES[self.precision])

    def input(self, x: Tensor) -> Tensor:
        """A batch of clips in this memory format."""
        return x.contiguous(memory_format=torch.channels_last_3d) if self.channels_last and x.dim() == 5 else x

    def prepare(self, model: nn.Module) -> nn.Module:
        """Put the model's 5-D weights in this memory format and, with :attr:`depthwise_grad`, its
        convolutions on e3d's backward where it has one (both in place); returns it."""
        if self.channels_last:
            model.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
        if self.depthwise_grad:
            use_e3d_grads(model)
        return model


def check_supported(precision: str, device: str = "cpu", *, cpu: CpuInfo | None = None) -> None:
    """Raise :class:`PrecisionError` when ``precision`` cannot run natively on ``device``."""
    if precision not in PRECISIONS:
        raise PrecisionError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise PrecisionError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise PrecisionError(f"bf16 asked for, but {torch.cuda.get_device_name(dev)} has no bf16 support; use fp16 or fp32")
        return
    cpu = cpu or detect_cpu()
    if precision == "fp16":
        raise PrecisionError("fp16 is for CUDA devices; on a CPU use bf16 (where it has AVX512-BF16 or AMX) or fp32")
    if precision == "bf16" and not cpu.bf16:
        raise PrecisionError(f"bf16 asked for, but this CPU has neither AVX512-BF16 nor AMX-BF16: {cpu.describe()}; use fp32")


def fixed(
    precision: str, *, device: str = "cpu", threads: int | None = None, cpu: CpuInfo | None = None, half_channels_last: bool = False
) -> ExecConfig:
    """The configuration of an explicit ``fp32`` (eager), ``bf16`` or ``fp16`` (autocast; channels-last-3d
    on a CPU only with ``half_channels_last``).

    Training asks for contiguous bf16 because it is bit-for-bit reproducible: bf16 training in
    channels-last-3d on oneDNN is not (two identical runs on an AMX Xeon, torch 2.13, ended with
    different weights), so an exact resume cannot be promised for it, and ``auto`` does not consider it
    for training either. Inference asks for channels-last (:func:`resolve_inference`)."""
    check_supported(precision, device, cpu=cpu)
    cl = half_channels_last and precision != "fp32" and torch.device(device).type == "cpu"
    return ExecConfig(precision, channels_last=cl, threads=threads, device=device, reason="asked for")


def candidates(
    *, device: str = "cpu", threads: int | None = None, cpu: CpuInfo | None = None, training: bool = False, half: bool = True
) -> list[ExecConfig]:
    """What ``auto`` measures on a CPU, fp32 eager first: fp32 channels-last (for ``training`` with e3d's
    convolution backward, ``+dw``), and where the CPU has native bf16 (and ``half``), bf16 eager, and for
    inference bf16 channels-last too (not for ``training``: it is not reproducible, see :func:`fixed`)."""
    out = [ExecConfig("fp32", False, threads, device), ExecConfig("fp32", True, threads, device, depthwise_grad=training)]
    if half and (cpu or detect_cpu()).bf16:
        out += [ExecConfig("bf16", False, threads, device)] + ([] if training else [ExecConfig("bf16", True, threads, device)])
    return out


def choose(
    timings: Sequence[tuple[ExecConfig, float]], *, margin: float = MARGIN, admissible: Callable[[ExecConfig], bool] | None = None
) -> ExecConfig:
    """The fastest of ``timings`` (configuration, seconds per step; fp32 eager first; infinite: left out as not
    reproducible), unless none beats fp32 eager by ``margin``: then fp32 eager. The reason lists every timing.
    Only the pick is checked with ``admissible`` (a check may cost as much as a timing); one that fails is left
    out as not reproducible and the choice made again."""
    if not timings:
        raise ValueError("no timings to choose from")
    base, base_s = timings[0]
    if base.precision != "fp32" or base.channels_last:
        raise ValueError("the first timing must be fp32 eager, the baseline")
    best, best_s = min(timings, key=lambda t: t[1])
    if best_s < base_s * (1 - margin) and admissible is not None and not admissible(best):
        left_out = [(c, math.inf if c.label == best.label else s) for c, s in timings]
        return choose(left_out, margin=margin, admissible=admissible)
    measured = ", ".join(f"{c.label} {s * 1000:.0f} ms" if math.isfinite(s) else f"{c.label} not reproducible" for c, s in timings)
    if best_s < base_s * (1 - margin):
        why = f"calibrated, {base_s / best_s:.2f}x fp32 eager ({measured} per step)"
        return replace(best, reason=why)
    return replace(base, reason=f"calibrated, nothing beat fp32 eager by {margin:.0%} ({measured} per step)")


# -- the calibration cache -------------------------------------------------------------------------


def cache_path() -> Path:
    """``$E3D_CACHE/precision.json`` (default ``~/.cache/e3d``)."""
    return cache_root() / CACHE_FILE


def network_key(model: nn.Module, input_shape: Sequence[int]) -> str:
    """A short hash of the network (its spec, or its parameter shapes) and the clip shape."""
    spec = getattr(model, "spec", None)
    text = spec.to_json() if spec is not None and hasattr(spec, "to_json") else repr([tuple(p.shape) for p in model.parameters()])
    return hashlib.sha1(f"{text}|{tuple(input_shape)}".encode()).hexdigest()[:16]


def cache_key(kind: str, network: str, *, batch_size: int, device: str, threads: int | None, cpu: CpuInfo | None = None) -> str:
    """Calibrations are valid per CPU (model, ISA and flags: :meth:`CpuInfo.describe`), torch version, device,
    threads, batch, network and allocator."""
    parts = [kind, (cpu or detect_cpu()).describe(), torch.__version__, device, f"t{threads or 0}", f"b{batch_size}", network]
    return "|".join([*parts, f"malloc-{allocator()}"])


def read_cache(path: Path) -> dict[str, Any]:
    """The cached calibrations (empty when the file is missing or unreadable)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class CacheWarning(UserWarning):
    """A calibration could not be cached (it is used for this run all the same)."""


def write_cache(path: Path, key: str, config: ExecConfig) -> None:
    """Add one calibration to the cache file (re-read first, written to a temporary name and renamed); where
    that fails (a full disk, a folder in its place) a :class:`CacheWarning`, and the file is left as it was."""
    data = read_cache(path)
    data[key] = config.as_dict()
    try:
        write_text(path, json.dumps(data, indent=1, sort_keys=True))
    except WriteError as e:
        warnings.warn(CacheWarning(f"{e}; the calibration is used for this run only"), stacklevel=2)


def cached(entry: Any) -> ExecConfig | None:
    """The configuration a cache entry holds; None for one this code did not write (measured again then)."""
    if not isinstance(entry, dict) or "precision" not in entry:
        return None
    try:
        c = ExecConfig.from_dict(entry)
    except TypeError:
        return None
    flags_ok = isinstance(c.channels_last, bool) and isinstance(c.depthwise_grad, bool) and isinstance(c.reason, str)
    return c if c.precision in DTYPES and flags_ok else None


def resolve(
    precision: str,
    *,
    start: Callable[[ExecConfig], StepTimer] | None,
    key: str,
    device: str = "cpu",
    threads: int | None = None,
    cpu: CpuInfo | None = None,
    cache: Path | None = None,
    half_channels_last: bool = False,
    half: bool = True,
    admissible: Callable[[ExecConfig], bool] | None = None,
) -> ExecConfig:
    """The configuration ``precision`` means here. ``auto`` on a CPU: the cached calibration under
    ``key``, else :func:`calibrate` over :func:`candidates` with ``start`` (training ones unless ``half_channels_last``;
    fp32 only without ``half``), cached in ``cache`` (default :func:`cache_path`). ``auto`` on CUDA:
    autocast to bf16 where supported, else fp16 (fp32 without ``half``), channels as they are."""
    if precision != "auto":
        return fixed(precision, device=device, threads=threads, cpu=cpu, half_channels_last=half_channels_last)
    if torch.device(device).type == "cuda" and not half:
        return ExecConfig("fp32", False, threads, device, reason="auto without half precision on a GPU: fp32")
    if torch.device(device).type == "cuda":
        mixed = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return ExecConfig(mixed, False, threads, device, reason="auto on a GPU: CUDA mixed precision")
    path = cache or cache_path()
    found = cached(read_cache(path).get(key))
    if found is not None:
        return replace(found, threads=threads, device=device, reason=f"{found.reason}; cached in {path}")
    if start is None:
        raise ValueError("auto needs a timer to start when the calibration is not cached")
    measured = candidates(device=device, threads=threads, cpu=cpu, training=not half_channels_last, half=half)
    chosen = calibrate(measured, start, admissible=admissible)
    write_cache(path, key, chosen)
    return chosen


def calibrate(
    configs: Sequence[ExecConfig], start: Callable[[ExecConfig], StepTimer], *, admissible: Callable[[ExecConfig], bool] | None = None
) -> ExecConfig:
    """:func:`choose` among ``configs`` (fp32 eager first). ``start(config)`` prepares and warms up a candidate
    (all are warmed up before any is timed, so that none pays the process's own warm-up) and returns its
    :data:`StepTimer`. Each is timed for one step; those within :data:`CLOSE` of the fastest first step are
    timed twice more and their median of three counts (one alone ahead needs no more); ``admissible``: as
    in :func:`choose`."""
    timers = [(c, start(c)) for c in configs]
    samples = [(c, timer(1)) for c, timer in timers]
    fastest = min(s[0] for _, s in samples)
    close = [i for i, (_, s) in enumerate(samples) if s[0] <= CLOSE * fastest]
    for i in close if len(close) > 1 else []:
        samples[i][1].extend(timers[i][1](2))
    return choose([(c, statistics.median(s)) for c, s in samples], admissible=admissible)


# -- measurements -----------------------------------------------------------------------------------


def _training_copy(
    model: nn.Module, config: ExecConfig, *, input_shape: Sequence[int], batch_size: int, num_classes: int
) -> tuple[nn.Module, Tensor, Tensor]:
    """A copy of ``model`` prepared for ``config`` in training mode, and a fixed random batch (clips, labels) for it."""
    m = config.prepare(copy.deepcopy(model).to(config.device).train())
    gen = torch.Generator().manual_seed(0)
    x = config.input(torch.randn(batch_size, *input_shape, generator=gen).to(config.device))
    y = torch.randint(0, num_classes, (batch_size,), generator=gen).to(config.device)
    return m, x, y


def train_step_timer(
    model: nn.Module, config: ExecConfig, *, input_shape: Sequence[int], batch_size: int, num_classes: int, warmup: int = 1
) -> StepTimer:
    """A :data:`StepTimer` of SGD training steps (forward, cross-entropy, backward, update) of a copy of
    ``model`` under ``config`` on a fixed random batch, after ``warmup`` untimed steps; torch's RNG state and
    ``model`` are left as they were."""
    m, x, y = _training_copy(model, config, input_shape=input_shape, batch_size=batch_size, num_classes=num_classes)
    opt = torch.optim.SGD(m.parameters(), lr=1e-4, momentum=0.9)

    def step() -> None:
        with config.autocast():
            loss = F.cross_entropy(m(x).float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)  # no gradients kept between steps: calibrate holds every candidate's copy at once

    return _step_timer(step, config, warmup=warmup)


def train_step_seconds(
    model: nn.Module,
    config: ExecConfig,
    *,
    input_shape: Sequence[int],
    batch_size: int,
    num_classes: int,
    warmup: int = 1,
    repeats: int = 3,
) -> float:
    """Median seconds of ``repeats`` training steps of :func:`train_step_timer`."""
    timer = train_step_timer(model, config, input_shape=input_shape, batch_size=batch_size, num_classes=num_classes, warmup=warmup)
    return statistics.median(timer(repeats))


def _step_timer(step: Callable[[], object], config: ExecConfig, *, warmup: int) -> StepTimer:
    """The :data:`StepTimer` of ``step`` on ``config``'s device (waited for on CUDA) and threads, each call in
    its own copy of torch's RNG state; ``warmup`` untimed runs first."""

    def timed(n: int) -> list[float]:
        samples = []
        with torch.random.fork_rng(devices=[]), torch_threads(config.threads):
            for _ in range(n):
                t0 = time.perf_counter()
                step()
                if torch.device(config.device).type == "cuda":
                    torch.cuda.synchronize()
                samples.append(time.perf_counter() - t0)
        return samples

    timed(warmup)
    return timed


def gradients_repeat(model: nn.Module, config: ExecConfig, *, input_shape: Sequence[int], batch_size: int, num_classes: int) -> bool:
    """Whether two backward passes of one random batch from the same weights give identical gradients under
    ``config`` (a copy of ``model``; torch's RNG state is left as it was). oneDNN's bf16 kernels need not: on
    an AMD EPYC with AVX512-BF16 some 3x3x3 convolutions' weight gradients differ between two such passes."""
    m, x, y = _training_copy(model, config, input_shape=input_shape, batch_size=batch_size, num_classes=num_classes)
    grads: list[list[Tensor]] = []
    with torch.random.fork_rng(devices=[]), torch_threads(config.threads):
        for _ in range(2):
            torch.manual_seed(0)  # the same dropout masks
            m.zero_grad(set_to_none=True)
            with config.autocast():
                loss = F.cross_entropy(m(x).float(), y)
            loss.backward()
            grads.append([q.grad.clone() for q in m.parameters() if q.grad is not None])
    return all(torch.equal(a, b) for a, b in zip(*grads, strict=True))


def trainable(model: nn.Module, config: ExecConfig, *, input_shape: Sequence[int], batch_size: int, num_classes: int) -> bool:
    """Whether ``auto`` may train ``model`` under ``config``: fp32 always; a half precision only where its
    gradients repeat (:func:`gradients_repeat`), since resumes must be exact."""
    if config.precision == "fp32":
        return True
    return gradients_repeat(model, config, input_shape=input_shape, batch_size=batch_size, num_classes=num_classes)


def inference_timer(model: nn.Module, config: ExecConfig, *, input_shape: Sequence[int], batch_size: int, warmup: int = 1) -> StepTimer:
    """A :data:`StepTimer` of forward passes (inference mode) of a copy of ``model`` under ``config`` on a
    fixed random batch, after ``warmup`` untimed ones."""
    m = Autocast(copy.deepcopy(model).to(config.device).eval(), config)
    x = torch.randn(batch_size, *input_shape, generator=torch.Generator().manual_seed(0)).to(config.device)

    def step() -> None:
        with torch.inference_mode():
            m(x)

    return _step_timer(step, config, warmup=warmup)


def resolve_inference(
    model: nn.Module,
    precision: str,
    *,
    input_shape: Sequence[int],
    batch_size: int,
    device: str = "cpu",
    threads: int | None = None,
    cache: Path | None = None,
) -> ExecConfig:
    """How ``precision`` runs ``model``'s inference here: explicit bf16/fp16 with channels-last-3d on a CPU;
    ``auto`` times a few forward passes of each candidate (cached like training's calibration)."""
    key = cache_key("infer", network_key(model, input_shape), batch_size=batch_size, device=device, threads=threads)

    def start(c: ExecConfig) -> StepTimer:
        return inference_timer(model, c, input_shape=input_shape, batch_size=batch_size)

    return resolve(precision, start=start, key=key, device=device, threads=threads, cache=cache, half_channels_last=True)


def resolve_optimized(
    model: nn.Module,
    precision: str,
    *,
    input_shape: Sequence[int],
    batch_size: int,
    threads: int | None = None,
    cpu: CpuInfo | None = None,
    cache: Path | None = None,
    measure: Callable[[bool], float] | None = None,
) -> ExecConfig:
    """The precision of the optimized CPU inference path (:mod:`profiler.optimize`, always channels-last):
    ``fp32``, ``bf16``, or ``auto``: bf16 when the CPU has it natively and its optimized graph runs at
    least :data:`MARGIN` faster than the fp32 one (``measure(bf16)``: seconds per batch; cached)."""
    if precision == "fp16":
        raise PrecisionError("the optimized CPU path runs fp32 or bf16; fp16 is for CUDA")
    if precision != "auto":
        return replace(fixed(precision, threads=threads, cpu=cpu), channels_last=True)
    if not (cpu or detect_cpu()).bf16:
        return ExecConfig("fp32", True, threads, "cpu", reason="auto: this CPU has no native bf16")
    path = cache or cache_path()
    key = cache_key("optimized", network_key(model, input_shape), batch_size=batch_size, device="cpu", threads=threads, cpu=cpu)
    found = cached(read_cache(path).get(key))
    if found is not None:
        return replace(found, threads=threads, reason=f"{found.reason}; cached in {path}")
    timer = measure or (lambda bf16: optimized_seconds(model, bf16=bf16, input_shape=input_shape, batch_size=batch_size, threads=threads))
    fp32_s, bf16_s = timer(False), timer(True)
    timings = f"optimized fp32 {fp32_s * 1000:.0f} ms, bf16 {bf16_s * 1000:.0f} ms per batch"
    if bf16_s < fp32_s * (1 - MARGIN):
        chosen = ExecConfig("bf16", True, threads, "cpu", reason=f"calibrated, {fp32_s / bf16_s:.2f}x optimized fp32 ({timings})")
    else:
        chosen = ExecConfig("fp32", True, threads, "cpu", reason=f"calibrated, bf16 not {MARGIN:.0%} faster ({timings})")
    write_cache(path, key, chosen)
    return chosen


def optimized_seconds(
    model: nn.Module, *, bf16: bool, input_shape: Sequence[int], batch_size: int, threads: int | None = None, repeats: int = 3
) -> float:
    """Median seconds per batch of the optimized graph (fp32 or bf16) of ``model``, after the fuser's two compiling calls."""
    from profiler.optimize import OptimizeOptions, optimize_for_inference

    with torch_threads(threads):
        opt = optimize_for_inference(model, input_shape=input_shape, batch_size=batch_size, options=OptimizeOptions(bf16=bf16))
        x = torch.randn(batch_size, *input_shape, generator=torch.Generator().manual_seed(0))
        samples = []
        with torch.inference_mode():
            for i in range(repeats + 1):
                t0 = time.perf_counter()
                opt(x)
                if i:
                    samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def train_step_gflop(macs_per_clip: float, batch_size: int) -> float:
    """GFLOP of one training step: forward, and backward at twice the forward (3 x forward multiply-adds),
    2 FLOP per multiply-add, for every clip of the batch."""
    return 3 * macs_per_clip * 2 * batch_size / 1e9


def matmul_gflops(precision: str = "fp32", *, size: int = 1024, repeats: int = 5, threads: int | None = None) -> float:
    """This CPU's measured matmul rate (GFLOP/s, median of ``repeats``) on ``size`` x ``size`` matrices in
    ``precision`` (fp32 or bf16): the practical peak that achieved GFLOP/s are compared with."""
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=gen).to(DTYPES[precision]) for _ in range(2))
    samples = []
    with torch_threads(threads):
        torch.mm(a, b)
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b)
            samples.append(time.perf_counter() - t0)
    return 2 * size**3 / statistics.median(samples) / 1e9


class Autocast(nn.Module):
    """Runs the wrapped model under an :class:`ExecConfig` (memory format and autocast); float32 out."""

    def __init__(self, model: nn.Module, config: ExecConfig) -> None:
        super().__init__()
        self.model = config.prepare(model)
        self.config = config

    def forward(self, x: Tensor) -> Tensor:
        """Class scores of a batch of clips, as float32."""
        with self.config.autocast():
            return self.model(self.config.input(x)).float()


__all__ = [
    "PRECISIONS",
    "Autocast",
    "CpuInfo",
    "ExecConfig",
    "PrecisionError",
    "cache_key",
    "cache_path",
    "candidates",
    "check_supported",
    "choose",
    "detect_cpu",
    "fixed",
    "inference_timer",
    "matmul_gflops",
    "network_key",
    "resolve",
    "resolve_inference",
    "resolve_optimized",
    "train_step_gflop",
    "train_step_seconds",
    "train_step_timer",
]
