"""Benchmark live HLS streaming on the native engine's tiny preset: when can a viewer press play, what does it cost.

    .venv/bin/python bench/stream.py [--seconds 10 60] [--size 128]

Each (duration, streaming off/on) runs in a fresh subprocess through `TalkGen.generate` on the bundled portrait
with speech made by looping ``examples/speech.wav`` (vocal separation off: it is the same with or without
streaming). Reported per run: time to the first playable media (streaming: the first segment event; without:
the finished mp4), time to the final mp4, the seconds streaming adds (the mp4 writer encodes every window as its own
GOP either way; streaming copies its packets and muxes them into segments, then writes segments and playlists:
wall time on the engine's output thread, and that thread's CPU time, which a loaded machine does not inflate) as a
share of the job, and peak RSS (``ru_maxrss``).
Targets: segmenting < 3 % of the total; peak RSS unchanged.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def child(seconds: float, size: int, stream: bool, models: str, work: str) -> None:
    from bench.native_tiny import looped_speech
    from talkgen.media import parts
    from talkgen.service import TalkGen
    from talkgen.settings import Settings
    from talkgen.streaming import segmenter

    spent = [0.0, 0.0]  # wall seconds spent on streaming, CPU seconds of the thread doing it

    def timing(original):  # type: ignore[no-untyped-def]
        def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
            began, cpu = time.perf_counter(), time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - began
                spent[1] += time.thread_time() - cpu
        return timed

    for name in ("cut", "finish"):  # the segmenter's muxing and storing
        setattr(segmenter.Segmenter, name, timing(getattr(segmenter.Segmenter, name)))
    parts.Coded.of = classmethod(timing(parts.Coded.of.__func__))  # the writer's packet copies for it

    audio = looped_speech(Path(work) / f"speech-{seconds:g}.wav", seconds)
    settings = Settings(engine="native", models_dir=models, allowed_path_roots=[ROOT / "examples", work],
                        work_dir=work)
    service = TalkGen(settings)
    service.warm_up()
    first: list[float] = []
    started = time.perf_counter()
    result = service.generate(
        {"image_path": str(ROOT / "examples" / "portrait.png"), "wav_path": str(audio), "width": size,
         "height": size, "seed": 1, "separate_vocals": False},
        output=str(Path(work) / "out.mp4"), stream_dir=str(Path(work) / "hls") if stream else None,
        on_event=lambda e: first.append(time.perf_counter() - started) if not first else None)
    total = time.perf_counter() - started
    print(json.dumps({
        "seconds": seconds, "stream": stream, "frames": result.frames, "segments": result.segments or 0,
        "first_playable_s": first[0] if first else total, "final_s": total,
        "streaming_s": spent[0], "streaming_cpu_s": spent[1],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, nargs="+", default=[10, 60])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--child", type=float)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--models")
    parser.add_argument("--work")
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.size, args.stream, args.models, args.work)
        return
    from talkgen.engines.native.weights.tiny import write_tiny

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = write_tiny(Path(tmp) / "models")
        for run, seconds in enumerate(args.seconds):
            for stream in (False, True):
                work = Path(tmp) / f"work-{run}-{seconds:g}-{stream}"
                work.mkdir()
                cmd = [sys.executable, __file__, "--child", str(seconds), "--size", str(args.size),
                       "--models", str(models), "--work", str(work)] + (["--stream"] if stream else [])
                out = subprocess.run(cmd, capture_output=True, text=True, check=True)
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"native engine, tiny preset, {args.size}x{args.size}, CPU ({_cores()} cores)")
    print(f"{'audio s':>8} {'stream':>7} {'segments':>9} {'first playable s':>17} {'final mp4 s':>12} "
          f"{'streaming s':>12} {'share':>7} {'its CPU s':>10} {'share':>7} {'peak RSS MB':>12}")
    for r in rows:
        print(f"{r['seconds']:>8g} {'on' if r['stream'] else 'off':>7} {r['segments']:>9} "
              f"{r['first_playable_s']:>17.1f} {r['final_s']:>12.1f} {r['streaming_s']:>12.2f} "
              f"{r['streaming_s'] / r['final_s']:>7.2%} {r['streaming_cpu_s']:>10.2f} "
              f"{r['streaming_cpu_s'] / r['final_s']:>7.2%} {r['peak_rss_mb']:>12.0f}")
    for off, on in zip(rows[::2], rows[1::2], strict=True):
        print(f"{off['seconds']:g} s: first playable {off['first_playable_s']:.1f} s -> "
              f"{on['first_playable_s']:.1f} s; "
              f"final mp4 {on['final_s'] - off['final_s']:+.1f} s ({on['final_s'] / off['final_s'] - 1:+.1%} wall); "
              f"streaming {on['streaming_s'] / on['final_s']:.2%} of the job's wall time, its CPU time "
              f"{on['streaming_cpu_s'] / on['final_s']:.2%} (target < 3 %); "
              f"peak RSS {on['peak_rss_mb'] - off['peak_rss_mb']:+.0f} MB "
              f"({on['peak_rss_mb'] / off['peak_rss_mb'] - 1:+.1%})")


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
