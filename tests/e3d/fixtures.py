"""Callables for ``e3d profile package.module:callable`` tests."""

from __future__ import annotations

import pytest
from torch import nn

from e3d.cli import main


def tiny_model() -> nn.Module:
    """A small 3D CNN that is not built from a spec."""
    return nn.Sequential(
        nn.Conv3d(3, 8, 3, padding=1), nn.BatchNorm3d(8), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(8, 4)
    )


def not_a_model() -> str:
    """Returns something that is not a module."""
    return "hello"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the ``e3d`` CLI in-process: (exit code, stdout, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
