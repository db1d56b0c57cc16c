"""Cold start: `import talkgen` and `talkgen --help` wall time, and which heavy modules they pull in.

Target: each under 0.3 s, with no torch, runpod, diffusers or transformers imported.
Run: .venv/bin/python bench/cold_start.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

HEAVY = ("torch", "runpod", "diffusers", "transformers", "modal", "kubernetes", "av", "numpy", "httpx")
RUNS = 7

CASES = {
    "python -c pass (interpreter baseline)": "pass",
    "import talkgen": "import talkgen",
    "talkgen --help": (
        "import sys, runpy; sys.argv = ['talkgen', '--help']\n"
        "try:\n    runpy.run_module('talkgen.cli', run_name='__main__')\nexcept SystemExit:\n    pass"
    ),
}


def wall(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - start


def heavy_imports(code: str) -> list[str]:
    probe = code + f"\nimport sys; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    return eval(out.strip().splitlines()[-1])  # a list literal we printed ourselves


def main() -> None:
    print(f"{'case':<40} {'median s':>9} {'min s':>7}  heavy modules imported")
    for name, code in CASES.items():
        times = [wall(code) for _ in range(RUNS)]
        print(f"{name:<40} {statistics.median(times):9.3f} {min(times):7.3f}  {heavy_imports(code) or 'none'}")
    print("target: import talkgen and talkgen --help < 0.300 s, no heavy modules")


if __name__ == "__main__":
    main()
