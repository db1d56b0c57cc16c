"""Vocal separation in the pipeline: speech over music and noise, the soundtrack kept, errors, skipping.

The mixes are made here: speech (espeak-ng when installed, and a synthetic voice that always runs) over a
stereo music bed and noise. The tiny preset's separator has random weights, so what is checked is the
wiring: the tracks the engine gets come from the separator, the video's soundtrack is the original mix.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import wave
from pathlib import Path

import numpy as np
import pytest

from talkgen.errors import TalkgenError
from talkgen.separation.config import SEPARATOR_FILE, SEPARATOR_NAME

pytest.importorskip("torch")
pytest.importorskip("bs_roformer")

RATE = 44100
VOWELS = [(730, 1090, 2440), (270, 2290, 3010), (530, 1840, 2480), (300, 870, 2240), (660, 1720, 2410)]


def synthetic_speech(seconds: float, rate: int = RATE, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """A voice-like signal: a gliding harmonic source through vowel formants, in syllables with pauses."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    pitch = f0 * (1 + 0.08 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    syllable = int(0.22 * rate)
    out = np.zeros(n)
    for start in range(0, n, syllable):
        stop = min(n, start + syllable)
        if (start // syllable) % 5 == 4:
            continue  # a pause
        formants = VOWELS[rng.integers(len(VOWELS))]
        seg = np.zeros(stop - start)
        for k in range(1, 30):
            freq = k * pitch[start]
            if freq > 5000:
                break
            gain = sum(1.0 / (1.0 + ((freq - f) / 90.0) ** 2) for f in formants) / k
            seg += gain * np.sin(k * phase[start:stop])
        out[start:stop] = seg * np.hanning(stop - start)
    out += 0.02 * rng.standard_normal(n) * (np.abs(out) > 0.01)  # breath on the voiced parts
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


def espeak_speech(tmp: Path, text: str = "The quick brown fox jumps over the lazy dog, twice.") -> np.ndarray:
    from talkgen.media.audio_decode import decode_audio

    path = tmp / "espeak.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(path), text], check=True, capture_output=True, timeout=60)
    speech = decode_audio(path, RATE)
    return (0.5 * speech / np.abs(speech).max()).astype(np.float32)


def music_bed(seconds: float, rate: int = RATE) -> np.ndarray:
    """Stereo chords panned apart, a kick every half second: (2, n)."""
    t = np.arange(int(seconds * rate)) / rate
    left = sum(np.sin(2 * np.pi * f * t) / (i + 1) for i, f in enumerate((110.0, 220.0, 440.0)))
    right = sum(np.sin(2 * np.pi * f * t) / (i + 1) for i, f in enumerate((164.8, 329.6, 659.2)))
    kick = np.sin(2 * np.pi * 55 * t) * np.exp(-12 * (t % 0.5))
    return (0.12 * np.stack([left + kick, right + kick])).astype(np.float32)


def write_mix(path: Path, speech: np.ndarray, seed: int = 1) -> Path:
    """Speech (centre) + music bed + noise, 16-bit stereo WAV at 44.1 kHz."""
    bed = music_bed(len(speech) / RATE)[:, :len(speech)]
    noise = 0.01 * np.random.default_rng(seed).standard_normal(bed.shape)
    mix = np.clip(speech[None, :] + bed + noise, -1, 1)
    pcm = np.rint(mix.T * 32767).astype("<i2")
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(2)
        wf.setsampwidth(2)
        wf.setframerate(RATE)
        wf.writeframes(pcm.tobytes())
    return path


@pytest.fixture(params=["synthetic", "espeak"])
def mix(request, tmp_path: Path) -> Path:
    if request.param == "espeak":
        if shutil.which("espeak-ng") is None:
            pytest.skip("espeak-ng is not installed (apt-get install espeak-ng); the synthetic voice still runs")
        speech = espeak_speech(tmp_path)
    else:
        speech = synthetic_speech(2.4)
    return write_mix(tmp_path / f"mix-{request.param}.wav", speech)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> Path:
    pytest.importorskip("diffusers")
    from talkgen.engines.native.weights.tiny import write_tiny

    return write_tiny(tmp_path_factory.mktemp("tiny-models"), seed=0)


def _prepare(mix: Path, out: Path, separate):  # type: ignore[no-untyped-def]
    from talkgen.media.audio import prepare_audio

    return prepare_audio([mix], None, out, lambda s: max(1, round(s * 25)), separate=separate)


def test_tracks_come_from_the_separator_and_the_soundtrack_is_the_original(mix, settings, tmp_path):
    from talkgen.media.audio import SOUNDTRACK_RATE
    from talkgen.media.audio_decode import decode_audio
    from talkgen.separation import speech_separator

    fractions: list[float] = []
    separated = _prepare(mix, tmp_path / "sep", speech_separator(settings, progress=fractions.append))
    plain = _prepare(mix, tmp_path / "plain", None)
    assert separated.separated and not plain.separated and separated.frames == plain.frames
    # The soundtrack: byte for byte what it is without separation, i.e. the original mix (mono, 48 kHz) at its
    # loudness gain, to 16-bit rounding.
    assert separated.soundtrack.read_bytes() == plain.soundtrack.read_bytes()
    assert separated.soundtrack_gains == plain.gains
    with wave.open(str(separated.soundtrack)) as wf:
        written = np.frombuffer(wf.readframes(wf.getnframes()), "<i2").astype(np.float32) / 32767
    original = decode_audio(mix, SOUNDTRACK_RATE)[:len(written)] * plain.gains[0]
    np.testing.assert_allclose(written[:len(original)], np.clip(original, -1, 1), atol=1.5 / 32767)
    # The track: the separator's output (the tiny one passes speech through, changed a little), normalised on
    # its own loudness.
    a, b = separated.tracks[0], plain.tracks[0]
    assert a.shape == b.shape and np.abs(a - b).max() > 1e-3
    assert np.corrcoef(a, b)[0, 1] > 0.9
    assert fractions and fractions == sorted(fractions) and fractions[-1] < 1.0


def test_native_tiny_preset_end_to_end(mix, tiny_models, tmp_path, monkeypatch):
    """The native engine on the tiny preset: the separator is found where `talkgen models tiny` put it; the
    video's audio is the same with and without separation (the original mix), the result says which ran."""
    from talkgen.service import TalkGen
    from talkgen.settings import Settings
    from tests.support.media_factory import make_image

    monkeypatch.delenv("TALKGEN_SEPARATION_MODEL", raising=False)
    assert (tiny_models / SEPARATOR_FILE).is_file()
    make_image(tmp_path / "face.png", 160, 128)
    settings = Settings(engine="native", models_dir=tiny_models, allowed_path_roots=[tmp_path],
                        work_dir=tmp_path / "work", url_retries=0)
    service = TalkGen(settings)
    base = {"image_path": str(tmp_path / "face.png"), "wav_path": str(mix), "width": 128, "height": 128,
            "seed": 3, "max_duration": 2.0}
    events: list = []
    try:
        on = service.generate(base, output=str(tmp_path / "on.mp4"), progress=events.append)
        off = service.generate({**base, "separate_vocals": False}, output=str(tmp_path / "off.mp4"))
    finally:
        service.close()
    assert on.params["separate_vocals"] is True and off.params["separate_vocals"] is False
    assert on.frames == off.frames == 50
    assert any(e.stage == "prepare" and e.message == "separating vocals" for e in events)
    np.testing.assert_array_equal(_audio(tmp_path / "on.mp4"), _audio(tmp_path / "off.mp4"))


def _audio(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(container.streams.audio[0])])


