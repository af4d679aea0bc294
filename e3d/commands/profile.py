"""``e3d profile``: multiply-adds, parameters, memory and measured latency of any 3D model."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from e3d.cli import MAX_THREADS, device_arg, given_options, non_negative_int, positive_int, thread_count
from e3d.commands.user_code import add_debug_argument, add_kwargs_argument, add_model_arguments, frames_and_size, run_showing_traceback

if TYPE_CHECKING:
    from profiler.report import Profile
    from profiler.targets import Target

EPILOG = """\
TARGET is one of:
  a preset name          e3d profile mobilenetv2 --width-mult 0.45
  a spec JSON file       e3d profile runs/search/best.json
  an import path         e3d profile mypkg.models:make_net     (a callable returning an nn.Module;
                         mypkg is looked for in the working directory too)
  a Python file          e3d profile path/to/models.py:make_net --kwargs '{"num_classes": 600}'
  a TorchScript file     e3d profile model.pt                  (also what e3d export writes)
  an e3d checkpoint      e3d profile runs/train/x/last.pt      (its spec and weights; e3d train's or convert-checkpoint's)

Counts come from every operator's full input and output shapes, so frames or attention heads folded
into the batch axis are counted whole; einsum, matmul/bmm and scaled_dot_product_attention have cost
rules. An operator without one is listed with its shapes, and macs is then marked a lower bound.
A failure inside the model is one line naming the exception; --debug (or E3D_DEBUG=1) shows the traceback.

Units: macs = multiply-adds of conv and linear layers and matrix products per clip (e3d's main unit);
paper_mflops = the paper's Table 8 convention (macs plus BatchNorm, activations, pooling and conv
biases, in millions). Latency is the median per batch (default 8 clips, as in the paper).

A network with Similarity Guided Sampling (SGS) costs what the clip makes it: the counts above are
then for the most expensive clip. --data adds min / mean / max over a dataset's clips, --clip-index
the exact count of one of them (checked against the operators it actually ran):
  e3d profile net.json --data motion --weights runs/train/last.pt --no-latency
  e3d profile net.json --data motion --clip-index 7 --per-layer"""


def register(sub: Any) -> None:
    """Add the ``profile`` subcommand."""
    p = sub.add_parser(
        "profile",
        help="count multiply-adds and params, measure memory and latency of a model",
        description="Profile a 3D model: multiply-adds (macs), parameters, the paper's MFLOPs convention, "
        "activation memory, measured peak memory and latency.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_target_arguments(p)
    _add_measurement_arguments(p)
    _add_report_arguments(p)
    _add_data_arguments(p)
    p.set_defaults(func=run, paper_table_defaults={d: p.get_default(d) for d in TARGET_OPTIONS})


TARGET_OPTIONS = ("kwargs", "width_mult", "num_classes", "frames", "size", "clip", "optimize", "per_layer", "latency_table", "backend",
                  "data", "data_format", "split", "samples", "clip_index", "weights")  # fmt: skip
"""Options that shape one TARGET's profile: ``--paper-table`` (the presets as Table 8 has them) refuses them."""


def _add_target_arguments(p: argparse.ArgumentParser) -> None:
    """TARGET, ``--paper-table`` and what builds the model and its clip."""
    what = "preset name, spec JSON file, package.module:callable, TorchScript file or e3d checkpoint"
    p.add_argument("target", nargs="?", metavar="TARGET", help=what)
    p.add_argument(
        "--paper-table",
        action="store_true",
        help="print Table 8 side by side with e3d's counts and clips/s measured here (long: it times 21 presets, eager and "
        "optimized; --no-latency counts only, in seconds)",
    )
    add_kwargs_argument(p)
    add_model_arguments(p)


def _add_measurement_arguments(p: argparse.ArgumentParser) -> None:
    """How the memory and latency are measured: batch, device, threads, passes, path and precision."""
    p.add_argument(
        "--batch-size", type=positive_int, default=8, metavar="B", help="clips per batch for latency and memory (default 8, the paper's)"
    )
    p.add_argument("--device", type=device_arg, default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument(
        "--threads",
        type=thread_count,
        metavar="N",
        help=f"CPU threads for the latency measurement, at most {MAX_THREADS} (default: torch's)",
    )
    p.add_argument("--warmup", type=non_negative_int, metavar="N", help="untimed passes first (default 3; 1 for --paper-table)")
    p.add_argument("--repeats", type=positive_int, metavar="N", help="timed passes (default 10; 3 for --paper-table)")
    p.add_argument("--no-latency", action="store_true", help="count only: skip the memory and latency measurements")
    p.add_argument(
        "--optimize",
        action="store_true",
        help="time the optimized inference path (BN folded, channels-last-3d, frozen, oneDNN fused; CPU) instead of eager: "
        "presets, spec files and modules whose BatchNorm3d layers are e3d's (a Conv3d X followed by X_bn), or that have none",
    )
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        default="fp32",
        help="time in fp32 (default), bf16 (CPUs with AVX512-BF16/AMX; with --optimize the bf16 graph), fp16 (CUDA), or auto: "
        "the faster that a short calibration measures; --paper-table: bf16 or auto add the optimized bf16 and int8 columns",
    )


