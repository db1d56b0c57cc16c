"""GPU memory: what each model weighs, what a job needs, and the offload plan that fits the card.

``TALKGEN_NATIVE_OFFLOAD=auto`` (the default) picks the lightest plan whose estimated peak fits the free
GPU memory, in this order: ``none`` (every model resident), ``model`` (the DiT and VAE resident, the
encoders visit the GPU while they run), the same with VAE tiling, ``group`` (the DiT's blocks stream from
pinned CPU memory), the same with VAE tiling. The estimate is resident weights plus the largest transient
(DiT activations, VAE activations, or an encoder visiting). Activation sizes are calibrated from the
H200 measurements of issue 8 (14B DiT at 832x480: 3.4 GiB of DiT activations, ~9 GiB for the fp32
VAE); `bench/native_gpu.py --engine` prints the estimate next to the measured peak to recalibrate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import NamedTuple

import torch

log = logging.getLogger(__name__)
GIB = 1 << 30
REF_TOKENS = 21 * (480 // 16) * (832 // 16)
"""Tokens of one 81-frame 832x480 window: the calibration point."""
DIT_ACTIVATIONS_AT_REF = 3.4 * GIB
"""Peak DiT activations of one pass at the calibration point, for a 5120-wide model (bf16)."""
REF_WIDTH = 5120
VAE_BYTES_PER_PIXEL = 9.0 * GIB / (832 * 480)
"""Peak fp32 VAE encode/decode activations per output pixel (frames are processed in causal chunks)."""
VAE_TILE_PIXELS = 256 * 256
"""diffusers' default tile (256 px, stride 192): tiled VAE memory follows the tile, not the frame."""
SAFETY = 1.10
"""Estimates are multiplied by this before comparing with free memory."""
RESERVE = 1 * GIB
"""Kept free for the allocator's fragmentation, cuBLAS/cuDNN workspaces and kernels loaded later."""
PLANS = (("none", False), ("model", False), ("model", True), ("group", False), ("group", True))
"""What ``auto`` tries, lightest offload first."""


@dataclass(frozen=True)
class Footprint:
    """Weight bytes of each model on the GPU (the DiT also split: its largest block, and the rest)."""

    dit: int
    dit_block: int
    blocks: int
    text: int
    image: int
    audio: int
    vae: int
    width: int = REF_WIDTH  # the DiT's hidden size (activations scale with it)

    @property
    def total(self) -> int:
        return self.dit + self.text + self.image + self.audio + self.vae

    def resident(self, offload: str) -> int:
        """Bytes that stay on the GPU under ``offload``."""
        if offload == "none":
            return self.total
        if offload == "model":
            return self.dit + self.vae
        non_block = self.dit - self.dit_block * self.blocks
        return self.vae + non_block + 2 * self.dit_block  # group: the rest + the block in use + the prefetched one

    @classmethod
    def of_modules(cls, dit: torch.nn.Module, text: torch.nn.Module, image: torch.nn.Module, audio: torch.nn.Module,
                   vae: torch.nn.Module) -> Footprint:
        """From built models (real or meta tensors), at their current dtypes."""
        blocks = list(getattr(dit, "blocks", []))
        cfg = dit.config
        return cls(dit=module_bytes(dit), dit_block=max((module_bytes(b) for b in blocks), default=0),
                   blocks=len(blocks), text=module_bytes(text), image=module_bytes(image), audio=module_bytes(audio),
                   vae=module_bytes(vae), width=cfg.num_attention_heads * cfg.attention_head_dim)


