"""Ingest benchmark: base64 decoding and loopback HTTP download, against a plain file copy.

    .venv/bin/python bench/ingest.py [--base64-mb 100] [--url-mb 200]

Each case runs in a fresh subprocess. Peak RSS growth is measured from the moment the input already
exists (the base64 string is built before the baseline is taken): the kernel's peak-RSS counter
(VmHWM) is reset through /proc/self/clear_refs, and a sampling thread backs it up where that is not
allowed. Target: RSS growth under 64 MB for every case.
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TARGET_MB = 64
MIB = 1 << 20


def _status_kb(key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    return int(match.group(1)) if match else 0


class PeakRss:
    """Peak resident memory above the level at entry, in bytes."""

    def __enter__(self) -> PeakRss:
        gc.collect()
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            self._hwm = True
        except OSError:
            self._hwm = False
        self.baseline = _status_kb("VmRSS")
        self._peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self._peak = max(self._peak, _status_kb("VmRSS"))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        peak = max(self._peak, _status_kb("VmHWM") if self._hwm else 0)
        self.growth = (peak - self.baseline) * 1024


def _make_file(path: Path, size: int) -> None:
    block = os.urandom(MIB)
    with open(path, "wb") as out:
        for _ in range(size // MIB):
            out.write(block)
        out.write(block[: size % MIB])


def _ctx(work: Path, **settings: object):  # type: ignore[no-untyped-def]
    from talkgen.settings import Settings
    from talkgen.sources.base import FetchContext

    return FetchContext(Settings(**settings), dest_dir=work)


def child(case: str, arg: str, work: Path, repeat: int) -> dict[str, float]:
    """Run one case ``repeat`` times in this fresh process: bytes, median seconds, largest RSS growth."""
    run = _case(case, arg, work)
    times, growth, size = [], 0, 0
    for _ in range(repeat):
        with PeakRss() as rss:
            start = time.perf_counter()
            out = run()
            times.append(time.perf_counter() - start)
        growth, size = max(growth, rss.growth), out.stat().st_size
        out.unlink()
    return {"bytes": size, "seconds": statistics.median(times), "rss_growth": growth}


def _case(case: str, arg: str, work: Path) -> Callable[[], Path]:
    """The operation to time; its input (the base64 string, for instance) is built here, before timing."""
    from talkgen.request import MediaRef
    from talkgen.sources.base64 import Base64Source
    from talkgen.sources.url import UrlSource

    if case == "copy":
        return lambda: Path(shutil.copyfile(arg, work / "copy.bin"))
    if case == "url":
        ref = MediaRef(role="image", field="image_url", via="url", value=arg)
        ctx = _ctx(work, allow_private_urls=True, max_download_mb=10_000)
        return lambda: UrlSource().fetch(ref, ctx)
    text = base64.b64encode(Path(arg).read_bytes()).decode("ascii")  # the request's string
    gc.collect()
    if case == "b64decode":  # reference: decode everything in memory at once, then write
        out = work / "decoded.bin"
        return lambda: (out.write_bytes(base64.b64decode(text)), out)[1]
    ref = MediaRef(role="image", field="image_base64", via="base64", value=text)
    ctx = _ctx(work, max_base64_mb=10_000)
    return lambda: Base64Source().fetch(ref, ctx)


def _run_child(case: str, arg: str, tmp: Path, repeat: int) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(dir=tmp, prefix=f"{case}-"))
    out = subprocess.run(
        [sys.executable, __file__, "--repeat", str(repeat), "--child", case, arg, str(work)],
        check=True, capture_output=True, text=True,
    ).stdout
    shutil.rmtree(work)
    return json.loads(out.strip().splitlines()[-1])


def _serve(directory: Path) -> tuple[subprocess.Popen[str], int]:
    """``python -m http.server`` on loopback in its own process (so it shares neither our GIL nor our RSS)."""
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", directory],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    match = re.search(r"port (\d+)", line)
    if not match:
        proc.kill()
        raise SystemExit(f"http.server did not start: {line!r}")
    return proc, int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base64-mb", type=int, default=100, help="decoded size of the base64 payload")
    parser.add_argument("--url-mb", type=int, default=200, help="size of the HTTP download")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (median time is reported)")
    parser.add_argument("--child", nargs=3, metavar=("CASE", "ARG", "WORK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        case, arg, work = args.child
        print(json.dumps(child(case, arg, Path(work), args.repeat)))
        return

    rows: list[tuple[str, dict[str, float], dict[str, float], bool]] = []
    with tempfile.TemporaryDirectory(prefix="talkgen-bench-") as tmp_name:
        tmp = Path(tmp_name)
        files = tmp / "files"
        files.mkdir()
        b64_file, url_file = files / "payload.bin", files / "download.bin"
        _make_file(b64_file, args.base64_mb * 1_000_000)
        _make_file(url_file, args.url_mb * 1_000_000)


        def measure(case: str, arg: str | Path) -> dict[str, float]:
            return _run_child(case, str(arg), tmp, args.repeat)

        copy = measure("copy", b64_file)
        rows.append((f"copyfile {args.base64_mb} MB", copy, copy, False))
        rows.append((f"Base64Source {args.base64_mb} MB", measure("base64", b64_file), copy, True))
        rows.append(("  (ref) b64decode", measure("b64decode", b64_file), copy, False))

        copy = measure("copy", url_file)
        rows.append((f"copyfile {args.url_mb} MB", copy, copy, False))
        server, port = _serve(files)
        try:
            url = f"http://127.0.0.1:{port}/{url_file.name}"
            rows.append((f"UrlSource {args.url_mb} MB", measure("url", url), copy, True))
        finally:
            server.terminate()
            server.wait()
    _print(rows)


def _print(rows: list[tuple[str, dict[str, float], dict[str, float], bool]]) -> None:
    print(f"{'case':<22}{'MB/s':>8}{'vs copy':>10}{'RSS growth MB':>16}")
    ok = True
    for name, result, copy, is_target in rows:
        rate = result["bytes"] / 1e6 / result["seconds"]
        copy_rate = copy["bytes"] / 1e6 / copy["seconds"]
        growth = result["rss_growth"] / MIB
        ok &= growth < TARGET_MB or not is_target
        print(f"{name:<22}{rate:>8.0f}{rate / copy_rate:>9.3f}x{growth:>16.1f}")
    verdict = "met" if ok else "NOT met"
    print(f"target: RSS growth under {TARGET_MB} MB for Base64Source and UrlSource: {verdict}")


if __name__ == "__main__":
    main()