def _add_report_arguments(p: argparse.ArgumentParser) -> None:
    """What the report adds and how it is printed: per layer, predicted latency, another counter, traceback, JSON."""
    p.add_argument("--per-layer", action="store_true", help="also list every layer's macs, params and paper MFLOPs")
    p.add_argument(
        "--latency-table", metavar="FILE", help="also predict the latency from a table of e3d latency-table (printed next to measured)"
    )
    p.add_argument(
        "--backend",
        choices=("e3d", "fvcore", "ptflops", "flop_counter"),
        default="e3d",
        help="also count with fvcore, ptflops or torch.utils.flop_counter (which reads TorchScript too) and show the differences",
    )
    add_debug_argument(p)
    p.add_argument("--json", action="store_true", help="print one JSON object (a list of rows with --paper-table)")


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    """The group of the data-dependent cost (SGS): ``--data`` and the clips and weights it is counted with."""
    d = p.add_argument_group("data-dependent cost (SGS)")
    d.add_argument(
        "--data", metavar="PATH_OR_TASK", help="also count every clip of a dataset (a proxy task or a dataset path): min/mean/max"
    )
    d.add_argument("--format", dest="data_format", metavar="F", help="layout of --data (guessed when omitted)")
    d.add_argument("--split", default="val", choices=("train", "val", "test"), help="split of --data (default val)")
    d.add_argument("--samples", type=positive_int, metavar="N", help="the first N clips only (proxy tasks: N videos; default all)")
    d.add_argument("--clip-index", type=non_negative_int, metavar="I", help="count clip I of --data exactly (the report's counts)")
    d.add_argument("--weights", metavar="CKPT", help="load these weights first (a checkpoint of e3d train): SGS bins depend on them")


def run(args: argparse.Namespace) -> int:
    """Profile one target, or print the paper table; ``--debug`` prints the traceback behind a one-line error."""
    return run_showing_traceback(_run, args)


def _run(args: argparse.Namespace) -> int:
    """Profile TARGET (or print the paper table) and print the report, or its JSON."""
    from profiler.latency import resolve_device
    from profiler.targets import TargetError

    resolve_device(args.device)
    if args.paper_table:
        if args.target is not None:
            raise TargetError(f"--paper-table profiles Table 8's presets; leave out TARGET ({args.target})")
        if flags := given_options(args, args.paper_table_defaults):
            raise TargetError(f"{flags}: --paper-table profiles Table 8's presets at the paper's clip and widths; leave them out")
        return _paper_table(args)
    if args.target is None:
        raise TargetError("give a TARGET (preset, spec file, module:callable, TorchScript file or e3d checkpoint), or --paper-table")
    from profiler.report import profile

    target = _target(args)
    predicted = _predicted(args, target)
    result = profile(target, **_profile_options(args))
    if args.data is not None:
        _data_cost(args, result)
    result.extra.update(predicted)
    text = _report_text(args, result)
    print(json.dumps(result.as_dict(per_layer=args.per_layer), indent=2) if args.json else text)
    return 0


def _target(args: argparse.Namespace) -> Target:
    """TARGET as the options build it, checked against ``--data`` and ``--clip-index``, with ``--weights`` loaded."""
    from profiler.targets import TargetError, parse_kwargs, resolve_target

    kwargs = parse_kwargs(args.kwargs)
    frames, size = frames_and_size(args)
    target = resolve_target(args.target, width_mult=args.width_mult, num_classes=args.num_classes, frames=frames, size=size, kwargs=kwargs)
    data_only = [f for f, on in (("--clip-index", args.clip_index is not None), ("--samples", args.samples is not None),
                                 ("--split", args.split != "val"), ("--format", args.data_format is not None)) if on]  # fmt: skip
    if args.data is None and data_only:
        raise TargetError(f"{', '.join(data_only)}: for the clips of --data; give --data too")
    if (args.data is not None or args.weights) and target.spec is None:
        raise TargetError("--data and --weights need a preset or a spec file (an e3d network) as TARGET")
    if args.weights:
        _load_weights(target, args.weights)
    return target


