"""The notebooks are stored without outputs and execute from top to bottom on the venv's Python."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("*.ipynb"))
KERNEL = "e3d-test-python"


def test_the_three_notebooks_are_stored_without_outputs() -> None:
    assert [p.name for p in NOTEBOOKS] == ["01_explore_a_study.ipynb", "02_profile_models.ipynb", "03_paper_findings.ipynb"]
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
    return KERNEL


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path: Path, kernel: str, tmp_path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    work = tmp_path / "work"
    work.mkdir()
    NotebookClient(nb, kernel_name=kernel, timeout=600, resources={"metadata": {"path": str(work)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure was drawn"
    assert nbformat.read(path, as_version=4) != nb  # executed in memory: the stored notebook keeps no outputs
