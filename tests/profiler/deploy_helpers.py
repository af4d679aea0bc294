"""Shared helpers of the deployment tests: models whose BatchNorms are not the identity."""

from __future__ import annotations

import torch
from torch import nn

import space
from tests.conftest import SMALL_CLIP


def randomize_batchnorm(model: nn.Module, *, seed: int = 0) -> nn.Module:
    """Give every BatchNorm random statistics and affine parameters (so folding is not trivial); eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)  # type: ignore[union-attr]
                m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)  # type: ignore[union-attr]
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
    return model.eval()


def small_model(name: str = "shufflenetv2", width: float = 0.25, classes: int = 10) -> nn.Module:
    """A preset on the small test clip with random BatchNorms, in eval mode."""
    model = space.create_model(name, width_mult=width, num_classes=classes, sample_size=SMALL_CLIP[1], sample_duration=SMALL_CLIP[0])
    return randomize_batchnorm(model)


def clips(batch: int, *, seed: int = 1) -> torch.Tensor:
    """A batch of random clips of the small test clip size."""
    return torch.randn(batch, 3, *SMALL_CLIP, generator=torch.Generator().manual_seed(seed))
