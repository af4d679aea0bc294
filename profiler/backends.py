"""Cross-check counts with fvcore and ptflops.

All count a *module* for one clip; their conventions differ from e3d's ``macs`` (see
``docs/COUNTING.md``): fvcore counts one flop per multiply-add for conv and linear, adds BatchNorm
and a few pooling ops and skips the rest (listing them as unsupported); ptflops (with
``count_functional=False``) adds BatchNorm, activations, pooling and biases per module;
``torch.utils.flop_counter`` counts 2 FLOPs per multiply-add of convolutions and matrix products
(reported here halved, as multiply-adds). fvcore and ptflops hook modules and so cannot read
TorchScript; ``flop_counter`` works at the aten level and can. Each runs the fixed-seed random clip
that e3d counts on (:func:`profiler.counting.random_clips`), so that a model whose path depends on its
input takes the same path for both.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from profiler.counting import random_clips
from space.spec import E3DError


class BackendError(E3DError):
    """A cross-check backend that cannot count this model."""


def _no_torchscript(model: nn.Module, backend: str) -> None:
    if isinstance(model, torch.jit.ScriptModule):
        raise BackendError(
            f"{backend} cannot count a TorchScript model (it needs module hooks, which ScriptModules do not support); "
            "use --backend flop_counter, or profile the spec or Python module it came from"
        )


@dataclass
class BackendCount:
    """A backend's total, its breakdown and the operators it reported as unsupported."""

    backend: str
    total: int
    params: int
    by_operator: dict[str, int] = field(default_factory=dict)
    unsupported: dict[str, int] = field(default_factory=dict)


def count_fvcore(model: nn.Module, input_shape: Sequence[int]) -> BackendCount:
    """fvcore's ``FlopCountAnalysis`` total and per-operator counts (one clip, eval mode)."""
    from fvcore.nn import FlopCountAnalysis

    _no_torchscript(model, "fvcore")
    was_training = model.training
    model.eval()
    x = random_clips(1, input_shape)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            analysis = FlopCountAnalysis(model, (x,))
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            logging.getLogger("fvcore").setLevel(logging.ERROR)
            total = int(analysis.total())
            by_op = {str(k): int(v) for k, v in analysis.by_operator().items()}
            unsupported = {str(k): int(v) for k, v in analysis.unsupported_ops().items()}
    finally:
        model.train(was_training)
    return BackendCount("fvcore", total, sum(p.numel() for p in model.parameters()), by_op, unsupported)


def count_ptflops(model: nn.Module, input_shape: Sequence[int]) -> BackendCount:
    """ptflops' module-hook count with ``count_functional=False`` (its default also patches
    functional ReLU and pooling calls and counts them again), with a per-module-type breakdown.

    Runs ptflops' own engine steps (``add_flops_counting_methods``, ``start_flops_count``, one
    forward, ``compute_average_flops_cost``), which is what ``get_model_complexity_info`` does when
    ``count_functional`` is False, and reads each module's ``__flops__`` before they are removed.
    """
    from ptflops.pytorch_engine import add_flops_counting_methods, is_supported_instance

    _no_torchscript(model, "ptflops")
    was_training = model.training
    counted = add_flops_counting_methods(model)
    counted.eval()
    by_type: Counter[str] = Counter()
    try:
        counted.start_flops_count(ost=io.StringIO(), verbose=False, ignore_list=[])
        with torch.no_grad():
            counted(random_clips(1, input_shape))
        total, params = counted.compute_average_flops_cost()
        for m in counted.modules():
            if is_supported_instance(m):
                by_type[type(m).__name__] += int(getattr(m, "__flops__", 0))
    finally:
        counted.stop_flops_count()
        model.train(was_training)
    unsupported = Counter(type(m).__name__ for m in model.modules() if not list(m.children()) and not is_supported_instance(m))
    return BackendCount("ptflops", int(total), int(params), {k: v for k, v in by_type.items() if v}, dict(unsupported))


def count_flop_counter(model: nn.Module, input_shape: Sequence[int]) -> BackendCount:
    """``torch.utils.flop_counter.FlopCounterMode`` on one clip (eval, inference mode), halved to
    multiply-adds, per aten operator; works on TorchScript too."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = getattr(model, "training", None)
    if was_training is not None:
        model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with torch.inference_mode(), counter:
            model(random_clips(1, input_shape))
    finally:
        if was_training is not None:
            model.train(was_training)
    by_op = {str(k).removeprefix("aten."): int(v) // 2 for k, v in counter.get_flop_counts().get("Global", {}).items()}
    return BackendCount("flop_counter", counter.get_total_flops() // 2, sum(p.numel() for p in model.parameters()), by_op)


COUNTERS = {"fvcore": count_fvcore, "ptflops": count_ptflops, "flop_counter": count_flop_counter}
"""Every cross-check backend by name."""
