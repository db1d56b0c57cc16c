"""Benchmark the streaming VideoWriter: peak memory for a short vs a long video, speed vs bare PyAV.

    .venv/bin/python bench/writer.py [--minutes SHORT LONG]

Each case runs in a fresh subprocess (peak RSS from ``ru_maxrss``, so runs don't contaminate each
other). Frames are 848x480 RGB, generated procedurally and handed over in 72-frame windows as an
engine does, with a 48 kHz mono soundtrack. Encoding uses preset "ultrafast" (crf 19) in both the
writer and the bare loop, to keep the run short; only encode/mux time is timed (not frame generation).
Targets: peak RSS long/short <= 1.2; writer fps / bare fps >= 0.9 (best of 3 alternating short runs).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

WIDTH, HEIGHT, FPS, WINDOW = 848, 480, 25, 72
RATE = 48000
AUDIO_BITRATE = 128_000  # what VideoWriter uses
PRESET, CRF = "ultrafast", 19
SCROLL = 512
REPEATS = 3


def write_soundtrack(path: Path, seconds: float) -> Path:
    """A speech-like tone as 16-bit mono WAV, written block by block."""
    total = round(seconds * RATE)
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(RATE)
        for start in range(0, total, RATE):
            t = np.arange(start, min(total, start + RATE)) / RATE
            y = 0.3 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
            wf.writeframes((y * 32767).astype("<i2").tobytes())
    return path


def windows(frames: int) -> Iterator[np.ndarray]:
    """[T, H, W, 3] uint8 windows of a scrolling, textured gradient (deterministic)."""
    rng = np.random.default_rng(0)
    base = np.empty((HEIGHT, WIDTH + SCROLL, 3), np.uint8)
    base[..., 0] = np.linspace(0, 255, WIDTH + SCROLL)[None, :]
    base[..., 1] = np.linspace(0, 255, HEIGHT)[:, None]
    base[..., 2] = 128
    base = np.clip(base.astype(np.int16) + rng.integers(-12, 13, base.shape), 0, 255).astype(np.uint8)
    for start in range(0, frames, WINDOW):
        count = min(WINDOW, frames - start)
        offsets = [(start + i) * 3 % SCROLL for i in range(count)]
        yield np.stack([base[:, o:o + WIDTH] for o in offsets])


def run_writer(out: Path, frames: int, track: Path) -> float:
    from talkgen.media.writer import VideoWriter

    busy = 0.0
    writer = VideoWriter(out, WIDTH, HEIGHT, FPS, soundtrack=track, crf=CRF, preset=PRESET)
    for window in windows(frames):
        t0 = time.perf_counter()
        writer.write(window)
        busy += time.perf_counter() - t0
    t0 = time.perf_counter()
    writer.close()
    return busy + time.perf_counter() - t0


def run_bare(out: Path, frames: int, track: Path) -> float:
    """The same work with plain PyAV calls: x264 + AAC, per-window audio, faststart."""
    import av

    busy = 0.0
    t0 = time.perf_counter()
    container = av.open(str(out), "w", format="mp4", options={"movflags": "+faststart"})
    video = container.add_stream("libx264", rate=FPS)
    video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    video.options = {"crf": str(CRF), "preset": PRESET}
    audio = container.add_stream("aac", rate=RATE, layout="mono")
    audio.bit_rate = AUDIO_BITRATE
    wav = wave.open(str(track), "rb")  # noqa: SIM115 - read window by window, closed below
    sent = written = 0
    busy += time.perf_counter() - t0
    for window in windows(frames):
        t0 = time.perf_counter()
        for rgb in window:
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = written
            container.mux(video.encode(frame))
            written += 1
        target = written * RATE // FPS
        pcm = np.frombuffer(wav.readframes(target - sent), "<i2").astype(np.float32) / 32768.0
        if len(pcm):
            af = av.AudioFrame.from_ndarray(pcm[None, :], format="fltp", layout="mono")
            af.sample_rate, af.pts, af.time_base = RATE, sent, Fraction(1, RATE)
            container.mux(audio.encode(af))
            sent += len(pcm)
        busy += time.perf_counter() - t0
    t0 = time.perf_counter()
    container.mux(video.encode(None))
    container.mux(audio.encode(None))
    container.close()
    wav.close()
    return busy + time.perf_counter() - t0


def child(case: str, frames: int, track: Path, out: Path) -> None:
    seconds = (run_writer if case == "writer" else run_bare)(out, frames, track)
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"case": case, "frames": frames, "seconds": seconds, "fps": frames / seconds,
                      "rss_mb": rss_kb / 1024, "bytes": out.stat().st_size}))


def spawn(case: str, minutes: float, tmp: Path) -> dict:
    frames = round(minutes * 60 * FPS)
    track = tmp / f"track-{minutes:g}.wav"
    if not track.exists():
        write_soundtrack(track, frames / FPS)
    out = tmp / f"{case}-{minutes:g}.mp4"
    proc = subprocess.run(
        [sys.executable, __file__, "--child", case, "--frames", str(frames), "--track", str(track),
         "--out", str(out)],
        check=True, capture_output=True, text=True,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    out.unlink()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", nargs=2, type=float, default=[1.0, 10.0], metavar=("SHORT", "LONG"),
                        help="durations of the short and the long video (default: 1 10)")
    parser.add_argument("--child", choices=["writer", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--track", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.frames, args.track, args.out)
        return

    short, long_ = args.minutes
    print(f"VideoWriter bench: {WIDTH}x{HEIGHT} @ {FPS} fps, {WINDOW}-frame windows, AAC mono {RATE} Hz, "
          f'libx264 preset "{PRESET}" crf {CRF} (writer and bare loop alike); durations {short:g} min vs '
          f"{long_:g} min; each case in a fresh subprocess.")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="talkgen-bench-") as tmpdir:
        tmp = Path(tmpdir)
        # Speed: writer and bare loop alternate REPEATS times on the short video (best of each counts,
        # which filters out other load on the machine). Memory: the first short writer run vs the long one.
        runs: dict[str, list[dict]] = {"writer": [], "bare": []}
        for _ in range(REPEATS):
            for case in ("writer", "bare"):
                runs[case].append(report(spawn(case, short, tmp), short))
        long_run = report(spawn("writer", long_, tmp), long_)
    best = {case: max(r["fps"] for r in rs) for case, rs in runs.items()}
    rss_ratio = long_run["rss_mb"] / runs["writer"][0]["rss_mb"]
    speed_ratio = best["writer"] / best["bare"]
    print(f"peak RSS {long_:g} min / {short:g} min: {rss_ratio:.3f} (target <= 1.2) "
          f"{'OK' if rss_ratio <= 1.2 else 'MISSED'}")
    print(f"writer fps / bare PyAV fps ({short:g} min, best of {REPEATS} each: {best['writer']:.1f} / "
          f"{best['bare']:.1f}): {speed_ratio:.3f} (target >= 0.9) "
          f"{'OK' if speed_ratio >= 0.9 else 'MISSED'}")
    print(f"total bench time {time.perf_counter() - started:.0f} s")


def report(r: dict, minutes: float) -> dict:
    print(f"  {r['case']:6s} {minutes:5g} min  {r['frames']:6d} frames  {r['seconds']:7.1f} s encode  "
          f"{r['fps']:6.1f} fps  peak RSS {r['rss_mb']:7.1f} MB  file {r['bytes'] / 1e6:6.1f} MB", flush=True)
    return r


if __name__ == "__main__":
    main()
