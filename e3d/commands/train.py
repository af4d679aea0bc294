"""``e3d train``: train a preset or a spec file on a video dataset or a built-in proxy task."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e3d.cli import MAX_THREADS, device_arg, learning_rate, non_negative_int, positive_float, positive_int, thread_count, worker_count
from e3d.commands.data import add_data_arguments, data_source, dataset_kwargs

EPILOG = """\
examples:
  e3d train shufflenet --width-mult 0.5 --format motion --epochs 5
  e3d train mobilenetv2 --width-mult 0.45 --data ~/data/UCF-101 --format ucf101 --fold 1
  e3d train runs/e3d-search/best.json                  trained the way the search trained it (its recipe.json)
  e3d train runs/e3d-search/best.json --recipe paper --data ~/data/UCF-101 --format ucf101
  e3d train shufflenet --data ~/data/ucf --format ucf101 --pretrained runs/k600/last.pt --freeze-backbone --lr 0.01

A spec file from a search (best.json, with recipe.json beside it) trains by default with the search's
proxy settings: its task, clip, videos, epochs, batch, lr and seed (--recipe search); any option given
here overrides one of them, and --recipe paper uses the defaults below instead.
A checkpoint is written to --out after every epoch; --resume continues an interrupted run exactly
(with the same model, data and training options: other ones are refused; --epochs may grow, but the
lr schedule stays the checkpoint's: a note says when the run will then not match an uninterrupted one).
Defaults are the paper's optimiser (SGD, momentum 0.9, dampening 0.9, weight decay 1e-3, lr 0.1 cut
by 10x after round(E/2) and after round(3E/4) of the E epochs: one cut when they coincide, as for 3 epochs,
cut after epoch 2; 5: after 2 and 4). Accuracies are percentages of clips (top-1/top-5) on the
validation split (its centre window of each video); `e3d evaluate` reports video accuracy on the test split."""


def register(sub: Any) -> None:
    """Add the ``train`` subcommand."""
    p = sub.add_parser(
        "train",
        help="train a model on a video dataset or a built-in proxy task",
        description="Train MODEL (a preset name with --width-mult, or a spec JSON file) on --data, validating after every epoch.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="a preset name (see `e3d models`) or a spec JSON file")
    p.add_argument("--width-mult", type=positive_float, default=1.0, metavar="W", help="presets: width multiplier (default 1.0)")
    add_data_arguments(p)
    _add_clip_options(p.add_argument_group("clips"))
    t = p.add_argument_group("training")
    _add_recipe_options(t)
    _add_hardware_options(t)
    _add_init_options(t)
    _add_output_options(p.add_argument_group("output"))
    p.set_defaults(func=run, data_seed=None)  # None: a recipe's, else 0 (apply_recipe)


def _add_clip_options(c: Any) -> None:
    """The "clips" group: clip shape, frame step, crop and flip."""
    c.add_argument("--sample-duration", type=positive_int, metavar="T", help="frames per clip (default 16, or the spec's)")
    c.add_argument(
        "--sample-size", type=positive_int, metavar="S", help="clip height and width (default 112; 48 for proxy tasks; or the spec's)"
    )
    c.add_argument(
        "--frame-step",
        type=positive_int,
        metavar="N",
        help="take every N-th frame (default 2 for jester, as the paper, and motion; else 1)",
    )
    c.add_argument("--crop", choices=("random", "corner"), default="random", help="multi-scale crop position (default random)")
    c.add_argument(
        "--flip", action=argparse.BooleanOptionalAction, help="random horizontal flip (default on, off for jester and proxy tasks)"
    )


def _add_recipe_options(t: Any) -> None:
    """The first "training" options: recipe, epochs, batch, optimiser, schedule and time limit."""
    t.add_argument(
        "--recipe",
        choices=RECIPES,
        help="search: train a spec file the way the search that found it did (its recipe.json; the default when one is "
        "beside the spec); paper: the paper's recipe and clip (the default otherwise)",
    )
    t.add_argument("--epochs", type=positive_int, metavar="N", help="epochs (default 5, or the search's)")
    t.add_argument("--batch-size", type=positive_int, metavar="B", help="clips per step (default 16, or the search's)")
    t.add_argument("--lr", type=learning_rate, metavar="LR", help="initial learning rate (default 0.1, the paper's; or the search's)")
    t.add_argument("--momentum", type=float, default=0.9, metavar="M", help="SGD momentum (default 0.9)")
    t.add_argument("--dampening", type=float, default=0.9, metavar="D", help="SGD dampening (default 0.9)")
    t.add_argument("--weight-decay", type=float, default=1e-3, metavar="WD", help="weight decay (default 1e-3)")
    t.add_argument(
        "--schedule",
        choices=SCHEDULES,
        help="lr schedule (default step: x0.1 after round(E/2) and round(3E/4) of E epochs, once when they coincide; "
        "cosine: after every step, to 0; or the search's)",
    )
    t.add_argument("--warmup", type=float, metavar="F", help="cosine: linear warm-up over this fraction of the steps (default 0)")
    t.add_argument("--max-minutes", type=positive_float, metavar="M", help="stop after the epoch in which M minutes have passed")


def _add_hardware_options(t: Any) -> None:
    """The "training" options of where and how fast it runs: loaders, device, threads, precision."""
    t.add_argument("--workers", type=worker_count, default=0, metavar="N", help="loader processes (default 0: load in this process)")
    t.add_argument("--device", type=device_arg, default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    t.add_argument(
        "--threads",
        type=thread_count,
        metavar="N",
        help=f"torch CPU threads, at most {MAX_THREADS} (default: torch's; 1 is often faster on a busy machine)",
    )
    t.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="fp32 (default, or the search's; with --resume the checkpoint's), bf16 (CPUs with AVX512-BF16/AMX, CUDA), fp16 (CUDA), "
        "or auto: the fastest a short calibration measures",
    )


def _add_init_options(t: Any) -> None:
    """The "training" options of the starting point: seed, frozen backbone, dropout, pretrained weights, head."""
    t.add_argument(
        "--seed", type=non_negative_int, metavar="S", help="seed of initialisation, shuffling and augmentation (default 0, or the search's)"
    )
    t.add_argument("--freeze-backbone", action="store_true", help="train only the last layer (the paper's transfer protocol; dropout 0.9)")
    t.add_argument(
        "--dropout", type=float, metavar="P", help="dropout before the classifier (default: the model's; 0.9 with --freeze-backbone)"
    )
    t.add_argument(
        "--pretrained",
        metavar="CKPT",
        help="start from this checkpoint's weights (the classifier is replaced when classes differ; not with --resume)",
    )
    t.add_argument("--adapt-head", action="store_true", help="spec files: set the spec's class count to the dataset's instead of failing")


def _add_output_options(o: Any) -> None:
    """The "output" group: run folder, resume, progress bars."""
    default = "runs/train/<model>-w<W>-<data>-s<seed>, e.g. runs/train/mobilenet-w0.5-motion-s0"
    o.add_argument("--out", metavar="DIR", help=f"run folder for checkpoints (default {default})")
    o.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    o.add_argument("--quiet", action="store_true", help="no progress bars")


RECIPES = ("search", "paper")
SCHEDULES = ("step", "plateau", "cosine")
"""The lr schedules (:data:`search.train.SCHEDULES`, not imported: it imports torch)."""
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
"""The precisions (:data:`profiler.precision.PRECISIONS`)."""
PAPER = {"epochs": 5, "batch_size": 16, "lr": 0.1, "schedule": "step", "warmup": 0.0, "seed": 0, "precision": "fp32", "data_seed": 0}
"""The trainer's own defaults (the paper's optimiser) for what neither the command nor a recipe sets."""


def find_recipe(model: str) -> Path | None:
    """The ``recipe.json`` that ``e3d search`` wrote beside a spec file, if any."""
    path = Path(model)
    if not (path.suffix == ".json" and path.is_file()):
        return None
    recipe = path.with_name("recipe.json")
    return recipe if recipe.is_file() else None


def _whole(value: Any, minimum: int) -> bool:
    return type(value) is int and minimum <= value <= sys.maxsize  # the bound of --seed and every integer option


def _number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


_RECIPE_FIELDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "clip": ("three positive integers", lambda v: isinstance(v, list) and len(v) == 3 and all(_whole(x, 1) for x in v)),
    "epochs": ("a positive 64-bit integer", lambda v: _whole(v, 1)),
    "batch_size": ("a positive 64-bit integer", lambda v: _whole(v, 1)),
    "train_samples": ("a positive 64-bit integer", lambda v: _whole(v, 1)),
    "val_samples": ("a positive 64-bit integer", lambda v: _whole(v, 1)),
    "seed": ("a non-negative 64-bit integer", lambda v: _whole(v, 0)),
    "data_seed": ("a non-negative 64-bit integer", lambda v: _whole(v, 0)),
    "lr": ("a positive number", lambda v: _number(v) and v > 0),
    "warmup": ("a number in [0, 1)", lambda v: _number(v) and 0 <= v < 1),
    "schedule": (f"one of {', '.join(SCHEDULES)}", lambda v: v in SCHEDULES),
    "precision": (f"one of {', '.join(PRECISIONS)}", lambda v: v in PRECISIONS),
    "task": ("a task name", lambda v: isinstance(v, str)),
    "data": ("a path", lambda v: isinstance(v, str)),
    "data_format": ("a format name", lambda v: isinstance(v, str)),
}
"""What each field of ``recipe.json`` must be when present and not null (``clip`` must be present)."""


def read_recipe(path: Path) -> dict[str, Any]:
    """The recipe at ``path``; :class:`search.data.DataError` naming the file and field when it is not one
    ``e3d search`` writes (a field of the wrong type or range, as a hand edit can leave)."""
    from search.data import DataError
    from space.spec import JSONError, parse_json

    try:
        recipe = parse_json(path.read_text())
    except (JSONError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is not a recipe written by e3d search ({e})") from None
    if not isinstance(recipe, dict) or "clip" not in recipe:
        raise DataError(f"{path} is not a recipe written by e3d search (no clip)")
    for key, (what, ok) in _RECIPE_FIELDS.items():
        value = recipe.get(key)
        if value is not None and not ok(value):
            raise DataError(f"{path}: {key} must be {what}; got {json.dumps(value)}")
    return recipe


def apply_recipe(args: argparse.Namespace) -> str | None:
    """Fill what the command left unset from the search's recipe (``--recipe search``, the default
    for a spec file with a ``recipe.json`` beside it), then from :data:`PAPER`. Returns a line that
    says which recipe is used, or None for a plain paper run."""
    from search.data import DataError

    found = find_recipe(args.model) if args.recipe != "paper" else None
    if args.recipe == "search" and found is None:
        raise DataError(f"no recipe.json beside {args.model} (e3d search writes one in its run folder); use --recipe paper")
    args.recipe_clip = None
    recipe = read_recipe(found) if found is not None else None
    if recipe is not None:
        args.recipe_clip = tuple(recipe["clip"])
        if args.data is None and args.format is None:
            args.data, args.format = recipe.get("data") or recipe.get("task"), recipe.get("data_format")
        same_data = (args.data or args.format) in (recipe.get("data"), recipe.get("task"))
        fill = {k: recipe.get(k) for k in ("epochs", "batch_size", "lr", "schedule", "warmup", "seed", "precision")}
        if same_data and recipe.get("data") is None:  # the built-in task: the same videos
            fill.update({"num_samples": recipe.get("train_samples"), "val_samples": recipe.get("val_samples")})
            fill["data_seed"] = recipe.get("data_seed")
        for key, value in fill.items():
            if getattr(args, key, None) is None and value is not None:
                setattr(args, key, value)
    for key, value in PAPER.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if recipe is None:
        return None
    t, h, w = _clip(args, 0)
    return (
        f"recipe   the search's ({found}): clip {t}x{h}x{w}, {args.epochs} epochs, batch {args.batch_size}, "
        f"lr {args.lr:g}, seed {args.seed}; --recipe paper for the paper's"
    )


def _slug(text: str) -> str:
    """``text`` with every run of characters other than letters, digits and dots made one dash."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-") or "data"


