"""``e3d data check``: summarise a dataset (classes, videos per split, frames, unreadable files);
``e3d data resize``: a copy with smaller videos and frames, which the loader reads many times faster.

Also the data arguments shared by ``e3d train`` and ``e3d evaluate`` (:func:`add_data_arguments`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any, NamedTuple

from e3d.cli import Parser, non_negative_int, positive_float, positive_int, worker_count

FORMATS = ("folder", "ucf101", "jester", "kinetics", "json", "motion", "digits")
"""What --format accepts: search.data.ALL_FORMATS (spelled out so that `e3d --help` need not import torch)."""
FORMAT_HELP = (
    "layout of {}: ucf101, jester, kinetics, json (the paper's annotation file), folder (root/<class>/<video>), "
    "or a built-in proxy task: motion, digits (default: guessed from the path)"
)

ANNOTATIONS_HELP = "folder or file of the split lists (default: found under {}; a file for UCF-101 or Jester stands for its folder)"


def add_data_arguments(p: argparse.ArgumentParser, *, proxy_samples: bool = True) -> None:
    """The arguments that say which dataset to read and how (shared by train, evaluate and data check)."""
    g = p.add_argument_group("data")
    g.add_argument("--data", metavar="PATH", help="dataset folder, annotation file, or a proxy task name (motion, digits)")
    g.add_argument("--format", choices=FORMATS, help=FORMAT_HELP.format("--data"))
    g.add_argument("--annotations", metavar="PATH", help=ANNOTATIONS_HELP.format("--data"))
    g.add_argument("--fold", type=positive_int, default=1, metavar="N", help="UCF-101 split 1, 2 or 3 (default 1)")
    g.add_argument("--allow-missing", action="store_true", help="skip videos a split file names but that are not on disk")
    g.add_argument("--fail-fast", action="store_true", help="stop at the first unreadable video instead of skipping it")
    if proxy_samples:
        g.add_argument("--num-samples", type=positive_int, metavar="N", help="proxy tasks: training videos (default 1200)")
    g.add_argument("--data-seed", type=non_negative_int, default=0, metavar="S", help="proxy tasks: generation seed (default 0)")
    g.add_argument("--digit-direction", action="store_true", help="digits task: class = digit x direction (40 classes)")
    g.add_argument("--proxy-noise", type=float, metavar="X", help="proxy tasks: pixel noise std, fraction of full range (default 0.12)")
    g.add_argument("--proxy-distractors", type=non_negative_int, metavar="K", help="proxy tasks: distractors per video (default 3)")
    g.add_argument("--proxy-speed", type=positive_float, metavar="X", help="proxy tasks: factor on every motion (default 1)")
    g.add_argument(
        "--cache-dir", metavar="DIR", help="cache of the proxy tasks and of decoded video frames (default $E3D_CACHE or ~/.cache/e3d)"
    )
    g.add_argument(
        "--no-frame-cache",
        action="store_true",
        help="decode every clip from its video file (default: each video is decoded once and its frames kept as JPEG "
        "under --cache-dir/frames, at the smallest size no crop enlarges: 224 pixels short side for 112-pixel clips)",
    )


def proxy_options(args: argparse.Namespace, base: Any = None) -> Any:
    """The :class:`search.data.ProxyOptions` the arguments ask for; those not given are ``base``'s (default: the defaults)."""
    from search.data import ProxyOptions

    defaults = base or ProxyOptions()
    return ProxyOptions(
        noise=defaults.noise if args.proxy_noise is None else args.proxy_noise,
        distractors=defaults.distractors if args.proxy_distractors is None else args.proxy_distractors,
        speed=defaults.speed if args.proxy_speed is None else args.proxy_speed,
        digit_direction=args.digit_direction or defaults.digit_direction,
    )


def data_source(args: argparse.Namespace) -> tuple[str, str | None]:
    """(path or task, format) from ``--data`` and ``--format``; a proxy ``--format`` needs no ``--data``."""
    from search.data import PROXY_TASKS, DataError

    if args.format in PROXY_TASKS:
        given = [flag for flag, on in (("--annotations", args.annotations is not None), ("--fold", args.fold != 1)) if on]
        if given:
            raise DataError(f"{', '.join(given)}: for a dataset's split lists; the built-in {args.format} task has none")
        return args.format, args.format
    if args.data is None:
        raise DataError("--data PATH is required (or --format motion / --format digits for a built-in proxy task)")
    return args.data, args.format


