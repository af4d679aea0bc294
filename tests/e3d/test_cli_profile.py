"""``e3d profile`` for every target kind, JSON output, the paper table and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import space
from e3d.cli import main
from tests.e3d.fixtures import tiny_model
from tests.e3d.test_cli_models import run

KEYS = {
    "target",
    "input_shape",
    "params",
    "macs",
    "paper_mflops",
    "activations",
    "latency_ms",
    "latency_iqr_ms",
    "clips_per_s",
    "device",
    "threads",
}


def profile_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:  # type: ignore[type-arg]
    code, out, err = run(capsys, "profile", *argv, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert set(data) >= KEYS
    return data  # type: ignore[no-any-return]


def test_preset_with_latency(capsys: pytest.CaptureFixture[str]) -> None:
    d = profile_json(
        capsys,
        "shufflenet",
        "--width-mult",
        "0.5",
        "--size",
        "48",
        "--batch-size",
        "2",
        "--repeats",
        "2",
        "--warmup",
        "0",
        "--threads",
        "1",
    )
    spec = space.paper_spec("shufflenet", width_mult=0.5, sample_size=48)
    assert d["input_shape"] == [1, 3, 16, 48, 48]
    assert d["params"] == 545772 - 0 and d["threads"] == 1 and d["device"] == "cpu"
    assert d["latency_ms"] > 0 and d["latency_iqr_ms"] >= 0 and d["clips_per_s"] == pytest.approx(2000 / d["latency_ms"], rel=1e-2)
    assert d["spec"] == spec.to_dict()
    assert d["peak_memory_mb"] is not None


def test_spec_file_import_path_and_torchscript_agree(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = space.paper_spec("mobilenet", width_mult=0.5, num_classes=10, sample_size=48)
    spec.save(tmp_path / "net.json")
    from_spec = profile_json(capsys, str(tmp_path / "net.json"), "--no-latency")
    assert from_spec["kind"] == "spec" and from_spec["input_shape"] == [1, 3, 16, 48, 48]

    traced = torch.jit.trace(space.build(spec).eval(), torch.zeros(1, *spec.input_shape))
    traced.save(str(tmp_path / "net.pt"))
    from_ts = profile_json(capsys, str(tmp_path / "net.pt"), "--no-latency", "--size", "48")
    assert from_ts["kind"] == "torchscript"
    for key in ("macs", "params", "paper_mflops", "activations"):
        assert from_ts[key] == from_spec[key], key

    from_import = profile_json(capsys, "tests.e3d.fixtures:tiny_model", "--no-latency", "--frames", "4", "--size", "8")
    assert from_import["kind"] == "import"
    assert from_import["macs"] == 8 * 3 * 27 * 4 * 8 * 8 + 8 * 4
    assert from_import["params"] == sum(p.numel() for p in tiny_model().parameters())


def test_human_output_names_units_breakdowns_and_uncounted_ops(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "profile", "mobilenetv2", "--width-mult", "0.2", "--no-latency", "--per-layer", "--backend", "fvcore")
    assert code == 0
    assert "multiply-adds of convolution and linear layers and of matrix products (matmul, einsum, attention), per clip" in out
    assert "conv (depthwise)" in out and "not counted in macs" in out and "bn" in out
    assert "stages.0.0.dw" in out  # per-layer listing
    assert "fvcore total" in out and "batch_norm" in out


def test_paper_table_lists_21_rows_within_tolerance(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "profile", "--paper-table", "--no-latency", "--json")
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == 21
    assert all(abs(r["params_diff_pct"]) < 1 and abs(r["mflops_diff_pct"]) < 2 for r in rows)
    code, out, _ = run(capsys, "profile", "--paper-table", "--no-latency")
    assert code == 0 and len([ln for ln in out.splitlines() if "x " in ln]) >= 21
    assert "clips/s: not timed (--no-latency)" in out and "median of" not in out  # was "median of 3 after 1 warm-up"
    assert "-0.00%" not in out and "+0.00%" in out  # mobilenetv2 0.7x: -0.003%, was printed "-0.00%"
    code, _, err = run(capsys, "profile", "mobilenet", "--paper-table", "--no-latency")
    assert code == 2 and "leave out TARGET (mobilenet)" in err  # was ignored
    code, _, err = run(capsys, "profile", "--paper-table", "--no-latency", "--clip", "8x48x48", "--width-mult", "2", "--per-layer")
    assert code == 2 and "--width-mult, --clip, --per-layer: --paper-table profiles Table 8's presets" in err  # were ignored


@pytest.mark.parametrize("target", ["mobilenet", "tests.e3d.fixtures:tiny_model"])
def test_clip_is_frames_and_size_in_one_option(capsys: pytest.CaptureFixture[str], target: str) -> None:
    counts = []
    for clip in (["--clip", "8x40x40"], ["--frames", "8", "--size", "40"]):
        code, out, err = run(capsys, "profile", target, *clip, "--no-latency", "--json")
        assert code == 0, err
        report = json.loads(out)
        counts.append((report["input_shape"], report["macs"]))
    assert counts[0] == counts[1] and counts[0][0][-3:] == [8, 40, 40]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["nope"], "unknown target 'nope'"),
        (["missing.json"], "no such file"),
        (["tests.e3d.fixtures:nothing"], "has no attribute"),
        (["no_such_pkg.mod:fn"], "cannot import"),
        (["tests.e3d.fixtures:not_a_model"], "returned a str, not an nn.Module"),
        (["shufflenet", "--frames", "8"], "stages[2].stride"),
        (["mobilenet", "--device", "cuda:3"], "does not exist"),
        (["mobilenet", "--width-mult", "0"], "positive number"),
        (["mobilenet", "--clip-ind", "3", "--data", "motion"], "unrecognized arguments: --clip-ind 3"),  # not --clip-index
        (["mobilenet", "--clip", "8x64x32"], "square frames"),
        (["mobilenet", "--clip", "8x64x64", "--size", "64"], "not both"),
        (["mobilenet", "--width", "0.5"], "unrecognized arguments: --width 0.5"),  # not --width-mult
        (["tests.e3d.fixtures:tiny_model", "--width-mult", "2"], "preset names only"),
        (["mobilenet", "--samples", "5", "--split", "test"], "--samples, --split: for the clips of --data; give --data too"),  # ignored
        ([], "give a TARGET"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], words: str) -> None:
    code, out, err = run(capsys, "profile", *argv, "--no-latency")
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1 and words in err


def test_a_file_that_is_not_a_spec(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01 not a model")
    code, _, err = run(capsys, "profile", str(junk), "--no-latency")
    assert code == 2 and "neither an e3d spec" in err
    bad_spec = tmp_path / "bad.json"
    bad_spec.write_text('{"format": "e3d.netspec/1", "family": "x", "stem": {"channels": 0}, "stages": []}')
    code, _, err = run(capsys, "profile", str(bad_spec), "--no-latency")
    assert code == 2 and "stem.channels" in err


def test_main_is_importable_without_side_effects() -> None:
    assert callable(main)


# -- failures inside the user's model or builder: one line, exit 2; --debug shows the traceback ------------


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["tests.e3d.profile_fixtures:shape_check"], "failed on a 3x16x112x112 clip: AssertionError: expected 32 frames, got 16"),
        (["tests.e3d.profile_fixtures:raises"], "ValueError: unsupported clip layout"),
        (["tests.e3d.profile_fixtures:raising_builder"], "building tests.e3d.profile_fixtures:raising_builder failed: KeyError"),
        (["tests.e3d.profile_fixtures:out_of_memory"], "failed: MemoryError"),
        (["tests.e3d.profile_fixtures:exits"], "failed on a 3x16x112x112 clip: SystemExit"),
        (["tests.e3d.profile_fixtures:exiting_builder"], "exiting_builder failed: SystemExit"),
        (["json:dumps"], "cannot be called with no arguments: missing a required argument: 'obj'"),
        (["tests.e3d.profile_fixtures:shape_check", "--kwargs", '{"frame": 3}'], "unexpected keyword argument 'frame'"),
        (["tests.e3d.profile_fixtures:shape_check", "--kwargs", "[1]"], "must be a JSON object"),
        (["tests.e3d.profile_fixtures:shape_check", "--kwargs", "{oops"], "not valid JSON"),
        (["tests.e3d.profile_fixtures:shape_check", "--kwargs", "[" * 100_000], "--kwargs is not readable JSON (nested too deeply)"),
        (["tests.e3d.profile_fixtures:shape_check", "--kwargs", '{"frames": 1' + "0" * 5000 + "}"], "(4300 digits)"),
        (["mobilenet", "--kwargs", '{"a": 1}'], "--kwargs applies to import paths"),
        (["nosuchdir/models.py:make"], "no such file: nosuchdir/models.py"),
    ],
)
def test_failures_in_user_code_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], words: str) -> None:
    code, out, err = run(capsys, "profile", *argv, "--no-latency", "--size", "8", "--frames", "16")
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1 and words in err.replace("3x16x8x8", "3x16x112x112"), err


def test_debug_shows_the_traceback_of_the_users_exception(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ("profile", "tests.e3d.profile_fixtures:raises", "--no-latency", "--size", "8")
    code, _, err = run(capsys, *argv, "--debug")
    assert code == 2 and "Traceback" in err and 'raise ValueError("unsupported clip layout")' in err
    assert err.strip().splitlines()[-1].startswith("e3d profile: error:")
    monkeypatch.setenv("E3D_DEBUG", "1")
    code, _, err = run(capsys, *argv)
    assert code == 2 and "Traceback" in err


def test_a_shape_check_passes_with_its_keyword_argument(capsys: pytest.CaptureFixture[str]) -> None:
    d = profile_json(
        capsys, "tests.e3d.profile_fixtures:shape_check", "--kwargs", '{"frames": 4}', "--frames", "4", "--size", "8", "--no-latency"
    )
    assert d["macs"] == 4 * 3 * 4 * 8 * 8 and d["macs_lower_bound"] is False


def test_optimize_refuses_a_batchnorm_it_cannot_fold_without_blaming_the_model(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ("tests.e3d.profile_fixtures:with_batchnorm", "--optimize", "--frames", "4", "--size", "8", "--batch-size", "1")
    code, out, err = run(capsys, "profile", *argv, "--repeats", "1", "--warmup", "0")
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1 and "--optimize cannot handle" in err and "failed on" not in err, err


def test_per_layer_json_has_the_layer_and_part_tables(capsys: pytest.CaptureFixture[str]) -> None:
    d = profile_json(capsys, "tests.e3d.fixtures:tiny_model", "--no-latency", "--frames", "4", "--size", "8", "--per-layer")
    assert d["layers"] and sum(row["macs"] for row in d["layers"]) == d["macs"]
    assert {"layer", "op", "macs", "params", "paper_flops"} == set(d["layers"][0])
    assert sum(part["macs"] for part in d["by_part"].values()) == d["macs"]
    assert "layers" not in profile_json(capsys, "tests.e3d.fixtures:tiny_model", "--no-latency", "--frames", "4", "--size", "8")


def test_a_backend_that_cannot_count_the_model_is_a_note_next_to_e3ds_counts(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ("tests.e3d.profile_fixtures:untraceable", "--no-latency", "--frames", "4", "--size", "8", "--backend", "fvcore")
    d = profile_json(capsys, *argv)
    assert d["macs"] == 4 * 3 * 4 * 8 * 8 and d["backend"]["name"] == "fvcore" and "traced region" in d["backend"]["error"]
    code, out, _ = run(capsys, "profile", *argv)
    assert code == 0 and "fvcore could not count this model: RuntimeError:" in out and "\n" not in d["backend"]["error"]


MODELS_PY = """
from torch import nn
from helper import WIDTH

