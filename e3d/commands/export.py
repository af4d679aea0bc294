"""``e3d export``: write the deployable model (TorchScript or ONNX), checked against eager every time."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from e3d.cli import positive_int
from e3d.commands.user_code import add_debug_argument, add_kwargs_argument, add_model_arguments, frames_and_size, run_showing_traceback

if TYPE_CHECKING:
    from torch import nn

    from profiler.export import ExportResult
    from profiler.targets import Target

EPILOG = """\
examples:
  e3d export shufflenetv2 --format torchscript --optimize --out sv2.pt
  e3d export mobilenetv2 --width-mult 0.45 --format onnx --optimize --out mv2.onnx
  e3d export mobilenet --checkpoint kinetics_mobilenet_1.0x_RGB_16_best.pth --format torchscript --optimize --out m.pt
  e3d export shufflenet --format torchscript --int8 --calib-data motion --num-classes 10 --size 48 --out s8.pt
  e3d export mypkg.models:make_net --kwargs '{"num_classes": 600}' --format onnx --out net.onnx

--optimize: BatchNorm folded into the preceding convolutions; for TorchScript also the
channels-last-3d memory format and a frozen graph, to be run with the oneDNN Graph fuser on:
    import torch; m = torch.jit.load("sv2.pt"); torch.jit.enable_onednn_fusion(True); m(clips)
(profiler.export.load_torchscript does this). ONNX files take NCDHW float32 clips, any batch size.

The written file is reloaded and compared with the eager model on random clips every time; the
max relative error (max |out - eager| / max |eager|) is printed, and a float export above 1e-4
fails. --int8 (TorchScript only) calibrates on --calib-data (a proxy task name such as motion or
digits, or a dataset path, read by search.data; or 'random' for a speed-only model) and reports
top-1 of float and int8 on its validation split. The int8 file names the quantized engine of its
weights; load it with profiler.export.load_torchscript, which selects that engine (with plain
torch.jit.load, first set torch.backends.quantized.engine to the one printed in fx-int8(...)).

A failure inside the model is one line naming the exception; --debug (or E3D_DEBUG=1) shows the traceback."""

BATCH_OPTION = "--check-batch"
"""The option that sets the batch the model runs on here (named when it runs out of memory)."""


CALIB_CLIPS, EVAL_CLIPS = 64, 256
"""Default clips of ``--int8``'s calibration and of its top-1 check."""


