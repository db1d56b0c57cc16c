"""Benchmark the native engine on the tiny preset: time per window, peak memory, overhead share.

    .venv/bin/python bench/native_tiny.py [--seconds 10 60 300] [--size 128]

Each duration runs in a fresh subprocess (peak RSS from ``ru_maxrss``) through `TalkGen.generate` on the
bundled portrait with speech made by looping ``examples/speech.wav``. "Model compute" is the time inside
the models (DiT passes, VAE encode/decode, audio/text/image encoders); everything else in the generate
stage (windowing, colour correction, frame conversion, H.264 writing, checkpoints) is overhead.
Targets: peak RSS at the longest / shortest <= 1.2; overhead share < 5 %.
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
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def looped_speech(path: Path, seconds: float) -> Path:
    with wave.open(str(ROOT / "examples" / "speech.wav")) as src:
        rate, width, channels = src.getframerate(), src.getsampwidth(), src.getnchannels()
        pcm = np.frombuffer(src.readframes(src.getnframes()), dtype="<i2")
    need = int(seconds * rate) * channels
    data = np.tile(pcm, need // len(pcm) + 1)[:need]
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(data.tobytes())
    return path


def child(seconds: float, size: int, models: str, work: str) -> None:
    from talkgen.service import TalkGen
    from talkgen.settings import Settings

    audio = looped_speech(Path(work) / f"speech-{seconds:g}.wav", seconds)
    settings = Settings(engine="native", models_dir=models, allowed_path_roots=[ROOT / "examples", work],
                        work_dir=work)
    service = TalkGen(settings)
    started = time.perf_counter()
    result = service.generate({"image_path": str(ROOT / "examples" / "portrait.png"), "wav_path": str(audio),
                               "width": size, "height": size, "seed": 1}, output=str(Path(work) / "out.mp4"))
    wall = time.perf_counter() - started
    engine = service._engines["native"]
    windows = engine.last_timings.windows
    print(json.dumps({
        "seconds": seconds, "frames": result.frames, "windows": len(windows), "wall_s": wall,
        "generate_s": result.timings["generate"], "compute_s": engine.last_timings.compute,
        "window_mean_s": float(np.mean(windows)), "window_max_s": float(np.max(windows)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, nargs="+", default=[10, 60, 300])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--child", type=float)
    parser.add_argument("--models")
    parser.add_argument("--work")
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.size, args.models, args.work)
        return
    from talkgen.engines.native.weights.tiny import write_tiny

    with tempfile.TemporaryDirectory() as tmp:
        models = write_tiny(Path(tmp) / "models")
        rows = []
        for seconds in args.seconds:
            work = Path(tmp) / f"work-{seconds:g}"
            work.mkdir()
            out = subprocess.run([sys.executable, __file__, "--child", str(seconds), "--size", str(args.size),
                                  "--models", str(models), "--work", str(work)],
                                 capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"native engine, tiny preset, {args.size}x{args.size}, CPU ({_cores()} cores)")
    print(f"{'audio s':>8} {'frames':>7} {'windows':>8} {'s/window':>9} {'max':>6} {'generate s':>11} "
          f"{'overhead':>9} {'peak RSS MB':>12}")
    for r in rows:
        overhead = 1 - r["compute_s"] / r["generate_s"]
        print(f"{r['seconds']:>8g} {r['frames']:>7} {r['windows']:>8} {r['window_mean_s']:>9.2f} "
              f"{r['window_max_s']:>6.2f} {r['generate_s']:>11.1f} {overhead:>8.1%} {r['peak_rss_mb']:>12.0f}")
    ratio = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    worst = max(1 - r["compute_s"] / r["generate_s"] for r in rows)
    print(f"peak RSS {rows[-1]['seconds']:g} s / {rows[0]['seconds']:g} s = {ratio:.2f} (target <= 1.2); "
          f"largest overhead share {worst:.1%} (target < 5%)")


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
