"""``e3d export`` and ``e3d convert-checkpoint``: the check is printed, bad input is one line and exit 2."""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

import pytest
import torch

import space
from tests.conftest import SMALL_CLIP, paper_code_models
from tests.e3d.fixtures import run
from tests.space.test_checkpoints import paper_state, save_paper_checkpoint

SMALL = ["--size", str(SMALL_CLIP[1]), "--frames", str(SMALL_CLIP[0]), "--num-classes", "10"]


def _error(out: str) -> float:
    m = re.search(r"max relative error ([\d.e+-]+)", out)
    assert m, out
    return float(m.group(1))


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_writes_the_file_and_prints_the_check(capsys: pytest.CaptureFixture[str], tmp_path: Path, fmt: str) -> None:
    out_file = tmp_path / f"m.{fmt}"
    argv = ["export", "shufflenetv2", "--width-mult", "0.25", *SMALL, "--format", fmt, "--optimize", "--out", str(out_file)]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert out_file.is_file()
    assert _error(out) <= 1e-4


def test_export_takes_the_clip_as_one_option(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_file = tmp_path / "m.pt"
    clip = "x".join(map(str, SMALL_CLIP))
    argv = ["export", "shufflenetv2", "--width-mult", "0.25", "--clip", clip, "--num-classes", "10", "--format", "torchscript"]
    code, _out, err = run(capsys, *argv, "--out", str(out_file))
    assert code == 0, err
    assert torch.jit.load(str(out_file))(torch.randn(1, 3, *SMALL_CLIP)).shape == (1, 10)


@pytest.mark.slow
def test_int8_export_with_random_calibration_says_accuracy_is_not_measured(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_file = tmp_path / "q.pt"
    argv = ["export", "mobilenetv2", "--width-mult", "0.2", *SMALL, "--format", "torchscript", "--int8", "--calib-data", "random"]
    code, out, err = run(capsys, *argv, "--calib-clips", "4", "--out", str(out_file))
    assert code == 0, err
    assert "int8" in out and "accuracy change: not measured" in out
    assert torch.jit.load(str(out_file))(torch.randn(1, 3, *SMALL_CLIP)).shape == (1, 10)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--format", "onnx", "--int8", "--calib-data", "random"], "--int8 exports TorchScript only"),
        (["--format", "torchscript", "--int8"], "--int8 needs --calib-data"),
        (["--format", "torchscript", "--calib-data", "motion"], "--calib-data: for --int8"),
        (["--format", "torchscript", "--calib-clips", "5", "--eval-clips", "9"], "--calib-clips, --eval-clips: for --int8"),  # were ignored
        (["--format", "torchscript", "--checkpoint", "nope.pth"], "no such checkpoint file: nope.pth"),
        (["--format", "torchscript", "--clip", "8x32x32"], "not both"),
    ],
)
def test_bad_export_input_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path, extra: list[str], words: str) -> None:
    code, out, err = run(capsys, "export", "mobilenet", "--width-mult", "0.5", *SMALL, *extra, "--out", str(tmp_path / "x"))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and words in err


