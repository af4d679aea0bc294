"""One profile of a target: counts, memory and latency, as data and as text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from profiler.backends import COUNTERS, BackendCount
from profiler.counting import UNRECOGNISED, Counts, count_module, count_spec, not_counted_category
from profiler.latency import Latency, measure_latency, resolve_device
from profiler.memory import PeakMemory, measure_peak_memory
from profiler.optimize import OptimizedModel
from profiler.targets import Target, TargetError, describe_error
from space.spec import E3DError

UNITS = {
    "macs": "multiply-adds of convolution and linear layers and of matrix products (matmul, einsum, attention), per clip",
    "paper_mflops": "the paper's Table 8 convention, millions per clip: macs + BatchNorm, activations, pooling and conv biases",
    "activations": "output elements of all conv, linear, norm, activation and pooling layers, per clip",
    "latency_ms": "median milliseconds per batch",
}


@dataclass
class Profile:
    """Everything ``e3d profile`` reports about one target."""

    target: Target
    counts: Counts
    batch_size: int
    memory: PeakMemory | None = None
    latency: Latency | None = None
    backend: BackendCount | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The JSON object of ``e3d profile --json``."""
        c, lat = self.counts, self.latency
        d: dict[str, Any] = {
            "target": self.target.name,
            "kind": self.target.kind,
            "input_shape": [1, *c.input_shape],
            "params": c.params,
            "macs": c.macs,
            "macs_lower_bound": c.lower_bound,
            "paper_mflops": round(c.paper_flops / 1e6, 3),
            "activations": c.activations,
            "activation_mb": round(c.activations * 4 / 2**20, 3),
            "batch_size": self.batch_size,
            "peak_memory_mb": None if self.memory is None else round(self.memory.peak_mb, 1),
            "peak_memory_method": None if self.memory is None else self.memory.method,
            "latency_ms": None if lat is None else round(lat.median_ms, 3),
            "latency_iqr_ms": None if lat is None else round(lat.iqr_ms, 3),
            "clips_per_s": None if lat is None else round(lat.clips_per_s, 2),
            "latency_unreliable": None if lat is None else lat.unreliable,
            "latency_other_load": None if lat is None else lat.other_load,
            "load_avg": None if lat is None else lat.load_avg,
            "device": lat.device if lat else None,
            "device_name": lat.device_name if lat else None,
            "threads": lat.threads if lat else torch.get_num_threads(),
            "torch": torch.__version__,
            "dtype": lat.dtype if lat else "float32",
            "by_operator": {k: {"calls": v.calls, "macs": v.macs, "paper_flops": v.paper_flops} for k, v in c.by_operator.items()},
            "not_counted": {
                k: {"calls": v.calls, "elements": v.elements, "why": not_counted_category(k), "shapes": v.shapes}
                for k, v in c.not_counted.items()
            },
            "units": UNITS,
        }
        if self.target.spec is not None:
            d["spec"] = self.target.spec.to_dict()
        if self.backend is not None:
            b = self.backend
            d["backend"] = {"name": b.backend, "total": b.total, "by_operator": b.by_operator, "unsupported": b.unsupported}
        return {**d, **self.extra}


def profile(
    target: Target,
    *,
    batch_size: int = 8,
    device: str = "cpu",
    threads: int | None = None,
    latency: bool = True,
    memory: bool = True,
    backend: str = "e3d",
    warmup: int = 3,
    repeats: int = 10,
    optimize: bool = False,
    precision: str = "fp32",
) -> Profile:
    """Count, then measure memory and latency of a target (memory first: see :mod:`profiler.memory`).

    ``optimize``: time the optimized inference path (:func:`profiler.optimize.optimize_for_inference`,
    CPU only) instead of the eager model; its numerical check against eager is reported too.
    ``precision`` (fp32, bf16, fp16, auto: :mod:`profiler.precision`) is what the latency is timed in;
    what was chosen and why is in ``extra["precision"]``.
    """
    resolve_device(device)
    counts = count_spec(target.spec) if target.spec is not None else _count_module(target)
    result = Profile(target, counts, batch_size)
    if backend != "e3d":
        module, counter = target.module(), COUNTERS[backend]
        result.backend = _guard(lambda: counter(module, target.input_shape), target)
    clip = (target.input_shape[1], target.input_shape[2], target.input_shape[3])
    model = target.module()
    if memory:
        result.memory = _guard(lambda: measure_peak_memory(model, batch_size=batch_size, clip=clip, device=device), target)
    if latency:
        timed, run_as = _in_precision(target, model, precision, optimize=optimize, batch_size=batch_size, device=device, threads=threads)
        result.extra["precision"] = run_as.as_dict()
        if optimize:
            timed = _optimized(target, device, batch_size, bf16=run_as.precision == "bf16")
            result.extra["latency_path"] = f"optimized: {timed.options.describe()}"
            result.extra["optimized_rel_error"] = timed.rel_error
        result.latency = _guard(
            lambda: measure_latency(
                timed, batch_size=batch_size, clip=clip, device=device, threads=threads, warmup=warmup, repeats=repeats
            ),
            target,
        )
    return result