def _is_spec_file(model: str) -> bool:
    """Whether MODEL names a spec file (a .json name or an existing file) rather than a preset."""
    path = Path(model)
    return path.suffix == ".json" or path.is_file()


def build_spec(args: argparse.Namespace, *, num_classes: int, default_size: int) -> tuple[Any, str]:
    """The spec to train and a short model name; presets take the dataset's class count."""
    import space
    from search.train import ClassCountError

    path = Path(args.model)
    if _is_spec_file(args.model):
        spec = space.NetSpec.load(path)
        spec = spec.replace(clip=_clip(args, default_size))
        if spec.num_classes != num_classes:
            if not args.adapt_head:
                raise ClassCountError(
                    f"{path} has {spec.num_classes} classes but the dataset has {num_classes}; pass --adapt-head to replace them"
                )
            spec = spec.replace(num_classes=num_classes)
        name = path.stem
    else:
        t, size, _ = _clip(args, default_size)
        spec = space.paper_spec(args.model, width_mult=args.width_mult, num_classes=num_classes, sample_size=size, sample_duration=t)
        name = f"{args.model}-w{args.width_mult:g}"
    dropout = args.dropout if args.dropout is not None else (0.9 if args.freeze_backbone else None)
    if dropout is not None:
        spec = spec.replace(dropout=dropout)
    return spec, name


