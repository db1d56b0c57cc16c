"""The ``_scaled`` fp8 file convention (ComfyUI / Kijai), read and checked file by file.

A scaled file stores a Linear's weight in fp8 and, next to it, ``<linear>.scale_weight``: an fp32
scalar with real weight = stored × scale (``.weight_scale`` is the same thing under another name).
ComfyUI also writes a ``scaled_fp8`` marker (an empty tensor whose dtype names the format) and may
write ``<linear>.scale_input`` (an activation scale for fp8 matmuls); neither is needed to dequantise,
`talkgen.engines.native.weights.tensors` drops both while reading. Plain fp8 files (``*_fp8_e4m3fn.safetensors``,
the seed's base DiT) have no scales: scale 1.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from talkgen.engines.native.model.fp8 import SCALE, is_fp8, settle
from talkgen.engines.native.weights.tensors import unusable

SCALE_SUFFIXES = (".scale_weight", ".weight_scale")


def take_scales(tensors: dict[str, torch.Tensor], origin: dict[str, str]) -> dict[str, torch.Tensor]:
    """Remove the scale keys from ``tensors``; return ``{weight key: fp32 scalar scale}``.

    Raises `EngineUnavailable` naming the file for a scale that is not one number, a scale with no
    weight, or, in a file that has scales, an fp8 weight without one (the file is then mixed or damaged,
    and guessing 1 would silently give wrong weights).
    """
    scales: dict[str, torch.Tensor] = {}
    scaled_files: set[str] = set()
    for key in [k for k in tensors if k.endswith(SCALE_SUFFIXES)]:
        scale, file = tensors.pop(key), origin[key]
        weight = key.rpartition(".")[0] + ".weight"
        if scale.numel() != 1 or not scale.is_floating_point():
            raise unusable(f"{file}: {key!r} has shape {list(scale.shape)} ({scale.dtype}); a scaled fp8 file holds "
                           "one number per weight. The file is not in the ComfyUI/Kijai fp8_scaled format: use "
                           "the original bf16 weights or an `_fp8_e4m3fn_scaled` file.")
        if weight not in tensors:
            raise unusable(f"{file}: {key!r} scales a weight the files do not have ({weight!r}): the scales and "
                           "weights do not belong together. Download the file again.")
        value = scale.reshape(()).float()
        if not torch.isfinite(value) or value <= 0:
            raise unusable(f"{file}: {key!r} is {value.item()}, not a usable scale. Download the file again.")
        scales[weight] = value
        scaled_files.add(file)
    unscaled: dict[str, list[str]] = defaultdict(list)
    for key, tensor in tensors.items():
        if is_fp8(tensor) and key not in scales and origin[key] in scaled_files:
            unscaled[origin[key]].append(key)
    for file, keys in unscaled.items():
        raise unusable(f"{file} is a scaled fp8 file, but {len(keys)} fp8 weights have no scale_weight, e.g. "
                       f"{sorted(keys)[0]!r}: the file is damaged or mixes formats. Download it again.")
    return scales


def conform(model: torch.nn.Module, tensors: dict[str, torch.Tensor],
            origin: dict[str, str]) -> dict[str, torch.Tensor]:
    """Adapter tensors (as `weights.read_weights` returns them, any format) in the form ``model`` holds:
    fp8 + ``scale_weight`` where the model's layer is an `fp8.Fp8Linear`, fp32 elsewhere (for a
    ``param.copy_(value.to(param.dtype))`` swap such as `Components.use_adapter`)."""
    tensors = dict(tensors)
    scales = take_scales(tensors, origin)
    params = dict(model.named_parameters())
    layers = {k for k in tensors if k.endswith(".weight") and k.removesuffix("weight") + SCALE in params}
    settle(tensors, scales, layers)
    return tensors
