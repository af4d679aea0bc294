"""The analytic memory estimate of a spec, and the limit that refuses oversized specs in one line."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import space
from profiler.counting import spec_totals
from profiler.footprint import MemoryLimitError, check_memory, estimate_memory, parse_size
from tests.e3d.fixtures import run


def test_weights_are_exactly_the_built_model_s_and_activations_scale_with_batch() -> None:
    spec = space.paper_spec("shufflenetv2", width_mult=0.25, num_classes=10, sample_size=48)
    model = space.build(spec)
    stored = sum(t.numel() for k, t in model.state_dict().items() if not k.endswith("num_batches_tracked"))
    one = estimate_memory(spec)
    assert one.weights == 4 * stored
    assert one.activations == 4 * spec_totals(spec).activations
    eight = estimate_memory(spec, batch=8, training=True)
    assert eight.activations == 2 * 8 * one.activations and eight.weights > one.weights


@pytest.mark.parametrize(("text", "size"), [("8G", 8 * 2**30), ("512M", 512 * 2**20), ("1.5GiB", int(1.5 * 2**30)), ("1000", 1000)])
def test_sizes_parse(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "0", "-1G", "8X", "lots"])
def test_bad_sizes_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="must be a size"):
        parse_size(text)


def _oversized(tmp_path: Path, **change: int) -> Path:
    d = space.paper_spec("mobilenet", width_mult=0.25, num_classes=5, sample_size=32, sample_duration=4).to_dict()
    d["stages"][1].update(change)
    path = tmp_path / "big.json"
    path.write_text(json.dumps(d))
    return path


def test_a_spec_of_a_million_channels_is_refused_in_one_line_before_building(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _oversized(tmp_path, channels=1_000_000)  # just under space.spec.MAX_INT
    for argv in (["profile", str(path), "--no-latency"], ["export", str(path), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]):
        start = time.perf_counter()
        code, out, err = run(capsys, *argv)
        assert code == 2 and out == "", err
        assert len(err.strip().splitlines()) == 1 and "TiB" in err and "--max-memory" in err
        assert time.perf_counter() - start < 30
    assert not (tmp_path / "m.onnx").exists()


def test_max_memory_refuses_a_small_network_and_a_large_limit_lets_it_through(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = space.paper_spec("mobilenet", width_mult=0.25, num_classes=5, sample_size=32, sample_duration=4)
    path = tmp_path / "s.json"
    spec.save(path)
    code, _, err = run(capsys, "profile", str(path), "--no-latency", "--max-memory", "1M")
    assert code == 2 and "above the limit of 1.0 MiB" in err
    code, _, err = run(capsys, "profile", str(path), "--no-latency", "--max-memory", "64G")
    assert code == 0, err
    with pytest.raises(MemoryLimitError):
        check_memory(spec, batch=64, training=True, limit=2**20)


def test_a_huge_width_is_one_line_not_a_float_overflow(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "profile", "squeezenet", "--width-mult", "1e300", "--clip", "8x32x32", "--no-latency")
    assert code == 2 and "must be at most 1,048,576" in err and len(err.strip().splitlines()) == 1  # the spec's bound, first