def load_pretrained(model: Any, path: str) -> str:
    """Copy every tensor of the checkpoint (e3d train's run or file, e3d convert-checkpoint's file, or a state dict
    with e3d's names) whose name and shape fit; returns a one-line summary."""
    from search.train import CheckpointError, check_finite, checkpoint_file
    from space.checkpoints import is_e3d_state, read_checkpoint, state_dict_of

    file = checkpoint_file(path)
    state = state_dict_of(read_checkpoint(file), source=str(file))  # e3d train's, convert-checkpoint's, or a state dict
    if not is_e3d_state(state):
        raise CheckpointError(f"{file} holds weights under other names (the paper's?); convert them first with e3d convert-checkpoint")
    check_finite(state, file)
    own = model.state_dict()
    fit = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not fit:
        raise CheckpointError(f"no weight of {path} fits this model")
    model.load_state_dict(fit, strict=False)
    kept = sorted(k for k in own if k not in fit)
    return f"loaded {len(fit)} of {len(own)} tensors from {path}" + (f"; new: {', '.join(kept)}" if kept else "")


@dataclass(frozen=True)
class _Data:
    """The opened training and validation splits and what was read to open them."""

    source: str
    kwargs: dict[str, Any]
    default_size: int
    train: Any
    val: Any


def run(args: argparse.Namespace) -> int:
    """Train and print one line per epoch."""
    from search.train import NonFiniteLossError, check_resume

    recipe_line = _prepare(args)
    data = _open_datasets(args)
    model, spec, name = _build_model(args, data)
    out, stored = _run_folder(args, name, data.source)
    if stored is not None and args.asked_precision is None:
        args.precision = stored["config"].get("precision", args.precision)
    config = _train_config(args, spec)
    meta = _meta(args, data)
    if stored is not None:
        check_resume(stored, config=config, model=model, meta=meta, path=out / "last.pt")  # before any calibration
        _note_schedule(args, stored, config)
    run_as = _exec_plan(args, model, data.train, config, stored)
    _print_header(recipe_line, spec, model, data, run_as)
    try:
        result = _fit(args, model, data, config, out, run_as, meta)
    except NonFiniteLossError as e:
        print(f"e3d train: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(_interrupted(out), file=sys.stderr)
        raise
    _print_result(args, result)
    return 0


def _interrupted(out: Path) -> str:
    """What Ctrl-C leaves: the last finished epoch's checkpoint, or nothing before the first epoch ends."""
    if (out / "last.pt").is_file():
        return f"e3d train: the last finished epoch is saved in {out}; continue with --resume --out {out}"
    return f"e3d train: stopped before the first epoch finished: nothing is saved in {out}"


def _prepare(args: argparse.Namespace) -> str | None:
    """Check --dropout, --adapt-head and --pretrained with --resume, fill unset options from the recipe, and fail on an
    unknown preset before any data is read."""
    from search.data import DataError

    if args.dropout is not None and not 0 <= args.dropout < 1:
        raise DataError(f"--dropout must be in [0, 1); got {args.dropout}")
    if args.adapt_head and not _is_spec_file(args.model):
        raise DataError(f"--adapt-head is for spec files; a preset ({args.model}) takes the dataset's class count anyway")
    if args.resume and args.pretrained:
        raise DataError(
            "--pretrained does not go with --resume: a resumed run continues from its checkpoint's weights "
            "(leave out --pretrained, or start a new run in another --out)"
        )
    args.val_samples = None
    args.asked_precision = args.precision  # None: a resume keeps the checkpoint's (apply_recipe fills it in)
    recipe_line = apply_recipe(args)
    import space

    if _is_spec_file(args.model):
        space.NetSpec.load(args.model)  # a missing or bad spec fails here, before any data is read
    else:
        space.model_info(args.model)  # so does an unknown name
    return recipe_line


def _is_proxy(source: str, fmt: str | None) -> bool:
    """Whether (source, format) from :func:`data_source` names a built-in proxy task."""
    from search.data import PROXY_TASKS

    return fmt in PROXY_TASKS or (fmt is None and source in PROXY_TASKS and not Path(source).exists())


def _clip(args: argparse.Namespace, default_size: int) -> tuple[int, int, int]:
    """The clip (T, H, W) to train at: --sample-duration and --sample-size where given, else the search recipe's,
    else a spec file's own, else 16 frames of ``default_size`` squared."""
    if args.recipe_clip is not None:
        t, h, w = args.recipe_clip
    elif _is_spec_file(args.model):
        import space

        t, h, w = space.NetSpec.load(args.model).clip
    else:
        t, h, w = 16, default_size, default_size
    if args.sample_size:
        h = w = args.sample_size
    return (args.sample_duration or t, h, w)


def _open_datasets(args: argparse.Namespace) -> _Data:
    """Open the training and validation splits of --data at the clip the model reads."""
    from search.data import open_dataset

    source, fmt = data_source(args)
    kw = dataset_kwargs(args)
    default_size = 48 if _is_proxy(source, fmt) else 112
    common = {**kw, "format": fmt, "clip": _clip(args, default_size), "frame_step": args.frame_step, "progress": not args.quiet}
    train = open_dataset(source, split="train", flip=args.flip, crop_position=args.crop, num_samples=args.num_samples, **common)
    val = open_dataset(source, split="val", **common, **({"num_samples": args.val_samples} if args.val_samples else {}))
    return _Data(source, kw, default_size, train, val)


def _build_model(args: argparse.Namespace, data: _Data) -> tuple[Any, Any, str]:
    """Seed, then build the model (checked against the memory limit) and load --pretrained; returns (model, spec, name)."""
    from profiler.footprint import check_memory
    from search.budget import check_batch_norms
    from search.train import seed_everything
    from space import build

    seed_everything(args.seed)
    spec, name = build_spec(args, num_classes=data.train.num_classes, default_size=data.default_size)
    check_memory(spec, batch=args.batch_size, training=True)  # an oversized spec: one line, before allocating
    check_batch_norms(spec, batch_size=args.batch_size)  # so is one whose BatchNorm would see one value per channel
    model = build(spec)
    if args.pretrained:
        print(load_pretrained(model, args.pretrained))
    return model, spec, name


def _run_folder(args: argparse.Namespace, name: str, source: str) -> tuple[Path, dict[str, Any] | None]:
    """The run folder, checked writable and free (unless --resume), and the checkpoint to resume from, if any."""
    from search.data import DataError
    from search.train import load_resumable
    from space.files import check_writable

    out = Path(args.out) if args.out else Path("runs") / "train" / f"{_slug(name)}-{_slug(Path(source).name)}-s{args.seed}"
    check_writable(out)  # a read-only or full disk: one line now, not at the first checkpoint after an epoch
    if (out / "last.pt").is_file() and not args.resume:
        raise DataError(f"{out} already holds a checkpoint; pass --resume to continue it, or --out DIR to start elsewhere")
    if args.resume and not (out / "last.pt").is_file():
        raise DataError(f"nothing to resume in {out}: no last.pt there (give the --out of the run, or leave out --resume)")
    stored = load_resumable(out / "last.pt") if args.resume else None
    if stored is not None:
        print(f"resuming {out} after epoch {int(stored['epoch'])}")
    return out, stored


def _train_config(args: argparse.Namespace, spec: Any) -> Any:
    """The :class:`search.train.TrainConfig` the options ask for."""
    from search.train import TrainConfig

    return TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        momentum=args.momentum,
        dampening=args.dampening,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        warmup=args.warmup,
        max_seconds=args.max_minutes * 60 if args.max_minutes else None,
        num_workers=args.workers,
        device=args.device,
        seed=args.seed,
        freeze_backbone=args.freeze_backbone,
        dropout=spec.dropout if (args.dropout is not None or args.freeze_backbone) else None,
        threads=args.threads,
        precision=args.precision,
    )


