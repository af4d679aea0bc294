"""profiler.targets: what a TARGET names becomes a model; an e3d checkpoint brings its weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import space
from profiler.targets import resolve_target
from space.checkpoints import FORMAT, CheckpointError
from tests.conftest import SMALL_CLIP


def trained_checkpoint(path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """A checkpoint as e3d train writes it, of weights no fresh build has (every float tensor moved)."""
    spec = space.paper_spec("shufflenet", width_mult=0.25, num_classes=10, sample_duration=SMALL_CLIP[0], sample_size=SMALL_CLIP[1])
    state = {k: v * 1.5 + 0.1 if v.is_floating_point() else v for k, v in space.build(spec).state_dict().items()}
    torch.save({"format": FORMAT, "spec": spec.to_dict(), "model": state}, path)
    return path, state


def test_a_checkpoint_target_builds_its_network_with_its_weights(tmp_path: Path) -> None:
    path, state = trained_checkpoint(tmp_path / "last.pt")
    target = resolve_target(str(path))
    got = target.module().state_dict()
    assert target.weights == path and all(torch.equal(got[k], v) for k, v in state.items())  # was a fresh, untrained build


def test_a_checkpoint_target_with_another_head_is_refused(tmp_path: Path) -> None:
    path, _ = trained_checkpoint(tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match="the checkpoint has 10 classes, the model 7"):
        resolve_target(str(path), num_classes=7).module()
