"""The notebooks are stored without outputs and execute from top to bottom on the venv's Python."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("*.ipynb"))
KERNEL = "e3d-test-python"


def test_the_notebooks_are_stored_without_outputs() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "01_explore_a_study.ipynb",
        "02_profile_models.ipynb",
        "03_paper_findings.ipynb",
        "04_scaling.ipynb",
    ]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name} holds outputs"


@pytest.fixture
def kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernel spec that runs this interpreter (the venv's), found first through JUPYTER_PATH, so that
    neither a user's own ``python3`` kernel nor a missing one can change what executes the notebooks."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("E3D_CACHE", str(tmp_path / "cache"))  # the tiny search's proxy data
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the tiny search's run folder and the analysis output
    monkeypatch.delenv("E3D_RESULTS", raising=False)
    monkeypatch.delenv("E3D_SCALE_RUN", raising=False)  # 04 runs a tiny expansion
    return KERNEL


FIGURE_TEXTS = """import gc, json
from matplotlib.figure import Figure
from matplotlib.text import Text
print(json.dumps([t.get_text() for f in gc.get_objects() if type(f) is Figure for t in f.findobj(Text)]))"""
"""A last cell, added by the test: every text of every figure the notebook drew, as JSON."""


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path: Path, kernel: str, tmp_path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(FIGURE_TEXTS))
    work = tmp_path / "work"
    work.mkdir()
    NotebookClient(nb, kernel_name=kernel, timeout=600, resources={"metadata": {"path": str(work)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    texts = json.loads(nb.cells[-1].outputs[0]["text"])
    unnamed = [t for t in texts if "not recorded" in t or "unrecorded CPU" in t]
    assert not unnamed, f"a figure does not say which CPU measured it: {unnamed[0]!r}"  # was 02's latency panel
    assert not [o for o in outputs if o.output_type == "error"]
    warned = [o["text"] for o in outputs if o.output_type == "stream" and o.get("name") == "stderr" and "Warning" in o["text"]]
    assert not warned, f"a cell printed a warning: {warned[0][:200]}"
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure was drawn"
    assert nbformat.read(path, as_version=4) != nb  # executed in memory: the stored notebook keeps no outputs


@pytest.mark.slow
def test_the_readme_command_runs_a_notebook(kernel: str, tmp_path: Path) -> None:
    """``.[dev]`` installs ``jupyter nbconvert``, which the README gives to run a notebook to HTML."""
    jupyter = shutil.which("jupyter", path=str(Path(sys.executable).parent))
    assert jupyter is not None, "jupyter is not installed beside this Python"
    path = next(p for p in NOTEBOOKS if p.name.startswith("03_"))
    argv = [jupyter, "nbconvert", "--to", "html", "--execute", f"--ExecutePreprocessor.kernel_name={kernel}", str(path)]
    proc = subprocess.run([*argv, "--output-dir", str(tmp_path / "html")], capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    html = (tmp_path / "html" / "03_paper_findings.html").read_text()
    assert "image/png" in html and "Traceback" not in html
