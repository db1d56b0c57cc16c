"""`engine: "comfyui"` through the RunPod worker and the CLI, against the fake server."""

from __future__ import annotations

import base64
import subprocess
import sys

import pytest

from tests.comfyui.test_engine import MODELS, SCHEMA, render
from tests.conftest import subprocess_env
from tests.support.video_check import decode


@pytest.fixture
def fake():
    from tests.support.fake_comfyui import FakeComfyUI

    with FakeComfyUI(SCHEMA, render=render, models=MODELS) as server:
        yield server


def test_runpod_worker_with_comfyui(fake, media_dir, work_root, tmp_path, monkeypatch):
    pytest.importorskip("runpod")
    from talkgen.runtimes import runpod as rp
    from talkgen.service import TalkGen
    from talkgen.settings import Settings

    service = TalkGen(Settings(comfyui_url=fake.url, allowed_path_roots=[media_dir], work_dir=work_root))
    monkeypatch.setattr(rp, "_service", service)
    out = rp.handler({"id": "rp-1", "input": {"image_path": str(media_dir / "face.png"),
                                              "wav_path": str(media_dir / "speech.wav"), "width": 128,
                                              "height": 128, "engine": "comfyui"}})
    assert out["engine"] == "comfyui" and out["frames"] == 50, out
    (tmp_path / "rp.mp4").write_bytes(base64.b64decode(out["video"].split(",", 1)[1]))
    assert decode(tmp_path / "rp.mp4").count == 50
    service.close()


def test_cli_with_comfyui(fake, media_dir, tmp_path):
    env = subprocess_env(TALKGEN_COMFYUI_URL=fake.url, TALKGEN_ALLOWED_PATH_ROOTS=str(media_dir),
                         TALKGEN_WORK_DIR=str(tmp_path))
    run = subprocess.run([sys.executable, "-m", "talkgen.cli", "generate", "--engine", "comfyui", "--image",
                          str(media_dir / "face.png"), "--audio", str(media_dir / "speech.wav"), "--width", "128",
                          "--height", "128", "-o", str(tmp_path / "cli.mp4")], env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert decode(tmp_path / "cli.mp4").count == 50
