"""`talkgen models download` against a loopback hub: resume, verification, the lock file."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from talkgen.engines.native.weights.download import LOCK_FILE, download, verify
from talkgen.errors import EngineUnavailable, FetchFailed
from tests.conftest import subprocess_env
from tests.support.fake_hub import FakeHub

BIG = os.urandom(24_000_000)
CONFIG = b'{"hidden_size": 32}'
OTHER = b"adapter bytes" * 1000
LORA = b"lora bytes" * 500


def _manifest(tmp_path: Path, big_sha: str | None = None) -> Path:
    manifest = {
        "name": "test-set",
        "components": [
            {"repo": "Org/Base", "revision": "abc123", "dir": "Base", "files": [
                {"path": "transformer/model.safetensors", "size": len(BIG),
                 "sha256": big_sha or hashlib.sha256(BIG).hexdigest()},
                {"path": "config.json", "size": None, "sha256": None}]},
            {"repo": "Org/Audio", "revision": "refs/pr/1", "dir": "Audio", "files": [
                {"path": "model.safetensors", "size": None, "sha256": None, "optional": "two speakers",
                 "group": "two-speakers"}]},
            {"repo": "Org/Lora", "revision": "main", "dir": "loras", "files": [
                {"path": "distill.safetensors", "size": None, "sha256": None, "group": "fast-preset"}]},
        ],
        "presets": {
            "fast": {"steps": 4, "guidance_scale": 1.0, "audio_guidance_scale": 2.0, "shift": 2.0,
                     "shift_720p": 2.0, "lora": "loras/distill.safetensors"},
            "quality": {"steps": 8, "guidance_scale": 5.0, "audio_guidance_scale": 4.0, "shift": 7.0,
                        "shift_720p": 11.0},
        },
    }
    path = tmp_path / "test-set.json"
    path.write_text(json.dumps(manifest))
    return path


@pytest.fixture
def hub():
    with FakeHub() as server:
        server.add("Org/Base", "abc123", "transformer/model.safetensors", BIG)
        server.add("Org/Base", "abc123", "config.json", CONFIG)
        server.add("Org/Audio", "refs/pr/1", "model.safetensors", OTHER)
        server.add("Org/Lora", "main", "distill.safetensors", LORA)
        yield server


def test_interrupted_download_resumes_and_verifies(hub, tmp_path, monkeypatch):
    from talkgen.engines.native.weights import download as download_module

    monkeypatch.setattr(download_module.time, "sleep", lambda _s: None)  # retry pauses
    manifest, models = _manifest(tmp_path), tmp_path / "models"
    # the connection drops half way, then at once on every retry of this run
    hub.cut["model.safetensors"] = [12_000_000] + [0] * 20
    with pytest.raises(FetchFailed) as info:
        download(str(manifest), models, endpoint=hub.endpoint, report=lambda _: None)
    assert info.value.retryable and "rerun" in info.value.message.lower()

    hub.cut.clear()
    lines: list[str] = []
    seen = len(hub.ranges)
    download(str(manifest), models, endpoint=hub.endpoint, report=lines.append)
    resumed_at = int(hub.ranges[seen].removeprefix("bytes=").rstrip("-"))
    assert 11_000_000 <= resumed_at <= 12_000_000  # the rerun continued from the partial file
    assert (models / "Base/transformer/model.safetensors").read_bytes() == BIG
    assert (models / "Audio/model.safetensors").read_bytes() == OTHER
    lock = json.loads((models / LOCK_FILE).read_text())
    assert lock["Base/config.json"]["sha256"] == hashlib.sha256(CONFIG).hexdigest()
    presets = json.loads((models / "talkgen-presets.json").read_text())
    assert presets["name"] == "test-set" and presets["presets"]["quality"]["steps"] == 8
    assert (models / "loras/distill.safetensors").read_bytes() == LORA
    assert verify(str(manifest), models) == []

    gets = len(hub.gets)
    download(str(manifest), models, endpoint=hub.endpoint, report=lines.append)
    assert len(hub.gets) == gets  # everything verified: nothing fetched again
    assert lines[-4].endswith("verified")


def test_corruption_is_found_and_refetched(hub, tmp_path):
    manifest, models = _manifest(tmp_path), tmp_path / "models"
    download(str(manifest), models, endpoint=hub.endpoint, report=lambda _: None)
    target = models / "Base/transformer/model.safetensors"
    target.write_bytes(b"x" + BIG[1:])
    assert verify(str(manifest), models) == [("Base/transformer/model.safetensors",
                                              f"sha256 {hashlib.sha256(b'x' + BIG[1:]).hexdigest()}, expected "
                                              f"{hashlib.sha256(BIG).hexdigest()}")]
    download(str(manifest), models, endpoint=hub.endpoint, report=lambda _: None)
    assert target.read_bytes() == BIG


def test_hub_serving_other_bytes_than_pinned_is_refused(hub, tmp_path):
    manifest, models = _manifest(tmp_path, big_sha="0" * 64), tmp_path / "models"
    with pytest.raises(EngineUnavailable, match=r"corrupt.*sha256"):
        download(str(manifest), models, endpoint=hub.endpoint, report=lambda _: None)
    assert not (models / "Base/transformer/model.safetensors").exists()


def test_cli_download_skip_optional_and_unknown_set(hub, tmp_path):
    manifest, models = _manifest(tmp_path), tmp_path / "models"
    env = subprocess_env(HF_ENDPOINT=hub.endpoint)
    run = subprocess.run([sys.executable, "-m", "talkgen.cli", "models", "download", str(manifest), "--dir",
                          str(models), "--skip-optional"], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "3 files verified" in run.stdout and not (models / "Audio").exists()
    assert (models / "loras/distill.safetensors").is_file()  # the fast preset's LoRA is part of the default set
    bad = subprocess.run([sys.executable, "-m", "talkgen.cli", "models", "download", "no-such-set"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "infinitetalk-480p" in bad.stderr


def test_skip_groups_download_and_verify(hub, tmp_path):
    manifest, models = _manifest(tmp_path), tmp_path / "models"
    env = subprocess_env(HF_ENDPOINT=hub.endpoint)
    cli = [sys.executable, "-m", "talkgen.cli", "models"]
    run = subprocess.run([*cli, "download", str(manifest), "--dir", str(models), "--skip", "fast-preset"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert not (models / "loras").exists() and (models / "Audio/model.safetensors").is_file()
    missing = subprocess.run([*cli, "verify", str(manifest), "--dir", str(models)], env=env, capture_output=True,
                             text=True, timeout=120)
    assert missing.returncode == 1 and "loras/distill.safetensors: missing" in missing.stderr
    skipped = subprocess.run([*cli, "verify", str(manifest), "--dir", str(models), "--skip", "fast-preset"], env=env,
                             capture_output=True, text=True, timeout=120)
    assert skipped.returncode == 0, skipped.stderr
    unknown = subprocess.run([*cli, "download", str(manifest), "--dir", str(models), "--skip", "lora"], env=env,
                             capture_output=True, text=True, timeout=120)
    assert unknown.returncode != 0 and "fast-preset" in unknown.stderr and "two-speakers" in unknown.stderr


def test_shipped_manifest_is_complete():
    from talkgen.engines.native.weights.download import load_manifest, manifest_files

    files = manifest_files(load_manifest("infinitetalk-480p"))
    paths = {str(f.target) for f in files}
    assert "InfiniteTalk/single/infinitetalk.safetensors" in paths
    assert "chinese-wav2vec2-base/model.safetensors" in paths
    shards = "Wan2.1-I2V-14B-480P-Diffusers/transformer/diffusion_pytorch_model-"
    assert sum(1 for p in paths if p.startswith(shards)) == 14
    assert all(f.sha256 is None or len(f.sha256) == 64 for f in files)
    from talkgen.engines.native.weights.layout import FAST

    lora = next(f for f in files if str(f.target) == FAST.lora)  # where the fast preset looks for it
    assert lora.repo == "Kijai/WanVideo_comfy" and not lora.optional and lora.group == "fast-preset"
