"""Streaming mp4 writer: H.264 video appended window by window, AAC soundtrack muxed alongside."""

from __future__ import annotations

import contextlib
import wave
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

from talkgen.errors import EngineFailed, OutputFailed

AUDIO_CHUNK = 1024 * 16
"""Soundtrack samples read from the WAV per step (a multiple of the AAC frame size)."""
AUDIO_BITRATE = 128_000
# Colour tags for what swscale's default RGB -> YUV conversion produces: sRGB (BT.709) primaries and
# transfer, BT.601 (SMPTE 170M) matrix, limited range. Tagging stops players guessing from the size.
_PRIMARIES_BT709 = 1
_TRC_BT709 = 1
_MATRIX_SMPTE170M = 6
_RANGE_TV = 1


class VideoWriter:
    """Write RGB frames to an H.264/AAC mp4 (yuv420p, tagged colours, ``+faststart``) with constant memory.

    Audio comes from a 16-bit PCM WAV and is encoded up to the current video time after every
    `write`, so the muxer never waits on more than one window.
    """

    def __init__(self, path: Path, width: int, height: int, fps: int = 25, soundtrack: Path | None = None,
                 crf: int = 19, preset: str = "veryfast") -> None:
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise EngineFailed(f"VideoWriter needs a positive, even width and height, got {width}x{height}.")
        self.path = Path(path)
        self.width = width
        self.height = height
        self.fps = fps
        self.frames_written = 0
        self._closed = False
        self._wav: wave.Wave_read | None = None
        self._audio: av.audio.stream.AudioStream | None = None
        self._audio_sent = 0
        self._audio_rate = 0
        if not self.path.parent.is_dir():
            raise OutputFailed(f"Cannot write the video to {self.path}: the folder does not exist.")
        if soundtrack is not None:
            self._wav = _open_wav(Path(soundtrack))
            self._audio_rate = self._wav.getframerate()
        try:
            self._container = av.open(str(self.path), "w", format="mp4", options={"movflags": "+faststart"})
        except (av.FFmpegError, OSError) as exc:
            self._close_wav()
            raise OutputFailed(f"Cannot write the video to {self.path}: {exc}") from exc
        except BaseException:
            self._close_wav()
            raise
        try:
            video = self._container.add_stream("libx264", rate=fps)
            video.width, video.height, video.pix_fmt = width, height, "yuv420p"
            video.options = {"crf": str(crf), "preset": preset}
            cc = video.codec_context
            cc.color_primaries, cc.color_trc = _PRIMARIES_BT709, _TRC_BT709
            cc.colorspace, cc.color_range = _MATRIX_SMPTE170M, _RANGE_TV
            self._video = video
            if self._wav is not None:
                audio = self._container.add_stream("aac", rate=self._audio_rate, layout="mono")
                audio.bit_rate = AUDIO_BITRATE
                self._audio = audio
        except BaseException:
            self.abort()
            raise

    # --- context manager ---
    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            self.close()

    # --- writing ---
    def write(self, frames: np.ndarray) -> None:
        """Append frames: uint8 RGB ``[T, H, W, 3]`` or one ``[H, W, 3]``; then mux audio up to that time."""
        if self._closed:
            raise EngineFailed("VideoWriter.write() after close().")
        arr = np.asarray(frames)
        if arr.ndim == 3:
            arr = arr[None]
        expected = (self.height, self.width, 3)
        if arr.ndim != 4 or arr.shape[1:] != expected or arr.dtype != np.uint8:
            raise EngineFailed(
                f"Engine produced frames of shape {arr.shape} and dtype {arr.dtype}; the writer needs uint8 "
                f"[T, {self.height}, {self.width}, 3] (RGB)."
            )
        try:
            for rgb in arr:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                frame.pts = self.frames_written
                frame.time_base = Fraction(1, self.fps)
                self._container.mux(self._video.encode(frame))
                self.frames_written += 1
            self._encode_audio_until(self._audio_target())
        except (av.FFmpegError, OSError) as exc:
            raise OutputFailed(f"Encoding the video failed: {exc}") from exc

    @property
    def audio_samples(self) -> int:
        """Soundtrack samples handed to the AAC encoder so far."""
        return self._audio_sent

    def _audio_target(self) -> int:
        return self.frames_written * self._audio_rate // self.fps

    def _encode_audio_until(self, target: int, final: bool = False) -> None:
        """Encode soundtrack samples up to ``target``; whole chunks only unless ``final`` (then pad)."""
        if self._audio is None or self._wav is None:
            return
        while self._audio_sent < target:
            want = min(AUDIO_CHUNK, target - self._audio_sent)
            if want < AUDIO_CHUNK and not final:
                return  # keep to whole chunks (AAC frames) until the end
            raw = self._wav.readframes(want)
            pcm = np.frombuffer(raw, dtype="<i2")
            samples = pcm.astype(np.float32) / 32768.0
            if len(samples) < want:  # the soundtrack is shorter than the video: silence
                samples = np.concatenate([samples, np.zeros(want - len(samples), np.float32)])
            frame = av.AudioFrame.from_ndarray(samples[None, :], format="fltp", layout="mono")
            frame.sample_rate = self._audio_rate
            frame.pts = self._audio_sent
            frame.time_base = Fraction(1, self._audio_rate)
            self._container.mux(self._audio.encode(frame))
            self._audio_sent += want

    def close(self) -> Path:
        """Flush the encoders, end the audio exactly at the video's end, finalise the mp4; return its path."""
        if self._closed:
            return self.path
        if self.frames_written == 0:
            self.abort()
            raise EngineFailed("No frames were written: the video would be empty.")
        try:
            self._container.mux(self._video.encode(None))
            if self._audio is not None:
                self._encode_audio_until(self._audio_target(), final=True)
                self._container.mux(self._audio.encode(None))
            self._container.close()
        except (av.FFmpegError, OSError) as exc:
            self.abort()
            raise OutputFailed(f"Finishing the video failed: {exc}") from exc
        finally:
            self._close_wav()
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Stop without finishing and delete the partial file."""
        if self._closed:
            return
        self._closed = True
        self._close_wav()
        with contextlib.suppress(Exception):
            self._container.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _close_wav(self) -> None:
        if self._wav is not None:
            self._wav.close()
            self._wav = None


def _open_wav(path: Path) -> wave.Wave_read:
    try:
        wav = wave.open(str(path), "rb")  # noqa: SIM115 - kept open while the video is written
    except (OSError, EOFError, wave.Error) as exc:
        raise EngineFailed(f"The soundtrack {path} cannot be read as a WAV file: {exc}") from exc
    if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
        channels, width = wav.getnchannels(), wav.getsampwidth()
        wav.close()
        raise EngineFailed(
            f"The soundtrack {path.name} must be 16-bit mono PCM WAV, got {channels} channel(s) of "
            f"{8 * width}-bit samples."
        )
    return wav
