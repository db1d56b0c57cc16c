"""Weight loading: both layouts, adapters, LoRAs, and the errors for broken files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from talkgen.engines.native.weights.keys import to_diffusers, to_original
from talkgen.engines.native.weights.layout import ADAPTERS, WAN_DIR, WAN_ORIGINAL_DIR
from talkgen.engines.native.weights.loading import load_transformer
from talkgen.errors import EngineUnavailable

CONFIG = {"audio_layers": 2}


def _inputs(speakers: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "hidden_states": torch.randn(1, 36, 3, 8, 8, generator=g),
        "timestep": torch.tensor([700.0]),
        "encoder_hidden_states": torch.randn(1, 512, 32, generator=g),
        "encoder_hidden_states_image": torch.randn(1, 257, 32, generator=g),
        "audio": torch.randn(speakers, 9, 5, 2, 32, generator=g),
    }


def _run(model, **overrides) -> torch.Tensor:  # type: ignore[no-untyped-def]
    with torch.no_grad():
        return model(**{**_inputs(), **overrides}).sample


def test_original_and_diffusers_layouts_load_to_identical_outputs(tiny_models: Path):
    adapter = tiny_models / ADAPTERS[1]
    from_diffusers = load_transformer(tiny_models / WAN_DIR / "transformer", CONFIG | {}, adapter=adapter)
    from_original = load_transformer(tiny_models / WAN_ORIGINAL_DIR, CONFIG, adapter=adapter)
    assert torch.equal(_run(from_diffusers), _run(from_original))
    # the original folder really is in Wan's naming, and its config.json is Wan's
    index = json.loads((tiny_models / WAN_ORIGINAL_DIR / "diffusion_pytorch_model.safetensors.index.json").read_text())
    assert "blocks.0.self_attn.q.weight" in index["weight_map"] and "head.head.weight" in index["weight_map"]
    assert "num_heads" in json.loads((tiny_models / WAN_ORIGINAL_DIR / "config.json").read_text())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_single_file_repack_with_prefix(tiny_models: Path, tmp_path: Path, dtype: torch.dtype):
    from safetensors.torch import load_file, save_file

    folder = tiny_models / WAN_ORIGINAL_DIR
    files = [*sorted(folder.glob("*.safetensors")), tiny_models / ADAPTERS[1]]
    merged = {f"model.diffusion_model.{k}": v.to(dtype) for f in files for k, v in load_file(str(f)).items()}
    save_file(merged, str(tmp_path / "repack.safetensors"))
    model = load_transformer(tmp_path / "repack.safetensors", {"num_heads": 2, **CONFIG})
    assert model.blocks[0].attn1.to_q.weight.dtype == torch.float32  # loaded at the requested dtype
    rounded = load_transformer({k: v.to(dtype).float() for k, v in merged.items()}, {"num_heads": 2, **CONFIG})
    assert torch.equal(_run(model), _run(rounded))
    if dtype == torch.float32:
        reference = load_transformer(folder, CONFIG, adapter=tiny_models / ADAPTERS[1])
        assert torch.equal(_run(model), _run(reference))


def test_key_converter_agrees_with_diffusers(tiny_models: Path):
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
    from safetensors.torch import load_file

    original = {}
    for shard in sorted((tiny_models / WAN_ORIGINAL_DIR).glob("*.safetensors")):
        original.update(load_file(str(shard)))
    theirs = convert_wan_transformer_to_diffusers(dict(original))
    ours = {to_diffusers(k): v for k, v in original.items()}
    assert set(theirs) == set(ours)
    assert all(torch.equal(theirs[k], ours[k]) for k in ours)
    assert all(to_original(to_diffusers(k)) == k for k in original)


def _lora(model, strength_scale: float = 1.0) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(5)
    lora = {}
    for block in range(2):
        for proj, shape in (("self_attn.q", (32, 32)), ("ffn.0", (64, 32))):
            base = f"diffusion_model.blocks.{block}.{proj}"
            lora[f"{base}.lora_down.weight"] = torch.randn(4, shape[1], generator=g) * 0.5 * strength_scale
            lora[f"{base}.lora_up.weight"] = torch.randn(shape[0], 4, generator=g) * 0.5
            lora[f"{base}.alpha"] = torch.tensor(4.0)
    return lora


def test_lora_changes_output_and_strength_zero_does_not(tiny_models: Path):
    args = (tiny_models / WAN_DIR / "transformer", CONFIG)
    adapter = tiny_models / ADAPTERS[1]
    plain = _run(load_transformer(*args, adapter=adapter))
    lora = _lora(None)
    with_lora = _run(load_transformer(*args, adapter=adapter, loras=[(lora, 1.0)]))
    zero = _run(load_transformer(*args, adapter=adapter, loras=[(lora, 0.0)]))
    assert torch.equal(plain, zero)
    assert (with_lora - plain).abs().max() > 1e-3
    # merged as up @ down * strength on the original-named weight
    model = load_transformer(*args, adapter=adapter, loras=[(lora, 0.5)])
    base = load_transformer(*args, adapter=adapter)
    delta = lora["diffusion_model.blocks.0.self_attn.q.lora_up.weight"] @ lora[
        "diffusion_model.blocks.0.self_attn.q.lora_down.weight"]
    got = model.blocks[0].attn1.to_q.weight - base.blocks[0].attn1.to_q.weight
    assert torch.allclose(got, 0.5 * delta, atol=1e-5)


def test_lora_for_another_model_is_refused(tiny_models: Path):
    bad = {"diffusion_model.blocks.7.self_attn.q.lora_down.weight": torch.zeros(4, 32),
           "diffusion_model.blocks.7.self_attn.q.lora_up.weight": torch.zeros(32, 4)}
    with pytest.raises(EngineUnavailable, match=r"blocks\.7\.self_attn\.q"):
        load_transformer(tiny_models / WAN_DIR / "transformer", CONFIG, adapter=tiny_models / ADAPTERS[1],
                         loras=[(bad, 1.0)])


def test_truncated_shard_names_the_file(tiny_models: Path, tmp_path: Path):
    folder = tmp_path / "transformer"
    shutil.copytree(tiny_models / WAN_DIR / "transformer", folder)
    shard = sorted(folder.glob("*.safetensors"))[0]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(EngineUnavailable, match=rf"{shard.name}.*truncated") as info:
        load_transformer(folder, CONFIG, adapter=tiny_models / ADAPTERS[1])
    assert info.value.code == "engine_unavailable"


def test_mismatched_adapter_names_key_and_shapes(tiny_models: Path, tmp_path: Path):
    from safetensors.torch import load_file, save_file

    adapter = load_file(str(tiny_models / ADAPTERS[1]))
    adapter["blocks.1.audio_cross_attn.kv_linear.weight"] = torch.zeros(64, 48)
    save_file(adapter, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(EngineUnavailable, match=r"blocks\.1\.audio_cross_attn\.kv_linear\.weight.*wrong\.safetensors"
                       r".*\[64, 48\].*\[64, 32\]"):
        load_transformer(tiny_models / WAN_DIR / "transformer", CONFIG, adapter=tmp_path / "wrong.safetensors")


def test_missing_adapter_and_missing_keys(tiny_models: Path, tmp_path: Path):
    from safetensors.torch import load_file, save_file

    with pytest.raises(EngineUnavailable, match="No InfiniteTalk audio adapter"):
        load_transformer(tiny_models / WAN_DIR / "transformer", CONFIG)
    adapter = load_file(str(tiny_models / ADAPTERS[1]))
    del adapter["blocks.0.norm_x.weight"]
    save_file(adapter, str(tmp_path / "partial.safetensors"))
    with pytest.raises(EngineUnavailable, match=r"1 weights missing.*blocks\.0\.norm_x\.weight.*adapter"):
        load_transformer(tiny_models / WAN_DIR / "transformer", CONFIG, adapter=tmp_path / "partial.safetensors")


def test_broken_models_dir_fails_the_job_cleanly(tiny_models: Path, native_media: Path, tmp_path: Path):
    from talkgen.service import TalkGen
    from talkgen.settings import Settings

    models = tmp_path / "models"
    shutil.copytree(tiny_models, models)
    (models / ADAPTERS[1]).write_bytes(b"not a safetensors file")
    service = TalkGen(Settings(engine="native", models_dir=models, allowed_path_roots=[native_media],
                               work_dir=tmp_path / "w"))
    with pytest.raises(EngineUnavailable, match=r"infinitetalk\.safetensors") as info:
        service.generate({"image_path": str(native_media / "face.png"), "wav_path": str(native_media / "short.wav"),
                          "width": 128, "height": 128}, output=str(tmp_path / "o.mp4"))
    assert not info.value.retryable
    assert not (tmp_path / "o.mp4").exists()
