"""InfiniteTalk's sampler: flow-matching Euler on shifted timesteps, with text and audio guidance."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

NUM_TIMESTEPS = 1000


def timesteps(steps: int, shift: float) -> list[float]:
    """``linspace(1000, 1, steps)`` + ``[0]``, shifted: ``t' = s·t / (1 + (s-1)·t)`` on ``t/1000``."""
    out = []
    for t in [*torch.linspace(NUM_TIMESTEPS, 1, steps, dtype=torch.float32).tolist(), 0.0]:
        u = t / NUM_TIMESTEPS
        out.append(shift * u / (1 + (shift - 1) * u) * NUM_TIMESTEPS)
    return out


def passes(text_scale: float, audio_scale: float) -> tuple[str, ...]:
    """Model passes per step: three with text guidance, two when the text scale is 1, one when both are 1
    (the guided velocity is then the conditional one: the other passes would be multiplied by zero)."""
    if not math.isclose(text_scale, 1.0):
        return ("cond", "drop_text", "uncond")
    return ("cond",) if math.isclose(audio_scale, 1.0) else ("cond", "drop_audio")


def guided(preds: dict[str, torch.Tensor], text_scale: float, audio_scale: float) -> torch.Tensor:
    """Combine the passes' velocity predictions as InfiniteTalk does."""
    if len(preds) == 1:
        return preds["cond"]
    if "drop_audio" in preds:  # = drop + a·(cond - drop), written so that a = 1 gives cond exactly
        return preds["cond"] + (audio_scale - 1.0) * (preds["cond"] - preds["drop_audio"])
    uncond, drop_text = preds["uncond"], preds["drop_text"]
    return uncond + text_scale * (preds["cond"] - drop_text) + audio_scale * (drop_text - uncond)


def euler_step(latent: torch.Tensor, velocity: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """``latent - v · (t - t_next) / 1000``."""
    return latent - velocity * ((t - t_next) / NUM_TIMESTEPS)


def sample(latent: torch.Tensor, ts: list[float], predict: Callable[[str, float, torch.Tensor], torch.Tensor],
           text_scale: float, audio_scale: float, pin: Callable[[torch.Tensor], torch.Tensor],
           on_step: Callable[[int], None] | None = None) -> torch.Tensor:
    """Run the loop. ``predict(pass_name, t, latent)`` evaluates one model pass; ``pin`` re-imposes the
    motion latents before the first step and after every update."""
    latent = pin(latent)
    names = passes(text_scale, audio_scale)
    for i in range(len(ts) - 1):
        preds = {name: predict(name, ts[i], latent) for name in names}
        latent = pin(euler_step(latent, guided(preds, text_scale, audio_scale), ts[i], ts[i + 1]))
        if on_step is not None:
            on_step(i)
    return latent
