"""Training and evaluation of a video classifier: the paper's recipe, exact resume, clip and video accuracy.

Defaults follow the paper (SGD, momentum 0.9, dampening 0.9, weight decay 1e-3, cross-entropy, learning
rate cut by 10x after round(E/2) and after round(3E/4) of the E epochs, as in its 60-epoch fine-tuning with cuts
at 30 and 45; one cut when the two coincide: 3 epochs, the search's default, have one cut, after epoch 2;
``schedule="plateau"`` cuts it when the validation loss stops improving, three times at most, as it does
from scratch). A checkpoint is written after every epoch (atomically); ``resume`` continues from it
exactly: model, optimizer, scheduler, RNG states and epoch (it refuses another model or setting:
:func:`check_resume`). Each epoch's shuffle order and random crops
are drawn from ``(seed, epoch)``, so a run is reproducible whatever the number of loader workers.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import random
import time
from collections.abc import Callable, Sequence, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from profiler.convgrad import weight_grad_backend, weight_grad_note
from profiler.latency import DeviceError
from profiler.latency import resolve_device as device_here
from profiler.precision import PRECISIONS, ExecConfig, StepTimer, cache_key, network_key, resolve, train_step_timer, trainable
from search.data import DataError, ErrorReport, Indexed, collate_indexed
from space import E3DError, checkpoints
from space.checkpoints import read_checkpoint

SCHEDULES = ("step", "plateau", "cosine")
CHECKPOINT_FORMAT = "e3d.checkpoint/1"
CHECKPOINT_NAME = "last.pt"


class ConfigError(E3DError, ValueError):
    """A training setting that cannot work (the message names it)."""


class ClassCountError(E3DError, ValueError):
    """The model's number of classes differs from the dataset's."""


class CheckpointError(checkpoints.CheckpointError, ValueError):
    """A checkpoint that cannot be read or does not fit the model."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite (usually: the learning rate is too high)."""


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Defaults: the paper's optimiser, sized for short proxy runs on a CPU.

    ``milestones`` are fractions of ``epochs`` at which the ``step`` schedule multiplies the learning
    rate by ``gamma``: after epoch ``round(f * epochs)`` (at least 1; Python's round, halves to even) for each
    fraction ``f``, once where two fall on the same epoch (3 epochs: one cut, after epoch 2); ``patience`` is the
    ``plateau`` schedule's. ``cosine`` changes the rate after every step: a linear warm-up from 0 over the first
    ``warmup`` fraction of all steps, then a half cosine down to 0 at the last step. ``max_seconds`` stops after the
    epoch in which the wall-clock budget of this :func:`fit` call runs out. ``freeze_backbone`` trains
    only the last layer, with dropout ``dropout`` (default 0.9 then, the paper's UCF-101 value; otherwise
    the model's own). ``eval_batch_size`` defaults to twice ``batch_size``. ``threads`` sets torch's
    CPU threads during the call (None: leave them); on a busy machine one thread can be several times
    faster than two, because the threads of each small op wait for one another. ``precision`` is
    ``fp32`` (eager, contiguous: the default), ``bf16`` (CPU autocast, channels-last-3d), ``fp16``
    (CUDA) or ``auto`` (the fastest that a short calibration measures: :func:`resolve_exec`).
    """

    epochs: int = 5
    batch_size: int = 16
    lr: float = 0.1
    momentum: float = 0.9
    dampening: float = 0.9
    weight_decay: float = 1e-3
    schedule: str = "step"
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    patience: int = 2
    warmup: float = 0.0
    max_seconds: float | None = None
    num_workers: int = 0
    device: str = "cpu"
    seed: int = 0
    freeze_backbone: bool = False
    dropout: float | None = None
    eval_batch_size: int | None = None
    threads: int | None = None
    precision: str = "fp32"

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1; got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a positive number; got {self.lr}")
        if not (0 <= self.momentum < 1 and 0 <= self.dampening < 1 and 0 <= self.weight_decay < math.inf):
            raise ConfigError("momentum and dampening must be in [0, 1) and weight_decay a finite number >= 0")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}; got {self.schedule!r}")
        if not all(0 < m < 1 for m in self.milestones) or not 0 < self.gamma < 1:
            raise ConfigError("milestones must be fractions in (0, 1) and gamma in (0, 1)")
        if not 0 <= self.warmup < 1:
            raise ConfigError(f"warmup must be a fraction in [0, 1); got {self.warmup}")
        if self.warmup and self.schedule != "cosine":
            raise ConfigError(f"warmup is for the cosine schedule; the {self.schedule} schedule has none (got {self.warmup})")
        if self.num_workers < 0 or self.patience < 0:
            raise ConfigError("num_workers and patience must be >= 0")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ConfigError(f"max_seconds must be positive; got {self.max_seconds}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1); got {self.dropout}")
        if self.eval_batch_size is not None and self.eval_batch_size < 1:
            raise ConfigError(f"eval_batch_size must be >= 1; got {self.eval_batch_size}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1; got {self.threads}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}")

    @property
    def head_dropout(self) -> float | None:
        """The dropout to set on the model (None: keep the model's)."""
        if self.dropout is None and self.freeze_backbone:
            return 0.9
        return self.dropout


@dataclass
class FitResult:
    """Outcome of :func:`fit`. Accuracies in percent; ``history`` has one metrics dict per epoch ever run."""

    val_top1: float
    best_val_top1: float
    epochs_run: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False
    resumed_from: int = 0
    checkpoint: Path | None = None
    exec_config: ExecConfig | None = None
    """The precision, memory format and threads the run trained with, and why."""

    @property
    def val_loss(self) -> float:
        """Validation loss of the last epoch."""
        return self.history[-1]["val_loss"] if self.history else float("nan")


# -- helpers ------------------------------------------------------------------------------------------


def resolve_device(device: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` of this machine (:func:`profiler.latency.resolve_device`); :class:`ConfigError`
    otherwise: an unknown device, CUDA asked for but absent, a GPU index this machine does not have."""
    try:
        dev = device_here(device)
    except DeviceError as e:
        cuda = device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())
        if cuda and not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} asked for, but CUDA is not available on this machine") from None
        raise ConfigError(str(e)) from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported device {device!r}; use cpu or cuda")
    return dev


def last_layer(model: nn.Module) -> nn.Module:
    """The classifier layer: ``model.head.fc`` for e3d models, else the last Linear or Conv3d."""
    head = getattr(model, "head", None)
    fc = getattr(head, "fc", None)
    if isinstance(fc, nn.Module):
        return fc
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv3d))]
    if not layers:
        raise ConfigError("the model has no Linear or Conv3d layer to fine-tune")
    return layers[-1]


def model_classes(model: nn.Module) -> int:
    """Number of classes the model predicts (its spec's, or its last layer's outputs)."""
    spec = getattr(model, "spec", None)
    if spec is not None and hasattr(spec, "num_classes"):
        return int(spec.num_classes)
    layer = last_layer(model)
    return int(layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels)  # type: ignore[arg-type]


def _dataset_classes(data: Dataset[Any]) -> int | None:
    n = getattr(data, "num_classes", None)
    return int(n) if n is not None else None


def check_classes(model: nn.Module, *datasets: tuple[str, Dataset[Any]]) -> None:
    """Raise :class:`ClassCountError` when the model and a dataset disagree on the number of classes."""
    k = model_classes(model)
    for role, data in datasets:
        n = _dataset_classes(data)
        if n is not None and n != k:
            name = getattr(data, "name", role)
            raise ClassCountError(f"the model has {k} classes but the {role} data ({name}) has {n}")


def _length(data: Dataset[Any], role: str) -> int:
    n = len(data) if isinstance(data, Sized) else 0
    if n == 0:
        raise DataError(f"the {role} data is empty")
    return n


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + 12345) % (2**63)


def _loader(data: Dataset[Any], batch_size: int, workers: int, *, shuffle: bool, seed: int, drop_last: bool, pin: bool) -> DataLoader[Any]:
    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(
        Indexed(data),
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        collate_fn=collate_indexed,
        generator=g,
        drop_last=drop_last,
        pin_memory=pin,
    )


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            **np_state,
            "state": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)), "pos": np_state["state"]["pos"]},
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np_state = dict(state["numpy"])
    np_state["state"] = {"key": np_state["state"]["key"].numpy().astype(np.uint32), "pos": np_state["state"]["pos"]}
    np.random.set_state(np_state)
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _freeze(model: nn.Module, dropout: float | None) -> list[nn.Parameter]:
    """Trainable parameters; with a frozen backbone only the last layer's. Sets the dropout."""
    if dropout is not None:
        drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
        if not drops and dropout > 0:
            raise ConfigError("the model has no dropout layer to set; build it with dropout > 0")
        for m in drops:
            m.p = dropout
    return [p for p in model.parameters() if p.requires_grad]


def _train_mode(model: nn.Module, frozen: bool) -> None:
    """Training mode; a frozen backbone stays in eval mode (BatchNorm statistics frozen too), dropout trains."""
    if not frozen:
        model.train()
        return
    model.eval()
    last_layer(model).train()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.train()


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (a temporary file, then a rename)."""
    import io

    from space.files import write_bytes

    buffer = io.BytesIO()  # serialised in memory: torch's writer must not meet a full disk
    torch.save(state, buffer)
    write_bytes(path, buffer.getvalue())  # a unique temporary name, then a rename; WriteError on failure


def checkpoint_file(path: str | Path) -> Path:
    """``path``, or the checkpoint in it when it is a run folder (``last.pt``, what :func:`fit` writes there)."""
    p = Path(path)
    return p / CHECKPOINT_NAME if p.is_dir() else p


RUN_CHECKPOINT = "an e3d checkpoint (the last.pt that e3d train writes in its run folder, or that folder)"
"""What :func:`load_checkpoint` reads, as its errors name it."""


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`fit` (a file, or a folder holding ``last.pt``)."""
    p = checkpoint_file(path)
    try:
        state = read_checkpoint(p, accepts=RUN_CHECKPOINT)
    except checkpoints.CheckpointError as e:
        raise CheckpointError(str(e)) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        bare = isinstance(state, dict) and bool(state) and all(isinstance(v, torch.Tensor) for v in state.values())
        raise CheckpointError(
            f"{p} is not {RUN_CHECKPOINT}" + ("; it holds bare weights (a state dict: --pretrained of e3d train)" if bare else "")
        )
    if isinstance(state.get("model"), str) and "state_dict" in state:
        raise CheckpointError(f"{p} holds converted weights (e3d convert-checkpoint), not a run of e3d train; use it as --pretrained")
    _check_fields(state, p)
    return state


_FIELDS: dict[str, type] = {"meta": dict, "spec": dict, "config": dict, "exec": dict, "class_names": list, "history": list, "epoch": int}
"""The type of each field of a checkpoint that may be absent (or None); ``model`` is required."""
_KIND_NAMES = {dict: "a dict", list: "a list", int: "an integer", str: "a string"}


def _check_fields(state: dict[str, Any], path: Path) -> None:
    """:class:`CheckpointError` naming ``path`` and the field where a checkpoint is not as :func:`fit` writes
    one (a hand edit, another program's file): ``model`` missing, not a dict of tensors or not finite, another
    field of another type."""
    model = state.get("model")
    if not isinstance(model, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items()):
        found = "missing" if model is None else f"a {type(model).__name__}"
        raise CheckpointError(f"{path}: field 'model' must be a dict of tensors (a state_dict); it is {found}")
    check_field_types(state, _FIELDS, where=f"{path}: field")
    check_finite(model, path)


def check_finite(weights: dict[str, torch.Tensor], path: str | Path) -> None:
    """:class:`CheckpointError` naming the first weight of ``weights`` (read from ``path``) that holds a NaN or inf."""
    bad = next((k for k, v in weights.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
    if bad is not None:
        raise CheckpointError(
            f"{path}: weight {bad} is not finite (NaN or infinite): the training diverged, and these weights predict nothing"
        )


def check_field_types(record: dict[str, Any], kinds: dict[str, type], *, where: str) -> None:
    """:class:`CheckpointError` ``"<where> '<key>' must be <kind>; it is <value>"`` for the first entry of ``record``
    that is not of its type in ``kinds`` (a dict, list, int or str; absent or None passes; a bool is no int).

    The integers of checkpoints are counts, seeds and indices (an epoch, a frame step): a negative one is refused too,
    as a damaged field, before it reaches the trainer or a random generator that fails on it."""
    for key, kind in kinds.items():
        value = record.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            found = repr(value) if isinstance(value, (str, int, float)) else f"a {type(value).__name__}"
            raise CheckpointError(f"{where} {key!r} must be {_KIND_NAMES[kind]}; it is {found}")
        if kind is int and isinstance(value, int) and value < 0:
            raise CheckpointError(f"{where} {key!r} must be a non-negative integer; it is {value!r}")


# -- evaluation ------------------------------------------------------------------------------------


@dataclass
class _EvalSums:
    """Running sums over an evaluation: loss and clip hits, and each video's summed clip softmax scores and label."""

    videos_of: list[int]
    video_labels: torch.Tensor
    scores: torch.Tensor | None = None
    loss_sum: float = 0.0
    top1: int = 0
    top5: int = 0
    clips: int = 0

    def add(self, out: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, k: int) -> None:
        """Add one batch's outputs ``out`` (on the CPU, float32) for the items ``idx`` with labels ``y``; top-k hits with ``k``."""
        self.loss_sum += F.cross_entropy(out, y, reduction="sum").item()
        pred = out.topk(k, 1).indices
        self.top1 += int((pred[:, 0] == y).sum())
        self.top5 += int((pred == y[:, None]).any(1).sum())
        self.clips += len(y)
        if self.scores is None:
            self.scores = torch.zeros(len(self.video_labels), out.shape[1], dtype=torch.float64)
        vid = torch.tensor([self.videos_of[i] for i in idx.tolist()])
        self.scores.index_add_(0, vid, out.softmax(1).double())
        self.video_labels[vid] = y


def _eval_sums(data: Dataset[Any], n: int) -> _EvalSums:
    """Empty sums for the ``n`` items of ``data`` (the video of each clip: ``data.clip_videos``, else one video per clip)."""
    videos_of = list(getattr(data, "clip_videos", range(n)))
    num_videos = max(videos_of) + 1
    return _EvalSums(videos_of, torch.full((num_videos,), -1, dtype=torch.long))


def _eval_metrics(sums: _EvalSums, data: Dataset[Any], skipped: int) -> dict[str, float]:
    """:func:`evaluate`'s result from its sums; :class:`DataError` when no clip could be read."""
    if sums.clips == 0 or sums.scores is None:
        raise DataError(f"no clip of {getattr(data, 'name', 'the evaluation data')} could be read ({skipped} skipped)")
    seen = sums.video_labels >= 0
    video_correct = int((sums.scores[seen].argmax(1) == sums.video_labels[seen]).sum())
    return {
        "top1": 100.0 * sums.top1 / sums.clips,
        "top5": 100.0 * sums.top5 / sums.clips,
        "video_top1": 100.0 * video_correct / int(seen.sum()),
        "loss": sums.loss_sum / sums.clips,
        "clips": float(sums.clips),
        "videos": float(int(seen.sum())),
        "skipped": float(skipped),
    }


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Dataset[Any],
    *,
    batch_size: int,
    device: str = "cpu",
    num_workers: int = 0,
    progress: bool = False,
    exec_config: ExecConfig | None = None,
) -> dict[str, float]:
    """Clip top-1/top-5, video top-1 (clip softmax scores averaged per video) in percent, and the mean loss.

    Also returns the numbers behind them: ``clips``, ``videos`` and ``skipped`` (unreadable clips, plus the
    videos ``data.unreadable`` lists: test-split videos whose frames could not be counted, so they have no clips).
    Top-5 is top-k with k = min(5, classes). ``exec_config`` runs the model under its autocast and
    memory format (the model's weights must already be in that format: :meth:`ExecConfig.prepare`).
    """
    run_as = exec_config or ExecConfig(device=device)
    dev = resolve_device(device)
    n = _length(data, "evaluation")
    sums = _eval_sums(data, n)
    was_training = model.training
    model.eval()
    k = min(5, model_classes(model))
    report = ErrorReport(data)
    loader = _loader(data, batch_size, num_workers, shuffle=False, seed=0, drop_last=False, pin=dev.type == "cuda")
    bar = tqdm(total=n, desc="evaluating", unit="clip", disable=not progress or None, leave=False)
    try:
        for idx, x, y, bad in loader:
            report(bad)
            bar.update(len(idx) + len(bad))
            if len(idx) == 0:
                continue
            with run_as.autocast():
                out = model(run_as.input(x.to(dev, non_blocking=True))).float().cpu()
            sums.add(out, y, idx, k)
    finally:
        bar.close()
        model.train(was_training)
    return _eval_metrics(sums, data, report.count + len(getattr(data, "unreadable", ())))


# -- training ----------------------------------------------------------------------------------------


def _milestones(config: TrainConfig) -> list[int]:
    """The epochs after which the ``step`` schedule cuts the rate: ``max(1, round(f * epochs))`` for each milestone
    fraction ``f``, each epoch once (3 epochs: [2], one cut)."""
    return sorted({max(1, round(f * config.epochs)) for f in config.milestones})


def _after(epochs: Sequence[int]) -> str:
    """``after epoch 2`` or ``after epochs 2 and 4`` (``none`` for no epoch)."""
    if not epochs:
        return "none"
    shown = [str(e) for e in epochs]
    return f"after epoch {shown[0]}" if len(shown) == 1 else f"after epochs {', '.join(shown[:-1])} and {shown[-1]}"


def schedule_change(state: dict[str, Any], config: TrainConfig) -> str | None:
    """What resuming the checkpoint ``state`` for ``config.epochs`` epochs does to the learning-rate schedule when
    the epochs differ from those it was made for (None when the rest of the run is what an uninterrupted run of
    ``config.epochs`` would do): ``step`` keeps the checkpoint's cuts (its scheduler's milestones are restored),
    ``cosine`` has run its first epochs on the checkpoint's total; ``plateau`` does not depend on the epochs."""
    was = state["config"].get("epochs")
    if config.schedule == "step":
        kept = sorted(int(m) for m in (state.get("scheduler") or {}).get("milestones", {}))
        wanted = _milestones(config)
        if kept == wanted:
            return None
        return f"the lr keeps the checkpoint's cuts ({_after(kept)}), not those of {config.epochs} epochs ({_after(wanted)})"
    if config.schedule == "cosine" and was != config.epochs:
        return f"the cosine lr schedule ran over {was} epochs so far and runs over {config.epochs} from here"
    return None


def cosine_factor(step: int, total: int, warmup: float) -> float:
    """The ``cosine`` schedule's multiplier of the learning rate for step ``step`` (from 0) of ``total``."""
    ramp = round(warmup * total)
    if step < ramp:
        return (step + 1) / (ramp + 1)
    done = (step - ramp) / max(1, total - ramp)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, done)))


def _scheduler(opt: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int) -> Any:
    if config.schedule == "cosine":
        total = steps_per_epoch * config.epochs
        return torch.optim.lr_scheduler.LambdaLR(opt, functools.partial(cosine_factor, total=total, warmup=config.warmup))
    if config.schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(opt, _milestones(config), gamma=config.gamma)
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=config.gamma, patience=config.patience, min_lr=config.lr * config.gamma**3 * (1 - 1e-6)
    )


_RESUME_SAFE = {"epochs", "max_seconds", "num_workers", "device", "eval_batch_size", "threads", "precision"}
"""Settings a resume may change: how long and where it runs, not what it trains (another precision only
loses bit-exactness: :func:`fit`)."""
_META_RESUME_SAFE = {"cache_dir", "model", "width_mult"}
"""Metadata a resume may change: where caches are, and how the model was named (the spec compares the model)."""


def fit(
    model: nn.Module,
    train_data: Dataset[Any],
    val_data: Dataset[Any],
    config: TrainConfig,
    *,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    on_batch: Callable[[int, int, int], None] | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    meta: dict[str, Any] | None = None,
    exec_config: ExecConfig | None = None,
) -> FitResult:
    """Train ``model`` on ``train_data`` for ``config.epochs`` epochs, validating after each.

    ``on_epoch(epoch_index, metrics)`` runs after each epoch's validation and checkpoint with
    ``train_loss``, ``train_top1``, ``val_loss``, ``val_top1``, ``val_top5``, ``val_video_top1``, ``lr``,
    ``seconds``, ``clips_per_s``, ``skipped`` (unreadable clips) and ``left_out`` (clips of a batch too small for
    BatchNorm to train on: a last partial batch of one clip, or one left so by unreadable clips); whatever it raises propagates unchanged.
    ``on_batch(epoch_index, clips_done, clips_total)`` runs after every training step. With
    ``checkpoint_dir`` a checkpoint (``last.pt``, with ``meta`` stored alongside) is written after every
    epoch, and ``resume`` continues from it when present, refusing another model, setting or ``meta``
    (:func:`check_resume`). Raises :class:`NonFiniteLossError` when the
    training loss stops being finite. ``exec_config`` is how to run (precision, memory format); by
    default :func:`resolve_exec` of ``config.precision``, or, resuming, the one the checkpoint was
    trained with (unless another precision is asked for).
    """
    threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        return _fit(
            model,
            train_data,
            val_data,
            config,
            on_epoch=on_epoch,
            on_batch=on_batch,
            checkpoint_dir=checkpoint_dir,
            resume=resume,
            progress=progress,
            meta=meta,
            exec_config=exec_config,
        )
    finally:
        torch.set_num_threads(threads)


def _fit(
    model: nn.Module,
    train_data: Dataset[Any],
    val_data: Dataset[Any],
    config: TrainConfig,
    *,
    on_epoch: Callable[[int, dict[str, float]], None] | None,
    on_batch: Callable[[int, int, int], None] | None,
    checkpoint_dir: str | Path | None,
    resume: bool,
    progress: bool,
    meta: dict[str, Any] | None,
    exec_config: ExecConfig | None,
) -> FitResult:
    """:func:`fit` under its thread setting."""
    start_time = time.perf_counter()
    _check_data(model, train_data, val_data)
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    state = _resume_state(ckpt_path, resume)
    if state is None:
        seed_everything(config.seed)
    run = _start(model, config, exec_config or exec_for(model, train_data, config, state), _steps_per_epoch(train_data, config))
    run.on_batch = on_batch
    if state is not None:
        _restore(run, state, ckpt_path, meta)
    resumed_from = run.start_epoch
    stopped_early = _train_epochs(
        run, train_data, val_data, start_time, ckpt_path=ckpt_path, on_epoch=on_epoch, meta=meta, progress=progress
    )
    return _fit_result(run, start_time, stopped_early=stopped_early, resumed_from=resumed_from, ckpt_path=ckpt_path)


def _check_data(model: nn.Module, train_data: Dataset[Any], val_data: Dataset[Any]) -> None:
    """Raise when the training or validation data is empty or its number of classes is not the model's."""
    _length(train_data, "training")
    _length(val_data, "validation")
    check_classes(model, ("training", train_data), ("validation", val_data))


def _resume_state(ckpt_path: Path | None, resume: bool) -> dict[str, Any] | None:
    """The checkpoint to continue from: only when resuming and the checkpoint file exists."""
    return load_resumable(ckpt_path) if resume and ckpt_path is not None and ckpt_path.is_file() else None


def load_resumable(path: str | Path) -> dict[str, Any]:
    """:func:`load_checkpoint` of a checkpoint that :func:`fit` can continue: :class:`CheckpointError` naming the
    first field it needs but that is missing."""
    state = load_checkpoint(path)
    missing = next((k for k in ("config", "optimizer", "scheduler", "rng", "history", "epoch") if state.get(k) is None), None)
    if missing is not None:
        raise CheckpointError(f"{path}: field {missing!r} is missing: training cannot continue from it (--pretrained can start from it)")
    return state


def _train_epochs(
    run: _Run,
    train_data: Dataset[Any],
    val_data: Dataset[Any],
    start_time: float,
    *,
    ckpt_path: Path | None,
    on_epoch: Callable[[int, dict[str, float]], None] | None,
    meta: dict[str, Any] | None,
    progress: bool,
) -> bool:
    """Run the epochs left, each followed by its checkpoint and ``on_epoch``; True when ``max_seconds`` stopped them early."""
    for epoch in range(run.start_epoch, run.config.epochs):
        metrics = _run_epoch(run, train_data, val_data, epoch, progress=progress)
        if ckpt_path is not None:
            save_checkpoint(ckpt_path, _checkpoint_state(run, epoch, train_data, meta))
        if on_epoch is not None:
            on_epoch(epoch, dict(metrics))
        if _out_of_time(run.config, start_time, epoch):
            return True
    return False


def _out_of_time(config: TrainConfig, start_time: float, epoch: int) -> bool:
    """Whether the ``max_seconds`` budget ran out during ``epoch`` with epochs still to go."""
    return config.max_seconds is not None and time.perf_counter() - start_time > config.max_seconds and epoch + 1 < config.epochs


def _fit_result(run: _Run, start_time: float, *, stopped_early: bool, resumed_from: int, ckpt_path: Path | None) -> FitResult:
    """The :class:`FitResult` of a run whose epochs are done."""
    history = run.history
    last = history[-1] if history else {"val_top1": float("nan")}
    return FitResult(
        val_top1=last["val_top1"],
        best_val_top1=max((h["val_top1"] for h in history), default=0.0),
        epochs_run=len(history),
        seconds=time.perf_counter() - start_time,
        history=history,
        stopped_early=stopped_early,
        resumed_from=resumed_from,
        checkpoint=ckpt_path,
        exec_config=run.exec,
    )


def resolve_exec(
    model: nn.Module, train_data: Dataset[Any], config: TrainConfig, *, cache: Path | None = None, half: bool = True
) -> ExecConfig:
    """How ``config.precision`` trains ``model`` here (:func:`profiler.precision.resolve`): ``auto``
    times a few training steps of each candidate at the training batch and clip (fp32 ones only
    without ``half``), once per CPU (model, ISA and flags), torch version, threads and network shape (cached); a half
    precision that times fastest must also be :func:`profiler.precision.trainable`. On a CPU where e3d's
    depthwise weight-gradient kernel cannot run, ``auto``'s reason says so (:func:`profiler.convgrad.weight_grad_note`)."""
    shape = _input_shape(model, train_data)
    classes = model_classes(model)
    key = calibration_key(model, shape, config, half=half)

    def start(c: ExecConfig) -> StepTimer:
        return train_step_timer(model, c, input_shape=shape, batch_size=config.batch_size, num_classes=classes)

    def admissible(c: ExecConfig) -> bool:
        return trainable(model, c, input_shape=shape, batch_size=config.batch_size, num_classes=classes)

    chosen = resolve(
        config.precision,
        start=start,
        key=key,
        device=config.device,
        threads=config.threads,
        cache=cache,
        half=half,
        admissible=admissible,
    )
    note = weight_grad_note() if config.precision == "auto" and resolve_device(config.device).type == "cpu" else None
    return dataclasses.replace(chosen, reason=f"{chosen.reason}; {note}") if note else chosen


def calibration_key(model: nn.Module, input_shape: Sequence[int], config: TrainConfig, *, half: bool = True) -> str:
    """The cache key of ``auto``'s training calibration of ``model`` on clips of ``input_shape`` under ``config``,
    per depthwise weight-gradient code (:func:`profiler.convgrad.weight_grad_backend`: it sets ``+dw``'s speed)."""
    # earlier kinds, not reused: "train" (among bf16 channels-last too), "training" (fp32 channels-last without +dw),
    # "training-dw" and "training-fp32-dw" (+dw for depthwise layers only), "training-dwpw" and "training-fp32-dwpw"
    # (+dw without e3d's bias gradients), "training-dw3" and "training-fp32-dw3" (+dw before BatchNorm of few channels
    # trained contiguous, and with a depthwise kernel of 16-channel vectors on every CPU)
    kind = f"{'training-dw4' if half else 'training-fp32-dw4'}|dw-{weight_grad_backend()}"
    return cache_key(kind, network_key(model, input_shape), batch_size=config.batch_size, device=config.device, threads=config.threads)


def _input_shape(model: nn.Module, data: Dataset[Any]) -> tuple[int, ...]:
    """One clip's (C, T, H, W): the model's spec's, else the first readable item's."""
    spec = getattr(model, "spec", None)
    if spec is not None and hasattr(spec, "input_shape"):
        return tuple(spec.input_shape)
    for i in range(len(data) if isinstance(data, Sized) else 0):
        item = data[i]
        if isinstance(item, tuple):
            return tuple(item[0].shape)
    raise DataError("no readable clip to calibrate the precision on")


def exec_for(model: nn.Module, train_data: Dataset[Any], config: TrainConfig, state: dict[str, Any] | None) -> ExecConfig:
    """The checkpoint's configuration when resuming with the same (or ``auto``) precision, else a new one."""
    if state is None or not state.get("exec"):
        return resolve_exec(model, train_data, config)
    stored = state["exec"]
    if config.precision in ("auto", state["config"].get("precision", "fp32")):
        found = ExecConfig.from_dict(stored)
        return dataclasses.replace(found, threads=config.threads, device=config.device, reason=_from_checkpoint(found.reason))
    return resolve_exec(model, train_data, config)


def _from_checkpoint(reason: str) -> str:
    """``from the checkpoint (reason)``, once: a checkpoint resumed before holds that already."""
    while reason.startswith("from the checkpoint (") and reason.endswith(")"):
        reason = reason[len("from the checkpoint (") : -1]
    return f"from the checkpoint ({reason})"


@dataclass
class _Run:
    """The state of one training run: model, optimiser, schedule and the epochs done."""

    model: nn.Module
    config: TrainConfig
    device: torch.device
    opt: torch.optim.Optimizer
    sched: Any
    exec: ExecConfig
    scaler: torch.amp.GradScaler
    history: list[dict[str, float]] = field(default_factory=list)
    start_epoch: int = 0
    on_batch: Callable[[int, int, int], None] | None = None
    """Called with (epoch index, clips done, clips in the epoch) after every training step."""


def _drops_last(n: int, batch_size: int) -> bool:
    """Whether a training epoch of ``n`` clips drops its last partial batch: only when it has two full ones."""
    return n >= 2 * batch_size


def _steps_per_epoch(train_data: Dataset[Any], config: TrainConfig) -> int:
    """Batches per epoch of :func:`_epoch_loader`."""
    n = _length(train_data, "training")
    return n // config.batch_size if _drops_last(n, config.batch_size) else math.ceil(n / config.batch_size)


def _start(model: nn.Module, config: TrainConfig, exec_config: ExecConfig, steps_per_epoch: int) -> _Run:
    """Move the model to the device and memory format, freeze what is frozen, and make the optimiser,
    schedule and (fp16 only) gradient scaler."""
    dev = resolve_device(config.device)
    if dev.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    exec_config.prepare(model.to(dev))
    if config.freeze_backbone:
        for p in model.parameters():
            p.requires_grad_(False)
        for p in last_layer(model).parameters():
            p.requires_grad_(True)
    params = _freeze(model, config.head_dropout)
    opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, dampening=config.dampening, weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler(dev.type, enabled=exec_config.precision == "fp16")
    return _Run(model, config, dev, opt, _scheduler(opt, config, steps_per_epoch), exec_config, scaler)


def check_resume(state: dict[str, Any], *, config: TrainConfig, model: nn.Module, meta: dict[str, Any] | None, path: Path | None) -> None:
    """Refuse to continue the checkpoint ``state`` (read from ``path``) as another experiment:
    :class:`CheckpointError` when ``model``'s spec differs from the stored one, :class:`ConfigError` naming
    each training setting (all but :data:`_RESUME_SAFE`) or metadata entry (those both hold, but
    :data:`_META_RESUME_SAFE`) that differs, or when ``config.epochs`` is fewer than the epochs done. Its optimiser
    and schedule would be restored anyway, so a changed one would be ignored or would not load."""
    spec, stored_spec = getattr(model, "spec", None), state.get("spec")
    models = _differences(_plain(stored_spec), _plain(spec.to_dict()), skip=set()) if stored_spec and spec is not None else []
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k in state["config"]}
    differ = _differences(_plain(state["config"]), _plain(settings), skip=_RESUME_SAFE)
    stored_meta, meta = state.get("meta") or {}, meta or {}
    common = stored_meta.keys() & meta.keys()
    differ += _differences(_plain({k: stored_meta[k] for k in common}), _plain({k: meta[k] for k in common}), skip=_META_RESUME_SAFE)
    others = f"other settings: {', '.join(differ)}; resume with the same ones, or train a new run elsewhere"
    if models:
        raise CheckpointError(
            f"checkpoint {path} does not fit this model: {', '.join(models)}" + (f"; and it was trained with {others}" if differ else "")
        )
    if differ:
        raise ConfigError(f"{path} was trained with {others}")
    _check_epochs(state, config, path)


def _check_epochs(state: dict[str, Any], config: TrainConfig, path: Path | None) -> None:
    """:class:`ConfigError` when ``config.epochs`` is fewer than the checkpoint's epochs done: such a resume trains nothing."""
    done = int(state["epoch"])
    if config.epochs < done:
        raise ConfigError(f"{path} has done {done} epochs already: resuming it for {config.epochs} would train none; ask for more epochs")


def _plain(value: Any) -> Any:
    """``value`` with tuples as lists, as a checkpoint stores it."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _differences(stored: dict[str, Any], now: dict[str, Any], *, skip: set[str]) -> list[str]:
    """``key stored (now new)`` for each key of ``now`` outside ``skip`` whose value differs (only ``key
    differs`` for long values)."""
    found = []
    for key in sorted(now.keys() - skip):
        old, new = stored.get(key), now[key]
        if not _same(old, new):
            shown = f"{old!r} (now {new!r})"
            found.append(f"{key} {shown}" if len(shown) <= 60 else f"{key} differs")
    return found


def _same(old: Any, new: Any) -> bool:
    """Equal, or two spellings of the same existing path."""
    if old == new:
        return True
    return isinstance(old, str) and isinstance(new, str) and Path(old).exists() and Path(old).resolve() == Path(new).resolve()


def _restore(run: _Run, state: dict[str, Any], ckpt_path: Path | None, meta: dict[str, Any] | None) -> None:
    """Continue from a checkpoint (:func:`check_resume` first): weights, optimiser, schedule, RNG states, history and epoch."""
    check_resume(state, config=run.config, model=run.model, meta=meta, path=ckpt_path)
    mismatch = checkpoints.key_mismatch(run.model.state_dict(), state["model"])
    if mismatch is not None:
        raise CheckpointError(f"checkpoint {ckpt_path} does not fit this model: {mismatch}")
    try:
        run.model.load_state_dict(state["model"])
        run.opt.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise CheckpointError(f"checkpoint {ckpt_path} does not fit this model: {_one_line(str(e))}") from None
    run.sched.load_state_dict(state["scheduler"])
    if state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    _set_rng_state(state["rng"])
    run.history = [dict(h) for h in state["history"]]
    run.start_epoch = int(state["epoch"])


def _one_line(message: str, limit: int = 3) -> str:
    """A multi-line error message (PyTorch's ``Error(s) in loading state_dict``) as one line: its first ``limit`` details."""
    head, *details = [line.strip() for line in message.splitlines() if line.strip()] or [""]
    more = f" (and {len(details) - limit} more)" if len(details) > limit else ""
    return " ".join([head, *details[:limit]]) + more


@dataclass
class _EpochStats:
    """Running sums over one epoch's training steps."""

    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    steps: int = 0
    left_out: int = 0
    """Clips of batches too small for the model's BatchNorm layers (:func:`_batch_norms_take`), not trained on."""


def _run_epoch(run: _Run, train_data: Dataset[Any], val_data: Dataset[Any], epoch: int, *, progress: bool) -> dict[str, float]:
    """Train one epoch, validate, step the schedule; append and return the epoch's metrics."""
    config = run.config
    t0 = time.perf_counter()
    lr = run.opt.param_groups[0]["lr"]
    stats, skipped = _train_epoch(run, train_data, epoch, lr, progress=progress)
    train_seconds = time.perf_counter() - t0
    eval_bs = config.eval_batch_size or 2 * config.batch_size
    val = evaluate(
        run.model,
        val_data,
        batch_size=eval_bs,
        device=config.device,
        num_workers=config.num_workers,
        progress=progress,
        exec_config=run.exec,
    )
    if config.schedule == "plateau":
        run.sched.step(val["loss"])
    elif config.schedule == "step":
        run.sched.step()
    metrics = {
        "epoch": float(epoch + 1),
        "train_loss": stats.loss_sum / stats.seen,
        "train_top1": 100.0 * stats.correct / stats.seen,
        "val_loss": val["loss"],
        "val_top1": val["top1"],
        "val_top5": val["top5"],
        "val_video_top1": val["video_top1"],
        "lr": lr,
        "seconds": time.perf_counter() - t0,
        "clips_per_s": stats.seen / train_seconds,
        "skipped": float(skipped + val["skipped"]),
        "left_out": float(stats.left_out),
    }
    run.history.append(metrics)
    return metrics


def _epoch_loader(run: _Run, train_data: Dataset[Any], epoch: int) -> DataLoader[Any]:
    """This epoch's shuffled loader: order and crops drawn from (seed, epoch)."""
    config = run.config
    if hasattr(train_data, "set_epoch"):
        train_data.set_epoch(epoch, seed=config.seed)
    n_train = _length(train_data, "training")
    return _loader(
        train_data,
        config.batch_size,
        config.num_workers,
        shuffle=True,
        seed=_epoch_seed(config.seed, epoch),
        drop_last=_drops_last(n_train, config.batch_size),
        pin=run.device.type == "cuda",
    )


def _train_epoch(run: _Run, train_data: Dataset[Any], epoch: int, lr: float, *, progress: bool) -> tuple[_EpochStats, int]:
    """One pass over the training data; returns the running sums and the number of unreadable clips."""
    config = run.config
    loader = _epoch_loader(run, train_data, epoch)
    _train_mode(run.model, config.freeze_backbone)
    stats = _EpochStats()
    report = ErrorReport(train_data)
    total = len(loader) * config.batch_size if loader.drop_last else _length(train_data, "training")
    bar = tqdm(total=total, desc=f"epoch {epoch + 1}/{config.epochs}", unit="clip", disable=not progress or None)
    try:
        for _, x, y, bad in loader:
            report(bad)
            if len(y) == 0:
                continue
            if not _batch_norms_take(run, len(y)):
                stats.left_out += len(y)
                bar.update(len(y) + len(bad))
                continue
            _train_step(run, x, y, stats, where=f"epoch {epoch + 1}, step {stats.steps + 1} (lr {lr:g})")
            bar.update(len(y) + len(bad))
            if run.on_batch is not None:
                run.on_batch(epoch, stats.seen + report.count, total)
            bar.set_postfix(loss=f"{stats.loss_sum / stats.seen:.3f}", top1=f"{100 * stats.correct / stats.seen:.1f}%", refresh=False)
    finally:
        bar.close()
    if stats.seen == 0:
        raise DataError(f"no training clip could be read in epoch {epoch + 1} ({report.count} skipped)")
    return stats, report.count


def _batch_norms_take(run: _Run, clips: int) -> bool:
    """Whether a training step on ``clips`` clips leaves every BatchNorm more than one value per channel, as
    :func:`search.budget.check_batch_norms` of the model's spec says. A full batch is taken as it is (checked
    before training), and so is any batch of a frozen backbone (its BatchNorm layers do not train) or of a
    model without a spec. A smaller one comes from unreadable clips skipped or an epoch's last clips."""
    spec = getattr(run.model, "spec", None)
    if clips >= run.config.batch_size or run.config.freeze_backbone or spec is None or not hasattr(spec, "trace"):
        return True
    from search.budget import check_batch_norms  # not at the top: it imports the search space, and optuna

    try:
        check_batch_norms(spec, batch_size=clips)
    except E3DError:
        return False
    return True


def _train_step(run: _Run, x: torch.Tensor, y: torch.Tensor, stats: _EpochStats, *, where: str) -> None:
    """Forward, loss, backward and optimiser step on one batch; adds to ``stats``."""
    x, y = run.exec.input(x.to(run.device, non_blocking=True)), y.to(run.device, non_blocking=True)
    with run.exec.autocast():
        out = run.model(x)
    loss = F.cross_entropy(out.float(), y)
    value = loss.item()
    if not math.isfinite(value):
        fix = (
            "lower the learning rate"
            if run.exec.precision == "fp32"
            else f"lower the learning rate or train in fp32 (not {run.exec.label})"
        )
        raise NonFiniteLossError(f"the training loss became {value} at {where} under {run.exec.label}; {fix}")
    run.opt.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.opt)
    run.scaler.update()
    if run.config.schedule == "cosine":
        run.sched.step()
    stats.steps += 1
    stats.loss_sum += value * len(y)
    stats.correct += int((out.argmax(1) == y).sum())
    stats.seen += len(y)


def _checkpoint_state(run: _Run, epoch: int, train_data: Dataset[Any], meta: dict[str, Any] | None) -> dict[str, Any]:
    """Everything :func:`fit` needs to continue after ``epoch`` exactly."""
    spec = getattr(run.model, "spec", None)
    return {
        "format": CHECKPOINT_FORMAT,
        "epoch": epoch + 1,
        "model": run.model.state_dict(),
        "optimizer": run.opt.state_dict(),
        "scheduler": run.sched.state_dict(),
        "rng": _rng_state(),
        "history": run.history,
        "config": dataclasses.asdict(run.config),
        "exec": run.exec.as_dict(),
        "scaler": run.scaler.state_dict() if run.scaler.is_enabled() else None,
        "spec": spec.to_dict() if spec is not None and hasattr(spec, "to_dict") else None,
        "class_names": list(getattr(train_data, "class_names", [])),
        "meta": meta or {},
    }


__all__ = [
    "SCHEDULES",
    "CheckpointError",
    "ClassCountError",
    "ConfigError",
    "FitResult",
    "NonFiniteLossError",
    "TrainConfig",
    "check_classes",
    "check_resume",
    "checkpoint_file",
    "evaluate",
    "exec_for",
    "fit",
    "last_layer",
    "load_checkpoint",
    "load_resumable",
    "model_classes",
    "resolve_device",
    "resolve_exec",
    "save_checkpoint",
    "seed_everything",
]
