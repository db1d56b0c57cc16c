"""Fixtures for the client: real media, the RunPod SDK's local API server running the talkgen worker."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import subprocess_env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def client_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.media_factory import make_image, make_wav

    d = tmp_path_factory.mktemp("client-media")
    make_image(d / "face.png", 96, 64)
    make_wav(d / "speech.wav", seconds=2.0, freq=220.0)
    return d


def talk_request(media: Path, **extra: object) -> dict:
    """A 128x128 request the test engine renders in well under a second (50 frames)."""
    return {"image_path": str(media / "face.png"), "wav_path": str(media / "speech.wav"), "width": 128,
            "height": 128, **extra}


@pytest.fixture(scope="module")
def runpod_server(client_media: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m talkgen.runtimes.runpod --rp_serve_api`` on a free loopback port; its base URL."""
    pytest.importorskip("runpod")
    work = tmp_path_factory.mktemp("rp-work")
    log = tmp_path_factory.mktemp("rp-log") / "server.log"
    port = free_port()
    env = subprocess_env(TALKGEN_ENGINE="test-bars", TALKGEN_ALLOWED_PATH_ROOTS=str(client_media),
                         TALKGEN_WORK_DIR=str(work), UVICORN_LOG_LEVEL="warning")
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "talkgen.runtimes.runpod", "--rp_serve_api",
                                 "--rp_api_port", str(port), "--rp_api_host", "127.0.0.1"],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the local API server exited ({proc.returncode}): {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/openapi.json", trust_env=False, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the local API server did not start in 90 s: {log.read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
