"""Audio cross-attention: each latent frame's video tokens attend to that frame's audio tokens only."""

from __future__ import annotations

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn
from torch import nn

from talkgen.engines.native.model.speakers import audio_token_positions, rope_1d


class AudioCrossAttention(nn.Module):
    """InfiniteTalk's ``audio_cross_attn`` (parameter names as in the adapter files: q_linear, kv_linear, proj)."""

    def __init__(self, dim: int, audio_dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_linear = nn.Linear(dim, dim)
        self.kv_linear = nn.Linear(audio_dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self._attention_backend: str | None = None

    def forward(self, x: torch.Tensor, audio: torch.Tensor, per_frame: int, positions: torch.Tensor | None = None,
                offset: int = 0) -> torch.Tensor:
        """``x``: ``[B, L, dim]`` tokens starting at global token ``offset`` (``per_frame`` tokens per latent
        frame); ``audio``: ``[frames, A, audio_dim]`` (shared by the batch).

        ``positions`` (``[L]`` label-RoPE positions) switches on two-speaker routing.
        """
        batch, length, dim = x.shape
        q = self.q_linear(x).unflatten(-1, (self.heads, dim // self.heads))  # B, L, heads, D
        kv = self.kv_linear(audio).unflatten(-1, (2, self.heads, dim // self.heads))
        k, v = kv[:, :, 0].to(q.dtype), kv[:, :, 1].to(q.dtype)  # frames, A, heads, D
        if positions is not None:
            q = rope_1d(q, positions)
            k = rope_1d(k, audio_token_positions(k.shape[1], k.device))
        if offset == 0 and length % per_frame == 0:
            frames = length // per_frame
            out = self._attend(q.reshape(batch * frames, per_frame, self.heads, -1), k[:frames], v[:frames], batch)
            return self.proj(out.reshape(batch, length, dim).type_as(x))
        # A context-parallel slice: its tokens can start and end inside a frame.
        pieces = []
        start = 0
        while start < length:
            frame = (offset + start) // per_frame
            end = min(length, (frame + 1) * per_frame - offset)
            pieces.append(self._attend(q[:, start:end], k[frame:frame + 1], v[frame:frame + 1], batch))
            start = end
        return self.proj(torch.cat(pieces, dim=1).reshape(batch, length, dim).type_as(x))

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: int) -> torch.Tensor:
        if batch > 1:
            k, v = k.repeat(batch, 1, 1, 1), v.repeat(batch, 1, 1, 1)
        return dispatch_attention_fn(q, k, v, backend=self._attention_backend)