def dataset_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of :func:`search.data.open_dataset` common to every split."""
    from search.data import PROXY_TASKS

    cache = args.cache_dir
    if cache is None and args.data is not None and args.format in PROXY_TASKS and args.data not in PROXY_TASKS:
        cache = args.data  # --format motion --data DIR: DIR is the cache folder
    return {
        "annotations": args.annotations,
        "fold": args.fold,
        "allow_missing": args.allow_missing,
        "on_error": "raise" if args.fail_fast else "skip",
        "seed": args.data_seed,
        "cache_dir": cache,
        "frame_cache": not args.no_frame_cache,
        "proxy_options": proxy_options(args),
    }


def register(sub: Any) -> None:
    """Add the ``data`` command group (``e3d data check``, ``e3d data resize``)."""
    summary = "inspect datasets (e3d data check PATH), shrink them (e3d data resize SRC DST)"
    p = sub.add_parser("data", help=summary, description="Inspect or shrink datasets.")
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", parser_class=Parser)
    dsub.required = True
    c = dsub.add_parser(
        "check",
        help="summarise a dataset: classes, videos per split, frames, unreadable files",
        description="Read a dataset's layout and split files, then open every video (decoding all of its frames unless "
        "--quick) and report the classes, the videos per split, frame counts, videos whose header frame count disagrees "
        "with what decodes, and unreadable files with the reason. Exit code 0: every video reads; 1: some do not; "
        "2: the dataset itself cannot be used (missing path, missing split file, unknown class, no train or val videos, ...).",
    )
    c.add_argument("path", metavar="PATH", help="dataset folder or annotation file, or a proxy task name (motion, digits)")
    c.add_argument("--format", choices=FORMATS, help=FORMAT_HELP.format("PATH"))
    c.add_argument("--annotations", metavar="PATH", help=ANNOTATIONS_HELP.format("PATH"))
    c.add_argument("--fold", type=positive_int, default=1, metavar="N", help="UCF-101 split 1, 2 or 3 (default 1)")
    c.add_argument("--allow-missing", action="store_true", help="report videos a split file names but that are not on disk, and go on")
    c.add_argument("--num-samples", type=positive_int, metavar="N", help="proxy tasks: videos per split (default 1200 / 300 / 300)")
    c.add_argument("--quick", action="store_true", help="read container headers only (fast; finds fewer problems)")
    c.add_argument("--workers", type=worker_count, default=2, metavar="N", help="processes that decode in parallel (default 2)")
    c.add_argument("--show", type=positive_int, default=20, metavar="N", help="list at most N problem files (default 20)")
    c.set_defaults(func=run_check)
    r = dsub.add_parser(
        "resize",
        help="copy a dataset with every video and frame image shrunk to a short side (the loader keeps up)",
        description="Copy the folder tree SRC to DST with every video re-encoded and every frame image rescaled so that "
        "its shorter side is --short-side pixels (aspect kept, never enlarged, every frame kept), and every other file "
        "(split lists, annotations) copied as is: every layout e3d reads reads the copy like the original. The "
        "trainer decodes each video at its own size for every clip; a 720p video costs many times what 112-pixel "
        "crops need. Files are renamed into place when complete: run it again after an interruption and it skips "
        "what is done (at the same --short-side: DST remembers it). Symbolic links to folders are followed. Exit code "
        "0: every file copied; 1: some videos or frame images could not be read (listed, copied as they are, so "
        "the copy reads as the original); 130: interrupted (run it again to go on).",
    )
    r.add_argument("src", type=Path, metavar="SRC", help="dataset folder to copy")
    r.add_argument("dst", type=Path, metavar="DST", help="where the copy goes (outside SRC)")
    r.add_argument("--short-side", type=positive_int, default=128, metavar="N", help="pixels of the shorter side (default 128)")
    r.set_defaults(func=run_resize)


def run_resize(args: argparse.Namespace) -> int:
    """Copy SRC to DST with smaller videos and frames."""
    from search.data.resize import resize_tree

    try:
        report = resize_tree(args.src, args.dst, args.short_side)
    except KeyboardInterrupt:
        print(f"\ninterrupted; the files done so far are in {args.dst}: the same command goes on from there", file=sys.stderr)
        return 130
    print(report.summary())
    for path, reason in sorted(report.unreadable.items()):
        print(f"  unreadable: {path}: {reason}")
    return 1 if report.unreadable else 0


def run_check(args: argparse.Namespace) -> int:
    """Summarise the dataset at PATH."""
    from search.data import PROXY_TASKS, read_layout

    if args.format in PROXY_TASKS or (args.format is None and args.path in PROXY_TASKS and not Path(args.path).exists()):
        cache = None if args.path in PROXY_TASKS else args.path
        return _check_proxy(args.format or args.path, cache=cache, num_samples=args.num_samples)
    layout = read_layout(args.path, format=args.format, annotations=args.annotations, fold=args.fold, allow_missing=args.allow_missing)
    _print_layout(layout)
    paths = sorted({r.path for recs in layout.splits.values() for r in recs})
    reading = _read_videos(paths, decode=not args.quick, workers=args.workers)
    code = _report(reading, layout, videos=len(paths), quick=args.quick, show=args.show)
    for split in ("train", "val"):
        layout.split(split)  # training reads both: an empty one is a DataError (exit 2), after the report
    return code


def _check_proxy(task: str, *, cache: str | None, num_samples: int | None) -> int:
    """Summarise a built-in proxy task (generated, or read from ``cache``): its classes and splits."""
    from search.data import SPLITS, proxy_dataset

    print(f"dataset  {task} (built-in proxy task, cached under {cache or 'the default cache folder'})")
    for split in SPLITS:
        ds = proxy_dataset(task, split=split, cache_dir=cache, num_samples=num_samples)
        frames = ds.videos.shape[1]
        if split == "train":
            names = ", ".join(ds.class_names)
            print(f"classes  {ds.num_classes}: {names}")
        print(f"{split:<6}   {ds.num_videos} videos of {frames}x{ds.videos.shape[2]}x{ds.videos.shape[3]}, {len(ds)} clips  ({ds.path})")
    return 0


def _print_layout(layout: Any) -> None:
    """Print a dataset layout's root, classes, notes and videos (and missing ones) per split."""
    from search.data import SPLITS

    shown = ", ".join(layout.class_names[:6]) + (", ..." if len(layout.class_names) > 6 else "")
    print(f"dataset  {layout.root} ({layout.format} layout)")
    print(f"classes  {len(layout.class_names)}: {shown}")
    for note in layout.notes:
        print(f"note     {note}")
    print(f"{'split':<8} {'videos':>8} {'missing':>8}")
    for split in SPLITS:
        print(f"{split:<8} {len(layout.splits.get(split, ())):>8} {len(layout.missing.get(split, ())):>8}")


