"""The InfiniteTalk DiT: diffusers' Wan2.1 transformer plus audio projection and audio cross-attention.

Base parameters keep diffusers' names (so diffusers checkpoints, attention backends, offloading, context
parallelism and LoRA loading apply); the audio parts keep the names of the InfiniteTalk adapter files
(``audio_proj.*``, ``blocks.N.norm_x``, ``blocks.N.audio_cross_attn.*``) so those load unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.distributed as dist
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.normalization import FP32LayerNorm
from diffusers.models.transformers.transformer_wan import (
    WanAttnProcessor,
    WanTransformer3DModel,
    WanTransformerBlock,
    _get_qkv_projections,
)
from torch import nn

from talkgen.engines.native.model.audio_attention import AudioCrossAttention
from talkgen.engines.native.model.audio_proj import AudioProjModel, pack_latent_windows
from talkgen.engines.native.model.parallel import Shard, shard_of
from talkgen.engines.native.model.speakers import mask_values, reference_attention_map, token_masks, token_positions


@dataclass
class AudioContext:
    """What the blocks need for the audio step of one forward pass."""

    tokens: torch.Tensor  # [latent frames, speakers * context_tokens, audio_dim]
    per_frame: int  # video tokens per latent frame
    masks: torch.Tensor | None = None  # [3, tokens per latent frame] when two speakers are routed
    shard: Shard | None = None  # this rank's slice of the tokens under context parallelism
    map_values: torch.Tensor | None = None  # `mask_values` of ``masks``, shared by every block


class SpeakerMapProcessor(WanAttnProcessor):
    """Wan self-attention that can also report each token's attention to the speaker regions.

    Set ``masks`` (``[3, S]``, and optionally ``values``, their `mask_values`) before a forward to get
    ``positions`` (label-RoPE positions) after it; q and k are projected once for both the map and the
    attention. With ``masks`` unset it is diffusers' processor, unchanged.
    """

    def __init__(self) -> None:
        super().__init__()
        self.masks: torch.Tensor | None = None
        self.values: torch.Tensor | None = None
        self.shard: Shard | None = None
        self.positions: torch.Tensor | None = None

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,  # type: ignore[no-untyped-def]
                 rotary_emb=None):
        if self.masks is None:
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        if encoder_hidden_states is not None or attn.add_k_proj is not None:
            raise ValueError("speaker routing runs in the self-attention only")
        # diffusers' WanAttnProcessor for self-attention, with the map computed from the same q and k
        query, key, value = _get_qkv_projections(attn, hidden_states, None)
        query, key = attn.norm_q(query), attn.norm_k(key)
        query, key, value = (t.unflatten(2, (attn.heads, -1)) for t in (query, key, value))
        if rotary_emb is not None:
            query, key = _rotate(query, *rotary_emb), _rotate(key, *rotary_emb)
        with torch.no_grad():
            self.positions = self._positions(query, key)
        out = dispatch_attention_fn(query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False,
                                    backend=self._attention_backend, parallel_config=self._parallel_config)
        out = out.flatten(2, 3).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))

    def _positions(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        frame_tokens = self.masks.shape[1]
        if self.shard is None:
            return token_positions(reference_attention_map(query, key, self.masks, self.values))
        # keys of the first frame and the map's range span all ranks
        first = self.shard.gather(key[:, :frame_tokens].contiguous())[:, :frame_tokens]
        ref_map = reference_attention_map(query, first, self.masks, self.values)
        lo = self.shard.reduce(ref_map.min(dim=1).values, dist.ReduceOp.MIN)
        hi = self.shard.reduce(ref_map.max(dim=1).values, dist.ReduceOp.MAX)
        return token_positions(ref_map, (lo, hi))


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Wan's 3-axis RoPE on ``[B, L, heads, D]`` (interleaved pairs), as diffusers applies it."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos[..., 0::2] - x2 * sin[..., 1::2]
    out[..., 1::2] = x1 * sin[..., 1::2] + x2 * cos[..., 0::2]
    return out.type_as(x)


class InfiniteTalkBlock(WanTransformerBlock):
    """Wan block with InfiniteTalk's audio step between the text/image cross-attention and the FFN."""

    def __init__(self, dim: int, ffn_dim: int, num_heads: int, qk_norm: str | None, cross_attn_norm: bool,
                 eps: float, added_kv_proj_dim: int | None, audio_dim: int) -> None:
        super().__init__(dim, ffn_dim, num_heads, qk_norm, cross_attn_norm, eps, added_kv_proj_dim)
        self.attn1.set_processor(SpeakerMapProcessor())
        self.norm_x = FP32LayerNorm(dim, eps, elementwise_affine=True)
        self.audio_cross_attn = AudioCrossAttention(dim, audio_dim, num_heads)

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor, temb: torch.Tensor,
                rotary_emb: tuple[torch.Tensor, torch.Tensor], audio: AudioContext | None = None) -> torch.Tensor:
        shift, scale, gate, c_shift, c_scale, c_gate = (self.scale_shift_table + temb.float()).chunk(6, dim=1)
        processor: SpeakerMapProcessor = self.attn1.processor
        processor.masks = audio.masks if audio is not None else None
        processor.values = audio.map_values if audio is not None else None
        processor.shard = audio.shard if audio is not None else None
        x = hidden_states
        attn = self.attn1((self.norm1(x.float()) * (1 + scale) + shift).type_as(x), None, None, rotary_emb)
        x = (x.float() + attn * gate).type_as(x)
        x = x + self.attn2(self.norm2(x.float()).type_as(x), encoder_hidden_states, None, None)
        if audio is not None:
            positions = processor.positions if audio.masks is not None else None
            offset = audio.shard.offset if audio.shard is not None else 0
            x = x + self.audio_cross_attn(self.norm_x(x.float()).type_as(x), audio.tokens, audio.per_frame, positions,
                                          offset)
        processor.masks = processor.values = processor.positions = None
        ff = self.ffn((self.norm3(x.float()) * (1 + c_scale) + c_shift).type_as(x))
        return (x.float() + ff.float() * c_gate).type_as(x)


