"""Hostile media files for bench/hostile.py: bombs, lies, truncations, non-media and escaping links.

`make_media(dir)` writes them all (a few seconds) and returns their names → paths. Valid partners
(a portrait, one second of speech-like audio) are written too, so a request can isolate one bad input.
"""

from __future__ import annotations

import gzip
import os
import shutil
import struct
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

NOT_MEDIA = b"this is not a media file, just text\n" * 64


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(path: Path, side: int = 30_000) -> Path:
    """A real ``side`` x ``side`` 1-bit PNG (every row present) that is about 100 KB compressed."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + (side + 7) // 8)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
                     + _png_chunk(b"IEND", b""))
    return path


def big_frame_video(path: Path, side: int = 8192, frames: int = 2) -> Path:
    """An H.264 mp4 of ``frames`` flat ``side`` x ``side`` frames (about 200 KB)."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width = stream.height = side
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast"}
        frame = av.VideoFrame(side, side, "yuv420p")
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        for i in range(frames):
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def wav_header(path: Path, rate: int, channels: int, bits: int, data_size: int, data: bytes = b"") -> Path:
    """A WAV whose header says what we like, followed by ``data``."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, (rate * block) & 0xFFFFFFFF, block & 0xFFFF, bits)
    riff = struct.pack("<4sI4s", b"RIFF", (36 + data_size) & 0xFFFFFFFF, b"WAVE")
    path.write_bytes(riff + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", data_size) + data)
    return path


def gzip_bomb(decoded_bytes: int = 1 << 30) -> bytes:
    """One gzip member that inflates to ``decoded_bytes`` zeros (about 1 MB per GB)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    parts = [comp.compress(block) for _ in range(decoded_bytes >> 20)]
    return b"".join([*parts, comp.flush()])


def make_media(directory: Path, outside: Path) -> dict[str, Path]:
    """Write every hostile file under ``directory`` (an allowed root); ``outside`` is not allowed."""
    from tests.support import media_factory as mf

    d, m = directory, {}
    d.mkdir(parents=True, exist_ok=True)
    outside.mkdir(parents=True, exist_ok=True)
    m["portrait"] = Path(shutil.copyfile(ROOT / "examples" / "portrait.png", d / "portrait.png"))
    m["two_people"] = Path(shutil.copyfile(ROOT / "examples" / "two_people.png", d / "two_people.png"))
    m["speech"] = mf.make_wav(d / "speech.wav", seconds=1.0)
    m["speech_2"] = mf.make_wav(d / "speech_2.wav", seconds=1.0, freq=330.0)
    m["video"] = mf.make_video(d / "video.mp4", seconds=1.0, fps=25, width=128, height=128)
    for ext in ("png", "wav", "mp4", "jpg", "flac"):
        (d / f"notmedia.{ext}").write_bytes(NOT_MEDIA)
        (d / f"empty.{ext}").write_bytes(b"")
        m[f"notmedia_{ext}"], m[f"empty_{ext}"] = d / f"notmedia.{ext}", d / f"empty.{ext}"
    png = m["portrait"].read_bytes()
    m["trunc_png"] = d / "trunc.png"
    m["trunc_png"].write_bytes(png[: len(png) // 3])
    video = m["video"].read_bytes()
    m["trunc_mp4"] = d / "trunc.mp4"
    m["trunc_mp4"].write_bytes(video[: len(video) // 3])
    m["mp4_tail"] = d / "tail.mp4"
    m["mp4_tail"].write_bytes(video[len(video) // 2:])
    m["png_bomb"] = png_bomb(d / "bomb.png")
    m["png_header_only"] = mf.make_header_only_png(d / "header_only.png", 60_000, 60_000)
    m["png_zero_size"] = mf.make_header_only_png(d / "zero.png", 0, 0)
    m["big_frames"] = big_frame_video(d / "big8192.mp4")
    m["long_flac"] = mf.long_flac(d / "silence4000.flac", 4000, rate=16000, tone=False)
    m["audio_only_m4a"] = mf.make_audio(d / "audio_only.m4a", seconds=1.0, codec="aac", container="mp4")
    m["mp3_as_png"] = mf.make_audio(d / "mp3_as.png", seconds=1.0, codec="libmp3lame", container="mp3")
    m["png_as_wav"] = Path(shutil.copyfile(m["portrait"], d / "png_as.wav"))
    m["mp4_as_png"] = Path(shutil.copyfile(m["video"], d / "mp4_as.png"))
    m["wav_lie_size"] = wav_header(d / "lie_size.wav", 16000, 1, 16, 0xFFFFFFF0, bytes(32000))
    m["wav_rate_zero"] = wav_header(d / "rate0.wav", 0, 1, 16, 32000, bytes(32000))
    m["wav_channels_max"] = wav_header(d / "chan65535.wav", 16000, 65535, 16, 32000, bytes(32000))
    m["wav_header_only"] = wav_header(d / "header_only.wav", 16000, 1, 16, 0)
    m["wav_rate_huge"] = wav_header(d / "rate_huge.wav", 2_000_000_000, 1, 16, 32000, bytes(32000))
    m["gzip_png"] = d / "gzipped.png"
    m["gzip_png"].write_bytes(gzip.compress(png))
    m["zip_as_png"] = d / "zip.png"
    m["zip_as_png"].write_bytes(b"PK\x03\x04" + os.urandom(2000))
    m["random_png"] = d / "random.png"
    m["random_png"].write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(4000))
    m["directory"] = d / "a_directory.png"
    m["directory"].mkdir(exist_ok=True)
    (outside / "secret.png").write_bytes(png)
    links = {"link_passwd": Path("/etc/passwd"), "link_outside_file": outside / "secret.png",
             "link_outside_dir": outside, "link_dangling": d / "does-not-exist.png",
             "link_proc": Path("/proc/self/mem")}
    for name, target in links.items():
        (d / name).symlink_to(target)
        m[name] = d / name
    (d / "link_loop").symlink_to(d / "link_loop")
    m["link_loop"] = d / "link_loop"
    m["fifo"] = d / "fifo.wav"
    os.mkfifo(m["fifo"])
    return m
