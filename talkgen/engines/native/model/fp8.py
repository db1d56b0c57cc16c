"""fp8 weights: the DiT's block Linears rest in float8 (1 byte per parameter) and compute in the input's dtype.

Why a Linear subclass and not diffusers' ``enable_layerwise_casting`` or torchao: checkpoints such as
Kijai's ``*_fp8_e4m3fn_scaled_KJ`` files hold a per-tensor ``scale_weight`` next to each fp8 weight
(real weight = stored × scale); layerwise casting only changes dtypes, so it would silently drop the
scales, and it casts every leaf module (norms and embedders too). torchao's float8 tensors are
subclasses that neither load these files as they are nor go through diffusers' group offload and the
in-place adapter swap unchanged (and it is one more dependency). `Fp8Linear` is a plain ``nn.Linear``
whose weight is an fp8 parameter and whose ``scale_weight`` is an fp32 scalar parameter, so group
offload streams 1 byte per weight, ``state_dict`` round-trips the file convention, and
``torch.compile`` fuses the upcast into the matmul's producer.

Matmuls run in the compute dtype (bf16 on GPUs): ``torch._scaled_mm`` fp8 matmuls are not used — they
need compute capability ≥ 8.9 and were not measured here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)
STORAGE = torch.float8_e4m3fn
"""What ``TALKGEN_NATIVE_QUANT=fp8`` quantises to (the seed's files are e4m3fn too)."""
FP8_MAX = torch.finfo(STORAGE).max  # 448
SCALE = "scale_weight"
"""The scale's parameter name, as in ComfyUI/Kijai files: ``<linear>.scale_weight`` next to ``<linear>.weight``."""
BLOCKS = "blocks."
"""Only Linears inside the transformer blocks rest in fp8 (≈ 97 % of the DiT's bytes): embedders, the
output head and the audio projection are small and kept in the compute dtype (``audio_proj``'s input is
cast to its weight's dtype, so it must not be fp8)."""


def is_fp8(tensor: torch.Tensor) -> bool:
    return tensor.dtype in FP8_DTYPES


class Fp8Linear(nn.Linear):
    """``nn.Linear`` with an fp8 weight and a per-tensor scale, upcast to the input's dtype on each call."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device: torch.device | str | None = None) -> None:
        super().__init__(in_features, out_features, bias, device=device, dtype=STORAGE)
        self.scale_weight = nn.Parameter(torch.ones((), device=device, dtype=torch.float32), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.to(x.dtype) * self.scale_weight  # a 0-dim fp32 factor keeps x's dtype
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, weight, bias)


def quantize(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``weight`` → (fp8 e4m3fn tensor, fp32 scalar scale) with the largest magnitude mapped to 448."""
    w = weight.float()
    amax = w.abs().max()
    scale = (amax / FP8_MAX) if amax > 0 else torch.ones(())
    return (w / scale).clamp(-FP8_MAX, FP8_MAX).to(STORAGE), scale.reshape(()).float()


def dequantize(weight: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """Stored × scale in fp32."""
    w = weight.float()
    return w if scale is None else w * scale.float()


def fp8_layers(model: nn.Module, tensors: dict[str, torch.Tensor], quant: str) -> set[str]:
    """Weight keys whose Linear rests in fp8: the block Linears stored in fp8, or all of them when
    ``quant == "fp8"``."""
    out = set()
    for name, module in model.named_modules():
        key = f"{name}.weight"
        linear = type(module) is nn.Linear and name.startswith(BLOCKS) and key in tensors
        if linear and (quant == "fp8" or is_fp8(tensors[key])):
            out.add(key)
    return out


def settle(tensors: dict[str, torch.Tensor], scales: dict[str, torch.Tensor], layers: set[str]) -> None:
    """In place: ``layers`` as (fp8 weight, ``scale_weight``), quantising those that are not fp8 yet; every
    other tensor dequantised (stored × scale, fp32) for the loader's cast to the compute dtype."""
    for key in list(tensors):
        scale = scales.get(key)
        if key in layers:
            if is_fp8(tensors[key]):
                scale = torch.ones(()) if scale is None else scale.reshape(()).float()
            else:
                tensors[key], scale = quantize(dequantize(tensors[key], scale))
            tensors[key.removesuffix("weight") + SCALE] = scale
        elif is_fp8(tensors[key]) or scale is not None:
            tensors[key] = dequantize(tensors[key], scale)


def convert_linears(model: nn.Module, layers: set[str]) -> None:
    """Swap the Linears behind ``layers`` (``<module>.weight`` keys) for `Fp8Linear` (on the meta device)."""
    for key in layers:
        path = key.removesuffix(".weight")
        parent_name, _, child = path.rpartition(".")
        parent = model.get_submodule(parent_name)
        old = getattr(parent, child)
        setattr(parent, child, Fp8Linear(old.in_features, old.out_features, old.bias is not None, device="meta"))



def quantize_blocks(model: nn.Module) -> int:
    """In place: every plain block Linear of a built model becomes an `Fp8Linear` (per-tensor absmax scale),
    as ``quant="fp8"`` does at load (for models built without files: benchmarks). Returns how many."""
    done = 0
    for name, module in list(model.named_modules()):
        if type(module) is not nn.Linear or not name.startswith(BLOCKS):
            continue
        weight, scale = quantize(module.weight.data)
        fp8 = Fp8Linear(module.in_features, module.out_features, module.bias is not None, device="meta")
        fp8.weight = nn.Parameter(weight, requires_grad=False)
        fp8.scale_weight = nn.Parameter(scale.to(weight.device), requires_grad=False)
        fp8.bias = module.bias
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, fp8)
        done += 1
    return done
