"""bench.allocator: children under each setting, the summary, and a tiny run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import allocator as ba
from tests.profiler.test_allocator import GLIBC


def row(preset: str, task: str, ms: float, faults: float, state: str) -> dict[str, object]:
    return {"preset": preset, "task": task, "ms": ms, "faults": faults, "allocator": state, "peak_gib": 1.0}


def test_summary_takes_the_median_over_rounds_and_divides_system_by_keep() -> None:
    system = [(300.0, 9e4), (100.0, 8e4), (200.0, 7e4)]
    keep = [(50.0, 0.0), (100.0, 0.0), (150.0, 2.0)]
    runs = {
        "system": [[row("a 1x", "infer", ms, f, "system")] for ms, f in system],
        "keep": [[row("a 1x", "infer", ms, f, "keep")] for ms, f in keep],
    }
    (s,) = ba.summarise(runs)
    assert (s["system_ms"], s["keep_ms"], s["speedup"]) == (200.0, 100.0, 2.0)
    assert (s["system_faults"], s["keep_faults"], s["keep_applied"]) == (8e4, 0.0, ["keep"])
    assert s["verdict"] == "tie" and 0.05 < s["p"] < 1  # 200 +- 100 against 100 +- 50 over three rounds
    assert "| a 1x | infer | 200.0 | 100.0 | 2.00x | tie (0.22) | 80,000 | 0 |" in ba.markdown([s], "# head")


def test_a_consistent_difference_is_a_verdict() -> None:
    times = {"system": (400, 410, 405), "keep": (300, 302, 298)}
    runs = {s: [[row("a 1x", "train", ms, 0.0, s)] for ms in t] for s, t in times.items()}
    assert ba.summarise(runs)[0]["verdict"] == "keep faster"
    runs["system"], runs["keep"] = runs["keep"], runs["system"]
    assert ba.summarise(runs)[0]["verdict"] == "keep slower"


def test_a_tiny_run_times_each_setting_in_its_own_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    small = ["--clip", "4x32x32", "--batch-size", "2", "--train-clip", "4x32x32", "--train-batch", "2"]
    ba.main(["--presets", "mobilenet:0.25", *small, "--threads", "1", "--repeats", "1", "--rounds", "1", "--out", str(tmp_path)])
    rows = json.loads((tmp_path / "allocator.json").read_text())["rows"]
    assert [(r["preset"], r["task"]) for r in rows] == [("mobilenet 0.25x", "infer"), ("mobilenet 0.25x", "train")]
    assert all(r["system_applied"] == ["system"] and r["keep_applied"] == ["keep" if GLIBC else "system"] for r in rows)
    assert all(r["speedup"] > 0 for r in rows)
    assert "geometric mean speed-up" in capsys.readouterr().out and (tmp_path / "allocator.md").exists()
