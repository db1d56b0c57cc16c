"""Sampling presets (fast / quality) and the presets' LoRA, fused at load or kept beside the weights.

Tolerances (tiny preset, fp32, CPU): a LoRA run as a low-rank branch agrees with the same LoRA fused into
the weights to rel. L2 2e-7 per DiT pass, and a fused LoRA subtracted per job agrees with the plain
weights to the same order; the bounds below are 1e-5.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from talkgen.engines.native.model.fp8 import Fp8Linear
from talkgen.engines.native.model.lora import AttachedLora
from talkgen.engines.native.weights.layout import ADAPTERS, WAN_ORIGINAL_DIR, ModelFiles, ModelSet
from talkgen.engines.native.weights.loading import load_transformer
from talkgen.engines.native.weights.lora import read_lora
from talkgen.engines.native.weights.tiny import TINY, TINY_LORA
from talkgen.errors import EngineUnavailable, TalkgenError
from tests.native.conftest import request
from tests.native.test_weights import CONFIG, _run
from tests.support.video_check import decode

EXACT = 1e-5


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _model(root: Path, **kw):  # type: ignore[no-untyped-def]
    return load_transformer(root / WAN_ORIGINAL_DIR, CONFIG, adapter=root / ADAPTERS[1], **kw)


def test_tiny_lora_has_the_real_file_layout(tiny_models: Path):
    from safetensors import safe_open

    with safe_open(str(tiny_models / TINY_LORA), "pt") as fh:
        keys = set(fh.keys())
    assert "diffusion_model.blocks.0.self_attn.q.lora_down.weight" in keys
    assert "diffusion_model.blocks.0.self_attn.q.alpha" in keys
    assert "diffusion_model.patch_embedding.lora_up.weight" in keys  # a conv target
    assert "diffusion_model.blocks.1.ffn.2.diff_b" in keys and "diffusion_model.blocks.0.norm3.diff" in keys
    lora = read_lora(tiny_models / TINY_LORA)
    assert "blocks.0.attn1.to_q.weight" in lora.pairs and "blocks.0.norm2.weight" in lora.dense
    assert all(p.stat().st_mode & 0o444 == 0o444 for p in tiny_models.rglob("*") if p.is_file())  # any user reads


def test_branch_equals_fused_and_switches_back_exactly(tiny_models: Path):
    lora = read_lora(tiny_models / TINY_LORA)
    plain = _run(_model(tiny_models))
    fused_model = _model(tiny_models, loras=[(lora, 1.0)])
    fused = _run(fused_model)
    assert _rel(fused, plain) > 1e-2  # the LoRA really changes the output

    beside = _model(tiny_models)
    attached = AttachedLora(beside, lora, fused=0.0, dtype=torch.float32)
    assert attached.linears > 0
    assert torch.equal(_run(beside), plain)  # attached at 0: exactly the plain weights
    attached.use(1.0)
    assert _rel(_run(beside), fused) < EXACT
    attached.use(0.0)
    assert torch.equal(_run(beside), plain)  # and back, bit for bit: nothing drifts

    on_fused = AttachedLora(fused_model, lora, fused=1.0, dtype=torch.float32)
    assert torch.equal(_run(fused_model), fused)  # fused strength wanted: no branch runs at all
    on_fused.use(0.0)
    assert _rel(_run(fused_model), plain) < EXACT
    on_fused.use(1.0)
    assert torch.equal(_run(fused_model), fused)


def test_branch_on_fp8_layers(tiny_models: Path):
    lora = read_lora(tiny_models / TINY_LORA)
    model = _model(tiny_models, quant="fp8")
    assert isinstance(model.blocks[0].attn1.to_q, Fp8Linear)
    base = _run(model)
    attached = AttachedLora(model, lora, fused=0.0, dtype=torch.float32)
    attached.use(1.0)
    fused_fp8 = _run(_model(tiny_models, quant="fp8", loras=[(lora, 1.0)]))
    assert _rel(_run(model), fused_fp8) < 0.05  # fp8 rounding of the fused weights only
    attached.use(0.0)
    assert torch.equal(_run(model), base)


def test_a_lora_for_another_model_is_refused(tiny_models: Path):
    lora = read_lora({"diffusion_model.blocks.7.self_attn.q.lora_down.weight": torch.zeros(4, 32),
                      "diffusion_model.blocks.7.self_attn.q.lora_up.weight": torch.zeros(32, 4)})
    with pytest.raises(EngineUnavailable, match=r"blocks\.7"):
        AttachedLora(_model(tiny_models), lora, fused=0.0, dtype=torch.float32)


def test_presets_resolve_and_fields_override(tiny_models: Path, native_settings):
    from talkgen.engines.native.run.generate import SamplingParams
    from talkgen.request import TalkRequest

    files = ModelFiles.from_settings(native_settings)
    assert files.model_set == TINY

    class _Job:  # what SamplingParams reads from a job
        width = height = 128

        def __init__(self, **fields):  # type: ignore[no-untyped-def]
            self.request = TalkRequest(image_path="/x.png", wav_path="/x.wav", **fields)

    fast = SamplingParams.for_job(_Job(), files, "fast")
    assert (fast.steps, fast.guidance_scale, fast.audio_guidance_scale, fast.shift) == (2, 1.0, 2.0, 2.0)
    assert fast.lora == tiny_models / TINY_LORA and fast.lora_strength == 1.0
    quality = SamplingParams.for_job(_Job(), files, "quality")
    assert (quality.steps, quality.guidance_scale, quality.audio_guidance_scale, quality.lora) == (4, 5.0, 4.0, None)
    mixed = SamplingParams.for_job(_Job(steps=3, audio_guidance_scale=1.0, shift=5.0), files, "fast")
    assert (mixed.steps, mixed.guidance_scale, mixed.audio_guidance_scale, mixed.shift) == (3, 1.0, 1.0, 5.0)
    assert mixed.lora is not None  # fields override values, never the preset's LoRA


def test_real_model_set_presets():
    real = ModelSet()
    assert real.preset("quality").steps == 40 and real.preset("quality").passes_per_step() == 3
    fast = real.preset("fast")
    assert (fast.steps, fast.guidance_scale, fast.audio_guidance_scale, fast.passes_per_step()) == (4, 1.0, 2.0, 2)
    assert fast.lora is not None
    assert fast.lora.endswith("lightx2v_I2V_14B_480p_cfg_step_distill_rank64_bf16.safetensors")


def _frames(path: Path) -> np.ndarray:
    return np.stack(decode(path).frames).astype(float)


def test_jobs_switch_presets_per_request(native_service, native_media: Path, tmp_path: Path):
    short = str(native_media / "short.wav")
    first = native_service.generate(request(native_media, wav_path=short), output=str(tmp_path / "fast.mp4"))
    assert first.params["preset"] == "fast" and first.params["lora"] == "tiny-step-distill-rank4.safetensors@1"
    assert (first.params["steps"], first.params["passes_per_step"]) == (2, 2)
    quality = native_service.generate(request(native_media, wav_path=short, preset="quality"),
                                      output=str(tmp_path / "quality.mp4"))
    assert quality.params["preset"] == "quality" and quality.params["lora"] is None
    assert (quality.params["steps"], quality.params["passes_per_step"]) == (4, 3)
    again = native_service.generate(request(native_media, wav_path=short, preset="fast"),
                                    output=str(tmp_path / "again.mp4"))
    assert {k: v for k, v in again.params.items() if k != "compute_s"} == {
        k: v for k, v in first.params.items() if k != "compute_s"}
    assert np.array_equal(_frames(tmp_path / "again.mp4"), _frames(tmp_path / "fast.mp4"))
    assert np.abs(_frames(tmp_path / "quality.mp4") - _frames(tmp_path / "fast.mp4")).mean() > 1.0


def test_unfused_server_gives_the_same_videos(native_service, native_settings, native_media: Path, tmp_path: Path):
    from talkgen.service import TalkGen

    short = str(native_media / "short.wav")
    service = TalkGen(native_settings.model_copy(update={"native_fuse_lora": False, "work_dir": tmp_path / "w"}))
    try:
        for preset in ("fast", "quality"):
            service.generate(request(native_media, wav_path=short, preset=preset), output=str(tmp_path / "u.mp4"))
            native_service.generate(request(native_media, wav_path=short, preset=preset),
                                    output=str(tmp_path / "f.mp4"))
            diff = np.abs(_frames(tmp_path / "u.mp4") - _frames(tmp_path / "f.mp4")).mean()
            assert diff < 0.5, f"{preset}: fused and unfused differ by {diff:.3f} levels"
    finally:
        service.close()


def test_missing_lora_is_named(tiny_models: Path, native_settings, native_media: Path, tmp_path: Path):
    from talkgen.service import TalkGen

    models = tmp_path / "models"
    shutil.copytree(tiny_models, models)
    (models / TINY_LORA).unlink()
    settings = native_settings.model_copy(update={"models_dir": models, "work_dir": tmp_path / "w"})
    service = TalkGen(settings)
    try:  # the default preset needs the LoRA: the engine does not start
        with pytest.raises(TalkgenError) as failed:
            service.generate(request(native_media, wav_path=str(native_media / "short.wav")),
                             output=str(tmp_path / "x.mp4"))
        assert failed.value.code == "engine_unavailable" and "fast preset's LoRA" in failed.value.message
    finally:
        service.close()
    service = TalkGen(settings.model_copy(update={"native_preset": "quality"}))
    try:  # a quality server runs without it, and says what a fast request needs
        done = service.generate(request(native_media, wav_path=str(native_media / "short.wav")),
                                output=str(tmp_path / "q.mp4"))
        assert done.params["preset"] == "quality"
        with pytest.raises(TalkgenError) as failed:
            service.generate(request(native_media, wav_path=str(native_media / "short.wav"), preset="fast"),
                             output=str(tmp_path / "f.mp4"))
        assert failed.value.code == "engine_unavailable" and "talkgen models download" in failed.value.message
    finally:
        service.close()


def test_preset_field_is_checked():
    from talkgen.request import TalkRequest

    with pytest.raises(TalkgenError) as failed:
        TalkRequest.parse({"image_path": "/a.png", "wav_path": "/a.wav", "preset": "turbo"})
    assert failed.value.code == "invalid_request" and "preset" in failed.value.message
