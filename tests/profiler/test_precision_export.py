"""The bf16 optimized path and its TorchScript export: bf16 inside, within BF16_TOLERANCE of eager bf16."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import space
from profiler.cpu import detect_cpu
from profiler.export import ExportError, export_torchscript, load_torchscript
from profiler.optimize import (
    BF16_TOLERANCE,
    NumericalMismatchError,
    OptimizeOptions,
    eager_reference,
    optimize_for_inference,
    relative_error,
)

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.skipif(not detect_cpu().bf16, reason="this CPU has no native bf16 (AVX512-BF16 or AMX)"),
]


def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return space.build(space.paper_spec("mobilenetv2", width_mult=0.2, num_classes=10, sample_size=32, sample_duration=8)).eval()


def test_a_bf16_export_matches_eager_bf16_within_the_stated_tolerance(tmp_path: Path) -> None:
    model = net()
    result = export_torchscript(model, tmp_path / "m.pt", optimize=True, bf16=True)
    assert "bf16" in result.pipeline and "bf16 autocast" in result.check and result.rel_error <= BF16_TOLERANCE
    loaded = load_torchscript(tmp_path / "m.pt")
    x = torch.randn(3, 3, 8, 32, 32, generator=torch.Generator().manual_seed(7))  # another batch than the check's
    with torch.no_grad():
        loaded(x)
        out = loaded(x)
    assert out.dtype == torch.float32
    assert relative_error(out, eager_reference(model, x, bf16=True)) <= BF16_TOLERANCE
    assert relative_error(out, eager_reference(model, x)) <= BF16_TOLERANCE  # and close to fp32 too
    assert relative_error(out, eager_reference(model, x)) > 0  # it really computed in bf16
    assert "BFloat16" in str(loaded.graph.graph)


@pytest.mark.parametrize("pools_as_convs", [True, False])
@pytest.mark.parametrize("name", space.list_models())
def test_every_registered_model_runs_optimized_in_bf16(name: str, pools_as_convs: bool) -> None:
    """Without pools as convolutions, fails without the float32 average pool: PyTorch has no bf16
    avg_pool3d on the CPU, and the ShuffleNetV1 shortcut uses one (``--paper-table --precision bf16``
    stopped with a traceback at ShuffleNetV1)."""
    torch.manual_seed(0)
    model = space.create_model(name, width_mult=0.25, num_classes=10, sample_size=64, sample_duration=16).eval()
    opt = optimize_for_inference(model, batch_size=1, options=OptimizeOptions(bf16=True, pools_as_convs=pools_as_convs))
    assert opt.rel_error is not None and opt.rel_error <= BF16_TOLERANCE
    graph = str(opt.graph.inlined_graph)
    assert ("aten::avg_pool3d" in graph) == (not pools_as_convs and _has_avg_pool(model))
    assert "aten::contiguous" not in graph, "a bf16 graph takes the clip as it comes (its weights are channels-last)"


def _has_avg_pool(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.AvgPool3d) for m in model.modules())


def test_the_bf16_check_is_live_and_a_plain_bf16_export_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NumericalMismatchError, match="max relative error"):
        optimize_for_inference(net(), batch_size=2, options=OptimizeOptions(bf16=True), tolerance=1e-7)
    with pytest.raises(ExportError, match="a bf16 export is an optimized one"):
        export_torchscript(net(), tmp_path / "m.pt", optimize=False, bf16=True)
