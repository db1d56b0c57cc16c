"""LoRA files in original Wan naming: read into low-rank pairs and dense deltas, or merged into the weights.

Upstream semantics (InfiniteTalk's ``wan_lora.py``): ``delta = up @ down × strength``, ``alpha`` ignored;
``.diff``/``.diff_b`` keys are whole weight/bias deltas. Keys may carry a ``diffusion_model.`` prefix and
use ``lora_down``/``lora_up`` or PEFT's ``lora_A``/``lora_B``. A target the model lacks is an error, never
skipped: a LoRA for another model must not half-apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from talkgen.engines.native.model.fp8 import dequantize, is_fp8
from talkgen.engines.native.weights.keys import strip_prefix, to_diffusers
from talkgen.engines.native.weights.tensors import read_file, unusable, weight_files

LoraSource = Path | str | Mapping[str, torch.Tensor]
_DOWN = (".lora_down.weight", ".lora_A.weight")
_UP = (".lora_up.weight", ".lora_B.weight")


@dataclass
class LoraTensors:
    """A LoRA by target: ``pairs[key] = (down [r, in…], up [out, r…])`` and ``dense[key] = delta``, keyed by
    the model's (diffusers) parameter names."""

    name: str
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]]
    dense: dict[str, torch.Tensor]
    original: dict[str, str] = field(default_factory=dict)  # model key → the key as the file names it

    def delta(self, key: str) -> torch.Tensor:
        """The full fp32 delta for ``key`` (flattened ``up @ down`` for a pair, reshaped by the caller)."""
        if key in self.dense:
            return self.dense[key].float()
        down, up = self.pairs[key]
        return up.float().flatten(1) @ down.float().flatten(1)

    def targets(self) -> list[str]:
        return [*self.pairs, *self.dense]


def read_lora(lora: LoraSource) -> LoraTensors:
    """Split a LoRA file (or state dict) into pairs and dense deltas under the model's parameter names."""
    if isinstance(lora, Mapping):
        raw, name = dict(lora), "<state dict>"
    else:
        path = Path(lora)
        if not path.exists():
            raise unusable(f"LoRA file {path} does not exist.")
        raw, name = {k: v for file in weight_files(path) for k, v in read_file(file).items()}, str(path)
    downs: dict[str, torch.Tensor] = {}
    ups: dict[str, torch.Tensor] = {}
    dense: dict[str, torch.Tensor] = {}
    original: dict[str, str] = {}
    for key, value in raw.items():
        key = strip_prefix(key.removeprefix("transformer."))
        for suffixes, into in ((_DOWN, downs), (_UP, ups)):
            for suffix in suffixes:
                if key.endswith(suffix):
                    into[key[: -len(suffix)]] = value
        for suffix, param in ((".diff", ".weight"), (".diff_b", ".bias")):
            if key.endswith(suffix):
                target = key[: -len(suffix)] + param
                dense[to_diffusers(target)] = value
                original[to_diffusers(target)] = target
    pairs = {}
    for base, down in downs.items():
        if base not in ups:
            raise unusable(f"LoRA {name}: {base}.lora_down has no matching lora_up.")
        pairs[to_diffusers(base + ".weight")] = (down, ups[base])
        original[to_diffusers(base + ".weight")] = base + ".weight"
    if not pairs and not dense:
        raise unusable(f"LoRA {name} contains no lora_down/lora_up or diff keys.")
    return LoraTensors(name, pairs, dense, original)


def check_targets(lora: LoraTensors, shapes: Mapping[str, torch.Size]) -> None:
    """Every target exists in the model with as many elements as its delta."""
    for key in lora.targets():
        named = lora.original.get(key, key)
        if key not in shapes:
            raise unusable(f"LoRA {lora.name} targets {named!r}, which the model does not have: it is for a "
                           "different model.")
        if key in lora.pairs:
            down, up = lora.pairs[key]
            numel, shape = up.shape[0] * down[0].numel(), [up.shape[0], *down.shape[1:]]
        else:
            numel, shape = lora.dense[key].numel(), list(lora.dense[key].shape)
        if numel != shapes[key].numel():
            raise unusable(f"LoRA {lora.name}: delta for {named!r} has {shape}, weight is {list(shapes[key])}.")


def merge_lora(tensors: dict[str, torch.Tensor], lora: LoraSource | LoraTensors, strength: float,
               scales: dict[str, torch.Tensor] | None = None) -> int:
    """Add ``strength × delta`` into ``tensors`` (model parameter names); returns the tensors changed.

    An fp8 target is dequantised (× its entry in ``scales``, which is then used up) and left in fp32 for
    the loader to quantise again.
    """
    lora = lora if isinstance(lora, LoraTensors) else read_lora(lora)
    check_targets(lora, {k: v.shape for k, v in tensors.items()})
    for key in lora.targets():
        weight = tensors[key]
        scale = (scales or {}).pop(key, None)
        merged = dequantize(weight, scale) + strength * lora.delta(key).reshape(weight.shape)
        tensors[key] = merged if is_fp8(weight) or scale is not None else merged.to(weight.dtype)
    return len(lora.targets())
