"""Hostile-input benchmark: hundreds of malicious or broken requests through the RunPod handler.

    .venv/bin/python bench/hostile.py [--count 700] [--seed 0] [--quick] [--strict] [--log FILE] [--json FILE]

Loopback servers (a misbehaving HTTP server: gzip bombs, lying lengths, slow senders, redirect loops,
resets; moto S3 with garbage, missing and huge objects; an S3 endpoint that is down) and hostile files
(decompression-bomb PNGs, an 8192² video, 4000 s of FLAC, lying WAV headers, escaping symlinks, a FIFO)
are set up here; the requests are generated from ``--seed`` in one long-lived worker process, as a
RunPod worker runs, on the tiny native preset. URL cases run twice: refused by the SSRF guard (default
settings) and downloaded (``TALKGEN_ALLOW_PRIVATE_URLS=true``).

Outcomes: coded (a success or an error_code other than internal_error), internal_error, escaped (the
handler raised, or returned no error_code), hung (no answer in 30 s, 180 s for a case that may run the
engine; the worker goes on in a fresh thread), worker died (the worker is restarted after that case).
Leftovers are entries left in TALKGEN_WORK_DIR or new entries in TMPDIR after a case; checkpoints kept
after a failure are counted apart (allowed). Peak RSS of the worker is compared with a normal small job
(128x128 I2V, 1 s audio, 2 steps) run first in a fresh process. Targets: 0 internal_error, 0 escaped,
0 hung, 0 leftovers, peak RSS under 1.2x the normal job's. ``--strict`` exits 1 when a target is missed.
``--quick`` skips the normal job and the cases that may run the engine or wait on deadlines.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, Path(__file__).resolve().parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

MAX_RESTARTS = 10


def settings_env(tmp: Path, env: dict[str, Any]) -> dict[str, str]:
    """The worker's environment: the tiny preset, temp dirs, short network limits."""
    return {
        **os.environ, "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true", "TALKGEN_ENGINE": "native",
        "TALKGEN_MODELS_DIR": str(tmp / "models"), "TALKGEN_WORK_DIR": env["work_dir"],
        "TALKGEN_CHECKPOINT_URL": env["checkpoint_dir"], "TMPDIR": str(tmp / "systmp"),
        "TALKGEN_ALLOWED_PATH_ROOTS": json.dumps([str(ROOT / "examples"), env["media_dir"]]),
        "TALKGEN_OUTPUT_ROOTS": json.dumps([env["out_dir"]]), "TALKGEN_DOWNLOAD_TIMEOUT_S": "3",
        "TALKGEN_URL_READ_TIMEOUT_S": "2", "TALKGEN_URL_CONNECT_TIMEOUT_S": "1", "TALKGEN_URL_RETRIES": "0",
        "TALKGEN_MAX_DOWNLOAD_MB": "50", "TALKGEN_MAX_BASE64_MB": "50", "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }


def prepare(tmp: Path) -> dict[str, Any]:
    """Tiny preset, hostile media, output root with an escaping link: the env the cases are built from."""
    from hostile_media import make_media

    from talkgen.engines.native.weights.tiny import write_tiny

    write_tiny(tmp / "models")
    media = make_media(tmp / "media", tmp / "outside")
    out = tmp / "out"
    (out / "existing-dir").mkdir(parents=True)
    (out / "link_out").symlink_to(tmp / "outside")
    for name in ("work", "checkpoints", "systmp"):
        (tmp / name).mkdir()
    return {"media": {k: str(v) for k, v in media.items()}, "media_dir": str(tmp / "media"),
            "outside": str(tmp / "outside"), "out_dir": str(out), "work_dir": str(tmp / "work"),
            "checkpoint_dir": str(tmp / "checkpoints")}


def run_worker(tmp: Path, env: dict[str, Any], args: argparse.Namespace, log: Any) -> list[dict[str, Any]]:
    """The hostile set in one worker process; restarted after the case it died on, if it dies."""
    results, start, restarts = tmp / "results.jsonl", 0, 0
    config = tmp / "env.json"
    while True:
        cmd = [sys.executable, __file__, "--child", "hostile", str(config), str(results), "--start", str(start),
               "--seed", str(args.seed), "--count", str(args.count), *(["--quick"] if args.quick else [])]
        proc = subprocess.run(cmd, env=settings_env(tmp, env), stdout=log, stderr=subprocess.STDOUT)
        lines = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
        if any("done" in line for line in lines) or restarts >= MAX_RESTARTS:
            break
        started = [line["start"] for line in lines if "start" in line]
        if not started or started[-1] < start:
            log.flush()
            tail = Path(log.name).read_text().splitlines()[-15:]
            raise SystemExit("the hostile worker failed before its first case:\n" + "\n".join(tail))
        died = started[-1]
        with results.open("a") as out:
            out.write(json.dumps({"index": died, "outcome": "crashed", "code": f"exit {proc.returncode}",
                                  "message": "the worker process died", "family": "?", "name": "?", "flags": [],
                                  "leftovers": [], "checkpoints": 0, "peak_kb": 0, "seconds": 0}) + "\n")
        start, restarts = died + 1, restarts + 1
    return [json.loads(line) for line in results.read_text().splitlines()]


def crash_details(log_text: str) -> dict[str, str]:
    """job id → the exception line of the traceback the handler logged for it ("job X crashed")."""
    details: dict[str, str] = {}
    job = None
    for line in log_text.splitlines():
        crashed = re.search(r"job (\S+) crashed", line)
        if crashed:
            job = crashed.group(1)
        elif job and re.match(r"[\w.]+(Error|Exception|Exit|Interrupt)\b", line):
            details[job] = line.strip()[:200]  # the last one wins: the outermost of a chain
        elif job and re.match(r"\S+\.py\s+:\d+ ", line):
            job = None
    return details


def run_baseline(tmp: Path, env: dict[str, Any], log: Any) -> dict[str, Any] | None:
    """The normal small job in a fresh process: its peak RSS, time and outcome (None if it broke)."""
    out = tmp / "baseline.json"
    cmd = [sys.executable, __file__, "--child", "baseline", str(tmp / "env.json"), str(out)]
    subprocess.run(cmd, env=settings_env(tmp, env), stdout=log, stderr=subprocess.STDOUT, check=False)
    return json.loads(out.read_text()) if out.exists() else None


def child(args: argparse.Namespace) -> None:
    import hostile_worker

    kind, config, results = args.child
    env = json.loads(Path(config).read_text())
    if kind == "baseline":
        Path(results).write_text(json.dumps(hostile_worker.baseline(env)))
        return
    cases = hostile_worker.build_cases(env, args.seed, args.count, args.quick)
    hostile_worker.run(env, cases, args.start, Path(results))
    os._exit(0)  # hung cases leave threads blocked in the kernel: do not wait for them


def _quiet_servers() -> None:
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=700, help="total requests (fuzz cases top up the families)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="no normal job, no engine-reaching or slow cases")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--log", type=Path, help="keep the worker's log (tracebacks of internal errors) here")
    parser.add_argument("--json", type=Path, help="write every case's record here (JSON lines)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    from hostile_report import report
    from hostile_servers import HostileHttp, down_s3_options, start_s3

    _quiet_servers()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="talkgen-hostile-") as tmp_name:
        tmp = Path(tmp_name)
        env = prepare(tmp)
        media = {k: Path(v) for k, v in env["media"].items()}
        log = open(args.log or tmp / "worker.log", "w")  # noqa: SIM115
        s3, s3_options = start_s3(media)
        try:
            with HostileHttp(media) as server:
                env.update(http=server.url(""), http_port=server.port, s3_options=s3_options,
                           s3_down_options=down_s3_options())
                (tmp / "env.json").write_text(json.dumps(env))
                base = None if args.quick else run_baseline(tmp, env, log)
                records = run_worker(tmp, env, args, log)
        finally:
            s3.stop()
            log.close()
        details = crash_details(Path(log.name).read_text(errors="replace"))
        for record in records:
            if record.get("outcome") == "internal_error" and record.get("job_id") in details:
                record["detail"] = details[record["job_id"]]
        if args.json:
            args.json.write_text("".join(json.dumps(r) + "\n" for r in [{"baseline": base}, *records]))
        ok = report(records, base, time.perf_counter() - began)
    if args.strict and not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
