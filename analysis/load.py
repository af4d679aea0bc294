"""Results as data: any study (storage URL + name) or a ``trials.csv`` as one DataFrame row per trial.

The rows follow :data:`search.results.COLUMNS` (then the spec's fields flattened as ``spec.<path>``),
whether they come from a live study, from the ``trials.csv`` that ``e3d search`` writes, or from a
hand-made CSV that has at least :data:`REQUIRED`. Numbers are floats (NaN where unknown) and
``feasible`` is a nullable boolean, so every later computation sees the same types.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from search.results import COLUMNS, frame, full_csv, study_frame
from space.spec import E3DError

REQUIRED = ("state", "family", "width_mult", "macs", "params", "accuracy")
"""Columns a CSV must have; the other :data:`search.results.COLUMNS` are filled with NaN when absent."""

NUMERIC = (
    "number",
    "width_mult",
    "macs",
    "params",
    "paper_mflops",
    "activations",
    "latency_ms",
    "accuracy",
    "best_accuracy",
    "epochs",
    "duration_s",
    "seed",
)
"""Columns read as floats."""

_TRUE = {"true", "1", "yes", "1.0"}
_FALSE = {"false", "0", "no", "0.0"}


class AnalysisError(E3DError):
    """Input that analysis cannot use: an unknown or empty study, an unreadable or incomplete CSV."""


@dataclass(frozen=True)
class Results:
    """A study's trials as data, with what is known about how they were made."""

    trials: pd.DataFrame
    """One row per trial: :data:`search.results.COLUMNS` then ``spec.<path>`` columns."""
    name: str
    """The study name, or the CSV's path."""
    budget_mflops: float | None = None
    """The search's multiply-add budget per clip, in millions, when known."""
    budget_clip: tuple[int, int, int] | None = None
    """The clip on which ``macs`` (and the budget) are counted, when known."""
    config: Mapping[str, Any] | None = None
    """The study's stored ``e3d search`` settings (``SearchConfig.to_dict()``), when known."""
    dropped: tuple[str, ...] = ()
    """What :func:`validate` dropped from the input, one phrase per kind of problem (counted)."""


def normalize(df: pd.DataFrame) -> pd.DataFrame:
    """A copy with every :data:`search.results.COLUMNS` present, :data:`NUMERIC` as float (``number``
    as a nullable integer), ``feasible`` as a nullable boolean and ``state`` upper-case.

    A value that is not a number, or a ``number`` that is not a whole one, raises :class:`AnalysisError`.
    """
    records: list[dict[str, Any]] = [{str(k): v for k, v in r.items()} for r in df.to_dict("records")]
    out = frame(records) if len(df) else pd.DataFrame(columns=[*COLUMNS, *(c for c in df.columns if c not in COLUMNS)])
    if out["number"].isna().all():
        out["number"] = range(len(out))
    for col in NUMERIC:
        values = pd.to_numeric(out[col], errors="coerce")
        _refuse(out[col], out[col].notna() & values.isna(), "a value that is not a number")
        out[col] = values.astype(float)
    whole = (out["number"] % 1 == 0) & (out["number"].abs() < 2**63)
    _refuse(out["number"], out["number"].notna() & ~whole, "a value that is not a trial number (a whole number)")
    out["number"] = out["number"].astype("Int64")
    out["feasible"] = _booleans(out["feasible"])
    out["state"] = out["state"].astype(str).str.upper()
    return out.reset_index(drop=True)


def _refuse(col: pd.Series, bad: pd.Series, what: str) -> None:
    """Raise :class:`AnalysisError` naming ``col``'s first ``bad`` value and its row (data rows counted from 1)."""
    if bad.any():
        row = int(bad.to_numpy().argmax())
        value = col.iloc[row]
        shown = repr(value) if isinstance(value, str) else str(value)
        raise AnalysisError(f"column {col.name!r} holds {what}: {shown} (row {row + 1})")


def _booleans(col: pd.Series) -> pd.Series:
    def one(v: Any) -> Any:
        if v is None or (isinstance(v, float) and v != v):
            return pd.NA
        if isinstance(v, bool):
            return v
        text = str(v).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise AnalysisError(f"column 'feasible' holds {v!r}, not True or False")

    return pd.Series([one(v) for v in col], index=col.index, dtype="boolean")