def _note_schedule(args: argparse.Namespace, stored: dict[str, Any], config: Any) -> None:
    """Print a note when resuming for another number of epochs changes the lr schedule from an uninterrupted run's."""
    from search.train import schedule_change

    change = schedule_change(stored, config)
    if change is not None:
        was = stored["config"].get("epochs")
        asked = f"--epochs {args.epochs}, not the checkpoint's {was}: " if was != args.epochs else ""
        print(f"note     {asked}{change}: the run will not match an uninterrupted one of {args.epochs} epochs")


def _exec_plan(args: argparse.Namespace, model: Any, train: Any, config: Any, stored: dict[str, Any] | None) -> Any:
    """How to execute: the resumed checkpoint's way when --precision allows it (on this run's threads), else resolved now."""
    from search.train import exec_for

    run_as = exec_for(model, train, config, stored)
    if stored is not None and stored.get("exec") and not run_as.reason.startswith("from the checkpoint"):
        was = stored["config"].get("precision")
        print(f"note     {args.precision}, not the checkpoint's {was}: the run will not match an uninterrupted one")
    return run_as


def _print_header(recipe_line: str | None, spec: Any, model: Any, data: _Data, run_as: Any) -> None:
    """Print the recipe, model, splits and execution lines shown before the first epoch."""
    if recipe_line:
        print(recipe_line)
    print(f"model    {spec.summary()}  ({sum(p.numel() for p in model.parameters()):,} params)")
    print(f"train    {data.train!r}{'' if data.train.transform.flip else ', no flip'}")
    print(f"val      {data.val!r}")
    print(f"run as   {run_as.describe()}")


