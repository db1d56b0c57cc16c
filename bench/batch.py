"""Benchmark the batch runner: N tiny-preset requests through ``talkgen k8s run`` on 2 shards (2 local
processes at once, as 2 pods would run) vs a plain loop over `TalkGen.generate` in one process.

    .venv/bin/python bench/batch.py [--requests 20] [--seconds 1.6] [--size 128] [--shards 2]

Both sides are fresh processes that start Python, load the engine and write every video to a local folder.
Printed: wall time of each, their ratio, and per request the time outside the engine (request wall time
minus the result's ``timings['generate']``) for the runner and for the plain loop; the runner's overhead is
its extra time per request over the plain loop's, as a share of engine time (target < 5 %). A rerun of a
finished shard (everything skipped) shows what a retried pod costs before it reaches unfinished work.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def speech(path: Path, seconds: float) -> Path:
    """``examples/speech.wav`` looped or cut to ``seconds``."""
    with wave.open(str(ROOT / "examples" / "speech.wav")) as src:
        rate, width, channels = src.getframerate(), src.getsampwidth(), src.getnchannels()
        pcm = np.frombuffer(src.readframes(src.getnframes()), dtype="<i2")
    need = int(seconds * rate) * channels
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(np.tile(pcm, need // len(pcm) + 1)[:need].tobytes())
    return path


def requests(count: int, audio: Path, size: int) -> list[dict[str, Any]]:
    portrait = str(ROOT / "examples" / "portrait.png")
    return [{"job_id": f"req-{i:03d}", "image_path": portrait, "wav_path": str(audio), "width": size,
             "height": size, "seed": i} for i in range(count)]


def plain_child(batch: str, out: str) -> None:
    """The baseline: one process, one `TalkGen`, a loop over the requests."""
    from talkgen.service import TalkGen

    service = TalkGen()
    service.warm_up()  # as the runner does before its first request: load time is not per-request time
    rows = []
    for line in Path(batch).read_text().splitlines():
        request = json.loads(line)
        started = time.perf_counter()
        result = service.generate(request, output=f"{out}/{request['job_id']}.mp4")
        rows.append({"seconds": time.perf_counter() - started, "timings": result.timings})
    service.close()
    print(json.dumps(rows))


def timed(cmds: list[list[str]], env: dict[str, str]) -> tuple[float, list[str]]:
    """Start every command at once; wall time until the last exits, and their stdouts."""
    started = time.perf_counter()
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for cmd in cmds]
    outs = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(proc.args)} exited {proc.returncode}:\n{out[-2000:]}\n{err[-2000:]}")
        outs.append(out)
    return time.perf_counter() - started, outs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=1.6, help="audio per request")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--plain-child", nargs=2, metavar=("BATCH", "OUT"))
    args = parser.parse_args()
    if args.plain_child:
        plain_child(*args.plain_child)
        return
    from talkgen.engines.native.weights.tiny import write_tiny

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        models = write_tiny(tmp_path / "models")
        audio = speech(tmp_path / "speech.wav", args.seconds)
        batch = tmp_path / "batch.jsonl"
        batch.write_text("".join(json.dumps(r) + "\n" for r in requests(args.requests, audio, args.size)))
        (tmp_path / "work").mkdir()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               "TALKGEN_MODELS_DIR": str(models), "TALKGEN_WORK_DIR": str(tmp_path / "work"),
               "TALKGEN_ALLOWED_PATH_ROOTS": os.pathsep.join([str(ROOT / "examples"), tmp])}

        out = tmp_path / "runner-out"
        runner = [[sys.executable, "-m", "talkgen.k8s.run_cli", "--requests", str(batch), "--output", str(out),
                   "--shards", str(args.shards), "--index", str(i), "--json"] for i in range(args.shards)]
        runner_wall, outs = timed(runner, env)
        shards = [json.loads(o.strip().splitlines()[-1]) for o in outs]
        runner_rows = [r for s in shards for r in s["results"]]
        rerun_wall, _ = timed(runner[:1], env)

        plain_out = tmp_path / "plain-out"
        plain_out.mkdir()
        plain_wall, outs = timed([[sys.executable, __file__, "--plain-child", str(batch), str(plain_out)]], env)
        plain_rows = json.loads(outs[0].strip().splitlines()[-1])

    assert len(runner_rows) == len(plain_rows) == args.requests, (len(runner_rows), len(plain_rows))
    assert all(r["status"] == "succeeded" for r in runner_rows)
    report(args, runner_wall, runner_rows, plain_wall, plain_rows, rerun_wall)


def report(args: argparse.Namespace, runner_wall: float, runner_rows: list[dict[str, Any]], plain_wall: float,
           plain_rows: list[dict[str, Any]], rerun_wall: float) -> None:
    def mean(rows: list[dict[str, Any]], value: Any) -> float:
        return statistics.mean(value(r) for r in rows)

    r_engine, p_engine = (mean(rows, lambda r: r["timings"]["generate"]) for rows in (runner_rows, plain_rows))
    r_req, p_req = (mean(rows, lambda r: r["seconds"]) for rows in (runner_rows, plain_rows))
    r_out, p_out = (mean(rows, lambda r: r["seconds"] - r["timings"]["generate"]) for rows in (runner_rows, plain_rows))
    r_untimed, p_untimed = (mean(rows, lambda r: r["seconds"] - sum(r["timings"].values()))
                            for rows in (runner_rows, plain_rows))
    r_record = mean(runner_rows, lambda r: r["record_s"])
    extra = r_out - p_out
    print(f"batch runner, {args.requests} tiny-preset requests ({args.seconds:g} s audio, {args.size}x{args.size}), "
          f"CPU ({len(os.sched_getaffinity(0))} cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')})")
    print(f"{'':34} {'wall s':>8} {'per request s':>14} {'engine s':>9} {'outside engine s':>17}")
    print(f"{'talkgen k8s run, ' + str(args.shards) + ' shards at once':34} {runner_wall:>8.1f} {r_req:>14.3f} "
          f"{r_engine:>9.3f} {r_out:>17.3f}")
    print(f"{'plain TalkGen.generate loop':34} {plain_wall:>8.1f} {p_req:>14.3f} {p_engine:>9.3f} {p_out:>17.3f}")
    print(f"wall ratio runner / plain loop = {runner_wall / plain_wall:.2f} ({args.shards} processes vs 1)")
    print(f"runner's own work per request (read + write the status record): {r_record * 1000:.1f} ms = "
          f"{r_record / r_engine:.2%} of engine time (target < 5%)")
    print(f"untimed per request (request wall - sum of TalkGen's stage timings): runner {r_untimed * 1000:.0f} ms, "
          f"plain loop {p_untimed * 1000:.0f} ms")
    print(f"time outside the engine per request (fetch, prepare, deliver, + the runner's own): runner "
          f"{r_out * 1000:.0f} ms = {r_out / r_engine:.1%} of engine time; plain loop {p_out * 1000:.0f} ms = "
          f"{p_out / p_engine:.1%}")
    print(f"runner overhead vs the plain loop, normalised by each side's engine time (the {args.shards} processes "
          f"share the cores): {r_out / r_engine - p_out / p_engine:+.1%} of engine time (target < 5%); "
          f"raw difference {extra * 1000:+.0f} ms")
    fixed = runner_wall - sum(r["seconds"] for r in runner_rows) / args.shards
    print(f"per-process fixed cost (start, imports, engine load, reading the batch), runner: {fixed:.1f} s; "
          f"plain: {plain_wall - sum(r['seconds'] for r in plain_rows):.1f} s")
    print(f"rerun of a finished shard ({args.requests // args.shards} requests, all skipped): {rerun_wall:.1f} s")


if __name__ == "__main__":
    main()
