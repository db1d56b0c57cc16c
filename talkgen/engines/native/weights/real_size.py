"""The real InfiniteTalk set (Wan2.1-I2V-14B, umT5-XXL, CLIP ViT-H/14, Wan VAE, wav2vec2-base) with random
weights, built in memory: the GPU benchmark runs the real engine path at the real sizes with no download.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from talkgen.engines.native.weights.lora import LoraTensors
from talkgen.engines.native.weights.models import Models

REAL_DIT = {"num_attention_heads": 40, "attention_head_dim": 128, "in_channels": 36, "out_channels": 16,
            "text_dim": 4096, "freq_dim": 256, "ffn_dim": 13824, "num_layers": 40, "image_dim": 1280,
            "added_kv_proj_dim": 5120}
REAL_AUDIO = {"audio_layers": 12, "audio_channels": 768, "audio_intermediate_dim": 512, "audio_output_dim": 768,
              "audio_context_tokens": 32}
UMT5_XXL = {"vocab_size": 256384, "d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 24, "num_heads": 64,
            "feed_forward_proj": "gated-gelu"}
CLIP_H14 = {"hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32, "num_attention_heads": 16,
            "patch_size": 14, "image_size": 224}
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def random_dit(dit: dict, audio: dict, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """The DiT with random weights, norms at 1, norms/modulation in fp32 as the loader keeps them."""
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

    from talkgen.engines.native.weights.loading import build_empty

    model = build_empty({**dit, **audio})
    model.to_empty(device=device)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and "norm" in name:
                p.fill_(1.0)
            else:
                p.normal_(0, 0.02)
    rope = model.rope
    model.rope = WanRotaryPosEmbed(rope.attention_head_dim, rope.patch_size, rope.max_seq_len).to(device)
    keep = set(model._keep_in_fp32_modules)
    for name, param in model.named_parameters():
        param.data = param.data.to(torch.float32 if keep & set(name.split(".")) else dtype)
    return model.eval().requires_grad_(False)


def meta_models() -> tuple[torch.nn.Module, ...]:
    """The real set's DiT, umT5, CLIP, wav2vec2 and VAE on the meta device (sizes only: nothing allocated)."""
    from diffusers import AutoencoderKLWan
    from transformers import (
        CLIPVisionConfig,
        CLIPVisionModel,
        UMT5Config,
        UMT5EncoderModel,
        Wav2Vec2Config,
        Wav2Vec2Model,
    )

    from talkgen.engines.native.model.transformer import InfiniteTalkTransformer3DModel

    with torch.device("meta"):
        text = UMT5EncoderModel(UMT5Config(**UMT5_XXL)).to(torch.bfloat16)
        image = CLIPVisionModel(CLIPVisionConfig(**CLIP_H14)).to(torch.bfloat16)
        audio = Wav2Vec2Model(Wav2Vec2Config())
        vae = AutoencoderKLWan()
        dit = InfiniteTalkTransformer3DModel(**REAL_DIT, **REAL_AUDIO).to(torch.bfloat16)
    return dit, text, image, audio, vae


def random_lora(model: torch.nn.Module, rank: int = 64, seed: int = 0) -> LoraTensors:
    """A random LoRA on every Linear of the DiT's blocks (as the lightx2v LoRAs cover them), factors in
    bf16 on the CPU, for benchmarks of the per-job LoRA branch."""
    g = torch.Generator().manual_seed(seed)
    pairs = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name.startswith("blocks.") and ".audio_cross_attn." not in name:
            down = torch.randn(rank, module.in_features, generator=g, dtype=torch.float32) * 0.01
            up = torch.randn(module.out_features, rank, generator=g, dtype=torch.float32) * 0.01
            pairs[f"{name}.weight"] = (down.to(torch.bfloat16), up.to(torch.bfloat16))
    return LoraTensors("random", pairs, {})


def random_models(device: torch.device, dtype: torch.dtype, adapters: dict[int, Path]) -> Models:
    """Every model at its real size with random weights, built on ``device`` (fast on a GPU).

    ``adapters``: adapter files for the speaker swap (the tiny preset's do not fit; pass real-size ones
    or leave the job single-speaker).
    """
    from diffusers import AutoencoderKLWan
    from transformers import (
        AutoTokenizer,
        CLIPVisionConfig,
        CLIPVisionModel,
        UMT5Config,
        UMT5EncoderModel,
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
    )

    from talkgen.engines.native.weights.tiny import write_tokenizer

    folder = Path(tempfile.mkdtemp(prefix="talkgen-tokenizer-"))
    write_tokenizer(folder)
    with torch.device(device):
        text = UMT5EncoderModel(UMT5Config(**UMT5_XXL)).to(dtype).eval()
        image = CLIPVisionModel(CLIPVisionConfig(**CLIP_H14)).to(dtype).eval()
        vae = AutoencoderKLWan().eval()
        wav2vec = Wav2Vec2Model(Wav2Vec2Config(attn_implementation="sdpa")).eval()
    return Models(
        tokenizer=AutoTokenizer.from_pretrained(folder), text_encoder=text, image_encoder=image,
        clip_mean=torch.tensor(CLIP_MEAN).view(3, 1, 1), clip_std=torch.tensor(CLIP_STD).view(3, 1, 1), vae=vae,
        wav2vec=wav2vec, feature_extractor=Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=False),
        transformer=random_dit(REAL_DIT, REAL_AUDIO, device, dtype), adapters=adapters,
    )
