"""One profile of a target: counts, memory and latency, as data and as text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from profiler.backends import COUNTERS, BackendCount
from profiler.counting import UNRECOGNISED, Counts, OpStat, count_module, count_spec, not_counted_category
from profiler.latency import Latency, measure_latency, resolve_device
from profiler.memory import PeakMemory, measure_peak_memory
from profiler.optimize import OptimizedModel
from profiler.targets import USER_ERRORS, Target, TargetError, describe_error, guard
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
    backend_error: tuple[str, str] | None = None
    """(backend, why) where the cross-check backend could not count the model (e3d's counts still stand)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self, *, per_layer: bool = False) -> dict[str, Any]:
        """The JSON object of ``e3d profile --json``; ``per_layer`` adds the tables of ``--per-layer``
        (``layers``) and by part (``by_part``)."""
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
        if self.backend_error is not None:
            d["backend"] = {"name": self.backend_error[0], "error": self.backend_error[1]}
        if per_layer:
            d["layers"] = [dict(zip(("layer", "op", "macs", "params", "paper_flops"), row, strict=True)) for row in layer_rows(c)]
            d["by_part"] = {name: {"macs": s.macs, "paper_flops": s.paper_flops} for name, s in c.grouped(1).items()}
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
        result.backend, result.backend_error = _cross_check(target, backend)
    clip = (target.input_shape[1], target.input_shape[2], target.input_shape[3])
    model = target.module()
    if latency and optimize:
        _check_optimizable(target, device, model)
    if memory:
        result.memory = guard(lambda: measure_peak_memory(model, batch_size=batch_size, clip=clip, device=device), target)
    if latency:
        timed, run_as = _in_precision(target, model, precision, optimize=optimize, batch_size=batch_size, device=device, threads=threads)
        result.extra["precision"] = run_as.as_dict()
        if optimize:
            timed = _optimized(target, device, batch_size, bf16=run_as.precision == "bf16")
            result.extra["latency_path"] = f"optimized: {timed.options.describe()}"
            result.extra["optimized_rel_error"] = timed.rel_error
        result.latency = guard(
            lambda: measure_latency(
                timed, batch_size=batch_size, clip=clip, device=device, threads=threads, warmup=warmup, repeats=repeats
            ),
            target,
        )
    return result


def _cross_check(target: Target, backend: str) -> tuple[BackendCount | None, tuple[str, str] | None]:
    """The ``backend``'s count of ``target``, or why it could not count it: e3d has counted the model on the
    clip already, so what fails here is the backend (fvcore's tracer, ptflops' hooks), not the model."""
    try:
        return COUNTERS[backend](target.module(), target.input_shape), None
    except E3DError:
        raise
    except USER_ERRORS as e:
        return None, (backend, describe_error(e, whole=300))


def _in_precision(
    target: Target, model: Any, precision: str, *, optimize: bool, batch_size: int, device: str, threads: int | None
) -> tuple[Any, Any]:
    """The eager model to time under ``precision`` (wrapped in autocast unless fp32 eager) and its
    :class:`profiler.precision.ExecConfig`; for ``optimize`` only the configuration."""
    import copy

    from profiler import precision as pr

    shape = target.input_shape
    if optimize:
        chosen = guard(lambda: pr.resolve_optimized(model, precision, input_shape=shape, batch_size=batch_size, threads=threads), target)
        return model, chosen
    run_as = guard(
        lambda: pr.resolve_inference(model, precision, input_shape=shape, batch_size=batch_size, device=device, threads=threads), target
    )
    if run_as.precision == "fp32" and not run_as.channels_last:
        return model, run_as
    return pr.Autocast(copy.deepcopy(model), run_as), run_as


def _check_optimizable(target: Target, device: str, model: Any) -> None:
    """Raise :class:`TargetError` where ``--optimize`` cannot build the optimized path of ``target``: not on
    the CPU, a TorchScript file, or a BatchNorm that e3d's fold (e3d's own conv/BatchNorm pairs) cannot fold."""
    from profiler.optimize import unfoldable_batchnorms

    if resolve_device(device).type != "cpu":
        raise TargetError("--optimize measures the CPU inference path (oneDNN); use --device cpu")
    if target.kind == "torchscript":
        raise TargetError(f"{target.name} is TorchScript already; --optimize needs a preset, a spec file or a module")
    left = unfoldable_batchnorms(model)
    if left:
        names = ", ".join(map(repr, left[:3])) + (f" and {len(left) - 3} more" if len(left) > 3 else "")
        raise TargetError(
            f"--optimize cannot handle {target.name}: e3d's BatchNorm fold handles only e3d's blocks (a Conv3d X followed by "
            f"a BatchNorm3d named X_bn) and cannot fold {names}; profile it without --optimize"
        )


def _optimized(target: Target, device: str, batch_size: int, *, bf16: bool = False) -> OptimizedModel:
    """The optimized path of a target (CPU; presets, spec files and modules)."""
    from profiler.optimize import OptimizeOptions, optimize_for_inference

    options = OptimizeOptions(bf16=bf16)
    return guard(
        lambda: optimize_for_inference(target.module(), input_shape=target.input_shape, batch_size=batch_size, options=options), target
    )


def _count_module(target: Target) -> Counts:
    return guard(lambda: count_module(target.module(), target.input_shape), target)


def fmt_count(n: float) -> str:
    """Millions with two decimals (``519.05 M``), or thousands / units for small numbers."""
    if abs(n) >= 1e6:
        return f"{n / 1e6:,.2f} M"
    if abs(n) >= 1e3:
        return f"{n / 1e3:,.1f} k"
    return f"{n:,.0f}"


def signed(x: float, digits: int = 2) -> str:
    """A difference with its sign (``+1.25``, ``-0.40``); one that rounds to zero as ``+0.00``, never ``-0.00``."""
    return f"{(round(x, digits) or 0.0):+.{digits}f}"


def render(p: Profile, *, per_layer: bool = False) -> str:
    """Human-readable report."""
    c = p.counts
    lines = _summary_lines(p)
    if p.memory is not None:
        lines.append(f"  peak memory   {p.memory.peak_mb:,.1f} MB for a batch of {p.batch_size} ({p.memory.method})")
    if p.latency is not None:
        lines += _latency_lines(p.latency, p.extra)
    lines += ["", *_operator_lines(c)]
    if c.not_counted:
        lines += ["", *_not_counted_lines(c)]
    groups = c.grouped(1)
    if len(groups) > 1:
        lines += ["", *_part_lines(groups, c.macs)]
    if p.backend is not None:
        lines += ["", *render_backend(p.backend, c)]
    if p.backend_error is not None:
        lines += ["", f"  {p.backend_error[0]} could not count this model: {p.backend_error[1]}"]
    if per_layer:
        lines += ["", *_layer_lines(c)]
    return "\n".join(lines)


def _summary_lines(p: Profile) -> list[str]:
    """The target, its spec and its counts: params, macs, paper MFLOPs and activations."""
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
    return lines


def _latency_lines(lat: Latency, extra: dict[str, Any]) -> list[str]:
    """The measured latency, the path and precision it was timed on, and a warning when it is unreliable."""
    lines = [
        f"  latency       {lat.median_ms:,.2f} ms per batch of {lat.batch_size} (IQR {lat.iqr_ms:.2f} ms), "
        f"{lat.clips_per_s:,.1f} clips/s  [{lat.device}: {lat.device_name}, {lat.threads} threads, torch {lat.torch_version}, "
        f"{lat.dtype} input, median of {lat.repeats} after {lat.warmup} warm-up]"
    ]
    if "latency_path" in extra:
        err = extra.get("optimized_rel_error")
        check = "" if err is None else f"; max relative error vs eager {err:.1e}"
        lines.append(f"                ({extra['latency_path']}{check})")
    if "precision" in extra:
        from profiler.precision import ExecConfig

        lines.append(f"                ({ExecConfig.from_dict(extra['precision']).describe()})")
    if lat.unreliable:
        lines.append(
            f"  warning       the repeats spread widely (IQR {100 * lat.spread:.0f}% of the median): the latency is unreliable; "
            f"{lat.load_text()}. Measure on an idle machine, or with more --repeats."
        )
    return lines


def _operator_lines(c: Counts) -> list[str]:
    """The table by operator: calls, macs, share of all macs and paper MFLOPs, the costliest first."""
    lines = [f"  {'by operator':<26}{'calls':>7}{'macs':>14}{'share':>8}{'paper MFLOPs':>14}"]
    for op, s in sorted(c.by_operator.items(), key=lambda kv: (-kv[1].macs, -kv[1].paper_flops)):
        share = f"{100 * s.macs / c.macs:.1f}%" if c.macs and s.macs else ""
        lines.append(f"  {op:<26}{s.calls:>7}{fmt_count(s.macs) if s.macs else '-':>14}{share:>8}{s.paper_flops / 1e6:>14,.2f}")
    return lines


def _not_counted_lines(c: Counts) -> list[str]:
    """The operators not counted in macs, why, and the input shapes of those without a cost rule."""
    lines = ["  not counted in macs:"]
    for op, s in sorted(c.not_counted.items()):
        why = not_counted_category(op)
        shapes = f"; inputs {' | '.join(s.shapes)}" if why == UNRECOGNISED and s.shapes else ""
        lines.append(f"    {op:<24}{s.calls:>5} calls {fmt_count(s.elements):>11} elements  {why}{shapes}")
    return lines


def _part_lines(groups: dict[str, OpStat], total_macs: int) -> list[str]:
    """The table by part of the network (stem, stages, head): macs and share of all macs."""
    lines = [f"  {'by part':<26}{'macs':>14}{'share':>8}"]
    for name, s in groups.items():
        share = f"{100 * s.macs / total_macs:.1f}%" if total_macs else ""
        lines.append(f"  {name:<26}{fmt_count(s.macs):>14}{share:>8}")
    return lines


def layer_rows(c: Counts) -> list[tuple[str, str, int, int, int]]:
    """``--per-layer``'s rows: (layer, operator, macs, params, paper flops) of every layer call with a cost;
    ``(top)`` is an operator that the model's own forward calls."""
    return [
        (name or "(top)", op, cost.macs, cost.params, cost.paper_flops)
        for name, op, cost in c.layers
        if cost.macs or cost.params or cost.paper_flops
    ]


def _layer_lines(c: Counts) -> list[str]:
    """``--per-layer``: every layer with a cost: its operator, macs, params and paper MFLOPs."""
    lines = [f"  {'layer':<34}{'op':<26}{'macs':>14}{'params':>10}{'paper MFLOPs':>14}"]
    for label, op, macs, params, paper_flops in layer_rows(c):
        lines.append(f"  {label:<34}{op:<26}{fmt_count(macs):>14}{params:>10,}{paper_flops / 1e6:>14.3f}")
    return lines


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
