"""``--precision`` on the command line: bf16 training and evaluation, and a one-line error where bf16 cannot run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import profiler.precision as precision
from search.train import load_checkpoint
from tests.e3d.fixtures import run

TINY = ["--sample-duration", "8", "--sample-size", "32", "--num-samples", "16", "--batch-size", "8", "--quiet", "--threads", "1"]
NO_BF16 = precision.CpuInfo("Fake EPYC", "AVX2", frozenset({"avx2"}))

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def train_argv(tmp_path: Path, *more: str) -> list[str]:
    return ["train", "mobilenet", "--width-mult", "0.25", "--format", "digits", "--cache-dir", str(tmp_path / "c"), *TINY, *more]


def test_bf16_on_a_cpu_without_it_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(precision, "detect_cpu", lambda: NO_BF16)
    code, _, err = run(capsys, *train_argv(tmp_path, "--out", str(tmp_path / "r"), "--epochs", "1", "--precision", "bf16"))
    assert code == 2, err
    assert (
        err.strip()
        == "e3d train: error: bf16 asked for, but this CPU has neither AVX512-BF16 nor AMX-BF16: " + NO_BF16.describe() + "; use fp32"
    )
    assert not (tmp_path / "r" / "last.pt").exists()
    code, _, err = run(capsys, *train_argv(tmp_path, "--out", str(tmp_path / "r"), "--epochs", "1", "--precision", "fp16"))
    assert code == 2 and "fp16 is for CUDA devices" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, *train_argv(tmp_path, "--out", str(tmp_path / "r"), "--epochs", "1"))
    assert code == 0, err
    code, _, err = run(capsys, "evaluate", str(tmp_path / "r"), "--split", "val", "--precision", "bf16", "--threads", "1", "--quiet")
    assert (
        code == 2
        and err.strip().startswith("e3d evaluate: error: bf16 asked for, but this CPU has neither")
        and len(err.strip().splitlines()) == 1
    )


def test_a_resume_without_precision_keeps_the_checkpoint_s(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The command an interrupted run prints (``--resume --out``, no ``--precision``) resumed an ``auto`` or bf16
    run in fp32, the default, with a note that it would not match the uninterrupted run."""
    out = tmp_path / "r"
    code, _, err = run(capsys, *train_argv(tmp_path, "--out", str(out), "--epochs", "1", "--precision", "auto"))
    assert code == 0, err
    code, stdout, err = run(capsys, *train_argv(tmp_path, "--out", str(out), "--epochs", "2", "--resume"))
    assert code == 0, err
    assert ": from the checkpoint (" in stdout and "not the checkpoint's auto" not in stdout, stdout  # no precision note
    assert load_checkpoint(out)["config"]["precision"] == "auto"
    code, stdout, err = run(capsys, *train_argv(tmp_path, "--out", str(out), "--epochs", "3", "--resume", "--precision", "fp32"))
    assert code == 0 and "note     fp32, not the checkpoint's auto: the run will not match an uninterrupted one" in stdout, err


