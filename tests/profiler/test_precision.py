"""Precision and memory format: capability checks, ``auto``'s choice from calibration timings, the cache."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

import space
from profiler.precision import (
    CLOSE,
    Autocast,
    CacheWarning,
    CpuInfo,
    ExecConfig,
    PrecisionError,
    StepTimer,
    cache_key,
    cached,
    calibrate,
    candidates,
    check_supported,
    choose,
    gradients_repeat,
    matmul_gflops,
    network_key,
    read_cache,
    resolve,
    resolve_optimized,
    train_step_gflop,
    train_step_seconds,
    train_step_timer,
)

AMX = CpuInfo("Fake Xeon", "AVX512", frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}))
EPYC = CpuInfo("Fake EPYC", "AVX2", frozenset({"avx2"}))
EPYC_AVX512 = CpuInfo("Fake EPYC", "AVX512", frozenset({"avx2", "avx512f", "avx512_bf16"}))


def timer(seconds: dict[str, float]) -> tuple[list[str], Callable[[ExecConfig], StepTimer]]:
    """A fake calibration: seconds per step by label; records what was started."""
    seen: list[str] = []

    def start(c: ExecConfig) -> StepTimer:
        seen.append(c.label)
        return lambda n: [seconds[c.label]] * n

    return seen, start


def test_auto_picks_bf16_when_it_measures_fastest_on_a_bf16_cpu(tmp_path: Path) -> None:
    seen, start = timer({"fp32 eager": 1.0, "fp32 channels-last": 0.8, "bf16 eager": 0.6, "bf16 channels-last": 0.5})
    c = resolve("auto", start=start, key="k", cpu=AMX, cache=tmp_path / "p.json", half_channels_last=True)
    assert (c.precision, c.channels_last) == ("bf16", True)
    assert seen == ["fp32 eager", "fp32 channels-last", "bf16 eager", "bf16 channels-last"]
    assert "2.00x fp32 eager" in c.reason


def test_training_auto_never_measures_bf16_channels_last_which_is_not_reproducible(tmp_path: Path) -> None:
    seen, start = timer({"fp32 eager": 1.0, "fp32 channels-last+dw": 0.8, "bf16 eager": 0.6, "bf16 channels-last": 0.5})
    c = resolve("auto", start=start, key="k", cpu=AMX, cache=tmp_path / "p.json")
    assert c.label == "bf16 eager" and seen == ["fp32 eager", "fp32 channels-last+dw", "bf16 eager"]


def test_auto_without_half_precision_measures_fp32_only(tmp_path: Path) -> None:
    seen, start = timer({"fp32 eager": 1.0, "fp32 channels-last+dw": 0.8, "bf16 eager": 0.6})
    c = resolve("auto", start=start, key="k", cpu=AMX, cache=tmp_path / "p.json", half=False)
    assert c.label == "fp32 channels-last+dw" and seen == ["fp32 eager", "fp32 channels-last+dw"]


def test_auto_keeps_fp32_eager_when_bf16_is_slower_and_channels_last_gains_too_little(tmp_path: Path) -> None:
    # the measurement on an AMX machine: bf16 slower than fp32 for depthwise-heavy networks
    _seen, start = timer({"fp32 eager": 1.0, "fp32 channels-last+dw": 0.99, "bf16 eager": 1.2, "bf16 channels-last": 1.3})
    c = resolve("auto", start=start, key="k", cpu=AMX, cache=tmp_path / "p.json")
    assert (c.precision, c.channels_last) == ("fp32", False)
    assert "nothing beat fp32 eager" in c.reason


def test_auto_picks_fp32_channels_last_when_it_wins_and_never_measures_bf16_without_it(tmp_path: Path) -> None:
    seen, start = timer({"fp32 eager": 1.0, "fp32 channels-last+dw": 0.8})
    c = resolve("auto", start=start, key="k", cpu=EPYC, cache=tmp_path / "p.json")
    assert (c.precision, c.channels_last) == ("fp32", True)
    assert seen == ["fp32 eager", "fp32 channels-last+dw"]


def test_choose_checks_only_the_pick_and_chooses_again_when_it_fails() -> None:
    configs = candidates(cpu=AMX, training=True)
    seconds = {"fp32 eager": 1.0, "fp32 channels-last+dw": 0.8, "bf16 eager": 0.5}
    checked: list[str] = []

    def admissible(c: ExecConfig) -> bool:
        checked.append(c.label)
        return c.precision == "fp32"

    c = choose([(c, seconds[c.label]) for c in configs], admissible=admissible)
    assert c.label == "fp32 channels-last+dw" and checked == ["bf16 eager", "fp32 channels-last+dw"]
    assert "bf16 eager not reproducible" in c.reason
    checked.clear()
    seconds["bf16 eager"] = 2.0  # slower: never checked
    assert choose([(c, seconds[c.label]) for c in configs], admissible=admissible).label == "fp32 channels-last+dw"
    assert checked == ["fp32 channels-last+dw"]


def steps_timed(firsts: dict[str, float], later: float | dict[str, float]) -> tuple[ExecConfig, dict[str, int], list[str]]:
    """:func:`calibrate` over the AMX CPU's training candidates whose first timed steps take ``firsts`` seconds
    and every later one ``later`` (or ``later[label]``): the pick, how many steps each timed, and the order of events."""
    counts: dict[str, int] = {}
    events: list[str] = []

    def start(c: ExecConfig) -> StepTimer:
        events.append(f"warm {c.label}")

        def timed(n: int) -> list[float]:
            events.append(f"time {c.label}")
            then = later[c.label] if isinstance(later, dict) else later
            out = [firsts[c.label] if counts.get(c.label, 0) + i == 0 else then for i in range(n)]
            counts[c.label] = counts.get(c.label, 0) + n
            return out

        return timed

    return calibrate(candidates(cpu=AMX, training=True), start), counts, events


def test_calibrate_warms_every_candidate_up_before_timing_any() -> None:
    _, _, events = steps_timed({"fp32 eager": 1.0, "fp32 channels-last+dw": 0.5, "bf16 eager": 0.9}, 0.5)
    labels = ["fp32 eager", "fp32 channels-last+dw", "bf16 eager"]
    assert events == [f"warm {label}" for label in labels] + [f"time {label}" for label in labels]


def test_calibrate_times_again_only_candidates_close_to_the_fastest_first_step() -> None:
    far = 0.5 * CLOSE * 1.01
    pick, counts, _ = steps_timed({"fp32 eager": 1.0, "fp32 channels-last+dw": 0.5, "bf16 eager": far}, 0.5)
    assert counts == {"fp32 eager": 1, "fp32 channels-last+dw": 1, "bf16 eager": 1}  # one alone ahead: no more steps
    assert pick.label == "fp32 channels-last+dw" and "fp32 eager 1000 ms" in pick.reason
    pick, counts, _ = steps_timed({"fp32 eager": 1.0, "fp32 channels-last+dw": 0.5, "bf16 eager": 0.5 * CLOSE}, 0.5)
    assert counts == {"fp32 eager": 1, "fp32 channels-last+dw": 3, "bf16 eager": 3}


def test_calibrate_takes_the_median_of_three_steps_of_close_candidates() -> None:
    # bf16's first step was the fastest, its later ones are slower than channels-last's: the median decides
    firsts = {"fp32 eager": 1.0, "fp32 channels-last+dw": 0.5, "bf16 eager": 0.45}
    pick, _, _ = steps_timed(firsts, {"fp32 eager": 1.0, "fp32 channels-last+dw": 0.5, "bf16 eager": 0.7})
    assert pick.label == "fp32 channels-last+dw" and "fp32 channels-last+dw 500 ms, bf16 eager 700 ms" in pick.reason


def test_a_step_timer_warms_up_then_times_as_many_steps_as_asked() -> None:
    net = nn.Sequential(nn.Conv3d(3, 4, 3), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 10))
    calls: list[int] = []
    net[0].register_forward_hook(lambda *_: calls.append(1))
    timed = train_step_timer(net, ExecConfig("fp32", False), input_shape=(3, 4, 8, 8), batch_size=2, num_classes=10, warmup=2)
    assert len(calls) == 2
    assert len(timed(3)) == 3 and len(calls) == 5 and len(timed(1)) == 1 and len(calls) == 6


def test_a_training_step_timer_keeps_no_gradients_between_calls() -> None:
    """calibrate holds every candidate's copy until all are timed: their gradients would add a model's size each."""
    net = nn.Sequential(nn.Conv3d(3, 4, 3), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 10))
    copies: list[nn.Module] = []
    net[0].register_forward_hook(lambda module, *_: copies.append(module))  # the hook goes with the copy that is timed
    timed = train_step_timer(net, ExecConfig("fp32", False), input_shape=(3, 4, 8, 8), batch_size=2, num_classes=10)
    timed(2)
    assert copies[-1] is not net[0] and all(p.grad is None for p in copies[-1].parameters())


class DriftingGradient(torch.autograd.Function):
    """Identity forward; its backward scales the gradient a little more on every call (a stand-in for a
    kernel whose weight gradients differ between identical passes)."""

    calls = 0

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: object, g: torch.Tensor) -> torch.Tensor:
        DriftingGradient.calls += 1
        return g * (1 + 1e-3 * DriftingGradient.calls)


class Drifting(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return DriftingGradient.apply(self.inner(x))


def test_gradients_repeat_tells_a_reproducible_network_from_one_whose_gradients_drift() -> None:
    net = space.build(space.paper_spec("mobilenet", width_mult=0.25, num_classes=10, sample_size=32, sample_duration=8))
    shape = {"input_shape": (3, 8, 32, 32), "batch_size": 2, "num_classes": 10}
    state = torch.random.get_rng_state()
    assert gradients_repeat(net, ExecConfig("fp32", True, 1), **shape)
    stem = net.stem
    net.stem = Drifting(stem)  # type: ignore[assignment]
    assert not gradients_repeat(net, ExecConfig("fp32", True, 1), **shape)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_a_candidate_timed_as_infinite_is_left_out_and_named(tmp_path: Path) -> None:
    _seen, start = timer({"fp32 eager": 1.0, "fp32 channels-last+dw": 0.8, "bf16 eager": float("inf")})
    c = resolve("auto", start=start, key="k", cpu=AMX, cache=tmp_path / "p.json")
    assert c.label == "fp32 channels-last+dw" and "bf16 eager not reproducible" in c.reason


def test_the_calibration_is_cached_per_key_and_written_atomically(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "p.json"
    seen, start = timer({"fp32 eager": 1.0, "fp32 channels-last+dw": 0.8, "bf16 eager": 0.6, "bf16 channels-last": 0.5})
    first = resolve("auto", start=start, key="a", cpu=AMX, cache=path)
    again = resolve("auto", start=None, key="a", cpu=AMX, cache=path)
    assert len(seen) == 3 and again.label == first.label and "cached" in again.reason
    resolve("auto", start=start, key="b", cpu=AMX, cache=path)
    assert set(read_cache(path)) == {"a", "b"} and len(seen) == 6
    assert [p.name for p in path.parent.iterdir()] == ["p.json"]  # no temporary file left


def test_a_cache_that_cannot_be_written_warns_and_the_calibration_is_used(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.mkdir()  # a folder where the file belongs: writing fails as on a full disk (one line, no traceback)
    _seen, start = timer({"fp32 eager": 1.0, "fp32 channels-last+dw": 0.8})
    with pytest.warns(CacheWarning, match=rf"cannot write {path}: .*; the calibration is used for this run only"):
        c = resolve("auto", start=start, key="k", cpu=EPYC, cache=path)  # was IsADirectoryError from the command
    assert c.label == "fp32 channels-last+dw" and list(tmp_path.iterdir()) == [path]  # no temporary file left


@pytest.mark.parametrize("entry", [{"precision": "int3"}, {"precision": "bf16", "channels_last": "yes"}, {"bogus": 1, "lanes": 2}, []])
def test_a_cache_entry_this_code_did_not_write_is_measured_again(tmp_path: Path, entry: object) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"k": entry}))
    seen, start = timer({"fp32 eager": 1.0, "fp32 channels-last+dw": 0.8})
    c = resolve("auto", start=start, key="k", cpu=EPYC, cache=path)  # was KeyError: 'int3' in the training that used it
    assert c.label == "fp32 channels-last+dw" and seen and cached(read_cache(path)["k"]) == c


def test_cache_keys_separate_cpus_batches_threads_and_networks() -> None:
    net = space.build(space.paper_spec("mobilenet", width_mult=0.25, num_classes=10, sample_size=32, sample_duration=8))
    other = space.build(space.paper_spec("mobilenet", width_mult=0.5, num_classes=10, sample_size=32, sample_duration=8))
    k = network_key(net, (3, 8, 32, 32))
    assert k != network_key(other, (3, 8, 32, 32)) and k != network_key(net, (3, 16, 32, 32))
    keys = {
        cache_key("train", k, batch_size=16, device="cpu", threads=1, cpu=AMX),
        cache_key("train", k, batch_size=16, device="cpu", threads=1, cpu=EPYC),
        cache_key("train", k, batch_size=8, device="cpu", threads=1, cpu=AMX),
        cache_key("train", k, batch_size=16, device="cpu", threads=2, cpu=AMX),
        cache_key("train", k, batch_size=16, device="cpu", threads=1, cpu=EPYC_AVX512),  # EPYC's name, AVX-512's flags
    }
    assert len(keys) == 5


def test_bf16_on_a_cpu_without_it_and_fp16_on_a_cpu_are_user_errors() -> None:
    with pytest.raises(PrecisionError, match="neither AVX512-BF16 nor AMX-BF16: Fake EPYC"):
        check_supported("bf16", cpu=EPYC)
    with pytest.raises(PrecisionError, match="fp16 is for CUDA"):
        check_supported("fp16", cpu=AMX)
    with pytest.raises(PrecisionError, match="unknown precision"):
        check_supported("int4", cpu=AMX)
    for device in ("bogus", "cuda:abc"):  # the CLI checks --device first; a caller of the library may not
        with pytest.raises(PrecisionError, match=f"unknown device '{device}'"):
            check_supported("fp32", device, cpu=AMX)
    check_supported("bf16", cpu=AMX)
    assert resolve("bf16", start=None, key="k", cpu=AMX).label == "bf16 eager"
    assert resolve("fp32", start=None, key="k", cpu=EPYC).label == "fp32 eager"


def test_bf16_on_a_cuda_device_without_it_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake T4")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    with pytest.raises(PrecisionError, match=r"^bf16 asked for, but Fake T4 has no bf16 support; use fp16 or fp32$"):
        check_supported("bf16", "cuda")
    check_supported("fp16", "cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    check_supported("bf16", "cuda:0")


def test_choose_needs_fp32_eager_first() -> None:
    with pytest.raises(ValueError, match="baseline"):
        choose([(ExecConfig("bf16", True), 1.0)])
    assert [c.label for c in candidates(cpu=AMX)] == ["fp32 eager", "fp32 channels-last", "bf16 eager", "bf16 channels-last"]


@pytest.mark.usefixtures("one_torch_thread")
def test_a_calibration_step_leaves_the_model_and_the_rng_alone() -> None:
    net = space.build(space.paper_spec("mobilenet", width_mult=0.25, num_classes=10, sample_size=32, sample_duration=8))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.get_rng_state()
    s = train_step_seconds(net, ExecConfig("fp32", True), input_shape=(3, 8, 32, 32), batch_size=2, num_classes=10, repeats=1)
    assert s > 0
    assert torch.equal(rng, torch.get_rng_state())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert dict(net.named_parameters())["stem.conv.weight"].is_contiguous()


@pytest.mark.usefixtures("one_torch_thread")
def test_the_autocast_wrapper_returns_float32_close_to_fp32() -> None:
    net = space.build(space.paper_spec("mobilenet", width_mult=0.25, num_classes=10, sample_size=32, sample_duration=8)).eval()
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        ref = net(x)
        out = Autocast(net, ExecConfig("bf16", True)).eval()(x)
    assert out.dtype == torch.float32
    assert (out - ref).abs().max() <= 0.1 * ref.abs().max()


def test_auto_on_the_optimized_path_takes_bf16_only_where_it_measures_faster(tmp_path: Path) -> None:
    net = space.build(space.paper_spec("mobilenet", width_mult=0.25, num_classes=10, sample_size=32, sample_duration=8))
    kw = {"input_shape": (3, 8, 32, 32), "batch_size": 8, "cache": tmp_path / "p.json"}
    fast_bf16 = resolve_optimized(net, "auto", cpu=AMX, measure=lambda bf16: 0.2 if bf16 else 0.5, **kw)
    assert fast_bf16.precision == "bf16" and fast_bf16.channels_last and "2.50x optimized fp32" in fast_bf16.reason
    slow_bf16 = resolve_optimized(net, "auto", cpu=AMX, measure=lambda bf16: 0.5, **{**kw, "cache": tmp_path / "q.json"})
    assert slow_bf16.precision == "fp32" and "bf16 not 3% faster" in slow_bf16.reason
    no_bf16 = resolve_optimized(net, "auto", cpu=EPYC, measure=lambda bf16: 1 / 0, **kw)
    assert no_bf16.precision == "fp32" and "no native bf16" in no_bf16.reason
    with pytest.raises(PrecisionError, match="neither AVX512-BF16"):
        resolve_optimized(net, "bf16", cpu=EPYC, **kw)
    with pytest.raises(PrecisionError, match="fp32 or bf16"):
        resolve_optimized(net, "fp16", cpu=AMX, **kw)


def test_step_gflop_counts_forward_and_backward_and_the_matmul_peak_is_measured() -> None:
    assert train_step_gflop(100e6, 16) == pytest.approx(9.6)  # 3 x 100 M multiply-adds x 2 FLOP x 16 clips
    assert matmul_gflops("fp32", size=64, repeats=1, threads=1) > 0
