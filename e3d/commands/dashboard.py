"""``e3d dashboard RUN``: open optuna-dashboard (the Optuna ecosystem's viewer) on a run's study.

Every trial of an e3d study already carries what a person looks at as user attributes (family,
spec summary, macs, params, paper MFLOPs, latency, accuracy, source, seed, rejection reason).
Before serving, the run folder's ``best.json``, ``pareto.json`` and figures (``*.png`` there and in
``analysis/``) are attached to the study as artifacts (stored in ``RUN/artifacts``, each file
once), so the dashboard shows them beside the trials.
"""

from __future__ import annotations

import argparse
import mimetypes
from pathlib import Path
from typing import Any

from e3d.cli import int_in
from space.spec import E3DError

EPILOG = """\
examples:
  e3d dashboard runs/e3d-search                        the run folder of e3d search (its study.db)
  e3d dashboard runs/s200 --storage postgresql://user:pw@host/db --study-name s200
  e3d dashboard runs/e3d-search --port 8081 --host 0.0.0.0

Needs the optional dependency: pip install 'e3d[dashboard]'. Open http://HOST:PORT/ in a browser."""

ARTIFACTS = ("best.json", "pareto.json", "recipe.json", "*.png", "analysis/*.png", "analysis/summary.md")
"""Files of a run folder attached to the study as artifacts, when present."""


class DashboardError(E3DError):
    """The dashboard cannot be opened as asked."""


def register(sub: Any) -> None:
    """Add the ``dashboard`` subcommand."""
    p = sub.add_parser(
        "dashboard",
        help="open optuna-dashboard on a run's study (optional: pip install 'e3d[dashboard]')",
        description="Serve optuna-dashboard on the study of a search run, with its result files attached as artifacts.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", type=Path, metavar="RUN", help="run folder of e3d search (holds study.db, best.json, ...)")
    p.add_argument("--storage", metavar="URL", help="the study's storage when it is not RUN/study.db (postgresql://...)")
    p.add_argument("--study-name", metavar="NAME", help="the study (default: the only one in the storage)")
    p.add_argument("--host", default="localhost", help="address to serve on (default localhost)")
    p.add_argument("--port", type=port, default=8080, help="port, 0 to 65535 (default 8080; 0: any free one)")
    p.add_argument("--no-artifacts", action="store_true", help="do not attach the run folder's files to the study")
    p.set_defaults(func=run)


def port(text: str) -> int:
    """argparse type: a TCP port, 0 to 65535."""
    return int_in(text, 0, 65535, "a port number (0 to 65535)")


def open_run(run: Path, storage: str | None, study_name: str | None) -> Any:
    """The study of run folder ``run`` (or of ``storage``), loaded with heartbeats off."""
    import optuna

    from search import study as st

    if storage is None and not (run / "study.db").is_file():
        raise DashboardError(f"no study.db in {run}; give the run folder of e3d search, or --storage URL")
    url = storage or st.sqlite_url(run / "study.db")
    db = st.sqlite_path(url)
    if db is not None:
        _check_optuna_file(db)
    store = st.open_storage(url)
    names = st.list_studies(store)
    where = st.redact(url)
    if not names:
        raise DashboardError(f"no study in {where}")
    if study_name is not None and study_name not in names:
        raise DashboardError(f"no study {study_name!r} in {where}; it has {', '.join(sorted(names))}")
    name = study_name or _the_search(names)
    if name is None:
        raise DashboardError(f"give --study-name: studies in {where}: {', '.join(sorted(names))}")
    return optuna.load_study(study_name=name, storage=store)


def _check_optuna_file(db: Path) -> None:
    """:class:`DashboardError` unless the SQLite file ``db`` holds an Optuna storage, checked read-only
    (opening an empty or foreign file as a storage would write Optuna's tables into it)."""
    import contextlib
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as con:
            found = con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'studies'").fetchone()
    except sqlite3.Error:
        found = None
    if found is None:
        raise DashboardError(f"{db} holds no Optuna study (it is empty or not a study database); give the run folder of e3d search")


def _the_search(names: list[str]) -> str | None:
    """The one study of a run's storage, not counting the finalization study ``<study>.final`` that a
    finalized search adds beside it (optuna-dashboard lists both; the files belong to the search)."""
    from search.finalize import SUFFIX

    searches = [n for n in names if not (n.endswith(SUFFIX) and n.removesuffix(SUFFIX) in names)]
    return searches[0] if len(searches) == 1 else None


def attach_artifacts(study: Any, run: Path) -> list[str]:
    """Upload the run folder's result files to ``study`` (each file name once, also across calls);
    returns the paths uploaded now. The artifacts live in ``run/artifacts``."""
    from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta, upload_artifact

    store = FileSystemArtifactStore(str(_artifact_dir(run)))
    have = {m.filename for m in get_all_artifact_meta(study)}
    done = []
    for pattern in ARTIFACTS:
        for path in sorted(run.glob(pattern)):
            if path.name in have or not path.is_file():
                continue
            mimetype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=study, mimetype=mimetype)
            have.add(path.name)
            done.append(str(path.relative_to(run)))
    return done


def _artifact_dir(run: Path) -> Path:
    folder = run / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def app(study: Any, run: Path) -> Any:
    """The dashboard's WSGI application for ``study``, with the run's artifact store."""
    try:
        from optuna_dashboard import wsgi
    except ImportError:
        raise DashboardError("optuna-dashboard is not installed: pip install 'e3d[dashboard]'") from None
    from optuna.artifacts import FileSystemArtifactStore

    return wsgi(study._storage, artifact_store=FileSystemArtifactStore(str(_artifact_dir(run))))


def run(args: argparse.Namespace) -> int:
    """Open the study, attach the files, serve until Ctrl-C."""
    try:
        import optuna_dashboard  # noqa: F401
    except ImportError:
        raise DashboardError("optuna-dashboard is not installed: pip install 'e3d[dashboard]'") from None
    from wsgiref.simple_server import make_server

    study = open_run(args.run, args.storage, args.study_name)
    try:  # bound before anything is written: a port that cannot be served leaves the run folder as it was
        server = make_server(args.host, args.port, _not_ready)
    except OSError as e:
        raise DashboardError(f"cannot serve on {args.host}:{args.port}: {e.strerror or e}") from None
    try:
        if not args.no_artifacts:
            added = attach_artifacts(study, args.run)
            if added:
                print(f"attached to study {study.study_name!r}: {', '.join(added)}")
        server.set_app(app(study, args.run))
        url = f"http://{args.host}:{server.server_port}/"
        print(f"optuna-dashboard for study {study.study_name!r} ({len(study.trials)} trials): {url}  (Ctrl-C stops)")
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _not_ready(environ: Any, start_response: Any) -> list[bytes]:
    """The WSGI application of the server until the dashboard's is set (it serves nothing before)."""
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"starting"]