def make_net(num_classes=10):
    return nn.Sequential(nn.Conv3d(3, WIDTH, 1), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(WIDTH, num_classes))
"""


def test_import_paths_from_the_working_directory_and_from_a_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "mymodels18.py").write_text(MODELS_PY)
    (folder / "helper.py").write_text("WIDTH = 5\n")
    expected = 5 * 3 * 4 * 8 * 8 + 5 * 7
    monkeypatch.chdir(folder)
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", str(folder))])
    d = profile_json(capsys, "mymodels18:make_net", "--kwargs", '{"num_classes": 7}', "--frames", "4", "--size", "8", "--no-latency")
    assert d["kind"] == "import" and d["macs"] == expected
    monkeypatch.chdir(tmp_path)
    d = profile_json(
        capsys, "proj/mymodels18.py:make_net", "--kwargs", '{"num_classes": 7}', "--frames", "4", "--size", "8", "--no-latency"
    )
    assert d["macs"] == expected
    code, _, err = run(capsys, "profile", "proj/mymodels18.py:nothing", "--no-latency")
    assert code == 2 and "has no attribute 'nothing'" in err


def test_torchscript_wrong_shape_backends_frozen_exports_and_onnx(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from profiler.optimize import optimize_for_inference

    spec = space.paper_spec("mobilenet", width_mult=0.25, num_classes=10, sample_size=32, sample_duration=8)
    model = space.build(spec).eval()
    traced = torch.jit.trace(model, torch.zeros(1, *spec.input_shape))
    traced.save(str(tmp_path / "net.pt"))
    code, _, err = run(capsys, "profile", str(tmp_path / "net.pt"), "--no-latency", "--frames", "8", "--size", "32", "--backend", "fvcore")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "fvcore cannot count a TorchScript model" in err
    d = profile_json(capsys, str(tmp_path / "net.pt"), "--no-latency", "--frames", "8", "--size", "32", "--backend", "flop_counter")
    assert d["backend"]["total"] == d["macs"] == spec_macs(spec)

    frozen = optimize_for_inference(model, input_shape=spec.input_shape, batch_size=1)  # what e3d export --optimize writes
    torch.jit.save(frozen.graph, str(tmp_path / "opt.pt"))
    d = profile_json(
        capsys, str(tmp_path / "opt.pt"), "--frames", "8", "--size", "32", "--repeats", "1", "--warmup", "0", "--batch-size", "1"
    )
    assert d["macs"] == spec_macs(spec) and d["latency_ms"] > 0

    (tmp_path / "net.onnx").write_bytes(b"\x08\x07\x12\x07pytorch")
    code, _, err = run(capsys, "profile", str(tmp_path / "net.onnx"), "--no-latency")
    assert code == 2 and "is an ONNX file" in err and "corrupted" not in err


def spec_macs(spec: space.NetSpec) -> int:
    from profiler import count_spec

    return count_spec(spec).macs


def test_lower_bound_shapes_and_functional_names_in_the_report(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "profile", "tests.profiler.test_video_counting:Cdist", "--no-latency", "--frames", "4", "--size", "4", "--per-layer"
    )
    assert code == 0
    assert "a LOWER BOUND: 1 operator(s) without a cost rule ran" in out and "_cdist_forward" in out and "inputs 1x3x4x4x4" in out
    code, out, _ = run(
        capsys, "profile", "tests.profiler.video_archs:TSMNet", "--no-latency", "--frames", "8", "--size", "32", "--per-layer"
    )
    assert code == 0 and "LOWER BOUND" not in out
    listing = out.split("paper MFLOPs")[-1].splitlines()[1:]
    assert listing and all(line.split()[0] for line in listing if line.strip())
    code, out, _ = run(
        capsys, "profile", "tests.profiler.test_counting:Functional", "--no-latency", "--frames", "4", "--size", "6", "--per-layer"
    )
    listing = out.split("paper MFLOPs")[-1].splitlines()[1:]
    assert code == 0 and listing[0].split()[:2] == ["(top)", "conv"], "the model's own functional calls are named"


def test_a_latency_with_a_wide_spread_warns_and_says_what_load_was_seen(capsys: pytest.CaptureFixture[str]) -> None:
    import dataclasses

    from profiler.latency import measure_latency
    from profiler.report import profile, render
    from profiler.targets import resolve_target

    target = resolve_target("tests.e3d.fixtures:tiny_model", frames=4, size=8)
    p = profile(target, batch_size=1, memory=False, warmup=0, repeats=3)
    assert p.latency is not None and p.latency.cpus >= 1
    lat = measure_latency(target.module(), batch_size=1, clip=(4, 8, 8), warmup=0, repeats=2)
    p.latency = dataclasses.replace(lat, median_ms=10.0, iqr_ms=6.0, q1_ms=7.0, q3_ms=13.0, other_load=1.5, load_avg=3.2, cpus=2)
    text = render(p)
    assert "the latency is unreliable" in text and "IQR 60% of the median" in text
    assert "other processes kept 1.5 of the 2 CPUs busy" in text and "load average 3.2" in text
    p.latency = dataclasses.replace(p.latency, iqr_ms=0.5)
    assert "unreliable" not in render(p)


def test_paper_table_says_it_is_long_and_how_to_shorten_it(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import profiler.paper_table as pt

    fast = pt.table_rows
    monkeypatch.setattr(pt, "table_rows", lambda **kw: fast(**{**kw, "latency": False}))
    code, out, err = run(capsys, "profile", "--paper-table")
    assert code == 0 and len([ln for ln in out.splitlines() if "x " in ln]) >= 21
    assert "this is long" in err and "--no-latency" in err and "about" in err and "min for all of them" in err


class FixedShape(torch.nn.Module):
    """Reshapes to the clip it was traced on: its TorchScript graph runs on that shape only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(1, 3, 4, 8, 8).mean((2, 3, 4))


