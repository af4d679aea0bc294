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
    assert "multiply-adds of convolution and linear layers, per clip" in out
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
        (["tests.e3d.fixtures:tiny_model", "--width-mult", "2"], "preset names only"),
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
