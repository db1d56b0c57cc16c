"""The RunPod SDK's local API server (``--rp_serve_api``) in a subprocess on a free loopback port."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

START_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def local_api_server(command: list[str], env: dict[str, str], log: Path) -> Iterator[str]:
    """Run ``command`` (a worker started with the SDK's flags) plus ``--rp_serve_api`` on a free port; yield its
    base URL once ``/openapi.json`` answers; stop it afterwards. Its output goes to ``log``."""
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([*command, "--rp_serve_api", "--rp_api_port", str(port), "--rp_api_host",
                                 "127.0.0.1"], env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the local API server exited ({proc.returncode}): {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/openapi.json", trust_env=False, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the local API server did not start in {START_TIMEOUT_S} s: {log.read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
