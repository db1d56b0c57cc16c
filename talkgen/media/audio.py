"""Speech audio: decode any container, loudness-normalise, lay out speakers, write the soundtrack."""

from __future__ import annotations

import itertools
import math
import os
import wave
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from talkgen.errors import InternalError, InvalidRequest, MediaUnreadable
from talkgen.media.audio_decode import BLOCK, SAMPLE_RATE, iter_audio, iter_audio_capped, reblock
from talkgen.media.loudness import LoudnessMeter
from talkgen.media.probe import declared_audio_seconds, media_label

TARGET_LUFS = -23.0
"""Integrated loudness every speaker is normalised to (as upstream InfiniteTalk)."""
SOUNDTRACK_RATE = 48000
"""Rate of the soundtrack WAV muxed into the output video."""
SILENCE_LUFS = -70.0
"""Quieter than this (BS.1770 absolute gate) counts as silence: no gain is applied."""
LOUDNESS_BLOCK_S = 0.4
AUDIO_TYPES = ("para", "add")
DECLARED_MARGIN_S = 0.25
"""A header's duration is trusted for an early refusal only this far past the limit (decoders differ)."""


def loudness_gain(samples: np.ndarray, rate: int) -> float:
    """Linear gain that brings ``samples`` to `TARGET_LUFS`; 1.0 for silence or audio under 0.4 s."""
    meter = LoudnessMeter(rate)
    meter.add(samples)
    return _gain(meter)


def _gain(meter: LoudnessMeter) -> float:
    """The gain to `TARGET_LUFS` for what ``meter`` measured (1.0 for silence or audio under 0.4 s)."""
    if meter.samples < math.ceil(LOUDNESS_BLOCK_S * meter.rate):
        return 1.0
    loudness = meter.integrated()
    if not math.isfinite(loudness) or loudness < SILENCE_LUFS:
        return 1.0
    return float(10.0 ** ((TARGET_LUFS - loudness) / 20.0))


@dataclass
class _Speech:
    """One speaker decoded to a raw float32 file at `SAMPLE_RATE`, with its length and loudness gain."""

    raw: Path
    samples: int
    gain: float


def _decode_speech(path: Path, raw: Path, field_name: str | None, max_seconds: float | None) -> _Speech:
    """Stream ``path`` at `SAMPLE_RATE` to ``raw`` while metering its loudness (memory: one block)."""
    meter = LoudnessMeter(SAMPLE_RATE)
    total = 0
    with open(raw, "wb") as out:
        for block in iter_audio_capped(path, SAMPLE_RATE, max_seconds, field=field_name):
            meter.add(block)
            out.write(np.ascontiguousarray(block, dtype=np.float32).tobytes())
            total += len(block)
    if not total:
        raise MediaUnreadable(
            f"{media_label(path, field_name)} contains no audio (zero samples): send a recording with speech.",
            field=field_name,
        )
    return _Speech(raw=raw, samples=total, gain=_gain(meter))


Separate = Callable[[int, Path, str | None, float | None, Path], None]
"""``separate(index, source, field, max_seconds, out)``: write speaker ``index``'s separated speech to ``out`` as
raw float32 mono samples at `SAMPLE_RATE` (decoding ``source`` no further than ``max_seconds``)."""


def _separated(separate: Separate, index: int, path: Path, field_name: str | None, max_seconds: float | None,
               original: _Speech, raw: Path) -> _Speech:
    """Speaker ``index``'s separated speech, cut or zero-padded to the original's length and metered for its
    own loudness gain (the file is streamed: memory holds one block)."""
    separate(index, path, field_name, max_seconds, raw)
    have = raw.stat().st_size // 4 if raw.exists() else 0
    if have > original.samples:
        os.truncate(raw, original.samples * 4)
    elif have < original.samples:
        with open(raw, "ab") as out:
            left = original.samples - have
            while left > 0:
                n = min(BLOCK, left)
                out.write(np.zeros(n, np.float32).tobytes())
                left -= n
    meter = LoudnessMeter(SAMPLE_RATE)
    with open(raw, "rb") as fh:
        while chunk := fh.read(BLOCK * 4):
            meter.add(np.frombuffer(chunk, np.float32))
    return _Speech(raw=raw, samples=original.samples, gain=_gain(meter))


