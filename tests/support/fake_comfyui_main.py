"""Stands in for ComfyUI's ``main.py`` in supervisor tests: serves the fake ComfyUI on ``--port``.

If the file named by ``FAKE_COMFY_DIE_ONCE`` exists, it is removed and the first prompt makes the
server stop answering (a crash), so the supervisor's restart can be tested.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> None:
    from tests.comfyui.test_engine import MODELS, SCHEMA, render
    from tests.support.fake_comfyui import FakeComfyUI

    parser = argparse.ArgumentParser()
    parser.add_argument("--listen")
    parser.add_argument("--port", type=int)
    parser.add_argument("--disable-auto-launch", action="store_true")
    args, _ = parser.parse_known_args()
    server = FakeComfyUI(SCHEMA, render=render, models=MODELS)
    server.port = args.port
    marker = os.environ.get("FAKE_COMFY_DIE_ONCE")
    if marker and Path(marker).exists():
        Path(marker).unlink()
        server.behaviour = "die"
    print(f"fake ComfyUI on {args.listen}:{args.port}", flush=True)
    with server:
        threading.Event().wait()


if __name__ == "__main__":
    main()
