"""Measure on this machine the latency of the architectures a study trained but did not time."""

from __future__ import annotations

import platform
from datetime import datetime, timezone

import pandas as pd

from analysis.pareto import architectures


def measure_latencies(
    df: pd.DataFrame,
    *,
    batch_size: int = 8,
    device: str = "cpu",
    threads: int | None = None,
    warmup: int = 1,
    repeats: int = 3,
    progress: bool = True,
) -> tuple[pd.DataFrame, str]:
    """Fill ``latency_ms`` of finished trials that have none, timing each architecture once.

    Each spec is built from ``spec_json`` and timed eagerly (``profiler.latency.measure_latency``,
    median of ``repeats`` batches of ``batch_size`` clips of the spec's own clip after ``warmup``).
    Returns the new rows and a sentence saying where and when this was measured.
    """
    from tqdm import tqdm

    from profiler.cpu import detect_cpu
    from profiler.latency import measure_latency
    from space.modules import build
    from space.spec import NetSpec

    out = df.copy()
    todo = architectures(out)
    todo = todo[todo["latency_ms"].isna() & todo["arch"].isin(set(out["spec_json"].dropna()))]  # has a spec to build
    measured: dict[str, float] = {}
    threads_used = None
    for arch in tqdm(todo["arch"], desc="latency", unit="model", disable=not progress or None):
        spec = NetSpec.from_json(arch)
        lat = measure_latency(
            build(spec).eval(), batch_size=batch_size, clip=spec.clip, device=device, threads=threads, warmup=warmup, repeats=repeats
        )
        measured[arch] = lat.median_ms
        threads_used = lat.threads
    fill = out["spec_json"].map(measured)
    where = detect_cpu().describe() if device == "cpu" else device
    filled = out["latency_ms"].isna() & fill.notna()
    out["latency_ms"] = out["latency_ms"].where(~filled, fill)
    out["cpu"] = out["cpu"].astype(object) if "cpu" in out else None
    out.loc[filled, "cpu"] = f"{platform.node()}: {where}"  # where these were timed (the figure says so)
    note = (
        f"Latency of {len(measured)} architecture(s) measured by e3d analyze on {platform.node()} ({where}, "
        f"{threads_used if threads_used is not None else '-'} threads), eager PyTorch, batch {batch_size}, median of {repeats} "
        f"after {warmup} warm-up, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC."
    )
    return out, note
