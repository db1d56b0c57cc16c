"""Vocal separation before lip-sync: each speaker's speech without music, noise or other voices.

A media-preparation step both engines share (it runs before any engine sees the audio): the seed's
MelBand-RoFormer (``MelBandRoformer_fp16.safetensors``) on bs-roformer's model, in overlapping chunks so any
length runs in constant memory. Heavy imports (torch, bs_roformer) happen only when a job separates.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from talkgen.separation.config import SEPARATOR_FILE, SeparatorConfig

if TYPE_CHECKING:
    from talkgen.separation.model import Separator
    from talkgen.settings import Settings

__all__ = ["SEPARATOR_FILE", "SeparatorConfig", "model_path", "separate_file", "separator_for", "speech_separator"]


def model_path(settings: Settings) -> Path:
    """TALKGEN_SEPARATION_MODEL, else the seed's file at its place in the models dir."""
    if settings.separation_model is not None:
        return Path(settings.separation_model).expanduser()
    return Path(settings.models_dir).expanduser() / SEPARATOR_FILE


def separator_for(settings: Settings) -> Separator:
    """The separator these settings name, on their device (loaded once per process)."""
    from talkgen.separation.model import fix_for, load_separator, resolve_device

    device = resolve_device(settings.separation_device, settings.native_device)
    return load_separator(model_path(settings), device, fix=fix_for())


def separate_file(separator: Separator, source: Path, out: Path, *, rate: int, max_seconds: float | None = None,
                  field: str | None = None, on_chunk: Callable[[], None] | None = None) -> int:
    """Separate ``source``'s first audio stream into ``out``: raw float32 mono samples at ``rate`` (the channel
    mean of the stem). Streams end to end: decode, chunks, resampling and writing hold a few blocks at a time.
    Returns the number of samples written."""
    import av

    from talkgen.media.audio_decode import iter_audio_channels

    cfg = separator.config
    blocks = iter_audio_channels(source, cfg.sample_rate, cfg.channels, max_seconds, field=field)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    written = 0
    with open(out, "wb") as fh:

        def emit(frames: list[av.AudioFrame]) -> None:
            nonlocal written
            for frame in frames:
                samples = frame.to_ndarray().reshape(-1)
                fh.write(np.ascontiguousarray(samples, np.float32).tobytes())
                written += len(samples)

        for stem in separator.stream(blocks, on_chunk):
            mono = np.ascontiguousarray(stem.mean(axis=0, dtype=np.float32)[None, :])
            frame = av.AudioFrame.from_ndarray(mono, format="flt", layout="mono")
            frame.sample_rate = cfg.sample_rate
            emit(resampler.resample(frame))
        emit(resampler.resample(None))
    return written


def speech_separator(settings: Settings, *, progress: Callable[[float], None] | None = None,
                     cancel: threading.Event | None = None, speakers: int = 1
                     ) -> Callable[[int, Path, str | None, float | None, Path], None]:
    """The ``separate`` step of `talkgen.media.audio.prepare_audio` for these settings.

    The model is loaded on the first call (so a job that fails before separating never loads it).
    ``progress(fraction)`` follows the chunks of all ``speakers``; a set ``cancel`` stops between chunks.
    """
    from talkgen.errors import Cancelled
    from talkgen.media.audio_decode import SAMPLE_RATE
    from talkgen.media.probe import declared_audio_seconds

    def separate(index: int, source: Path, field: str | None, max_seconds: float | None, out: Path) -> None:
        separator = separator_for(settings)
        cfg = separator.config
        seconds = declared_audio_seconds(source) or 0.0
        if max_seconds is not None:
            seconds = min(seconds, max_seconds)
        expected = max(1, int(seconds * cfg.sample_rate + 2 * (cfg.chunk - cfg.step)) // cfg.step + 1)
        done = 0

        def on_chunk() -> None:
            nonlocal done
            if cancel is not None and cancel.is_set():
                raise Cancelled("The job was cancelled.")
            if progress is not None:
                progress((index + min(done / expected, 1.0)) / speakers)
            done += 1

        separate_file(separator, source, out, rate=SAMPLE_RATE, max_seconds=max_seconds, field=field, on_chunk=on_chunk)

    return separate
