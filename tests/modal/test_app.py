"""deploy/modal_app.py offline: importing it builds the App; the GPU class's enter + method run in-process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.modal.conftest import load_app, tiny_request
from tests.support.video_check import decode


def app_functions(module: Any) -> dict[str, Any]:
    """Modal objects a module defines, found by type (not via the deprecated ``App.registered_*``)."""
    import modal

    return {name: obj for name, obj in vars(module).items() if isinstance(obj, (modal.Function, modal.Cls))}


def test_import_builds_the_app_offline(monkeypatch: pytest.MonkeyPatch):
    import modal

    monkeypatch.delenv("MODAL_TOKEN_ID", raising=False)
    monkeypatch.setenv("TALKGEN_MODAL_APP_NAME", "talkgen-test")
    module = load_app()
    assert isinstance(module.app, modal.App) and module.app.name == "talkgen-test"
    assert set(app_functions(module)) == {"TalkGenWorker", "api", "fetch_weights", "run_batch_job"}
    assert callable(module.download) and callable(module.batch)  # the local entrypoints
    assert isinstance(module.gpu_image, modal.Image) and isinstance(module.light_image, modal.Image)


def test_bad_settings_fail_the_import(monkeypatch: pytest.MonkeyPatch):
    from talkgen.errors import InvalidConfig

    monkeypatch.setenv("TALKGEN_MODAL_GPU", "FOO")
    with pytest.raises(InvalidConfig, match="TALKGEN_MODAL_GPU"):
        load_app()


@pytest.fixture
def local_env(monkeypatch: pytest.MonkeyPatch, tiny_models: Path, modal_media: Path, tmp_path: Path) -> Path:
    """The container's talkgen settings, pointed at the tiny weights and a temp 'outputs volume'."""
    volume = tmp_path / "outputs"
    volume.mkdir()
    for name, value in {"TALKGEN_ENGINE": "native", "TALKGEN_MODELS_DIR": str(tiny_models),
                        "TALKGEN_ALLOWED_PATH_ROOTS": str(modal_media), "TALKGEN_WORK_DIR": str(tmp_path / "work"),
                        "TALKGEN_VOLUME_DIR": str(volume), "TALKGEN_OUTPUT_ROOTS": str(volume),
                        "TALKGEN_WARMUP": "true"}.items():
        monkeypatch.setenv(name, value)
    return volume


@pytest.mark.filterwarnings("ignore:The TalkGenWorker.generate function is executing locally")
def test_class_generates_locally_through_the_tiny_preset(local_env: Path, modal_media: Path):
    module = load_app()
    worker = module.TalkGenWorker()
    response = worker.generate.local(tiny_request(modal_media, job_id="local-1"))
    assert "error" not in response, response
    assert response["video_path"] == str(local_env / "local-1.mp4")  # never inline: the outputs volume
    assert "video" not in response
    assert (response["job_id"], response["frames"], response["width"], response["height"]) == ("local-1", 40, 128, 128)
    video = decode(Path(response["video_path"]))
    assert (video.count, video.width, video.height) == (40, 128, 128)
    assert video.audio_duration == pytest.approx(1.6, abs=0.05)

    bad = worker.generate.local({"image_path": str(modal_media / "face.png")})  # no audio: the same warm instance
    assert bad["error_code"] == "missing_media" and bad["retryable"] is False
    assert set(bad) >= {"error", "error_code", "retryable"}
    wrapped = worker.generate.local({"input": {"image_path": 5}})  # RunPod's {"input": ...} is accepted too
    assert wrapped["error_code"] == "invalid_request"


def test_import_needs_no_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """In a container the app file sits alone (/root/modal_app.py): importing it must not read repo files."""
    import shutil

    from tests.modal import conftest

    alone = tmp_path / "root" / "modal_app.py"
    alone.parent.mkdir()
    shutil.copy(conftest.APP_FILE, alone)
    monkeypatch.setattr(conftest, "APP_FILE", alone)
    module = load_app("talkgen_modal_app_alone")
    assert tmp_path == module.REPO and module.TalkGenWorker is not None


def test_modal_cli_loads_the_file_and_stops_at_auth(tmp_path: Path):
    """`modal deploy` and `modal run ::batch --help` load the file as users will; without a token deploy stops at
    authentication, before any connection (no ~/.modal.toml: HOME is empty)."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODAL_", "TALKGEN_MODAL_"))}
    env["HOME"] = str(tmp_path)
    modal_cli = [sys.executable, "-m", "modal"]
    deploy = subprocess.run([*modal_cli, "deploy", "deploy/modal_app.py"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=120)
    assert "Token missing" in deploy.stdout + deploy.stderr, deploy.stderr[-2000:]
    assert "Traceback" not in deploy.stderr
    usage = subprocess.run([*modal_cli, "run", "deploy/modal_app.py::batch", "--help"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=120)
    assert usage.returncode == 0 and "--requests" in usage.stdout and "--output" in usage.stdout
