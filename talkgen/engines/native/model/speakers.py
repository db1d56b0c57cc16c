"""Two-speaker routing: which audio each video token listens to (InfiniteTalk's label RoPE).

Every token's self-attention to the first latent frame is averaged inside each speaker's mask (and
the background); the winning class and its score give the token a 1-D RoPE position: speaker 1 in
[0, 4], speaker 2 in [20, 24], background 12. Speaker 1's audio tokens sit at 2, speaker 2's at 22,
so a token attends mostly to the speaker whose face it belongs to.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SPEAKER_RANGES = ((0.0, 4.0), (20.0, 24.0))
BACKGROUND_POSITION = 12.0
ROPE_BASE = 10000.0
MAP_CHUNK_TOKENS = 8192
"""Query tokens per SDPA call of the attention map (bounds its ``[heads, chunk, D]`` output)."""


def speaker_masks(boxes: list[list[float]], src_w: int, src_h: int, out_w: int, out_h: int) -> torch.Tensor:
    """``[3, out_h, out_w]`` masks (speaker 1, speaker 2, background) for boxes given in source pixels.

    The boxes go through the same cover-and-centre-crop as the frames (`talkgen.media.frames.fit_frame`).
    """
    scale = max(out_w / src_w, out_h / src_h)
    left = (max(out_w, round(src_w * scale)) - out_w) // 2
    top = (max(out_h, round(src_h * scale)) - out_h) // 2
    masks = torch.zeros(3, out_h, out_w)
    for i, (x0, y0, x1, y1) in enumerate(boxes[:2]):
        c0, c1 = (max(0, min(out_w, round(x * scale - left))) for x in (x0, x1))
        r0, r1 = (max(0, min(out_h, round(y * scale - top))) for y in (y0, y1))
        masks[i, r0:r1, c0:c1] = 1.0
    masks[2] = (masks[:2].sum(0) == 0).float()
    return masks


def token_masks(masks: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
    """``[3, H, W]`` masks → ``[3, grid_h * grid_w]`` 0/1 masks on the token grid (nearest)."""
    resized = F.interpolate(masks[None].float(), size=(grid_h, grid_w), mode="nearest")[0]
    return (resized > 0).flatten(1).float()


def mask_values(masks: torch.Tensor, heads: int, width: int, dtype: torch.dtype) -> torch.Tensor:
    """``[classes, S]`` 0/1 masks → ``[1, heads, S, width]`` attention values: column c is mask c, the rest 0.

    With ``width`` = the head dim every SDPA kernel (flash included) takes them; built once per pass.
    """
    values = torch.zeros(1, heads, masks.shape[1], width, dtype=dtype, device=masks.device)
    values[..., : masks.shape[0]] = masks.T.to(dtype)
    return values


def reference_attention_map(query: torch.Tensor, key: torch.Tensor, masks: torch.Tensor,
                            values: torch.Tensor | None = None) -> torch.Tensor:
    """Mean attention of every token to each masked region of the first latent frame.

    ``query``/``key``: ``[1, L, heads, D]`` after RoPE; ``masks``: ``[classes, S]`` on the first frame's
    ``S`` tokens; ``values``: `mask_values` of them (built here when not given). Returns ``[classes, L]``
    in fp32: softmax over the first frame's tokens, summed inside each mask, averaged over heads, divided
    by the mask's size.

    The sum of a softmax row over a mask is an attention output with the mask as the value, so one SDPA
    call computes it in the inputs' dtype without materialising the ``[heads, L, S]`` probabilities.
    """
    classes, frame_tokens = masks.shape
    heads, dim = query.shape[2], query.shape[3]
    if values is None:
        values = mask_values(masks, heads, dim, query.dtype)
    q = query[:1].transpose(1, 2)  # 1, heads, L, D
    k = key[:1, :frame_tokens].transpose(1, 2).to(q.dtype)  # 1, heads, S, D
    sizes = masks.float().sum(dim=1).clamp_min(1.0)
    out = torch.empty(classes, q.shape[2], dtype=torch.float32, device=q.device)
    for start in range(0, q.shape[2], MAP_CHUNK_TOKENS):
        mass = F.scaled_dot_product_attention(q[:, :, start:start + MAP_CHUNK_TOKENS], k, values.to(q.dtype),
                                              scale=dim ** -0.5)  # 1, heads, chunk, width
        out[:, start:start + MAP_CHUNK_TOKENS] = (mass[0, :, :, :classes].float().mean(dim=0) / sizes).T
    return out


def _rescale(values: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, low: float, high: float,
             eps: float = 1e-8) -> torch.Tensor:
    return (values - lo) / (hi - lo + eps) * (high - low) + low


def token_positions(ref_map: torch.Tensor, bounds: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """``[3, L]`` reference map → ``[L]`` label-RoPE positions.

    Each speaker's scores are min-max scaled over all tokens: pass ``bounds`` (per-class min and max over
    the whole sequence) when ``ref_map`` holds only a slice of it.
    """
    lo, hi = bounds if bounds is not None else (ref_map.min(dim=1).values, ref_map.max(dim=1).values)
    candidates = torch.stack([
        _rescale(ref_map[0], lo[0], hi[0], *SPEAKER_RANGES[0]),
        _rescale(ref_map[1], lo[1], hi[1], *SPEAKER_RANGES[1]),
        torch.full_like(ref_map[0], BACKGROUND_POSITION),
    ], dim=1)
    winner = ref_map.argmax(dim=0)
    return candidates[torch.arange(ref_map.shape[1], device=ref_map.device), winner]


def audio_token_positions(tokens: int, device: torch.device | None = None) -> torch.Tensor:
    """Positions of the audio tokens: first half speaker 1 (centre of its range), second half speaker 2."""
    pos = torch.empty(tokens, device=device)
    pos[: tokens // 2] = sum(SPEAKER_RANGES[0]) / 2
    pos[tokens // 2:] = sum(SPEAKER_RANGES[1]) / 2
    return pos


def rope_1d(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """1-D rotary embedding, interleaved pairs, in fp32. ``x``: ``[..., N, heads, D]``; ``positions``: ``[N]``.

    Each pair is one complex number turned by its angle: one fp32 product, no ``[N, heads, D]`` temporaries
    beyond the fp32 copy of ``x`` and the result.
    """
    dim = x.shape[-1]
    inv_freq = 1.0 / (ROPE_BASE ** (torch.arange(0, dim, 2, device=x.device).float() / dim))
    angles = positions.float()[:, None] * inv_freq[None, :]  # N, D/2
    turn = torch.polar(torch.ones_like(angles), angles)[:, None, :]  # N, 1, D/2
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)).contiguous())
    return torch.view_as_real(pairs * turn).flatten(-2).type_as(x)
