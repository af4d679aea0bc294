"""Load the paper's published checkpoints (and e3d's own) into e3d's presets.

The paper's code (Efficient-3DCNNs) saved ``{"state_dict": ..., ...}`` with its own module names
(``features.0.banch1.0.weight``), often with DataParallel's ``module.`` prefix. :func:`paper_names`
maps each e3d module of a spec to the paper's name for it, family by family (a pure function of the
spec); :func:`convert_state_dict` renames a whole state dict and accounts for every key: a key with
no place in the model, a missing one or a shape that does not fit is a :class:`CheckpointError`
naming it. (A missing ``num_batches_tracked`` is the one exception: PyTorch before 0.4.1 did not
save it and it does not change the function; it is set to 0.)

Files are read with ``torch.load(weights_only=True)``: tensors and plain containers only. A pickle
that needs more (arbitrary classes, code) is refused with an explanation.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from space.spec import E3DError, NetSpec

if TYPE_CHECKING:
    from torch import Tensor, nn

FORMAT = "e3d.checkpoint/1"
"""Value of the ``format`` key of a checkpoint written by :func:`save_converted`."""

FAMILIES = ("shufflenet", "shufflenetv2", "mobilenet", "mobilenetv2", "squeezenet")
"""Families whose paper checkpoints can be converted (the 17 efficient models of Table 8)."""


class CheckpointError(E3DError):
    """A checkpoint that cannot be loaded into the requested model."""


# -- e3d module name -> the paper's ----------------------------------------------------------

_UNIT = {
    "shufflenet": {"pw1": "conv1", "pw1_bn": "bn1", "dw": "conv2", "dw_bn": "bn2", "pw2": "conv3", "pw2_bn": "bn3"},
    "shufflenetv2": {
        "b1_dw": "banch1.0", "b1_dw_bn": "banch1.1", "b1_pw": "banch1.2", "b1_pw_bn": "banch1.3",
        "pw1": "banch2.0", "pw1_bn": "banch2.1", "dw": "banch2.3", "dw_bn": "banch2.4", "pw2": "banch2.5", "pw2_bn": "banch2.6",
    },
    "mobilenet": {"dw": "conv1", "dw_bn": "bn1", "pw": "conv2", "pw_bn": "bn2"},
    "mobilenetv2": {
        "expand": "conv.0", "expand_bn": "conv.1", "dw": "conv.3", "dw_bn": "conv.4", "project": "conv.6", "project_bn": "conv.7",
    },
    "mobilenetv2/t1": {"dw": "conv.0", "dw_bn": "conv.1", "project": "conv.3", "project_bn": "conv.4"},
    "squeezenet": {n: n for n in ("squeeze", "squeeze_bn", "expand1x1", "expand1x1_bn", "expand3x3", "expand3x3_bn")},
}  # fmt: skip
"""Per family: a unit's module name in e3d -> its name inside the paper's unit."""

_STEM = {
    "shufflenet": ("conv1.0", "conv1.1"),
    "shufflenetv2": ("conv1.0", "conv1.1"),
    "mobilenet": ("features.0.0", "features.0.1"),
    "mobilenetv2": ("features.0.0", "features.0.1"),
    "squeezenet": ("features.0", "features.1"),
}
"""Per family: the paper's names of the stem conv and its BatchNorm."""


def _unit_prefixes(spec: NetSpec) -> dict[str, str]:
    """e3d unit path (``stages.1.0``) -> the paper's module path of that unit."""
    units = [f"stages.{i}.{j}" for i, s in enumerate(spec.stages) for j in range(s.repeats)]
    fam = spec.family
    if fam == "shufflenet":
        return {u: f"layer{int(u.split('.')[1]) + 1}.{u.split('.')[2]}" for u in units}
    if fam == "shufflenetv2":
        return {u: f"features.{k}" for k, u in enumerate(units)}
    if fam in ("mobilenet", "mobilenetv2"):
        return {u: f"features.{k + 1}" for k, u in enumerate(units)}
    # squeezenet: features = conv, bn, relu, maxpool, then Fire modules with a MaxPool before
    # each downsampling one
    pooled = {layer.name.rsplit(".", 1)[0] for layer in spec.layers if layer.name.endswith(".pool") and layer.name.startswith("stages.")}
    out, index = {}, 4
    for u in units:
        index += u in pooled
        out[u] = f"features.{index}"
        index += 1
    return out


