"""Models that live on the CPU and visit the GPU while they run.

A `Visitor` keeps one CPU copy of a model's tensors (pinned when the GPU is CUDA, so the copy up is a
fast DMA) and, for the duration of ``with visitor.on():``, points every parameter and buffer at a GPU copy.
Leaving the block drops the GPU copies: weights never change, so nothing is copied back. A visitor whose
``device`` is the CPU runs the model where it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from itertools import chain

import torch


class Visitor:
    """One model that rests on the CPU and runs on ``device``."""

    def __init__(self, module: torch.nn.Module, device: torch.device) -> None:
        self.module = module
        self.device = device
        pin = device.type == "cuda"
        self._tensors = unique_tensors(chain(module.parameters(), module.buffers()))
        for tensor in self._tensors:  # rest on the CPU, pinned: the GPU copy is made from here each visit
            data = tensor.data.to("cpu")
            tensor.data = data.pin_memory() if pin and not data.is_pinned() else data

    @contextmanager
    def on(self) -> Iterator[torch.nn.Module]:
        """The model on ``device`` for the block (a no-op when ``device`` is the CPU)."""
        if self.device.type == "cpu":
            yield self.module
            return
        resting = [tensor.data for tensor in self._tensors]
        try:
            for tensor in self._tensors:
                tensor.data = tensor.data.to(self.device, non_blocking=True)
            yield self.module
        finally:
            for tensor, data in zip(self._tensors, resting, strict=True):
                tensor.data = data


def unique_tensors(tensors: Iterator[torch.Tensor]) -> list[torch.Tensor]:
    """Tied weights (UMT5's shared embedding) are one tensor: move it once."""
    seen: set[int] = set()
    out = []
    for tensor in tensors:
        if id(tensor) not in seen:
            seen.add(id(tensor))
            out.append(tensor)
    return out
