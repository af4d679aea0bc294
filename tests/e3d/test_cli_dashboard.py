"""``e3d dashboard``: optuna-dashboard serves a run's study, its trials' e3d attributes and the run's
files attached as artifacts (checked through the dashboard's own HTTP API)."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest

from search.results import study_frame, write_outputs
from search.study import sqlite_url
from tests.analysis.helpers import MIXED, make_study
from tests.e3d.fixtures import run

pytest.importorskip("optuna_dashboard")


class Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def run_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "run"
    folder.mkdir()
    study = make_study(MIXED, storage=sqlite_url(folder / "study.db"), name="e3d-search")
    write_outputs(study_frame(study), folder)
    (folder / "analysis").mkdir()
    (folder / "analysis" / "accuracy_vs_macs.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return folder


@pytest.fixture
def served(run_folder: Path) -> Iterator[str]:
    from e3d.commands.dashboard import app, attach_artifacts, open_run

    study = open_run(run_folder, None, None)
    assert attach_artifacts(study, run_folder) == ["best.json", "pareto.json", "analysis/accuracy_vs_macs.png"]
    assert attach_artifacts(study, run_folder) == [], "each file once"
    server = make_server("127.0.0.1", 0, app(study, run_folder), handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def test_the_dashboard_shows_e3d_s_attributes_and_the_run_s_files(served: str) -> None:
    studies = _get(f"{served}/api/studies")["study_summaries"]
    assert [s["study_name"] for s in studies] == ["e3d-search"]
    detail = _get(f"{served}/api/studies/{studies[0]['study_id']}?after=0")
    trials = detail["trials"]
    assert len(trials) == len(MIXED)
    attrs = {a["key"]: a["value"] for a in trials[0]["user_attrs"]}
    assert {"family", "summary", "macs", "params"} <= set(attrs)
    names = sorted(a["filename"] for a in detail["artifacts"])
    assert names == ["accuracy_vs_macs.png", "best.json", "pareto.json"]
    with urllib.request.urlopen(f"{served}/", timeout=30) as r:
        assert b"<html" in r.read().lower()


def test_a_folder_without_a_study_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "dashboard", str(tmp_path))
    assert code == 2 and "no study.db in" in err and len(err.strip().splitlines()) == 1


def test_a_finalized_run_opens_its_search_study_not_the_finalization_study(tmp_path: Path) -> None:
    from e3d.commands.dashboard import open_run
    from search.finalize import SUFFIX

    folder = tmp_path / "run"
    folder.mkdir()
    url = sqlite_url(folder / "study.db")
    make_study(MIXED, storage=url, name="e3d-search")
    make_study(MIXED[:1], storage=url, name="e3d-search" + SUFFIX)  # what the default search's finalization adds
    assert open_run(folder, None, None).study_name == "e3d-search"
    assert open_run(folder, None, "e3d-search" + SUFFIX).study_name == "e3d-search" + SUFFIX


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_a_port_out_of_range_is_one_line_and_creates_nothing(capsys: pytest.CaptureFixture[str], run_folder: Path, port: str) -> None:
    before = sorted(run_folder.rglob("*"))
    code, _, err = run(capsys, "dashboard", str(run_folder), "--port", port)
    assert code == 2 and "--port: must be " in err and "65535" in err and len(err.strip().splitlines()) == 1, err
    assert sorted(run_folder.rglob("*")) == before and not (run_folder / "artifacts").exists()


@pytest.mark.parametrize("content", [b"", b"not a database"])
def test_a_study_db_without_a_study_is_left_as_it_was(capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes) -> None:
    (tmp_path / "study.db").write_bytes(content)
    code, _, err = run(capsys, "dashboard", str(tmp_path))
    assert code == 2 and "holds no Optuna study" in err and len(err.strip().splitlines()) == 1, err
    assert (tmp_path / "study.db").read_bytes() == content


def test_an_unknown_study_name_is_named(capsys: pytest.CaptureFixture[str], run_folder: Path) -> None:
    code, _, err = run(capsys, "dashboard", str(run_folder), "--study-name", "nosuch")
    assert code == 2 and "no study 'nosuch' in" in err and "it has e3d-search" in err and "give --study-name" not in err, err
