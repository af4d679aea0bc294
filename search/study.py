"""A budgeted architecture search as an Optuna study: storage, baselines, objective, workers.

Every worker runs :func:`run_worker` on the same study (SQLite in the run folder by default, or a
shared PostgreSQL server). Each trial samples a candidate, screens it against the budget with the
analytic counter (over-budget candidates complete at once with their constraint violation, so the
sampler learns the feasible region), trains the rest briefly on the proxy task and reports the
held-out accuracy. Heartbeats mark the trials of dead workers failed, and they are re-run.

A candidate with a Similarity Guided Sampling layer costs what the clips cost on average. It is
screened with the mean over the proxy validation set of the untrained network (built with the seed
it will be trained from: the only measurement there is before training). After training the mean
is measured again with the trained network: that is the trial's ``macs`` (what the network it
produced costs), and a trial whose trained mean exceeds the budget is infeasible, in e3d's files and
to the sampler (a trained SGS candidate's constraints are written after training, from that mean).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import importlib.util
import json
import logging
import math
import os
import re
import socket
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, unquote

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; creating one file from many workers at once is not guarded
    fcntl = None  # type: ignore[assignment]

import optuna
import sqlalchemy
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from profiler.counting import spec_totals
from profiler.cpu import detect_cpu
from profiler.datacost import Bins, data_cost, dataset_bins
from search.budget import Budget, Screen, feasible_families, screen, validate_for_clip
from search.fidelity import QUEUED_SOURCES, CpuTimed, cpu_seconds, stop_if_budget_spent, stop_trial, trial_cpu_seconds
from search.interrupts import hold, let_go
from search.lagged import SURPLUS_ATTR, LaggedPruner, LaggedSampler, grace_period, surplus
from search.searchspace import SPACE, Clip, check_families, paper_presets, preset_params, sample_params, spec_from_params
from space.spec import E3DError, NetSpec, SGSSpec, SpecError

if TYPE_CHECKING:
    from search.train import FitResult, TrainConfig

OBJECTIVES = ("accuracy", "pareto")
PRUNERS = ("median", "hyperband", "none", "rungs")
DEFAULT_PRUNERS = {"accuracy": "median", "pareto": "rungs"}
"""The pruner of a search that names none. Optuna prunes no multi-objective trial, so a pareto
search's is :mod:`search.pruning`'s dominance rule at rungs."""
CONFIG_ATTR = "e3d_config"
CONSTRAINTS = ("macs", "params", "latency")
"""Optuna constraint keys: relative excess over each budget bound."""


class StorageError(E3DError):
    """The study storage cannot be reached or holds something else."""


class NothingTrainsError(E3DError):
    """A search whose candidates are all rejected before training, one after another (:data:`NOTHING_TRAINS`)."""


class StudyConfigError(E3DError):
    """A study that exists with other settings than this command's."""


@dataclass(frozen=True)
class ProxyConfig:
    """How each candidate is trained and scored. Defaults finish a trial in about a minute on 2 cores."""

    task: str = "motion"
    data: str | None = None
    data_format: str | None = None
    clip: Clip = (16, 48, 48)
    train_samples: int = 800
    val_samples: int = 200
    test_samples: int = 300
    """Built-in task videos of the test split, read only by finalization (:mod:`search.finalize`)."""
    epochs: int = 3
    trial_seconds: float | None = None
    batch_size: int = 16
    lr: float = 0.05
    schedule: str = "step"
    """The learning-rate schedule (:class:`search.train.TrainConfig`): ``step`` or ``cosine``."""
    warmup: float = 0.0
    """Fraction of the steps of linear warm-up (``cosine`` only)."""
    data_seed: int = 0
    num_workers: int = 0
    device: str = "cpu"
    threads: int | None = None
    """Torch CPU threads while training (None: torch's default)."""
    precision: str = "fp32"
    """fp32, bf16, fp16 or auto (:mod:`profiler.precision`); what each trial ran is stored on it."""

    LOCAL = ("device", "num_workers", "threads")
    """Settings of one worker's machine, not of the study: workers may differ in them."""

    def describe(self) -> str:
        """Human summary."""
        data = self.data or f"{self.task} task ({self.train_samples} train / {self.val_samples} val)"
        limit = f", at most {self.trial_seconds:g} s" if self.trial_seconds else ""
        run_as = "" if self.precision == "fp32" else f", precision {self.precision} (each trial's choice in trials.csv)"
        clip = "x".join(map(str, self.clip))
        schedule = "" if self.schedule == "step" else f" {self.schedule}" + (f" (warm-up {self.warmup:g})" if self.warmup else "")
        return f"{data}, clip {clip}, {self.epochs} epochs{limit}, batch {self.batch_size}, lr {self.lr:g}{schedule}{run_as}"


