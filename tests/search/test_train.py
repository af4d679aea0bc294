"""The trainer: exact resume, callbacks, divergence, budgets, class checks, video accuracy, fine-tuning."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, Subset

import space
from profiler import convgrad, native
from profiler.precision import ExecConfig, detect_cpu, write_cache
from search import train as train_module
from search.data import proxy_dataset
from search.train import (
    CheckpointError,
    ClassCountError,
    ConfigError,
    NonFiniteLossError,
    TrainConfig,
    _milestones,
    _scheduler,
    calibration_key,
    checkpoint_file,
    cosine_factor,
    evaluate,
    fit,
    load_checkpoint,
    resolve_exec,
    save_checkpoint,
    schedule_change,
)
from space import E3DError

CLIP = (8, 32, 32)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_model(seed: int = 0, classes: int = 10) -> nn.Module:
    torch.manual_seed(seed)
    return space.build(space.paper_spec("mobilenet", width_mult=0.25, num_classes=classes, sample_size=32, sample_duration=8))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    cache = tmp_path_factory.mktemp("cache")
    train = proxy_dataset("digits", split="train", clip=CLIP, num_samples=32, cache_dir=cache, progress=False)
    val = proxy_dataset("digits", split="val", clip=CLIP, num_samples=12, cache_dir=cache, progress=False)
    return train, val


def config(**kw: Any) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "batch_size": 8, "lr": 0.05, **kw})


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def strip_timing(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in h.items() if k not in ("seconds", "clips_per_s")} for h in history]


@pytest.mark.parametrize("schedule", [{}, {"schedule": "cosine", "warmup": 0.3}])
def test_resume_after_an_interruption_gives_the_uninterrupted_result(
    data: tuple[Any, Any], tmp_path: Path, schedule: dict[str, Any]
) -> None:
    train, val = data
    whole = tiny_model()
    full = fit(whole, train, val, config(epochs=3, **schedule), checkpoint_dir=tmp_path / "a", progress=False)

    def interrupt(epoch: int, metrics: dict[str, float]) -> None:
        if epoch == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(tiny_model(), train, val, config(epochs=3, **schedule), checkpoint_dir=tmp_path / "b", on_epoch=interrupt, progress=False)
    assert load_checkpoint(tmp_path / "b")["epoch"] == 1
    torch.manual_seed(123)  # a different global RNG state: the checkpoint must restore it
    resumed_model = tiny_model(seed=99)  # different initial weights: the checkpoint must restore them
    resumed = fit(resumed_model, train, val, config(epochs=3, **schedule), checkpoint_dir=tmp_path / "b", resume=True, progress=False)
    assert resumed.resumed_from == 1 and resumed.epochs_run == full.epochs_run == 3
    assert same_weights(resumed_model, whole)
    assert strip_timing(resumed.history) == strip_timing(full.history)
    assert resumed.val_top1 == full.val_top1 and resumed.best_val_top1 == full.best_val_top1


def test_same_seed_same_result_whatever_the_loader_workers(data: tuple[Any, Any]) -> None:
    train, val = data
    a, b, c = tiny_model(), tiny_model(), tiny_model()
    ra = fit(a, train, val, config(epochs=1), progress=False)
    rb = fit(b, train, val, config(epochs=1, num_workers=2), progress=False)
    fit(c, train, val, config(epochs=1, seed=1), progress=False)
    assert same_weights(a, b) and strip_timing(ra.history) == strip_timing(rb.history)
    assert not same_weights(a, c)


def test_on_epoch_gets_the_metrics_and_its_exceptions_propagate_unchanged(data: tuple[Any, Any]) -> None:
    train, val = data
    seen: list[tuple[int, dict[str, float]]] = []

    class PrunedError(Exception):
        pass

    pruned = PrunedError("stop here")

    def callback(epoch: int, metrics: dict[str, float]) -> None:
        seen.append((epoch, metrics))
        if epoch == 1:
            raise pruned

    with pytest.raises(PrunedError) as e:
        fit(tiny_model(), train, val, config(epochs=4), on_epoch=callback, progress=False)
    assert e.value is pruned and [s[0] for s in seen] == [0, 1]
    m = seen[0][1]
    assert {"val_top1", "val_loss", "train_loss", "train_top1", "val_top5", "val_video_top1", "lr"} <= m.keys()
    assert 0 <= m["val_top1"] <= 100 and m["val_top1"] <= m["val_top5"]


def test_a_time_budget_stops_after_the_epoch_it_runs_out_in(data: tuple[Any, Any]) -> None:
    train, val = data
    r = fit(tiny_model(), train, val, config(epochs=5, max_seconds=1e-3), progress=False)
    assert r.epochs_run == 1 and r.stopped_early and len(r.history) == 1


class NaNClips(Dataset[tuple[torch.Tensor, int]]):
    num_classes = 10

    def __len__(self) -> int:
        return 16

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.full((3, *CLIP), float("nan")), i % 10


def test_a_non_finite_loss_raises(data: tuple[Any, Any]) -> None:
    with pytest.raises(NonFiniteLossError, match="epoch 1, step 1"):
        fit(tiny_model(), NaNClips(), data[1], config(), progress=False)


def test_class_count_mismatch_and_bad_settings_are_user_errors(data: tuple[Any, Any]) -> None:
    train, val = data
    with pytest.raises(ClassCountError, match=r"the model has 7 classes but the training data .* has 10"):
        fit(tiny_model(classes=7), train, val, config(), progress=False)
    with pytest.raises(ConfigError, match="schedule"):
        config(schedule="linear")
    with pytest.raises(ConfigError, match="warmup"):
        config(schedule="cosine", warmup=1.0)
    with pytest.raises(ConfigError, match="warmup is for the cosine schedule; the step schedule has none"):
        config(warmup=0.5)  # was accepted, and the step schedule never warmed up
    with pytest.raises(ConfigError, match="lr"):
        config(lr=0.0)
    for bad in ({"momentum": math.nan}, {"dampening": math.inf}, {"weight_decay": math.inf}, {"weight_decay": math.nan}):
        with pytest.raises(ConfigError, match="weight_decay a finite number"):
            config(**bad)
    assert issubclass(ClassCountError, E3DError) and issubclass(ConfigError, E3DError)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            fit(tiny_model(), train, val, config(device="cuda"), progress=False)


def test_a_gpu_index_this_machine_lacks_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert train_module.resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ConfigError, match=r"CUDA device cuda:3 does not exist: this machine has 1 CUDA device$"):
        train_module.resolve_device("cuda:3")  # was accepted, and training failed later in CUDA's own words
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="'cuda:3' asked for, but CUDA is not available"):
        train_module.resolve_device("cuda:3")
    for bad, words in (("bogus", "unknown device 'bogus'"), ("meta", "unsupported device 'meta'")):
        with pytest.raises(ConfigError, match=words):
            train_module.resolve_device(bad)


def test_a_checkpoint_of_another_model_is_rejected(data: tuple[Any, Any], tmp_path: Path) -> None:
    train, val = data
    fit(tiny_model(), train, val, config(epochs=1), checkpoint_dir=tmp_path, progress=False)
    other = space.build(space.paper_spec("shufflenetv2", width_mult=0.25, num_classes=10, sample_size=32, sample_duration=8))
    with pytest.raises(CheckpointError, match="does not fit this model"):
        fit(other, train, val, config(epochs=2), checkpoint_dir=tmp_path, resume=True, progress=False)
    state = load_checkpoint(tmp_path)
    del state["config"]
    save_checkpoint(tmp_path / "last.pt", state)
    with pytest.raises(CheckpointError, match="field 'config' is missing: training cannot continue from it"):
        fit(tiny_model(), train, val, config(epochs=2), checkpoint_dir=tmp_path, resume=True, progress=False)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match=r"junk\.pt: not a readable PyTorch checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


def test_a_damaged_checkpoint_is_refused_in_one_line_naming_what_is_wrong(data: tuple[Any, Any], tmp_path: Path) -> None:
    train, val = data
    fit(tiny_model(), train, val, config(epochs=1), checkpoint_dir=tmp_path, progress=False)
    good = load_checkpoint(tmp_path)
    key = next(iter(good["model"]))

    def resume_from(state: dict[str, Any]) -> str:
        save_checkpoint(tmp_path / "last.pt", state)
        with pytest.raises(CheckpointError) as caught:
            fit(tiny_model(), train, val, config(epochs=2), checkpoint_dir=tmp_path, resume=True, progress=False)
        assert len(str(caught.value).splitlines()) == 1
        return str(caught.value)

    assert "field 'epoch' must be a non-negative integer; it is -1" in resume_from({**good, "epoch": -1})  # was numpy's ValueError
    weights = {k: v for k, v in good["model"].items() if k != key}
    message = resume_from({**good, "model": weights})  # was cut off after "Error(s) in loading state_dict for Net:"
    assert message.endswith(f"does not fit this model: missing key {key}")
    message = resume_from({**good, "model": {**good["model"], "extra.weight": torch.zeros(1)}})
    assert message.endswith("does not fit this model: unexpected key extra.weight")
    message = resume_from({**good, "model": {**good["model"], key: torch.zeros(1, 2, 3)}})
    assert f"size mismatch for {key}: copying a param with shape torch.Size([1, 2, 3])" in message


def test_a_resume_refuses_other_settings_model_or_data(data: tuple[Any, Any], tmp_path: Path) -> None:
    train, val = data
    meta = {"data": "digits", "frame_step": 1, "cache_dir": "a"}
    fit(tiny_model(), train, val, config(epochs=1), checkpoint_dir=tmp_path, progress=False, meta=meta)

    def resume(cfg: TrainConfig, model: nn.Module | None = None, **changed: Any) -> None:
        fit(model or tiny_model(), train, val, cfg, checkpoint_dir=tmp_path, resume=True, progress=False, meta={**meta, **changed})

    with pytest.raises(ConfigError, match=r"other settings: schedule 'step' \(now 'cosine'\)"):  # was KeyError: 'lr_lambdas'
        resume(config(epochs=2, schedule="cosine"))
    with pytest.raises(ConfigError, match=r"lr 0.05 \(now 0.1\), data 'digits' \(now 'motion'\), frame_step 1 \(now 3\)"):
        resume(config(epochs=2, lr=0.1), data="motion", frame_step=3)  # was accepted, the new lr silently ignored
    other_clip = space.build(space.paper_spec("mobilenet", width_mult=0.25, num_classes=10, sample_size=40, sample_duration=8))
    with pytest.raises(CheckpointError, match=r"does not fit this model: clip \[8, 32, 32\] \(now \[8, 40, 40\]\)"):
        resume(config(epochs=2), other_clip)
    assert load_checkpoint(tmp_path)["epoch"] == 1
    resume(config(epochs=2, num_workers=1), cache_dir="b")  # more epochs, other loaders, another cache: the same run
    assert load_checkpoint(tmp_path)["epoch"] == 2


def test_a_batch_too_small_for_batch_norm_is_left_out_and_counted(data: tuple[Any, Any]) -> None:
    train, val = data
    three = Subset(train, [0, 1, 2])  # batches of 2 clips and 1; the network's last maps are 1x1x1
    result = fit(tiny_model(), three, val, config(epochs=2, batch_size=2), progress=False)  # was ValueError from BatchNorm
    assert [h["left_out"] for h in result.history] == [1.0, 1.0]
    assert [h["skipped"] for h in result.history] == [0.0, 0.0]


def test_freeze_backbone_trains_only_the_last_layer_with_high_dropout(data: tuple[Any, Any]) -> None:
    train, val = data
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fit(model, train, val, config(epochs=1, freeze_backbone=True), progress=False)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"head.fc.weight", "head.fc.bias"}  # BatchNorm statistics included: frozen
    assert model.head.dropout.p == 0.9


class Scripted(Dataset[tuple[torch.Tensor, int]]):
    """Clips that carry the logits a pass-through model returns; 2 videos of 3 clips and 1 of 2."""

    num_classes = 3
    clip_videos = (0, 0, 0, 1, 1, 1, 2, 2)
    logits = ((5, 0, 0), (0, 3, 0), (0, 3, 0), (0, 0, 9), (0, 0, 1), (1, 0, 0), (0, 2, 0), (0, 2, 0))
    labels = (0, 0, 0, 2, 2, 2, 0, 0)

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.tensor(self.logits[i], dtype=torch.float32), self.labels[i]


class PassThrough(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_video_accuracy_averages_the_clip_scores_of_each_video() -> None:
    m = evaluate(PassThrough(), Scripted(), batch_size=3)
    # clip top-1: 1 + 2 + 0 of 8; videos: 0 -> scores favour class 1 (two 3s beat one 5 after softmax) -> wrong,
    # 1 -> class 2 -> right, 2 -> class 1 -> wrong
    assert m["top1"] == pytest.approx(100 * 3 / 8)
    assert m["video_top1"] == pytest.approx(100 / 3)
    assert m["top5"] == 100.0 and m["clips"] == 8 and m["videos"] == 3


def test_cosine_warms_up_linearly_then_falls_to_zero() -> None:
    factors = [cosine_factor(step, 20, 0.2) for step in range(20)]
    assert factors[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])  # 4 warm-up steps, up towards 1
    assert factors[4] == 1.0 and all(a > b for a, b in itertools.pairwise(factors[4:]))
    assert factors[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 15 / 16)))
    assert cosine_factor(20, 20, 0.2) == pytest.approx(0.0) and cosine_factor(0, 10, 0.0) == 1.0


def test_a_cosine_fit_steps_the_rate_after_every_batch(data: tuple[Any, Any]) -> None:
    train, val = data  # 32 clips, batch 8: 4 steps an epoch
    result = fit(tiny_model(), train, val, config(epochs=2, schedule="cosine", warmup=0.25), progress=False)
    lrs = [h["lr"] for h in result.history]  # the rate at the start of each epoch
    assert lrs == pytest.approx([0.05 * cosine_factor(0, 8, 0.25), 0.05 * cosine_factor(4, 8, 0.25)])


def test_the_papers_schedules() -> None:
    assert _milestones(TrainConfig(epochs=60)) == [30, 45]  # the paper's fine-tuning: cuts at epochs 30 and 45
    # after round(E/2) and round(3E/4) epochs, at least 1, once where they coincide: 3 epochs (the search's) cut once
    short = {e: _milestones(TrainConfig(epochs=e)) for e in (1, 2, 3, 4, 5, 8)}
    assert short == {1: [1], 2: [1, 2], 3: [2], 4: [2, 3], 5: [2, 4], 8: [4, 6]}
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    plateau = _scheduler(opt, TrainConfig(schedule="plateau", patience=0), 1)
    for _ in range(10):
        plateau.step(1.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-4)  # reduced three times, then no more


@pytest.mark.slow
@pytest.mark.parametrize("task", ["motion", "digits"])
def test_each_proxy_task_is_learned_well_above_chance_and_resumes_exactly(task: str, tmp_path: Path) -> None:
    train = proxy_dataset(task, split="train", num_samples=480, cache_dir=tmp_path, progress=False)
    val = proxy_dataset(task, split="val", num_samples=200, cache_dir=tmp_path, progress=False)

    def model(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return space.create_model("shufflenet", width_mult=0.5, num_classes=10, sample_size=48, sample_duration=16)

    cfg = TrainConfig(epochs=3, batch_size=16, lr=0.05)
    whole = model(0)
    full = fit(whole, train, val, cfg, progress=False)
    assert full.val_top1 >= 25.0, full.history  # chance is 10%

    def stop(epoch: int, metrics: dict[str, float]) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(model(0), train, val, cfg, checkpoint_dir=tmp_path / "run", on_epoch=stop, progress=False)
    resumed_model = model(1)
    resumed = fit(resumed_model, train, val, cfg, checkpoint_dir=tmp_path / "run", resume=True, progress=False)
    assert resumed.resumed_from == 2 and same_weights(resumed_model, whole)
    assert resumed.val_top1 == full.val_top1


needs_bf16 = pytest.mark.skipif(not detect_cpu().bf16, reason="this CPU has no native bf16 (AVX512-BF16 or AMX)")


@needs_bf16
def test_bf16_training_learns_resumes_exactly_and_is_recorded_in_the_checkpoint(tmp_path: Path) -> None:
    # eight clips, one step per epoch, scored on themselves: the loss of a learning network falls
    clips = proxy_dataset("digits", split="train", clip=CLIP, num_samples=8, cache_dir=tmp_path / "data", progress=False)
    bf16 = config(epochs=6, lr=0.05, milestones=(0.9,), precision="bf16")
    whole = tiny_model()
    full = fit(whole, clips, clips, bf16, checkpoint_dir=tmp_path / "a", progress=False)
    losses = [h["val_loss"] for h in full.history]
    assert losses[-1] < losses[0] - 0.1 and losses[-1] < 0.98 * math.log(10), losses
    assert full.exec_config is not None and full.exec_config.label == "bf16 eager"
    stored = load_checkpoint(tmp_path / "a")
    assert stored["exec"]["precision"] == "bf16" and stored["exec"]["channels_last"] is False
    assert stored["config"]["precision"] == "bf16"

    def interrupt(epoch: int, metrics: dict[str, float]) -> None:
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(tiny_model(), clips, clips, bf16, checkpoint_dir=tmp_path / "b", on_epoch=interrupt, progress=False)
    resumed_model = tiny_model(seed=5)
    resumed = fit(resumed_model, clips, clips, bf16, checkpoint_dir=tmp_path / "b", resume=True, progress=False)
    assert resumed.resumed_from == 3 and same_weights(resumed_model, whole)
    assert strip_timing(resumed.history) == strip_timing(full.history)


def test_training_calibrations_are_keyed_by_the_depthwise_weight_gradient_code(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = set()
    for backend in ("e3d kernel", "pytorch"):  # a machine without a C compiler calibrates anew
        monkeypatch.setattr(train_module, "weight_grad_backend", lambda b=backend: b)
        keys.add(calibration_key(tiny_model(), (3, *CLIP), config(precision="auto")))
    assert len(keys) == 2


def fake_cached_calibration(cache: Path, net: nn.Module, cfg: TrainConfig) -> None:
    """``cache``'s calibration of ``net`` under ``cfg``, faked: fp32 channels-last+dw, so that nothing is timed."""
    key = calibration_key(net, (3, *CLIP), cfg)
    write_cache(cache / "precision.json", key, ExecConfig("fp32", True, reason="calibrated (faked)", depthwise_grad=True))


