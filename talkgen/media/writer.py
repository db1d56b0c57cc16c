"""Streaming mp4 writer: H.264 video appended window by window, AAC soundtrack muxed alongside."""

from __future__ import annotations

import contextlib
import wave
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np

from talkgen.errors import EngineFailed, OutputFailed
from talkgen.media.parts import Coded, Part

AUDIO_CHUNK = 1024 * 16
"""Soundtrack samples read from the WAV per step between cuts (a multiple of the AAC frame size)."""
AUDIO_BITRATE = 128_000
AUDIO_AHEAD = 4 * 1024
"""At a cut the soundtrack is encoded this far past the video (it is known in advance), so every AAC packet
that starts before the cut is out of the encoder (its priming frame, its lookahead and PyAV's frame buffer
hold three frames back; tests/test_stream.py checks that each segment's audio reaches its last frame)."""
# Colour tags for what swscale's default RGB -> YUV conversion produces: sRGB (BT.709) primaries and
# transfer, BT.601 (SMPTE 170M) matrix, limited range. Tagging stops players guessing from the size.
_PRIMARIES_BT709 = 1
_TRC_BT709 = 1
_MATRIX_SMPTE170M = 6
_RANGE_TV = 1


class VideoWriter:
    """Write RGB frames to an H.264/AAC mp4 (yuv420p, tagged colours, ``+faststart``) with constant memory.

    `cut` (called once per window through `Job.window_done`) closes the video's current GOP: every window
    opens on an IDR frame and is encoded on its own (B-frames and lookahead inside it), so a window's packets
    are complete the moment it is cut and the same packets can go to a live stream as well (``keep_parts``:
    `cut` returns them as a `Part`). The mp4 is the same whether or not anything streams.

    Audio comes from a 16-bit PCM WAV and is encoded up to the current video time after every `write`, so
    the muxer never waits on more than one window.
    """

    def __init__(self, path: Path, width: int, height: int, fps: int = 25, soundtrack: Path | None = None,
                 crf: int = 19, preset: str = "veryfast", *, total_frames: int | None = None,
                 keep_parts: bool = False) -> None:
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise EngineFailed(f"VideoWriter needs a positive, even width and height, got {width}x{height}.")
        self.path = Path(path)
        self.width = width
        self.height = height
        self.fps = fps
        self.total_frames = total_frames
        self.keep_parts = keep_parts
        self.frames_written = 0
        self.tail: Part | None = None  # what `close` cut last (a streaming consumer's final part)
        self._crf, self._preset = crf, preset
        self._closed = False
        self._gop: Any = None  # the open H.264 encoder of the current window
        self._cut_at = 0  # frames in earlier parts
        self._kept_video: list[Coded] = []
        self._kept_audio: list[Coded] = []
        self._wav: wave.Wave_read | None = None
        self._audio: av.audio.stream.AudioStream | None = None
        self._audio_sent = 0
        self._audio_rate = 0
        self._audio_done = False
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
            # Packets from the per-window encoders; the mp4 muxer takes SPS/PPS from the first IDR frame.
            self._video = self._container.add_mux_stream("h264", rate=fps, width=width, height=height)
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
            if self._gop is None:
                self._gop = self._open_gop()
            for rgb in arr:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                frame.pts = self.frames_written
                frame.time_base = Fraction(1, self.fps)
                self._mux_video(self._gop.encode(frame))
                self.frames_written += 1
            self._encode_audio_until(self._audio_target())
        except (av.FFmpegError, OSError) as exc:
            raise OutputFailed(f"Encoding the video failed: {exc}") from exc

    def cut(self) -> Part | None:
        """End the current window: flush its encoder (the next frame opens a new GOP) and encode the soundtrack
        past its end. Returns the window's `Part` (packets only with ``keep_parts``); None if no frame came
        since the last cut. Once ``total_frames`` are written the cut is final and the soundtrack is complete."""
        if self._closed:
            raise EngineFailed("VideoWriter.cut() after close().")
        if self.frames_written == self._cut_at:
            return None
        final = self.total_frames is not None and self.frames_written >= self.total_frames
        try:
            return self._cut(final)
        except (av.FFmpegError, OSError) as exc:
            raise OutputFailed(f"Encoding the video failed: {exc}") from exc

    @property
    def audio_samples(self) -> int:
        """Soundtrack samples handed to the AAC encoder so far."""
        return self._audio_sent

    @property
    def audio_extradata(self) -> bytes | None:
        """The AAC decoder configuration (what a muxer of the kept audio packets needs)."""
        return None if self._audio is None else self._audio.codec_context.extradata

    def _open_gop(self) -> Any:
        cc = av.CodecContext.create("libx264", "w")
        cc.width, cc.height, cc.pix_fmt = self.width, self.height, "yuv420p"
        cc.time_base, cc.framerate = Fraction(1, self.fps), Fraction(self.fps, 1)
        cc.color_primaries, cc.color_trc = _PRIMARIES_BT709, _TRC_BT709
        cc.colorspace, cc.color_range = _MATRIX_SMPTE170M, _RANGE_TV
        cc.options = {"crf": str(self._crf), "preset": self._preset}
        cc.open()
        return cc

    def _mux_video(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            if self.keep_parts:
                self._kept_video.append(Coded.of(packet, self.fps))
            packet.stream = self._video
            self._container.mux(packet)

    def _mux_audio(self, packets: list[av.Packet]) -> None:
        if self.keep_parts:
            self._kept_audio.extend(Coded.of(p, self._audio_rate) for p in packets)
        self._container.mux(packets)

    def _cut(self, final: bool) -> Part:
        if self._gop is not None:
            self._mux_video(self._gop.encode(None))
            self._gop = None
        end = self._audio_target()
        if final:
            self._finish_audio()
        elif self.total_frames is not None:
            self._encode_audio_until(min(end + AUDIO_AHEAD, self.total_frames * self._audio_rate // self.fps),
                                     partial=True)
        part = Part(self._cut_at, self.frames_written - self._cut_at, final, self._kept_video,
                    rate=self._audio_rate, audio_config=self.audio_extradata)
        self._kept_video = []
        if final:
            part.audio, self._kept_audio = self._kept_audio, []
        else:
            part.audio = [p for p in self._kept_audio if p.pts is not None and p.pts < end]
            self._kept_audio = self._kept_audio[len(part.audio):]
        self._cut_at = self.frames_written
        return part

    def _audio_target(self) -> int:
        return self.frames_written * self._audio_rate // self.fps

    def _encode_audio_until(self, target: int, partial: bool = False) -> None:
        """Encode soundtrack samples up to ``target``; whole chunks only unless ``partial``."""
        if self._audio is None or self._wav is None or self._audio_done:
            return
        while self._audio_sent < target:
            want = min(AUDIO_CHUNK, target - self._audio_sent)
            if want < AUDIO_CHUNK and not partial:
                return  # keep to whole chunks until a cut
            raw = self._wav.readframes(want)
            pcm = np.frombuffer(raw, dtype="<i2")
            samples = pcm.astype(np.float32) / 32768.0
            if len(samples) < want:  # the soundtrack is shorter than the video: silence
                samples = np.concatenate([samples, np.zeros(want - len(samples), np.float32)])
            frame = av.AudioFrame.from_ndarray(samples[None, :], format="fltp", layout="mono")
            frame.sample_rate = self._audio_rate
            frame.pts = self._audio_sent
            frame.time_base = Fraction(1, self._audio_rate)
            self._mux_audio(self._audio.encode(frame))
            self._audio_sent += want

    def _finish_audio(self) -> None:
        """End the soundtrack exactly at the video's end and flush the AAC encoder."""
        if self._audio is None or self._audio_done:
            return
        self._encode_audio_until(self._audio_target(), partial=True)
        self._mux_audio(self._audio.encode(None))
        self._audio_done = True

    def close(self) -> Path:
        """Flush the encoders, end the audio exactly at the video's end, finalise the mp4; return its path.
        What was not cut yet becomes the final part, in `tail`."""
        if self._closed:
            return self.path
        if self.frames_written == 0:
            self.abort()
            raise EngineFailed("No frames were written: the video would be empty.")
        try:
            if self.frames_written > self._cut_at or (self._audio is not None and not self._audio_done):
                self.tail = self._cut(final=True)
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
        self._gop = None
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
