"""CUDA failures as coded errors an operator can act on.

- out of memory → `out_of_memory` (retryable; the engine keeps working), naming the lighter setting;
- the GPU failing mid-job (an Xid: ECC error, illegal access, device-side assert, launch failure) →
  `gpu_failed` (retryable elsewhere): the CUDA context of this process is unusable, so the engine marks
  itself unhealthy and the RunPod worker answers with ``refresh_worker``;
- a GPU CUDA cannot use (driver too old for this torch build, no driver) → `gpu_unavailable`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from talkgen.errors import GpuFailed, GpuUnavailable, OutOfMemory, TalkgenError

GPU_FAILURES = (
    "device-side assert", "illegal memory access", "unspecified launch failure", "uncorrectable ecc",
    "ecc error", "gpu is lost", "fallen off the bus", "cuda error: unknown error", "misaligned address",
    "illegal instruction", "launch timed out", "hardware stack error", "cublas_status_execution_failed",
    "cublas_status_internal_error", "cudnn_status_execution_failed", "cudnn_status_internal_error",
    "cuda error: operation not permitted when stream is capturing", "nccl error", "cuda-capable device(s) is/are busy",
)
"""Lower-case fragments of CUDA errors after which this process cannot use the GPU again."""
DRIVER_FAILURES = (
    "driver on your system is too old", "driver version is insufficient", "found no nvidia driver",
    "cuda driver initialization failed", "no cuda gpus are available", "system has unsupported display driver",
)
NEXT_OFFLOAD = {"none": "model", "model": "group", "auto": "group"}


def as_gpu_error(exc: BaseException, where: str, offload: str, vae_tiling: bool) -> TalkgenError | None:
    """The coded error for a CUDA failure, or None when ``exc`` is not one (``where``: "at 832x480", …)."""
    if isinstance(exc, torch.OutOfMemoryError):
        if offload in NEXT_OFFLOAD:
            advice = f"set TALKGEN_NATIVE_OFFLOAD={NEXT_OFFLOAD[offload]}"
        else:
            advice = "the DiT already streams from the CPU: use a smaller width/height"
        if not vae_tiling:
            advice += " and TALKGEN_NATIVE_VAE_TILING=true"
        return OutOfMemory(
            f"The GPU ran out of memory {where} (offload {offload}): {advice}, or use a smaller size. "
            "Finished windows are checkpointed: rerun with the same job_id to continue.", retryable=True)
    text = str(exc).lower()
    if any(marker in text for marker in DRIVER_FAILURES):
        return unusable_gpu(str(exc))
    if isinstance(exc, RuntimeError) and any(marker in text for marker in GPU_FAILURES):
        first = str(exc).strip().splitlines()[0][:300]
        return GpuFailed(
            f"The GPU failed mid-job ({first}). This process cannot use CUDA again: the worker asks for a fresh "
            "process (RunPod: refresh_worker); rerun with the same job_id to continue from the last checkpoint. "
            "If it repeats on this machine the GPU is faulty: look for Xid/ECC errors in `nvidia-smi -q` or the "
            "kernel log. To locate a device-side assert, set CUDA_LAUNCH_BLOCKING=1.")
    return None


def unusable_gpu(reason: str) -> GpuUnavailable:
    """`gpu_unavailable` with what this torch build needs."""
    built = torch.version.cuda or "none"
    driver = driver_version()
    return GpuUnavailable(
        f"This machine has an NVIDIA GPU but CUDA cannot use it: {reason.strip().splitlines()[0][:300]} "
        f"(torch {torch.__version__} is built for CUDA {built}; driver {driver or 'not found'}). Run the image "
        f"built for an older CUDA, or choose GPUs whose driver supports CUDA {built} (RunPod: the endpoint's "
        "allowed CUDA versions); TALKGEN_NATIVE_DEVICE=cpu runs on the CPU instead (very slow).")


def driver_version() -> str | None:
    """The NVIDIA kernel driver's version, when the machine has one."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        return None
    for word in text.split():
        if word.count(".") >= 1 and word.replace(".", "").isdigit():
            return word
    return None


def has_nvidia_gpu() -> bool:
    """An NVIDIA device node or driver is present (whether or not CUDA can use it)."""
    return os.path.exists("/dev/nvidia0") or os.path.exists("/proc/driver/nvidia/version")


def check_cuda() -> None:
    """Raise `gpu_unavailable` when the machine has an NVIDIA GPU that this torch cannot use."""
    if torch.version.cuda is None or torch.cuda.is_available() or not has_nvidia_gpu():
        return
    try:
        torch.cuda.init()
    except Exception as exc:  # torch says why: driver too old, no driver, …
        raise unusable_gpu(str(exc)) from exc
    raise unusable_gpu("torch.cuda.is_available() is False")
