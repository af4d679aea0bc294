"""Post-training int8 quantization for x86 CPUs (oneDNN kernels, VNNI where the CPU has it).

:func:`quantize_int8` calibrates a model on a few clip batches with PyTorch's FX graph-mode
quantization (static, per-channel symmetric int8 weights, uint8 activations from histogram
observers; each conv fused with the BatchNorm and ReLU after it), converts it to int8 kernels of
the ``onednn`` quantized engine (``fbgemm`` for a model with a layer oneDNN cannot pack), then traces and freezes it like the float path.

Max pooling stays in float (quantization commutes with max, so this loses nothing, and PyTorch's
quantized 3D max pool is a slow reference kernel); everything else computes in int8.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import Tensor, nn

from profiler.optimize import OptimizedModel, OptimizeOptions, example_input
from space.spec import E3DError

ENGINE = "onednn"
"""PyTorch quantized engine used for int8 (oneDNN: uses AVX-512 VNNI / AMX when present)."""


class QuantizationError(E3DError):
    """int8 quantization cannot run here or on this input."""


@contextlib.contextmanager
def quantized_engine(engine: str = ENGINE) -> Iterator[None]:
    """Select PyTorch's quantized engine for the block and restore the previous one after."""
    if engine not in torch.backends.quantized.supported_engines:
        raise QuantizationError(f"quantized engine {engine!r} is not in this PyTorch build ({torch.backends.quantized.supported_engines})")
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        yield
    finally:
        torch.backends.quantized.engine = old


def _fx() -> tuple[object, object, object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    return get_default_qconfig_mapping, prepare_fx, convert_fx


FALLBACK_ENGINE = "fbgemm"
"""The engine that packs what oneDNN cannot (some grouped 3D convolutions: ShuffleNetV1 1x and 1.5x)."""


class EngineFallbackWarning(UserWarning):
    """int8 ran on :data:`FALLBACK_ENGINE` because oneDNN could not pack a layer of the model."""


def quantize_int8(
    model: nn.Module,
    calibration: Iterable[Tensor],
    *,
    input_shape: Sequence[int] | None = None,
    channels_last: bool = True,
    engine: str = ENGINE,
) -> OptimizedModel:
    """An int8 copy of ``model`` calibrated on the clip batches of ``calibration``, traced and frozen.

    ``input_shape`` is one clip's (C, T, H, W) (default: the spec's, for an e3d ``Net``). The
    eager model is not modified. Raises :class:`QuantizationError` when ``calibration`` is empty.
    When oneDNN (the default ``engine``) cannot pack one of the model's convolutions, the model is
    quantized again for :data:`FALLBACK_ENGINE`, with an :class:`EngineFallbackWarning` saying so.
    """
    batches = list(calibration)
    try:
        return _quantize(model, batches, input_shape, channels_last, engine)
    except RuntimeError as e:
        if engine != ENGINE or "primitive descriptor" not in str(e) or FALLBACK_ENGINE not in torch.backends.quantized.supported_engines:
            raise
        first = str(e).split(". ")[0]
        why = f"int8: oneDNN cannot pack a layer of this model ({first}); using {FALLBACK_ENGINE}"
        warnings.warn(EngineFallbackWarning(why), stacklevel=2)
        return _quantize(model, batches, input_shape, channels_last, FALLBACK_ENGINE)


def _quantize(
    model: nn.Module, calibration: Sequence[Tensor], input_shape: Sequence[int] | None, channels_last: bool, engine: str
) -> OptimizedModel:
    """:func:`quantize_int8` on one engine."""
    get_qconfig_mapping, prepare_fx, convert_fx = _fx()
    m = copy.deepcopy(model).eval()
    x = example_input(model, input_shape, 1)
    if channels_last:
        m = m.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    with quantized_engine(engine), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qconfig = get_qconfig_mapping(engine).set_object_type(nn.MaxPool3d, None)  # type: ignore[operator]
        prepared = prepare_fx(m, qconfig, example_inputs=(x,))  # type: ignore[operator]
        batches = 0
        with torch.no_grad():
            for batch in calibration:
                prepared(_layout(batch, channels_last))
                batches += 1
        if not batches:
            raise QuantizationError("no calibration clips: int8 needs at least one batch to choose its ranges")
        quantized = convert_fx(prepared)  # type: ignore[operator]
        with torch.no_grad():
            graph = torch.jit.freeze(torch.jit.trace(_Layout(quantized, channels_last), x, check_trace=False).eval())
    options = OptimizeOptions(pools_as_convs=False, channels_last=channels_last, freeze=True, fuse=False, int8_engine=engine)
    return OptimizedModel(graph, options=options)


def _layout(x: Tensor, channels_last: bool) -> Tensor:
    return x.contiguous(memory_format=torch.channels_last_3d) if channels_last else x


class _Layout(nn.Module):
    def __init__(self, model: nn.Module, channels_last: bool) -> None:
        super().__init__()
        self.model = model
        self.channels_last = channels_last

    def forward(self, x: Tensor) -> Tensor:
        return self.model(_layout(x, self.channels_last))
