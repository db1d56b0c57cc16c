"""fp8 weights: Kijai-style ``_scaled`` files and ``TALKGEN_NATIVE_QUANT=fp8``, loaded, run and sized.

Tolerances (measured on the tiny preset, seed 0, on CPU in fp32; bounds are about twice the measurement):
one DiT pass differs from the fp32 weights' by rel. L2 3.0e-2 with the ``_scaled`` files (every 2-D weight
in fp8, the rest stored in bf16) and 1.3e-2 with ``quant=fp8`` (block Linears only); a whole two-window
job's decoded frames (128x128, 85 frames) differ by a mean of 5.8 levels of 255 with the ``_scaled`` files and
5.3 with ``quant=fp8``; for scale, bf16 weights and compute give 4.5 and another seed 30.7.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from talkgen.engines.native.devices.memory import module_bytes
from talkgen.engines.native.model.fp8 import Fp8Linear
from talkgen.engines.native.model.lora import AttachedLora
from talkgen.engines.native.weights.layout import ADAPTERS, WAN_ORIGINAL_DIR
from talkgen.engines.native.weights.loading import load_transformer
from talkgen.engines.native.weights.lora import read_lora
from talkgen.errors import EngineUnavailable
from tests.native.conftest import request
from tests.native.test_weights import CONFIG, _run
from tests.support.video_check import decode

SCALED_FILE_REL_L2 = 0.06
QUANT_REL_L2 = 0.03
FRAME_MEAN_DIFF = 10.0


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _reference(tiny_models: Path, dtype: torch.dtype = torch.float32, **kw):  # type: ignore[no-untyped-def]
    return load_transformer(tiny_models / WAN_ORIGINAL_DIR, CONFIG, adapter=tiny_models / ADAPTERS[1], dtype=dtype,
                            **kw)


def _linear_weight_bytes(model: torch.nn.Module) -> int:
    return sum(m.weight.numel() * m.weight.element_size() for m in model.blocks.modules()
               if isinstance(m, torch.nn.Linear))


def test_scaled_fp8_files_load_close_to_the_fp32_weights(tiny_models: Path, tiny_fp8_models: tuple[Path, Path]):
    root, dit = tiny_fp8_models
    model = load_transformer(dit, CONFIG, adapter=root / ADAPTERS[1])
    q = model.blocks[0].attn1.to_q
    assert isinstance(q, Fp8Linear) and q.weight.dtype == torch.float8_e4m3fn and q.scale_weight.ndim == 0
    assert isinstance(model.blocks[0].audio_cross_attn.kv_linear, Fp8Linear)  # the adapter's scaled weights too
    assert model.audio_proj.proj1.weight.dtype == torch.float32  # outside the blocks: dequantised
    assert _rel(_run(model), _run(_reference(tiny_models))) < SCALED_FILE_REL_L2


def test_quant_fp8_on_fp32_weights(tiny_models: Path):
    reference = _reference(tiny_models)
    model = _reference(tiny_models, quant="fp8")
    assert isinstance(model.blocks[1].ffn.net[0].proj, Fp8Linear)
    assert _rel(_run(model), _run(reference)) < QUANT_REL_L2


def test_fp8_halves_the_block_weights(tiny_models: Path, tiny_fp8_models: tuple[Path, Path]):
    bf16 = _reference(tiny_models, torch.bfloat16)
    quantised = _reference(tiny_models, torch.bfloat16, quant="fp8")
    root, dit = tiny_fp8_models
    from_file = load_transformer(dit, CONFIG, adapter=root / ADAPTERS[1], dtype=torch.bfloat16)
    for fp8 in (quantised, from_file):
        assert _linear_weight_bytes(bf16) == 2 * _linear_weight_bytes(fp8)
        blocks = sum(module_bytes(b) for b in fp8.blocks)  # + biases, norms, modulation (bf16/fp32) and scales
        assert blocks <= 0.55 * sum(module_bytes(b) for b in bf16.blocks)


def test_real_size_dit_halves():
    """The 14B DiT + adapter on the meta device: what `quant=fp8` keeps in fp8 is ~97 % of its bytes."""
    from talkgen.engines.native.model.fp8 import convert_linears, fp8_layers
    from talkgen.engines.native.weights.loading import build_empty
    from talkgen.engines.native.weights.real_size import REAL_AUDIO, REAL_DIT

    model = build_empty({**REAL_DIT, **REAL_AUDIO})
    bf16 = sum(p.numel() * (4 if "norm" in n or "scale_shift" in n or "time_embedder" in n else 2)
               for n, p in model.named_parameters())
    convert_linears(model, fp8_layers(model, dict(model.state_dict()), "fp8"))
    fp8 = sum(p.numel() * (p.element_size() if p.element_size() < 2 or p.ndim == 0 else
                           (4 if "norm" in n or "scale_shift" in n or "time_embedder" in n else 2))
              for n, p in model.named_parameters())
    assert fp8 <= 0.52 * bf16


def test_whole_job_on_scaled_fp8_files(native_service, native_media: Path, tiny_fp8_models: tuple[Path, Path],
                                       tmp_path: Path):
    from talkgen.service import TalkGen
    from talkgen.settings import Settings

    root, _ = tiny_fp8_models
    native_service.generate(request(native_media), output=str(tmp_path / "ref.mp4"))
    service = TalkGen(Settings(engine="native", models_dir=root,  # its talkgen-presets.json names the fp8 DiT
                               allowed_path_roots=[native_media], work_dir=tmp_path / "w", url_retries=0))
    try:
        result = service.generate(request(native_media), output=str(tmp_path / "fp8.mp4"))
        assert isinstance(service._engine("native").components.transformer.blocks[0].attn1.to_q, Fp8Linear)
    finally:
        service.close()
    video, reference = decode(tmp_path / "fp8.mp4"), decode(tmp_path / "ref.mp4")
    assert video.count == reference.count == round(25 * 3.4) and result.params["windows"] == 2
    pairs = zip(video.frames, reference.frames, strict=True)
    diff = np.mean([np.abs(a.astype(float) - b.astype(float)).mean() for a, b in pairs])
    print(f"mean frame difference fp8 vs fp32 weights: {diff:.2f} / 255")
    assert diff < FRAME_MEAN_DIFF


def test_quant_setting_reaches_the_engine(native_service, native_media: Path, tiny_models: Path, tmp_path: Path):
    from talkgen.service import TalkGen
    from talkgen.settings import Settings

    duo = request(native_media, wav_path=str(native_media / "short.wav"), person_count="multi",
                  wav_path_2=str(native_media / "short.wav"))

    service = TalkGen(Settings(engine="native", models_dir=tiny_models, native_quant="fp8",
                               allowed_path_roots=[native_media], work_dir=tmp_path / "w", url_retries=0))
    try:
        result = service.generate(request(native_media, wav_path=str(native_media / "short.wav")),
                                  output=str(tmp_path / "q.mp4"))
        transformer = service._engine("native").components.transformer
        assert isinstance(transformer.blocks[0].attn2.add_k_proj, Fp8Linear)
        assert result.params["quant"] == "fp8"
        # two speakers: the multi adapter is swapped into the fp8 layers with its own scales
        service.generate(duo, output=str(tmp_path / "duo-fp8.mp4"))
    finally:
        service.close()
    assert decode(tmp_path / "q.mp4").count == round(25 * 1.6)
    native_service.generate(duo, output=str(tmp_path / "duo.mp4"))
    video, reference = decode(tmp_path / "duo-fp8.mp4"), decode(tmp_path / "duo.mp4")
    assert video.count == reference.count
    diff = np.mean([np.abs(a.astype(float) - b.astype(float)).mean()
                    for a, b in zip(video.frames, reference.frames, strict=True)])
    assert diff < FRAME_MEAN_DIFF


def _file_with(tmp_path: Path, dit: Path, change) -> Path:  # type: ignore[no-untyped-def]
    from safetensors.torch import load_file, save_file

    state = load_file(str(dit))
    change(state)
    out = tmp_path / "Wan2_1-I2V-14B-480P_fp8_e4m3fn_scaled_KJ.safetensors"
    save_file(state, str(out))
    (tmp_path / "config.json").write_bytes((dit.parent / "config.json").read_bytes())
    return out


@pytest.mark.parametrize("change, message", [
    (lambda s: s.__setitem__("blocks.0.self_attn.q.scale_weight", torch.ones(4)), r"has shape \[4\]"),
    (lambda s: s.pop("blocks.1.ffn.0.scale_weight"), r"1 fp8 weights have no scale_weight.*blocks\.1\.ffn"),
    (lambda s: s.__setitem__("blocks.0.self_attn.x.scale_weight", torch.ones(())), "scales a weight the files do"),
])
def test_mismatched_scales_name_the_file(tiny_fp8_models: tuple[Path, Path], tmp_path: Path, change, message):
    root, dit = tiny_fp8_models
    broken = _file_with(tmp_path, dit, change)
    with pytest.raises(EngineUnavailable, match=message) as info:
        load_transformer(broken, CONFIG, adapter=root / ADAPTERS[1])
    assert str(broken) in str(info.value) and info.value.code == "engine_unavailable" and not info.value.retryable


def test_mismatched_scale_file_fails_the_job(tiny_fp8_models: tuple[Path, Path], native_media: Path, tmp_path: Path):
    from talkgen.service import TalkGen
    from talkgen.settings import Settings

    root, dit = tiny_fp8_models
    broken = _file_with(tmp_path, dit, lambda s: s.__setitem__("head.head.scale_weight", torch.ones(2, 2)))
    service = TalkGen(Settings(engine="native", models_dir=root, native_transformer=broken,
                               allowed_path_roots=[native_media], work_dir=tmp_path / "w", url_retries=0))
    with pytest.raises(EngineUnavailable, match="scale_weight") as info:
        service.generate(request(native_media, wav_path=str(native_media / "short.wav")),
                         output=str(tmp_path / "o.mp4"))
    assert broken.name in str(info.value)
    assert not (tmp_path / "o.mp4").exists()


def test_plain_fp8_file_has_scale_one(tiny_models: Path, tmp_path: Path):
    from talkgen.engines.native.weights.tiny_fp8 import write_tiny_fp8

    dit = write_tiny_fp8(tmp_path / "plain", scaled=False)
    model = load_transformer(dit, CONFIG, adapter=tmp_path / "plain" / ADAPTERS[1])
    q = model.blocks[0].attn1.to_q
    assert isinstance(q, Fp8Linear) and float(q.scale_weight) == 1.0
    want = _reference(tiny_models).blocks[0].attn1.to_q.weight.to(torch.float8_e4m3fn).float()
    assert torch.equal(q.weight.float(), want)


def test_lora_on_fp8_is_merged_then_quantised_again(tiny_models: Path, tiny_fp8_models: tuple[Path, Path]):
    from tests.native.test_weights import _lora

    root, dit = tiny_fp8_models
    lora = [(_lora(None), 0.5)]
    model = load_transformer(dit, CONFIG, adapter=root / ADAPTERS[1], loras=lora)
    assert isinstance(model.blocks[0].attn1.to_q, Fp8Linear)
    assert _rel(_run(model), _run(_reference(tiny_models, loras=lora))) < SCALED_FILE_REL_L2


def test_adapter_conform_for_the_speaker_swap(tiny_models: Path, tiny_fp8_models: tuple[Path, Path]):
    """`conform` puts any adapter file in the loaded model's form (what `Components.use_adapter` copies in)."""
    from talkgen.engines.native.weights.fp8_scales import conform
    from talkgen.engines.native.weights.tensors import read_weights

    root, dit = tiny_fp8_models
    for model in (load_transformer(dit, CONFIG, adapter=root / ADAPTERS[1]), _reference(tiny_models)):
        for adapter in (root / ADAPTERS[2], tiny_models / ADAPTERS[2]):
            state = conform(model, *read_weights(adapter))
            params = dict(model.named_parameters())
            assert set(state) <= set(params)
            key = "blocks.0.audio_cross_attn.q_linear"
            assert (f"{key}.scale_weight" in state) == isinstance(model.get_submodule(key), Fp8Linear)
            assert all(params[k].shape == v.shape for k, v in state.items())


@pytest.mark.parametrize("quant", ["none", "fp8"])
def test_footprint_counts_fp8_bytes(tiny_models: Path, tiny_fp8_models: tuple[Path, Path], quant: str):
    from talkgen.engines.native.weights.layout import ModelFiles
    from talkgen.engines.native.weights.models import footprint_from_files
    from talkgen.settings import Settings

    root, dit = tiny_fp8_models
    models, transformer = (root, dit) if quant == "none" else (tiny_models, tiny_models / WAN_ORIGINAL_DIR)
    files = ModelFiles.from_settings(Settings(models_dir=models, native_transformer=transformer))
    predicted = footprint_from_files(files, torch.float32, quant, lora_resident=True)  # fp32: all counted right
    model = load_transformer(transformer, CONFIG, adapter=files.adapter(1), quant=quant)
    AttachedLora(model, read_lora(files.preset_lora("fast")), 0.0, torch.float32)  # unfused: its factors count
    assert predicted.dit == module_bytes(model) - sum(b.numel() * b.element_size() for n, b in model.named_buffers()
                                                      if "lora" not in n)  # the RoPE tables: made, not stored
    assert predicted.dit_block == module_bytes(model.blocks[0])