def _face_request(media_dir: Path, **fields) -> dict:
    return {"image_path": str(media_dir / "face.png"), "wav_path": str(media_dir / "speech.wav"), "width": 128,
            "height": 128, **fields}


def test_false_skips_separation_and_never_loads_the_model(service, media_dir, tmp_path):
    from talkgen.separation.model import stats

    service.settings = service.settings.model_copy(update={"separation_model": tmp_path / "absent" / SEPARATOR_NAME})
    before = stats()
    result = service.generate(_face_request(media_dir, separate_vocals=False))
    assert result.params["separate_vocals"] is False and stats() == before
    with pytest.raises(TalkgenError) as err:
        service.generate(_face_request(media_dir))
    assert err.value.code == "engine_unavailable" and SEPARATOR_NAME in err.value.message
    assert "`separate_vocals: false`" in err.value.message and stats() == before


def test_a_truncated_separator_is_engine_unavailable(service, media_dir, tmp_path, work_root):
    from talkgen.engines.native.weights.tiny_separator import write_tiny_separator
    from tests.conftest import assert_no_leftovers

    good = write_tiny_separator(tmp_path / "good" / SEPARATOR_NAME)
    cut = tmp_path / "cut" / SEPARATOR_NAME
    cut.parent.mkdir()
    cut.write_bytes(good.read_bytes()[: good.stat().st_size - 1000])
    service.settings = service.settings.model_copy(update={"separation_model": cut})
    with pytest.raises(TalkgenError) as err:
        service.generate(_face_request(media_dir))
    assert err.value.code == "engine_unavailable" and not err.value.retryable
    assert SEPARATOR_NAME in err.value.message and "damaged" in err.value.message
    assert "talkgen models download" in err.value.message
    assert_no_leftovers(work_root)