def paper_names(spec: NetSpec) -> dict[str, str]:
    """Every conv, BatchNorm and linear module of ``spec``'s model: e3d name -> the paper code's name.

    Raises :class:`CheckpointError` for families the paper published no efficient checkpoint of.
    """
    fam = spec.family
    if fam not in FAMILIES:
        raise CheckpointError(f"no paper checkpoint mapping for family {fam!r}; convertible: {', '.join(FAMILIES)}")
    units = _unit_prefixes(spec)
    n_units = len(units)
    head = {"head.fc": "classifier.1", "head.conv": "conv_last.0", "head.conv_bn": "conv_last.1"}
    if fam == "mobilenetv2":
        head |= {"head.conv": f"features.{n_units + 1}.0", "head.conv_bn": f"features.{n_units + 1}.1"}
    stem_conv, stem_bn = _STEM[fam]
    names: dict[str, str] = {}
    expands = {layer.name.rsplit(".", 1)[0] for layer in spec.layers if layer.name.endswith(".expand")}
    for layer in spec.layers:
        if layer.kind not in ("conv", "bn", "linear"):
            continue
        name = layer.name
        if name in ("stem.conv", "stem.conv_bn"):
            names[name] = stem_conv if name == "stem.conv" else stem_bn
        elif name.startswith("head."):
            if name not in head:
                raise CheckpointError(f"{fam}: no paper name for {name}")
            names[name] = head[name]
        else:
            unit, local = name.rsplit(".", 1)
            table = _UNIT["mobilenetv2/t1" if fam == "mobilenetv2" and unit not in expands else fam]
            if local not in table:
                raise CheckpointError(f"{fam}: no paper name for {name}")
            names[name] = f"{units[unit]}.{table[local]}"
    return names


# -- reading files ---------------------------------------------------------------------------


STATE_DICT_FILE = "a file of torch.save(model.state_dict())"
"""What :func:`read_checkpoint`'s callers accept unless they say otherwise."""


def read_checkpoint(path: str | Path, *, accepts: str = STATE_DICT_FILE) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with one-line errors; ``accepts`` says what to give
    instead of a TorchScript file."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"no such checkpoint file: {p}")
    if _is_torchscript(p):
        raise CheckpointError(f"{p} is a TorchScript model, not a checkpoint: give {accepts}")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # a file that is no checkpoint makes the unpickler raise anything (KeyError, IndexError ...)
        raise CheckpointError(load_error_message(p, e)) from None


def _is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (what ``torch.jit.save`` writes: a zip with ``constants.pkl``)."""
    try:
        with zipfile.ZipFile(path) as z:
            return any(name.count("/") == 1 and name.endswith("/constants.pkl") for name in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def load_error_message(path: str | Path, e: BaseException) -> str:
    """One line for a failed ``torch.load(path, weights_only=True)``.

    A file that needs more than tensors and plain containers is *refused*, with why. torch's own advice
    (re-run with ``weights_only=False``) is never repeated: that runs whatever code the file holds.
    """
    found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
    if found is not None:
        return (
            f"{path}: refused: it needs more than tensors and plain containers to unpickle ({found.group(1)}), and "
            "unpickling that could run arbitrary code, so e3d loads with torch.load(weights_only=True) only. "
            "If you trust the file, re-save just its state_dict with torch.save and load that."
        )
    if isinstance(e, pickle.UnpicklingError) or "Weights only load failed" in str(e):
        return f"{path}: not a readable PyTorch checkpoint (unpickling failed: {_reason(e)})"
    if isinstance(e, OSError) and not str(e).strip():
        return f"{path}: cannot be read ({type(e).__name__})"
    if not isinstance(e, _DESCRIBED):  # what the unpickler raises on bytes that are no pickle: KeyError: 101
        return f"{path}: not a readable PyTorch checkpoint (unpickling failed: {type(e).__name__}: {_reason(e)})"
    return f"{path}: not a readable PyTorch checkpoint ({_reason(e)})"


_DESCRIBED = (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError, AttributeError, TypeError)
"""What torch.load raises with a message that says what is wrong by itself."""


def _reason(e: BaseException) -> str:
    """The informative line of a torch.load error, without torch's advice to load unsafely."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if "WeightsUnpickler error" in ln:
            rest = ln.split("WeightsUnpickler error:", 1)[1].strip()
            return rest or (lines[i + 1] if i + 1 < len(lines) else ln)
    safe = [ln for ln in lines if "weights_only" not in ln and "Weights only load failed" not in ln and not ln.startswith("(")]
    return safe[0] if safe else type(e).__name__


