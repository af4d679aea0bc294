"""Export a model as TorchScript or ONNX, and check the file against the eager model.

Every export reloads the written file, runs it on a batch of example clips and compares the output
with the eager model's (:func:`profiler.optimize.relative_error`): TorchScript with ``torch.jit.load``,
ONNX with onnxruntime on the CPU. Float exports above the tolerance raise
:class:`profiler.optimize.NumericalMismatchError`; int8 exports report their error (the accuracy
change on a labelled proxy set is the caller's to measure).

ONNX goes through ``torch.onnx.export(dynamo=True)`` (torch.export + onnxscript), PyTorch's
maintained exporter; the TorchScript-based one is deprecated. Both need no network.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from profiler.optimize import (
    BF16_TOLERANCE,
    FLOAT_TOLERANCE,
    OptimizedModel,
    OptimizeOptions,
    check_close,
    eager_reference,
    example_input,
    fold_batchnorm,
    optimize_for_inference,
    relative_error,
)
from profiler.quantize import quantized_engine
from space.files import replacing, replacing_files
from space.spec import E3DError

FORMATS = ("torchscript", "onnx")
ONNX_OPSET = 18


class ExportError(E3DError):
    """An export that cannot be done as asked."""


@dataclass(frozen=True)
class ExportResult:
    """What was written and how well the reloaded file matches the eager model."""

    path: Path
    format: str
    optimized: bool
    int8: bool
    rel_error: float
    check: str
    """How ``rel_error`` was measured, in words."""
    pipeline: str

    def summary(self) -> str:
        """One line for the CLI."""
        kind = "int8" if self.int8 else ("optimized" if self.optimized else "plain")
        return f"wrote {self.path} ({self.format}, {kind}: {self.pipeline}); {self.check}: max relative error {self.rel_error:.2e}"


def _eager_output(model: nn.Module, x: Tensor) -> Tensor:
    was_training = model.training
    with torch.no_grad():
        y = model.eval()(x)
    model.train(was_training)
    return y


def export_torchscript(
    model: nn.Module,
    path: str | Path,
    *,
    input_shape: Sequence[int] | None = None,
    batch_size: int = 2,
    optimize: bool = True,
    tolerance: float | None = None,
    bf16: bool = False,
) -> ExportResult:
    """Save ``model`` as TorchScript and check the reloaded file against eager.

    ``optimize``: the graph of :func:`profiler.optimize.optimize_for_inference` (BatchNorm folded,
    channels-last-3d, frozen); run it with ``torch.jit.enable_onednn_fusion(True)`` for the oneDNN
    Graph fusion (:func:`load_torchscript` does). Otherwise a plain trace of the eval-mode model.
    ``bf16`` (with ``optimize``): bf16 weights and activations, checked against the eager model under
    bf16 autocast within ``tolerance`` (default :data:`profiler.optimize.BF16_TOLERANCE`).
    """
    p = Path(path)
    if bf16 and not optimize:
        raise ExportError("a bf16 export is an optimized one: pass optimize (--optimize)")
    tolerance = tolerance if tolerance is not None else BF16_TOLERANCE if bf16 else FLOAT_TOLERANCE
    x = example_input(model, input_shape, batch_size)
    options = (
        OptimizeOptions(bf16=bf16)
        if optimize
        else OptimizeOptions(fold_bn=False, channels_last=False, freeze=False, fuse=False, pools_as_convs=False)
    )
    if optimize:
        graph = optimize_for_inference(model, input_shape=x.shape[1:], batch_size=batch_size, options=options, tolerance=tolerance).graph
    else:
        m = model.eval()
        with torch.no_grad():
            graph = torch.jit.trace(m, x, check_trace=False)
    check = f"reloaded TorchScript vs eager{' bf16 autocast' if bf16 else ''} on {_batch_text(x)}"
    with replacing(p) as tmp:  # checked under a temporary name; renamed into place only when it passes
        _save(graph, tmp)
        loaded = load_torchscript(tmp, fuse=options.fuse)
        with torch.no_grad():
            loaded(x)
            err = check_close(loaded(x), eager_reference(model, x, bf16=bf16), tolerance=tolerance, what=f"the exported {p.name}")
    return ExportResult(p, "torchscript", optimize, False, err, check, options.describe())


def export_int8_torchscript(quantized: OptimizedModel, eager: nn.Module, path: str | Path, *, x: Tensor) -> ExportResult:
    """Save an int8 model from :func:`profiler.quantize.quantize_int8`; report its error vs eager on ``x``."""
    p = Path(path)
    engine = quantized.options.int8_engine
    if engine is None:
        raise ExportError("export_int8_torchscript needs a model from profiler.quantize.quantize_int8")
    with replacing(p) as tmp:
        _save(quantized.graph, tmp, extra={INT8_ENGINE_FILE: engine})
        loaded = load_torchscript(tmp, fuse=False)
        with torch.no_grad():
            err = relative_error(loaded(x), _eager_output(eager, x))
    check = f"reloaded int8 TorchScript vs float eager on {_batch_text(x)}"
    return ExportResult(p, "torchscript", True, True, err, check, quantized.options.describe())


INT8_ENGINE_FILE = "e3d-int8-engine"
"""The extra file of an exported int8 TorchScript archive that names the quantized engine of its weights."""


def load_torchscript(path: str | Path, *, fuse: bool = True) -> OptimizedModel:
    """Load an exported TorchScript file on the CPU; ``fuse`` runs a float one with the oneDNN Graph fuser. An
    int8 file is loaded under the quantized engine it was exported with (its weights are repacked as it loads)
    and runs unfused: the fuser failed on its second call ("could not add op to the graph")."""
    engine = _int8_engine(Path(path))
    fuse = fuse and engine is None
    try:
        graph = _jit_load(path, engine)
    except Exception as e:  # torch raises RuntimeError or ValueError for files that are not TorchScript
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"{path}: not a TorchScript file ({first})") from None
    return OptimizedModel(graph, options=OptimizeOptions(fuse=fuse, int8_engine=engine))


def jit_load(path: str | Path) -> torch.jit.ScriptModule:
    """``torch.jit.load`` on the CPU, under the quantized engine that an int8 file of
    :func:`export_int8_torchscript` records (what torch raises for a file that is not TorchScript)."""
    return _jit_load(path, _int8_engine(Path(path)))


def _jit_load(path: str | Path, engine: str | None) -> torch.jit.ScriptModule:
    with quantized_engine(engine) if engine else contextlib.nullcontext():
        return torch.jit.load(str(path), map_location="cpu")


def _int8_engine(path: Path) -> str | None:
    """The quantized engine an exported int8 file records (None for other files, or ones that are not archives)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith(f"/extra/{INT8_ENGINE_FILE}")]
            return z.read(names[0]).decode() if names else None
    except (OSError, zipfile.BadZipFile, UnicodeDecodeError):
        return None