def forget_kernels() -> None:
    """Load (or build) the native kernels afresh on their next use, under the environment then."""
    native._load.cache_clear()
    convgrad._kernel.cache_clear()


def test_auto_says_when_the_depthwise_kernel_cannot_run_here(
    data: tuple[Any, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, _ = data
    monkeypatch.setenv("E3D_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("E3D_NATIVE", raising=False)  # the kernels on, whatever the caller's environment
    cfg = config(epochs=1, precision="auto")

    def reason() -> str:
        forget_kernels()
        fake_cached_calibration(tmp_path / "cache", tiny_model(), cfg)
        return resolve_exec(tiny_model(), train, cfg).reason

    monkeypatch.setenv("CC", "/nonexistent/cc")
    without = reason()
    monkeypatch.delenv("CC")
    with_kernel = reason()
    forget_kernels()
    assert "+dw without e3d's weight-gradient kernel (no C compiler: '/nonexistent/cc' not found" in without
    if native.library(convgrad.KERNEL) is not None:
        assert "weight-gradient kernel" not in with_kernel


def test_auto_uses_the_cached_calibration_and_a_resume_keeps_the_checkpoints_choice(
    data: tuple[Any, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, val = data
    monkeypatch.setenv("E3D_CACHE", str(tmp_path / "cache"))
    cfg = config(epochs=1, precision="auto")
    net = tiny_model()
    fake_cached_calibration(tmp_path / "cache", net, cfg)
    chosen = resolve_exec(net, train, cfg)
    assert chosen.label == "fp32 channels-last+dw" and "faked" in chosen.reason and "cached" in chosen.reason
    result = fit(net, train, val, cfg, checkpoint_dir=tmp_path / "run", progress=False)
    assert result.exec_config is not None and result.exec_config.label == "fp32 channels-last+dw"
    stored = load_checkpoint(tmp_path / "run")["exec"]
    assert stored["channels_last"] is True and stored["depthwise_grad"] is True
    (tmp_path / "cache" / "precision.json").unlink()  # a resume must not calibrate again
    again = fit(tiny_model(), train, val, config(epochs=2, precision="auto"), checkpoint_dir=tmp_path / "run", resume=True, progress=False)
    assert again.exec_config is not None and again.exec_config.label == "fp32 channels-last+dw"
    assert "from the checkpoint" in again.exec_config.reason
    third = fit(tiny_model(), train, val, config(epochs=3, precision="auto"), checkpoint_dir=tmp_path / "run", resume=True, progress=False)
    assert third.exec_config is not None and third.exec_config.reason == again.exec_config.reason  # was nested once per resume


@pytest.mark.parametrize(("repeats", "chosen"), [(True, "bf16 eager"), (False, "fp32 channels-last+dw")])
def test_auto_leaves_out_a_half_precision_whose_gradients_do_not_repeat(
    data: tuple[Any, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repeats: bool, chosen: str
) -> None:
    import profiler.precision as precision
    import search.train as train

    seconds = {"fp32 eager": 1.0, "fp32 channels-last+dw": 0.8, "bf16 eager": 0.5}
    monkeypatch.setattr(precision, "detect_cpu", lambda: precision.CpuInfo("Fake Xeon", "AVX512", frozenset({"amx_bf16"})))
    monkeypatch.setattr(train, "train_step_timer", lambda model, c, **_: lambda n: [seconds[c.label]] * n)
    monkeypatch.setattr(precision, "gradients_repeat", lambda model, c, **_: repeats)
    run_as = resolve_exec(tiny_model(), data[0], config(precision="auto"), cache=tmp_path / "p.json")
    assert run_as.label == chosen and ("bf16 eager not reproducible" in run_as.reason) == (not repeats)


@needs_bf16
def test_a_non_finite_loss_under_bf16_names_the_precision(data: tuple[Any, Any]) -> None:
    with pytest.raises(NonFiniteLossError, match="under bf16 eager; lower the learning rate or train in fp32"):
        fit(tiny_model(), NaNClips(), data[1], config(precision="bf16"), progress=False)


def test_an_unknown_precision_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="precision must be one of auto, fp32, bf16, fp16"):
        config(precision="fp8")


def test_on_batch_reports_clips_done_after_every_step(data: tuple[Any, Any]) -> None:
    calls: list[tuple[int, int, int]] = []
    fit(tiny_model(), *data, config(epochs=2), on_batch=lambda *a: calls.append(a), progress=False)
    for epoch in (0, 1):
        mine = [c for c in calls if c[0] == epoch]
        done = [c[1] for c in mine]
        assert len(mine) >= 2 and done == sorted(done) and done[-1] == mine[-1][2]  # the epoch ends complete


def test_checkpoint_file_is_the_run_folder_s_last_pt_or_the_path_itself(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    assert checkpoint_file(tmp_path / "run") == tmp_path / "run" / "last.pt"
    assert checkpoint_file(tmp_path / "other.pt") == tmp_path / "other.pt"  # a file, there or not


def test_a_resume_for_other_epochs_says_what_becomes_of_the_schedule() -> None:
    def state(epochs: int, schedule: str = "step") -> dict[str, Any]:
        cuts = {m: 1 for m in _milestones(TrainConfig(epochs=epochs))}
        return {"config": {"epochs": epochs, "schedule": schedule}, "scheduler": {"milestones": cuts} if schedule == "step" else {}}

    change = schedule_change(state(3), TrainConfig(epochs=5))
    assert change == "the lr keeps the checkpoint's cuts (after epoch 2), not those of 5 epochs (after epochs 2 and 4)"
    assert schedule_change(state(3), TrainConfig(epochs=3)) is None
    resumed_before = {**state(3), "config": {"epochs": 5, "schedule": "step"}}  # a 3-epoch run resumed for 5 once already
    assert schedule_change(resumed_before, TrainConfig(epochs=5)) == change  # its restored cuts are still the 3 epochs'
    cosine = schedule_change(state(3, "cosine"), TrainConfig(epochs=5, schedule="cosine"))
    assert cosine == "the cosine lr schedule ran over 3 epochs so far and runs over 5 from here"
    assert schedule_change(state(3, "plateau"), TrainConfig(epochs=5, schedule="plateau")) is None