def from_study(study: optuna.Study) -> Results:
    """Every trial of an open study, and the budget from its stored ``e3d search`` settings."""
    from search.study import CONFIG_ATTR

    config = study.user_attrs.get(CONFIG_ATTR)
    return _results(normalize(study_frame(study)), study.study_name, config)


def load_study(name: str, *, storage: str) -> Results:
    """Open study ``name`` in the Optuna storage at URL ``storage`` (SQLite file or PostgreSQL).

    Raises :class:`AnalysisError` when the SQLite file does not exist, the study is not there (the
    message lists the studies that are) or it has no trials; ``search.study.StorageError`` when the
    storage cannot be reached.
    """
    from search.study import list_studies, open_storage, sqlite_path

    path = sqlite_path(storage)
    if path is not None and not path.is_file():  # optuna would create an empty database there
        raise AnalysisError(f"no SQLite database at {path}")
    store = open_storage(storage)
    names = list_studies(store)
    if name not in names:
        raise AnalysisError(f"no study {name!r} in this storage; studies there: {', '.join(sorted(names)) or 'none'}")
    results = from_study(optuna.load_study(study_name=name, storage=store))
    if not len(results.trials):
        raise AnalysisError(f"study {name!r} has no trials yet")
    return results


def read_table(p: Path) -> pd.DataFrame:
    """A CSV file as a frame; :class:`AnalysisError` in one line for an empty or unreadable one."""
    try:
        return pd.read_csv(p)
    except pd.errors.EmptyDataError:
        raise AnalysisError(f"{p} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AnalysisError(f"{p} is not a readable CSV: {first}") from None


def load_csv(path: str | Path, *, strict: bool = False) -> Results:
    """Read a ``trials.csv`` (or a run folder of ``e3d search`` that holds one); for a run folder or
    its short ``trials.csv``, the full record beside it (``trials_full.csv``) is what is read.

    When the folder also holds the search's ``study.db`` with exactly one study, its stored budget
    is used. Raises :class:`AnalysisError` for a missing or unreadable file, a file without rows,
    or one that lacks any of :data:`REQUIRED` (all are named). Rows that :func:`validate` finds
    corrupt are dropped and counted in ``Results.dropped`` (``strict``: refused).
    """
    p = full_csv(path)  # a run folder or its short trials.csv: the full record beside it
    if not p.is_file():
        raise AnalysisError(f"no such file: {p}")
    _not_a_scale_run(p.parent)
    raw = read_table(p)
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing and {"status", "spec", "macs_m"} <= set(raw.columns):
        raise AnalysisError(f"{p} is the short table of a run; analyse its trials_full.csv (it is not beside it)")
    if missing:
        raise AnalysisError(f"{p} lacks the column{'s' if len(missing) > 1 else ''} {', '.join(missing)} (it needs {', '.join(REQUIRED)})")
    if not len(raw):
        raise AnalysisError(f"{p} has no trials (a header and no rows)")
    try:
        normalized = normalize(raw)
    except AnalysisError as e:
        raise AnalysisError(f"{p}: {e}") from None
    df, dropped = validate(normalized, strict=strict, source=str(p))
    if not len(df):
        raise AnalysisError(f"{p}: no usable rows ({'; '.join(dropped)})")
    return dataclasses.replace(_results(df, str(p), _config_next_to(p)), dropped=tuple(dropped))


def _not_a_scale_run(folder: Path) -> None:
    """Refuse the trials of an ``e3d scale`` run: a point reused on several curves is one trial there, and
    rows of one width differ in clip, so a search's per-width tables would count runs twice and mix clips."""
    from analysis.scaling import CONFIG

    if (folder / CONFIG).is_file():
        raise AnalysisError(f"{folder} is a run of e3d scale (its trials reuse points and mix clips); analyse it with --scale {folder}")


COSTS = ("macs", "params", "paper_mflops", "activations", "latency_ms")
"""Columns that count something: never negative, never infinite (NaN: unknown)."""


def _numbers(df: pd.DataFrame, mask: pd.Series) -> str:
    numbers = [str(n) for n in df.loc[mask, "number"].tolist()[:5]]
    return ", ".join(numbers) + (" ..." if int(mask.sum()) > 5 else "")


def _spec_ok(text: Any) -> bool:
    if text is None or (isinstance(text, float) and text != text):
        return True  # no spec (a queued or rejected-early trial): nothing to mistake
    try:
        return isinstance(json.loads(str(text)), dict)
    except ValueError:
        return False


def problems(df: pd.DataFrame) -> list[tuple[str, pd.Series]]:
    """Each kind of corrupt row of a normalised frame: (what, rows) for duplicated trials, specs that
    do not parse, negative or infinite costs, widths that are not positive, trained trials without costs, and
    accuracies outside [0, 100]."""
    trained = (df["state"] == "COMPLETE") & df["feasible"].fillna(True).astype(bool) & df["accuracy"].notna()
    out = [
        ("duplicated trial", df.duplicated(subset=["number"], keep="first")),
        ("unparsable spec_json", ~df["spec_json"].map(_spec_ok).astype(bool)),
        ("negative cost", (df[list(COSTS)] < 0).any(axis=1)),
        ("infinite cost", (df[list(COSTS)] == float("inf")).any(axis=1)),
        ("width_mult not a positive number", ~(df["width_mult"] > 0) & df["width_mult"].notna()),
        ("trained trial without macs or params", trained & df[["macs", "params"]].isna().any(axis=1)),
        ("accuracy outside [0, 100]", ~df["accuracy"].between(0, 100) & df["accuracy"].notna()),
        ("best_accuracy outside [0, 100]", ~df["best_accuracy"].between(0, 100) & df["best_accuracy"].notna()),
    ]
    return [(what, rows) for what, rows in out if rows.any()]


def validate(df: pd.DataFrame, *, strict: bool = False, source: str = "results") -> tuple[pd.DataFrame, list[str]]:
    """Drop the rows :func:`problems` finds; returns the rest and one counted phrase per problem
    (``duplicated trial: 2 rows (trial 3, 5)``). With ``strict`` the first problem is an :class:`AnalysisError`."""
    bad = pd.Series(False, index=df.index)
    phrases = []
    for what, rows in problems(df):
        n = int(rows.sum())
        phrase = f"{what}: {n} row{'s' * (n > 1)} (trial {_numbers(df, rows)})"
        if strict:
            raise AnalysisError(f"{source}: {phrase}; fix the file, or leave out --strict to drop such rows")
        phrases.append(phrase)
        bad |= rows
    return df[~bad].reset_index(drop=True), phrases


def _config_next_to(csv: Path) -> Mapping[str, Any] | None:
    """The stored search settings of the single study in ``study.db`` beside ``csv``, if any."""
    db = csv.with_name("study.db")
    if not db.is_file():
        return None
    from search.study import CONFIG_ATTR, sqlite_url

    try:
        summaries = optuna.get_all_study_summaries(sqlite_url(db), include_best_trial=False)
    except Exception:  # a database of something else: the CSV alone still analyses
        return None
    from search.finalize import SUFFIX

    searched = [s for s in summaries if not s.study_name.endswith(SUFFIX)]  # not the finalists' study beside it
    if len(searched) != 1:
        return None
    config = searched[0].user_attrs.get(CONFIG_ATTR)
    return config if isinstance(config, Mapping) else None


def _results(df: pd.DataFrame, name: str, config: Mapping[str, Any] | None) -> Results:
    budget = (config or {}).get("budget") or {}
    mflops = budget.get("mflops")
    clip = budget.get("clip")
    if clip is None and "spec.clip" in df and df["spec.clip"].notna().any():
        found = re.fullmatch(r"(\d+)x(\d+)x(\d+)", str(df["spec.clip"].dropna().iloc[0]).strip())
        clip = [int(v) for v in found.groups()] if found else None  # another text: the clip is unknown
    return Results(
        trials=df,
        name=name,
        budget_mflops=float(mflops) if mflops is not None else None,
        budget_clip=(clip[0], clip[1], clip[2]) if clip is not None and len(clip) == 3 else None,
        config=json.loads(json.dumps(config)) if config is not None else None,
    )


def trained_on(rows: pd.DataFrame) -> str:
    """Where and when the rows (points, trials) were trained: their CPUs (column ``cpu``, ``;``-separated) and today's date."""
    cpus = sorted({c.strip() for cell in rows.get("cpu", pd.Series(dtype=str)).dropna() for c in str(cell).split(";") if c.strip()})
    return f"trained on {', '.join(cpus) or 'an unrecorded CPU'}; drawn {datetime.date.today():%Y-%m-%d}"
