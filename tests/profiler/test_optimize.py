"""The optimized inference path: BatchNorm folding, channels-last-3d, frozen graph, int8."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import space
from profiler.optimize import (
    FLOAT_TOLERANCE,
    NumericalMismatchError,
    OptimizeOptions,
    check_close,
    fold_batchnorm,
    optimize_for_inference,
    pools_as_convs,
    relative_error,
)
from profiler.quantize import FALLBACK_ENGINE, EngineFallbackWarning, QuantizationError, quantize_int8
from tests.conftest import ALL_MODELS, SMALL_CLIP
from tests.profiler.deploy_helpers import clips, randomize_batchnorm, small_model


@pytest.mark.parametrize("name", ALL_MODELS)
def test_folding_keeps_outputs_within_1e_4_for_every_preset(name: str) -> None:
    width = space.model_info(name).paper_widths[0]
    model = randomize_batchnorm(
        space.create_model(name, width_mult=width, num_classes=10, sample_size=SMALL_CLIP[1], sample_duration=SMALL_CLIP[0])
    )
    convs = sum(isinstance(m, nn.Conv3d) for m in model.modules())
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm3d) for m in folded.modules())
    assert sum(isinstance(m, nn.Conv3d) for m in folded.modules()) == convs
    assert any(isinstance(m, nn.BatchNorm3d) for m in model.modules()), "the eager model must be left as it was"
    x = clips(2)
    with torch.no_grad():
        err = relative_error(folded(x), model(x))
    assert err <= FLOAT_TOLERANCE


def test_fold_keeps_names_and_adds_bias() -> None:
    model = small_model()
    folded = fold_batchnorm(model)
    assert isinstance(folded.get_submodule("stem.conv_bn"), nn.Identity)
    conv = folded.get_submodule("stem.conv")
    assert isinstance(conv, nn.Conv3d) and conv.bias is not None
    assert not torch.equal(conv.weight, model.get_submodule("stem.conv").weight)


def test_a_batchnorm_without_its_conv_is_an_error() -> None:
    model = nn.Sequential(nn.Conv3d(3, 4, 1), nn.BatchNorm3d(4))
    with pytest.raises(ValueError, match="BatchNorm without a conv"):
        fold_batchnorm(model)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_optimized_model_matches_eager_on_any_batch(name: str) -> None:
    model = small_model(name, 0.25)  # every preset, at the file's smallest width (a quarter of the paper's ResNets)
    opt = optimize_for_inference(model, batch_size=2)
    assert opt.rel_error is not None and opt.rel_error <= FLOAT_TOLERANCE
    graph = str(opt.graph.inlined_graph)
    assert "batch_norm" not in graph, "BatchNorm must be folded away"
    assert "prim::GetAttr" not in graph, "a frozen graph holds its weights as constants"
    assert "aten::contiguous" in graph, "the clip is put in the channels-last-3d format first"
    assert "aten::relu_" not in graph and "aten::hardtanh_" not in graph, "activations out of place, where the fuser fuses them"
    assert all(m.inplace for m in model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))), "the eager model is left as it was"
    for batch in (1, 3):
        x = clips(batch, seed=batch)
        with torch.no_grad():
            assert relative_error(opt(x), model(x)) <= FLOAT_TOLERANCE


@pytest.mark.parametrize(
    ("pool", "replaced"),
    [
        (nn.AvgPool3d(3, 2, 1), True),
        (nn.AvgPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)), True),
        (nn.AvgPool3d(2), True),
        (nn.AvgPool3d(3, 2, 1, count_include_pad=False), False),
        (nn.AvgPool3d(3, 2, 1, ceil_mode=True), False),
        (nn.AvgPool3d(3, 2, 1, divisor_override=5), False),
    ],
)
def test_pools_as_convs_computes_each_plain_average_pool_as_a_depthwise_conv(pool: nn.AvgPool3d, replaced: bool) -> None:
    model = nn.Sequential(nn.Conv3d(3, 6, 1), pool, nn.ReLU()).eval()
    x = clips(2)
    with torch.no_grad():
        expected = model(x)
        converted = pools_as_convs(copy.deepcopy(model), x)
        out = converted(x)
    conv = converted[1]
    assert isinstance(conv, nn.Conv3d) == replaced
    if replaced:
        assert conv.groups == conv.in_channels == conv.out_channels == 6 and conv.bias is None
    assert relative_error(out, expected) <= 1e-6


def test_pools_as_convs_leaves_a_pool_the_clip_does_not_reach() -> None:
    class Skips(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.unused = nn.AvgPool3d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2

    assert isinstance(pools_as_convs(Skips(), clips(1)).unused, nn.AvgPool3d)


def test_pools_as_convs_runs_no_forward_pass_without_average_pools() -> None:
    class NoPool(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise AssertionError("pools_as_convs ran the model although it has no average pool")

    model = NoPool()
    assert pools_as_convs(model, clips(1)) is model


def test_the_optimized_shufflenet_has_no_average_pool_left() -> None:
    """ShuffleNetV1's downsampling shortcuts average-pool; the optimized graph convolves instead."""
    model = small_model("shufflenet", 0.5)
    assert any(isinstance(m, nn.AvgPool3d) for m in model.modules())
    graph = str(optimize_for_inference(model, batch_size=2).graph.inlined_graph)
    assert "aten::avg_pool3d" not in graph
    unconverted = optimize_for_inference(model, batch_size=2, options=OptimizeOptions(pools_as_convs=False))
    assert "aten::avg_pool3d" in str(unconverted.graph.inlined_graph)


