"""What a network IS: the spec, the block library, the paper's families and the registry.

Public API::

    paper_spec(name, *, width_mult=1.0, num_classes=600, sample_size=112, sample_duration=16) -> NetSpec
    create_model(name, *, width_mult=1.0, ...) -> nn.Module
    build(spec) -> nn.Module
    list_models() -> list[str]
"""

from typing import TYPE_CHECKING, Any

from space import families as families  # registers the presets
from space.blocks import BLOCKS
from space.ops import Layer
from space.paper import PaperRow, table8
from space.registry import ModelInfo, UnknownModelError, create_model, list_models, model_info, paper_spec, register_model
from space.spec import E3DError, HeadSpec, NetSpec, SpecError, StageSpec, StemSpec

if TYPE_CHECKING:
    from space.modules import Net, build

__all__ = [
    "BLOCKS",
    "E3DError",
    "HeadSpec",
    "Layer",
    "ModelInfo",
    "Net",
    "NetSpec",
    "PaperRow",
    "SpecError",
    "StageSpec",
    "StemSpec",
    "UnknownModelError",
    "build",
    "create_model",
    "list_models",
    "model_info",
    "paper_spec",
    "register_model",
    "table8",
]


def __getattr__(name: str) -> Any:
    """``Net`` and ``build``, imported on first use: they need torch, the rest of ``space`` does not (so that
    ``e3d --help`` and the spec, registry and paper tables load without it)."""
    if name in ("Net", "build"):
        from space import modules

        return getattr(modules, name)
    raise AttributeError(f"module 'space' has no attribute {name!r}")