def _predicted(args: argparse.Namespace, target: Target) -> dict[str, Any]:
    """``--latency-table``: its prediction for the target (checked before measuring: a table that does not fit is one line at once)."""
    if not args.latency_table:
        return {}
    from profiler.latency_table import predicted_latency

    return predicted_latency(args.latency_table, target.spec, batch_size=args.batch_size, optimized=args.optimize, precision=args.precision)


def _profile_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`profiler.report.profile` that the options ask for."""
    return {
        "batch_size": args.batch_size,
        "device": args.device,
        "threads": args.threads,
        "latency": not args.no_latency,
        "memory": not args.no_latency,
        "backend": args.backend,
        "warmup": 3 if args.warmup is None else args.warmup,
        "repeats": args.repeats or 10,
        "optimize": args.optimize,
        "precision": args.precision,
    }


def _report_text(args: argparse.Namespace, result: Profile) -> str:
    """The text report, with the predicted latency, the ``--data`` block or the SGS note (without ``--json``)."""
    from profiler.report import render

    text = render(result, per_layer=args.per_layer)
    if args.latency_table and not args.json:
        text += "\n" + _render_predicted(result)
    if not args.json and args.data is not None:
        text += "\n\n" + _render_data(result.extra)
    elif not args.json and result.target.spec is not None and result.target.spec.sgs:
        text += "\n\n  SGS: the counts above are for the most expensive clip (every SGS layer keeps its most bins); see --data"
    return text


def _render_predicted(result: Any) -> str:
    """The predicted latency next to the measured one (``--latency-table``), and how well the table's device
    repeated its own timings: no prediction from the table is surer than that."""
    from profiler.latency_table import Repeat

    e, lat = result.extra, result.latency
    pred = e["latency_predicted_ms"]
    measured = f"measured {lat.median_ms:,.2f} ms (predicted {(pred / lat.median_ms - 1) * 100:+.1f}%)" if lat else "not measured"
    table = f"{e['latency_table']['device_name']} table, {e['latency_predicted_path']}"
    line = f"  predicted     {pred:,.2f} ms per batch ({table}); {measured}"
    repeat = e.get("latency_table_repeat")
    return line + (f"\n                the table's device: {Repeat.from_dict(repeat).describe()}" if repeat else "")


def _load_weights(target: Any, path: str) -> None:
    """Load an e3d checkpoint into the target's model: one of e3d train (a file, or its run folder; weights under
    ``model``) or of e3d convert-checkpoint (the same marker, weights under ``state_dict``). Every key and shape is
    checked against the target's spec (:func:`space.checkpoints.checkpoint_state`)."""
    from search.train import checkpoint_file
    from space.checkpoints import checkpoint_state, read_checkpoint

    file = checkpoint_file(path)
    state = checkpoint_state(read_checkpoint(file), target.spec, source=str(file))
    target.module().load_state_dict(state, strict=True)


def _data_cost(args: argparse.Namespace, result: Any) -> None:
    """Add the per-clip costs over ``--data`` (and the count of ``--clip-index``) to the profile."""
    from profiler.counting import count_module
    from profiler.datacost import clip_counts, data_cost, dataset_bins
    from search.data import DataError, open_dataset

    spec, model = result.target.spec, result.target.module()
    data = open_dataset(
        args.data, format=args.data_format, split=args.split, clip=spec.clip, num_samples=args.samples, progress=sys.stderr.isatty()
    )
    n = len(data) if args.samples is None else min(len(data), args.samples)
    bins = dataset_bins(model, data, batch_size=args.batch_size, device=args.device, limit=n, progress=sys.stderr.isatty())
    result.extra["data"] = {"source": getattr(data, "name", args.data), "split": args.split, **data_cost(spec, bins).as_dict()}
    if args.clip_index is not None:
        if args.clip_index >= n:
            raise DataError(f"--clip-index {args.clip_index} is past the {n} clips of {getattr(data, 'name', args.data)}")
        item = data[args.clip_index]
        if not isinstance(item, tuple):
            raise item.error()
        clip = item[0]
        clip_bins, counts = clip_counts(model.cpu(), clip)
        executed = count_module(model, spec.input_shape, clip=clip)
        result.counts = counts
        result.extra["clip"] = {"index": args.clip_index, "bins": list(clip_bins), "macs": counts.macs, "executed_macs": executed.macs}


