"""Exported TorchScript and ONNX files reload and agree with the eager model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from profiler.export import ExportError, export_int8_torchscript, export_onnx, export_torchscript, load_torchscript, run_onnx
from profiler.optimize import FLOAT_TOLERANCE, relative_error
from profiler.quantize import quantize_int8
from tests.profiler.deploy_helpers import clips, small_model


@pytest.mark.parametrize("optimize", [True, False])
def test_torchscript_reloads_and_agrees_with_eager(tmp_path: Path, optimize: bool) -> None:
    model = small_model("shufflenet", 0.5)
    result = export_torchscript(model, tmp_path / "m.pt", optimize=optimize)
    assert result.path.is_file() and result.rel_error <= FLOAT_TOLERANCE
    assert "max relative error" in result.summary()
    loaded = load_torchscript(tmp_path / "m.pt")
    plain = torch.jit.load(str(tmp_path / "m.pt"))  # without the fuser, as any PyTorch program would
    x = clips(3, seed=5)
    with torch.no_grad():
        ref = model(x)
        assert relative_error(loaded(x), ref) <= FLOAT_TOLERANCE
        assert relative_error(plain(x), ref) <= FLOAT_TOLERANCE
    assert ("batch_norm" in str(plain.inlined_graph)) is not optimize


@pytest.mark.parametrize("optimize", [True, False])
def test_onnx_runs_in_onnxruntime_on_any_batch_and_agrees_with_eager(tmp_path: Path, optimize: bool) -> None:
    model = small_model("mobilenetv2", 0.2)
    result = export_onnx(model, tmp_path / "m.onnx", optimize=optimize)
    assert result.rel_error <= FLOAT_TOLERANCE and "onnxruntime" in result.check
    assert not list(tmp_path.glob("*.data")), "weights are inside the one .onnx file"
    x = clips(5, seed=7)
    with torch.no_grad():
        assert relative_error(run_onnx(tmp_path / "m.onnx", x), model(x)) <= FLOAT_TOLERANCE


@pytest.mark.slow
def test_int8_torchscript_file_reloads(tmp_path: Path) -> None:
    model = small_model("shufflenetv2", 0.25)
    q = quantize_int8(model, [clips(4, seed=s) for s in range(2)])
    x = clips(2, seed=3)
    result = export_int8_torchscript(q, model, tmp_path / "q.pt", x=x)
    assert result.int8 and result.rel_error < 0.5
    loaded = load_torchscript(tmp_path / "q.pt", fuse=False)
    with torch.no_grad():
        assert torch.allclose(loaded(x), q(x))


def test_loading_something_that_is_not_torchscript_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_text("hello")
    with pytest.raises(ExportError, match="not a TorchScript file"):
        load_torchscript(bad)
