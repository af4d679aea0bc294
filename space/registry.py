"""The one model registry: preset names (as the paper's code names them) -> spec factories."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from space.spec import E3DError, NetSpec, SpecError

if TYPE_CHECKING:
    from torch import nn

Factory = Callable[..., NetSpec]
F = TypeVar("F", bound=Factory)


@dataclass(frozen=True)
class ModelInfo:
    """A registered preset: its factory, the widths the paper used and a one-line description."""

    name: str
    factory: Factory
    paper_widths: tuple[float, ...]
    description: str


class UnknownModelError(E3DError, LookupError):
    """A preset name that is not registered; the message lists the registered ones."""


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(name: str, *, paper_widths: tuple[float, ...] = (1.0,)) -> Callable[[F], F]:
    """Register a keyword-only spec factory under ``name`` (decorator)."""

    def deco(factory: F) -> F:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        doc = (factory.__doc__ or name).strip().splitlines()[0]
        _REGISTRY[name] = ModelInfo(name, factory, paper_widths, doc)
        return factory

    return deco


def list_models() -> list[str]:
    """Registered preset names, sorted."""
    return sorted(_REGISTRY)


def model_info(name: str) -> ModelInfo:
    """The registry entry of ``name``; :class:`UnknownModelError` lists the valid names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; choose from {', '.join(list_models())}") from None


def paper_spec(name: str, *, width_mult: float = 1.0, num_classes: int = 600, sample_size: int = 112, sample_duration: int = 16) -> NetSpec:
    """The spec of preset ``name`` at ``width_mult`` for clips of ``sample_duration`` x ``sample_size``^2."""
    info = model_info(name)
    if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or not 0 < width_mult < float("inf"):
        raise SpecError("width_mult", f"must be a positive number, got {width_mult!r}")
    return info.factory(width_mult=width_mult, num_classes=num_classes, clip=(sample_duration, sample_size, sample_size))


def create_model(
    name: str,
    *,
    width_mult: float = 1.0,
    num_classes: int = 600,
    sample_size: int = 112,
    sample_duration: int = 16,
    checkpoint: str | Path | None = None,
) -> nn.Module:
    """Build preset ``name`` (see :func:`paper_spec`) as a freshly initialised ``nn.Module``.

    ``checkpoint``: load weights from a file, either one of the paper's published checkpoints or
    an e3d one (see :mod:`space.checkpoints`); every key must fit the model.
    """
    from space.modules import build

    spec = paper_spec(name, width_mult=width_mult, num_classes=num_classes, sample_size=sample_size, sample_duration=sample_duration)
    model = build(spec)
    if checkpoint is not None:
        from space.checkpoints import load_checkpoint

        load_checkpoint(model, checkpoint)
    return model
