"""What keeping freed memory (``profiler.allocator``) buys: inference and training steps under the
system's malloc and under e3d's setting, side by side in one run.

Run: python -m bench.allocator [--presets mobilenetv2:1.0 ...] [--rounds 2] [--out DIR]

Each round runs one child process per setting, ``E3D_MALLOC=system`` then ``E3D_MALLOC=keep`` (a
process's malloc is set once, at its start), and each child times, for every preset (10 classes, fp32,
contiguous layout, eager): the forward pass of a batch of ``--batch-size`` clips of ``--clip`` in
inference mode (``profiler.latency.measure_latency``), and a training step (forward, cross-entropy,
backward, SGD update: ``profiler.precision.train_step_seconds``) at ``--train-clip`` with
``--train-batch`` clips, with the page faults per pass and the child's peak memory. A preset's time
under a setting is the median over the rounds; the speed-up is system / keep, and the verdict compares
the rounds' times by Welch's test (``search.stats.compare``; with two rounds it has little power).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from bench import machine_stamp, preset_arg
from e3d.cli import Parser, clip_arg, guarded, positive_int, thread_count
from profiler.allocator import CHOICES, ENV, allocator
from profiler.latency import measure_latency
from profiler.memory import lifetime_peaks_gib
from profiler.precision import ExecConfig, train_step_seconds
from search.stats import compare, geomean
from space.files import check_writable, write_text
from space.modules import build
from space.registry import paper_spec

CLASSES = 10
TASKS = ("infer", "train")
PRESETS = [("mobilenetv2", 1.0), ("mobilenet", 1.0), ("shufflenetv2", 1.0), ("shufflenet", 1.0)]


def faults() -> int:
    """Minor page faults of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def per_pass(fn: Callable[[], float], passes: int) -> tuple[float, float]:
    """(``fn()``'s result in ms, page faults per pass) where ``fn`` runs ``passes`` passes."""
    before = faults()
    ms = fn()
    return ms, (faults() - before) / passes


