"""Benchmark vocal separation: seconds per minute of audio and peak memory at 1 and 10 minutes.

    .venv/bin/python bench/separation.py [--minutes 1 10] [--config tiny|real] [--device cpu|cuda]

Each duration runs in a fresh subprocess (peak RSS from ``ru_maxrss``; on CUDA also the peak of
``torch.cuda.max_memory_allocated``) through `talkgen.separation.separate_file`, the step a job runs for each
speaker: decode the file at the model's rate, overlapping chunks through the model, the stem resampled to
16 kHz and written to disk. The input is a 44.1 kHz stereo WAV of synthetic speech over a music bed and
noise. ``tiny``: the tiny preset's separator (CPU-practical); ``real``: the seed's config with random
weights (the real file's speed and memory; use a GPU). Target: peak RSS at 10 min within 1.2x of 1 min.
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
RATE = 44100


def write_mix(path: Path, seconds: float) -> Path:
    """A stereo mix written 10 s at a time (the parent never holds the whole file)."""
    from tests.test_separation_pipeline import music_bed, synthetic_speech

    block = synthetic_speech(10.0)[None, :] + music_bed(10.0)
    rng = np.random.default_rng(0)
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(2)
        wf.setsampwidth(2)
        wf.setframerate(RATE)
        left = int(seconds * RATE)
        while left > 0:
            n = min(left, block.shape[1])
            part = block[:, :n] + 0.01 * rng.standard_normal((2, n))
            wf.writeframes(np.rint(np.clip(part, -1, 1).T * 32767).astype("<i2").tobytes())
            left -= n
    return path


def child(audio: str, config: str, device: str, work: str) -> None:
    import torch

    from talkgen.engines.native.weights.tiny_separator import TINY_SEPARATOR, write_tiny_separator
    from talkgen.separation import separate_file
    from talkgen.separation.config import SeparatorConfig
    from talkgen.separation.model import load_separator

    cfg = TINY_SEPARATOR if config == "tiny" else SeparatorConfig()
    weights = write_tiny_separator(Path(work) / f"{config}.safetensors", passthrough=False, config=cfg)
    started = time.perf_counter()
    separator = load_separator(weights, device)
    load_s = time.perf_counter() - started
    loaded_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    samples = separate_file(separator, Path(audio), Path(work) / "vocals.f32", rate=16000)
    wall = time.perf_counter() - started
    print(json.dumps({
        "seconds": samples / 16000, "wall_s": wall, "load_s": load_s, "rss_mb": resource.getrusage(
            resource.RUSAGE_SELF).ru_maxrss / 1024, "loaded_rss_mb": loaded_kb / 1024,
        "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None,
        "threads": torch.get_num_threads()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--config", choices=["tiny", "real"], default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.config, args.device, args.child[1])
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="talkgen-bench-sep-") as tmp:
        for minutes in args.minutes:
            audio = write_mix(Path(tmp) / f"mix-{minutes:g}.wav", minutes * 60)
            out = subprocess.run([sys.executable, __file__, "--config", args.config, "--device", args.device,
                                  "--child", str(audio), tmp], capture_output=True, text=True, check=False)
            if out.returncode:
                sys.exit(f"child for {minutes:g} min failed:\n{out.stderr[-3000:]}")
            rows.append({"minutes": minutes, **json.loads(out.stdout.strip().splitlines()[-1])})
            audio.unlink()
    print(f"vocal separation, {args.config} config on {args.device} ({rows[0]['threads']} torch threads)")
    print(f"{'audio':>8} {'wall s':>8} {'s per min':>10} {'load s':>7} {'peak RSS MB':>12} {'after load MB':>14}"
          f"{' CUDA peak MB':>14}")
    for r in rows:
        cuda = f"{r['cuda_peak_mb']:14.0f}" if r["cuda_peak_mb"] is not None else f"{'-':>14}"
        print(f"{r['minutes']:>6g} m {r['wall_s']:8.1f} {r['wall_s'] / (r['seconds'] / 60):10.2f} {r['load_s']:7.2f} "
              f"{r['rss_mb']:12.0f} {r['loaded_rss_mb']:14.0f}{cuda}")
    if len(rows) > 1:
        ratio = rows[-1]["rss_mb"] / rows[0]["rss_mb"]
        verdict = "ok" if ratio <= 1.2 else "MISSED"
        print(f"peak RSS {rows[-1]['minutes']:g} min / {rows[0]['minutes']:g} min: {ratio:.2f}x "
              f"(target <= 1.2x: {verdict})")


if __name__ == "__main__":
    main()