def test_two_speakers_are_each_separated_and_cancel_stops_it(service, media_dir, work_root):
    from talkgen.separation.model import stats

    events: list = []
    before = stats()["chunks"]
    request = _face_request(media_dir, person_count="multi", wav_path_2=str(media_dir / "speech2.wav"))
    result = service.generate(request, progress=events.append)
    assert result.params["separate_vocals"] is True
    assert stats()["chunks"] - before >= 2  # at least one chunk per speaker
    separating = [e for e in events if e.message == "separating vocals"]
    assert separating and [e.overall for e in separating] == sorted(e.overall for e in separating)

    cancel = threading.Event()

    def on_progress(event) -> None:
        if event.message == "separating vocals":
            cancel.set()

    with pytest.raises(TalkgenError) as err:
        service.generate(request, progress=on_progress, cancel=cancel)
    assert err.value.code == "cancelled"
    from tests.conftest import assert_no_leftovers

    assert_no_leftovers(work_root)


def test_the_comfyui_engine_uploads_the_separated_tracks(media_dir, work_root, tmp_path, settings):
    """Separation runs before any engine: the ComfyUI engine's uploaded speech is the separated track (and the
    plain one with `separate_vocals: false`), sample for sample."""
    from talkgen.media.audio import prepare_audio
    from talkgen.plan import frame_count
    from talkgen.separation import speech_separator
    from talkgen.service import TalkGen
    from talkgen.settings import Settings
    from tests.comfyui.test_engine import MODELS, SCHEMA, render
    from tests.support.fake_comfyui import FakeComfyUI

    mix = write_mix(media_dir / "mix.wav", synthetic_speech(2.0))
    uploads = {}
    with FakeComfyUI(SCHEMA, render=render, models=MODELS) as server:
        service = TalkGen(Settings(engine="comfyui", comfyui_url=server.url, allowed_path_roots=[media_dir],
                                   work_dir=work_root, comfyui_stall_s=5))
        try:
            for flag in (True, False):
                result = service.generate({"image_path": str(media_dir / "face.png"), "wav_path": str(mix),
                                           "width": 128, "height": 128, "separate_vocals": flag,
                                           "job_id": f"sep-{str(flag).lower()}"}, output=str(tmp_path / "c.mp4"))
                assert result.params["separate_vocals"] is flag
                uploads[flag] = _pcm(server.inputs[f"talkgen/sep-{str(flag).lower()}/window-0-speaker-1.wav"])
        finally:
            service.close()

    def track(separate) -> np.ndarray:  # type: ignore[no-untyped-def]
        prepared = prepare_audio([mix], None, tmp_path / f"p{separate is None}",
                                 lambda s: frame_count(s, 25, None), separate=separate)
        return prepared.tracks[0]

    for flag, expected in ((True, track(speech_separator(settings))), (False, track(None))):
        got = uploads[flag]
        want = np.zeros(len(got), np.float32)
        want[: min(len(got), len(expected))] = expected[: len(got)]
        np.testing.assert_array_equal(got, np.rint(np.clip(want, -1, 1) * 32767).astype("<i2"))
    assert not np.array_equal(uploads[True], uploads[False])


def _pcm(data: bytes) -> np.ndarray:
    import io

    with wave.open(io.BytesIO(data)) as wf:
        return np.frombuffer(wf.readframes(wf.getnframes()), "<i2")