def _in_precision(
    target: Target, model: Any, precision: str, *, optimize: bool, batch_size: int, device: str, threads: int | None
) -> tuple[Any, Any]:
    """The eager model to time under ``precision`` (wrapped in autocast unless fp32 eager) and its
    :class:`profiler.precision.ExecConfig`; for ``optimize`` only the configuration."""
    import copy

    from profiler import precision as pr

    shape = target.input_shape
    if optimize:
        chosen = _guard(lambda: pr.resolve_optimized(model, precision, input_shape=shape, batch_size=batch_size, threads=threads), target)
        return model, chosen
    run_as = _guard(
        lambda: pr.resolve_inference(model, precision, input_shape=shape, batch_size=batch_size, device=device, threads=threads), target
    )
    if run_as.precision == "fp32" and not run_as.channels_last:
        return model, run_as
    return pr.Autocast(copy.deepcopy(model), run_as), run_as


def _optimized(target: Target, device: str, batch_size: int, *, bf16: bool = False) -> OptimizedModel:
    """The optimized path of a target (CPU; presets, spec files and modules)."""
    from profiler.optimize import OptimizeOptions, optimize_for_inference

    if resolve_device(device).type != "cpu":
        raise TargetError("--optimize measures the CPU inference path (oneDNN); use --device cpu")
    if target.kind == "torchscript":
        raise TargetError(f"{target.name} is TorchScript already; --optimize needs a preset, a spec file or a module")
    options = OptimizeOptions(bf16=bf16)
    return _guard(
        lambda: optimize_for_inference(target.module(), input_shape=target.input_shape, batch_size=batch_size, options=options), target
    )


def _count_module(target: Target) -> Counts:
    return _guard(lambda: count_module(target.module(), target.input_shape), target)


def _guard(fn: Any, target: Target) -> Any:
    """Run ``fn``; whatever the model raises on the clip becomes a one-line :class:`TargetError`
    naming the target and the exception (kept as its ``__cause__`` for ``--debug``)."""
    try:
        return fn()
    except E3DError:
        raise
    except Exception as e:  # the user's model may raise anything: AssertionError, ValueError, MemoryError ...
        shape = "x".join(map(str, target.input_shape))
        hint = ""
        if target.kind == "torchscript":
            hint = " (a traced TorchScript model runs only on the input shape it was traced with: set it with --frames and --size)"
        elif isinstance(e, MemoryError) or "can't allocate memory" in str(e) or "out of memory" in str(e).lower():
            hint = " (the model needs more memory than this machine has: try a smaller --batch-size, --frames or --size)"
        raise TargetError(f"{target.name} failed on a {shape} clip: {describe_error(e)}{hint}") from e


def fmt_count(n: float) -> str:
    """Millions with two decimals (``519.05 M``), or thousands / units for small numbers."""
    if abs(n) >= 1e6:
        return f"{n / 1e6:,.2f} M"
    if abs(n) >= 1e3:
        return f"{n / 1e3:,.1f} k"
    return f"{n:,.0f}"


