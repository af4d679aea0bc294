"""e3d: search, profile and study resource-efficient 3D CNNs for video. The public API.

Its names are imported on first use, so that ``e3d.cli`` starts without torch: the ``e3d`` command
handles Ctrl-C from its first line on, also while torch loads.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_PROFILER = ("Counts", "count_module", "count_spec")
"""The names of :data:`__all__` that come from ``profiler``; the others come from ``space``."""


def __getattr__(name: str) -> Any:
    """The public name ``name``, imported from ``profiler`` or ``space`` on first use."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module("profiler" if name in _PROFILER else "space"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names with the public API, imported or not."""
    return sorted({*globals(), *__all__})
