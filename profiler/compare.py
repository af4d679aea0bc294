"""e3d's count of a module next to fvcore's, ptflops' and ``torch.utils.flop_counter``'s.

What docs/COUNTING.md's table of video architectures shows (``python -m tests.profiler.video_archs``).
A backend that is not installed or cannot count the model gets its one-line reason instead of a count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import nn

from profiler.backends import COUNTERS, BackendCount
from profiler.counting import Counts, count_module

KIND_GROUPS = {
    "conv": "conv",
    "linear": "linear",
    "matmul": "matmul / einsum",
    "einsum": "matmul / einsum",
    "attention": "attention (sdpa)",
}
"""e3d's multiply-add kinds, grouped the way the table shows them."""


@dataclass
class Comparison:
    """One model counted by e3d and by every backend (``errors``: backends that could not count it)."""

    e3d: Counts
    backends: dict[str, BackendCount] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def e3d_by_kind(self) -> dict[str, int]:
        """e3d's multiply-adds per group of :data:`KIND_GROUPS`."""
        out: dict[str, int] = {}
        for op, stat in self.e3d.by_operator.items():
            group = KIND_GROUPS.get(op.split(" ")[0])
            if group and stat.macs:
                out[group] = out.get(group, 0) + stat.macs
        return out


def compare_counters(model: nn.Module, input_shape: Sequence[int], backends: Sequence[str] = tuple(COUNTERS)) -> Comparison:
    """Count ``model`` on one clip of ``input_shape`` with e3d and each of ``backends``."""
    result = Comparison(count_module(model, input_shape))
    for name in backends:
        try:
            result.backends[name] = COUNTERS[name](model, input_shape)
        except Exception as e:  # a backend's failure is a finding of the comparison, not a crash
            result.errors[name] = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
    return result


def _m(n: int) -> str:
    return f"{n:,}"


def render_comparison(rows: Sequence[tuple[str, Comparison]], input_shape: Sequence[int]) -> str:
    """Markdown: totals (multiply-adds per clip; ``paper_mflops`` in its own convention), then each
    counter's breakdown per row."""
    names = list(COUNTERS)
    clip = "x".join(map(str, input_shape))
    lines = [
        f"Per {clip} clip (C x T x H x W). flop_counter's FLOPs are halved to multiply-adds.",
        "",
        "| architecture | params | e3d `macs` | e3d `paper_mflops` | " + " | ".join(names) + " |",
        "|---|---:|---:|---:|" + "---:|" * len(names),
    ]
    for arch, c in rows:
        cells = [_m(c.backends[n].total) if n in c.backends else "fails" for n in names]
        lines.append(f"| {arch} | {c.e3d.params:,} | {_m(c.e3d.macs)} | {_m(c.e3d.paper_flops)} | " + " | ".join(cells) + " |")
    lines += ["", "Breakdowns:", ""]
    for arch, c in rows:
        kinds = ", ".join(f"{k} {_m(v)}" for k, v in c.e3d_by_kind().items())
        lines.append(f"* **{arch}**. e3d: {kinds}.")
        for n in names:
            if n in c.errors:
                lines.append(f"  {n}: fails ({c.errors[n]}).")
                continue
            b = c.backends[n]
            ops = ", ".join(f"{k} {_m(v)}" for k, v in b.by_operator.items())
            skipped = f"; not counted: {', '.join(sorted(b.unsupported))}" if b.unsupported else ""
            lines.append(f"  {n}: {ops}{skipped}.")
    return "\n".join(lines)
