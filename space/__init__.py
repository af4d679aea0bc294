"""What a network IS: the spec, the block library, the paper's families and the registry.

Public API::

    paper_spec(name, *, width_mult=1.0, num_classes=600, sample_size=112, sample_duration=16) -> NetSpec
    create_model(name, *, width_mult=1.0, ...) -> nn.Module
    build(spec) -> nn.Module
    list_models() -> list[str]
"""

from space import families as families  # registers the presets
from space.blocks import BLOCKS
from space.modules import Net, build
from space.ops import Layer
from space.paper import PaperRow, table8
from space.registry import ModelInfo, UnknownModelError, create_model, list_models, model_info, paper_spec, register_model
from space.spec import E3DError, HeadSpec, NetSpec, SpecError, StageSpec, StemSpec

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
