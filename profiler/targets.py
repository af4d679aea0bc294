"""What ``e3d profile TARGET`` (and export) accept: a preset name, a spec JSON file, an import path
``package.module:callable`` returning an ``nn.Module``, or a TorchScript file."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

import space
from space.ops import Shape
from space.spec import E3DError, NetSpec


class TargetError(E3DError):
    """A target that cannot be resolved to a model."""


@dataclass
class Target:
    """A resolved target. ``spec`` is set for presets and spec files (counted analytically)."""

    name: str
    kind: str
    input_shape: Shape
    spec: NetSpec | None = None
    _module: nn.Module | None = field(default=None, repr=False)

    def module(self) -> nn.Module:
        """The model (built on first use for spec targets)."""
        if self._module is None:
            assert self.spec is not None
            self._module = space.build(self.spec)
        return self._module


def resolve_target(
    target: str,
    *,
    width_mult: float | None = None,
    num_classes: int | None = None,
    frames: int | None = None,
    size: int | None = None,
) -> Target:
    """Resolve ``target``; ``frames``/``size`` override the clip, ``num_classes`` the head.

    Presets default to 600 classes and 16x112x112 (the paper's Kinetics-600 setting); spec files keep
    their own clip and classes unless overridden; modules get 16x112x112 unless overridden.
    """
    path = Path(target)
    if width_mult is not None and target not in space.list_models():
        raise TargetError("--width-mult applies to preset names only")
    if target in space.list_models():
        spec = space.paper_spec(
            target,
            width_mult=1.0 if width_mult is None else width_mult,
            num_classes=num_classes or 600,
            sample_size=size or 112,
            sample_duration=frames or 16,
        )
        return Target(target, "preset", spec.input_shape, spec)
    if path.is_file():
        return _file_target(path, num_classes=num_classes, frames=frames, size=size)
    if ":" in target and not path.exists():
        return _import_target(target, frames=frames, size=size)
    if path.suffix or "/" in target:
        raise TargetError(f"no such file: {target}")
    raise TargetError(
        f"unknown target {target!r}: not a preset ({', '.join(space.list_models())}), "
        "a spec JSON file, a TorchScript file or an import path package.module:callable"
    )


def _clip(spec_clip: tuple[int, int, int], frames: int | None, size: int | None) -> tuple[int, int, int]:
    t, h, w = spec_clip
    return (frames or t, size or h, size or w)


def _file_target(path: Path, *, num_classes: int | None, frames: int | None, size: int | None) -> Target:
    try:
        head = path.open("rb").read(64).lstrip()
    except OSError as e:
        raise TargetError(f"cannot read {path}: {e}") from None
    if head.startswith(b"{"):
        spec = NetSpec.load(path)
        changes: dict[str, object] = {"clip": _clip(spec.clip, frames, size)}
        if num_classes:
            changes["num_classes"] = num_classes
        spec = spec.replace(**changes)
        return Target(str(path), "spec", spec.input_shape, spec)
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:  # torch raises RuntimeError, ValueError or pickle errors here
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TargetError(f"{path} is neither an e3d spec (JSON) nor a TorchScript file ({first})") from None
    return Target(str(path), "torchscript", (3, *_clip((16, 112, 112), frames, size)), _module=module)


def _import_target(target: str, *, frames: int | None, size: int | None) -> Target:
    module_name, _, attr = target.partition(":")
    try:
        obj: object = importlib.import_module(module_name)
    except ImportError as e:
        raise TargetError(f"cannot import {module_name!r} from {target!r}: {e}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise TargetError(f"{module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise TargetError(f"{target} is not callable")
    model = obj()
    if not isinstance(model, nn.Module):
        raise TargetError(f"{target}() returned a {type(model).__name__}, not an nn.Module")
    return Target(target, "import", (3, *_clip((16, 112, 112), frames, size)), _module=model)
