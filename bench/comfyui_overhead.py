"""Overhead of the ComfyUI engine per request, against the fake server (no model compute).

    .venv/bin/python bench/comfyui_overhead.py [--seconds 60] [--size 832x480]

The fake ComfyUI answers every window prompt at once with a pre-made window video, so what is measured
is the engine's own work for a ``--seconds`` request: uploads (image, audio slices, motion frames),
queueing and following prompts, downloads, decoding the windows and re-encoding them with the prepared
soundtrack. It is compared, in the same run, with a plain HTTP download of the same window files.
Each side runs in a fresh subprocess (peak RSS from ``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def window_video(width: int, height: int, frames: int = 81) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25, options={"crf": "19", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            y = np.linspace(0, 255, width).astype(np.int32)[None, :, None]
            frame = np.broadcast_to((y + i * 3) % 256, (height, width, 3)).astype(np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        out.mux(stream.encode())
    return buffer.getvalue()


def server(width: int, height: int):  # type: ignore[no-untyped-def]
    from talkgen.engines.comfyui.engine import BUILTIN
    from tests.comfyui.test_engine import MODELS
    from tests.support.fake_comfyui import FakeComfyUI

    template = json.loads((BUILTIN / "native" / "I2V_single.json").read_text())
    schema = {n["class_type"]: {"input": {"required": {}}} for n in template.values()}
    schema.update({c: {"input": {"required": {}}} for c in ("LoadVideo", "GetVideoComponents")})
    video = window_video(width, height)
    return FakeComfyUI(schema, render=lambda g, i: video, models=MODELS, steps=1), video


def engine_child(seconds: float, width: int, height: int, work: Path) -> dict:
    from talkgen.service import TalkGen
    from talkgen.settings import Settings
    from tests.support.media_factory import make_image, make_wav

    make_image(work / "face.png", width, height)
    make_wav(work / "speech.wav", seconds=seconds)
    fake, _ = server(width, height)
    with fake:
        service = TalkGen(Settings(engine="comfyui", comfyui_url=fake.url, allowed_path_roots=[work], work_dir=work))
        started = time.perf_counter()
        result = service.generate({"image_path": str(work / "face.png"), "wav_path": str(work / "speech.wav"),
                                   "width": width, "height": height, "seed": 1}, output=str(work / "out.mp4"))
        wall = time.perf_counter() - started
        windows = result.params["windows"]
    return {"wall_s": wall, "windows": windows, "frames": result.frames,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def download_child(windows: int, width: int, height: int, work: Path) -> dict:
    import httpx

    fake, video = server(width, height)
    with fake:
        fake.outputs["talkgen/w.mp4"] = video
        started = time.perf_counter()
        with httpx.Client() as client:
            for i in range(windows):
                with client.stream("GET", f"{fake.url}/view?filename=w.mp4&subfolder=talkgen&type=output") as r, \
                        (work / f"w{i}.mp4").open("wb") as fh:
                    for chunk in r.iter_bytes(1 << 20):
                        fh.write(chunk)
        wall = time.perf_counter() - started
    return {"wall_s": wall, "bytes": len(video) * windows,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--size", default="832x480")
    parser.add_argument("--child", choices=["engine", "download"])
    parser.add_argument("--windows", type=int, default=0)
    parser.add_argument("--work")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    if args.child:
        work = Path(args.work)
        out = (engine_child(args.seconds, width, height, work) if args.child == "engine"
               else download_child(args.windows, width, height, work))
        print(json.dumps(out))
        return

    def run(*extra: str) -> dict:
        with tempfile.TemporaryDirectory() as tmp:
            done = subprocess.run([sys.executable, __file__, "--seconds", str(args.seconds), "--size", args.size,
                                   "--work", tmp, *extra], capture_output=True, text=True, check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])

    engine = run("--child", "engine")
    plain = run("--child", "download", "--windows", str(engine["windows"]))
    print(f"ComfyUI engine overhead, {args.seconds:g} s request at {args.size} ({engine['windows']} windows, "
          f"{engine['frames']} frames), fake server with instant windows")
    print(f"{'':<28} {'wall s':>8} {'per window s':>13} {'peak RSS MB':>12}")
    print(f"{'engine (whole request)':<28} {engine['wall_s']:>8.2f} {engine['wall_s'] / engine['windows']:>13.3f} "
          f"{engine['rss_mb']:>12.0f}")
    print(f"{'plain download of windows':<28} {plain['wall_s']:>8.2f} {plain['wall_s'] / engine['windows']:>13.3f} "
          f"{plain['rss_mb']:>12.0f}")
    print(f"engine / plain download: {engine['wall_s'] / plain['wall_s']:.1f}x wall, "
          f"{engine['rss_mb'] / plain['rss_mb']:.2f}x peak RSS; overhead per second of video "
          f"{engine['wall_s'] / args.seconds:.3f} s")


if __name__ == "__main__":
    main()
