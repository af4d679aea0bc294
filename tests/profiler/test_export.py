"""Exported TorchScript and ONNX files reload and agree with the eager model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from profiler.export import ExportError, export_int8_torchscript, export_onnx, export_torchscript, load_torchscript, run_onnx
from profiler.optimize import FLOAT_TOLERANCE, relative_error
from profiler.quantize import quantize_int8, quantized_engine
from profiler.targets import resolve_target
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
    assert ("pool-conv" in result.summary()) is optimize  # a plain export said "plain: pool-conv" (it is a bare trace)


@pytest.mark.parametrize("optimize", [True, False])
def test_onnx_runs_in_onnxruntime_on_any_batch_and_agrees_with_eager(tmp_path: Path, optimize: bool) -> None:
    model = small_model("mobilenetv2", 0.2)
    result = export_onnx(model, tmp_path / "m.onnx", optimize=optimize)
    assert result.rel_error <= FLOAT_TOLERANCE and "onnxruntime" in result.check
    assert not list(tmp_path.glob("*.data")), "weights are inside the one .onnx file"
    x = clips(5, seed=7)
    with torch.no_grad():
        assert relative_error(run_onnx(tmp_path / "m.onnx", x), model(x)) <= FLOAT_TOLERANCE


def test_onnx_weights_too_large_for_one_file_end_up_beside_it_under_their_final_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("profiler.export.ONNX_INLINE_BYTES", 0)  # as if the weights were over 1.5 GiB
    model = small_model("mobilenetv2", 0.2)
    out = tmp_path / "out" / "big.onnx"
    export_onnx(model, out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["big.onnx", "big.onnx.data"], "nothing left under a temporary name"
    assert b"big.onnx.data" in out.read_bytes() and b".tmp" not in out.read_bytes()
    x = clips(3, seed=7)
    with torch.no_grad():
        assert relative_error(run_onnx(out, x), model(x)) <= FLOAT_TOLERANCE


@pytest.mark.slow
def test_int8_torchscript_file_reloads(tmp_path: Path) -> None:
    model = small_model("shufflenetv2", 0.25)
    q = quantize_int8(model, [clips(4, seed=s) for s in range(2)])
    x = clips(2, seed=3)
    result = export_int8_torchscript(q, model, tmp_path / "q.pt", x=x)
    assert result.int8 and result.rel_error < 0.5
    loaded = load_torchscript(tmp_path / "q.pt")  # as the README says to load it
    with torch.no_grad():
        assert torch.equal(loaded(x), q(x))  # the same kernels: on an AVX2-only EPYC fbgemm's differed by one step
        assert torch.equal(loaded(x), q(x))  # the second call failed under the oneDNN fuser ("could not add op")
    assert result.pipeline.startswith(f"fx-int8({q.options.int8_engine})")


def _load_with_torchscript(path: Path) -> nn.Module:
    return load_torchscript(path, fuse=False)


def _load_as_profile_target(path: Path) -> nn.Module:
    return resolve_target(str(path)).module()


@pytest.mark.slow
@pytest.mark.parametrize("load", [_load_with_torchscript, _load_as_profile_target])
def test_an_int8_file_loads_under_the_engine_that_packed_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, load: Callable[[Path], nn.Module]
) -> None:
    model = small_model("mobilenetv2", 0.2)
    q = quantize_int8(model, [clips(2)])
    export_int8_torchscript(q, model, tmp_path / "q.pt", x=clips(2))
    engines: list[str] = []
    jit_load = torch.jit.load

    def spy(*args: Any, **kwargs: Any) -> torch.jit.ScriptModule:
        engines.append(torch.backends.quantized.engine)
        return jit_load(*args, **kwargs)

    monkeypatch.setattr(torch.jit, "load", spy)
    with quantized_engine("qnnpack"):  # a program that selected another engine
        load(tmp_path / "q.pt")
        assert torch.backends.quantized.engine == "qnnpack"
    assert engines == [q.options.int8_engine] and q.options.int8_engine == "onednn"


def test_loading_something_that_is_not_torchscript_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_text("hello")
    with pytest.raises(ExportError, match="not a TorchScript file"):
        load_torchscript(bad)
