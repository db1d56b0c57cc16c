"""Multi-GPU for one video: diffusers' context parallelism (Ulysses) under ``torchrun``.

Every rank runs the same job; the DiT's tokens are split across ranks between the first block and the
output projection. InfiniteTalk's per-frame audio attention and the two-speaker reference map need to
know where a rank's tokens sit in the whole sequence: `Shard` carries that, and the few collectives
they need (first-frame keys, global min/max of the map) run on the context-parallel group.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from unittest import mock

import torch
import torch.distributed as dist

from talkgen.errors import EngineUnavailable


@dataclass(frozen=True)
class Shard:
    """This rank's slice of the token sequence."""

    offset: int
    group: dist.ProcessGroup

    def gather(self, tensor: torch.Tensor, dim: int = 1) -> torch.Tensor:
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size(self.group))]
        dist.all_gather(parts, tensor.contiguous(), group=self.group)
        return torch.cat(parts, dim=dim)

    def reduce(self, tensor: torch.Tensor, op: dist.ReduceOp) -> torch.Tensor:
        dist.all_reduce(tensor, op=op, group=self.group)
        return tensor


def launched() -> tuple[int, int, int]:
    """(rank, local rank, world size) as set by ``torchrun``; (0, 0, 1) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def is_main_rank() -> bool:
    return launched()[0] == 0


def enable_context_parallel(model: torch.nn.Module, device: torch.device, world: int) -> None:
    """Split the DiT's sequence over ``world`` ranks (Ulysses: heads must divide by ``world``)."""
    from diffusers import ContextParallelConfig

    heads = model.config.num_attention_heads
    if heads % world:
        raise EngineUnavailable(f"Context parallelism over {world} ranks needs a head count divisible by {world}; the "
                                f"model has {heads}. Launch with a divisor of {heads} processes.", retryable=False)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    # diffusers assumes an accelerator when it picks the rank's device; on CPU (tests) there is none.
    on_cpu = device.type == "cpu"
    with mock.patch.object(torch.accelerator, "device_count", return_value=1) if on_cpu else nullcontext():
        model.enable_parallelism(config=ContextParallelConfig(ulysses_degree=world))


def shard_of(model: torch.nn.Module, tokens: int) -> Shard | None:
    """This rank's `Shard` when the model runs context-parallel, else None."""
    config = getattr(model, "_parallel_config", None)
    cp = getattr(config, "context_parallel_config", None) if config is not None else None
    if cp is None or cp._flattened_mesh is None:
        return None
    group = cp._flattened_mesh.get_group()
    world = dist.get_world_size(group)
    return Shard(offset=dist.get_rank(group) * (tokens // world), group=group)