class InfiniteTalkTransformer3DModel(WanTransformer3DModel):
    """Wan2.1 I2V transformer + InfiniteTalk audio adapter."""

    _no_split_modules: ClassVar[list[str]] = ["InfiniteTalkBlock"]
    _repeated_blocks: ClassVar[list[str]] = ["InfiniteTalkBlock"]
    _keep_in_fp32_modules: ClassVar[list[str]] = [*WanTransformer3DModel._keep_in_fp32_modules, "norm_x"]

    @register_to_config
    def __init__(self, patch_size: tuple[int, ...] = (1, 2, 2), num_attention_heads: int = 40,
                 attention_head_dim: int = 128, in_channels: int = 36, out_channels: int = 16,
                 text_dim: int = 4096, freq_dim: int = 256, ffn_dim: int = 13824, num_layers: int = 40,
                 cross_attn_norm: bool = True, qk_norm: str | None = "rms_norm_across_heads", eps: float = 1e-6,
                 image_dim: int | None = 1280, added_kv_proj_dim: int | None = 5120, rope_max_seq_len: int = 1024,
                 pos_embed_seq_len: int | None = None, audio_layers: int = 12, audio_channels: int = 768,
                 audio_window: int = 5, vae_scale: int = 4, audio_intermediate_dim: int = 512,
                 audio_output_dim: int = 768, audio_context_tokens: int = 32, norm_output_audio: bool = True) -> None:
        super().__init__(patch_size, num_attention_heads, attention_head_dim, in_channels, out_channels, text_dim,
                         freq_dim, ffn_dim, 0, cross_attn_norm, qk_norm, eps, image_dim, added_kv_proj_dim,
                         rope_max_seq_len, pos_embed_seq_len)
        self.register_to_config(num_layers=num_layers)  # the base was built with no blocks; ours follow
        inner = num_attention_heads * attention_head_dim
        self.blocks = nn.ModuleList([
            InfiniteTalkBlock(inner, ffn_dim, num_attention_heads, qk_norm, cross_attn_norm, eps,
                              added_kv_proj_dim, audio_output_dim)
            for _ in range(num_layers)
        ])
        self.audio_proj = AudioProjModel(
            seq_len=audio_window, seq_len_vf=audio_window + vae_scale - 1, blocks=audio_layers,
            channels=audio_channels, intermediate_dim=audio_intermediate_dim, output_dim=audio_output_dim,
            context_tokens=audio_context_tokens, norm_output_audio=norm_output_audio,
        )

    def audio_context(self, audio: torch.Tensor, grid: tuple[int, int, int], masks: torch.Tensor | None,
                      dtype: torch.dtype | None = None) -> AudioContext:
        """Per-frame windows ``[speakers, F, 5, layers, C]`` → audio tokens for every latent frame.

        ``masks`` (``[3, H, W]``, any resolution) route two speakers; ignored for one. ``dtype``: the
        hidden states' (the reference map's values are built in it once for all blocks).
        """
        first, rest = pack_latent_windows(audio, self.config.audio_window, self.config.vae_scale)
        param = self.audio_proj.proj1.weight
        tokens = self.audio_proj(first.to(param), rest.to(param))  # speakers, T, K, C
        speakers = tokens.shape[0]
        tokens = tokens.permute(1, 0, 2, 3).reshape(tokens.shape[1], speakers * tokens.shape[2], -1)
        routed = token_masks(masks, *grid[1:]).to(tokens.device) if speakers == 2 and masks is not None else None
        per_frame = grid[1] * grid[2]
        values = None
        if routed is not None and dtype is not None:
            values = mask_values(routed, self.config.num_attention_heads, self.config.attention_head_dim, dtype)
        return AudioContext(tokens=tokens, per_frame=per_frame, masks=routed, shard=shard_of(self, grid[0] * per_frame),
                            map_values=values)

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                encoder_hidden_states_image: torch.Tensor | None = None, audio: torch.Tensor | None = None,
                speaker_masks: torch.Tensor | None = None, return_dict: bool = True,
                attention_kwargs: dict | None = None) -> torch.Tensor | Transformer2DModelOutput:
        """Wan I2V forward with audio: ``audio`` is ``[speakers, frames, 5, layers, C]`` per-frame windows."""
        batch, _, frames, height, width = hidden_states.shape
        p_t, p_h, p_w = self.config.patch_size
        grid = (frames // p_t, height // p_h, width // p_w)
        rotary_emb = self.rope(hidden_states)
        x = self.patch_embedding(hidden_states).flatten(2).transpose(1, 2).contiguous()
        temb, timestep_proj, context, context_image = self.condition_embedder(
            timestep, encoder_hidden_states, encoder_hidden_states_image
        )
        timestep_proj = timestep_proj.unflatten(1, (6, -1))
        if context_image is not None:
            context = torch.cat([context_image, context], dim=1)
        audio_ctx = None if audio is None else self.audio_context(audio, grid, speaker_masks, x.dtype)
        for block in self.blocks:
            x = block(x, context, timestep_proj, rotary_emb, audio_ctx)
        shift, scale = (self.scale_shift_table.to(temb.device) + temb.unsqueeze(1)).chunk(2, dim=1)
        x = (self.norm_out(x.float()) * (1 + scale.to(x.device)) + shift.to(x.device)).type_as(x)
        x = self.proj_out(x)
        x = x.reshape(batch, *grid, p_t, p_h, p_w, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        out = x.flatten(6, 7).flatten(4, 5).flatten(2, 3)
        return Transformer2DModelOutput(sample=out) if return_dict else (out,)