class _Reading(NamedTuple):
    """What opening every video found."""

    counts: list[int]
    """Frame counts of the readable videos (decoded, else from the header)."""
    bad: list[tuple[str, str]]
    """(path, reason) of each unreadable video."""
    disagree: list[tuple[str, int | None, int | None]]
    """(path, header count, decoded count) where the two differ."""


def _read_videos(paths: list[Path], *, decode: bool, workers: int) -> _Reading:
    """Open every video in ``workers`` processes (decoding all its frames when ``decode``) behind a progress bar."""
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from search.data.datasets import FrameCounts

    loader: DataLoader[tuple[str, int | None, int | None, str | None]] = DataLoader(
        FrameCounts(paths, decode=decode), batch_size=None, num_workers=workers
    )
    reading = _Reading([], [], [])
    for path, header, decoded, error in tqdm(loader, total=len(paths), desc="reading videos", unit="video", leave=False, disable=None):
        if error is not None:
            reading.bad.append((path, error))
            continue
        n = decoded if decoded is not None else header
        if n is not None:
            reading.counts.append(n)
        if header is not None and decoded is not None and header != decoded:
            reading.disagree.append((path, header, decoded))
    return reading


def _report(reading: _Reading, layout: Any, *, videos: int, quick: bool, show: int) -> int:
    """Print the frame counts and the problem files (at most ``show`` of each kind); 1 when a video is unreadable."""
    from search.data import SPLITS

    counts, bad, disagree = reading
    how = "decoded" if not quick else "from headers"
    if counts:
        med = statistics.median(counts)
        print(f"frames   min {min(counts)}  median {med:g}  max {max(counts)}  ({len(counts)} of {videos} videos, {how})")
    if disagree:
        print(f"header   {len(disagree)} video(s) whose header frame count differs from what decodes (the decoded count is used):")
        for path, header, decoded in disagree[:show]:
            print(f"  {path}: header {header}, decoded {decoded}")
    for split in SPLITS:
        for name in layout.missing.get(split, ())[:show]:
            print(f"missing  {split}: {name}")
    if bad:
        print(f"unreadable {len(bad)} video(s) (training skips them, or stops with --fail-fast):")
        for path, reason in bad[:show]:
            print(f"  {path}: {reason}")
        return 1
    print("unreadable 0")
    return 0
