"""CI cannot skip its database: .ci/run finds and starts the installed PostgreSQL cluster (any
version), fails when it cannot, exports CI=true, and both PostgreSQL test modules refuse to skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CI = (ROOT / ".ci" / "run").read_text()


def test_ci_exports_ci_and_finds_the_cluster_instead_of_naming_a_version() -> None:
    assert "export CI=true" in CI
    assert "pg_lsclusters" in CI and "pg_ctlcluster 15" not in CI
    assert 'fail "cannot start PostgreSQL' in CI and 'fail "PostgreSQL is not installed' in CI


@pytest.mark.parametrize("module", ["tests.search.test_distributed", "tests.analysis.test_postgres"])
def test_postgres_test_modules_refuse_to_skip_in_ci(module: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "E3D_TEST_POSTGRES_URL"}
    done = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, env={**env, "CI": "true"}, capture_output=True, text=True)
    assert done.returncode != 0 and "CI must run" in done.stderr
    local = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, env={**env, "CI": ""}, capture_output=True, text=True)
    assert local.returncode == 0, local.stderr


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/bin/pg_lsclusters").exists(), reason="needs root and PostgreSQL installed")
def test_the_ci_database_section_starts_postgresql(tmp_path: Path) -> None:
    start = CI.index("fail() {")
    end = CI.index("\nfi\n", CI.index('if [ -z "${E3D_TEST_POSTGRES_URL:-}" ]')) + 4
    script = tmp_path / "pg.sh"
    script.write_text("set -euo pipefail\n" + CI[start:end] + 'echo "$E3D_TEST_POSTGRES_URL"\n')
    env = {k: v for k, v in os.environ.items() if k != "E3D_TEST_POSTGRES_URL"}
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("postgresql://e3d:e3d@127.0.0.1:")


def _floors() -> dict[str, str]:
    from packaging.requirements import Requirement

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    floors = {}
    for text in project["dependencies"]:
        req = Requirement(text)
        floors[req.name] = next(s.version for s in req.specifier if s.operator == ">=")
    return floors


def test_dependency_floors_are_versions_the_code_runs_with() -> None:
    from importlib.metadata import version

    from packaging.version import Version

    floors = _floors()
    assert Version(floors["optuna"]) >= Version("5.0"), "Trial.set_constraint and RetryHeartbeatStaleTrialCallback are Optuna 5's"
    for name, floor in floors.items():
        assert Version(version(name)) >= Version(floor), f"{name} {version(name)} is installed, below its floor {floor}"
