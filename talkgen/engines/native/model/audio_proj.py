"""InfiniteTalk's audio projection: per-frame wav2vec2 windows → 32 context tokens per latent frame."""

from __future__ import annotations

import torch
from torch import nn

AUDIO_WINDOW = 5
"""Audio frames around each video frame (f-2 … f+2)."""
VAE_SCALE = 4
"""Video frames per latent frame (after the first)."""


def gather_windows(features: torch.Tensor, indices: list[int], window: int = AUDIO_WINDOW) -> torch.Tensor:
    """``[N, layers, C]`` features → ``[len(indices), window, layers, C]``: each frame's clamped neighbourhood."""
    half = window // 2
    idx = torch.tensor(indices, dtype=torch.long)
    offsets = torch.arange(-half, half + 1)
    positions = (idx[:, None] + offsets[None, :]).clamp(0, features.shape[0] - 1)
    return features[positions]


def pack_latent_windows(frames: torch.Tensor, window: int = AUDIO_WINDOW,
                        vae_scale: int = VAE_SCALE) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, F, window, L, C]`` per-frame windows → first frame ``[B, 1, window, L, C]`` and the rest
    packed per latent frame ``[B, (F-1)/vae_scale, window + vae_scale - 1, L, C]``.

    In each group of ``vae_scale`` frames the first frame gives the window's first half (centre
    included), the middle frames their centre, the last frame the second half.
    """
    first = frames[:, :1]
    rest = frames[:, 1:]
    b, n, w, layers, c = rest.shape
    groups = rest.reshape(b, n // vae_scale, vae_scale, w, layers, c)
    mid = window // 2
    head = groups[:, :, 0, : mid + 1]
    middle = groups[:, :, 1:-1, mid]
    tail = groups[:, :, -1, mid:]
    return first, torch.cat([head, middle, tail], dim=2)


class AudioProjModel(nn.Module):
    """Projects packed audio windows to ``context_tokens`` tokens of width ``output_dim`` per latent frame.

    Parameter names match the InfiniteTalk adapter files (``audio_proj.proj1`` …).
    """

    def __init__(self, seq_len: int = 5, seq_len_vf: int = 8, blocks: int = 12, channels: int = 768,
                 intermediate_dim: int = 512, output_dim: int = 768, context_tokens: int = 32,
                 norm_output_audio: bool = True) -> None:
        super().__init__()
        self.context_tokens = context_tokens
        self.output_dim = output_dim
        self.proj1 = nn.Linear(seq_len * blocks * channels, intermediate_dim)
        self.proj1_vf = nn.Linear(seq_len_vf * blocks * channels, intermediate_dim)
        self.proj2 = nn.Linear(intermediate_dim, intermediate_dim)
        self.proj3 = nn.Linear(intermediate_dim, context_tokens * output_dim)
        self.norm = nn.LayerNorm(output_dim) if norm_output_audio else nn.Identity()

    def forward(self, first: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
        """``[B, 1, 5, L, C]`` and ``[B, T-1, 8, L, C]`` → ``[B, T, context_tokens, output_dim]``."""
        b = first.shape[0]
        first_tokens = torch.relu(self.proj1(first.flatten(2)))
        rest_tokens = torch.relu(self.proj1_vf(rest.flatten(2)))
        hidden = torch.cat([first_tokens, rest_tokens], dim=1)
        hidden = torch.relu(self.proj2(hidden))
        tokens = self.proj3(hidden).reshape(b, hidden.shape[1], self.context_tokens, self.output_dim)
        return self.norm(tokens)
