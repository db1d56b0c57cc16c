"""Colour correction toward the first conditioning frame: Lab mean/std transfer, blended by strength.

Long videos drift in colour window after window; InfiniteTalk pulls every decoded frame's Lab statistics
back to the first reference frame's (never updated). sRGB (D65) ↔ CIE Lab in torch, as skimage does.
"""

from __future__ import annotations

import torch

_RGB_TO_XYZ = torch.tensor([[0.412453, 0.357580, 0.180423],
                            [0.212671, 0.715160, 0.072169],
                            [0.019334, 0.119193, 0.950227]])
_WHITE = torch.tensor([0.95047, 1.0, 1.08883])
_EPS = 1e-6


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """``[..., 3]`` sRGB in [0, 1] → Lab."""
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = linear @ _RGB_TO_XYZ.to(rgb).T / _WHITE.to(rgb)
    f = torch.where(xyz > 0.008856, xyz.clamp_min(0) ** (1 / 3), 7.787 * xyz + 16 / 116)
    return torch.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Lab → ``[..., 3]`` sRGB, clipped to [0, 1]."""
    fy = (lab[..., 0] + 16) / 116
    f = torch.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], -1)
    xyz = torch.where(f > 0.2068966, f**3, (f - 16 / 116) / 7.787) * _WHITE.to(lab)
    linear = (xyz @ torch.linalg.inv(_RGB_TO_XYZ).to(lab).T).clamp_min(0)
    rgb = torch.where(linear > 0.0031308, 1.055 * linear ** (1 / 2.4) - 0.055, 12.92 * linear)
    return rgb.clamp(0, 1)


def reference_stats(reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lab mean and std of a ``[3, H, W]`` frame in [-1, 1]."""
    lab = rgb_to_lab(((reference.float() + 1) / 2).clamp(0, 1).permute(1, 2, 0)).reshape(-1, 3)
    return lab.mean(0), lab.std(0, unbiased=False)


def match_colours(video: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor], strength: float) -> torch.Tensor:
    """``[3, T, H, W]`` video in [-1, 1] → the same with each frame's Lab stats moved to ``stats``."""
    if strength <= 0:
        return video
    rgb = ((video.float() + 1) / 2).clamp(0, 1).permute(1, 2, 3, 0)  # T, H, W, 3
    lab = rgb_to_lab(rgb)
    ref_mean, ref_std = (s.to(lab) for s in stats)  # the stats may come from the CPU (or a checkpoint)
    mean = lab.mean(dim=(1, 2), keepdim=True)
    std = lab.std(dim=(1, 2), keepdim=True, unbiased=False)
    corrected = lab_to_rgb((lab - mean) * (ref_std / std.clamp_min(_EPS)) + ref_mean)
    blended = (1 - strength) * rgb + strength * corrected
    return (blended * 2 - 1).permute(3, 0, 1, 2).to(video.dtype)
