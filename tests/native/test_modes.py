"""The native engine end to end on the tiny preset: all four modes, decoded and checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.native.conftest import SIZE, request
from tests.support.video_check import decode


def _check(path: Path, seconds: float, size: tuple[int, int] = (SIZE, SIZE)):  # type: ignore[no-untyped-def]
    video = decode(path)
    assert video.count == round(25 * seconds)
    assert video.fps == 25
    assert (video.width, video.height) == size
    assert video.audio_duration == pytest.approx(video.count / 25, abs=0.03)
    return video


def test_i2v_single_two_windows(native_service, native_media, tmp_path):
    result = native_service.generate(request(native_media), output=str(tmp_path / "a.mp4"))
    video = _check(tmp_path / "a.mp4", 3.4)
    assert result.params["windows"] == 2 and result.params["passes_per_step"] == 2  # the fast preset
    assert result.params["model"] == "tiny" and result.params["steps"] == 2 and result.params["preset"] == "fast"
    # Random weights, but real frames: not blank, and the first frame is anchored to the portrait's latent.
    assert np.std(video.frames[40]) > 5


@pytest.mark.parametrize("audio_type, seconds", [("para", 3.4), ("add", 3.4 + 1.6)])
def test_i2v_two_speakers(native_service, native_media, tmp_path, audio_type, seconds, monkeypatch):
    from talkgen.engines.native.run import generate as generate_module

    calls = []
    original = generate_module.speaker_masks
    monkeypatch.setattr(generate_module, "speaker_masks", lambda *a: calls.append(a) or original(*a))
    req = request(native_media, person_count="multi", wav_path_2=str(native_media / "short.wav"),
                  audio_type=audio_type)
    result = native_service.generate(req, output=str(tmp_path / "m.mp4"))
    _check(tmp_path / "m.mp4", seconds)
    assert result.mode == "I2V_multi"
    # default: the halves of the 160x128 input, shrunk by 5 % as InfiniteTalk does
    assert calls and calls[0][0] == [[4.0, 6.4, 76.0, 121.6], [84.0, 6.4, 156.0, 121.6]]


def test_v2v_single_from_30fps_source(native_service, native_media, tmp_path):
    req = request(native_media, input_type="video", image_path=None, video_path=str(native_media / "clip30.mp4"))
    result = native_service.generate(req, output=str(tmp_path / "v.mp4"))
    _check(tmp_path / "v.mp4", 3.4)
    assert result.mode == "V2V_single" and result.params["windows"] == 2


def test_v2v_two_speakers_with_boxes(native_service, native_media, tmp_path):
    req = request(native_media, input_type="video", person_count="multi", image_path=None,
                  video_path=str(native_media / "clip30.mp4"), wav_path=str(native_media / "short.wav"),
                  wav_path_2=str(native_media / "short.wav"), speaker_boxes=[[0, 10, 70, 120], [90, 10, 160, 120]])
    result = native_service.generate(req, output=str(tmp_path / "vm.mp4"))
    _check(tmp_path / "vm.mp4", 1.6)
    assert result.mode == "V2V_multi"


def test_same_seed_same_frames_other_audio_other_frames(native_service, native_media, tmp_path):
    short = {"wav_path": str(native_media / "short.wav")}
    native_service.generate(request(native_media, **short), output=str(tmp_path / "1.mp4"))
    native_service.generate(request(native_media, **short), output=str(tmp_path / "2.mp4"))
    low = {"wav_path": str(native_media / "speech_low.wav"), "max_duration": 1.6}
    native_service.generate(request(native_media, **low), output=str(tmp_path / "3.mp4"))
    first, again, other = (decode(tmp_path / f"{i}.mp4").frames for i in (1, 2, 3))
    assert len(first) == len(again) == len(other) == 40
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    diff = np.mean([np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(first, other, strict=True)])
    assert diff > 1.0


def test_progress_reports_windows_and_steps(native_service, native_media, tmp_path):
    events = []
    native_service.generate(request(native_media, wav_path=str(native_media / "short.wav")),
                            output=str(tmp_path / "p.mp4"), progress=events.append)
    generate = [e for e in events if e.stage == "generate"]
    steps = [e for e in generate if "step" in e.message]
    assert len(steps) == 2  # one window x the fast preset's two steps
    assert steps[-1].message == "window 1/1, step 2/2"
    fractions = [e.fraction for e in generate]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
