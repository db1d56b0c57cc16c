"""Hardware options of the native engine, resolved from settings (device, dtype, offload, …)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from talkgen.errors import InvalidConfig
from talkgen.settings import Settings

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class NativeOptions:
    device: torch.device
    dtype: torch.dtype
    attention: str
    offload: str
    vae_tiling: bool
    compile: str  # auto | always | never (see `should_compile`)
    cache: str
    cache_threshold: float
    loras: tuple[tuple[Path, float], ...]
    color_correction: float
    vae_dtype: torch.dtype = torch.float32
    compile_min_passes: int = 160
    preset: str = "fast"  # the sampling preset of requests that name none
    fuse_lora: bool = True  # the default preset's LoRA fused at load (see model/lora.py)
    quant: str = "none"  # none | fp8: quantise the DiT's block Linears to fp8 at load (see fp8.py)
    world: int = 1  # processes sharing each DiT pass (torchrun); 1 = no context parallelism
    rank: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> NativeOptions:
        from talkgen.engines.native.model.parallel import launched

        rank, local_rank, world = launched()
        from talkgen.engines.native.devices.gpu_errors import check_cuda

        name = settings.native_device
        if name == "auto" or name.startswith("cuda"):
            check_cuda()  # a GPU this torch cannot use is an error, never a silent fall-back to the CPU
        if name == "auto":
            name = f"cuda:{local_rank}" if torch.cuda.is_available() and world > 1 else (
                "cuda" if torch.cuda.is_available() else "cpu")
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise InvalidConfig(f"TALKGEN_NATIVE_DEVICE={name} but this machine has no CUDA GPU: use cpu or auto.")
        dtype_name = settings.native_dtype
        if dtype_name == "auto":
            dtype_name = "bf16" if device.type == "cuda" else "fp32"
        return cls(device=device, dtype=DTYPES[dtype_name], attention=settings.native_attention,
                   offload=settings.native_offload, vae_tiling=settings.native_vae_tiling,
                   compile=settings.native_compile, cache=settings.native_cache,
                   cache_threshold=settings.native_cache_threshold, loras=tuple(parse_loras(settings.native_loras)),
                   compile_min_passes=settings.native_compile_min_passes,
                   color_correction=settings.color_correction, vae_dtype=DTYPES[settings.native_vae_dtype],
                   preset=settings.native_preset,
                   fuse_lora=settings.native_fuse_lora, quant=settings.native_quant, world=world,
                   rank=rank)


def parse_loras(entries: list[str]) -> list[tuple[Path, float]]:
    """``path`` or ``path@strength`` → (path, strength); strength 1.0 when not given."""
    out = []
    for entry in entries:
        path, _, strength = entry.rpartition("@") if "@" in entry else (entry, "", "1")
        try:
            value = float(strength)
        except ValueError:
            raise InvalidConfig(f"TALKGEN_NATIVE_LORAS entry {entry!r}: write `path@strength`, e.g. "
                                "`lora.safetensors@1.0`.") from None
        out.append((Path(path).expanduser(), value))
    return out


def should_compile(option: str, device_type: str, passes: int, min_passes: int) -> bool:
    """Whether to compile the DiT's repeated blocks now, ``passes`` being what this worker has run plus what
    the job ahead will run: ``auto`` compiles on CUDA only (CPU compiles take minutes and gain little), once
    enough passes will follow to win back the compile time."""
    if option in ("always", "never"):
        return option == "always"
    return device_type == "cuda" and passes >= min_passes
