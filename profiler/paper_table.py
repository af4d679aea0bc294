"""Table 8 side by side: e3d's counts of every preset next to the paper's figures."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace

from profiler.counting import spec_totals
from profiler.latency import measure_latency
from profiler.report import signed
from space.paper import PaperRow, table8
from space.registry import paper_spec


@dataclass(frozen=True)
class TableRow:
    """One Table 8 row: the paper's params/MFLOPs, ours, the differences, and what we measured."""

    model: str
    width_mult: float
    params_m: float
    paper_params_m: float
    params_diff_pct: float
    paper_mflops: float
    paper_table_mflops: float
    mflops_diff_pct: float
    macs_m: float
    clips_per_s: float | None
    paper_titanxp_clips_s: float
    paper_tx2_clips_s: float
    optimized_clips_per_s: float | None = None
    """clips/s of the optimized inference path (profiler.optimize), timed right after the eager model."""
    optimized_bf16_clips_per_s: float | None = None
    """clips/s of the bf16 optimized path (CPUs with native bf16), timed right after."""
    int8_clips_per_s: float | None = None
    """clips/s of the int8 path (profiler.quantize, calibrated on random clips: speed only), timed right after."""

    def as_dict(self) -> dict[str, object]:
        """JSON-ready dict."""
        return asdict(self)


def table_rows(
    *,
    latency: bool = True,
    batch_size: int = 8,
    device: str = "cpu",
    threads: int | None = None,
    warmup: int = 1,
    repeats: int = 3,
    optimized: bool = True,
    bf16: bool = False,
    int8: bool = False,
) -> Iterator[TableRow]:
    """Yield the 21 rows (600 classes, 16x112x112 clips), timing each model when ``latency``.

    ``optimized`` (CPU) also times the optimized inference path right after the eager model; ``bf16``
    and ``int8`` its bf16 and int8 versions, right after that.
    """
    for row in table8():
        r = _row(
            row, latency=latency, batch_size=batch_size, device=device, threads=threads, warmup=warmup, repeats=repeats, optimized=optimized
        )
        if latency and (bf16 or int8):
            fast = _deployed(row, bf16=bf16, int8=int8, batch_size=batch_size, threads=threads, warmup=warmup, repeats=repeats)
            r = replace(r, optimized_bf16_clips_per_s=fast.get("bf16"), int8_clips_per_s=fast.get("int8"))
        yield r


def _deployed(
    row: PaperRow, *, bf16: bool, int8: bool, batch_size: int, threads: int | None, warmup: int, repeats: int
) -> dict[str, float]:
    """clips/s of the bf16 optimized and the int8 paths of one preset (CPU)."""
    import torch

    from profiler.optimize import OptimizeOptions, optimize_for_inference
    from profiler.quantize import quantize_int8
    from space.modules import build

    model = build(paper_spec(row.model, width_mult=row.width_mult)).eval()
    timing = {"batch_size": batch_size, "threads": threads, "warmup": max(warmup, 1), "repeats": repeats}
    clips = [torch.randn(batch_size, *model.spec.input_shape, generator=torch.Generator().manual_seed(0))]
    make = {
        "bf16": lambda: optimize_for_inference(model, batch_size=batch_size, options=OptimizeOptions(bf16=True)),
        "int8": lambda: quantize_int8(model, clips),
    }
    out: dict[str, float] = {}
    for variant in [v for v, on in (("bf16", bf16), ("int8", int8)) if on]:
        try:
            out[variant] = measure_latency(make[variant](), **timing).clips_per_s  # type: ignore[arg-type]
        except RuntimeError as e:  # a kernel PyTorch lacks for this model: that cell stays empty, the table goes on
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            warnings.warn(VariantFailedWarning(f"{row.model} {row.width_mult:g}x: {variant} not measured: {first}"), stacklevel=2)
    return out


class VariantFailedWarning(UserWarning):
    """A preset's optimized bf16 or int8 model could not be made or run here; its cell is left empty."""


