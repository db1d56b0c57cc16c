"""talkgen starts ComfyUI from TALKGEN_COMFYUI_DIR, waits for it, restarts it once after a crash."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.support.video_check import decode


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def comfy_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "ComfyUI"
    folder.mkdir()
    (folder / "main.py").write_text(
        f"import runpy\nrunpy.run_path({str(REPO / 'tests' / 'support' / 'fake_comfyui_main.py')!r}, "
        "run_name='__main__')\n")
    return folder


def _service(comfy_dir: Path, media_dir: Path, work_root: Path):  # type: ignore[no-untyped-def]
    from talkgen.service import TalkGen
    from talkgen.settings import Settings

    return TalkGen(Settings(engine="comfyui", comfyui_url=f"http://127.0.0.1:{_free_port()}", comfyui_dir=comfy_dir,
                            allowed_path_roots=[media_dir], work_dir=work_root, comfyui_stall_s=2,
                            comfyui_start_timeout_s=60))


def _request(media_dir: Path) -> dict:
    return {"image_path": str(media_dir / "face.png"), "wav_path": str(media_dir / "speech.wav"), "width": 128,
            "height": 128}


def test_starts_the_server_and_stops_it(comfy_dir, media_dir, work_root, tmp_path):
    service = _service(comfy_dir, media_dir, work_root)
    service.generate(_request(media_dir), output=str(tmp_path / "a.mp4"))
    engine = service._engines["comfyui"]
    process = engine.supervisor.process
    assert process is not None and process.poll() is None
    assert decode(tmp_path / "a.mp4").count == 50
    assert "fake ComfyUI on 127.0.0.1" in (comfy_dir / "talkgen-comfyui.log").read_text()
    service.close()
    assert process.poll() is not None


def test_restarts_once_after_a_crash_and_retries_the_window(comfy_dir, media_dir, work_root, tmp_path, monkeypatch):
    marker = tmp_path / "die-once"
    marker.write_text("")
    monkeypatch.setenv("FAKE_COMFY_DIE_ONCE", str(marker))
    service = _service(comfy_dir, media_dir, work_root)
    try:
        result = service.generate(_request(media_dir), output=str(tmp_path / "b.mp4"))
        assert service._engines["comfyui"].supervisor.restarts == 1
        assert result.frames == 50 and decode(tmp_path / "b.mp4").count == 50
    finally:
        service.close()


def test_a_server_that_cannot_start_is_reported_with_its_log(tmp_path, media_dir, work_root):
    from talkgen.errors import EngineUnavailable

    folder = tmp_path / "Broken"
    folder.mkdir()
    (folder / "main.py").write_text("import sys\nprint('ModuleNotFoundError: No module named torchvision')\n"
                                    "sys.exit(3)\n")
    service = _service(folder, media_dir, work_root)
    with pytest.raises(EngineUnavailable, match=r"exited with code 3 while starting.*torchvision"):
        service.generate(_request(media_dir), output=str(tmp_path / "c.mp4"))


def test_no_server_and_no_folder(media_dir, work_root, tmp_path):
    from talkgen.errors import EngineUnavailable
    from talkgen.service import TalkGen
    from talkgen.settings import Settings

    service = TalkGen(Settings(engine="comfyui", comfyui_url=f"http://127.0.0.1:{_free_port()}",
                               allowed_path_roots=[media_dir], work_dir=work_root))
    with pytest.raises(EngineUnavailable, match="TALKGEN_COMFYUI_DIR") as info:
        service.generate(_request(media_dir), output=str(tmp_path / "d.mp4"))
    assert info.value.retryable


@pytest.mark.parametrize("ending", ["exit", "sigkill"])
def test_a_server_started_by_a_one_shot_generate_stops_with_that_process(ending, comfy_dir, media_dir, work_root,
                                                                          tmp_path):
    """`talkgen.generate` in a script that then exits (or is killed): the ComfyUI it started goes too."""
    import subprocess
    import sys
    import time

    import httpx

    from tests.conftest import subprocess_env

    port = _free_port()
    script = tmp_path / "one_shot.py"
    script.write_text(
        "import os, signal, sys\nimport talkgen\n"
        f"talkgen.generate({_request(media_dir)!r}, output={str(tmp_path / 'a.mp4')!r})\n"
        "print('rendered', flush=True)\n"
        "if sys.argv[1] == 'sigkill':\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    env = subprocess_env(TALKGEN_ENGINE="comfyui", TALKGEN_COMFYUI_URL=f"http://127.0.0.1:{port}",
                         TALKGEN_COMFYUI_DIR=str(comfy_dir), TALKGEN_ALLOWED_PATH_ROOTS=f'["{media_dir}"]',
                         TALKGEN_WORK_DIR=str(work_root), TALKGEN_COMFYUI_START_TIMEOUT_S="60")
    done = subprocess.run([sys.executable, str(script), ending], env=env, capture_output=True, text=True, timeout=240)
    assert "rendered" in done.stdout, done.stderr[-2000:]
    assert done.returncode == (-9 if ending == "sigkill" else 0)
    assert decode(tmp_path / "a.mp4").count == 50
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/system_stats", timeout=1.0, trust_env=False)
        except httpx.TransportError:
            break  # nothing answers: the server is gone
        assert time.monotonic() < deadline, "ComfyUI still answers after the process that started it ended"
        time.sleep(0.3)
