"""Temporal sampling as in the paper: which frames of a video make a clip.

- ``random`` (training): a window of ``frames`` x ``step`` frames at a random position, every
  ``step``-th frame taken (the paper uses step 2 for Jester: 16 frames out of 32);
- ``center`` (validation): the window in the middle of the video;
- ``all`` (video-level testing): every full non-overlapping window, from the start.

A video shorter than a window is loop-padded: the frames it has are repeated in order until the clip
is full. All functions are pure; the random position is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("random", "center", "all")


def loop_pad(indices: list[int], length: int) -> list[int]:
    """Repeat ``indices`` in order until there are ``length`` of them (the paper's loop padding)."""
    if not indices:
        raise ValueError("cannot loop-pad an empty clip")
    return [indices[i % len(indices)] for i in range(length)]


@dataclass(frozen=True)
class TemporalSampling:
    """How clips are taken from a video: ``mode`` in :data:`MODES`, clip ``frames`` and frame ``step``."""

    mode: str = "random"
    frames: int = 16
    step: int = 1

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"sampling mode must be one of {', '.join(MODES)}; got {self.mode!r}")
        if self.frames < 1 or self.step < 1:
            raise ValueError(f"frames and step must be >= 1; got {self.frames} and {self.step}")

    @property
    def span(self) -> int:
        """Frames of the video one clip covers."""
        return self.frames * self.step

    def window(self, start: int, n: int) -> list[int]:
        """Indices of the clip starting at frame ``start`` of a video of ``n`` frames (loop-padded).

        A start at or past the end falls back to the last window of the video.
        """
        if n < 1:
            raise ValueError(f"a video needs at least one frame, got {n}")
        if start >= n:
            start = max(0, n - self.span)
        return loop_pad(list(range(start, min(start + self.span, n), self.step)), self.frames)

    def starts(self, n: int) -> list[int]:
        """Start frames of every full non-overlapping window; one window at 0 for a short video."""
        return list(range(0, max(n - self.span, 0) + 1, self.span))

    def indices(self, n: int, u: float | None = None) -> list[int]:
        """Indices of one clip of a video of ``n`` frames.

        ``u`` in [0, 1) places a ``random`` window (drawn by the caller, so that a re-plan after a wrong
        header count keeps the same relative position); ``center`` ignores it.
        """
        room = max(n - self.span, 0)
        if self.mode == "random":
            if u is None:
                raise ValueError("random sampling needs a position u in [0, 1)")
            start = min(int(u * (room + 1)), room)
        else:
            start = room // 2
        return self.window(start, n)