@dataclass(frozen=True)
class SearchConfig:
    """Everything that defines a study; stored on it so that workers and resumes agree."""

    budget: Budget
    families: tuple[str, ...]
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    objective: str = "accuracy"
    pruner: str = "median"
    seed: int = 0
    baselines: bool = True
    latency_mode: str = "optimized"
    kind: str = "search"
    """``search`` samples candidates; ``sweep`` only runs enqueued paper presets; ``final`` runs
    enqueued finalists and scores them on the test split (:mod:`search.finalize`)."""
    measure_latency: bool = False
    """Measure every trained candidate's latency even without a latency bound."""
    sgs: bool = False
    """Also sample where an SGS layer goes (``<family>.sgs``; see :func:`search.searchspace.sample_params`)."""
    rungs: tuple[int, ...] = ()
    """``--pruner rungs``: the epochs it judges at (empty: :func:`search.pruning.default_rungs`); a
    measured schedule comes from :func:`search.fidelity.rung_schedule`."""
    lag: int = 0
    """0: one worker's search, each trial sampled and judged on all trials before it. L > 0: a search
    that the seed decides with any number of workers, each trial sampled and judged on the trials
    before it but the last L that train (:mod:`search.lagged`; ``e3d search --jobs N`` sets 2N)."""

    def __post_init__(self) -> None:
        check_families(self.families)
        if self.pruner == "rungs" and self.rungs:
            from search.fidelity import check_rungs

            check_rungs(self.rungs, self.proxy.epochs)
        if self.latency_mode not in ("optimized", "eager"):
            raise SpecError("latency_mode", "must be optimized or eager")
        if self.objective not in OBJECTIVES:
            raise SpecError("objective", f"must be one of {', '.join(OBJECTIVES)}")
        if self.pruner not in PRUNERS:
            raise SpecError("pruner", f"must be one of {', '.join(PRUNERS)}")
        if self.lag < 0:
            raise SpecError("lag", "must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        data: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(self)))
        return data

    def shared(self) -> dict[str, Any]:
        """The settings every worker of the study must agree on (``to_dict`` without machine-local ones)."""
        d = self.to_dict()
        d["proxy"] = {k: v for k, v in d["proxy"].items() if k not in ProxyConfig.LOCAL}
        del d["lag"]  # set by whoever creates the study; a worker that joins follows it
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchConfig:
        """Inverse of :meth:`to_dict`."""
        budget = Budget(**{**d["budget"], "clip": tuple(d["budget"]["clip"])})
        proxy = ProxyConfig(**{**d["proxy"], "clip": tuple(d["proxy"]["clip"])})
        return cls(**{**d, "budget": budget, "proxy": proxy, "families": tuple(d["families"]), "rungs": tuple(d.get("rungs", ()))})

    @property
    def directions(self) -> list[Literal["minimize", "maximize"]]:
        """Optuna directions: accuracy up; for ``pareto`` also macs (and latency) down."""
        out: list[Literal["minimize", "maximize"]] = ["maximize"]
        if self.objective == "pareto":
            out += ["minimize", "minimize"] if self.budget.latency_ms is not None else ["minimize"]
        return out


def _retried(trial: optuna.Trial) -> bool:
    """Whether this trial re-runs one whose worker died (Optuna's RetryHeartbeatStaleTrialCallback)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        frozen = trial.study._storage.get_trial(trial._trial_id)
        return RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen) is not None


def worker_id() -> str:
    """``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _split_credentials(url: str) -> tuple[str, str, str] | None:
    """``(scheme, userinfo, rest)`` of ``scheme://userinfo@rest``; None without credentials (and
    for SQLite, whose URL is a path).

    The userinfo ends at the *last* ``@``, so a password with an unencoded ``@`` is taken whole (an
    ``@`` further on, in a query, makes more of the URL count as secret: never less).
    """
    if "://" not in url or url.startswith("sqlite"):
        return None
    scheme, rest = url.split("://", 1)
    userinfo, at, host = rest.rpartition("@")
    return (scheme, userinfo, host) if at else None


_SECRET_QUERY = re.compile(r"(?i)([?&][^=&#]*(?:password|secret|token)[^=&#]*=)([^&#]*)")
"""A query parameter of a URL whose value is a secret (libpq's ``password``, ``sslpassword``, a token)."""


def redact(url: str) -> str:
    """A storage URL without its credentials (``user:password@`` and secret query parameters), for messages."""
    parts = _split_credentials(url)
    return _SECRET_QUERY.sub(r"\1***", url if parts is None else f"{parts[0]}://***@{parts[2]}")


def scrub(text: str, url: str) -> str:
    """``text`` (a driver's error message) with every piece of ``url``'s password replaced by ``***``."""
    parts = _split_credentials(url)
    passwords = [m.group(2) for m in _SECRET_QUERY.finditer(url)] + ([parts[1].partition(":")[2]] if parts else [])
    secrets = {piece for p in passwords for whole in (p, unquote(p)) for piece in (whole, *whole.split("@"))}
    for s in sorted((s for s in secrets if len(s) >= 3), key=len, reverse=True):
        text = text.replace(s, "***")
    return text


def sqlite_url(path: str | Path) -> str:
    """The SQLAlchemy URL of the SQLite file ``path``: absolute and percent-encoded, so that a
    ``?``, ``#``, ``%`` or space in a folder name stays part of the path."""
    return "sqlite:///" + quote(str(Path(path).resolve()), safe="/")


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (decoded), or None for other storages."""
    if not url.startswith("sqlite:///"):
        return None
    return Path(unquote(url.removeprefix("sqlite:///").split("?", 1)[0]))


def _encode_password(url: str) -> str:
    """The URL with a password that holds a raw ``@`` percent-encoded (SQLAlchemy would end the
    password at its first ``@`` and take the rest for the host)."""
    parts = _split_credentials(url)
    if parts is None or "@" not in parts[1] or any(c in parts[1] for c in "/?#"):
        return url
    user, colon, password = parts[1].partition(":")
    return f"{parts[0]}://{quote(user, safe='%')}{colon}{quote(password, safe='%')}@{parts[2]}"


def check_storage_url(url: str) -> None:
    """Refuse, in one line, a storage that is not a database URL e3d can use."""
    if "://" not in url:
        hint = f" (a SQLite file: sqlite:///{url})" if url.endswith((".db", ".sqlite", ".sqlite3")) else ""
        raise StorageError(f"--storage takes a database URL such as postgresql://user:pw@host/db or sqlite:///path/study.db{hint}")
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("postgres", "pg", "psql"):
        raise StorageError(f"storage URLs say postgresql://, not {scheme}:// (SQLAlchemy's name for PostgreSQL)")
    if scheme.split("+")[0] not in ("sqlite", "postgresql", "mysql", "mariadb", "oracle", "mssql"):
        raise StorageError(f"unknown storage scheme {scheme}://; use postgresql://... for many workers, or sqlite:///path")


def storage_url(url: str) -> str:
    """``postgresql://`` means SQLAlchemy's default driver (psycopg 3); use psycopg2 if only it is here.
    A raw ``@`` in the password is percent-encoded."""
    url = _encode_password(url)
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


HEARTBEAT_S = 10
"""Default seconds between a worker's heartbeats; a trial whose worker stopped beating is re-run."""


@contextlib.contextmanager
def _creation_lock(url: str) -> Iterator[None]:
    """Hold an exclusive lock on a SQLite file's folder while Optuna creates or checks its tables:
    workers that open one new file at once would otherwise each create the schema, and all but one
    fail (``table ... already exists``, ``UNIQUE constraint failed: alembic_version``). Server
    databases serialize this themselves; so does a folder that is not there (SQLite refuses it)."""
    path = sqlite_path(url)
    if path is None or fcntl is None or not path.parent.is_dir():
        yield
        return
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


SQLITE_PRAGMAS: tuple[str, ...] = ("journal_mode=WAL", "synchronous=NORMAL")
"""Set on every connection to a SQLite storage. Write-ahead logging lets readers go on while a worker
writes (the mode is stored in the file); with it, ``synchronous=NORMAL`` commits without waiting for the
disk: a commit survives the process being killed, and a power loss can undo the last few but never
corrupts the file. Each trial records dozens of attributes, one commit each; the default journal and
``synchronous=FULL`` wait for the disk at every one (``bench/storage_writes.py`` times both)."""


def _sqlite_connections(engine: sqlalchemy.engine.Engine) -> None:
    """Set :data:`SQLITE_PRAGMAS` on every connection of a SQLite engine, and make every transaction take
    the write lock when it begins. Python's sqlite3 begins one only at the first write, so the read
    before it is not part of it: two workers both read a queued trial as WAITING and both took it
    (Optuna's check-then-set relies on the transaction; PostgreSQL's ``SELECT ... FOR UPDATE`` holds it
    there)."""

    @sqlalchemy.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        for pragma in SQLITE_PRAGMAS:
            dbapi_connection.execute(f"PRAGMA {pragma}")

    @sqlalchemy.event.listens_for(engine, "begin")
    def _begin(connection: sqlalchemy.engine.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections made before the listeners are replaced by new ones


def open_storage(url: str, *, heartbeat: int = HEARTBEAT_S) -> RDBStorage:
    """An RDB storage with heartbeats; a trial whose worker stopped beating is failed after the
    grace period by the next worker that starts a trial, and re-run (up to 3 times)."""
    check_storage_url(url)
    engine: dict[str, Any] = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    if not url.startswith("sqlite"):
        engine["connect_args"] = {"connect_timeout": 10}
    try:
        with _creation_lock(url), warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = RDBStorage(
                storage_url(url),
                engine_kwargs=engine,
                heartbeat_interval=heartbeat,
                grace_period=grace_period(heartbeat),
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
            )
    except ImportError as e:
        scheme = url.split("://", 1)[0].split("+")[0]
        fix = "install e3d[postgres]" if scheme == "postgresql" else f"install the Python driver SQLAlchemy uses for {scheme}"
        raise StorageError(f"cannot use storage {redact(url)}: missing driver ({scrub(str(e), url)}); {fix}") from None
    except Exception as e:  # sqlalchemy raises OperationalError / ArgumentError subclasses
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StorageError(f"cannot reach storage {redact(url)}: {scrub(first, url)}") from None
    if sqlite_path(url) is not None:
        _sqlite_connections(storage.engine)
    return storage


TPE_STARTUP = 8
"""Trials TPE samples at random (from the worker's seed) before it models the results."""
WORKER_ATTR = "worker."
"""Study user attribute prefix: ``worker.<index>`` holds the ``host:pid`` that claimed that index."""


def sampler_seed(seed: int, index: int) -> int:
    """The sampler seed of worker ``index`` of a study with ``--seed seed``: a pure function of both,
    so a run is reproduced by its seed and workers never share a stream."""
    import numpy as np

    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, index]).generate_state(1)[0])


