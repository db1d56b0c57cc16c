"""Original Wan key names ↔ diffusers names for the DiT (InfiniteTalk adapter keys are the same in both).

Original names are what Wan's own shards, Kijai/Comfy single files, InfiniteTalk adapters and the
lightx2v/FusionX LoRAs use; diffusers names are what `InfiniteTalkTransformer3DModel` holds.
"""

from __future__ import annotations

import re

ORIGINAL_PREFIXES = ("model.diffusion_model.", "diffusion_model.")

# (original regex, diffusers template); block-level rules use group 1 for the block index.
_RULES: list[tuple[str, str]] = [
    (r"^text_embedding\.0\.(.+)$", r"condition_embedder.text_embedder.linear_1.\1"),
    (r"^text_embedding\.2\.(.+)$", r"condition_embedder.text_embedder.linear_2.\1"),
    (r"^time_embedding\.0\.(.+)$", r"condition_embedder.time_embedder.linear_1.\1"),
    (r"^time_embedding\.2\.(.+)$", r"condition_embedder.time_embedder.linear_2.\1"),
    (r"^time_projection\.1\.(.+)$", r"condition_embedder.time_proj.\1"),
    (r"^img_emb\.proj\.0\.(.+)$", r"condition_embedder.image_embedder.norm1.\1"),
    (r"^img_emb\.proj\.1\.(.+)$", r"condition_embedder.image_embedder.ff.net.0.proj.\1"),
    (r"^img_emb\.proj\.3\.(.+)$", r"condition_embedder.image_embedder.ff.net.2.\1"),
    (r"^img_emb\.proj\.4\.(.+)$", r"condition_embedder.image_embedder.norm2.\1"),
    (r"^img_emb\.emb_pos$", r"condition_embedder.image_embedder.pos_embed"),
    (r"^head\.head\.(.+)$", r"proj_out.\1"),
    (r"^head\.modulation$", r"scale_shift_table"),
    (r"^blocks\.(\d+)\.self_attn\.q\.(.+)$", r"blocks.\1.attn1.to_q.\2"),
    (r"^blocks\.(\d+)\.self_attn\.k\.(.+)$", r"blocks.\1.attn1.to_k.\2"),
    (r"^blocks\.(\d+)\.self_attn\.v\.(.+)$", r"blocks.\1.attn1.to_v.\2"),
    (r"^blocks\.(\d+)\.self_attn\.o\.(.+)$", r"blocks.\1.attn1.to_out.0.\2"),
    (r"^blocks\.(\d+)\.self_attn\.norm_q\.(.+)$", r"blocks.\1.attn1.norm_q.\2"),
    (r"^blocks\.(\d+)\.self_attn\.norm_k\.(.+)$", r"blocks.\1.attn1.norm_k.\2"),
    (r"^blocks\.(\d+)\.cross_attn\.q\.(.+)$", r"blocks.\1.attn2.to_q.\2"),
    (r"^blocks\.(\d+)\.cross_attn\.k\.(.+)$", r"blocks.\1.attn2.to_k.\2"),
    (r"^blocks\.(\d+)\.cross_attn\.v\.(.+)$", r"blocks.\1.attn2.to_v.\2"),
    (r"^blocks\.(\d+)\.cross_attn\.o\.(.+)$", r"blocks.\1.attn2.to_out.0.\2"),
    (r"^blocks\.(\d+)\.cross_attn\.norm_q\.(.+)$", r"blocks.\1.attn2.norm_q.\2"),
    (r"^blocks\.(\d+)\.cross_attn\.norm_k\.(.+)$", r"blocks.\1.attn2.norm_k.\2"),
    (r"^blocks\.(\d+)\.cross_attn\.k_img\.(.+)$", r"blocks.\1.attn2.add_k_proj.\2"),
    (r"^blocks\.(\d+)\.cross_attn\.v_img\.(.+)$", r"blocks.\1.attn2.add_v_proj.\2"),
    (r"^blocks\.(\d+)\.cross_attn\.norm_k_img\.(.+)$", r"blocks.\1.attn2.norm_added_k.\2"),
    (r"^blocks\.(\d+)\.norm3\.(.+)$", r"blocks.\1.norm2.\2"),  # the cross-attention norm (norm2/norm3 swap)
    (r"^blocks\.(\d+)\.ffn\.0\.(.+)$", r"blocks.\1.ffn.net.0.proj.\2"),
    (r"^blocks\.(\d+)\.ffn\.2\.(.+)$", r"blocks.\1.ffn.net.2.\2"),
    (r"^blocks\.(\d+)\.modulation$", r"blocks.\1.scale_shift_table"),
]
_FORWARD = [(re.compile(a), b) for a, b in _RULES]


def _inverse(original: str, template: str) -> tuple[re.Pattern[str], str]:
    """Turn (original regex, diffusers template) into (diffusers regex, original template)."""
    groups = re.findall(r"\(\\d\+\)|\(\.\+\)", original)
    pattern = re.escape(template)
    for i, group in enumerate(groups, start=1):
        pattern = pattern.replace(re.escape(f"\\{i}"), group)
    counter = iter(range(1, len(groups) + 1))
    replacement = re.sub(r"\(\\d\+\)|\(\.\+\)", lambda _: f"\\{next(counter)}", original[1:-1])
    return re.compile(f"^{pattern}$"), replacement.replace("\\.", ".")


_BACKWARD = [_inverse(a, b) for a, b in _RULES]


def strip_prefix(key: str) -> str:
    for prefix in ORIGINAL_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def to_diffusers(key: str) -> str:
    """One original-Wan key (optionally ``model.diffusion_model.``-prefixed) → its diffusers name."""
    key = strip_prefix(key)
    for pattern, template in _FORWARD:
        if pattern.match(key):
            return pattern.sub(template, key)
    return key  # patch_embedding.*, audio_proj.*, blocks.N.norm_x.*, blocks.N.audio_cross_attn.*


def to_original(key: str) -> str:
    """One diffusers key → its original-Wan name (inverse of `to_diffusers`)."""
    for pattern, template in _BACKWARD:
        if pattern.match(key):
            return pattern.sub(template, key)
    return key


def looks_original(keys: list[str]) -> bool:
    """True when a state dict uses original Wan names (``self_attn``, ``head.head`` …)."""
    markers = ("head.", "time_embedding.", *ORIGINAL_PREFIXES)
    return any(".self_attn." in k or k.startswith(markers) for k in keys)
