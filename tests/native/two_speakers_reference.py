"""The two-speaker path as it was before the cheap routing (commit 3addb1e), kept as the reference.

A verbatim copy of talkgen's own `SpeakerMapProcessor`, `reference_attention_map`, `token_positions`,
`rope_1d`, the audio cross-attention's forward and the block's forward of that commit.
`reference_implementation(model)` runs a model with them in place (the tests and `bench/two_speakers.py`
compare against it); nothing here is used by the engine.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.transformers.transformer_wan import WanAttnProcessor

SPEAKER_RANGES = ((0.0, 4.0), (20.0, 24.0))
BACKGROUND_POSITION = 12.0
ROPE_BASE = 10000.0
MAP_CHUNK_TOKENS = 4096


def reference_attention_map(query: torch.Tensor, key: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    frame_tokens = masks.shape[1]
    scale = query.shape[-1] ** -0.5
    q = query[0].transpose(0, 1).float() * scale  # heads, L, D
    k = key[0, :frame_tokens].transpose(0, 1).float()  # heads, S, D
    weights = masks.float() / masks.float().sum(dim=1, keepdim=True).clamp_min(1.0)  # classes, S
    out = torch.empty(masks.shape[0], q.shape[1], dtype=torch.float32, device=q.device)
    for start in range(0, q.shape[1], MAP_CHUNK_TOKENS):
        probs = torch.softmax(q[:, start:start + MAP_CHUNK_TOKENS] @ k.transpose(1, 2), dim=-1)
        out[:, start:start + MAP_CHUNK_TOKENS] = (probs @ weights.T).mean(dim=0).T
    return out


def _rescale(values: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, low: float, high: float,
             eps: float = 1e-8) -> torch.Tensor:
    return (values - lo) / (hi - lo + eps) * (high - low) + low


def token_positions(ref_map: torch.Tensor, bounds: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    lo, hi = bounds if bounds is not None else (ref_map.min(dim=1).values, ref_map.max(dim=1).values)
    candidates = torch.stack([
        _rescale(ref_map[0], lo[0], hi[0], *SPEAKER_RANGES[0]),
        _rescale(ref_map[1], lo[1], hi[1], *SPEAKER_RANGES[1]),
        torch.full_like(ref_map[0], BACKGROUND_POSITION),
    ], dim=1)
    winner = ref_map.argmax(dim=0)
    return candidates[torch.arange(ref_map.shape[1], device=ref_map.device), winner]


def audio_token_positions(tokens: int, device: torch.device | None = None) -> torch.Tensor:
    pos = torch.empty(tokens, device=device)
    pos[: tokens // 2] = sum(SPEAKER_RANGES[0]) / 2
    pos[tokens // 2:] = sum(SPEAKER_RANGES[1]) / 2
    return pos


def rope_1d(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    dim = x.shape[-1]
    inv_freq = 1.0 / (ROPE_BASE ** (torch.arange(0, dim, 2, device=x.device).float() / dim))
    angles = positions.float()[:, None] * inv_freq[None, :]
    angles = angles.repeat_interleave(2, dim=-1)[:, None, :]  # N, 1, D
    cos, sin = angles.cos(), angles.sin()
    xf = x.float()
    pairs = xf.unflatten(-1, (-1, 2))
    rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    return (xf * cos + rotated * sin).type_as(x)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos[..., 0::2] - x2 * sin[..., 1::2]
    out[..., 1::2] = x1 * sin[..., 1::2] + x2 * cos[..., 0::2]
    return out.type_as(x)


class ReferenceSpeakerMapProcessor(WanAttnProcessor):
    """The old processor: projects q and k once for the map, then diffusers' processor projects them again."""

    def __init__(self) -> None:
        super().__init__()
        self.masks: torch.Tensor | None = None
        self.shard = None
        self.positions: torch.Tensor | None = None

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,  # type: ignore[no-untyped-def]
                 rotary_emb=None):
        if self.masks is None:
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        q = attn.norm_q(attn.to_q(hidden_states)).unflatten(2, (attn.heads, -1))
        k = attn.norm_k(attn.to_k(hidden_states)).unflatten(2, (attn.heads, -1))
        if rotary_emb is not None:
            q, k = _rotate(q, *rotary_emb), _rotate(k, *rotary_emb)
        with torch.no_grad():
            if self.shard is None:
                self.positions = token_positions(reference_attention_map(q, k, self.masks))
            else:
                first = self.shard.gather(k[:, : self.masks.shape[1]].contiguous())[:, : self.masks.shape[1]]
                ref_map = reference_attention_map(q, first, self.masks)
                lo = self.shard.reduce(ref_map.min(dim=1).values, dist.ReduceOp.MIN)
                hi = self.shard.reduce(ref_map.max(dim=1).values, dist.ReduceOp.MAX)
                self.positions = token_positions(ref_map, (lo, hi))
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)