def _tpe(seed: int) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=TPE_STARTUP)


def _sampler(config: SearchConfig, index: int = 0) -> optuna.samplers.BaseSampler:
    if config.lag > 0:
        return LaggedSampler(_tpe, seed=config.seed, lag=config.lag)
    return _tpe(sampler_seed(config.seed, index))


def claim_worker_index(study: optuna.Study, me: str | None = None) -> int:
    """The lowest worker index of the study that no worker has claimed yet, claimed for ``me``
    (default :func:`worker_id`) and recorded on the study as ``worker.<index>``. The first worker
    of a study is 0; a resumed run is a new worker and takes the next index."""
    me = me or worker_id()
    index = 0
    while True:
        key = f"{WORKER_ATTR}{index}"
        if key not in study.user_attrs:
            study.set_user_attr(key, me)
            time.sleep(0.05)  # a worker that claimed the same index at the same moment wrote last: re-read
            if study.user_attrs.get(key) == me:
                return index
        index += 1


def seed_sampler(study: optuna.Study, config: SearchConfig) -> int:
    """Claim a worker index and give ``study`` the sampler seeded from (seed, index); returns the index."""
    index = claim_worker_index(study)
    study.sampler = _sampler(config, index)
    return index


MEDIAN_WARMUP_EPOCHS = 1
"""The median pruner judges no trial on its first epoch: under the default protocol, epoch-1 accuracies
rank architectures at Spearman 0.45 with the final ones, epoch-2 accuracies at 0.84 (bench/proxy_fidelity.py,
docs/PROXY_FIDELITY.md)."""


def search_pruner(objective: str, pruner: str | None, *, rungs: Sequence[int] = ()) -> str:
    """The pruner of a new search of ``objective``: ``pruner`` as given, or for None the objective's
    :data:`DEFAULT_PRUNERS`. :class:`StudyConfigError` (one line) for a choice that would silently do
    nothing: median or Hyperband on a pareto search (Optuna prunes no multi-objective trial), or a
    rung schedule (``rungs``) for a pruner other than ``rungs``."""
    chosen = pruner or DEFAULT_PRUNERS[objective]
    if objective == "pareto" and chosen in ("median", "hyperband"):
        raise StudyConfigError(
            f"--pruner {chosen} cannot prune a pareto search (Optuna prunes no multi-objective trial): "
            "use --pruner rungs (its default: trials dominated at a rung stop) or --pruner none"
        )
    if rungs and chosen != "rungs":
        raise StudyConfigError(f"--rungs sets where --pruner rungs judges; the search's pruner is {chosen} (add --pruner rungs)")
    return chosen


def _pruner(config: SearchConfig) -> optuna.pruners.BasePruner:
    pruner = _unlagged_pruner(config)
    if config.lag > 0 and not isinstance(pruner, optuna.pruners.HyperbandPruner):  # its brackets read the storage
        return LaggedPruner(pruner, config.lag)
    return pruner


def _unlagged_pruner(config: SearchConfig) -> optuna.pruners.BasePruner:
    if config.pruner == "rungs" and config.objective == "accuracy":  # pareto: search.pruning's own rule in _train
        from search.pruning import RungPruner, Rungs, default_rungs

        return RungPruner(Rungs(config.rungs or default_rungs(config.proxy.epochs)))
    # pareto: Optuna prunes no multi-objective trial (a study stored with median or hyperband, which
    # search_pruner refuses now, ran unpruned and still does)
    if config.objective == "pareto" or config.pruner == "none":
        return optuna.pruners.NopPruner()
    if config.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=config.proxy.epochs)
    return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=MEDIAN_WARMUP_EPOCHS)


def list_studies(storage: BaseStorage) -> list[str]:
    """Names of the studies in a storage."""
    return [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]