def _save(graph: torch.jit.ScriptModule, path: Path, *, extra: dict[str, str] | None = None) -> None:
    """Serialise in memory (with the ``extra`` files in the archive), then write with Python: torch's own
    file writer aborts the process (an uncaught c10::Error) when the disk is full."""
    buffer = io.BytesIO()
    torch.jit.save(graph, buffer, _extra_files=extra or {})
    path.write_bytes(buffer.getvalue())  # an OSError here becomes a WriteError naming the final path (replacing)


def _batch_text(x: Tensor) -> str:
    return f"{x.shape[0]} random clips of {'x'.join(map(str, x.shape[2:]))}"


@contextlib.contextmanager
def _quiet_onnx() -> Iterator[None]:
    """Silence the exporter's progress lines and its warnings about optional packages (torchvision)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.redirect_stdout(None):
                yield
    finally:
        logger.setLevel(level)


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    input_shape: Sequence[int] | None = None,
    batch_size: int = 2,
    optimize: bool = True,
    tolerance: float = FLOAT_TOLERANCE,
    opset: int = ONNX_OPSET,
) -> ExportResult:
    """Save ``model`` as one ONNX file (dynamic batch) and check it with onnxruntime on the CPU.

    ``optimize`` folds BatchNorm into the convolutions first (ONNX fixes the NCDHW layout; the
    runtime picks its own memory formats).
    """
    p = Path(path)
    x = example_input(model, input_shape, batch_size)
    m = fold_batchnorm(model) if optimize else model.eval()
    try:
        with _quiet_onnx():
            program = torch.onnx.export(
                m,
                (x,),
                None,
                dynamo=True,
                external_data=False,
                input_names=["clips"],
                output_names=["logits"],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                opset_version=opset,
                verbose=False,
            )
    except ImportError as e:
        raise ExportError(f"ONNX export needs the onnx and onnxscript packages ({e}); pip install -e .") from None
    assert program is not None
    check = f"onnxruntime (CPU) vs eager on {_batch_text(x)}"
    with replacing_files(p) as tmp:  # checked in a temporary folder; moved into place (weights first) only when it passes
        _save_onnx(program, tmp)
        y = run_onnx(tmp, x)
        err = check_close(y, _eager_output(model, x), tolerance=tolerance, what=f"the exported {p.name} run by onnxruntime")
    return ExportResult(p, "onnx", optimize, False, err, check, "fold-bn" if optimize else "plain")


ONNX_INLINE_BYTES = 1_610_612_736
"""Weights up to this size (torch's own threshold, 1.5 GiB) go inside the ``.onnx`` file; larger ones, which
protobuf's 2 GB limit keeps out of it, go to ``<name>.onnx.data`` beside it."""


def _save_onnx(program: torch.onnx.ONNXProgram, path: Path) -> None:
    """Write ``program`` to ``path``; its weights beside it as ``<name>.data`` when they exceed :data:`ONNX_INLINE_BYTES`."""
    size = sum(v.const_value.nbytes for v in program.model.graph.initializers.values() if v.const_value is not None)
    program.save(str(path), external_data=size > ONNX_INLINE_BYTES)


def run_onnx(path: str | Path, x: Tensor) -> Tensor:
    """Run an ONNX file with onnxruntime's CPU provider on ``x``; the first output as a tensor."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ExportError(f"checking ONNX files needs onnxruntime ({e}); pip install -e .") from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: x.detach().contiguous().numpy()})
    return torch.from_numpy(out[0])