def _check_declared(paths: list[Path], audio_type: str | None, frames_for: Callable[[float], int]) -> None:
    """Refuse audio whose headers already say it is too long, before decoding anything.

    ``frames_for`` raises the caller's `TooLong`; it sees a lower bound of the natural length (files
    without a trustworthy header count as 0 s), so a wrong or absent header never refuses audio that the
    decode would accept: the decode limit still catches what the headers do not.
    """
    declared = [declared_audio_seconds(p) or 0.0 for p in paths]
    natural = sum(declared) if audio_type == "add" else max(declared)
    if natural > DECLARED_MARGIN_S:
        frames_for(natural - DECLARED_MARGIN_S)


def _place(speech: _Speech, track: np.ndarray, offset: int) -> None:
    """Read ``speech``'s samples into ``track[offset:]`` (as far as it reaches), scaled by its gain."""
    count = max(0, min(speech.samples, len(track) - offset))
    if not count:
        return
    view = track[offset:offset + count]
    with open(speech.raw, "rb") as fh:
        got = fh.readinto(memoryview(view).cast("B"))
    if got != count * view.itemsize:  # pragma: no cover - the file was written by _decode_speech
        raise InternalError(f"{speech.raw.name}: read {got} bytes, expected {count * view.itemsize}")
    if speech.gain != 1.0:
        view *= np.float32(speech.gain)


@dataclass
class PreparedAudio:
    """Per-speaker 16 kHz tracks of exactly ``frames`` video frames, and the soundtrack WAV for the mux."""

    tracks: list[np.ndarray]
    rate: int
    frames: int
    fps: int
    duration: float
    soundtrack: Path
    audio_type: str | None
    natural_duration: float = 0.0
    gains: list[float] = field(default_factory=list)
    """Loudness gain of each speaker's track (of the separated speech when ``separated``)."""
    separated: bool = False
    """The tracks hold separated vocals; the soundtrack is always the original audio."""
    soundtrack_gains: list[float] = field(default_factory=list)
    """Loudness gain of each speaker's original audio in the soundtrack."""

    @property
    def samples_per_frame(self) -> float:
        return self.rate / self.fps


def _fit(samples: np.ndarray, length: int) -> np.ndarray:
    """Trim or zero-pad to ``length`` samples."""
    if len(samples) >= length:
        return samples[:length]
    return np.concatenate([samples, np.zeros(length - len(samples), samples.dtype)])


def _fit_stream(blocks: Iterable[np.ndarray], length: int, block: int) -> Iterator[np.ndarray]:
    """Blocks totalling exactly ``length`` samples: the stream trimmed, then zeros."""
    left = length
    for chunk in blocks:
        if left <= 0:
            return
        chunk = chunk[:left]
        left -= len(chunk)
        yield chunk
    while left > 0:
        n = min(block, left)
        left -= n
        yield np.zeros(n, np.float32)


def _scaled(blocks: Iterable[np.ndarray], gain: float) -> Iterator[np.ndarray]:
    for chunk in blocks:
        yield chunk * np.float32(gain) if gain != 1.0 else chunk


def _summed(a: Iterable[np.ndarray], b: Iterable[np.ndarray], block: int) -> Iterator[np.ndarray]:
    """Sample-wise sum of two streams (the shorter one continues as silence)."""
    for x, y in itertools.zip_longest(reblock(a, block), reblock(b, block)):
        if x is None:
            yield y
        elif y is None:
            yield x
        elif len(x) == len(y):
            yield x + y
        else:
            n = max(len(x), len(y))
            yield _fit(x, n) + _fit(y, n)


def write_wav(path: Path, blocks: Iterable[np.ndarray], rate: int) -> int:
    """Write float blocks as 16-bit mono PCM WAV (clipped to [-1, 1]) block by block; returns samples."""
    total = 0
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(rate)
        for chunk in blocks:
            pcm = np.rint(np.clip(chunk, -1.0, 1.0) * 32767.0).astype("<i2")
            wf.writeframes(pcm.tobytes())
            total += len(pcm)
    return total


