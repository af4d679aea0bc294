"""e3d: search, profile and study resource-efficient 3D CNNs for video. The public API."""

from profiler import Counts, count_module, count_spec
from space import (
    BLOCKS,
    E3DError,
    HeadSpec,
    NetSpec,
    SpecError,
    StageSpec,
    StemSpec,
    build,
    create_model,
    list_models,
    paper_spec,
    table8,
)

__all__ = [
    "BLOCKS",
    "Counts",
    "E3DError",
    "HeadSpec",
    "NetSpec",
    "SpecError",
    "StageSpec",
    "StemSpec",
    "build",
    "count_module",
    "count_spec",
    "create_model",
    "list_models",
    "paper_spec",
    "table8",
]
