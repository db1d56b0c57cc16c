"""Decode any container's first audio stream: mono or stereo float32 blocks at a chosen rate, capped, streamed."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import av
import numpy as np

from talkgen.errors import MediaUnreadable, UnsupportedMedia
from talkgen.media.kinds import sniff
from talkgen.media.probe import media_label, open_container, stream_end_seconds

SAMPLE_RATE = 16000
"""Rate of the per-speaker tracks fed to wav2vec2."""
BLOCK = 1 << 16
"""Default samples per block when streaming audio."""


def reblock(chunks: Iterable[np.ndarray], block: int) -> Iterator[np.ndarray]:
    """Re-cut a stream of 1-D arrays into arrays of exactly ``block`` samples (the last may be shorter)."""
    pending: list[np.ndarray] = []
    size = 0
    for chunk in chunks:
        if not len(chunk):
            continue
        pending.append(chunk)
        size += len(chunk)
        if size < block:
            continue
        joined = np.concatenate(pending)
        start = 0
        while size - start >= block:
            yield joined[start:start + block]
            start += block
        rest = joined[start:]
        pending = [rest] if len(rest) else []
        size = len(rest)
    if size:
        yield np.concatenate(pending)


def _decoded(container: av.container.InputContainer, stream: av.audio.stream.AudioStream, rate: int,
             path: Path, field_name: str | None, channels: int | None = None) -> Iterator[np.ndarray]:
    """Float32 chunks at ``rate``, trimmed to the container's stated end: mono 1-D arrays (channel mean, like
    librosa) by default, ``(channels, n)`` arrays (1 or 2: mono, stereo, down- or up-mixed) when asked."""
    if channels is None:
        resampler = av.AudioResampler(format="fltp", rate=rate)
    else:
        resampler = av.AudioResampler(format="fltp", layout="stereo" if channels == 2 else "mono", rate=rate)
    end = stream_end_seconds(container, stream)
    limit: int | None = None
    emitted = 0

    def converted(frames: list[av.AudioFrame]) -> Iterator[np.ndarray]:
        nonlocal emitted
        for out in frames:
            samples = out.to_ndarray()
            if channels is None:  # mono: the channel mean
                samples = samples[0] if samples.shape[0] == 1 else samples.mean(axis=0)
            if limit is not None:
                samples = samples[..., : max(0, limit - emitted)]
            emitted += samples.shape[-1]
            if samples.shape[-1]:
                yield samples.astype(np.float32, copy=False)

    try:
        for packet in container.demux(stream):
            for frame in packet.decode():
                if limit is None and end is not None and frame.pts is not None and frame.time_base:
                    limit = max(0, round((end - float(frame.pts * frame.time_base)) * rate))
                yield from converted(resampler.resample(frame))
        yield from converted(resampler.resample(None))
    except av.FFmpegError as exc:
        raise MediaUnreadable(
            f"The audio in {media_label(path, field_name)} cannot be decoded ({exc}): send a complete, valid "
            "file.",
            field=field_name,
        ) from None


def _audio_blocks(path: Path, rate: int, field: str | None, channels: int | None) -> Iterator[np.ndarray]:
    path = Path(path)
    kind, mime = sniff(path)
    if kind == "image":
        raise UnsupportedMedia(
            f"{media_label(path, field)} is an image ({mime}), not audio: send speech as wav, mp3, m4a, flac or "
            "ogg, or a video with sound.",
            field=field,
        )
    container = open_container(path, field)
    try:
        if not container.streams.audio:
            raise UnsupportedMedia(
                f"{media_label(path, field)} has no audio stream: send speech as wav, mp3, m4a, flac or ogg, "
                "or a video with sound.",
                field=field,
            )
        yield from _decoded(container, container.streams.audio[0], rate, path, field, channels)
    finally:
        container.close()


def iter_audio(
    path: Path, rate: int, block: int = BLOCK, *, field: str | None = None
) -> Iterator[np.ndarray]:
    """Stream any container's first audio stream as mono float32 blocks of ``block`` samples at ``rate``."""
    yield from reblock(_audio_blocks(path, rate, field, None), block)


def iter_audio_channels(path: Path, rate: int, channels: int, max_seconds: float | None = None, *,
                        field: str | None = None) -> Iterator[np.ndarray]:
    """The first audio stream as ``(channels, n)`` float32 blocks at ``rate`` (as decoded: sizes vary), cut at
    ``max_seconds`` where decoding stops. Same errors as `iter_audio`."""
    limit = None if max_seconds is None else math.ceil(max_seconds * rate)
    total = 0
    for block in _audio_blocks(path, rate, field, channels):
        if limit is not None:
            block = block[:, : limit - total]
        total += block.shape[1]
        if block.shape[1]:
            yield block
        if limit is not None and total >= limit:
            return  # closes the decoder


def iter_audio_capped(path: Path, rate: int, max_seconds: float | None, *,
                      field: str | None = None) -> Iterator[np.ndarray]:
    """`iter_audio` cut at ``max_seconds``; decoding stops there (the cap bounds the work, not the file)."""
    limit = None if max_seconds is None else math.ceil(max_seconds * rate)
    total = 0
    for block in iter_audio(path, rate, field=field):
        if limit is not None:
            block = block[: limit - total]
        total += len(block)
        yield block
        if limit is not None and total >= limit:
            return  # closes the decoder


def decode_audio(path: Path, rate: int = SAMPLE_RATE, *, field: str | None = None,
                 max_seconds: float | None = None) -> np.ndarray:
    """The first audio stream as one mono float32 array at ``rate``; decoding stops at ``max_seconds``."""
    blocks = list(iter_audio_capped(path, rate, max_seconds, field=field))
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
