"""Eager vs optimized vs int8 clips/s of the paper's models, timed side by side in one run.

    python -m bench.optimize                      # the five models of the speed goal, batch 8, 16x112x112
    python -m bench.optimize --repeats 20 --no-int8
    python -m bench.optimize --json out.json
    python -m bench.optimize --paper-code ../Efficient-3DCNNs  # also the paper's own model code, eager
    python -m bench.optimize --bf16 --models shufflenet@1 ...    # also the optimized bf16 graph (a CPU with native bf16)

Every model is built once (random weights, BatchNorm statistics from a few random batches so that
activations have a trained network's scale), then optimized (profiler.optimize_for_inference) and
quantized (profiler.quantize_int8, calibrated on random clips). The timed loop interleaves every
variant of every model: round r runs eager, optimized and int8 of model 1, then of model 2, ...,
so slow phases of a shared machine hit all variants alike. Each cell is the median of the rounds.

The goal (issue 9): the geometric mean over the models of optimized/eager clips/s >= 2. ``--bf16`` adds
the optimized bf16 graph (``OptimizeOptions(bf16=True)``) as one more variant; its goal (issue 15, on
a CPU with AMX) is a geometric mean of optimized-bf16/eager-fp32 clips/s >= 5.
``--paper-code DIR`` (a checkout of the paper's repository, github.com/okankop/Efficient-3DCNNs; its
``models/<family>.py`` are imported from there, never copied into e3d) adds the paper's own model of
each preset as one more interleaved variant, checked to have the preset's parameter count; the goal
(issue 15) is e3d's eager at least as fast as the paper's code (geometric mean >= 1).
int8's accuracy change needs a trained model and a labelled proxy task: ``python -m bench.int8_accuracy``
trains each model briefly on one (search.data / search.train) and reports top-1 of float vs int8.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

import torch
from torch import Tensor, nn

import space
from bench import known_preset
from e3d.cli import Parser, non_negative_int, positive_int, thread_count
from profiler.cpu import detect_cpu
from profiler.optimize import OptimizeOptions, optimize_for_inference, relative_error
from profiler.quantize import quantize_int8
from search.stats import geomean
from space.spec import E3DError

GOAL_MODELS = (("shufflenet", 1.0), ("shufflenetv2", 1.0), ("mobilenet", 1.0), ("mobilenetv2", 0.45), ("squeezenet", 1.0))
"""The five models of the speed goal, as (preset, width multiplier)."""


@dataclass
class Row:
    """One model's timings (ms per batch, medians over the interleaved rounds) and checks."""

    model: str
    width_mult: float
    times_ms: dict[str, list[float]] = field(default_factory=dict)
    opt_rel_error: float = math.nan
    int8_rel_error: float = math.nan
    bf16_rel_error: float = math.nan
    int8_top1_change: float | None = None

    def median_ms(self, variant: str) -> float:
        """Median ms per batch of one variant (nan when it was not timed)."""
        t = self.times_ms.get(variant)
        return median(t) if t else math.nan


def settle_batchnorm(model: nn.Module, clip: tuple[int, int, int], *, batches: int = 2, batch_size: int = 4) -> nn.Module:
    """Set BatchNorm running statistics from random clips (cumulative average), return it in eval mode.

    Freshly initialised BatchNorms (mean 0, var 1) let activations shrink or grow layer after layer;
    a trained network's statistics normalise them. Speed does not depend on the values; int8
    calibration and the numerical checks do.
    """
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn(batch_size, 3, *clip))
    return model.eval()


PAPER_ARGS: dict[str, Callable[[float, tuple[int, int, int]], dict[str, Any]]] = {
    "shufflenet": lambda w, clip: {"groups": 3, "width_mult": w},
    "shufflenetv2": lambda w, clip: {"width_mult": w, "sample_size": clip[1]},
    "mobilenet": lambda w, clip: {"width_mult": w, "sample_size": clip[1]},
    "mobilenetv2": lambda w, clip: {"width_mult": w, "sample_size": clip[1]},
    "squeezenet": lambda w, clip: {"version": 1.1, "sample_size": clip[1], "sample_duration": clip[0]},
}
"""How the paper's ``get_model`` builds each family's preset at a width and clip (600 classes)."""