def open_study(
    name: str, storage: BaseStorage, config: SearchConfig | None, *, resume: bool = False, kind: str | None = None
) -> tuple[optuna.Study, SearchConfig, bool]:
    """Create the study, or join it when it exists (its settings must equal ``config``).

    With ``resume`` the study must exist and its stored settings are used. ``kind`` (default: ``config``'s): an
    existing study of another kind (a search joined by a sweep) is refused. Returns the study, its settings and
    whether this call created it (the creator enqueues the baselines).
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # e3d prints its own line per trial
    existing = name in list_studies(storage)
    if resume and not existing:
        others = ", ".join(list_studies(storage)) or "none"
        raise StudyConfigError(f"no study {name!r} to resume in this storage (studies there: {others})")
    if existing:
        study = optuna.load_study(study_name=name, storage=storage)
        stored = study.user_attrs.get(CONFIG_ATTR)
        for _ in range(50):  # its creator stores the settings right after creating it
            if stored is not None:
                break
            time.sleep(0.2)
            stored = study.user_attrs.get(CONFIG_ATTR)
        if stored is None:
            raise StudyConfigError(f"study {name!r} exists but was not made by e3d search")
        stored_config = SearchConfig.from_dict(stored)
        kind = kind or (config.kind if config is not None else None)
        if kind is not None and stored_config.kind != kind:
            raise StudyConfigError(f"study {name!r} is a {stored_config.kind}, not a {kind}; use another --study-name or --out")
        if config is not None and not resume and stored_config.shared() != config.shared():
            raise _other_settings(name, _diff(stored_config.shared(), config.shared()))
        return _with_sampler(study, stored_config), stored_config, False
    assert config is not None
    try:
        study = optuna.create_study(study_name=name, storage=storage, directions=config.directions)
    except optuna.exceptions.DuplicatedStudyError:  # another worker created it just now
        return open_study(name, storage, config)
    study.set_user_attr(CONFIG_ATTR, config.to_dict())
    return _with_sampler(study, config), config, True


def _with_sampler(study: optuna.Study, config: SearchConfig) -> optuna.Study:
    return optuna.load_study(study_name=study.study_name, storage=study._storage, sampler=_sampler(config), pruner=_pruner(config))


SETTINGS_ATTR = "e3d_settings"
"""Study user attribute: settings of the command that made the study which its config does not hold."""


def check_settings(study: optuna.Study, name: str, settings: dict[str, Any], *, created: bool) -> None:
    """Store ``settings`` on a study just created; for one joined, :class:`StudyConfigError` where they differ
    from the stored ones (a worker joining a sweep of 2 seeds with ``--seeds 3`` would train no third seed; one
    with a shorter ``--heartbeat`` would fail the others' live trials as stale)."""
    if created:
        study.set_user_attr(SETTINGS_ATTR, settings)
        return
    stored = study.user_attrs.get(SETTINGS_ATTR, {})
    known = [k for k in settings if k in stored]  # a study made before a setting was stored is not judged by it
    if diff := _diff({k: stored[k] for k in known}, {k: settings[k] for k in known}):
        raise _other_settings(name, diff)


def _other_settings(name: str, diff: str) -> StudyConfigError:
    return StudyConfigError(
        f"study {name!r} exists with other settings ({diff}); pass --resume to continue it, or use another --study-name"
    )


def _diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> str:
    out = []
    for k in sorted(set(a) | set(b)):
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            d = _diff(a[k], b[k], f"{prefix}{k}.")
            if d:
                out.append(d)
        elif a.get(k) != b.get(k):
            out.append(f"{prefix}{k}: stored {a.get(k)!r}, given {b.get(k)!r}")
    return "; ".join(out)


def presets_in_budget(config: SearchConfig, *, latency: Callable[[NetSpec], float] | None = None) -> list[tuple[str, float, int]]:
    """(family, width, macs) of the paper's presets of the study's families that fit its analytic budget,
    and its latency bound too when ``latency`` prices one (:func:`search.budget.screen`)."""
    budget = config.budget if latency is not None else dataclasses.replace(config.budget, latency_ms=None)
    out = []
    for family, width in paper_presets(config.families):
        spec = spec_from_params(preset_params(family, width), clip=config.budget.clip)
        verdict = screen(spec, budget, latency=latency)
        if verdict.feasible:
            out.append((family, width, verdict.cost.macs))
    return out


def enqueue_baselines(study: optuna.Study, config: SearchConfig) -> list[tuple[str, float]]:
    """Enqueue the paper's presets that fit the analytic budget; returns (family, width) of each."""
    chosen = [(family, width) for family, width, _ in presets_in_budget(config)]
    for family, width in chosen:
        study.enqueue_trial(preset_params(family, width), user_attrs={"source": "baseline"})
    return chosen


def count_trained(study: optuna.Study, *, source: str | None = None) -> int:
    """Trials that were trained to the end or pruned (or failed in training), optionally of one source."""
    return sum(trained(t, source=source) for t in study.get_trials(deepcopy=False))


def trained(t: FrozenTrial, *, source: str | None = None) -> bool:
    """Whether ``t`` finished trained to the end, pruned or failed in training (and, given ``source``,
    is a baseline for ``"baseline"``, else not one)."""
    a = t.user_attrs
    if not t.state.is_finished() or not a.get("trained") or (t.state == TrialState.FAIL and "error" not in a):
        return False
    return source is None or (a.get("source") == "baseline") == (source == "baseline")


# -- the objective ----------------------------------------------------------------------------------


@dataclass
class ProxyData:
    """The proxy train and validation sets, loaded once per worker."""

    train: Any
    val: Any
    num_classes: int
    task: str
    test: Any = None
    """The test split: loaded for finalization only, so nothing that selects can read it."""


def load_proxy(proxy: ProxyConfig, *, progress: bool = True, test: bool = False) -> ProxyData:
    """Open the proxy datasets (the built-in task, generated and cached on first use, or a path);
    the test split too with ``test`` (finalization only)."""
    from search.data import open_dataset

    source = proxy.data or proxy.task
    common: dict[str, Any] = {"format": proxy.data_format, "clip": proxy.clip, "seed": proxy.data_seed, "progress": progress}
    sizes = {"train": proxy.train_samples, "val": proxy.val_samples, "test": proxy.test_samples}

    def split(name: str) -> Any:
        if proxy.data:  # a dataset's own splits, whole
            return open_dataset(source, split=name, **common)
        return open_dataset(source, split=name, num_samples=sizes[name], **common)

    train = split("train")
    return ProxyData(train, split("val"), int(train.num_classes), source, split("test") if test else None)


@dataclass
class Objective:
    """Sample, screen, train, score: one trial."""

    config: SearchConfig
    data: ProxyData
    latency: Callable[[NetSpec], float] | None = None
    on_trained: Callable[[optuna.Trial, Screen, dict[str, Any]], None] | None = None
    cpu_budget_s: float | None = None
    """CPU seconds the searched trials may use together: a searched trial stops between epochs once they
    are spent (:func:`search.fidelity.stop_if_budget_spent`), so workers overshoot by an epoch, not a trial."""
    n_trials: int | None = None
    """The trained searched trials a lagged search runs: a searched trial numbered after the last of
    them is not trained (:func:`search.lagged.surplus`), so that the seed decides which trials count."""
    last_model: Any = field(default=None, init=False, repr=False)
    """The network :meth:`_train` trained last (its SGS bins are measured after training)."""

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        """Run one trial (returns accuracy, or [accuracy, macs M(, latency)] for ``pareto``)."""
        cfg = self.config
        if self._surplus(trial):
            trial.set_user_attr(SURPLUS_ATTR, True)
            raise optuna.TrialPruned(f"the search has its {self.n_trials} trained trials before trial {trial.number}")
        params = sample_params(trial, cfg.families, sgs=cfg.sgs)
        spec = spec_from_params(params, clip=cfg.budget.clip, num_classes=self.data.num_classes)
        seed = int(trial.user_attrs.get("seed", cfg.seed))
        verdict, proxy_spec, reason, bins = self._screen(spec, seed)
        feasible = proxy_spec is not None
        attrs = self._attrs(trial, params["family"], spec, verdict, feasible=feasible, reason=reason, seed=seed, bins=bins)
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        # the sampler learns the feasible region from these (<= 0: within the bound); a candidate
        # within budget that cannot run at the proxy clip counts as infeasible too
        violations = verdict.constraints if verdict.feasible == feasible else (1.0, 1.0, 1.0)
        if not (feasible and spec.sgs):  # a trained SGS network's constraints are its trained cost's
            _constrain(trial, violations)
        if proxy_spec is None:
            return 0.0 if cfg.objective == "accuracy" else self._values(0.0, verdict)
        accuracy, verdict = self._trained(trial, spec, proxy_spec, seed, verdict, violations)
        if self.on_trained is not None:
            self.on_trained(trial, verdict, attrs)
        return accuracy if cfg.objective == "accuracy" else self._values(accuracy, verdict)

    def _surplus(self, trial: optuna.Trial) -> bool:
        """In a lagged search of :attr:`n_trials` trials without a CPU budget, whether this searched
        trial comes after the last of them by number (waits until that is known)."""
        cfg = self.config
        if cfg.lag <= 0 or self.n_trials is None or self.cpu_budget_s is not None or trial.user_attrs.get("source") == "baseline":
            return False
        return surplus(trial.study, trial.number, self.n_trials, lambda t: trained(t, source="search"))

    def _screen(self, spec: NetSpec, seed: int) -> tuple[Screen, NetSpec | None, str, list[Bins] | None]:
        """The budget screen's verdict (with latency when asked), the spec at the proxy clip (None: not trained),
        the reason it is not, and an SGS network's bins on the proxy validation clips (:meth:`_sgs_bins`)."""
        cfg = self.config
        try:
            proxy_spec: NetSpec | None = validate_for_clip(spec, cfg.proxy.clip, batch_size=cfg.proxy.batch_size)
            clip_reason = ""
        except SpecError as e:
            proxy_spec, clip_reason = None, str(e)
        bins = self._sgs_bins(proxy_spec, seed) if spec.sgs and proxy_spec is not None else None
        verdict = screen(spec, cfg.budget, latency=self.latency, bins=bins)
        if verdict.feasible and verdict.latency_ms is None and cfg.measure_latency and self.latency is not None:
            verdict = dataclasses.replace(verdict, latency_ms=self.latency(spec))
        if not verdict.feasible:
            return verdict, None, verdict.reason, bins
        return verdict, proxy_spec, clip_reason or verdict.reason, bins

    def _attrs(
        self, trial: optuna.Trial, family: str, spec: NetSpec, verdict: Screen, *, feasible: bool, reason: str, seed: int, bins: Any
    ) -> dict[str, Any]:
        """The user attributes a trial records before training: what it is, its cost and its screen."""
        source = trial.user_attrs.get("source", "search")
        c = verdict.cost
        attrs: dict[str, Any] = {
            "source": "retry" if source != "baseline" and _retried(trial) else source,
            "family": family,
            "width_mult": spec.width_mult,
            "summary": spec.summary(),
            "spec": spec.to_json(),
            "macs": c.macs,
            "params": c.params,
            "paper_mflops": round(c.paper_flops / 1e6, 3),
            "activations": c.activations,
            "feasible": feasible,
            "rejected_reason": reason,
            "latency_ms": verdict.latency_ms,
            "seed": seed,
            "task": self.data.task,
            "worker": worker_id(),
            "cpu": detect_cpu().describe(),
        }
        if spec.sgs:
            attrs["macs_upper_bound"] = spec_totals(spec).macs
            attrs["macs_untrained"] = c.macs if bins else None
        return attrs

    def _trained(
        self, trial: optuna.Trial, spec: NetSpec, proxy_spec: NetSpec, seed: int, verdict: Screen, violations: tuple[float, float, float]
    ) -> tuple[float, Screen]:
        """Train the candidate and record how it did: its score (the test split's for a final run) and
        its verdict (an SGS network's from its trained cost)."""
        try:  # stopped here (in the write too), the trial is marked interrupted by _Guarded
            trial.set_user_attr("trained", True)
            accuracy, best, epochs = self._train(trial, proxy_spec, seed)
        except BaseException:
            if spec.sgs:  # stopped before its trained cost exists: the screen's estimate
                _constrain(trial, violations)
            raise
        trial.set_user_attr("accuracy", accuracy)
        trial.set_user_attr("best_accuracy", best)
        trial.set_user_attr("epochs", epochs)
        if spec.sgs:
            if self.last_model is not None and self.data.val is not None:
                verdict = self._after_training(trial, spec, verdict)
            _constrain(trial, verdict.constraints)
        if self.config.kind == "final":
            accuracy = self._test(trial)
        self.last_model = None
        return accuracy, verdict

    def _sgs_bins(self, proxy_spec: NetSpec, seed: int) -> list[Bins] | None:
        """Bins the proxy validation clips keep in the untrained network at the proxy clip (None: no data)."""
        if self.data.val is None:
            return None
        import torch

        from space.modules import build

        torch.manual_seed(seed)  # the same initial weights as the network _train builds
        p = self.config.proxy
        return dataset_bins(build(proxy_spec), self.data.val, batch_size=2 * p.batch_size, device=p.device)

    def _after_training(self, trial: optuna.Trial, spec: NetSpec, verdict: Screen) -> Screen:
        """Measure the trained network's mean cost over the proxy validation set and record it."""
        p = self.config.proxy
        cost = data_cost(spec, dataset_bins(self.last_model, self.data.val, batch_size=2 * p.batch_size, device=p.device))
        mean = cost.mean_cost()
        trial.set_user_attr("macs", mean.macs)
        trial.set_user_attr("paper_mflops", round(mean.paper_flops / 1e6, 3))
        trial.set_user_attr("activations", mean.activations)
        trial.set_user_attr("macs_min", cost.min_macs)
        trial.set_user_attr("macs_max", cost.max_macs)
        trial.set_user_attr("sgs_mean_bins", [round(b, 3) for b in cost.mean_bins()])
        budget = self.config.budget.mflops
        macs_x = verdict.constraints[0]
        if budget is not None:
            macs_x = mean.macs / (budget * 1e6) - 1
            if macs_x > 0:
                trial.set_user_attr("feasible", False)
                trial.set_user_attr("rejected_reason", f"after training: mean macs {mean.macs / 1e6:.1f} M > {budget:g} M")
        return dataclasses.replace(verdict, cost=mean, constraints=(macs_x, *verdict.constraints[1:]), feasible=macs_x <= 0)

    def _test(self, trial: optuna.Trial) -> float:
        """A finalization run's score: clip top-1 (%) of the trained network on the test split."""
        from search.train import evaluate

        if self.data.test is None or self.last_model is None:
            raise RuntimeError("a final run needs the test split and the trained network")
        p = self.config.proxy
        test = evaluate(self.last_model, self.data.test, batch_size=2 * p.batch_size, device=p.device, num_workers=p.num_workers)
        trial.set_user_attr("test_accuracy", test["top1"])
        trial.set_user_attr("test_video_accuracy", test["video_top1"])
        return float(test["top1"])

    def _values(self, accuracy: float, verdict: Screen) -> list[float]:
        values = [accuracy, verdict.cost.macs / 1e6]
        if self.config.budget.latency_ms is not None:
            values.append(verdict.latency_ms if verdict.latency_ms is not None else float("inf"))
        return values

    def _train(self, trial: optuna.Trial, spec: NetSpec, seed: int) -> tuple[float, float, int]:
        from search.train import TrainConfig

        p = self.config.proxy
        tc = TrainConfig(
            epochs=p.epochs,
            batch_size=p.batch_size,
            lr=p.lr,
            schedule=p.schedule,
            warmup=p.warmup,
            max_seconds=p.trial_seconds,
            num_workers=p.num_workers,
            device=p.device,
            seed=seed,
            threads=p.threads,
            precision=p.precision,
        )
        prune = self.config.objective == "accuracy"
        from search.pruning import search_rungs, stop_if_dominated

        rungs = search_rungs(pruner=self.config.pruner, epochs=p.epochs, rungs=self.config.rungs)
        searched = trial.user_attrs.get("source", "search") not in QUEUED_SOURCES
        budget_s = self.cpu_budget_s if searched else None

        def report(epoch: int, metrics: dict[str, float]) -> None:
            cpu = trial_cpu_seconds()  # the clock CpuTimed stores at the trial's end
            if budget_s is not None and cpu is not None and epoch + 1 < p.epochs:
                stop_if_budget_spent(trial, cpu, budget_s, epoch=epoch + 1, accuracy=metrics["val_top1"])
            if not prune and rungs is not None and epoch + 1 < p.epochs:  # Optuna prunes no multi-objective trial
                stop_if_dominated(trial, epoch=epoch + 1, accuracy=metrics["val_top1"], rungs=rungs, lag=self.config.lag)
            if prune:
                trial.report(metrics["val_top1"], epoch)
                # pruning saves the epochs left; after the last one there is nothing to save
                if epoch + 1 < p.epochs and trial.should_prune():
                    acc = metrics["val_top1"]
                    stop_trial(trial, f"val top-1 {acc:.1f}% at epoch {epoch + 1}", epoch=epoch + 1, accuracy=acc)

        result = self._fit(trial, spec, seed, tc, report)
        return result.val_top1, result.best_val_top1, result.epochs_run

    def _fit(
        self, trial: optuna.Trial, spec: NetSpec, seed: int, tc: TrainConfig, report: Callable[[int, dict[str, float]], None]
    ) -> FitResult:
        """Build ``spec`` with ``seed``'s weights and train it as ``tc.precision`` resolves; when ``auto``
        chose bf16 and the loss stops being finite, train it again from the same start in fp32 (recorded
        as ``diverged``), so that ``auto`` never loses a trial to half precision."""
        import torch

        from search.train import NonFiniteLossError, fit, resolve_exec
        from space.modules import build

        for half in (True, False):
            torch.manual_seed(seed)
            model = self.last_model = build(spec)
            run_as = resolve_exec(model, self.data.train, tc, half=half)
            trial.set_user_attr("precision", run_as.label)
            trial.set_user_attr("run_as", run_as.as_dict())
            try:
                batches = progress_recorder(trial)
                return fit(model, self.data.train, self.data.val, tc, on_epoch=report, on_batch=batches, progress=False, exec_config=run_as)
            except NonFiniteLossError as e:
                if not (half and tc.precision == "auto" and run_as.precision != "fp32"):
                    trial.set_user_attr("error", f"non-finite loss: {e}")
                    raise
                trial.set_user_attr("diverged", f"{e}; trained again from the same start in fp32")
        raise AssertionError("unreachable: the fp32 pass returns or raises")


PROGRESS_ATTR = "progress"
"""Trial user attribute ``[epoch index, clips done, clips in the epoch]`` of a trial in training,
written every :data:`PROGRESS_EVERY` seconds at most: what progress displays read, on any worker."""
PROGRESS_EVERY = 5.0


def progress_recorder(trial: optuna.Trial, every: float = PROGRESS_EVERY) -> Callable[[int, int, int], None]:
    """An ``on_batch`` callback for :func:`search.train.fit` that records the trial's progress in the
    study (:data:`PROGRESS_ATTR`), throttled to one write per ``every`` seconds and per epoch's end."""
    last = [-math.inf]

    def record(epoch: int, done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= every or done >= total:
            last[0] = now
            trial.set_user_attr(PROGRESS_ATTR, [epoch, done, total])

    return record


def _constrain(trial: optuna.Trial, violations: tuple[float, float, float]) -> None:
    """Tell the sampler the trial's relative excess over each bound (<= 0: within it)."""
    for key, v in zip(CONSTRAINTS, violations, strict=True):
        if key not in trial.constraints:  # a retried trial inherits its original's
            trial.set_constraint(key, v)


def latency_meter(mode: str = "optimized") -> Callable[[NetSpec], float]:
    """Median ms per batch of 8 clips of a spec's clip on this machine, on the ``optimized``
    inference path (what would deploy; see ``profiler.optimize``) or ``eager``, at this process's torch
    thread count. Memoised per spec.

    Each spec is timed in a child process (:class:`profiler.measuring.MeasuringProcess`, a fresh one every
    :data:`~profiler.measuring.NETWORKS_EVERY` networks): tracing leaves about 25 MB per network in the
    process that traces, which a long search would otherwise pile up in itself."""
    import torch

    from profiler.measuring import NETWORKS_EVERY, MeasuringProcess

    seen: dict[NetSpec, float] = {}
    proc = MeasuringProcess(every=NETWORKS_EVERY)  # its child exits when the meter is dropped, or at exit

    def measure(spec: NetSpec) -> float:
        if spec not in seen:
            seen[spec] = proc(time_spec, spec, mode, torch.get_num_threads())
        return seen[spec]

    return measure


def time_spec(spec: NetSpec, mode: str, threads: int) -> float:
    """Median ms per batch of 8 clips of ``spec`` (see :func:`latency_meter`), built, traced and timed on
    ``threads`` torch threads: more would slow another job's training, and its calibration, beside it.

    A network with SGS layers cannot be traced (its shapes depend on the clip): it is timed eagerly,
    on random clips (unrelated frames: close to its most expensive clip). The optimized graph is timed, not
    checked against eager (as latency tables time theirs): the timing does not depend on the values, and the
    check, relative to the largest score, failed once in a search on random weights (5.4e-4 against the
    tolerance 1e-4, 2026-12-07; not reproduced over 25 other draws of that network's weights, 3e-7 to 8e-7),
    which stopped the whole search. ``e3d export --optimize`` checks the model it writes."""
    from profiler.latency import measure_latency, torch_threads
    from space.modules import build

    with torch_threads(threads):
        model: Any = build(spec).eval()
        if mode == "optimized" and not spec.sgs:
            from profiler.optimize import optimize_for_inference

            # traced at batch 8, so the oneDNN fuser is compiled for the timed shape
            model = optimize_for_inference(model, input_shape=spec.input_shape, batch_size=8, check=False)
        return measure_latency(model, batch_size=8, clip=spec.clip, warmup=2, repeats=3).median_ms


QUEUED_ATTRS = ("source", "seed", "label", "role", "val_accuracy")
"""User attributes a queued trial carries from its enqueuer (a final run's finalist too)."""


def requeue_interrupted(study: optuna.Study) -> int:
    """Enqueue again every trial that an interruption (Ctrl-C) stopped in training, with its
    params and the attributes it was queued with (:data:`QUEUED_ATTRS`), unless that was done
    already. Returns how many were enqueued."""
    trials = study.get_trials(deepcopy=False)
    done = {t.user_attrs.get("retry_of") for t in trials}
    n = 0
    for t in trials:
        if t.state == TrialState.FAIL and t.user_attrs.get("interrupted") and t.number not in done:
            attrs: dict[str, Any] = {k: t.user_attrs[k] for k in QUEUED_ATTRS if k in t.user_attrs}
            params = {**t.system_attrs.get("fixed_params", {}), **t.params}  # queued ones it had not suggested yet too
            if not params:
                continue  # a searched trial stopped before it sampled: the search samples anew anyway
            study.enqueue_trial(params, user_attrs={**attrs, "retry_of": t.number})
            n += 1
    return n


def enqueue_sweep(study: optuna.Study, families: tuple[str, ...], seeds: tuple[int, ...], *, sgs: bool = False) -> int:
    """Enqueue every paper preset of ``families`` once per seed (seed-major); returns the count.

    With ``sgs`` each preset runs twice: as it is, and with an SGS layer after its first stage, of the
    default bin width (the study's config must sample ``<family>.sgs``: ``SearchConfig(sgs=True)``).
    """
    n = 0
    for seed in seeds:
        for family, width in paper_presets(families):
            params = preset_params(family, width)
            with_sgs = {**params, f"{family}.sgs": SPACE[family].sgs_after[0], f"{family}.sgs_bin_width": SGSSpec.bin_width}
            variants = [params, with_sgs] if sgs and SPACE[family].sgs_after else [params]
            for p in variants:
                study.enqueue_trial(p, user_attrs={"source": "sweep", "seed": seed})
                n += 1
    return n


# -- workers ----------------------------------------------------------------------------------------


@dataclass
class WorkerReport:
    """What one worker did."""

    trained: int = 0
    rejected: int = 0
    pruned: int = 0
    failed: int = 0
    index: int = 0
    """This worker's index in the study (its sampler is seeded from the study's seed and it)."""
    seconds: float = 0.0
    lines: list[str] = field(default_factory=list)

    def count(self, t: FrozenTrial) -> None:
        """Count a finished trial: rejected by the screen, pruned, failed or trained."""
        a = t.user_attrs
        if a.get(SURPLUS_ATTR):
            return
        if not a.get("feasible", True):
            self.rejected += 1
        elif t.state == TrialState.PRUNED:
            self.pruned += 1
        elif t.state == TrialState.FAIL:
            self.failed += 1
        elif a.get("trained"):
            self.trained += 1


def trial_line(t: FrozenTrial) -> str:
    """One line about a finished trial: its network, cost and validation accuracy (and a final run's test accuracy)."""
    a = t.user_attrs
    if a.get(SURPLUS_ATTR):
        return f"trial {t.number:>3} not run: the search had its trained trials before it"
    head = f"trial {t.number:>3} {a.get('source', ''):<8} {a.get('summary', '?')}"
    macs = f"macs {a.get('macs', 0) / 1e6:7.1f} M"
    if not a.get("feasible", True):
        return f"{head}  {macs}  rejected: {a.get('rejected_reason', '')}"
    acc, test = a.get("accuracy"), a.get("test_accuracy")  # a final run is scored on the test split (Objective._test)
    acc_s = f"val {acc:5.1f}%" if acc is not None else "val   -  "
    acc_s += f"  test {test:5.1f}%" if test is not None else ""
    took = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else 0.0
    lat = f"  {a['latency_ms']:.0f} ms/batch" if a.get("latency_ms") is not None else ""
    state = {"COMPLETE": "", "PRUNED": "  pruned", "FAIL": f"  FAILED {a.get('error', '')}"}.get(t.state.name, t.state.name)
    if "reused_from" in a:
        state += f"  (the run of trial {a['reused_from']}: same network and seed)"
    return f"{head}  {macs}  params {a.get('params', 0) / 1e6:5.2f} M{lat}  {acc_s}  {a.get('epochs', 0)} ep {took:5.0f} s{state}"


class QuietReported(logging.Filter):
    """Drops Optuna's log records (a traceback, then "failed with value None") of a trial that e3d reports in
    a line of its own: stopped by Ctrl-C (not an error; the CLI says how to resume), failed by a non-finite
    loss (its trial line says so), failed by another worker while this one was paused, or by the storage (the
    worker stops with :class:`StorageError`). A trial failed by any other error keeps its first record, with
    the error."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for the records to drop."""
        from search.train import NonFiniteLossError

        reported = (KeyboardInterrupt, NonFiniteLossError, optuna.exceptions.UpdateFinishedTrialError, *STORAGE_FAILURES)
        if record.exc_info and isinstance(record.exc_info[1], reported):
            return False
        return "failed with value None" not in record.getMessage()


_QUIET_REPORTED = QuietReported()


class _Guarded:
    """The objective, remembering its trial; a trial that another worker finished meanwhile (this
    worker was paused past the heartbeat grace: SIGSTOP, a suspended laptop) ends as
    :class:`optuna.exceptions.UpdateFinishedTrialError` instead of returning into a finished trial."""

    def __init__(self, objective: Callable[[optuna.Trial], float | list[float]]) -> None:
        self.objective = objective
        self.taken_over: int | None = None
        """The number of this worker's trial that another worker finished, if that happened."""

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        self.taken_over = None
        let_go()  # the previous trial is recorded (or its tell failed): interrupts land again
        try:
            value = self.objective(trial)
        except optuna.TrialPruned:
            self._check(trial)
            hold()  # until Optuna has recorded it (run_worker's callback lets go)
            raise
        except KeyboardInterrupt:  # in training or before it (an enqueued preset too): the next worker runs it again
            trial.set_user_attr("interrupted", True)
            raise
        except Exception:
            self._check(trial)
            raise
        self._check(trial)
        if self.taken_over is not None:
            raise optuna.exceptions.UpdateFinishedTrialError(f"trial {trial.number} was finished by another worker")
        hold()
        return value

    def _check(self, trial: optuna.Trial) -> None:
        if trial.study._storage.get_trial(trial._trial_id).state.is_finished():  # only optuna's tell finishes our own
            self.taken_over = trial.number


_log = logging.getLogger("e3d.search")


def _taken_over(guarded: _Guarded) -> bool:
    """Whether the worker's last trial was failed by another worker (its heartbeat went stale) and so
    could not be told: logged in one line; the worker goes on and the trial's retry runs anyway."""
    if guarded.taken_over is None:
        return False
    _log.warning(
        "trial %d: this worker was paused longer than the heartbeat grace period, so another worker failed "
        "the trial and queued it again; going on with the next trial",
        guarded.taken_over,
    )
    return True


def run_worker(
    study: optuna.Study,
    config: SearchConfig,
    data: ProxyData,
    *,
    n_trials: int,
    timeout: float | None = None,
    latency: Callable[[NetSpec], float] | None = None,
    on_trial: Callable[[FrozenTrial], None] | None = None,
    objective: Callable[[optuna.Trial], float | list[float]] | None = None,
    cpu_budget_s: float | None = None,
) -> WorkerReport:
    """Run trials until the study holds ``n_trials`` trained searched trials (all baselines are
    trained too), or its searched trials have used ``cpu_budget_s`` CPU seconds (every trial stores
    its CPU time, :class:`search.fidelity.CpuTimed`), or ``timeout`` seconds pass. Several workers
    may run this on one study; each checks between its trials, so together they may train up to
    (workers - 1) more.
    Before returning, a worker waits for the trials still running elsewhere to finish or to be
    failed as stale (their worker died), and runs the retries of the latter. ``objective`` replaces
    the search's :class:`Objective` (``e3d scale`` trains the points it enqueued)."""
    report = WorkerReport()
    start = time.perf_counter()

    unforeseen: list[str] = []

    def callback(st: optuna.Study, t: FrozenTrial) -> None:
        report.count(t)
        if on_trial is not None:
            on_trial(t)
        track_unforeseen(unforeseen, t, config.budget)
        check_something_trains(st, unforeseen)
        if _done(st, n_trials, cpu_budget_s):
            st.stop()
        let_go()  # the trial is recorded and reported: an interrupt that came meanwhile is raised now

    report.index = seed_sampler(study, config)
    requeue_interrupted(study)
    objective = objective or Objective(config, data, latency, cpu_budget_s=cpu_budget_s, n_trials=n_trials)
    timed = objective if isinstance(objective, CpuTimed) else CpuTimed(objective)
    from search.train import NonFiniteLossError

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna.study._optimize").addFilter(_QUIET_REPORTED)
    try:
        while timeout is None or time.perf_counter() - start < timeout:
            if not _done(study, n_trials, cpu_budget_s):
                left = None if timeout is None else timeout - (time.perf_counter() - start)
                guarded = _Guarded(timed)
                try:
                    study.optimize(guarded, timeout=left, callbacks=[callback], catch=(NonFiniteLossError,), gc_after_trial=True)
                except (optuna.exceptions.UpdateFinishedTrialError, ValueError, AssertionError):
                    # optuna cannot tell a trial another worker failed ("Cannot tell a FAIL trial")
                    if not _taken_over(guarded):
                        raise
                continue
            if not _wait_for_others(study):
                break
    except STORAGE_FAILURES as e:  # a full disk under a SQLite study, a database gone away: one line, not a traceback each
        raise storage_failed(e) from None
    finally:
        let_go()  # an interrupt held while the last trial was recorded is not lost
    report.seconds = time.perf_counter() - start
    return report


STORAGE_FAILURES = (optuna.exceptions.StorageInternalError, sqlalchemy.exc.OperationalError)
"""What Optuna's database storage raises when the database cannot be written or reached."""


def storage_failed(e: BaseException) -> StorageError:
    """The one-line :class:`StorageError` for one of :data:`STORAGE_FAILURES`."""
    return StorageError(f"the study's storage failed: {root_cause(e)}; every trial recorded before is kept (--resume goes on)")


def root_cause(e: BaseException) -> str:
    """The first line of the innermost exception that ``e`` was raised from (``database or disk is full``)."""
    while (e.__cause__ or e.__context__) is not None:
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


WAIT_POLL_S = 0.5
"""How often a worker done with its share looks whether the trials running elsewhere have finished."""


def _wait_for_others(study: optuna.Study) -> bool:
    """A worker done with its share: True once there is work again (a trial to retry), or after a heartbeat
    with trials still running elsewhere; False as soon as none runs (looked at every :data:`WAIT_POLL_S`, so
    that the last worker to finish is not kept waiting up to a heartbeat for this one). A trial whose worker
    died fails once its heartbeat is older than the grace period, and is re-enqueued for this worker to run."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    # an RDB storage reaches the study wrapped in a cache, which answers for it (isinstance would not)
    heartbeat = getattr(study._storage, "get_heartbeat_interval", lambda: None)()
    deadline = time.monotonic() + (heartbeat or 0)
    while True:
        if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            return True
        if heartbeat is None or not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            return False
        if time.monotonic() >= deadline:
            return True
        time.sleep(WAIT_POLL_S)


NOTHING_TRAINS = 50
"""Candidates in a row that met the analytic bounds and were still rejected before training (:func:`track_unforeseen`),
in a study where none has trained, after which a worker gives up (:func:`check_something_trains`)."""


def track_unforeseen(reasons: list[str], t: FrozenTrial, budget: Budget) -> None:
    """Keep in ``reasons`` the rejection reasons of a worker's latest candidates that met the analytic bounds but were
    rejected all the same (by latency, by the proxy clip); a candidate that was not rejected empties it, one over
    the analytic bounds leaves it as it is. ``feasible_families`` makes sure the analytic bounds can be met (a tight
    budget may take hundreds of candidates to meet them); what else rejects every candidate, nothing foresees."""
    a = t.user_attrs
    if a.get(SURPLUS_ATTR):
        return
    if a.get("feasible", True):
        reasons.clear()
    elif budget.within_analytic(a.get("macs", 0), a.get("params", 0)):
        reasons.append(str(a.get("rejected_reason", "")))


def check_something_trains(study: optuna.Study, reasons: Sequence[str]) -> None:
    """:class:`NothingTrainsError` once ``reasons`` (:func:`track_unforeseen`) number :data:`NOTHING_TRAINS` and no
    trial of ``study`` has trained: a latency bound below every network's latency, say, would otherwise be searched
    for ever. The message counts the reasons by kind (:func:`rejection_kind`), quotes the last and gives each kind's
    advice. A study that trained once is left alone."""
    if len(reasons) < NOTHING_TRAINS or count_trained(study):
        return
    kinds = collections.Counter(rejection_kind(r) for r in reasons).most_common()
    counted = ", ".join(f"{n} {label}" for (label, _), n in kinds)
    advice = "; ".join(dict.fromkeys(advice for (_, advice), _ in kinds))
    raise NothingTrainsError(
        f"{len(reasons)} candidates in a row met the multiply-add and parameter bounds but were rejected before training, "
        f"and no trial of the study has trained ({counted}; the last: {reasons[-1]}): {advice}"
    )


def rejection_kind(reason: str) -> tuple[str, str]:
    """What rejected a candidate within the analytic bounds, from its ``rejected_reason``, as (how a count of such
    rejections reads on: ``44 by predicted latency``, the advice to a search in which none trains)."""
    if "cannot price" in reason:  # profiler.latency_table.UnpricedLayerError
        return "that the latency table cannot price", "rebuild the latency table (e3d latency-table) to cover these networks"
    if reason.startswith(("predicted latency", "latency")):
        return "by predicted latency" if reason.startswith("predicted") else "by latency", "loosen the latency budget"
    if "[at the proxy clip]" in reason:  # search.budget.validate_for_clip
        return "that cannot train at the proxy clip", "change the families or the proxy clip"
    return "for other reasons", "loosen the budget or change the families or the proxy clip"


def _done(study: optuna.Study, n_trials: int, cpu_budget_s: float | None = None) -> bool:
    if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        return False
    if cpu_budget_s is not None and cpu_seconds(study.get_trials(deepcopy=False)) >= cpu_budget_s:
        return True
    return count_trained(study, source="search") >= n_trials


__all__ = [
    "Budget",
    "ProxyConfig",
    "SearchConfig",
    "StorageError",
    "StudyConfigError",
    "count_trained",
    "enqueue_baselines",
    "feasible_families",
    "load_proxy",
    "open_storage",
    "open_study",
    "run_worker",
    "trial_line",
]