def state_dict_of(obj: Any, *, source: str = "checkpoint") -> dict[str, Tensor]:
    """The state dict inside a loaded checkpoint: ``obj["state_dict"]`` or ``obj`` itself.

    DataParallel's ``module.`` prefix is removed. Raises :class:`CheckpointError` when there is no
    mapping of names to tensors.
    """
    import torch

    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
        if isinstance(obj, Mapping) and not obj:
            raise CheckpointError(f"{source}: its 'state_dict' entry is empty: there are no weights in it")
    elif isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        if not isinstance(obj.get("model"), Mapping):
            raise CheckpointError(f"{source}: an e3d checkpoint without weights (no state dict under 'state_dict' or 'model')")
        obj = obj["model"]  # a checkpoint of e3d train (search.train.fit): weights under "model"
    if isinstance(obj, Mapping) and not obj:
        raise CheckpointError(f"{source}: its state dict is empty: there are no weights in it")
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: expected a state_dict (names -> tensors) or a dict with a 'state_dict' entry")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{source}: entry {bad[0]!r} is not a named tensor; expected a state_dict")
    return {k.removeprefix("module."): v for k, v in obj.items()}


# -- converting ------------------------------------------------------------------------------


def _listing(keys: list[str], limit: int = 5) -> str:
    more = f" (and {len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def key_mismatch(own: Mapping[str, Any], stored: Mapping[str, Any]) -> str | None:
    """``missing keys a, b; unexpected key c`` (the first few of each) when ``stored`` names other tensors than
    ``own``; None when it names the same."""
    missing = [k for k in own if k not in stored]
    unexpected = [k for k in stored if k not in own]
    found = [(what, keys) for what, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
    return "; ".join(f"{what} key{'s' * (len(keys) > 1)} {_listing(keys)}" for what, keys in found) or None


def _check_shapes(
    state: Mapping[str, Tensor], target: Mapping[str, Tensor], source_name: Mapping[str, str], what: str, classes_option: str
) -> None:
    """:class:`CheckpointError` at the first tensor of ``state`` whose shape is not ``target``'s; for the classifier,
    the two class counts and the option (``classes_option``) that sets the model's."""
    for key, ref in target.items():
        got = state[key]
        if got.shape != ref.shape:
            hint = ""
            if key in ("head.fc.weight", "head.fc.bias") and got.dim() > 0:
                hint = f"; the checkpoint has {got.shape[0]} classes, the model {ref.shape[0]} (set {classes_option})"
            raise CheckpointError(
                f"{what}: {source_name[key]} has shape {tuple(got.shape)} but the model's {key} needs {tuple(ref.shape)}{hint}"
            )


def convert_state_dict(
    state: Mapping[str, Tensor], spec: NetSpec, *, source: str = "checkpoint", classes_option: str = "num_classes"
) -> dict[str, Tensor]:
    """Rename a paper-named state dict to e3d's names for ``spec``, accounting for every key.

    Raises :class:`CheckpointError` naming the first keys that have no place in the model
    (unexpected), that the model needs but the checkpoint lacks (missing), or whose shape differs (for the
    classifier, naming ``classes_option``: what sets the model's class count where it is called).
    """
    import torch

    names = paper_names(spec)
    expected = model_state_shapes(spec)
    source_of: dict[str, str] = {}
    for key in expected:
        module, _, leaf = key.rpartition(".")
        if module not in names:
            raise CheckpointError(f"{spec.family}: no paper name for {key}")
        source_of[key] = f"{names[module]}.{leaf}"
    state = {k.removeprefix("module."): v for k, v in state.items()}
    wanted = set(source_of.values())
    unexpected = [k for k in state if k not in wanted]
    if unexpected:
        raise CheckpointError(f"{source}: unexpected key{'s' * (len(unexpected) > 1)} for {spec.summary()}: {_listing(unexpected)}")
    out: dict[str, Tensor] = {}
    missing = []
    for key, src in source_of.items():
        if src in state:
            out[key] = state[src]
        elif key.endswith(".num_batches_tracked"):
            out[key] = torch.tensor(0, dtype=torch.long)
        else:
            missing.append(src)
    if missing:
        raise CheckpointError(f"{source}: missing key{'s' * (len(missing) > 1)} for {spec.summary()}: {_listing(missing)}")
    _check_shapes(out, expected, source_of, source, classes_option)
    return out


def model_state_shapes(spec: NetSpec) -> dict[str, Tensor]:
    """The state dict of ``spec``'s model on the meta device (names, shapes and dtypes; no data)."""
    import torch

    from space.modules import build

    with torch.device("meta"):
        return build(spec).state_dict()


def is_e3d_state(state: Mapping[str, Any]) -> bool:
    """True when the keys are e3d module names (``stem.``, ``stages.``, ``sgs.``, ``head.``)."""
    return all(re.match(r"(stem|stages|sgs|head)\.", k) for k in state)


def checkpoint_state(obj: Any, spec: NetSpec, *, source: str = "checkpoint", classes_option: str = "num_classes") -> dict[str, Tensor]:
    """The e3d-named state dict for ``spec`` from a loaded checkpoint in any accepted format.

    Accepted: e3d's converted files (:func:`save_converted`), a state dict with e3d's names, or
    the paper's checkpoints (converted by :func:`convert_state_dict`). Every key is checked; a classifier of
    another class count is an error naming ``classes_option``, what sets the model's count where it is called.
    """
    if isinstance(obj, Mapping) and obj.get("format") not in (None, FORMAT):
        raise CheckpointError(f"{source}: unknown checkpoint format {obj.get('format')!r}; expected {FORMAT!r}")
    state = state_dict_of(obj, source=source)
    if not is_e3d_state(state):
        return convert_state_dict(state, spec, source=source, classes_option=classes_option)
    expected = model_state_shapes(spec)
    unexpected = [k for k in state if k not in expected]
    missing = [k for k in expected if k not in state]
    if unexpected:
        raise CheckpointError(f"{source}: unexpected key{'s' * (len(unexpected) > 1)} for {spec.summary()}: {_listing(unexpected)}")
    if missing:
        raise CheckpointError(f"{source}: missing key{'s' * (len(missing) > 1)} for {spec.summary()}: {_listing(missing)}")
    _check_shapes(state, expected, {k: k for k in expected}, source, classes_option)
    return dict(state)


def load_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load the checkpoint at ``path`` into an e3d model (``model.spec`` says which); returns it."""
    spec = getattr(model, "spec", None)
    if not isinstance(spec, NetSpec):
        raise CheckpointError("checkpoints load into e3d models built from a NetSpec (space.build / space.create_model)")
    state = checkpoint_state(read_checkpoint(path), spec, source=str(path))
    model.load_state_dict(state, strict=True)
    return model


def checkpoint_classes(obj: Any) -> int | None:
    """The number of classes of a loaded checkpoint's classifier, when it can be read off it."""
    try:
        state = state_dict_of(obj)
    except CheckpointError:
        return None
    for key in ("classifier.1.weight", "classifier.1.bias", "head.fc.weight", "head.fc.bias"):
        if key in state and state[key].dim() > 0:  # a 0-d tensor has no classes to read (its shape is refused later)
            return int(state[key].shape[0])
    return None


def save_converted(path: str | Path, state: Mapping[str, Tensor], spec: NetSpec, *, model: str, source: str) -> None:
    """Write an e3d checkpoint: format marker, preset name, spec and the e3d-named state dict.

    Serialised in memory first, then written atomically (:func:`space.files.write_bytes`): a full
    disk is one :class:`space.files.WriteError` and never a truncated file under ``path``.
    """
    import io

    import torch

    from space.files import write_bytes

    payload = {
        "format": FORMAT,
        "model": model,
        "width_mult": spec.width_mult,
        "spec": spec.to_dict(),
        "source": source,
        "state_dict": dict(state),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes(path, buffer.getvalue())