def test_convert_checkpoint_writes_a_file_create_model_loads(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    paper = next(p for p in paper_code_models() if p.family == "mobilenetv2" and p.width == 0.2)
    state = paper_state(paper)
    state["module.classifier.1.weight"] = state["module.classifier.1.weight"][:27]
    state["module.classifier.1.bias"] = state["module.classifier.1.bias"][:27]
    src = save_paper_checkpoint(tmp_path / "jester_mobilenetv2_0.2x.pth", state)
    out_file = tmp_path / "e3d.pth"
    code, out, err = run(capsys, "convert-checkpoint", str(src), "--model", "mobilenetv2", "--width-mult", "0.2", "--out", str(out_file))
    assert code == 0, err
    assert "27 classes" in out and "converted" in out
    model = space.create_model("mobilenetv2", width_mult=0.2, num_classes=27, checkpoint=out_file)
    assert torch.equal(model.state_dict()["head.fc.weight"], state["module.classifier.1.weight"])
    assert torch.load(out_file, weights_only=True)["format"] == "e3d.checkpoint/1"


def test_convert_checkpoint_names_the_key_that_does_not_fit(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    paper = next(p for p in paper_code_models() if p.family == "squeezenet")
    state = paper_state(paper)
    del state["module.features.7.expand3x3_bn.running_var"]
    src = save_paper_checkpoint(tmp_path / "s.pth", state)
    code, out, err = run(capsys, "convert-checkpoint", str(src), "--model", "squeezenet", "--out", str(tmp_path / "o.pth"))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "missing key" in err and "features.7.expand3x3_bn.running_var" in err


def test_convert_checkpoint_with_other_classes_names_its_option(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    paper = next(p for p in paper_code_models() if p.family == "mobilenetv2" and p.width == 0.2)
    src = save_paper_checkpoint(tmp_path / "m.pth", paper_state(paper))
    argv = ["convert-checkpoint", str(src), "--model", "mobilenetv2", "--width-mult", "0.2", "--num-classes", "27"]
    code, _, err = run(capsys, *argv, "--out", str(tmp_path / "o.pth"))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "the checkpoint has 600 classes, the model 27 (set --num-classes, or leave it out to read it off the checkpoint)" in err  # was
    # "(set num_classes)", which the command does not offer


def test_profile_optimize_times_the_optimized_path(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["profile", "shufflenetv2", "--width-mult", "0.25", "--size", "48", "--optimize", "--warmup", "2", "--repeats", "2", "--json"]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    d = json.loads(out)
    assert d["latency_path"].startswith("optimized: fold-bn+pool-conv+channels-last+frozen")
    assert d["optimized_rel_error"] <= 1e-4 and d["clips_per_s"] > 0


def test_profile_optimize_refuses_torchscript_targets(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    torch.jit.save(torch.jit.trace(torch.nn.Conv3d(3, 2, 1).eval(), torch.randn(1, 3, 2, 4, 4)), str(path))
    code, _, err = run(capsys, "profile", str(path), "--optimize", "--frames", "2", "--size", "4")
    assert code == 2 and "TorchScript already" in err and len(err.strip().splitlines()) == 1


# -- failures inside the user's model or builder: one line, exit 2; --debug shows the traceback ------------

FIXTURES = "tests.e3d.profile_fixtures"
TINY = ["--frames", "4", "--size", "8"]

USER_FAILURES = {
    "forward raises": ([f"{FIXTURES}:raises"], f"{FIXTURES}:raises failed on a 3x4x8x8 clip: ValueError: unsupported clip layout"),
    "forward asserts": ([f"{FIXTURES}:shape_check"], "failed on a 3x4x8x8 clip: AssertionError: expected 32 frames, got 4"),
    "forward exits": ([f"{FIXTURES}:exits"], f"{FIXTURES}:exits failed on a 3x4x8x8 clip: SystemExit: 1 (the code called sys.exit()"),
    "builder raises": ([f"{FIXTURES}:raising_builder"], f"building {FIXTURES}:raising_builder failed: KeyError: 'num_classes'"),
    "builder exits": ([f"{FIXTURES}:exiting_builder"], f"building {FIXTURES}:exiting_builder failed: SystemExit: no camera found"),
    "unknown kwarg": ([f"{FIXTURES}:shape_check", "--kwargs", '{"frame": 3}'], "unexpected keyword argument 'frame'"),
    "kwargs not an object": ([f"{FIXTURES}:shape_check", "--kwargs", "[1]"], "must be a JSON object"),
    "kwargs of a preset": (["mobilenet", "--kwargs", '{"a": 1}'], "--kwargs applies to import paths"),
}


@pytest.mark.parametrize(("argv", "words"), list(USER_FAILURES.values()), ids=list(USER_FAILURES))
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_failures_in_user_code_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], words: str, fmt: str
) -> None:
    out_file = tmp_path / "m"
    code, out, err = run(capsys, "export", *argv, *TINY, "--format", fmt, "--out", str(out_file))
    assert code == 2 and out == "", err
    assert len(err.strip().splitlines()) == 1 and words in err, err
    assert "Traceback" not in err and not out_file.exists()


def test_kwargs_are_passed_to_the_callable(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_file = tmp_path / "m.pt"
    argv = ["export", f"{FIXTURES}:shape_check", "--kwargs", '{"frames": 4}', *TINY, "--format", "torchscript", "--out", str(out_file)]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert "max relative error" in out
    assert torch.jit.load(str(out_file))(torch.zeros(1, 3, 4, 8, 8)).shape == (1, 4, 4, 8, 8)


def test_debug_shows_the_traceback_of_the_users_exception(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ("export", f"{FIXTURES}:raises", *TINY, "--format", "torchscript", "--out", str(tmp_path / "m.pt"))
    code, _, err = run(capsys, *argv, "--debug")
    assert code == 2 and "Traceback" in err and 'raise ValueError("unsupported clip layout")' in err
    assert err.strip().splitlines()[-1].startswith("e3d export: error:")
    monkeypatch.setenv("E3D_DEBUG", "1")
    code, _, err = run(capsys, *argv)
    assert code == 2 and "Traceback" in err
    monkeypatch.setenv("E3D_DEBUG", "0")
    code, _, err = run(capsys, *argv)
    assert code == 2 and "Traceback" not in err


EXITS_AT_IMPORT = {
    "exit_code": ("import sys\nsys.exit(3)\n", "SystemExit: 3 (the code called sys.exit()"),
    "bare_exit": ("import sys\nsys.exit()\n", "SystemExit (the code called sys.exit()"),
    "argparse": ("import argparse\nargparse.ArgumentParser().parse_args(['--nope'])\n", "SystemExit: 2 (the code called"),
}


@pytest.mark.parametrize("name", list(EXITS_AT_IMPORT))
def test_a_module_that_exits_when_imported_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    source, words = EXITS_AT_IMPORT[name]
    module = f"exits_at_import_{name}"  # a name of its own: importlib caches what it found under a name
    (tmp_path / f"{module}.py").write_text(source + "def make():\n    return None\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", [p for p in sys.path if p not in ("", str(tmp_path))])
    importlib.invalidate_caches()
    for target, failed in ((f"{module}:make", f"importing {module!r} failed"), (f"./{module}.py:make", f"importing ./{module}.py failed")):
        code, out, err = run(capsys, "export", target, *TINY, "--format", "torchscript", "--out", str(tmp_path / "m.pt"))
        assert code == 2 and out == "" and "Traceback" not in err, err
        assert err.strip().splitlines()[-1].startswith(f"e3d export: error: {failed}: {words}"), err  # argparse prints its usage first


def test_ctrl_c_in_the_builder_is_an_interruption(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "export", f"{FIXTURES}:interrupted_builder", "--format", "onnx", "--out", str(tmp_path / "m.onnx"))
    assert code == 130 and "interrupted" in err


@pytest.mark.parametrize("command", ["export", "convert-checkpoint"])
@pytest.mark.parametrize("out", [".", "", "folder"])
def test_an_out_that_names_no_file_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, out: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    argv = (
        ["mobilenet", "--width-mult", "0.5", *SMALL, "--format", "torchscript"]
        if command == "export"
        else ["nope.pth", "--model", "mobilenet"]
    )
    code, _, err = run(capsys, command, *argv, "--out", out)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert ("it is a folder" if out == "folder" else "it names no file") in err and "failed on a clip" not in err


def test_a_checkpoint_exports_with_its_trained_weights(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from tests.profiler.test_targets import trained_checkpoint

    path, state = trained_checkpoint(tmp_path / "last.pt")
    code, _, err = run(capsys, "export", str(path), "--format", "torchscript", "--out", str(tmp_path / "m.pt"))
    assert code == 0, err
    model = space.build(space.NetSpec.from_dict(torch.load(path, weights_only=True)["spec"])).eval()
    model.load_state_dict(state)
    x = torch.randn(2, 3, *SMALL_CLIP)
    with torch.no_grad():
        assert torch.allclose(torch.jit.load(str(tmp_path / "m.pt"))(x), model(x), atol=1e-5)  # was an untrained network's
