"""Long audio: refused from its header before decoding, and prepared in bounded memory and time."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest

from talkgen.errors import TooLong
from talkgen.media.audio import SAMPLE_RATE, prepare_audio
from talkgen.media.loudness import LoudnessMeter
from talkgen.media.probe import declared_audio_seconds
from tests.support import media_factory as mf

LIMIT_S = 60.0


def frames_for(seconds: float) -> int:
    """The service's rule in small: longer than `LIMIT_S` is `too_long`."""
    if seconds > LIMIT_S:
        raise TooLong(f"The audio is {seconds:.1f} s long; this server allows {LIMIT_S:g} s.", field="max_duration")
    return max(1, round(seconds * 25))


def set_flac_total_samples(path: Path, total: int) -> Path:
    """Rewrite STREAMINFO's 36-bit total-sample count (0 means unknown)."""
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # the first block is STREAMINFO
    word = int.from_bytes(data[18:26], "big")
    word = (word & ~((1 << 36) - 1)) | total
    data[18:26] = word.to_bytes(8, "big")
    path.write_bytes(bytes(data))
    return path


# --- the header's duration -----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "make"), [
    ("flac", lambda p: mf.make_audio(p, 2.5, "flac", 44100)),
    ("wav", lambda p: mf.make_wav(p, 2.5)),
    ("m4a", lambda p: mf.make_audio(p, 2.5, "aac", 44100, "mp4")),
    ("ogg", lambda p: mf.make_audio(p, 2.5, "libopus", 48000)),
])
def test_declared_duration_is_read_from_the_header(tmp_path, name, make):
    assert declared_audio_seconds(make(tmp_path / f"a.{name}")) == pytest.approx(2.5, abs=0.02)


def test_estimates_and_non_audio_declare_nothing(tmp_path):
    assert declared_audio_seconds(mf.make_audio(tmp_path / "a.mp3", 2.0)) is None  # bit-rate estimate
    assert declared_audio_seconds(mf.make_image(tmp_path / "a.png")) is None
    assert declared_audio_seconds(set_flac_total_samples(mf.make_audio(tmp_path / "a.flac", 1.0, "flac"), 0)) is None


def test_audio_whose_header_is_too_long_is_refused_before_decoding(tmp_path, monkeypatch):
    src = mf.long_flac(tmp_path / "long.flac", 4 * LIMIT_S)
    decoded = []
    monkeypatch.setattr("talkgen.media.audio.iter_audio", lambda *a, **k: decoded.append(a) or iter(()))
    start = time.monotonic()
    with pytest.raises(TooLong) as exc:
        prepare_audio([src], None, tmp_path / "out", frames_for, decode_limit_s=LIMIT_S + 1)
    assert time.monotonic() - start < 1.0 and decoded == []
    assert "240" in exc.value.message or "239" in exc.value.message


def test_two_speakers_in_turns_add_their_declared_lengths(tmp_path):
    a = mf.long_flac(tmp_path / "a.flac", 0.6 * LIMIT_S)
    b = mf.long_flac(tmp_path / "b.flac", 0.6 * LIMIT_S)
    with pytest.raises(TooLong):
        prepare_audio([a, b], "add", tmp_path / "out", frames_for, decode_limit_s=LIMIT_S + 1)
    out = prepare_audio([a, b], "para", tmp_path / "out", frames_for, decode_limit_s=LIMIT_S + 1)
    assert out.frames == round(0.6 * LIMIT_S * 25)


@pytest.mark.parametrize("declared_s", [0.0, 1.0], ids=["absent", "understated"])
def test_a_header_that_understates_falls_back_to_the_decode_limit(tmp_path, declared_s):
    src = set_flac_total_samples(mf.long_flac(tmp_path / "long.flac", 2 * LIMIT_S), int(declared_s * 8000))
    seen: list[float] = []

    def recording(seconds: float) -> int:
        seen.append(seconds)
        return frames_for(seconds)

    with pytest.raises(TooLong):
        prepare_audio([src], None, tmp_path / "out", recording, decode_limit_s=LIMIT_S + 1)
    assert seen[-1] == pytest.approx(LIMIT_S + 1)  # decoded up to the limit, no further
    assert not list((tmp_path / "out").glob("speech_*"))  # the raw decode files are removed


# --- bounded memory ------------------------------------------------------------------------------

_CHILD = """
import json, resource, sys, tempfile
from pathlib import Path
import scipy.signal, pyloudnorm  # the meter's imports, so the baseline includes them
from talkgen.media.audio import prepare_audio
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = prepare_audio([Path(p) for p in sys.argv[2:]], sys.argv[1], Path(tempfile.mkdtemp()),
                    lambda s: max(1, round(s * 25)), 25)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"grew": (peak - base) * 1024, "tracks": sum(t.nbytes for t in out.tracks)}))
"""


def test_preparing_long_audio_holds_little_more_than_the_tracks(tmp_path):
    """Five minutes for two speakers: peak memory grows by the two output tracks, not by copies of them
    (before: pyloudnorm and concatenations made ~4x the tracks)."""
    a = mf.long_flac(tmp_path / "a.flac", 300, rate=16000)
    b = mf.long_flac(tmp_path / "b.flac", 300, rate=16000)
    run = subprocess.run([sys.executable, "-c", _CHILD, "para", str(a), str(b)], capture_output=True,
                         text=True, timeout=120, check=True, cwd=Path(__file__).resolve().parents[1])
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    assert figures["tracks"] == 2 * 300 * SAMPLE_RATE * 4
    assert figures["grew"] < 2 * figures["tracks"], figures


# --- the streaming loudness meter ----------------------------------------------------------------


def speech_like(seconds: float, rate: int, seed: int) -> np.ndarray:
    """Noise in syllable-length bursts with pauses, at a speech-like level."""
    rng = np.random.default_rng(seed)
    hops = int(seconds * 10)
    envelope = np.repeat(rng.random(hops) * (rng.random(hops) > 0.35), rate // 10)
    voice = rng.standard_normal(len(envelope)) * 0.1 + 0.2 * np.sin(2 * np.pi * 150 * np.arange(len(envelope)) / rate)
    return (voice * envelope).astype(np.float32)


@pytest.mark.parametrize("rate", [16000, 48000])
@pytest.mark.parametrize("block", [65536, 4000, 1])
def test_the_streaming_meter_equals_pyloudnorm(rate, block):
    samples = [speech_like(6.37, rate, seed) for seed in range(3)] + [mf.tone(0.45, rate)]
    if rate == 16000:
        from talkgen.media.audio_decode import decode_audio

        samples.append(decode_audio(Path(__file__).resolve().parents[1] / "examples" / "speech.wav"))
    for signal in samples:
        step = block if block > 1 else 997  # odd sizes cross hop boundaries every way
        meter = LoudnessMeter(rate)
        for start in range(0, len(signal), step):
            meter.add(signal[start:start + step])
        expected = pyloudnorm.Meter(rate).integrated_loudness(signal)
        assert meter.integrated() == pytest.approx(expected, abs=0.01)


def test_the_meter_reports_silence_and_short_audio_as_minus_infinity():
    meter = LoudnessMeter(SAMPLE_RATE)
    meter.add(np.zeros(SAMPLE_RATE * 3, np.float32))
    assert meter.integrated() == -np.inf
    short = LoudnessMeter(SAMPLE_RATE)
    short.add(mf.tone(0.3, SAMPLE_RATE))
    assert short.integrated() == -np.inf
