"""bench.int8_accuracy: a small run end to end (README quotes it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import int8_accuracy


def test_a_small_run_compares_float_and_int8_top1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "int8.json"
    args = ["--models", "mobilenetv2@0.2", "--epochs", "1", "--train-samples", "16", "--calib-clips", "4", "--eval-clips", "20"]
    assert int8_accuracy.main([*args, "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["model"] == "mobilenetv2" and row["width_mult"] == 0.2
    assert 0 <= row["float_top1"] <= 100 and 0 <= row["int8_top1"] <= 100
    assert row["change"] == pytest.approx(row["int8_top1"] - row["float_top1"])
    assert "mobilenetv2" in capsys.readouterr().out