def _render_data(extra: dict[str, Any]) -> str:
    """The text block of ``--data`` (and ``--clip-index``)."""
    from profiler.report import fmt_count

    d = extra["data"]
    lines = [
        f"  over {d['clips']} clips of {d['source']} ({d['split']}):",
        f"    macs  min {fmt_count(d['macs_min'])}   mean {fmt_count(d['macs_mean'])}   max {fmt_count(d['macs_max'])}"
        f"   (most expensive possible clip: {fmt_count(d['macs_upper_bound'])})",
    ]
    for layer in d["sgs"]:
        lines.append(
            f"    SGS after stage {layer['after_stage']}: {layer['mean_bins']:.2f} bins kept on average "
            f"(min {layer['min']}, max {layer['max']}, at most {layer['max_bins']})"
        )
    if not d["sgs"]:
        lines.append("    (no SGS layer: every clip costs the same)")
    if "clip" in extra:
        c = extra["clip"]
        same = "the same" if c["executed_macs"] == c["macs"] else f"DIFFERENT: {fmt_count(c['executed_macs'])}"
        lines.append(
            f"  clip {c['index']}: bins {c['bins']}, macs {fmt_count(c['macs'])} (the counts above are this clip's); "
            f"multiply-adds its operators actually executed: {same}"
        )
    return "\n".join(lines)


def _deployed_columns(args: argparse.Namespace) -> dict[str, bool]:
    """``--paper-table --precision bf16`` (or ``auto`` on a CPU with native bf16): also time the optimized
    bf16 and the int8 paths; bf16 on a CPU without it is a one-line error."""
    from profiler.precision import check_supported, detect_cpu

    if args.device != "cpu" or args.no_latency or args.precision == "fp32":
        return {}
    if args.precision == "auto" and not detect_cpu().bf16:
        return {}
    check_supported("bf16")
    return {"bf16": True, "int8": True}


def _paper_table(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from profiler.paper_table import render_header, render_row, table_rows
    from space.paper import table8

    rows = table_rows(
        latency=not args.no_latency,
        batch_size=args.batch_size,
        device=args.device,
        threads=args.threads,
        warmup=1 if args.warmup is None else args.warmup,
        repeats=args.repeats or 3,
        optimized=args.device == "cpu",
        **_deployed_columns(args),
    )
    if not args.no_latency:
        print(
            f"e3d profile --paper-table times {len(table8())} presets, eager and optimized: this is long on a CPU. "
            "--no-latency gives the counts alone in seconds; --repeats 1 --warmup 0 shortens the timing.",
            file=sys.stderr,
        )
        rows = _with_estimate(rows)
    bar = tqdm(rows, total=len(table8()), desc="Table 8", unit="model", file=sys.stderr, disable=args.no_latency or None, leave=False)
    if args.json:
        print(json.dumps([r.as_dict() for r in bar], indent=2))
        return 0
    print(render_header())
    for row in bar:
        bar.clear()
        print(render_row(row), flush=True)
    counts = "params and paper_mflops: e3d's count of each preset vs Table 8; macs = conv + linear multiply-adds per clip"
    print(f"\n{counts}{_timing_note(args)}")
    return 0


def _timing_note(args: argparse.Namespace) -> str:
    """What the clips/s columns of the paper table are (nothing under --no-latency: none was timed)."""
    if args.no_latency:
        return "; clips/s: not timed (--no-latency)."
    warmup = 1 if args.warmup is None else args.warmup
    bf16 = _deployed_columns(args).get("bf16", False)
    return (
        f"; clips/s here: batch {args.batch_size}, 16x112x112, {args.device}, median of {args.repeats or 3} after {warmup} warm-up. "
        "optimized: the same model on e3d's inference path (BN folded, channels-last-3d, frozen TorchScript, oneDNN Graph fusion), "
        "timed right after it."
        + (" opt bf16: that path in bf16; int8: quantized (calibrated on random clips: speed only); both timed right after." * bf16)
    )


def _with_estimate(rows: Iterable[Any]) -> Iterator[Any]:
    """Pass the rows through; after the first, say how long all of them should take (scaled by multiply-adds)."""
    from profiler.paper_table import estimate_seconds

    start = time.perf_counter()
    for i, row in enumerate(rows):
        if i == 0:
            took = time.perf_counter() - start
            total = estimate_seconds(row, took)
            print(f"  the first model took {took:.0f} s: about {total / 60:.0f} min for all of them", file=sys.stderr)
        yield row
