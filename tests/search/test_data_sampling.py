"""Temporal sampling: random, centre and all-window clips, frame step, loop padding."""

from __future__ import annotations

import pytest

from search.data import TemporalSampling
from search.data.sampling import loop_pad


def test_loop_padding_repeats_the_frames_in_order() -> None:
    assert loop_pad([0, 1, 2], 8) == [0, 1, 2, 0, 1, 2, 0, 1]
    with pytest.raises(ValueError):
        loop_pad([], 4)


def test_a_short_video_is_loop_padded() -> None:
    s = TemporalSampling("center", 16)
    assert s.indices(5) == [0, 1, 2, 3, 4] * 3 + [0]
    assert TemporalSampling("center", 4, step=2).indices(3) == [0, 2, 0, 2]


def test_centre_window_and_frame_step() -> None:
    assert TemporalSampling("center", 4).indices(10) == [3, 4, 5, 6]
    # the paper's Jester setting: 16 frames taken from 32 with step 2
    assert TemporalSampling("center", 16, step=2).indices(32) == list(range(0, 32, 2))
    assert TemporalSampling("center", 4, step=2).indices(20) == [6, 8, 10, 12]


def test_random_window_covers_every_start_and_stays_inside() -> None:
    s = TemporalSampling("random", 4, step=2)
    starts = {s.indices(20, u / 100)[0] for u in range(100)}
    assert starts == set(range(13))  # span 8 in 20 frames: starts 0..12
    assert all(max(s.indices(20, u / 100)) <= 19 for u in range(100))
    with pytest.raises(ValueError):
        s.indices(20)


def test_all_takes_every_full_non_overlapping_window() -> None:
    s = TemporalSampling("all", 16)
    assert s.starts(32) == [0, 16]
    assert s.starts(47) == [0, 16]  # the last 15 frames do not fill a window
    assert s.starts(5) == [0]  # a short video still gives one (loop-padded) clip
    assert s.window(16, 32) == list(range(16, 32))
    assert s.window(40, 32) == list(range(16, 32))  # a start past the end (a header that lied) falls back


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="mode"):
        TemporalSampling("sideways", 16)
    with pytest.raises(ValueError):
        TemporalSampling("random", 0)
