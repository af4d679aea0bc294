"""What ``e3d profile TARGET`` (and export) accept: a preset name, a spec JSON file, an import path
``package.module:callable`` (importable from the working directory too) or ``path/to/file.py:callable``
returning an ``nn.Module`` (keyword arguments from ``kwargs``), or a TorchScript file.

Whatever the user's code raises while importing or building (:data:`USER_ERRORS`: ``sys.exit()`` too)
becomes a one-line :class:`TargetError` naming the target and the exception; the exception itself is kept
as its ``__cause__`` (``--debug``). :func:`guard` does the same for what the model raises when it runs.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import os
import reprlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from torch import nn

import space
from space.ops import Shape
from space.spec import E3DError, JSONError, NetSpec, parse_json


class TargetError(E3DError):
    """A target that cannot be resolved to a model."""


USER_ERRORS = (Exception, SystemExit)
"""What the user's code may raise that becomes a one-line error: anything but KeyboardInterrupt (Ctrl-C
stays an interruption). SystemExit: a module that calls ``sys.exit()`` or parses the command line when imported."""

T = TypeVar("T")


@dataclass
class Target:
    """A resolved target. ``spec`` is set for presets, spec files and checkpoints (counted analytically)."""

    name: str
    kind: str
    input_shape: Shape
    spec: NetSpec | None = None
    _module: nn.Module | None = field(default=None, repr=False)
    weights: Path | None = None
    """The e3d checkpoint the target was read from: the model gets its weights."""

    def module(self) -> nn.Module:
        """The model (built on first use for spec targets, with the checkpoint's weights where it came from one)."""
        if self._module is None:
            assert self.spec is not None
            from profiler.footprint import check_memory
            from space.checkpoints import checkpoint_state, read_checkpoint

            check_memory(self.spec)  # an oversized spec is one line here, not an allocator traceback
            model = space.build(self.spec)
            if self.weights is not None:  # every key and shape checked against the spec (another --num-classes is refused)
                model.load_state_dict(checkpoint_state(read_checkpoint(self.weights), self.spec, source=str(self.weights)), strict=True)
            self._module = model
        return self._module


def resolve_target(
    target: str,
    *,
    width_mult: float | None = None,
    num_classes: int | None = None,
    frames: int | None = None,
    size: int | None = None,
    kwargs: dict[str, Any] | None = None,
) -> Target:
    """Resolve ``target``; ``frames``/``size`` override the clip, ``num_classes`` the head.

    Presets default to 600 classes and 16x112x112 (the paper's Kinetics-600 setting); spec files keep
    their own clip and classes unless overridden; modules get 16x112x112 unless overridden.
    ``kwargs`` are keyword arguments of an import path's callable.
    """
    path = Path(target)
    if width_mult is not None and target not in space.list_models():
        raise TargetError("--width-mult applies to preset names only")
    if kwargs and not _is_import_path(target):
        raise TargetError("--kwargs applies to import paths (module:callable or file.py:callable) only")
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
    if _is_import_path(target) and not path.exists():
        _no_num_classes(num_classes)
        return _import_target(target, frames=frames, size=size, kwargs=kwargs or {})
    if path.suffix or "/" in target:
        raise TargetError(f"no such file: {target}")
    raise TargetError(
        f"unknown target {target!r}: not a preset ({', '.join(space.list_models())}), "
        "a spec JSON file, a TorchScript file or an import path package.module:callable (or path/to/file.py:callable)"
    )


def _is_import_path(target: str) -> bool:
    left, colon, attr = target.rpartition(":")
    return bool(colon and left and attr)


def describe_error(e: BaseException, *, whole: int | None = None) -> str:
    """``Type: first line of the message`` (just the type when the message is empty); a SystemExit says where it comes from.
    ``whole``: all of the message's lines joined into one instead, cut to about that many characters."""
    text = str(e).strip()
    if whole is not None:
        joined = f"{type(e).__name__}: {' '.join(text.split())}".rstrip(": ")
        return joined if len(joined) <= whole else joined[: whole - 3] + "..."
    described = f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__
    if isinstance(e, SystemExit):
        described += " (the code called sys.exit() or parsed the command line; keep that under if __name__ == '__main__')"
    return described


def parse_kwargs(text: str | None) -> dict[str, Any]:
    """``--kwargs``: a JSON object of keyword arguments (``{}`` for None; one line naming the problem otherwise)."""
    if text is None:
        return {}
    try:
        value = parse_json(text)
    except JSONError as e:
        raise TargetError(f"--kwargs is {e}: {reprlib.repr(text)}") from None
    if not isinstance(value, dict):
        raise TargetError(f"--kwargs must be a JSON object of keyword arguments, got {text!r}")
    return value


def guard(fn: Callable[[], T], target: Target, *, batch_option: str = "--batch-size") -> T:
    """Run ``fn``, which runs the target's model; whatever the model raises on the clip becomes a one-line
    :class:`TargetError` naming the target and the exception (kept as its ``__cause__`` for ``--debug``).

    ``batch_option``: the command's option for the batch size, named when the model runs out of memory.
    """
    try:
        return fn()
    except E3DError:
        raise
    except USER_ERRORS as e:  # the user's model may raise anything: AssertionError, ValueError, MemoryError, SystemExit ...
        shape = "x".join(map(str, target.input_shape))
        raise TargetError(f"{target.name} failed on a {shape} clip: {describe_error(e)}{_run_hint(target, e, batch_option)}") from e


def _run_hint(target: Target, e: BaseException, batch_option: str) -> str:
    """What to try when the model failed on the clip: another shape (traced TorchScript) or less memory."""
    if target.kind == "torchscript":
        return " (a traced TorchScript model runs only on the input shape it was traced with: set it with --frames and --size)"
    if isinstance(e, MemoryError) or "can't allocate memory" in str(e) or "out of memory" in str(e).lower():
        return f" (the model needs more memory than this machine has: try a smaller {batch_option}, --frames or --size)"
    return ""


def _no_num_classes(num_classes: int | None) -> None:
    """``--num-classes`` sets the head of an e3d network; a module or TorchScript file has its own, which it cannot change."""
    if num_classes is not None:
        raise TargetError("--num-classes applies to preset names and spec files only (a module or TorchScript file has its own head)")


def _clip(spec_clip: tuple[int, int, int], frames: int | None, size: int | None) -> tuple[int, int, int]:
    t, h, w = spec_clip
    return (frames or t, size or h, size or w)


def _file_target(path: Path, *, num_classes: int | None, frames: int | None, size: int | None) -> Target:
    try:
        head = path.open("rb").read(64).lstrip().removeprefix(b"\xef\xbb\xbf").lstrip()  # a UTF-8 byte-order mark too
    except OSError as e:
        raise TargetError(f"cannot read {path}: {e}") from None
    if path.suffix.lower() == ".onnx" or (head.startswith(b"\x08") and b"onnx" in head.lower()):
        raise TargetError(
            f"{path} is an ONNX file: e3d profile reads e3d specs, TorchScript files and Python modules; "
            "profile the spec, preset or module it was exported from (or export it with --format torchscript)"
        )
    if head.startswith(b"{"):
        return _spec_target(path, NetSpec.load(path), num_classes=num_classes, frames=frames, size=size)
    from profiler.export import jit_load

    try:
        module = jit_load(path)
    except Exception as e:  # torch raises RuntimeError, ValueError or pickle errors here
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        spec = _checkpoint_spec(path)
        if spec is None:
            raise TargetError(f"{path} is neither an e3d spec (JSON), an e3d checkpoint nor a TorchScript file ({first})") from None
        target = _spec_target(path, spec, num_classes=num_classes, frames=frames, size=size)
        return dataclasses.replace(target, weights=path)
    _no_num_classes(num_classes)
    return Target(str(path), "torchscript", (3, *_clip((16, 112, 112), frames, size)), _module=module)


def _spec_target(path: Path, spec: NetSpec, *, num_classes: int | None, frames: int | None, size: int | None) -> Target:
    """The target of ``spec`` (read from ``path``) at the asked clip and classes, refused when it cannot fit in memory."""
    changes: dict[str, object] = {"clip": _clip(spec.clip, frames, size)}
    if num_classes:
        changes["num_classes"] = num_classes
    spec = spec.replace(**changes)
    from profiler.footprint import check_memory

    check_memory(spec)  # refused before any per-layer work or allocation
    return Target(str(path), "spec", spec.input_shape, spec)


def _checkpoint_spec(path: Path) -> NetSpec | None:
    """The spec stored in an e3d checkpoint (of e3d train or e3d convert-checkpoint) at ``path``; None for any other
    file. A checkpoint whose spec is not valid is a :class:`space.spec.SpecError`."""
    from space.checkpoints import FORMAT, CheckpointError, read_checkpoint

    try:
        state = read_checkpoint(path)
    except CheckpointError:
        return None
    if not isinstance(state, dict) or state.get("format") != FORMAT or not isinstance(state.get("spec"), dict):
        return None
    return NetSpec.from_dict(state["spec"])


def _import_target(target: str, *, frames: int | None, size: int | None, kwargs: dict[str, Any]) -> Target:
    """``module:callable`` (from the working directory too) or ``path/to/file.py:callable``, called with ``kwargs``."""
    source, _, attr = target.rpartition(":")
    obj: object = _import_file(source) if source.endswith(".py") or "/" in source else _import_module(source)
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise TargetError(f"{source!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise TargetError(f"{target} is not callable")
    _check_call(target, obj, kwargs)
    try:
        model = obj(**kwargs)
    except E3DError:
        raise
    except USER_ERRORS as e:
        raise TargetError(f"building {target} failed: {describe_error(e)}") from e
    if not isinstance(model, nn.Module):
        raise TargetError(f"{target}() returned a {type(model).__name__}, not an nn.Module")
    return Target(target, "import", (3, *_clip((16, 112, 112), frames, size)), _module=model)


def _import_module(name: str) -> object:
    """Import ``name`` the way ``python -m`` would: the working directory first on the path."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise TargetError(f"cannot import {name!r} (from {cwd} or the installed packages): {e}") from e
    except USER_ERRORS as e:
        raise TargetError(f"importing {name!r} failed: {describe_error(e)}") from e


def _import_file(source: str) -> object:
    """Run a Python file as a module (its folder on the import path, so that it can import its neighbours)."""
    path = Path(source)
    if not path.is_file():
        raise TargetError(f"no such file: {source}")
    if path.suffix != ".py":
        raise TargetError(f"{source} is not a Python file (.py)")
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = f"_e3d_user_{path.stem}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TargetError(f"cannot load {source} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except USER_ERRORS as e:
        del sys.modules[name]
        raise TargetError(f"importing {source} failed: {describe_error(e)}") from e
    return module


def _check_call(target: str, fn: Any, kwargs: dict[str, Any]) -> None:
    """One line when ``fn`` cannot be called with ``kwargs`` alone (a missing or unknown argument)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # a builtin without a signature: the call itself will tell
    try:
        signature.bind(**kwargs)
    except TypeError as e:
        raise TargetError(
            f"{target} cannot be called with {'these keyword arguments' if kwargs else 'no arguments'}: {e} "
            """(give them with --kwargs '{"name": value}')"""
        ) from None