@pytest.mark.skipif(not precision.detect_cpu().bf16, reason="this CPU has no native bf16")
def test_train_and_evaluate_in_bf16_say_so_and_record_it(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "run"
    code, stdout, err = run(capsys, *train_argv(tmp_path, "--out", str(out), "--epochs", "1", "--precision", "bf16"))
    assert code == 0, err
    assert "run as   precision bf16 eager on cpu, 1 thread: asked for" in stdout
    state = load_checkpoint(out)
    assert state["exec"]["precision"] == "bf16" and state["config"]["precision"] == "bf16"
    code, stdout, err = run(capsys, "evaluate", str(out), "--json", "--quiet", "--split", "val", "--precision", "bf16", "--threads", "1")
    assert code == 0, err
    m = json.loads(stdout)
    assert m["run_as"]["precision"] == "bf16" and m["run_as"]["channels_last"] is True and 0 <= m["top1"] <= 100


SMALL = ["--width-mult", "0.25", "--num-classes", "10", "--frames", "8", "--size", "32"]


@pytest.mark.skipif(not precision.detect_cpu().bf16, reason="this CPU has no native bf16")
def test_profile_times_bf16_eager_and_optimized_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    timing = ["--batch-size", "2", "--warmup", "1", "--repeats", "1", "--threads", "1", "--json"]
    code, out, err = run(capsys, "profile", "mobilenet", *SMALL, *timing, "--precision", "bf16")
    assert code == 0, err
    d = json.loads(out)
    assert d["precision"]["precision"] == "bf16" and d["precision"]["channels_last"] is True and d["clips_per_s"] > 0
    code, out, err = run(capsys, "profile", "mobilenet", *SMALL, *timing, "--precision", "bf16", "--optimize")
    assert code == 0, err
    d = json.loads(out)
    assert "bf16" in d["latency_path"] and d["optimized_rel_error"] <= 5e-2


@pytest.mark.skipif(not precision.detect_cpu().bf16, reason="this CPU has no native bf16")
def test_export_optimize_bf16_writes_a_checked_bf16_graph(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "m.pt"
    code, stdout, err = run(
        capsys, "export", "mobilenet", *SMALL, "--format", "torchscript", "--optimize", "--precision", "bf16", "--out", str(out)
    )
    assert code == 0, err
    assert "bf16" in stdout and "vs eager bf16 autocast" in stdout and out.is_file()
    code, _, err = run(capsys, "export", "mobilenet", *SMALL, "--format", "onnx", "--precision", "bf16", "--out", str(tmp_path / "m.onnx"))
    assert code == 2 and "--precision bf16 exports an optimized float TorchScript model" in err


def test_bf16_inference_on_a_cpu_without_it_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(precision, "detect_cpu", lambda: NO_BF16)
    code, _, err = run(capsys, "profile", "mobilenet", *SMALL, "--precision", "bf16", "--batch-size", "1", "--repeats", "1")
    assert code == 2 and "neither AVX512-BF16 nor AMX-BF16" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(
        capsys,
        "export",
        "mobilenet",
        *SMALL,
        "--format",
        "torchscript",
        "--optimize",
        "--precision",
        "bf16",
        "--out",
        str(tmp_path / "m.pt"),
    )
    assert code == 2 and "neither AVX512-BF16 nor AMX-BF16" in err


WITH_BF16 = precision.CpuInfo("Fake Xeon", "AVX512", frozenset({"avx512f", "avx512_bf16", "amx_bf16"}))


@pytest.mark.parametrize(("fp32_s", "bf16_s", "chosen"), [(1.0, 0.5, "bf16"), (1.0, 0.99, "fp32")])
def test_export_auto_writes_the_graph_its_calibration_picks(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fp32_s: float, bf16_s: float, chosen: str
) -> None:
    """Faked capability and timings, both ways: ``auto`` says what it chose and why, and the file is that graph
    (its check against eager bf16 autocast for bf16). bf16 runs without native support too, only slower."""
    monkeypatch.setenv("E3D_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(precision, "detect_cpu", lambda: WITH_BF16)
    monkeypatch.setattr(precision, "optimized_seconds", lambda model, *, bf16, **_: bf16_s if bf16 else fp32_s)
    argv = ["export", "mobilenet", *SMALL, "--format", "torchscript", "--optimize", "--precision", "auto", "--out", str(tmp_path / "m.pt")]
    code, stdout, err = run(capsys, *argv)
    assert code == 0, err
    assert f"run as   precision {chosen} channels-last on cpu: calibrated" in stdout
    assert ("vs eager bf16 autocast" in stdout) == (chosen == "bf16")
    code, _, err = run(capsys, "export", "mobilenet", *SMALL, "--format", "onnx", "--precision", "auto", "--out", str(tmp_path / "m.onnx"))
    assert code == 2 and "--precision auto exports an optimized float TorchScript model" in err


def test_export_auto_without_native_bf16_is_fp32_without_timing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(precision, "detect_cpu", lambda: NO_BF16)
    monkeypatch.setattr(precision, "optimized_seconds", lambda *a, **k: pytest.fail("timed on a CPU without bf16"))
    argv = ["export", "mobilenet", *SMALL, "--format", "torchscript", "--optimize", "--precision", "auto", "--out", str(tmp_path / "m.pt")]
    code, stdout, err = run(capsys, *argv)
    assert code == 0, err
    assert "run as   precision fp32 channels-last on cpu: auto: this CPU has no native bf16" in stdout and "bf16 autocast" not in stdout
