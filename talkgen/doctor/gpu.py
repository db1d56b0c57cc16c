"""torch, CUDA and the driver; each GPU's free memory; the native engine's memory plan at 832x480."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

from talkgen.doctor.result import Check, error, ok, warning
from talkgen.settings import Settings

GIB = 1 << 30
PLAN_SIZE = (832, 480)
CPU_ONLY = "no CUDA GPU: the native engine runs on the CPU, usable only for the tiny test preset"


def checks(settings: Settings) -> list[Check]:
    try:
        import torch
    except ImportError as exc:
        if settings.engine == "native":
            return [error("torch", f"cannot be imported ({str(exc)[:200]}): the native engine needs it",
                          "pip install 'talkgen[native]' (torch first, from the index for your CUDA version)")]
        return [ok("torch", f"not installed (not needed by the {settings.engine} engine)")]
    native = settings.engine == "native"
    wants_cuda = native and settings.native_device.startswith("cuda")
    build = f"torch {torch.__version__}, CUDA {torch.version.cuda or 'none (CPU build)'}"
    if not torch.cuda.is_available():
        unusable = _unusable_gpu() if native else None
        if unusable is not None:
            return [error("gpu", f"{build}; {unusable}", "install a torch build whose CUDA this driver supports "
                          "(or update the driver); `nvidia-smi` shows the driver's CUDA version")]
        if wants_cuda:
            return [error("gpu", f"{build}; TALKGEN_NATIVE_DEVICE={settings.native_device} but no CUDA GPU is "
                          "usable here", "run on a machine with an NVIDIA GPU and a CUDA build of torch, or set "
                          "TALKGEN_NATIVE_DEVICE=auto (CPU: tiny test preset only)")]
        if not native:
            return [ok("gpu", f"{build}; no CUDA GPU here (the {settings.engine} engine does not use it)")]
        return [warning("gpu", f"{build}; {CPU_ONLY}", "for the real weights use an NVIDIA GPU with a CUDA build of "
                        "torch (24 GB cards stream the DiT; 80 GB keep every model resident)")]
    out = [ok("cuda", f"{build}, driver {_driver() or 'unknown'}, {torch.cuda.device_count()} GPU(s)")]
    for index in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(index)
        out.append(ok(f"gpu {index}", f"{torch.cuda.get_device_name(index)}: {free / GIB:.1f} of "
                      f"{total / GIB:.1f} GiB free"))
    if native and settings.native_device != "cpu":
        out.append(_plan(settings, torch))
    return out


def _unusable_gpu() -> str | None:
    """Why an NVIDIA GPU on this machine is unusable by this torch (None: none there, or it is usable)."""
    from talkgen.engines.native.devices.gpu_errors import check_cuda
    from talkgen.errors import TalkgenError

    try:
        check_cuda()
    except TalkgenError as exc:
        return exc.message
    return None


def _driver() -> str | None:
    """The NVIDIA driver version from nvidia-smi (None when it is not on PATH or fails)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        result = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                                text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = result.stdout.split()
    return lines[0] if result.returncode == 0 and lines else None


def _plan(settings: Settings, torch: Any) -> Check:
    """The offload plan the native engine would choose at 832x480 on its GPU, or that nothing fits."""
    from talkgen.engines.native.devices.memory import Activations, plan_memory
    from talkgen.engines.native.devices.options import NativeOptions
    from talkgen.engines.native.weights.layout import ModelFiles
    from talkgen.engines.native.weights.models import footprint_for

    files = ModelFiles.from_settings(settings)
    if files.missing():
        return warning("memory plan", "not estimated: the model files are missing (see models)",
                       "download the models, then rerun `talkgen doctor`")
    options = NativeOptions.from_settings(settings)  # the device and dtypes the engine would use
    index = options.device.index or 0
    footprint = footprint_for(files, options)  # the engine's own sizing: fp8, an unfused LoRA, the VAE dtype
    free, _ = torch.cuda.mem_get_info(index)
    act = Activations.for_size(*PLAN_SIZE, model_width=footprint.width)
    plan = plan_memory(settings.native_offload, settings.native_vae_tiling, footprint, act, free)
    size = "x".join(map(str, PLAN_SIZE))
    name = f"memory plan (cuda:{index})"
    if plan.fits:
        return ok(name, f"{size}: {plan.describe()}; weights {footprint.total / GIB:.1f} GiB")
    hints = [] if settings.native_quant == "fp8" else ["set TALKGEN_NATIVE_QUANT=fp8 (half the DiT's bytes)"]
    if settings.native_offload != "auto":
        hints.append("use TALKGEN_NATIVE_OFFLOAD=auto")
    hints += ["free the GPU of other processes", "use a GPU with more memory"]
    return error(name, f"{size}: nothing fits (lightest tried: {plan.describe()}; TALKGEN_NATIVE_OFFLOAD="
                 f"{settings.native_offload})", ", ".join(hints[:-1]) + f", or {hints[-1]}")
