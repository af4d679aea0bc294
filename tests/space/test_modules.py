"""space/modules.py: activations built in place compute exactly what out-of-place ones do."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import space
from space.modules import set_inplace
from tests.conftest import ALL_MODELS, SMALL_CLIP


@pytest.mark.parametrize("name", ALL_MODELS)
def test_in_place_activations_change_neither_outputs_nor_gradients(name: str, one_torch_thread: None) -> None:
    model = space.create_model(name, width_mult=0.25, num_classes=5, sample_size=SMALL_CLIP[1], sample_duration=SMALL_CLIP[0])
    acts = [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]
    assert acts and all(m.inplace for m in acts)
    twin = set_inplace(copy.deepcopy(model), False)
    x = torch.randn(2, 3, *SMALL_CLIP)
    outs = []
    for m in (model, twin):
        m.train()
        torch.manual_seed(1)  # the same dropout masks
        y = m(x)
        y.square().sum().backward()
        outs.append((y.detach(), [p.grad for p in m.parameters()]))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=0, atol=0)
    for a, b in zip(outs[0][1], outs[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