def prepare_audio(
    paths: list[Path],
    audio_type: str | None,
    out_dir: Path,
    frames_for: Callable[[float], int],
    fps: int = 25,
    fields: list[str] | None = None,
    decode_limit_s: float | None = None,
    separate: Separate | None = None,
) -> PreparedAudio:
    """Decode, normalise and lay out one or two speakers; write ``out_dir/soundtrack.wav``.

    ``frames_for(natural_seconds)`` returns the number of video frames to make (it applies the caller's
    caps and raises when the audio is too long); tracks and soundtrack are cut or zero-padded to exactly
    that many frames. It is first asked with the length the files' headers declare, so audio that is
    plainly too long is refused before any decoding. Each file is decoded no further than
    ``decode_limit_s`` seconds, streamed to disk while its loudness is metered; memory holds the final
    tracks and one block, whatever the input's length.

    With ``separate`` (vocal separation), each speaker's track is made from its separated speech (normalised
    on its own loudness) while the soundtrack is still the original audio, exactly as without it.
    """
    paths = [Path(p) for p in paths]
    if len(paths) not in (1, 2):
        raise InvalidRequest(f"Give one or two speech audio files, not {len(paths)}.")
    names: list[str | None] = list(fields) if fields else [None] * len(paths)
    if len(names) != len(paths):
        raise InternalError(f"prepare_audio: {len(paths)} paths but {len(names)} field names.")
    if len(paths) == 1:
        audio_type = None
    else:
        audio_type = audio_type or "para"
        if audio_type not in AUDIO_TYPES:
            raise InvalidRequest(
                f"`audio_type` is {audio_type!r}: use 'para' (speakers talk at the same time) or 'add' "
                "(speaker 1, then speaker 2).",
                field="audio_type",
            )

    _check_declared(paths, audio_type, frames_for)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    speech: list[_Speech] = []
    vocals: list[_Speech] = []
    try:
        for i, (p, n) in enumerate(zip(paths, names, strict=True)):
            speech.append(_decode_speech(p, out_dir / f"speech_{i + 1}.f32", n, decode_limit_s))
        lengths = [sp.samples for sp in speech]
        natural = (sum(lengths) if audio_type == "add" else max(lengths)) / SAMPLE_RATE
        frames = int(frames_for(natural))
        if frames < 1:
            raise InternalError(f"frames_for({natural:.3f}) returned {frames}; it must return at least 1.")
        if separate is not None:
            for i, (p, n, sp) in enumerate(zip(paths, names, speech, strict=True)):
                vocals.append(_separated(separate, i, p, n, decode_limit_s, sp, out_dir / f"vocals_{i + 1}.f32"))
        track_len = round(frames * SAMPLE_RATE / fps)
        # 'add': speaker 2 starts where speaker 1 ends; otherwise both start at 0 (zeros fill the rest).
        offsets = [0, lengths[0]] if audio_type == "add" else [0] * len(speech)
        tracks = []
        for sp, offset in zip(vocals or speech, offsets, strict=True):
            track = np.zeros(track_len, np.float32)
            _place(sp, track, offset)
            tracks.append(track)
    finally:
        for sp in speech + vocals:
            sp.raw.unlink(missing_ok=True)
        if separate is not None:
            for i in range(len(paths)):
                (out_dir / f"vocals_{i + 1}.f32").unlink(missing_ok=True)
    gains = [sp.gain for sp in speech]

    soundtrack = out_dir / "soundtrack.wav"
    total = round(frames * SOUNDTRACK_RATE / fps)
    streams = [
        _scaled(iter_audio(p, SOUNDTRACK_RATE, field=n), g)
        for p, n, g in zip(paths, names, gains, strict=True)
    ]
    if audio_type == "add":
        # Each turn keeps the exact length of its 16 kHz track so the mix lines up with the speakers' tracks.
        ratio = SOUNDTRACK_RATE // SAMPLE_RATE if SOUNDTRACK_RATE % SAMPLE_RATE == 0 else None
        turns = [n * ratio if ratio else round(n * SOUNDTRACK_RATE / SAMPLE_RATE) for n in lengths]
        mix: Iterable[np.ndarray] = itertools.chain.from_iterable(
            _fit_stream(s, n, BLOCK) for s, n in zip(streams, turns, strict=True)
        )
    elif audio_type == "para":
        mix = _summed(streams[0], streams[1], BLOCK)
    else:
        mix = streams[0]
    written = write_wav(soundtrack, _fit_stream(mix, total, BLOCK), SOUNDTRACK_RATE)
    if written != total:  # pragma: no cover - _fit_stream guarantees the length
        raise InternalError(f"soundtrack has {written} samples, expected {total}")

    return PreparedAudio(
        tracks=tracks,
        rate=SAMPLE_RATE,
        frames=frames,
        fps=fps,
        duration=frames / fps,
        soundtrack=soundtrack,
        audio_type=audio_type,
        natural_duration=natural,
        gains=[sp.gain for sp in vocals] if vocals else gains,
        separated=bool(vocals),
        soundtrack_gains=gains,
    )
