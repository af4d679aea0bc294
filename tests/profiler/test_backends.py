"""fvcore and ptflops agree with e3d up to their documented conventions (docs/COUNTING.md)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import space
from profiler import count_spec
from profiler.backends import COUNTERS, count_fvcore, count_ptflops


@pytest.mark.parametrize(("name", "width"), [("mobilenetv2", 0.45), ("shufflenet", 1.0), ("squeezenet", 1.0)])
def test_backends_differ_from_e3d_exactly_by_their_conventions(name: str, width: float) -> None:
    spec = space.paper_spec(name, width_mult=width, sample_size=48)
    model = space.build(spec)
    c = count_spec(spec)
    elements = lambda *ops: sum(c.not_counted[op].elements for op in ops if op in c.not_counted)  # noqa: E731
    conv_macs = sum(s.macs for op, s in c.by_operator.items() if op.startswith("conv"))
    bias_outputs = sum(cost.paper_flops - cost.macs for _, op, cost in c.layers if op.startswith("conv"))

    fv = count_fvcore(model, spec.input_shape)
    assert fv.by_operator["conv"] == conv_macs
    assert fv.by_operator.get("linear", 0) == c.by_operator.get("linear", type("Z", (), {"macs": 0})).macs  # type: ignore[attr-defined]
    assert fv.by_operator["batch_norm"] == 2 * elements("bn")
    assert fv.total == c.macs + 2 * elements("bn")

    pt = count_ptflops(model, spec.input_shape)
    linear_bias = spec.num_classes if spec.head.kind == "linear" else 0
    gap_inputs = sum(
        layer.in_shape[0] * layer.kernel[0] * layer.kernel[1] * layer.kernel[2] for layer in spec.layers if layer.kind == "gap"
    )
    pools = sum(
        (layer.in_shape[0] * layer.in_shape[1] * layer.in_shape[2] * layer.in_shape[3])
        for layer in spec.layers
        if layer.kind in ("maxpool", "avgpool")
    )
    expected = c.macs + bias_outputs + 2 * elements("bn") + elements("relu", "relu6") + gap_inputs + pools + linear_bias
    assert pt.total == expected
    assert pt.params == c.params


class _SkipsStillClips(nn.Module):
    """Skips its conv on a clip with no motion: an all-zero clip takes that path, e3d's random one does not."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x[:, :, 1:] - x[:, :, :-1]).abs().mean() < 1e-3:
            return torch.zeros(x.shape[0], 4)
        return self.conv(x).mean((2, 3, 4))


@pytest.mark.parametrize("backend", ["fvcore", "ptflops", "flop_counter"])
def test_backends_run_the_clip_e3d_counts_on(backend: str) -> None:
    assert COUNTERS[backend](_SkipsStillClips(), (3, 2, 4, 4)).total > 0
