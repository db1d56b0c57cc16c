"""Writing new values into a loaded model's parameters in place, wherever they rest (adapter and LoRA swaps)."""

from __future__ import annotations

from collections.abc import Mapping

import torch


def write_params(model: torch.nn.Module, values: Mapping[str, torch.Tensor]) -> list[str]:
    """Copy ``values`` into the parameters of the same names (cast to each parameter's dtype); returns the
    names that do not fit (missing or of another shape) without writing anything.

    Under diffusers' group offload the block weights are onloaded from pinned CPU copies: those are
    updated too, or the next onload would bring the old values back.
    """
    params = dict(model.named_parameters())
    misfits = [k for k, v in values.items() if k not in params or params[k].shape != v.shape]
    if misfits:
        return misfits
    pinned = group_offload_copies(model)
    with torch.no_grad():
        for key, value in values.items():
            param = params[key]
            param.copy_(value.to(param.dtype))
            resting = pinned.get(param)
            if resting is not None and resting.data_ptr() != param.data_ptr():
                resting.copy_(value.to(resting.dtype))
    return []


def group_offload_copies(model: torch.nn.Module) -> dict[torch.Tensor, torch.Tensor]:
    """diffusers' group offload (with a stream) keeps a pinned CPU copy of every tensor it streams and
    onloads from it: ``{parameter: its pinned copy}``, empty without group offload."""
    copies: dict[torch.Tensor, torch.Tensor] = {}
    for module in model.modules():
        registry = getattr(module, "_diffusers_hook", None)
        hook = registry.get_hook("group_offloading") if registry is not None else None
        group = getattr(hook, "group", None)
        copies.update(getattr(group, "cpu_param_dict", None) or {})
    return copies
