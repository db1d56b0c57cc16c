"""`talkgen models tiny` and `talkgen generate --engine native` as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import subprocess_env
from tests.support.video_check import decode


def test_models_tiny_then_generate(native_media, tmp_path):
    models = tmp_path / "models"
    env = subprocess_env(TALKGEN_ALLOWED_PATH_ROOTS=str(native_media), TALKGEN_WORK_DIR=str(tmp_path))
    made = subprocess.run([sys.executable, "-m", "talkgen.cli", "models", "tiny", str(models)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    assert (models / "talkgen-presets.json").is_file()
    assert "Writing" not in made.stderr  # no progress-bar noise

    env["TALKGEN_MODELS_DIR"] = str(models)
    out = tmp_path / "cli.mp4"
    run = subprocess.run([sys.executable, "-m", "talkgen.cli", "generate", "--image", str(native_media / "face.png"),
                          "--audio", str(native_media / "short.wav"), "--width", "128", "--height", "160",
                          "-o", str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert f"wrote {out}" in run.stdout and "generate" in run.stdout
    video = decode(out)
    assert (video.count, video.width, video.height) == (40, 128, 160)
    assert video.audio_duration == pytest.approx(1.6, abs=0.03)


def test_missing_weights_is_a_clear_error(native_media, tmp_path):
    env = subprocess_env(TALKGEN_ALLOWED_PATH_ROOTS=str(native_media), TALKGEN_MODELS_DIR=str(tmp_path / "none"))
    run = subprocess.run([sys.executable, "-m", "talkgen.cli", "generate", "--image", str(native_media / "face.png"),
                          "--audio", str(native_media / "short.wav"), "-o", str(tmp_path / "x.mp4")], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "engine_unavailable" in run.stderr and "talkgen models download" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "x.mp4").exists()


def test_cli_video_two_speakers(tiny_models, native_media, tmp_path):
    env = subprocess_env(TALKGEN_ALLOWED_PATH_ROOTS=str(native_media), TALKGEN_MODELS_DIR=str(tiny_models),
                         TALKGEN_WORK_DIR=str(tmp_path))
    out = tmp_path / "v2v.mp4"
    run = subprocess.run([sys.executable, "-m", "talkgen.cli", "generate", "--engine", "native", "--video",
                          str(native_media / "clip30.mp4"), "--audio", str(native_media / "short.wav"), "--audio2",
                          str(native_media / "short.wav"), "--audio-type", "add", "--width", "128", "--height",
                          "128", "--json", "-o", str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert '"mode": "V2V_multi"' in run.stdout
    video = decode(out)
    assert video.count == 80 and video.audio_duration == pytest.approx(3.2, abs=0.03)


def test_models_tiny_fp8_writes_scaled_fp8_files(tmp_path):
    from click.testing import CliRunner
    from safetensors import safe_open

    from talkgen.cli import main

    result = CliRunner().invoke(main, ["models", "tiny", str(tmp_path / "m"), "--fp8"])
    assert result.exit_code == 0, result.output
    dit = result.output.split("the DiT is the fp8 file ")[1].split(")")[0]
    from talkgen.engines.native.weights.layout import ModelFiles
    from talkgen.settings import Settings

    files = ModelFiles.from_settings(Settings(models_dir=tmp_path / "m"))  # the set file names the fp8 DiT
    assert files.transformer == Path(dit) and files.model_set.name == "tiny-fp8"
    with safe_open(dit, "pt") as f:
        keys = list(f.keys())
        weight = next(k for k in keys if k.endswith("self_attn.q.weight"))
        assert str(f.get_slice(weight).get_dtype()) == "F8_E4M3"
        assert weight.removesuffix("weight") + "scale_weight" in keys
