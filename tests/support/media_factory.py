"""Small real media files made on the fly for tests (PyAV, Pillow, stdlib wave)."""

from __future__ import annotations

import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image


def tone(seconds: float, rate: int = 16000, freq: float = 220.0, amp: float = 0.3,
         envelope_hz: float = 0.0) -> np.ndarray:
    """A sine tone as float32 mono samples; ``envelope_hz`` > 0 modulates its loudness (speech-like)."""
    t = np.arange(int(round(seconds * rate))) / rate
    y = amp * np.sin(2 * np.pi * freq * t)
    if envelope_hz:
        y *= 0.5 * (1 + np.sin(2 * np.pi * envelope_hz * t))
    return y.astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000, channels: int = 1) -> Path:
    """16-bit PCM WAV; ``samples`` is float32 mono in [-1, 1] (duplicated for stereo)."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    if channels > 1:
        pcm = np.repeat(pcm[:, None], channels, axis=1).reshape(-1)
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(channels)
        wf.setsampwidth(2)
        wf.setframerate(rate)
        wf.writeframes(pcm.tobytes())
    return path


def make_wav(path: Path, seconds: float = 2.0, rate: int = 16000, freq: float = 220.0, **kw) -> Path:
    return write_wav(path, tone(seconds, rate, freq, envelope_hz=kw.pop("envelope_hz", 3.0)), rate, **kw)


def make_audio(path: Path, seconds: float = 2.0, codec: str = "libmp3lame", rate: int = 44100,
               container: str | None = None, freq: float = 330.0) -> Path:
    """Encode a tone with PyAV: mp3 (libmp3lame), m4a (aac), flac, ogg (libopus, 48 kHz)."""
    samples = tone(seconds, rate, freq, envelope_hz=3.0)
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        fmt = stream.codec_context.codec.audio_formats[0].name if stream.codec_context.codec.audio_formats else "s16"
        for start in range(0, len(samples), 1024):
            chunk = samples[start:start + 1024]
            frame = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            frame.time_base = Fraction(1, rate)
            for packet in stream.encode(_convert(frame, fmt, rate)):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def _convert(frame: av.AudioFrame, fmt: str, rate: int) -> list[av.AudioFrame] | av.AudioFrame:
    return frame if fmt == "flt" else av.AudioResampler(format=fmt, layout="mono", rate=rate).resample(frame)[0]


def make_image(path: Path, width: int = 96, height: int = 64, fmt: str | None = None,
               color: tuple[int, int, int] = (180, 120, 90)) -> Path:
    """A portrait-like test image: a coloured background with a lighter ellipse (the 'face')."""
    img = Image.new("RGB", (width, height), color)
    arr = np.asarray(img).copy()
    yy, xx = np.mgrid[0:height, 0:width]
    face = ((xx - width / 2) / (width / 4)) ** 2 + ((yy - height / 2) / (height / 3)) ** 2 <= 1
    arr[face] = (230, 200, 170)
    Image.fromarray(arr).save(path, format=fmt)
    return path


def make_video(path: Path, seconds: float = 2.0, fps: int = 30, width: int = 96, height: int = 64,
               audio_seconds: float | None = None, audio_rate: int = 44100) -> Path:
    """An H.264 mp4 whose frames encode their index (a moving bar), optionally with an AAC tone."""
    n = int(round(seconds * fps))
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        aus = None
        if audio_seconds:
            aus = out.add_stream("aac", rate=audio_rate, layout="mono")
        for i in range(n):
            arr = np.full((height, width, 3), 40, np.uint8)
            x = int(i * (width - 8) / max(n - 1, 1))
            arr[:, x:x + 8] = 250
            for packet in vs.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(packet)
        for packet in vs.encode(None):
            out.mux(packet)
        if aus is not None:
            samples = tone(audio_seconds, audio_rate, 440.0, envelope_hz=2.0)
            resampler = av.AudioResampler(format="fltp", layout="mono", rate=audio_rate)
            for start in range(0, len(samples), 1024):
                frame = av.AudioFrame.from_ndarray(samples[None, start:start + 1024], format="flt", layout="mono")
                frame.sample_rate = audio_rate
                frame.pts = start
                frame.time_base = Fraction(1, audio_rate)
                for f in resampler.resample(frame):
                    for packet in aus.encode(f):
                        out.mux(packet)
            for packet in aus.encode(None):
                out.mux(packet)
    return path


COUNTER_BITS = 10


def make_counter_video(path: Path, frames: int, fps: int = 25, width: int = 160, height: int = 32,
                       gop: int | None = None) -> Path:
    """An H.264 mp4 whose frame i shows i in binary as COUNTER_BITS black/white stripes (see read_counter)."""
    stripe = width // COUNTER_BITS
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        if gop:
            vs.codec_context.gop_size = gop
            vs.options = {"x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
        for i in range(frames):
            arr = np.zeros((height, width, 3), np.uint8)
            for bit in range(COUNTER_BITS):
                if i >> bit & 1:
                    arr[:, bit * stripe:(bit + 1) * stripe] = 255
            for packet in vs.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(packet)
        for packet in vs.encode(None):
            out.mux(packet)
    return path


def read_counter(frame: np.ndarray) -> int:
    """The index drawn by make_counter_video in an (unscaled, uncropped) decoded frame."""
    width = frame.shape[1]
    stripe = width // COUNTER_BITS
    value = 0
    for bit in range(COUNTER_BITS):
        if frame[:, bit * stripe + 2:(bit + 1) * stripe - 2].mean() > 127:
            value |= 1 << bit
    return value


def make_exif_jpeg(path: Path, width: int = 96, height: int = 64, orientation: int = 6) -> Path:
    """A JPEG stored width x height with a red square in the stored top-left, plus an EXIF orientation."""
    arr = np.full((height, width, 3), 128, np.uint8)
    side = min(width, height) // 4
    arr[:side, :side] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(arr).save(path, format="JPEG", quality=95, exif=exif)
    return path


def make_header_only_png(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims width x height (1-bit grey) but whose pixel data is a few bytes.

    Opening it reads the size; decoding it fails. Used to check that huge images are refused unread.
    """
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def make_rotated_video(path: Path, rotation: int, frames: int = 5, fps: int = 25, width: int = 64,
                       height: int = 32) -> Path:
    """An mp4 with a display-matrix rotation (counter-clockwise degrees, like phone videos carry).

    Each stored frame is grey with a white square in its stored top-left corner.
    """
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.set_display_rotation(rotation)
        side = min(width, height) // 4
        for _ in range(frames):
            arr = np.full((height, width, 3), 100, np.uint8)
            arr[:side, :side] = 255
            for packet in vs.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(packet)
        for packet in vs.encode(None):
            out.mux(packet)
    return path


def long_flac(path: Path, seconds: float, rate: int = 8000, tone: bool = True) -> Path:
    """A real flac of ``seconds``: a quiet tone every other 10 s (or none), silence between; hours of audio
    compress to well under a megabyte."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("flac", rate=rate, layout="mono")
        block = rate * 10
        wave_block = (3000 * np.sin(2 * np.pi * 220 * np.arange(block) / rate)).astype(np.int16)
        for i, start in enumerate(range(0, int(seconds * rate), block)):
            n = min(block, int(seconds * rate) - start)
            pcm = wave_block[:n] if tone and i % 2 == 0 else np.zeros(n, np.int16)
            frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path