def render(p: Profile, *, per_layer: bool = False) -> str:
    """Human-readable report."""
    c, t = p.counts, p.target
    shape = "x".join(map(str, c.input_shape))
    lines = [f"{t.name}  ({t.kind})  input 1x{shape} (one clip; C x T x H x W)"]
    if t.spec is not None:
        lines.append(f"  spec          {t.spec.summary()}")
    lines += [
        f"  params        {c.params:,}",
        f"  macs          {fmt_count(c.macs)}  ({UNITS['macs']})"
        + (f"\n                a LOWER BOUND: {len(c.unrecognised)} operator(s) without a cost rule ran (below)" if c.lower_bound else ""),
        f"  paper_mflops  {c.paper_flops / 1e6:,.2f}  (Table 8 convention: macs + BN, activations, pooling, conv biases)",
        f"  activations   {fmt_count(c.activations)} elements = {c.activations * 4 / 2**20:,.1f} MB in float32, per clip",
    ]
    if p.memory is not None:
        lines.append(f"  peak memory   {p.memory.peak_mb:,.1f} MB for a batch of {p.batch_size} ({p.memory.method})")
    if p.latency is not None:
        lat = p.latency
        lines.append(
            f"  latency       {lat.median_ms:,.2f} ms per batch of {lat.batch_size} (IQR {lat.iqr_ms:.2f} ms), "
            f"{lat.clips_per_s:,.1f} clips/s  [{lat.device}: {lat.device_name}, {lat.threads} threads, torch {lat.torch_version}, "
            f"{lat.dtype}, median of {lat.repeats} after {lat.warmup} warm-up]"
        )
        if "latency_path" in p.extra:
            err = p.extra.get("optimized_rel_error")
            check = "" if err is None else f"; max relative error vs eager {err:.1e}"
            lines.append(f"                ({p.extra['latency_path']}{check})")
        if "precision" in p.extra:
            from profiler.precision import ExecConfig

            lines.append(f"                ({ExecConfig.from_dict(p.extra['precision']).describe()})")
        if lat.unreliable:
            lines.append(
                f"  warning       the repeats spread widely (IQR {100 * lat.spread:.0f}% of the median): the latency is unreliable; "
                f"{lat.load_text()}. Measure on an idle machine, or with more --repeats."
            )
    lines.append("")
    lines.append(f"  {'by operator':<26}{'calls':>7}{'macs':>14}{'share':>8}{'paper MFLOPs':>14}")
    for op, s in sorted(c.by_operator.items(), key=lambda kv: (-kv[1].macs, -kv[1].paper_flops)):
        share = f"{100 * s.macs / c.macs:.1f}%" if c.macs and s.macs else ""
        lines.append(f"  {op:<26}{s.calls:>7}{fmt_count(s.macs) if s.macs else '-':>14}{share:>8}{s.paper_flops / 1e6:>14,.2f}")
    if c.not_counted:
        lines.append("")
        lines.append("  not counted in macs:")
        for op, s in sorted(c.not_counted.items()):
            why = not_counted_category(op)
            shapes = f"; inputs {' | '.join(s.shapes)}" if why == UNRECOGNISED and s.shapes else ""
            lines.append(f"    {op:<24}{s.calls:>5} calls {fmt_count(s.elements):>11} elements  {why}{shapes}")
    groups = c.grouped(1)
    if len(groups) > 1:
        lines.append("")
        lines.append(f"  {'by part':<26}{'macs':>14}{'share':>8}")
        for name, s in groups.items():
            share = f"{100 * s.macs / c.macs:.1f}%" if c.macs else ""
            lines.append(f"  {name:<26}{fmt_count(s.macs):>14}{share:>8}")
    if p.backend is not None:
        lines += ["", *render_backend(p.backend, c)]
    if per_layer:
        lines.append("")
        lines.append(f"  {'layer':<34}{'op':<26}{'macs':>14}{'params':>10}{'paper MFLOPs':>14}")
        for name, op, cost in c.layers:
            if cost.macs or cost.params or cost.paper_flops:
                label = name or "(top)"  # an operator the model's own forward calls
                lines.append(f"  {label:<34}{op:<26}{fmt_count(cost.macs):>14}{cost.params:>10,}{cost.paper_flops / 1e6:>14.3f}")
    return "\n".join(lines)


def render_backend(b: BackendCount, c: Counts) -> list[str]:
    """The backend's count next to e3d's, with its per-operator numbers."""
    diff = b.total - c.macs
    lines = [f"  {b.backend} total       {fmt_count(b.total)}  (e3d macs {fmt_count(c.macs)}; difference {diff:+,})"]
    for op, n in sorted(b.by_operator.items(), key=lambda kv: -kv[1]):
        lines.append(f"    {op:<28}{fmt_count(n):>14}")
    if b.unsupported:
        lines.append(f"    not counted by {b.backend}: " + ", ".join(f"{k} x{v}" for k, v in sorted(b.unsupported.items())))
    lines.append("    (see docs/COUNTING.md for why the conventions differ)")
    return lines


__all__ = ["UNITS", "Profile", "TargetError", "fmt_count", "profile", "render"]