def audio_cross_attention_forward(self, x: torch.Tensor, audio: torch.Tensor, per_frame: int,  # type: ignore[no-untyped-def]
                                  positions: torch.Tensor | None = None, offset: int = 0) -> torch.Tensor:
    batch, length, dim = x.shape
    q = self.q_linear(x).unflatten(-1, (self.heads, dim // self.heads))  # B, L, heads, D
    kv = self.kv_linear(audio).unflatten(-1, (2, self.heads, dim // self.heads))
    k, v = kv[:, :, 0].to(q.dtype), kv[:, :, 1].to(q.dtype)  # frames, A, heads, D
    if positions is not None:
        q = rope_1d(q, positions)
        k = rope_1d(k, audio_token_positions(k.shape[1], k.device))
    if offset == 0 and length % per_frame == 0:
        frames = length // per_frame
        out = _attend(self, q.reshape(batch * frames, per_frame, self.heads, -1), k[:frames], v[:frames], batch)
        return self.proj(out.reshape(batch, length, dim).type_as(x))
    pieces = []
    start = 0
    while start < length:
        frame = (offset + start) // per_frame
        end = min(length, (frame + 1) * per_frame - offset)
        pieces.append(_attend(self, q[:, start:end], k[frame:frame + 1], v[frame:frame + 1], batch))
        start = end
    return self.proj(torch.cat(pieces, dim=1).reshape(batch, length, dim).type_as(x))


def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: int) -> torch.Tensor:  # type: ignore[no-untyped-def]
    if batch > 1:
        k, v = k.repeat(batch, 1, 1, 1), v.repeat(batch, 1, 1, 1)
    return dispatch_attention_fn(q, k, v, backend=self._attention_backend)


def block_forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,  # type: ignore[no-untyped-def]
                  temb: torch.Tensor, rotary_emb: tuple[torch.Tensor, torch.Tensor], audio=None) -> torch.Tensor:
    shift, scale, gate, c_shift, c_scale, c_gate = (self.scale_shift_table + temb.float()).chunk(6, dim=1)
    processor = self.attn1.processor
    processor.masks = audio.masks if audio is not None else None
    processor.shard = audio.shard if audio is not None else None
    x = hidden_states
    attn = self.attn1((self.norm1(x.float()) * (1 + scale) + shift).type_as(x), None, None, rotary_emb)
    x = (x.float() + attn * gate).type_as(x)
    x = x + self.attn2(self.norm2(x.float()).type_as(x), encoder_hidden_states, None, None)
    if audio is not None:
        positions = processor.positions if audio.masks is not None else None
        offset = audio.shard.offset if audio.shard is not None else 0
        x = x + audio_cross_attention_forward(self.audio_cross_attn, self.norm_x(x.float()).type_as(x),
                                              audio.tokens, audio.per_frame, positions, offset)
    processor.masks = processor.positions = None
    ff = self.ffn((self.norm3(x.float()) * (1 + c_scale) + c_shift).type_as(x))
    return (x.float() + ff.float() * c_gate).type_as(x)


@contextmanager
def reference_implementation(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Run ``model``'s blocks with the old two-speaker code inside the block; restore them after.

    The model's `audio_context` (masks on the token grid, audio tokens) is the caller's; the blocks read
    ``tokens``, ``per_frame``, ``masks`` and ``shard`` from it as before.
    """
    saved = []
    for block in model.blocks:
        saved.append(block.attn1.processor)
        reference = ReferenceSpeakerMapProcessor()
        reference._attention_backend = saved[-1]._attention_backend
        reference._parallel_config = saved[-1]._parallel_config
        block.attn1.set_processor(reference)
        block.forward = types.MethodType(block_forward, block)
    try:
        yield model
    finally:
        for block, processor in zip(model.blocks, saved, strict=True):
            block.attn1.set_processor(processor)
            del block.forward