def child(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Time every preset in this process (its allocator set at import); one row per preset and task.
    Each measurement runs once untimed first, so that its page faults count what every pass pays."""
    torch.set_num_threads(args.threads)
    rows = []
    for name, width in args.presets:
        for task in TASKS:
            run = timer(task, name, width, args)
            run()
            ms, flt = per_pass(run, args.repeats + 1)
            rows.append({"preset": f"{name} {width:g}x", "task": task, "ms": ms, "faults": flt, "allocator": allocator()})
    peak, _ = lifetime_peaks_gib()
    return [{**r, "peak_gib": peak} for r in rows]


def timer(task: str, name: str, width: float, args: argparse.Namespace) -> Callable[[], float]:
    """A function that times a preset's forward pass (``infer``) or training step (``train``): median ms
    of ``args.repeats`` passes after one untimed."""
    clip, batch = (args.clip, args.batch_size) if task == "infer" else (args.train_clip, args.train_batch)
    spec = paper_spec(name, width_mult=width, num_classes=CLASSES, sample_duration=clip[0], sample_size=clip[1])
    torch.manual_seed(0)
    model = build(spec)
    if task == "infer":
        return lambda: measure_latency(model, batch_size=batch, clip=clip, warmup=1, repeats=args.repeats).median_ms
    config = ExecConfig(threads=args.threads)
    kw = {"input_shape": spec.input_shape, "batch_size": batch, "num_classes": CLASSES}
    return lambda: 1e3 * train_step_seconds(model, config, warmup=1, repeats=args.repeats, **kw)


def run_child(setting: str, argv: Sequence[str]) -> list[dict[str, Any]]:
    """Run :func:`child` in a fresh process with ``E3D_MALLOC=setting``; its rows."""
    env = {**os.environ, ENV: setting}
    out = subprocess.run([sys.executable, "-m", "bench.allocator", *argv, "--child"], env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        last = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit code {out.returncode}"
        raise SystemExit(f"bench.allocator: the {setting} child failed: {last}")
    rows: list[dict[str, Any]] = json.loads(out.stdout)
    return rows


def summarise(runs: dict[str, list[list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Per preset and task: median ms and page faults per pass over the rounds under each setting, the
    speed-up system / keep, and the verdict of ``search.stats.compare`` on the rounds' times."""
    out = []
    for i, first in enumerate(runs["system"][0]):
        row: dict[str, Any] = {"preset": first["preset"], "task": first["task"]}
        for setting in CHOICES:
            rounds = [r[i] for r in runs[setting]]
            row[f"{setting}_ms"] = statistics.median(r["ms"] for r in rounds)
            row[f"{setting}_faults"] = statistics.median(r["faults"] for r in rounds)
            row[f"{setting}_peak_gib"] = max(r["peak_gib"] for r in rounds)
            row[f"{setting}_applied"] = sorted({r["allocator"] for r in rounds})
        row["speedup"] = row["system_ms"] / row["keep_ms"]
        verdict = compare([r[i]["ms"] for r in runs["system"]], [r[i]["ms"] for r in runs["keep"]])
        row["verdict"] = {"win": "keep faster", "loss": "keep slower", "tie": "tie"}[verdict.outcome]
        row["p"] = verdict.p
        out.append(row)
    return out


def markdown(rows: list[dict[str, Any]], head: str) -> str:
    """The table, a geometric mean per task, and the run's header."""
    title = "| preset | task | system ms | keep ms | speed-up | verdict (Welch p) | page faults per pass, system | keep |"
    lines = [head, "", title, "|---|---|" + "---:|" * 3 + "---|" + "---:|" * 2]
    for r in rows:
        cells = [r["preset"], r["task"], f"{r['system_ms']:.1f}", f"{r['keep_ms']:.1f}", f"{r['speedup']:.2f}x"]
        cells += [f"{r['verdict']} ({r['p']:.2f})", f"{r['system_faults']:,.0f}", f"{r['keep_faults']:,.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for task in TASKS:
        ups = [r["speedup"] for r in rows if r["task"] == task]
        if ups:
            spread = f"range {min(ups):.2f}-{max(ups):.2f}x"
            lines.append(f"* {task}: geometric mean speed-up {geomean(ups):.2f}x over {len(ups)} presets ({spread})")
    peaks = {s: max(r[f"{s}_peak_gib"] for r in rows) for s in CHOICES}
    lines.append(f"* peak memory of a child: system {peaks['system']:.2f} GiB, keep {peaks['keep']:.2f} GiB")
    return "\n".join(lines) + "\n"


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The options (shared by the parent and its children)."""
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", type=preset_arg, metavar="NAME:WIDTH", default=PRESETS, help="default: four 1.0x presets")
    p.add_argument("--clip", type=clip_arg, default=(16, 112, 112), metavar="TxHxW", help="inference clip (default 16x112x112)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="inference batch (default 8, the paper's)")
    p.add_argument("--train-clip", type=clip_arg, default=(16, 112, 112), metavar="TxHxW", help="training clip (default 16x112x112)")
    p.add_argument("--train-batch", type=positive_int, default=8, help="training batch (default 8)")
    p.add_argument("--threads", type=thread_count, default=torch.get_num_threads(), help="torch threads (default: torch's)")
    p.add_argument("--repeats", type=positive_int, default=3, help="timed passes per preset and task (median; default 3)")
    p.add_argument("--rounds", type=positive_int, default=2, help="children per setting, alternating (default 2)")
    p.add_argument("--out", type=Path, help="also write allocator.json and allocator.md here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Alternate children under each setting, then print (and write) the comparison; 2 on bad input (an
    unknown preset, an ``--out`` that cannot be written: refused before any child runs), 130 after Ctrl-C."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    return guarded(lambda: compare_settings(args, argv))


def compare_settings(args: argparse.Namespace, argv: list[str]) -> int:
    """The parent's work: the children, the summary, the report."""
    if args.out:
        check_writable(args.out)
    runs: dict[str, list[list[dict[str, Any]]]] = {s: [] for s in CHOICES}
    for i in range(args.rounds):
        for setting in ("system", "keep"):
            print(f"round {i + 1}/{args.rounds}: {setting}", file=sys.stderr, flush=True)
            runs[setting].append(run_child(setting, argv))
    rows = summarise(runs)
    infer, train = "x".join(map(str, args.clip)), "x".join(map(str, args.train_clip))
    head = (
        f"# {machine_stamp(threads=args.threads)}; "
        f"inference {infer} batch {args.batch_size}, training {train} batch {args.train_batch}; "
        f"{args.rounds} rounds, median of {args.repeats} passes each"
    )
    text = markdown(rows, head)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        write_text(args.out / "allocator.json", json.dumps({"header": head, "rows": rows, "runs": runs}, indent=1) + "\n")
        write_text(args.out / "allocator.md", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