def register(sub: Any) -> None:
    """Add the ``export`` subcommand."""
    p = sub.add_parser(
        "export",
        help="export a model as TorchScript or ONNX (optimized, int8), checked against eager",
        description="Export a 3D model for deployment and check the written file against the eager model.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "target",
        metavar="TARGET",
        help="preset name, spec JSON file, e3d checkpoint (exported with its weights) or package.module:callable",
    )
    add_kwargs_argument(p)
    p.add_argument("--format", choices=("torchscript", "onnx"), required=True, help="file format")
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="where to write the model")
    p.add_argument("--optimize", action="store_true", help="fold BatchNorm; TorchScript: channels-last-3d, frozen graph too")
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16", "auto"),
        default="fp32",
        help="bf16: TorchScript --optimize in bf16 (CPUs with AVX512-BF16/AMX), checked against eager bf16 autocast; "
        "auto: bf16 where a short calibration of both optimized graphs finds it faster, else fp32 (default fp32)",
    )
    p.add_argument("--int8", action="store_true", help="post-training int8 quantization (TorchScript, x86 oneDNN kernels)")
    p.add_argument("--calib-data", metavar="DATA", help="int8 calibration data: proxy task name, dataset path, or 'random'")
    p.add_argument(
        "--calib-clips", type=positive_int, default=CALIB_CLIPS, metavar="N", help=f"clips to calibrate int8 on (default {CALIB_CLIPS})"
    )
    p.add_argument(
        "--eval-clips", type=positive_int, default=EVAL_CLIPS, metavar="N", help=f"validation clips for int8's top-1 (default {EVAL_CLIPS})"
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        metavar="PATH",
        help="weights: a paper .pth checkpoint, an e3d one, or e3d train's last.pt (presets and specs)",
    )
    add_model_arguments(p)
    p.add_argument("--check-batch", type=positive_int, default=2, metavar="B", help="random clips in the numerical check (default 2)")
    add_debug_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Resolve the target, export it, print the check; ``--debug`` prints the traceback behind a one-line error."""
    return run_showing_traceback(_run, args)


def _run(args: argparse.Namespace) -> int:
    """Check the options, build the model, export it (float or int8) and print the check."""
    from profiler.targets import guard

    _check_options(args)
    target, model = _model(args)
    guard(lambda: _run_once(model, target.input_shape, args.check_batch), target, batch_option=BATCH_OPTION)
    if args.int8:
        return _int8(args, target, model)
    bf16 = _bf16(args, target, model)
    result = guard(lambda: _export_float(args, model, target.input_shape, bf16=bf16), target, batch_option=BATCH_OPTION)
    print(result.summary())
    if args.format == "torchscript" and args.optimize:
        print("run it with torch.jit.enable_onednn_fusion(True) (or profiler.export.load_torchscript) for the fused kernels")
    return 0


def _check_options(args: argparse.Namespace) -> None:
    """One line for options that do not go together, an unsupported bf16 or an output folder that cannot be written."""
    from profiler.export import ExportError
    from space.files import check_file

    if args.int8 and args.format != "torchscript":
        raise ExportError("--int8 exports TorchScript only (use --format torchscript)")
    if args.int8 and not args.calib_data:
        raise ExportError("--int8 needs --calib-data: a proxy task name, a dataset path, or 'random'")
    int8_only = (
        ("--calib-data", bool(args.calib_data)),
        ("--calib-clips", args.calib_clips != CALIB_CLIPS),
        ("--eval-clips", args.eval_clips != EVAL_CLIPS),
    )
    given = [flag for flag, on in int8_only if on]
    if given and not args.int8:
        raise ExportError(f"{', '.join(given)}: for --int8")
    if args.precision != "fp32" and (args.format != "torchscript" or not args.optimize or args.int8):
        raise ExportError(
            f"--precision {args.precision} exports an optimized float TorchScript model: --format torchscript --optimize, no --int8"
        )
    if args.precision == "bf16":
        from profiler.precision import check_supported

        check_supported("bf16")
    check_file(args.out)  # no file name, a folder, a read-only or full folder: one line now, not after the export


def _model(args: argparse.Namespace) -> tuple[Target, nn.Module]:
    """TARGET as the options build it (``--kwargs`` for an import path), in eval mode, with ``--checkpoint`` loaded."""
    from profiler.export import ExportError
    from profiler.targets import parse_kwargs, resolve_target

    frames, size = frames_and_size(args)
    target = resolve_target(
        args.target, width_mult=args.width_mult, num_classes=args.num_classes, frames=frames, size=size, kwargs=parse_kwargs(args.kwargs)
    )
    if target.kind == "torchscript":
        raise ExportError(f"{args.target} is already TorchScript; export a preset, a spec file or a module")
    model = target.module().eval()
    if args.checkpoint is not None:
        from space.checkpoints import load_checkpoint

        load_checkpoint(model, args.checkpoint)
    return target, model


def _run_once(model: nn.Module, shape: tuple[int, ...], batch_size: int) -> None:
    """Run the eager model on the check's clips: an error of the model's own is then named as it is (the
    exporters wrap it in theirs)."""
    import torch

    from profiler.optimize import example_input

    with torch.no_grad():
        model(example_input(model, shape, batch_size))


def _bf16(args: argparse.Namespace, target: Target, model: nn.Module) -> bool:
    """Whether the graph is written in bf16: ``--precision bf16``, or ``auto`` when the calibration of both
    optimized graphs (at the paper's batch of 8, cached like profile's) picks it; ``auto`` prints its choice."""
    if args.precision != "auto":
        return bool(args.precision == "bf16")
    from profiler.latency import PAPER_BATCH
    from profiler.precision import resolve_optimized
    from profiler.targets import guard

    shape = target.input_shape
    chosen = guard(lambda: resolve_optimized(model, "auto", input_shape=shape, batch_size=PAPER_BATCH), target, batch_option=BATCH_OPTION)
    print(f"run as   {chosen.describe()}")
    return chosen.precision == "bf16"


def _export_float(args: argparse.Namespace, model: nn.Module, shape: tuple[int, ...], *, bf16: bool) -> ExportResult:
    """Write the float (fp32 or bf16) TorchScript or ONNX file and check it against eager."""
    from profiler.export import export_onnx, export_torchscript

    if bf16:
        return export_torchscript(model, args.out, input_shape=shape, batch_size=args.check_batch, optimize=True, bf16=True)
    export = export_torchscript if args.format == "torchscript" else export_onnx
    return export(model, args.out, input_shape=shape, batch_size=args.check_batch, optimize=args.optimize)


def _int8(args: argparse.Namespace, target: Target, model: nn.Module) -> int:
    """Calibrate, quantize, write and check the int8 TorchScript model; top-1 of float and int8 with real data."""
    from profiler.export import export_int8_torchscript
    from profiler.optimize import example_input
    from profiler.quantize import quantize_int8
    from profiler.targets import guard

    shape = target.input_shape
    batches, val = _calibration(args, model, shape)
    q = guard(lambda: quantize_int8(model, batches, input_shape=shape), target, batch_option=BATCH_OPTION)
    x = example_input(model, shape, args.check_batch)
    print(guard(lambda: export_int8_torchscript(q, model, args.out, x=x), target, batch_option=BATCH_OPTION).summary())
    if val is None:
        print("int8 accuracy change: not measured (calibrated on random clips; give --calib-data TASK or a dataset path)")
        return 0
    n = min(args.eval_clips, len(val))
    float_top1, int8_top1 = guard(lambda: (_top1(model, val, n), _top1(q, val, n)), target, batch_option=BATCH_OPTION)
    print(
        f"int8 accuracy on {getattr(val, 'name', args.calib_data)} ({n} validation clips): top-1 {int8_top1:.2f}% "
        f"vs float {float_top1:.2f}% (change {int8_top1 - float_top1:+.2f} points)"
    )
    return 0


def _calibration(args: argparse.Namespace, model: nn.Module, shape: tuple[int, ...]) -> tuple[list[Any], Any]:
    """The int8 calibration batches of ``--calib-data``, and its validation split (None for random clips)."""
    import torch

    if args.calib_data != "random":
        clip = (shape[1], shape[2], shape[3])
        train, val = _datasets(args.calib_data, clip, model)
        return [x for x, _ in _batches(train, args.calib_clips)], val
    gen = torch.Generator().manual_seed(0)
    batches: list[torch.Tensor] = [torch.randn(min(8, args.calib_clips), *shape, generator=gen)]
    while sum(len(b) for b in batches) < args.calib_clips:
        batches.append(torch.randn(min(8, args.calib_clips - sum(len(b) for b in batches)), *shape, generator=gen))
    return batches, None


def _datasets(data: str, clip: tuple[int, int, int], model: Any) -> tuple[Any, Any]:
    from profiler.export import ExportError

    try:
        from search.data import open_dataset
    except ImportError as e:
        raise ExportError(f"--calib-data {data} needs the search.data package ({e})") from None
    train = open_dataset(data, split="train", clip=clip)
    val = open_dataset(data, split="val", clip=clip)
    classes = getattr(val, "num_classes", None)
    spec = getattr(model, "spec", None)
    if classes is not None and spec is not None and spec.num_classes != classes:
        raise ExportError(f"{data} has {classes} classes but the model {spec.num_classes}; pass --num-classes {classes}")
    return train, val


def _batches(data: Any, n: int, batch_size: int = 8) -> Iterator[tuple[Any, Any]]:
    """Up to ``n`` (clips, labels) of ``data`` in batches; unreadable items (None) are skipped."""
    import torch

    clips: list[Any] = []
    labels: list[int] = []
    taken = 0
    for i in range(len(data)):
        if taken >= n:
            break
        item = data[i]
        if item is None:
            continue
        clips.append(item[0])
        labels.append(int(item[1]))
        taken += 1
        if len(clips) == batch_size or taken == n:
            yield torch.stack(clips), torch.tensor(labels)
            clips, labels = [], []
    if clips:
        yield torch.stack(clips), torch.tensor(labels)


def _top1(model: Any, data: Any, n: int) -> float:
    """Clip top-1 (percent) of ``model`` on the first ``n`` readable items of ``data``."""
    import torch

    correct = total = 0
    with torch.no_grad():
        for x, y in _batches(data, n):
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    return 100.0 * correct / max(total, 1)
