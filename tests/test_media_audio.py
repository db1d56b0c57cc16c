"""Audio decoding, loudness normalisation, speaker layouts and the soundtrack WAV."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from talkgen.errors import InvalidRequest, MediaUnreadable, UnsupportedMedia
from talkgen.media.audio import SOUNDTRACK_RATE, TARGET_LUFS, loudness_gain, prepare_audio
from talkgen.media.audio_decode import SAMPLE_RATE, decode_audio, iter_audio, reblock
from tests.support import media_factory as mf


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def lufs(samples: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    return float(pyloudnorm.Meter(rate).integrated_loudness(samples))


def read_wav(path: Path) -> tuple[np.ndarray, int, int, int]:
    with wave.open(str(path)) as wf:
        pcm = np.frombuffer(wf.readframes(wf.getnframes()), "<i2")
        return pcm.astype(np.float32) / 32768.0, wf.getframerate(), wf.getnchannels(), wf.getsampwidth()


def frames_25(seconds: float) -> int:
    return max(1, round(seconds * 25))


# (maker, seconds, tone frequency)
CONTAINERS = {
    "wav16k": (lambda p: mf.make_wav(p / "a.wav", 2.0, rate=16000, freq=220.0), 220.0),
    "wav44k-stereo": (lambda p: mf.make_wav(p / "a.wav", 2.0, rate=44100, freq=220.0, channels=2), 220.0),
    "mp3": (lambda p: mf.make_audio(p / "a.mp3", 2.0, "libmp3lame"), 330.0),
    "m4a": (lambda p: mf.make_audio(p / "a.m4a", 2.0, "aac", container="mp4"), 330.0),
    "flac": (lambda p: mf.make_audio(p / "a.flac", 2.0, "flac"), 330.0),
    "ogg-opus": (lambda p: mf.make_audio(p / "a.ogg", 2.0, "libopus", rate=48000, container="ogg"), 330.0),
    "mp4-video": (lambda p: mf.make_video(p / "v.mp4", 2.0, audio_seconds=2.0), 440.0),
}


@pytest.mark.parametrize("name", list(CONTAINERS))
def test_every_container_decodes_to_16k_mono(tmp_path: Path, name: str) -> None:
    make, freq = CONTAINERS[name]
    samples = decode_audio(make(tmp_path))
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) / SAMPLE_RATE - 2.0) <= 0.02
    assert dominant_hz(samples, SAMPLE_RATE) == pytest.approx(freq, abs=2.0)
    assert 0.05 < float(np.abs(samples).max()) <= 1.0


def test_stereo_downmix_is_the_channel_mean(tmp_path: Path) -> None:
    mono = decode_audio(mf.make_wav(tmp_path / "m.wav", 1.0, channels=1))
    stereo = decode_audio(mf.make_wav(tmp_path / "s.wav", 1.0, channels=2))
    np.testing.assert_allclose(stereo, mono, atol=1e-4)


def test_iter_audio_streams_fixed_blocks(tmp_path: Path) -> None:
    path = mf.make_audio(tmp_path / "a.flac", 1.3, "flac")
    blocks = list(iter_audio(path, SOUNDTRACK_RATE, block=4096))
    assert all(len(b) == 4096 for b in blocks[:-1]) and 0 < len(blocks[-1]) <= 4096
    joined = np.concatenate(blocks)
    assert abs(len(joined) - 1.3 * SOUNDTRACK_RATE) <= 0.02 * SOUNDTRACK_RATE
    np.testing.assert_array_equal(joined, decode_audio(path, SOUNDTRACK_RATE))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 50), max_size=30), st.integers(1, 17))
def test_reblock_preserves_samples(sizes: list[int], block: int) -> None:
    chunks = [np.arange(sum(sizes[:i]), sum(sizes[: i + 1]), dtype=np.float32) for i in range(len(sizes))]
    out = list(reblock(chunks, block))
    assert all(len(b) == block for b in out[:-1])
    assert all(0 < len(b) <= block for b in out)
    joined = np.concatenate(out) if out else np.zeros(0, np.float32)
    np.testing.assert_array_equal(joined, np.arange(sum(sizes), dtype=np.float32))


@pytest.mark.parametrize("amp", [0.02, 0.3, 0.9])
def test_loudness_gain_reaches_target(amp: float) -> None:
    samples = mf.tone(3.0, SAMPLE_RATE, 300.0, amp=amp, envelope_hz=2.0)
    gain = loudness_gain(samples, SAMPLE_RATE)
    assert lufs(samples * gain) == pytest.approx(TARGET_LUFS, abs=0.5)
    assert (gain > 1) == (lufs(samples) < TARGET_LUFS)


def test_loudness_gain_leaves_silence_and_short_audio_alone() -> None:
    assert loudness_gain(np.zeros(SAMPLE_RATE * 2, np.float32), SAMPLE_RATE) == 1.0
    assert loudness_gain(mf.tone(2.0, SAMPLE_RATE, amp=1e-6), SAMPLE_RATE) == 1.0  # below -70 LUFS
    assert loudness_gain(mf.tone(0.3, SAMPLE_RATE, amp=0.01), SAMPLE_RATE) == 1.0
    assert loudness_gain(np.zeros(0, np.float32), SAMPLE_RATE) == 1.0


def test_prepare_one_speaker(tmp_path: Path) -> None:
    src = mf.make_audio(tmp_path / "a.m4a", 2.0, "aac", container="mp4")
    seen: list[float] = []

    def frames_for(seconds: float) -> int:
        seen.append(seconds)
        return frames_25(seconds)

    out = prepare_audio([src], None, tmp_path / "out", frames_for, fields=["wav_url"])
    assert seen and abs(seen[-1] - 2.0) <= 0.02  # the decoded length (an earlier call checks the header)
    assert out.frames == 50 and out.fps == 25 and out.rate == SAMPLE_RATE
    assert out.duration == 2.0 and out.audio_type is None
    assert len(out.tracks) == 1 and out.tracks[0].dtype == np.float32
    assert len(out.tracks[0]) == 50 * 640
    assert lufs(out.tracks[0]) == pytest.approx(TARGET_LUFS, abs=0.5)
    mix, rate, channels, width = read_wav(out.soundtrack)
    assert (rate, channels, width) == (SOUNDTRACK_RATE, 1, 2)
    assert len(mix) == 50 * SOUNDTRACK_RATE // 25
    assert lufs(mix, SOUNDTRACK_RATE) == pytest.approx(TARGET_LUFS, abs=0.5)
    assert dominant_hz(mix, SOUNDTRACK_RATE) == pytest.approx(330.0, abs=2.0)


@pytest.mark.parametrize("frames", [20, 61])
def test_tracks_and_soundtrack_follow_frames_for(tmp_path: Path, frames: int) -> None:
    src = mf.make_wav(tmp_path / "a.wav", 2.0)
    out = prepare_audio([src], None, tmp_path / "out", lambda s: frames)
    assert out.frames == frames and out.duration == frames / 25
    assert len(out.tracks[0]) == frames * 640
    mix = read_wav(out.soundtrack)[0]
    assert len(mix) == frames * 1920
    if frames * 640 > 32000:  # padded with silence past the speech
        assert not out.tracks[0][32000:].any()
        assert np.abs(mix[96000 + 100:]).max() == 0
        assert np.abs(out.tracks[0][:32000]).max() > 0.05


def test_two_speakers_add_take_turns(tmp_path: Path) -> None:
    a1 = mf.make_wav(tmp_path / "a1.wav", 1.0, freq=220.0)
    a2 = mf.make_audio(tmp_path / "a2.flac", 2.0, "flac", freq=660.0)
    out = prepare_audio([a1, a2], "add", tmp_path / "out", frames_25, fields=["wav_url", "wav_url_2"])
    assert out.audio_type == "add" and out.frames == 75
    s1, s2 = out.tracks
    assert len(s1) == len(s2) == 48000
    n1 = 16000
    assert np.abs(s1[:n1]).max() > 0.05 and not s1[n1:].any()
    assert not s2[:n1].any() and np.abs(s2[n1:]).max() > 0.05
    assert lufs(s1[:n1]) == pytest.approx(TARGET_LUFS, abs=0.5)
    assert lufs(s2[n1:]) == pytest.approx(TARGET_LUFS, abs=0.5)
    mix = read_wav(out.soundtrack)[0]
    assert len(mix) == 75 * 1920
    turn = n1 * 3
    assert dominant_hz(mix[:turn - 480], SOUNDTRACK_RATE) == pytest.approx(220.0, abs=3.0)
    assert dominant_hz(mix[turn + 480:], SOUNDTRACK_RATE) == pytest.approx(660.0, abs=3.0)


def test_two_speakers_para_overlap(tmp_path: Path) -> None:
    a1 = mf.make_wav(tmp_path / "a1.wav", 1.0, freq=220.0)
    a2 = mf.make_wav(tmp_path / "a2.wav", 2.0, freq=660.0)
    out = prepare_audio([a1, a2], None, tmp_path / "out", frames_25)
    assert out.audio_type == "para"  # the default for two speakers
    s1, s2 = out.tracks
    assert len(s1) == len(s2) == 32000 and out.frames == 50
    assert np.abs(s1[:16000]).max() > 0.05 and not s1[16000:].any()
    assert np.abs(s2[:16000]).max() > 0.05 and np.abs(s2[16000:]).max() > 0.05
    mix = read_wav(out.soundtrack)[0]
    assert len(mix) == 50 * 1920
    first = np.abs(np.fft.rfft(mix[:48000]))
    freqs = np.fft.rfftfreq(48000, 1 / SOUNDTRACK_RATE)
    peaks = sorted(float(freqs[i]) for i in np.argsort(first)[-2:])
    assert peaks == pytest.approx([220.0, 660.0], abs=3.0)
    assert dominant_hz(mix[48000 + 480:], SOUNDTRACK_RATE) == pytest.approx(660.0, abs=3.0)


def test_soundtrack_matches_normalised_tracks(tmp_path: Path) -> None:
    src = mf.make_wav(tmp_path / "quiet.wav", 2.0, rate=22050, channels=2)
    out = prepare_audio([src], None, tmp_path / "out", frames_25)
    mix = read_wav(out.soundtrack)[0]
    track = out.tracks[0]
    rms_track = float(np.sqrt(np.mean(track.astype(np.float64) ** 2)))
    rms_mix = float(np.sqrt(np.mean(mix.astype(np.float64) ** 2)))
    assert rms_mix == pytest.approx(rms_track, rel=0.03)
    # time alignment: the 48 kHz mix, decimated, follows the 16 kHz track
    assert np.corrcoef(mix[::3][: len(track)], track)[0, 1] > 0.9


def test_loud_peaks_are_clipped_not_wrapped(tmp_path: Path) -> None:
    # A quiet tone gets a large gain; its one loud click then exceeds full scale in the mix.
    samples = mf.tone(2.0, SAMPLE_RATE, 200.0, amp=0.01)
    samples[8000:8003] = 0.9
    a1 = mf.write_wav(tmp_path / "a1.wav", samples)
    a2 = mf.write_wav(tmp_path / "a2.wav", samples)
    out = prepare_audio([a1, a2], "para", tmp_path / "out", frames_25)
    assert out.gains[0] > 3
    mix = read_wav(out.soundtrack)[0]
    assert mix.min() >= -1.0
    # the click's centre (16 kHz sample 8001 = 48 kHz sample 24003) sits at the positive rail;
    # (an int16 wrap-around would land elsewhere in the range)
    assert mix[24003] >= 32767 / 32768


def test_silent_speaker_is_allowed(tmp_path: Path) -> None:
    talk = mf.make_wav(tmp_path / "talk.wav", 1.0)
    quiet = mf.write_wav(tmp_path / "quiet.wav", np.zeros(SAMPLE_RATE, np.float32))
    out = prepare_audio([talk, quiet], "para", tmp_path / "out", frames_25)
    assert out.gains[1] == 1.0
    assert not out.tracks[1].any()
    assert lufs(out.tracks[0]) == pytest.approx(TARGET_LUFS, abs=0.5)


def test_empty_audio_is_refused_with_its_field(tmp_path: Path) -> None:
    empty = mf.write_wav(tmp_path / "empty.wav", np.zeros(0, np.float32))
    talk = mf.make_wav(tmp_path / "talk.wav", 1.0)
    with pytest.raises(MediaUnreadable, match="contains no audio") as err:
        prepare_audio([talk, empty], "add", tmp_path / "out", frames_25, fields=["wav_url", "wav_url_2"])
    assert err.value.field == "wav_url_2"


def test_image_given_as_audio_is_refused(tmp_path: Path) -> None:
    img = mf.make_image(tmp_path / "face.png")
    with pytest.raises((UnsupportedMedia, MediaUnreadable)) as err:
        prepare_audio([img], None, tmp_path / "out", frames_25, fields=["wav_url"])
    assert err.value.field == "wav_url"


def test_video_without_sound_is_refused(tmp_path: Path) -> None:
    video = mf.make_video(tmp_path / "v.mp4", 1.0)
    with pytest.raises(UnsupportedMedia, match="no audio stream"):
        decode_audio(video, field="wav_url")


def test_bad_audio_type_is_invalid(tmp_path: Path) -> None:
    a = mf.make_wav(tmp_path / "a.wav", 1.0)
    with pytest.raises(InvalidRequest) as err:
        prepare_audio([a, a], "mix", tmp_path / "out", frames_25)
    assert err.value.field == "audio_type"
