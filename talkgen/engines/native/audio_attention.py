"""Audio cross-attention: each latent frame's video tokens attend to that frame's audio tokens only."""

from __future__ import annotations

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn
from torch import nn

from talkgen.engines.native.speakers import audio_token_positions, rope_1d


class AudioCrossAttention(nn.Module):
    """InfiniteTalk's ``audio_cross_attn`` (parameter names as in the adapter files: q_linear, kv_linear, proj)."""

    def __init__(self, dim: int, audio_dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_linear = nn.Linear(dim, dim)
        self.kv_linear = nn.Linear(audio_dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self._attention_backend: str | None = None

    def forward(self, x: torch.Tensor, audio: torch.Tensor, frames: int,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``[B, frames * S, dim]``; ``audio``: ``[frames, A, audio_dim]`` (shared by the batch).

        ``positions`` (``[frames * S]`` label-RoPE positions) switches on two-speaker routing.
        """
        batch, length, dim = x.shape
        per_frame = length // frames
        q = self.q_linear(x).reshape(batch * frames, per_frame, self.heads, dim // self.heads)
        kv = self.kv_linear(audio).unflatten(-1, (2, self.heads, dim // self.heads))
        k, v = kv[:, :, 0], kv[:, :, 1]  # frames, A, heads, D
        if positions is not None:
            q = rope_1d(q.reshape(batch, length, self.heads, -1), positions).reshape(q.shape)
            k = rope_1d(k, audio_token_positions(k.shape[1], k.device))
        if batch > 1:
            k, v = k.repeat(batch, 1, 1, 1), v.repeat(batch, 1, 1, 1)
        out = dispatch_attention_fn(q, k.to(q.dtype), v.to(q.dtype), backend=self._attention_backend)
        return self.proj(out.reshape(batch, length, dim).type_as(x))
