"""``e3d evaluate``: clip and video accuracy of a trained checkpoint on a dataset split."""

from __future__ import annotations

import argparse
import json
from typing import Any

from e3d.cli import MAX_THREADS, device_arg, positive_int, thread_count, worker_count
from e3d.commands.data import add_data_arguments, data_source, dataset_kwargs, proxy_options


def register(sub: Any) -> None:
    """Add the ``evaluate`` subcommand."""
    p = sub.add_parser(
        "evaluate",
        help="clip and video accuracy of a checkpoint written by e3d train",
        description="Evaluate CHECKPOINT (a last.pt written by `e3d train`, or its run folder) on a split of --data "
        "(default: the data it was trained on). The test split takes every non-overlapping window of each video with "
        "a centre crop (the paper's recognition protocol): clip accuracy counts every window, video accuracy averages "
        "the softmax scores of a video's windows. The train and val splits take the centre window of each video with a "
        "centre crop (no augmentation).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint file or the run folder that holds last.pt")
    p.add_argument("--split", choices=("train", "val", "test"), default="test", help="split to evaluate (default test)")
    add_data_arguments(p, proxy_samples=False)
    p.add_argument("--batch-size", type=positive_int, default=32, metavar="B", help="clips per batch (default 32)")
    p.add_argument("--workers", type=worker_count, default=0, metavar="N", help="loader processes (default 0)")
    p.add_argument("--device", type=device_arg, default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--threads", type=thread_count, metavar="N", help=f"torch CPU threads, at most {MAX_THREADS} (default: torch's)")
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        default="fp32",
        help="fp32 (default), bf16 (CPUs with AVX512-BF16/AMX, CUDA), fp16 (CUDA), or auto: the fastest a short calibration measures",
    )
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the checkpoint, open the split, print clip and video accuracy."""
    from search.train import evaluate

    state, spec = _load_state(args.checkpoint)
    data = _open_split(args, spec, state.get("meta") or {})
    _check_classes(state, spec, data)
    model = _load_model(args.checkpoint, state, spec)
    run_as = _resolve_run_as(args, model, spec)
    m = evaluate(
        run_as.prepare(model),
        data,
        batch_size=args.batch_size,
        device=args.device,
        num_workers=args.workers,
        progress=not args.quiet,
        exec_config=run_as,
    )
    if args.json:
        record = {"checkpoint": str(args.checkpoint), "data": data.name, "epoch": state.get("epoch"), **m, "run_as": run_as.as_dict()}
        print(json.dumps(record))
    else:
        _print_report(spec, state, data, m, run_as)
    return 0


def _load_state(checkpoint: str) -> tuple[dict[str, Any], Any]:
    """The checkpoint's stored state and its model spec; a checkpoint without a spec fails."""
    from search.train import CheckpointError, load_checkpoint
    from space import NetSpec
    from space.spec import SpecError

    state = load_checkpoint(checkpoint)
    if not state.get("spec"):
        raise CheckpointError(f"{checkpoint} has no model spec (it was not written by e3d train)")
    try:
        return state, NetSpec.from_dict(state["spec"])
    except SpecError as e:
        raise CheckpointError(f"{checkpoint}: field 'spec' is not a valid spec: {e}") from None


def _fill_data_args(args: argparse.Namespace, meta: dict[str, Any]) -> None:
    """Without --data and --format, read the data the checkpoint was trained on (from its metadata)."""
    from search.data import DataError

    if args.data is not None or args.format is not None:
        return
    if not meta.get("data"):
        raise DataError("--data PATH is required (the checkpoint does not say which data it was trained on)")
    args.data, args.format = meta["data"], meta.get("format")
    args.annotations = args.annotations or meta.get("annotations")
    args.fold = meta.get("fold", args.fold)
    args.data_seed = meta.get("data_seed", args.data_seed)
    args.cache_dir = args.cache_dir or meta.get("cache_dir")


def _open_split(args: argparse.Namespace, spec: Any, meta: dict[str, Any]) -> Any:
    """Open --split of the data at the model's clip, with the frame step it was trained with, and on the data it
    was trained on, its proxy options and number of training and validation videos. The train split is cut as
    the val split is (the centre window of each video, centre-cropped, unflipped), not augmented as in training."""
    from search.data import open_dataset

    _check_meta(args.checkpoint, meta)
    _fill_data_args(args, meta)
    source, fmt = data_source(args)
    kw = dataset_kwargs(args)
    if args.data == meta.get("data"):
        if meta.get("proxy_options"):
            kw["proxy_options"] = proxy_options(args, base=_proxy_options(args.checkpoint, meta["proxy_options"]))  # given ones win
        kw["num_samples"] = meta.get(f"{args.split}_samples")
    sampling = "center" if args.split == "train" else None  # the split's own is random: augmented clips (crop, flip, window)
    return open_dataset(
        source,
        split=args.split,
        format=fmt,
        clip=spec.clip,
        frame_step=meta.get("frame_step"),
        sampling=sampling,
        progress=not args.quiet,
        **kw,
    )


_META_FIELDS: dict[str, type] = {
    **dict.fromkeys(("data", "format", "annotations", "cache_dir"), str),
    **dict.fromkeys(("fold", "data_seed", "frame_step", "train_samples", "val_samples"), int),
    "proxy_options": dict,
}
"""The type of each entry of a checkpoint's ``meta`` that evaluate reads (each may be absent or None)."""


def _check_meta(checkpoint: str, meta: dict[str, Any]) -> None:
    """:class:`search.train.CheckpointError` naming the checkpoint and the entry of ``meta`` of another type."""
    from search.train import check_field_types

    check_field_types(meta, _META_FIELDS, where=f"{checkpoint}: meta field")


def _proxy_options(checkpoint: str, stored: dict[str, Any]) -> Any:
    """The :class:`search.data.ProxyOptions` stored in a checkpoint's meta; unknown names fail in one line."""
    from dataclasses import fields

    from search.data import ProxyOptions
    from search.train import CheckpointError

    unknown = sorted(set(stored) - {f.name for f in fields(ProxyOptions)})
    if unknown:
        raise CheckpointError(f"{checkpoint}: meta field 'proxy_options' has unknown entries: {', '.join(map(str, unknown))}")
    try:
        return ProxyOptions(**stored)
    except TypeError as e:  # a value of another type; one out of range is ProxyOptions' own DataError
        raise CheckpointError(f"{checkpoint}: meta field 'proxy_options' holds a value of the wrong type ({e})") from None


def _check_classes(state: dict[str, Any], spec: Any, data: Any) -> None:
    """Fail unless the data has the classes the checkpoint was trained on: the same count, and names when stored."""
    from search.data import DataError
    from search.train import ClassCountError

    if data.num_classes != spec.num_classes:
        raise ClassCountError(f"the checkpoint's model has {spec.num_classes} classes but {data.name} has {data.num_classes}")
    trained_names = state.get("class_names") or []
    if trained_names and list(trained_names) != data.class_names:
        raise DataError(f"the checkpoint was trained on other classes than those of {data.name} (same count, different names or order)")


def _load_model(checkpoint: str, state: dict[str, Any], spec: Any) -> Any:
    """Build the spec's model and load the checkpoint's weights into it."""
    from search.train import CheckpointError
    from space import build

    model = build(spec)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise CheckpointError(f"the weights in {checkpoint} do not fit its spec: {str(e).splitlines()[0]}") from None
    return model


def _resolve_run_as(args: argparse.Namespace, model: Any, spec: Any) -> Any:
    """Set --threads, then the execution (precision) to evaluate with: as asked, or the fastest measured for auto."""
    from profiler.precision import resolve_inference

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return resolve_inference(
        model, args.precision, input_shape=spec.input_shape, batch_size=args.batch_size, device=args.device, threads=args.threads
    )


def _print_report(spec: Any, state: dict[str, Any], data: Any, m: dict[str, float], run_as: Any) -> None:
    """Print the model, execution, data, clip and video accuracy lines (and skipped clips, if any)."""
    print(f"model    {spec.summary()}  (epoch {state.get('epoch')})")
    print(f"run as   {run_as.describe()}")
    print(f"data     {data!r}")
    print(f"clips    top1 {m['top1']:.2f}%  top5 {m['top5']:.2f}%  loss {m['loss']:.4f}  ({m['clips']:.0f} clips)")
    print(f"videos   top1 {m['video_top1']:.2f}%  ({m['videos']:.0f} videos; softmax scores of each video's clips averaged)")
    if m["skipped"]:
        print(f"skipped  {m['skipped']:.0f} unreadable clips or videos (not counted)")
