"""``e3d scale``: complexity scaling of one network along every axis (single-axis sweeps, compound, X3D expansion)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from e3d.cli import clip_arg, positive_float, positive_int

EPILOG = """\
examples:
  e3d scale shufflenet --width-mult 0.5 --axes width,depth,frames,resolution     each axis at 0.25x-4x the cost
  e3d scale mobilenetv2 --width-mult 0.2 --axes frames --factors 0.5,2            the axis' factors as given
  e3d scale mobilenetv2 --width-mult 0.2 --compound --axes width,depth,resolution EfficientNet-style
  e3d scale shufflenet --width-mult 0.5 --expand --to 1000M --versus width        X3D-style greedy expansion
  e3d scale runs/e3d-search --expand --to 500M    a search's best.json (a run folder, or a spec file)
  e3d scale --resume --out runs/e3d-scale                                         continue after Ctrl-C

Costs are multiply-adds per clip of --clip (default: the spec's own, 16x112x112 for a preset); each
point trains on the proxy clip scaled with it (2x frames: 2x proxy frames, rendered at that size).
Axes: width (width:N for stage N), depth (depth:N), frames, resolution, expansion (MobileNetV2's expansion
ratio, ShuffleNetV1's bottleneck width).
Outputs in --out: points.csv (every point), path.csv (the expansion path), curves.png, summary.md,
trials.csv; several workers may run the same command against one --storage."""


STEP, GRID = 2.0, 2
"""Defaults of ``--step`` and ``--grid``."""


def ratio_list(text: str) -> tuple[float, ...]:
    """argparse type: comma-separated positive numbers (cost ratios)."""
    values = []
    for part in text.split(","):
        try:
            values.append(positive_float(part.strip()))
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(f"must be positive numbers like 0.5,2, got {text!r}") from None
    return tuple(values)


def number_list(text: str) -> tuple[float, ...]:
    """argparse type: comma-separated numbers (axis factors; their sign is checked per axis)."""
    try:
        return tuple(float(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be numbers like 0.5,2, got {text!r}") from None


def register(sub: Any) -> None:
    """Add the ``scale`` subcommand."""
    from e3d.commands.search import STUDY_PROXY_OPTIONS, add_proxy_args, add_storage_args, count_arg, keep_study_defaults

    p = sub.add_parser(
        "scale",
        help="scale a network along width, depth, frames, resolution (single axes, compound, X3D expansion)",
        description="Which axis buys the most accuracy per multiply-add? Trains scaled versions of one network "
        "on a proxy task: single-axis sweeps, EfficientNet-style compound scaling, or X3D-style expansion.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", nargs="?", help="a preset name, a spec JSON file, or a search run folder (its best.json)")
    g = p.add_argument_group("scaling")
    g.add_argument("--width-mult", type=positive_float, default=1.0, metavar="W", help="width of a preset target (default 1.0)")
    g.add_argument("--clip", type=clip_arg, metavar="TxHxW", help="clip the cost is counted on (default: the spec's)")
    g.add_argument("--axes", default="width,depth,frames,resolution", metavar="A,A", help="axes (default width,depth,frames,resolution)")
    mode = g.add_mutually_exclusive_group()
    mode.add_argument("--compound", action="store_true", help="EfficientNet-style: fit per-axis exponents on a grid at one step")
    mode.add_argument("--expand", action="store_true", help="X3D-style greedy expansion up to --to")
    g.add_argument("--to", type=count_arg, metavar="N", help="expansion target, multiply-adds per clip (e.g. 1000M)")
    g.add_argument("--ratios", type=ratio_list, default=(0.25, 0.5, 2.0, 4.0), metavar="R,R",
                   help="cost ratios to the base: the sweep's points, or --compound's targets (default 0.25,0.5,2,4)")  # fmt: skip
    g.add_argument("--factors", type=number_list, default=(), metavar="F,F", help="single-axis sweep at these axis factors instead")
    g.add_argument(
        "--step", type=positive_float, default=STEP, metavar="S", help=f"cost ratio per expansion step / of the grid (default {STEP:g})"
    )
    g.add_argument(
        "--grid", type=positive_int, default=GRID, metavar="K", help=f"compound grid: cost shares of 1/K per axis (default {GRID})"
    )
    g.add_argument("--versus", metavar="AXIS", help="--expand: also scale the base along AXIS alone to each step's cost (e.g. width)")
    g.add_argument("--seeds", type=positive_int, default=1, metavar="N", help="seeds 0..N-1 per point (default 1)")
    g.add_argument("--latency", action="store_true", help="also measure every point's latency on this machine (batch 8)")
    add_proxy_args(p)
    add_storage_args(p, name="e3d-scale")
    p.set_defaults(func=run)
    keep_study_defaults(p, (*SCALE_OPTIONS, *STUDY_PROXY_OPTIONS))


SCALE_OPTIONS = (
    *("width_mult", "clip", "axes", "compound", "expand", "to", "ratios", "factors", "step", "grid"),
    *("versus", "seeds", "latency"),
)
"""The scaling options stored with a study (a resumed study goes on with its own)."""


def refuse_settings_on_resume(args: argparse.Namespace) -> None:
    """With ``--resume``: :class:`search.study.StudyConfigError` naming the TARGET or each option given that the
    study stores (:func:`e3d.commands.search.refuse_on_resume`; it would be ignored)."""
    from e3d.commands.search import refuse_on_resume
    from search.study import StudyConfigError

    refuse_on_resume(args)
    if args.resume and args.target is not None:
        own = "a resumed study goes on with the study's own network; leave it out (or use another --out)"
        raise StudyConfigError(f"TARGET {args.target}: {own}")


def resolve_target(target: str, *, width_mult: float, clip: tuple[int, int, int] | None, num_classes: int) -> Any:
    """The base ``NetSpec``: a spec file, a run folder's best.json, or a preset at ``width_mult``."""
    import space
    from space.spec import NetSpec

    path = Path(target)
    if path.is_dir():
        path = path / "best.json"
        if not path.is_file():
            raise space.E3DError(f"{target} is a folder without best.json (give a spec file, a search run folder or a preset)")
    if path.is_file() or target.endswith(".json"):
        spec = NetSpec.load(path)
        spec = spec.replace(num_classes=num_classes, **({"clip": clip} if clip else {}))
    else:
        t, h, _ = clip or (16, 112, 112)
        spec = space.paper_spec(target, width_mult=width_mult, num_classes=num_classes, sample_size=h, sample_duration=t)
        if clip:
            spec = spec.replace(clip=clip)
    return spec


def _configs(args: argparse.Namespace, num_classes: int) -> tuple[Any, Any]:
    """The scaling plan's settings and the search config of a new scaling run (the options checked)."""
    from e3d.commands.search import proxy_config
    from search import scale as sc
    from search import study as st
    from search.budget import Budget
    from search.searchspace import SPACE

    if args.target is None:
        raise sc.ScaleError("give a TARGET (a preset, a spec file or a search run folder), or --resume")
    spec = resolve_target(args.target, width_mult=args.width_mult, clip=args.clip, num_classes=num_classes)
    if spec.family not in SPACE:
        raise sc.ScaleError(f"e3d scale trains the search space's families ({', '.join(SPACE)}); {spec.family} is not one")
    mode = "compound" if args.compound else "expand" if args.expand else "axes"
    if mode == "expand" and args.to is not None:
        _check_target(args.to, sc.macs(spec))
    if args.to is not None and mode != "expand":
        raise sc.ScaleError("--to sets the target of --expand")
    if args.versus and mode != "expand":
        raise sc.ScaleError("--versus compares an --expand path with one axis at equal cost")
    if args.factors and mode != "axes":
        raise sc.ScaleError("--factors is for single-axis sweeps (without --compound or --expand)")
    if args.step != STEP and mode == "axes":
        raise sc.ScaleError("--step sets the cost ratio of --expand's steps or of --compound's grid")
    if args.grid != GRID and mode != "compound":
        raise sc.ScaleError("--grid is for --compound")
    axes = tuple(a.strip() for a in args.axes.split(",") if a.strip())
    proxy = proxy_config(args)
    cfg = sc.ScaleConfig(
        spec.to_json(),
        mode,
        axes,
        ratios=args.ratios,
        factors=args.factors,
        step=args.step,
        to_macs=args.to,
        grid=args.grid,
        seeds=args.seeds,
        proxy_clip=args.proxy_clip,
        versus=args.versus,
        batch_size=proxy.batch_size,
    )
    search = st.SearchConfig(
        budget=Budget(clip=spec.clip),
        families=(spec.family,),
        proxy=proxy,
        pruner="none",
        baselines=False,
        kind="scale",
        measure_latency=args.latency,
    )
    return cfg, search


def _check_target(to: float, base: float) -> None:
    """:class:`ScaleError` for an expansion target that the base's cost already reaches: below it, or so
    near it that the expansion would stop before its first step (at ``NEAR_TARGET`` of the target)."""
    from search import scale as sc

    if to <= base:
        raise sc.ScaleError(f"--to {to / 1e6:g}M is below the base's cost ({base / 1e6:.1f} M multiply-adds per clip)")
    if base >= sc.NEAR_TARGET * to:
        least = math.ceil(base / sc.NEAR_TARGET / 1e5) / 10
        raise sc.ScaleError(
            f"--to {to / 1e6:g}M is within {1 - sc.NEAR_TARGET:.0%} of the base's cost ({base / 1e6:.1f} M multiply-adds per clip), "
            f"where the expansion stops before its first step; give at least --to {least:g}M"
        )


def _open(args: argparse.Namespace, url: str, out: Path) -> tuple[Any, Any, Any]:
    """Create or join the study at ``url`` (whose outputs go to ``out``); returns (study, search config, scale config)."""
    from search import scale as sc
    from search import study as st
    from search.data import class_names

    storage = st.open_storage(url, heartbeat=args.heartbeat)
    _check_outputs_owner(out, args.study_name, st.list_studies(storage))
    cfg = search = None
    if not args.resume:
        classes = len(class_names(args.task)) if args.data is None else st.load_proxy(_proxy(args), progress=not args.quiet).num_classes
        cfg, search = _configs(args, classes)
    study, search, created = st.open_study(args.study_name, storage, search, resume=args.resume, kind="scale")
    if created:
        assert cfg is not None
        study.set_user_attr(sc.SCALE_ATTR, cfg.to_dict())
        return study, search, cfg
    stored = None
    for _ in range(50):  # its creator stores the settings right after creating it
        stored = study.user_attrs.get(sc.SCALE_ATTR)
        if stored is not None:
            break
        time.sleep(0.2)
    if stored is None:
        raise st.StudyConfigError(f"study {args.study_name!r} exists but was not made by e3d scale")
    if cfg is not None and stored != cfg.to_dict():
        raise st.StudyConfigError(f"study {args.study_name!r} exists with another scaling plan; pass --resume, or use another --study-name")
    return study, search, sc.ScaleConfig.from_dict(stored)


def _check_outputs_owner(out: Path, name: str, studies: list[str]) -> None:
    """:class:`StudyConfigError` when ``out`` holds the scale outputs of a study other than ``name`` (its
    ``scale.json`` names another, or, from before it named one, ``name`` is not yet in the storage's ``studies``):
    this run would replace them."""
    from search import study as st

    try:
        owner = json.loads((out / "scale.json").read_text()).get("study")
    except FileNotFoundError:
        return
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        owner = None  # unreadable: whose it is, its study says
    if owner == name or (owner is None and name in studies):
        return
    whose = f"study {owner!r}" if owner else "another study"
    raise st.StudyConfigError(f"{out} holds the scale outputs of {whose}, which study {name!r} would replace; give another --out")


def _proxy(args: argparse.Namespace) -> Any:
    """The ``ProxyConfig`` of ``args`` (:func:`e3d.commands.search.proxy_config`, imported lazily)."""
    from e3d.commands.search import proxy_config

    return proxy_config(args)


class _Progress:
    """The points bar and the output files of a scaling run, kept up with its plan and trials."""

    def __init__(self, study: Any, cfg: Any, out: Path, bar: Any, *, follow_jobs: bool) -> None:
        self.study, self.cfg, self.out, self.bar = study, cfg, out, bar
        self.follow_jobs = follow_jobs  # --jobs: the jobs plan; this process follows
        self.plan: Any = None
        self.notes: list[str] = []

    def save(self) -> None:
        """Rewrite the scaling outputs of the current plan (nothing before the first)."""
        from search import scale as sc

        if self.plan is not None:
            sc.write_scale_outputs(self.out, self.cfg, self.plan, self.study.get_trials(deepcopy=False), study=self.study.study_name)

    def on_plan(self, plan: Any) -> None:
        """A new plan: the bar's total and position, its new notes, the outputs."""
        from search import scale as sc

        self.plan = plan
        self.bar.total = len(plan.points) * self.cfg.seeds
        self.bar.n = sum(r.done for r in sc.results_of(self.study.get_trials(deepcopy=False)).values())
        self.bar.refresh()
        from e3d.cli import echo

        for note in plan.notes[len(self.notes) :]:
            echo(f"note: {note}", self.bar.write)  # a closed stdout stops the notes, not the runs
        self.notes = list(plan.notes)
        self.save()

    def on_trial(self, t: Any) -> None:
        """A finished trial: its line, the bar, the plan (when following jobs) and the outputs."""
        from e3d.commands.search import show_trial
        from search import scale as sc

        show_trial(self.bar, t)
        if self.follow_jobs:  # the new plan's outputs are written by on_plan
            self.on_plan(sc.plan(self.cfg, sc.results_of(self.study.get_trials(deepcopy=False))))
        else:
            self.save()


def _run_jobs(args: argparse.Namespace, study: Any, search: Any, cfg: Any, url: str, *, latency: Any, progress: _Progress) -> Any:
    """``--jobs`` N: N worker processes work through the plan (:mod:`search.jobs`); this one follows.
    Returns the final plan."""
    from e3d.commands.search import jobs_line, run_local_jobs
    from search import scale as sc

    print(jobs_line(args.jobs, search.proxy.threads), file=sys.stderr)
    first = sc.plan(cfg, sc.results_of(study.get_trials(deepcopy=False)))
    sc.enqueue(study, cfg, first.points)  # before the jobs start, so that they do not both queue it
    progress.on_plan(first)
    run_local_jobs(args, study, url, search, n_trials=0, timeout=None, latency=latency, on_trial=progress.on_trial, scale=cfg)
    return sc.plan(cfg, sc.results_of(study.get_trials(deepcopy=False)))


def run(args: argparse.Namespace) -> int:
    """Plan the points, train them (resumably, with any number of workers), then write the curves."""
    import analysis.scaling  # noqa: F401  (matplotlib loads before training, as it always did)
    from e3d.commands.search import interrupted, local_config, meter_here, progress_bar, resume_command, run_folder, undone_on_failure

    refuse_settings_on_resume(args)
    out, url = run_folder(args)
    with undone_on_failure(out, url):
        study, search, cfg = _open(args, url, out)
    search = local_config(args, search)
    _announce(search, cfg, url)
    bar = progress_bar(args, total=0, desc="points", unit="run")
    progress = _Progress(study, cfg, out, bar, follow_jobs=getattr(args, "jobs", 1) > 1)
    latency = meter_here(args, search) if search.measure_latency else None
    started = time.perf_counter()
    try:
        final = _train(args, study, search, cfg, url, latency=latency, progress=progress)
    except KeyboardInterrupt:
        bar.close()
        progress.save()
        _report_so_far(study, out)
        return interrupted(f"every trained point is saved in {out}", resume_command(args, "scale", out, 0))
    bar.close()
    progress.plan = final
    progress.save()
    _write_results(study, out, final, started=started)
    return 0


def _report_so_far(study: Any, out: Path) -> None:
    """trials.csv, and the curves and summary of the points trained so far (none before the first)."""
    from analysis.scaling import load_scale, write_report
    from search.results import study_frame, write_outputs

    write_outputs(study_frame(study), out)
    if (out / "points.csv").is_file() and load_scale(out).points["accuracy_mean"].notna().any():
        write_report(out)


def _announce(search: Any, cfg: Any, url: str) -> None:
    """Print what is scaled, along which axes, and the proxy task."""
    from search import scale as sc
    from search import study as st

    base = cfg.spec
    print(f"scale: {cfg.mode} of {base.summary()} ({sc.macs(base) / 1e6:.1f} M macs) along {', '.join(cfg.axes)}", file=sys.stderr)
    print(f"proxy: {search.proxy.describe()}; {cfg.seeds} seed(s); storage: {st.redact(url)}", file=sys.stderr)


def _train(args: argparse.Namespace, study: Any, search: Any, cfg: Any, url: str, *, latency: Any, progress: _Progress) -> Any:
    """Train the plan's points in this process, or in ``--jobs`` N worker processes; returns the final plan."""
    from search import scale as sc

    if getattr(args, "jobs", 1) > 1:
        return _run_jobs(args, study, search, cfg, url, latency=latency, progress=progress)
    return sc.run_scale(study, search, cfg, latency=latency, on_trial=progress.on_trial, on_plan=progress.on_plan, progress=not args.quiet)


def _write_results(study: Any, out: Path, final: Any, *, started: float) -> None:
    """Write trials.csv, the curves and summary.md, then print the slopes, the exponents or path, and the files."""
    from analysis.scaling import load_scale, slopes, write_report
    from profiler.report import signed
    from search.results import study_frame, write_outputs

    write_outputs(study_frame(study), out)
    paths = write_report(out)
    run_ = load_scale(out)
    print(f"\n{len(run_.points)} points in {(time.perf_counter() - started) / 60:.1f} min; accuracy per doubling of multiply-adds:")
    for _, r in slopes(run_.points, run_.path).iterrows():
        span = f"{r['macs_min_m']:.0f}-{r['macs_max_m']:.0f} M"
        print(f"  {r['curve']:<16} {signed(r['slope_per_doubling']):>6} pp  ({int(r['points'])} points, {span})")
    if final.exponents:
        print("compound exponents (factor = step ** (exponent * phi)): " + ", ".join(f"{a} {e:.2f}" for a, e in final.exponents.items()))
    if final.path:
        print("expansion path: " + " -> ".join(f"{p.curve} ({p.macs / 1e6:.0f} M)" for p in final.path))
    print(f"\nwrote {out / 'points.csv'}, {out / 'path.csv'}, {paths['curves']}, {paths['summary']}")