def _row(
    row: PaperRow, *, latency: bool, batch_size: int, device: str, threads: int | None, warmup: int, repeats: int, optimized: bool
) -> TableRow:
    spec = paper_spec(row.model, width_mult=row.width_mult)
    t = spec_totals(spec)
    cps = opt_cps = None
    if latency:
        from profiler.optimize import optimize_for_inference
        from space.modules import build

        model = build(spec).eval()
        cps = measure_latency(model, batch_size=batch_size, device=device, threads=threads, warmup=warmup, repeats=repeats).clips_per_s
        if optimized:
            opt = optimize_for_inference(model, batch_size=batch_size)
            opt_lat = measure_latency(opt, batch_size=batch_size, device=device, threads=threads, warmup=warmup, repeats=repeats)
            opt_cps = opt_lat.clips_per_s
    params_m, mflops = t.params / 1e6, t.paper_flops / 1e6
    return TableRow(
        model=row.model,
        width_mult=row.width_mult,
        params_m=params_m,
        paper_params_m=row.params_m,
        params_diff_pct=100 * (params_m / row.params_m - 1),
        paper_mflops=mflops,
        paper_table_mflops=row.mflops,
        mflops_diff_pct=100 * (mflops / row.mflops - 1),
        macs_m=t.macs / 1e6,
        clips_per_s=cps,
        paper_titanxp_clips_s=row.titanxp_clips_s,
        paper_tx2_clips_s=row.tx2_clips_s,
        optimized_clips_per_s=opt_cps,
    )


Column = tuple[str, int, Callable[[TableRow], str]]
COLUMNS: list[Column] = [
    ("model", 13, lambda r: r.model),
    ("width", 6, lambda r: f"{r.width_mult:g}x"),
    ("params M", 9, lambda r: f"{r.params_m:.3f}"),
    ("paper", 7, lambda r: f"{r.paper_params_m:.2f}"),
    ("diff", 7, lambda r: f"{signed(r.params_diff_pct)}%"),
    ("paper_mflops", 13, lambda r: f"{r.paper_mflops:.1f}"),
    ("paper", 7, lambda r: f"{r.paper_table_mflops:g}"),
    ("diff", 7, lambda r: f"{signed(r.mflops_diff_pct)}%"),
    ("macs M", 9, lambda r: f"{r.macs_m:.1f}"),
    ("clips/s here", 13, lambda r: "-" if r.clips_per_s is None else f"{r.clips_per_s:.1f}"),
    ("optimized", 10, lambda r: "-" if r.optimized_clips_per_s is None else f"{r.optimized_clips_per_s:.1f}"),
    ("opt bf16", 9, lambda r: "-" if r.optimized_bf16_clips_per_s is None else f"{r.optimized_bf16_clips_per_s:.1f}"),
    ("int8", 7, lambda r: "-" if r.int8_clips_per_s is None else f"{r.int8_clips_per_s:.1f}"),
    ("TitanXp", 8, lambda r: f"{r.paper_titanxp_clips_s:g}"),
    ("TX2", 5, lambda r: f"{r.paper_tx2_clips_s:g}"),
]


def estimate_seconds(first: TableRow, seconds: float) -> float:
    """How long the whole table takes, from the time of its first row, scaled by multiply-adds (on a CPU
    latency grows about with them) plus a per-model share of the first row's time."""
    macs = [spec_totals(paper_spec(r.model, width_mult=r.width_mult)).macs for r in table8()]
    per_mac = seconds / max(first.macs_m * 1e6, 1.0)
    return float(sum(per_mac * m for m in macs))


def render_header(columns: list[Column] = COLUMNS) -> str:
    """The header line of the table."""
    return "  ".join(f"{name:>{w}}" if i else f"{name:<{w}}" for i, (name, w, _) in enumerate(columns))


def render_row(row: TableRow, columns: list[Column] = COLUMNS) -> str:
    """One line of the table."""
    return "  ".join(f"{fn(row):>{w}}" if i else f"{fn(row):<{w}}" for i, (_, w, fn) in enumerate(columns))
