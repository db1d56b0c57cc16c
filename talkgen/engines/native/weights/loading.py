"""Build the InfiniteTalk DiT from weights: `load_transformer` (config from files, sizes from tensors)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from talkgen.engines.native.model.fp8 import convert_linears, fp8_layers, settle
from talkgen.engines.native.model.transformer import InfiniteTalkTransformer3DModel
from talkgen.engines.native.weights.fp8_scales import take_scales
from talkgen.engines.native.weights.lora import LoraSource, LoraTensors, merge_lora
from talkgen.engines.native.weights.tensors import cast_for, check_against, read_weights, unusable

ORIGINAL_CONFIG_KEYS = {"dim", "num_heads", "in_dim"}
"""Keys that mark a config.json in Wan's original naming."""
DEFAULT_HEAD_DIM = 128


def read_config(path: Path | None) -> dict[str, Any]:
    """A config.json next to the weights (diffusers or original Wan naming), or {} when there is none."""
    if path is None:
        return {}
    candidates = [path / "config.json"] if path.is_dir() else [path.with_name("config.json")]
    for candidate in candidates:
        if candidate.is_file():
            return json.loads(candidate.read_text())
    return {}


def transformer_config(config: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Model kwargs: sizes read from the tensors, head count and eps from ``config`` (either naming)."""
    cfg = dict(config)
    if ORIGINAL_CONFIG_KEYS & cfg.keys():
        heads = cfg.get("num_heads")
        eps = cfg.get("eps", 1e-6)
    else:
        heads = cfg.get("num_attention_heads")
        eps = cfg.get("eps", 1e-6)
    patch = tensors["patch_embedding.weight"]
    inner, in_channels = patch.shape[0], patch.shape[1]
    if not heads:
        if inner % DEFAULT_HEAD_DIM:
            raise unusable(
                f"No head count for a DiT of width {inner}: put Wan's config.json (num_heads) or diffusers' "
                "(num_attention_heads) next to the weights."
            )
        heads = inner // DEFAULT_HEAD_DIM
    layers = 1 + max(int(k.split(".")[1]) for k in tensors if k.startswith("blocks."))
    patch_size = tuple(patch.shape[2:])
    out = {
        "patch_size": patch_size,
        "num_attention_heads": heads,
        "attention_head_dim": inner // heads,
        "in_channels": in_channels,
        "out_channels": tensors["proj_out.weight"].shape[0] // int(torch.tensor(patch_size).prod()),
        "text_dim": tensors["condition_embedder.text_embedder.linear_1.weight"].shape[1],
        "freq_dim": tensors["condition_embedder.time_embedder.linear_1.weight"].shape[1],
        "ffn_dim": tensors["blocks.0.ffn.net.0.proj.weight"].shape[0],
        "num_layers": layers,
        "eps": eps,
        "image_dim": None,
        "added_kv_proj_dim": None,
    }
    if "condition_embedder.image_embedder.norm1.weight" in tensors:
        out["image_dim"] = tensors["condition_embedder.image_embedder.norm1.weight"].shape[0]
        out["added_kv_proj_dim"] = tensors["blocks.0.attn2.add_k_proj.weight"].shape[1]
    if "audio_proj.proj1.weight" in tensors:
        out.update(audio_config(tensors, cfg))
    return out


def audio_config(tensors: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, Any]:
    """Audio-adapter sizes from its tensors (upstream hard-codes 12 x 768; tiny weights use less)."""
    window = int(config.get("audio_window", 5))
    proj1 = tensors["audio_proj.proj1.weight"]
    output_dim = tensors["audio_proj.proj3.weight"].shape[0] // int(config.get("audio_context_tokens", 0) or 1)
    norm = tensors.get("audio_proj.norm.weight")
    if norm is not None:
        output_dim = norm.shape[0]
    tokens = tensors["audio_proj.proj3.weight"].shape[0] // output_dim
    layers = int(config.get("audio_layers", 12 if proj1.shape[1] == window * 12 * 768 else 0))
    if not layers:
        raise unusable("Cannot tell the audio encoder's layer count from the adapter: pass audio_layers.")
    return {
        "audio_layers": layers,
        "audio_channels": proj1.shape[1] // (window * layers),
        "audio_window": window,
        "audio_intermediate_dim": proj1.shape[0],
        "audio_output_dim": output_dim,
        "audio_context_tokens": tokens,
        "norm_output_audio": norm is not None,
    }


def build_empty(kwargs: Mapping[str, Any]) -> InfiniteTalkTransformer3DModel:
    """The model with parameters on the meta device (no memory, no init time); buffers real."""
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

    with torch.device("meta"):
        model = InfiniteTalkTransformer3DModel(**kwargs)
    cfg = model.config
    model.rope = WanRotaryPosEmbed(cfg.attention_head_dim, cfg.patch_size, cfg.rope_max_seq_len)
    return model


def load_transformer(
    path_or_state_dict: str | Path | Mapping[str, torch.Tensor],
    config: Mapping[str, Any] | None = None,
    *,
    adapter: str | Path | Mapping[str, torch.Tensor] | None = None,
    loras: Sequence[tuple[LoraSource | LoraTensors, float]] = (),
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    quant: str = "none",
) -> InfiniteTalkTransformer3DModel:
    """Load the InfiniteTalk DiT from original-Wan or diffusers weights (+ adapter, + fused LoRAs).

    ``config`` (a Wan or diffusers transformer config) is laid over the config.json next to the weights;
    only the head count, eps and ``audio_layers`` are needed, sizes are read from the tensors. Every key
    must be present with the right shape, or `EngineUnavailable` names the file and key.

    fp8 weights (plain or ``_scaled``) keep resting in fp8 in the block Linears (`fp8.Fp8Linear`) and are
    computed at ``dtype``; ``quant="fp8"`` quantises the other block Linears too (per-tensor scales).
    LoRAs are merged into the dequantised weight, which is then quantised again.
    """
    source = path_or_state_dict if isinstance(path_or_state_dict, Mapping) else Path(path_or_state_dict)
    tensors, origin = read_weights(source)
    sources = [str(source) if not isinstance(source, Mapping) else "<state dict>"]
    if adapter is not None:
        adapter_source = adapter if isinstance(adapter, Mapping) else Path(adapter)
        extra, extra_origin = read_weights(adapter_source)
        tensors.update(extra)
        origin.update(extra_origin)
        sources.append("<adapter state dict>" if isinstance(adapter, Mapping) else str(adapter))
    config = {**read_config(None if isinstance(source, Mapping) else source), **(config or {})}
    if "patch_embedding.weight" not in tensors:
        raise unusable(f"{sources[0]} has no `patch_embedding.weight`: it is not a Wan DiT checkpoint.")
    if "audio_proj.proj1.weight" not in tensors:
        raise unusable(
            f"No InfiniteTalk audio adapter in {', '.join(sources)} (no `audio_proj.proj1.weight`): pass the "
            "adapter file (InfiniteTalk/single/infinitetalk.safetensors)."
        )
    scales = take_scales(tensors, origin)
    model = build_empty(transformer_config(config, tensors))
    check_against(model, tensors, origin, sources)
    layers = fp8_layers(model, tensors, quant)
    for lora, strength in loras:
        if strength:
            merge_lora(tensors, lora, strength, scales)
    settle(tensors, scales, layers)
    convert_linears(model, layers)
    model.load_state_dict(cast_for(model, tensors, dtype), strict=True, assign=True)
    return model.to(device).eval().requires_grad_(False)
