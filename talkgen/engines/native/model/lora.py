"""A LoRA kept beside the weights and switched per job, exactly.

Each Linear the LoRA targets gets its two factors as (non-persistent) buffers and a forward hook that adds
``s · up(down(x))``; the few other targets (biases, norms, the patch-embedding conv) have dense deltas and
are rewritten in place (``loaded + s · delta``). ``s`` is the strength the job wants minus the strength
already fused into the weights at load: 0 costs nothing, so a fused LoRA runs at full speed for the preset
that uses it, and a job of another preset runs with ``s = -fused``.

Where the factors live: an unfused LoRA runs on every job of its preset, so its factors are buffers of
their Linear and go wherever it goes (resident, group offload) with no extra placement code. A fused
LoRA's factors are needed only by jobs of the other preset: they rest in (pinned) CPU memory, outside the
module's tensors, and are copied to the input's device on each call (about 0.8 GiB per pass at rank 64,
small next to a pass), so the GPU holds nothing extra for the default preset.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from talkgen.engines.native.model.fp8 import is_fp8
from talkgen.engines.native.weights.lora import LoraTensors, check_targets
from talkgen.engines.native.weights.tensors import unusable


class AttachedLora:
    """One LoRA attached to ``model`` at a current strength (``fused`` of it already in the weights)."""

    def __init__(self, model: nn.Module, lora: LoraTensors, fused: float, dtype: torch.dtype,
                 path: Path | None = None, resident: bool | None = None) -> None:
        params = dict(model.named_parameters())
        check_targets(lora, {k: v.shape for k, v in params.items()})
        modules = dict(model.named_modules())
        self.model = model
        self.path = path  # the file it came from (None: a state dict)
        self.fused = fused
        self.extra = 0.0  # strength on top of the fused one, applied by the hooks and the dense values
        self.linears = 0
        self.resident = fused == 0.0 if resident is None else resident
        pin = torch.cuda.is_available() and not self.resident
        dense: dict[str, torch.Tensor] = {}
        for key in lora.targets():
            module = modules.get(key.removesuffix(".weight"))
            if key in lora.pairs and key.endswith(".weight") and isinstance(module, nn.Linear):
                down, up = lora.pairs[key]
                down, up = down.reshape(down.shape[0], -1).to(dtype), up.reshape(up.shape[0], -1).to(dtype)
                if self.resident:
                    device = module.weight.device
                    module.register_buffer("lora_down", down.to(device), persistent=False)
                    module.register_buffer("lora_up", up.to(device), persistent=False)
                else:  # plain attributes: neither `.to()` nor group offload moves them
                    module.lora_resting = (down.pin_memory(), up.pin_memory()) if pin else (down, up)
                module.register_forward_hook(self._add_branch)
                self.linears += 1
            else:
                if is_fp8(params[key]):
                    raise unusable(f"LoRA {lora.name} has a full delta for {key!r}, which rests in fp8: switching "
                                   "it per job is not supported; use TALKGEN_NATIVE_QUANT=none for this LoRA.")
                dense[key] = lora.delta(key).reshape(params[key].shape)
        self._loaded = {key: params[key].detach().to("cpu", copy=True) for key in dense}
        self._delta = dense

    def _add_branch(self, module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor | None:
        if self.extra == 0.0:
            return None
        x = args[0]
        if self.resident:
            down, up = module.lora_down, module.lora_up
        else:
            down, up = (t.to(x.device, non_blocking=True) for t in module.lora_resting)
        x = x.to(down.dtype)
        return output + (self.extra * F.linear(F.linear(x, down), up)).to(output.dtype)

    @property
    def strength(self) -> float:
        return self.fused + self.extra

    def use(self, strength: float) -> None:
        """Run the following passes with the LoRA at ``strength`` (0: as if it were not there)."""
        extra = strength - self.fused
        if math.isclose(extra, self.extra, abs_tol=1e-12):
            return
        from talkgen.engines.native.devices.params import write_params

        write_params(self.model, {k: self._loaded[k].float() + extra * d for k, d in self._delta.items()}
                     if extra else self._loaded)
        self.extra = extra