@dataclass(frozen=True)
class Activations:
    """Transient bytes of one job's window at its size."""

    dit: int
    vae: int
    vae_tiled: int

    @classmethod
    def for_size(cls, width: int, height: int, frames: int = 81, model_width: int = REF_WIDTH) -> Activations:
        tokens = ((frames - 1) // 4 + 1) * (height // 16) * (width // 16)
        dit = int(DIT_ACTIVATIONS_AT_REF * tokens / REF_TOKENS * model_width / REF_WIDTH)
        pixels = width * height
        output = 3 * frames * pixels * 4  # the decoded window in fp32 is kept whole either way
        return cls(dit=dit, vae=int(VAE_BYTES_PER_PIXEL * pixels),
                   vae_tiled=int(VAE_BYTES_PER_PIXEL * min(pixels, VAE_TILE_PIXELS)) + output)


@dataclass(frozen=True)
class MemoryPlan:
    """Where the models live for a job, and the peak that was estimated for it."""

    offload: str  # none | model | group
    vae_tiling: bool
    text_on_gpu: bool  # False: the text encoder runs on the CPU (it does not fit next to the resident models)
    peak: int
    free: int | None = None  # the budget it was planned against (None: not measured, e.g. on CPU)

    @property
    def lightness(self) -> int:
        """Order by GPU memory used: higher is lighter."""
        return 2 * ("none", "model", "group").index(self.offload) + int(self.vae_tiling)

    @property
    def fits(self) -> bool:
        return self.free is None or self.peak <= self.free

    def describe(self) -> str:
        parts = [f"offload={self.offload}", f"vae_tiling={str(self.vae_tiling).lower()}"]
        if not self.text_on_gpu:
            parts.append("text encoder on CPU")
        budget = f" of {self.free / GIB:.1f} GiB free" if self.free is not None else ""
        return f"{', '.join(parts)} (estimated peak {self.peak / GIB:.1f} GiB{budget})"


def estimate(offload: str, tiling: bool, fp: Footprint, act: Activations, text_on_gpu: bool = True) -> int:
    """Estimated peak bytes of a window under a plan."""
    visiting = 0 if offload == "none" else max(fp.image, fp.audio, fp.text if text_on_gpu else 0)
    transient = max(act.dit, act.vae_tiled if tiling else act.vae, visiting)
    return int((fp.resident(offload) + transient) * SAFETY)


def plan_memory(offload: str, tiling: bool, fp: Footprint, act: Activations, free: int | None) -> MemoryPlan:
    """The plan for ``offload`` (``auto``: the lightest that fits ``free`` bytes; None = unlimited)."""
    budget = None if free is None else max(0, free - RESERVE)
    candidates = PLANS if offload == "auto" else ((offload, tiling),)
    chosen = None
    for mode, tiled in candidates:
        tiled = tiled or tiling
        text_on_gpu = mode == "none" or budget is None or fp.resident(mode) + fp.text <= budget / SAFETY
        plan = MemoryPlan(mode, tiled, text_on_gpu, estimate(mode, tiled, fp, act, text_on_gpu), budget)
        chosen = plan
        if plan.fits:
            break
    assert chosen is not None
    return chosen


def free_bytes(device: torch.device) -> int | None:
    """Free memory on ``device`` including what torch has cached but not in use; None off CUDA."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def module_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers (tied weights once)."""
    from talkgen.engines.native.devices.placement import unique_tensors

    return sum(t.numel() * t.element_size() for t in unique_tensors(chain(module.parameters(), module.buffers())))


class Size(NamedTuple):
    """One tensor as a safetensors header describes it."""

    numel: int
    itemsize: int
    ndim: int = 2
    fp8: bool = False


def weight_sizes(path: Path) -> dict[str, Size]:
    """``{key: Size}`` of the weights behind ``path`` (a file, a sharded folder), read from safetensors
    headers only (no tensor is loaded)."""
    from safetensors import safe_open

    from talkgen.engines.native.weights.tensors import unusable, weight_files

    files = weight_files(path)
    out: dict[str, tuple[int, int]] = {}
    for file in files:
        if file.suffix != ".safetensors":  # a pickle: its size, taken as fp32 tensors
            out[str(file)] = Size(file.stat().st_size // 4, 4)
            continue
        try:
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                    piece = handle.get_slice(key)
                    shape, kind = piece.get_shape(), piece.get_dtype()
                    numel = 1
                    for size in shape:
                        numel *= size
                    out[key] = Size(numel, _SAFETENSORS_SIZES.get(kind, 4), len(shape), kind.startswith("F8"))
        except Exception as exc:  # safetensors raises its own error type for a corrupt header
            raise unusable(f"{file} is not a readable safetensors file ({exc}): run `talkgen models verify` to "
                           "find and refetch corrupt files.") from exc
    return out


def weight_bytes(sizes: dict[str, Size], dtype: torch.dtype | None = None) -> int:
    """Bytes of ``sizes`` in memory, at ``dtype`` when the loader casts to it."""
    return sum(s.numel * (dtype.itemsize if dtype is not None else s.itemsize) for s in sizes.values())


def dit_bytes(sizes: dict[str, Size], dtype: torch.dtype, quant: str = "none") -> int:
    """Bytes of the DiT once loaded (keys without prefix): the block Linears' weights (2-D ``blocks.*.weight``)
    at 1 byte when the file holds them in fp8 or ``quant`` is fp8 (plus their fp32 scales), the rest at
    ``dtype``, as `loading.load_transformer` does."""
    total = 0
    for key, s in sizes.items():
        if key.endswith((".scale_weight", ".weight_scale")):
            continue  # counted with its weight
        fp8 = key.startswith("blocks.") and key.endswith(".weight") and s.ndim == 2 and (s.fp8 or quant == "fp8")
        total += s.numel + 4 if fp8 else s.numel * dtype.itemsize
    return total


_SAFETENSORS_SIZES = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4,
                      "I8": 1, "U8": 1, "BOOL": 1}
