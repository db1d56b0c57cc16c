"""The tiny preset's step-distill LoRA stand-in: random rank-4 factors in the lightx2v file layout.

Same key forms as the real ``lightx2v_I2V_14B_480p_cfg_step_distill_rank64_bf16.safetensors``: a
``diffusion_model.`` prefix, original Wan names, ``lora_down``/``lora_up`` pairs (with ``alpha``, which
upstream ignores) for every Linear and the patch-embedding conv, ``diff_b`` for biases and ``diff`` for
norm weights. So the real LoRA code (read, fuse, switch per job) runs on it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from talkgen.engines.native.weights.keys import to_original

RANK = 4
PREFIX = "diffusion_model."


def tiny_lora(base: dict[str, torch.Tensor], rank: int = RANK, std: float = 0.1) -> dict[str, torch.Tensor]:
    """LoRA tensors for a base DiT state dict (diffusers names), drawn from the global torch RNG."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sorted(base.items()):
        name = PREFIX + to_original(key)
        stem = name.removesuffix(".weight").removesuffix(".bias")
        if key.endswith(".bias"):
            out[stem + ".diff_b"] = std * 0.1 * torch.randn_like(value)
        elif key.endswith(".weight") and value.ndim == 1:
            out[stem + ".diff"] = std * 0.1 * torch.randn_like(value)
        elif key.endswith(".weight") and value.ndim >= 2:
            out[stem + ".lora_down.weight"] = std * torch.randn(rank, *value.shape[1:])
            out[stem + ".lora_up.weight"] = std * torch.randn(value.shape[0], rank, *([1] * (value.ndim - 2)))
            out[stem + ".alpha"] = torch.tensor(float(rank))
    return {k: v.to(torch.bfloat16) if v.ndim else v for k, v in out.items()}


def write_tiny_lora(path: Path, base: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tiny_lora(base), str(path))
    return path