def _meta(args: argparse.Namespace, data: _Data) -> dict[str, Any]:
    """What the checkpoint records about the data and the model, for ``e3d evaluate`` and ``--resume``."""
    kw = data.kwargs
    return {
        "data": data.source,
        "format": data.train.format,
        "annotations": args.annotations,
        "fold": args.fold,
        "frame_step": data.train.sampling.step,
        "data_seed": args.data_seed,
        "train_samples": args.num_samples,
        "val_samples": args.val_samples,
        "proxy_options": {k: getattr(kw["proxy_options"], k) for k in ("noise", "distractors", "speed", "digit_direction")},
        "cache_dir": kw["cache_dir"],
        "crop": data.train.transform.position,
        "flip": data.train.transform.flip,
        "model": args.model,
        "width_mult": args.width_mult,
    }


def _epoch_line(epoch: int, epochs: int, m: dict[str, float]) -> str:
    """The report line of one finished epoch (``epoch`` counts from 0)."""
    line = (
        f"epoch {epoch + 1}/{epochs}  train loss {m['train_loss']:.3f} top1 {m['train_top1']:.1f}%  "
        f"val loss {m['val_loss']:.3f} top1 {m['val_top1']:.1f}% top5 {m['val_top5']:.1f}%  "
        f"lr {m['lr']:g}  {m['clips_per_s']:.0f} clips/s  {m['seconds']:.0f}s"
    )
    if m["skipped"]:
        line += f"  ({m['skipped']:.0f} unreadable clips skipped)"
    if m["left_out"]:
        line += f"  ({m['left_out']:.0f} clips left out: too few in their batch for BatchNorm)"
    return line


def _fit(args: argparse.Namespace, model: Any, data: _Data, config: Any, out: Path, run_as: Any, meta: dict[str, Any]) -> Any:
    """Run :func:`search.train.fit`, writing one line per epoch above the progress bars."""
    from tqdm import tqdm

    from search.train import fit

    def report(epoch: int, m: dict[str, float]) -> None:
        tqdm.write(_epoch_line(epoch, args.epochs, m))

    return fit(
        model,
        data.train,
        data.val,
        config,
        on_epoch=report,
        checkpoint_dir=out,
        resume=args.resume,
        progress=not args.quiet,
        meta=meta,
        exec_config=run_as,
    )


def _print_result(args: argparse.Namespace, result: Any) -> None:
    """Print the closing lines: an early stop, the final accuracy, the checkpoint."""
    if result.stopped_early:
        print(f"stopped after epoch {result.epochs_run}: --max-minutes {args.max_minutes:g} used up")
    print(f"done     {result.epochs_run} epochs, val top1 {result.val_top1:.1f}% (best {result.best_val_top1:.1f}%), {result.seconds:.0f}s")
    print(f"checkpoint {result.checkpoint}")
