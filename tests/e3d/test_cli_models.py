"""``e3d models``: listing, one preset's spec, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import space
from tests.e3d.fixtures import run


def test_lists_every_preset_with_params_and_paper_widths(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models")
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(lines) == set(space.list_models())
    assert "1.91M" in lines["shufflenetv2"] and "0.25x, 1x, 1.5x, 2x" in lines["shufflenetv2"]
    assert "3.12M" in lines["mobilenetv2"] and "0.2x, 0.45x, 0.7x, 1x" in lines["mobilenetv2"]


def test_json_prints_a_spec_that_loads(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models", "mobilenetv2", "--width-mult", "0.45", "--json")
    assert code == 0
    assert space.NetSpec.from_dict(json.loads(out)) == space.paper_spec("mobilenetv2", width_mult=0.45)


def test_any_positive_width_builds(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models", "shufflenet", "--width-mult", "0.33")
    assert code == 0 and "shufflenet w0.33" in out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["models", "nope"], "unknown model 'nope'; choose from mobilenet, mobilenetv2"),
        (["models", "mobilenet", "--width-mult", "0"], "must be a positive number"),
        (["models", "mobilenet", "--width-mult", "-1"], "must be a positive number"),
        (["models", "mobilenet", "--width-mult", "wide"], "must be a positive number, got 'wide'"),
        (["models", "--width-mult", "0.5"], "--width-mult: for one preset"),  # was the 1.0x list, the option ignored
        (["models", "--json", "--num-classes", "10"], "--num-classes, --json: for one preset"),
        (["models", "shufflenet", "--width-mult", "1e30"], "stem.channels: must be at most 1,048,576"),  # was printed: 60-digit counts
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], words: str) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and words in err


def test_console_script_exits_2_without_traceback() -> None:
    proc = subprocess.run([sys.executable, "-m", "e3d", "models", "nope"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
