"""Per-window inputs: conditioning latents, audio windows and the first-frame mask."""

from __future__ import annotations

import numpy as np
import torch

from talkgen.engines.native.model.audio_proj import AUDIO_WINDOW
from talkgen.plan import Window, audio_index


def frame_to_tensor(frame: np.ndarray) -> torch.Tensor:
    """``[H, W, 3]`` uint8 → ``[3, H, W]`` float in [-1, 1]."""
    return torch.from_numpy(np.array(frame, dtype=np.uint8)).permute(2, 0, 1).float() / 127.5 - 1.0


def video_to_uint8(video: torch.Tensor) -> np.ndarray:
    """``[3, T, H, W]`` in [-1, 1] → ``[T, H, W, 3]`` uint8."""
    return ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()


def first_frame_mask(latent_frames: int, height: int, width: int, vae_scale: int = 4) -> torch.Tensor:
    """``[vae_scale, latent_frames, h, w]``: ones where the frame is given (frame 0 only), as Wan I2V encodes it."""
    mask = torch.zeros(vae_scale, latent_frames, height, width)
    mask[:, 0] = 1.0
    return mask


def audio_positions(win: Window, window: int = AUDIO_WINDOW) -> np.ndarray:
    """``[size, window]`` audio-feature rows for each frame of ``win``: f-2 … f+2.

    Rows past the end of the audio are reflected in the last window (InfiniteTalk's rule) and clamped
    before it; rows before the start are clamped to 0.
    """
    half = window // 2
    frames = np.arange(win.start, win.end)[:, None] + np.arange(-half, half + 1)[None, :]
    if win.is_last:
        return np.vectorize(lambda f: audio_index(int(f), win.total))(frames)
    return np.clip(frames, 0, win.total - 1)


def audio_windows(features: list[np.ndarray], win: Window) -> torch.Tensor:
    """Per-speaker features ``[frames, layers, C]`` → ``[speakers, size, 5, layers, C]`` for ``win``."""
    rows = audio_positions(win)
    return torch.stack([torch.from_numpy(np.asarray(f[rows.reshape(-1)])).reshape(*rows.shape, *f.shape[1:])
                        for f in features])