def test_a_torchscript_graph_that_needs_another_input_shape_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    torch.jit.trace(FixedShape(), torch.zeros(1, 3, 4, 8, 8)).save(str(tmp_path / "fixed.pt"))
    code, _, err = run(capsys, "profile", str(tmp_path / "fixed.pt"), "--no-latency")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "failed on a 3x16x112x112 clip: RuntimeError" in err and "set it with --frames and --size" in err
    d = profile_json(capsys, str(tmp_path / "fixed.pt"), "--no-latency", "--frames", "4", "--size", "8")
    assert d["macs"] == 0 and d["kind"] == "torchscript"


def _weights(kind: str, path: Path) -> Path:
    """A checkpoint of mobilenet 0.5x with 10 classes as e3d convert-checkpoint or e3d train writes it, or a damaged one."""
    from space.checkpoints import FORMAT, save_converted

    spec = space.paper_spec("mobilenet", width_mult=0.5, num_classes=10)
    state = space.build(spec).state_dict()
    if kind == "converted":
        save_converted(path, state, spec, model="mobilenet", source="paper.pth")
    else:
        torch.save({"format": FORMAT, **{"trained": {"model": state}, "no model": {}, "model list": {"model": [1]}}[kind]}, path)
    return path


@pytest.mark.parametrize(
    ("kind", "words"), [("converted", None), ("trained", None), ("no model", "without weights"), ("model list", "without weights")]
)
def test_weights_of_convert_checkpoint_and_of_train_load(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: str, words: str | None
) -> None:
    weights = _weights(kind, tmp_path / "w.pth")
    argv = ["mobilenet", "--width-mult", "0.5", "--num-classes", "10", "--clip", "8x32x32", "--no-latency", "--weights", str(weights)]
    code, _, err = run(capsys, "profile", *argv)
    if words is None:
        assert code == 0, err
    else:
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err


