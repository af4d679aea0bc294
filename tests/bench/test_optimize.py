"""bench/optimize.py with --paper-code: the paper's own models timed beside e3d's, and refused when they differ."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench import optimize
from profiler.cpu import detect_cpu

FAKE_PAPER_CODE = """
import space


def get_model(num_classes, width_mult, sample_size):
    # stands in for the paper's code: {factor} x the width asked for
    return space.create_model("{family}", width_mult={factor} * width_mult, num_classes=num_classes,
                              sample_size=sample_size, sample_duration=16)
"""


def paper_checkout(root: Path, family: str, factor: float) -> Path:
    (root / "models").mkdir(parents=True)
    (root / "models" / f"{family}.py").write_text(FAKE_PAPER_CODE.format(family=family, factor=factor))
    return root


def args(root: Path, model: str) -> list[str]:
    tiny = ["--frames", "16", "--size", "48", "--batch-size", "1", "--repeats", "2", "--warmup", "0", "--threads", "1"]
    return ["--models", model, *tiny, "--no-int8", "--paper-code", str(root)]


def test_the_papers_model_is_timed_beside_the_preset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = paper_checkout(tmp_path / "paper", "mobilenet", 1.0)
    assert optimize.main([*args(root, "mobilenet@0.25"), "--json", str(tmp_path / "out.json")]) == 0
    out = capsys.readouterr().out
    assert "paper code clips/s" in out and "geometric mean e3d eager / paper code eager" in out
    result = json.loads((tmp_path / "out.json").read_text())
    assert len(result["rows"][0]["times_ms"]["paper"]) == 2 and result["geomean_eager_over_paper"] > 0


@pytest.mark.parametrize(("family", "factor", "model", "words"), [
    ("mobilenet", 2.0, "mobilenet@0.25", "not the same network"),
    ("mobilenet", 1.0, "shufflenet@0.25", "no paper model for shufflenet"),
])  # fmt: skip
def test_a_paper_model_that_is_another_network_or_missing_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], family: str, factor: float, model: str, words: str
) -> None:
    root = paper_checkout(tmp_path / "paper", family, factor)
    assert optimize.main(args(root, model)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and words in err[-1]


@pytest.mark.skipif(not detect_cpu().bf16, reason="this CPU has no native bf16 (AVX512-BF16 or AMX)")
def test_the_optimized_bf16_graph_is_timed_beside_eager_fp32(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tiny = ["--frames", "16", "--size", "64", "--batch-size", "1", "--repeats", "2", "--warmup", "0", "--threads", "1"]
    assert optimize.main(["--models", "shufflenet@0.25", *tiny, "--no-int8", "--bf16", "--json", str(tmp_path / "out.json")]) == 0
    out = capsys.readouterr().out
    assert "opt bf16 clips/s" in out and "geometric mean optimized bf16/eager fp32" in out
    result = json.loads((tmp_path / "out.json").read_text())
    row = result["rows"][0]
    assert len(row["times_ms"]["bf16"]) == 2 and 0 < row["bf16_rel_error"] < math.inf  # reported, not checked (random weights)
    assert result["geomean_bf16_over_eager"] == pytest.approx(row["eager_median_ms"] / row["bf16_median_ms"])
