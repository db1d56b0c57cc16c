"""Property tests for the streaming plan: every output frame exactly once, at the right audio time."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from talkgen.errors import MediaUnreadable
from talkgen.plan import (
    FPS,
    audio_index,
    frame_count,
    source_frame_index,
    window_audio_indices,
    window_count,
    window_source_frame,
    windows,
)

totals = st.integers(min_value=1, max_value=6000)


@given(totals)
def test_every_output_frame_appears_exactly_once(total: int) -> None:
    seen: list[int] = []
    for win in windows(total):
        generated = list(range(win.start, win.end))
        assert len(generated) == 81
        seen.extend(generated[win.keep()])
    assert seen == list(range(total))


@given(totals)
def test_kept_frames_map_to_their_own_audio_time(total: int) -> None:
    for win in windows(total):
        indices = window_audio_indices(win)
        for local in range(*win.keep().indices(win.size)):
            frame = win.start + local
            assert indices[local] == frame  # audio feature frame f is audio time f / 25
            assert math.isclose(indices[local] / FPS, frame / FPS)


@given(totals)
def test_window_structure(total: int) -> None:
    wins = windows(total)
    assert len(wins) == window_count(total)
    assert len(wins) == (1 if total <= 81 else 1 + math.ceil((total - 81) / 72))
    assert wins[0].motion == 0 and wins[0].start == 0
    for prev, cur in itertools.pairwise(wins):
        assert cur.start == prev.start + 72  # 72 new frames per window
        assert cur.motion == 9 and cur.start + 9 == prev.end  # motion frames = previous tail
        assert not prev.is_last
    assert wins[-1].is_last
    assert sum(w.new_frames for w in wins) == total


@given(totals)
def test_reflected_audio_stays_in_range(total: int) -> None:
    last = windows(total)[-1]
    indices = window_audio_indices(last)
    assert all(0 <= i < total for i in indices)
    if last.padding:
        tail = indices[last.size - last.padding:]
        assert tail[0] == total - 1  # the reflection starts at the last real frame
        assert tail == [audio_index(f, total) for f in range(total, last.end)]


@given(st.floats(min_value=0.04, max_value=4000), st.one_of(st.none(), st.floats(min_value=0.04, max_value=100)))
def test_frame_count(duration: float, cap: float | None) -> None:
    frames = frame_count(duration, max_seconds=cap)
    limit = duration if cap is None else min(duration, cap)
    assert abs(frames - limit * FPS) <= 0.5 + 1e-6 or frames == 1


def test_frame_count_rejects_audio_shorter_than_a_frame() -> None:
    with pytest.raises(MediaUnreadable):
        frame_count(0.01)


@given(st.integers(0, 5000), st.sampled_from([12.0, 23.976, 24.0, 25.0, 29.97, 30.0, 50.0, 60.0]),
       st.integers(1, 9000))
def test_source_frame_follows_real_time(frame: int, fps: float, source_frames: int) -> None:
    index = source_frame_index(frame, fps, source_frames)
    assert 0 <= index < source_frames
    if index < source_frames - 1:
        # source frame `index` is on screen at output time frame / 25
        assert index / fps <= frame / FPS + 1e-6 < (index + 1) / fps


def test_v2v_window_conditioning_frames_at_30fps() -> None:
    wins = windows(300)
    assert [window_source_frame(w, 30.0, 1000) for w in wins] == [0, 86, 172, 259, 345]
    assert [window_source_frame(w, 30.0, 100) for w in wins] == [0, 86, 99, 99, 99]