def test_an_e3d_checkpoint_profiles_as_its_spec(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    preset = profile_json(capsys, "mobilenet", "--width-mult", "0.5", "--num-classes", "10", "--clip", "8x32x32", "--no-latency")
    d = profile_json(capsys, str(_weights("converted", tmp_path / "c.pth")), "--clip", "8x32x32", "--no-latency")
    assert d["kind"] == "spec" and (d["macs"], d["params"]) == (preset["macs"], preset["params"])  # was "neither an e3d spec"
    code, _, err = run(capsys, "profile", str(_weights("trained", tmp_path / "t.pth")), "--no-latency")  # no spec in it
    assert code == 2 and "neither an e3d spec (JSON), an e3d checkpoint nor a TorchScript file" in err


def test_the_meta_device_is_refused_not_timed(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "profile", "squeezenet", "--width-mult", "0.25", "--clip", "8x32x32", "--device", "meta")
    assert code == 2 and out == "" and "'meta': it cannot run a model to time" in err and len(err.strip().splitlines()) == 1, err


def test_an_int8_torchscript_file_is_said_to_be_uncountable(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from tests.profiler.test_counting import _dynamic_int8

    path = tmp_path / "q.pt"
    torch.jit.save(torch.jit.trace(_dynamic_int8(), torch.zeros(1, 3, 8, 32, 32)), path)
    code, _, err = run(capsys, "profile", str(path), "--clip", "8x32x32", "--no-latency")
    assert code == 2 and "int8 (quantized) model cannot be counted" in err and "input shape" not in err, err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["profile", "export"])
@pytest.mark.parametrize("kind", ["import path", "torchscript"])
def test_num_classes_is_refused_where_it_cannot_apply(capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str, kind: str) -> None:
    target = "tests.e3d.fixtures:tiny_model"
    if kind == "torchscript":
        target = str(tmp_path / "m.pt")
        torch.jit.save(torch.jit.trace(tiny_model().eval(), torch.zeros(1, 3, 4, 8, 8)), target)
    extra = ["--no-latency"] if command == "profile" else ["--format", "onnx", "--out", str(tmp_path / "x.onnx")]
    code, _, err = run(capsys, command, target, "--num-classes", "9", "--frames", "4", "--size", "8", *extra)
    assert code == 2 and "--num-classes applies to preset names and spec files only" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.onnx").exists()
