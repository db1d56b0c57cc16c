"""The models the native engine runs, as one injectable bundle, and how they are read from the models dir.

`Models` holds built modules (from files, or made any other way: the GPU benchmark builds the real 14B
configuration with random weights). `footprint_from_files` sizes them from the safetensors headers before
anything is loaded, so the offload plan can decide where each model is loaded to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from talkgen.engines.native.devices.memory import Footprint, Size, dit_bytes, weight_bytes, weight_sizes
from talkgen.engines.native.devices.options import NativeOptions
from talkgen.engines.native.model.lora import AttachedLora
from talkgen.engines.native.weights.keys import strip_prefix
from talkgen.engines.native.weights.layout import PRESETS, ModelFiles
from talkgen.engines.native.weights.loading import load_transformer, read_config
from talkgen.engines.native.weights.lora import read_lora
from talkgen.errors import EngineUnavailable


@dataclass
class Models:
    """Tokenizer, encoders, VAE and the DiT with the single-speaker adapter, plus where the adapters are."""

    tokenizer: Any
    text_encoder: torch.nn.Module
    image_encoder: torch.nn.Module
    clip_mean: torch.Tensor  # [3, 1, 1]
    clip_std: torch.Tensor
    vae: torch.nn.Module
    wav2vec: torch.nn.Module
    feature_extractor: Any
    transformer: torch.nn.Module
    adapters: dict[int, Path]
    lora: AttachedLora | None = None  # the presets' LoRA, switched per job (see model/lora.py)

    def footprint(self) -> Footprint:
        return Footprint.of_modules(self.transformer, self.text_encoder, self.image_encoder, self.wav2vec, self.vae)


def footprint_from_files(files: ModelFiles, dtype: torch.dtype, quant: str = "none",
                         vae_dtype: torch.dtype = torch.float32, lora_resident: bool = False) -> Footprint:
    """Bytes each model will take, from the file headers (the DiT and encoders at ``dtype``, the DiT's
    fp8 block weights at 1 byte, the presets' LoRA factors at ``dtype`` when they stay on the device (an
    unfused LoRA), the VAE at ``vae_dtype``; wav2vec2 runs in fp32)."""
    dit = {strip_prefix(k): v for k, v in {**weight_sizes(files.transformer), **weight_sizes(files.adapter(1))}.items()}
    lora = preset_lora_file(files)
    factors = lora_factors(weight_sizes(lora)) if lora is not None and lora_resident else {}
    lora_block = {k: v for k, v in factors.items() if k.startswith("blocks.0.")}
    block = {k: v for k, v in dit.items() if k.startswith("blocks.0.")}
    blocks = 1 + max((int(k.split(".")[1]) for k in dit if k.startswith("blocks.")), default=0)
    config = read_config(files.transformer)
    width = config.get("dim") or (config.get("num_attention_heads", 40) * config.get("attention_head_dim", 128))
    return Footprint(dit=dit_bytes(dit, dtype, quant) + weight_bytes(factors, dtype),
                     dit_block=dit_bytes(block, dtype, quant) + weight_bytes(lora_block, dtype),
                     blocks=blocks,
                     text=weight_bytes(weight_sizes(files.wan / "text_encoder"), dtype),
                     image=weight_bytes(weight_sizes(files.wan / "image_encoder"), dtype),
                     audio=weight_bytes(weight_sizes(files.wav2vec), torch.float32),
                     vae=weight_bytes(weight_sizes(files.wan / "vae"), vae_dtype), width=int(width))


def load_models(files: ModelFiles, options: NativeOptions, homes: dict[str, torch.device]) -> Models:
    """Read every model from ``files``; each goes straight to ``homes[name]`` (text, image, audio, vae, dit)."""
    from diffusers import AutoencoderKLWan
    from transformers import (
        AutoConfig,
        AutoTokenizer,
        CLIPVisionModel,
        UMT5EncoderModel,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
    )

    wan, dtype = files.wan, options.dtype
    lora_path = preset_lora_file(files)
    lora = read_lora(lora_path) if lora_path is not None else None
    strength = files.model_set.preset(options.preset).lora_strength
    fuse = fuses_lora(files, options)
    processor = json.loads((wan / "image_processor" / "preprocessor_config.json").read_text())
    dit_config = dict(read_config(files.transformer))
    dit_config.setdefault("audio_layers", AutoConfig.from_pretrained(files.wav2vec).num_hidden_layers)
    transformer = load_transformer(files.transformer, dit_config, adapter=files.adapter(1),
                                   loras=[*options.loras, *([(lora, strength)] if fuse else [])], dtype=dtype,
                                   device=homes["dit"], quant=options.quant)
    return Models(
        tokenizer=AutoTokenizer.from_pretrained(wan / "tokenizer"),
        text_encoder=UMT5EncoderModel.from_pretrained(wan / "text_encoder", dtype=dtype).to(homes["text"]).eval(),
        image_encoder=CLIPVisionModel.from_pretrained(wan / "image_encoder", dtype=dtype).to(homes["image"]).eval(),
        clip_mean=torch.tensor(processor["image_mean"]).view(3, 1, 1),
        clip_std=torch.tensor(processor["image_std"]).view(3, 1, 1),
        vae=AutoencoderKLWan.from_pretrained(wan / "vae", torch_dtype=options.vae_dtype).to(homes["vae"]).eval(),
        wav2vec=Wav2Vec2Model.from_pretrained(files.wav2vec, attn_implementation="sdpa").to(homes["audio"]).eval(),
        feature_extractor=Wav2Vec2FeatureExtractor.from_pretrained(files.wav2vec),
        transformer=transformer,
        adapters=dict(files.adapters),
        lora=None if lora is None else AttachedLora(transformer, lora, strength if fuse else 0.0, dtype, lora_path),
    )


def lora_factors(sizes: dict[str, Size]) -> dict[str, Size]:
    """The LoRA tensors that stay on the model's device (keys without prefix): the 2-D factor pairs, which
    `AttachedLora` keeps beside their Linears; dense deltas stay on the CPU."""
    factor = (".lora_down.weight", ".lora_up.weight", ".lora_A.weight", ".lora_B.weight")
    return {strip_prefix(k): v for k, v in sizes.items() if k.endswith(factor) and v.ndim == 2}


def footprint_for(files: ModelFiles, options: NativeOptions) -> Footprint:
    """`footprint_from_files` as the engine will load ``files`` under ``options``."""
    return footprint_from_files(files, options.dtype, options.quant, options.vae_dtype,
                                lora_resident=not fuses_lora(files, options))


def fuses_lora(files: ModelFiles, options: NativeOptions) -> bool:
    """Whether the presets' LoRA is fused at load: it exists, fusing is on and the default preset uses it."""
    lora = preset_lora_file(files)
    return lora is not None and options.fuse_lora and files.preset_lora(options.preset) == lora


def preset_lora_file(files: ModelFiles) -> Path | None:
    """The one LoRA file the presets use, when it is there (a missing one is reported per preset)."""
    paths = {p for p in (files.preset_lora(name) for name in PRESETS) if p is not None}
    if len(paths) > 1:
        raise EngineUnavailable(f"The presets of {files.root} name {len(paths)} LoRA files; talkgen switches one "
                                "per job: give every preset the same LoRA (or none).", retryable=False)
    path = next(iter(paths), None)
    return path if path is not None and path.is_file() else None