class PaperCodeError(E3DError):
    """The paper's code cannot give the model asked for, or gives another network."""


def paper_model(root: Path, name: str, width: float, clip: tuple[int, int, int], *, params: int) -> nn.Module:
    """The paper's own model of preset ``name`` at ``width``, imported from ``root/models/<name>.py``,
    checked to have ``params`` parameters (e3d's preset)."""
    path = root / "models" / f"{name}.py"
    if name not in PAPER_ARGS or not path.is_file():
        raise PaperCodeError(f"--paper-code: no paper model for {name} (expected {path}, families {', '.join(PAPER_ARGS)})")
    spec = importlib.util.spec_from_file_location(f"paper_models_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model: nn.Module = module.get_model(num_classes=600, **PAPER_ARGS[name](width, clip))
    n = sum(p.numel() for p in model.parameters())
    if n != params:
        raise PaperCodeError(f"{path}: {name} {width:g}x has {n:,} parameters, e3d's preset {params:,}: not the same network")
    return model


def run(args: argparse.Namespace) -> dict[str, object]:
    """Build, optimize, time (interleaved) and return the results as a JSON-ready dict."""
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    clip = (args.frames, args.size, args.size)
    x = torch.randn(args.batch_size, 3, *clip)
    rows: list[Row] = []
    variants: list[dict[str, Callable[[Tensor], Tensor]]] = []
    for name, width in args.models:
        t0 = time.perf_counter()
        eager = settle_batchnorm(space.create_model(name, width_mult=width, sample_size=args.size, sample_duration=args.frames), clip)
        row = Row(name, width)
        fns: dict[str, Callable[[Tensor], Tensor]] = {"eager": eager}
        if args.paper_code:
            params = sum(p.numel() for p in eager.parameters())
            fns["paper"] = settle_batchnorm(paper_model(args.paper_code, name, width, clip, params=params), clip)
        opt = optimize_for_inference(eager, batch_size=args.batch_size)
        row.opt_rel_error = opt.rel_error if opt.rel_error is not None else math.nan
        fns["optimized"] = opt
        if args.bf16:
            # rel.err is reported, not checked: the logits of a random-weight network are small next to its
            # activations, so bf16 rounding is a large share of them (a trained model's export is checked)
            half = optimize_for_inference(eager, batch_size=args.batch_size, options=OptimizeOptions(bf16=True), tolerance=math.inf)
            row.bf16_rel_error = half.rel_error if half.rel_error is not None else math.nan
            fns["bf16"] = half
        if args.int8:
            calib = [torch.randn(args.batch_size, 3, *clip) for _ in range(args.calib_batches)]
            q = quantize_int8(eager, calib)
            with torch.no_grad():
                row.int8_rel_error = relative_error(q(x), eager(x))
            fns["int8"] = q
        rows.append(row)
        variants.append(fns)
        print(f"prepared {name} {width:g}x in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    with torch.inference_mode():
        for fns in variants:  # warm-up: the fuser compiles on the first calls
            for f in fns.values():
                for _ in range(args.warmup):
                    f(x)
        for r in range(args.repeats):
            for row, fns in zip(rows, variants, strict=True):
                for v, f in fns.items():
                    t0 = time.perf_counter()
                    f(x)
                    row.times_ms.setdefault(v, []).append((time.perf_counter() - t0) * 1000)
            print(f"round {r + 1}/{args.repeats}", file=sys.stderr, flush=True)
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{detect_cpu().describe()}, {torch.get_num_threads()} threads, {platform.node()}",
        "torch": torch.__version__,
        "batch_size": args.batch_size,
        "clip": list(clip),
        "repeats": args.repeats,
        "rows": [asdict(r) | {f"{v}_median_ms": r.median_ms(v) for v in r.times_ms} for r in rows],
        "geomean_optimized_over_eager": geomean([r.median_ms("eager") / r.median_ms("optimized") for r in rows]),
        "geomean_bf16_over_eager": geomean([r.median_ms("eager") / r.median_ms("bf16") for r in rows]) if args.bf16 else None,
        "geomean_int8_over_eager": geomean([r.median_ms("eager") / r.median_ms("int8") for r in rows]) if args.int8 else None,
        "geomean_eager_over_paper": geomean([r.median_ms("paper") / r.median_ms("eager") for r in rows]) if args.paper_code else None,
    }


def render(result: dict[str, object]) -> str:
    """The result as a text table."""
    rows = result["rows"]
    assert isinstance(rows, list)
    b = result["batch_size"]
    assert isinstance(b, int)
    int8 = any("int8_median_ms" in r for r in rows)
    bf16 = any("bf16_median_ms" in r for r in rows)
    paper = any("paper_median_ms" in r for r in rows)
    head = f"{'model':<14}{'width':>6}{'eager clips/s':>15}{'optimized':>11}{'x':>7}{'rel.err':>9}"
    if bf16:
        head += f"{'opt bf16 clips/s':>18}{'x':>7}{'rel.err':>9}"
    if int8:
        head += f"{'int8 clips/s':>14}{'x':>7}{'rel.err':>9}"
    if paper:
        head += f"{'paper code clips/s':>20}{'e3d/paper':>11}"
    lines = [head]
    for r in rows:
        e, o = r["eager_median_ms"], r["optimized_median_ms"]
        line = f"{r['model']:<14}{r['width_mult']:>5g}x{b * 1000 / e:>15.1f}{b * 1000 / o:>11.1f}{e / o:>6.2f}x{r['opt_rel_error']:>9.1e}"
        if bf16:
            h = r["bf16_median_ms"]
            line += f"{b * 1000 / h:>18.1f}{e / h:>6.2f}x{r['bf16_rel_error']:>9.1e}"
        if int8:
            q = r["int8_median_ms"]
            line += f"{b * 1000 / q:>14.1f}{e / q:>6.2f}x{r['int8_rel_error']:>9.1e}"
        if paper:
            line += f"{b * 1000 / r['paper_median_ms']:>20.1f}{r['paper_median_ms'] / e:>10.2f}x"
        lines.append(line)
    lines.append(f"geometric mean optimized/eager: {result['geomean_optimized_over_eager']:.2f}x (goal >= 2x)")
    if bf16:
        lines.append(f"geometric mean optimized bf16/eager fp32: {result['geomean_bf16_over_eager']:.2f}x (goal on AMX >= 5x)")
    if int8:
        lines.append(f"geometric mean int8/eager: {result['geomean_int8_over_eager']:.2f}x")
    if paper:
        lines.append(f"geometric mean e3d eager / paper code eager: {result['geomean_eager_over_paper']:.2f}x (goal >= 1x)")
    clip = "x".join(map(str, result["clip"]))  # type: ignore[call-overload]
    lines.append(
        f"{result['date']}, {result['machine']}, torch {result['torch']}; batch {b}, {clip}; "
        f"median of {result['repeats']} interleaved rounds. rel.err = max |out - eager| / max |eager| on one batch."
    )
    return "\n".join(lines)


def _model(text: str) -> tuple[str, float]:
    """argparse type: ``NAME[@WIDTH]`` of a registered preset (width 1 when left out)."""
    name, _, width = text.partition("@")
    try:
        value = float(width or 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME[@WIDTH], got {text!r}") from None
    return known_preset(name, value, text)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", type=_model, default=list(GOAL_MODELS), metavar="NAME[@W]", help="presets (default: the five)")
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--frames", type=positive_int, default=16)
    p.add_argument("--size", type=positive_int, default=112)
    p.add_argument("--threads", type=thread_count, default=torch.get_num_threads(), help="torch intra-op threads (default: all cores)")
    p.add_argument("--warmup", type=non_negative_int, default=3, help="untimed passes per variant before the rounds")
    p.add_argument("--repeats", type=positive_int, default=10, help="interleaved timed rounds")
    p.add_argument("--no-int8", dest="int8", action="store_false", help="skip the int8 variant")
    p.add_argument("--bf16", action="store_true", help="also time the optimized bf16 graph (a CPU with native bf16)")
    p.add_argument("--calib-batches", type=positive_int, default=2, help="random batches to calibrate int8 on")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the raw timings as JSON")
    p.add_argument("--paper-code", type=Path, metavar="DIR", help="a checkout of the paper's repository: time its models too")
    args = p.parse_args(argv)
    try:
        result = run(args)
    except E3DError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