def test_every_step_can_be_turned_off() -> None:
    model = small_model()
    opt = optimize_for_inference(
        model, options=OptimizeOptions(fold_bn=False, pools_as_convs=False, channels_last=False, freeze=False, fuse=False)
    )
    assert opt.options.describe() == "traced"
    assert "batch_norm" in str(opt.graph.inlined_graph)


def test_relative_error_and_check_close() -> None:
    ref = torch.tensor([[1.0, -4.0], [2.0, 0.0]])
    assert relative_error(ref, ref) == 0.0
    assert relative_error(ref + 0.04, ref) == pytest.approx(0.01)
    assert check_close(ref + 4e-5, ref, tolerance=1e-4, what="x") == pytest.approx(1e-5, rel=1e-2)
    with pytest.raises(NumericalMismatchError, match=r"the export differs from the eager model: max relative error 1\.00e-02 > 1e-04"):
        check_close(ref + 0.04, ref, tolerance=1e-4, what="the export")
    with pytest.raises(NumericalMismatchError, match="shapes differ"):
        relative_error(ref[:1], ref)


@pytest.mark.slow
def test_int8_runs_on_a_proxy_model_and_stays_close() -> None:
    model = small_model("mobilenetv2", 0.2)
    calib = [clips(4, seed=s) for s in range(2)]
    q = quantize_int8(model, calib)
    graph = str(q.graph.inlined_graph)
    assert "quantized::conv3d" in graph
    x = clips(3, seed=9)
    with torch.no_grad():
        y, ref = q(x), model(x)
    assert y.shape == ref.shape == (3, 10)
    assert torch.isfinite(y).all()
    assert relative_error(y, ref) < 0.5  # int8 of a random-weight network: close, not equal
    assert any(isinstance(m, nn.BatchNorm3d) for m in model.modules()), "the eager model must be left as it was"


def test_int8_of_a_model_onednn_cannot_pack_falls_back_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails without the fallback: where oneDNN cannot pack a layer (a grouped convolution of ShuffleNetV1 1x
    on this project's AMX machine: "could not create a primitive descriptor for the reorder primitive"), int8
    stopped ``e3d profile --paper-table --precision bf16`` with a traceback. Whether oneDNN fails depends on
    the CPU, so its failure is injected here."""
    import profiler.quantize as pq

    real, engines = pq._quantize, []

    def quantize(model: nn.Module, calibration: object, input_shape: object, channels_last: bool, engine: str) -> object:
        engines.append(engine)
        if engine == "onednn":
            raise RuntimeError("could not create a primitive descriptor for the reorder primitive. Run workload with ...")
        return real(model, calibration, input_shape, channels_last, engine)  # type: ignore[arg-type]

    monkeypatch.setattr(pq, "_quantize", quantize)
    model = small_model("mobilenetv2", 0.2)
    x = clips(2, seed=0)
    with pytest.warns(EngineFallbackWarning, match=f"oneDNN cannot pack a layer of this model .*; using {FALLBACK_ENGINE}"):
        q = quantize_int8(model, [x])
    assert engines == ["onednn", FALLBACK_ENGINE]
    with torch.no_grad():
        assert relative_error(q(x), model(x)) < 0.5


def test_int8_needs_calibration_clips() -> None:
    with pytest.raises(QuantizationError, match="no calibration clips"):
        quantize_int8(small_model("mobilenetv2", 0.2), [])


@pytest.mark.slow
def test_paper_table_times_eager_and_optimized_side_by_side() -> None:
    from profiler.paper_table import render_header, render_row, table_rows

    row = next(table_rows(latency=True, batch_size=2, warmup=0, repeats=1))  # the first row only: ShuffleNetV1 0.5x
    assert row.clips_per_s is not None and row.clips_per_s > 0
    assert row.optimized_clips_per_s is not None and row.optimized_clips_per_s > 0
    assert "optimized" in render_header()
    assert f"{row.optimized_clips_per_s:.1f}" in render_row(row)


@pytest.mark.slow
def test_a_variant_that_fails_on_one_preset_leaves_its_cell_empty_and_the_table_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails without the guard: a kernel PyTorch lacks for one preset (int8 of ResNet-50: 'Quantized
    copy only works with contiguous and NHWC Tensors') stopped the whole paper table with a traceback."""
    import profiler.quantize
    from profiler.paper_table import VariantFailedWarning, table_rows

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Quantized copy only works with contiguous and NHWC Tensors")

    monkeypatch.setattr(profiler.quantize, "quantize_int8", broken)
    with pytest.warns(VariantFailedWarning, match="shufflenet 0.5x: int8 not measured: Quantized copy only works"):
        rows = table_rows(latency=True, batch_size=1, warmup=0, repeats=1, optimized=False, int8=True)
        row = next(rows)
    assert row.int8_clips_per_s is None and row.clips_per_s is not None and row.clips_per_s > 0
