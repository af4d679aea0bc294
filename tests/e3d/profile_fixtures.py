"""Models that fail in the ways users' models do, for ``e3d profile`` and ``e3d export`` tests."""

from __future__ import annotations

import sys

from torch import Tensor, nn


class ShapeCheck(nn.Module):
    """Asserts on its input's shape, as many video models do."""

    def __init__(self, frames: int = 32) -> None:
        super().__init__()
        self.frames = frames
        self.conv = nn.Conv3d(3, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        assert x.shape[2] == self.frames, f"expected {self.frames} frames, got {x.shape[2]}"
        return self.conv(x)


class Raises(nn.Module):
    """Raises a ValueError from its forward."""

    def forward(self, x: Tensor) -> Tensor:
        raise ValueError("unsupported clip layout")


def raising_builder() -> nn.Module:
    """Fails while building."""
    raise KeyError("num_classes")


def shape_check(frames: int = 32) -> nn.Module:
    """A ShapeCheck model (a builder with a keyword argument)."""
    return ShapeCheck(frames)


def out_of_memory() -> nn.Module:
    """A builder that asks for more memory than any machine has."""
    raise MemoryError()


def raises() -> nn.Module:
    """A Raises model."""
    return Raises()


class Exits(nn.Module):
    """Calls ``sys.exit`` from its forward, as a script's model may."""

    def forward(self, x: Tensor) -> Tensor:
        sys.exit(1)


def exits() -> nn.Module:
    """An Exits model."""
    return Exits()


def exiting_builder() -> nn.Module:
    """Exits while building, as a builder that checks its environment may."""
    sys.exit("no camera found")


def interrupted_builder() -> nn.Module:
    """Ctrl-C while building."""
    raise KeyboardInterrupt


def with_batchnorm() -> nn.Module:
    """A conv and a BatchNorm3d named as torch names them (``0``, ``1``), not as e3d's blocks do."""
    return nn.Sequential(nn.Conv3d(3, 4, 1), nn.BatchNorm3d(4))


class Untraceable(nn.Module):
    """Returns a dict with a Python int, which runs but which fvcore's tracer cannot follow."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 1)

    def forward(self, x: Tensor) -> dict[str, Tensor | int]:
        return {"features": self.conv(x), "n": 3}


def untraceable() -> nn.Module:
    """An Untraceable model."""
    return Untraceable()
