"""CUDA failures reach the operator as coded errors; a lost GPU asks RunPod for a fresh worker."""

from __future__ import annotations

import pytest

from tests.native.conftest import request

ILLEGAL_ACCESS = ("CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be asynchronously "
                  "reported at some other API call, so the stacktrace below might be incorrect.")
DRIVER_TOO_OLD = ("The NVIDIA driver on your system is too old (found version 11040). Please update your GPU driver "
                  "by downloading and installing a new version from the URL: http://www.nvidia.com/Download/index.aspx")


@pytest.mark.parametrize(("message", "code"), [
    (ILLEGAL_ACCESS, "gpu_failed"),
    ("CUDA error: device-side assert triggered", "gpu_failed"),
    ("CUDA error: uncorrectable ECC error encountered", "gpu_failed"),
    ("CUDA error: unspecified launch failure", "gpu_failed"),
    ("CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasGemmEx( handle, ...)`", "gpu_failed"),
    (DRIVER_TOO_OLD, "gpu_unavailable"),
    ("mat1 and mat2 shapes cannot be multiplied (4x3 and 4x4)", None),  # a bug, not the GPU
])
def test_cuda_messages_map_to_codes(message, code):
    from talkgen.engines.native.devices.gpu_errors import as_gpu_error

    error = as_gpu_error(RuntimeError(message), "at 832x480", "none", False)
    assert (error.code if error else None) == code
    if code == "gpu_failed":
        assert error.retryable and "refresh_worker" in error.message and "job_id" in error.message
    if code == "gpu_unavailable":
        assert not error.retryable and "CUDA" in error.message and "TALKGEN_NATIVE_DEVICE=cpu" in error.message


@pytest.mark.parametrize(("offload", "tiling", "advice"), [
    ("none", False, "TALKGEN_NATIVE_OFFLOAD=model and TALKGEN_NATIVE_VAE_TILING=true"),
    ("model", True, "TALKGEN_NATIVE_OFFLOAD=group"),
    ("group", True, "smaller width/height"),
])
def test_out_of_memory_names_the_next_lighter_setting(offload, tiling, advice):
    import torch

    from talkgen.engines.native.devices.gpu_errors import as_gpu_error

    error = as_gpu_error(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"), "at 1280x720",
                         offload, tiling)
    assert error.code == "out_of_memory" and error.retryable and advice in error.message
    assert "1280x720" in error.message


def test_a_gpu_this_torch_cannot_use_is_an_error_not_a_silent_cpu_run(monkeypatch, native_settings):
    import torch

    from talkgen.engines.native.devices import gpu_errors
    from talkgen.engines.native.devices.options import NativeOptions
    from talkgen.errors import GpuUnavailable

    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(gpu_errors, "has_nvidia_gpu", lambda: True)

    def init() -> None:
        raise RuntimeError(DRIVER_TOO_OLD)

    monkeypatch.setattr(torch.cuda, "init", init)
    with pytest.raises(GpuUnavailable, match=r"built for CUDA 13\.0") as info:
        NativeOptions.from_settings(native_settings.model_copy(update={"native_device": "auto"}))
    assert "too old" in info.value.message and info.value.code == "gpu_unavailable"
    # a machine with no NVIDIA GPU at all runs on the CPU, as before
    monkeypatch.setattr(gpu_errors, "has_nvidia_gpu", lambda: False)
    assert NativeOptions.from_settings(native_settings).device.type == "cpu"


def test_a_gpu_failing_mid_job_marks_the_worker_for_refresh(native_settings, native_media, monkeypatch):
    from talkgen.engines.native.run import generate as generate_module
    from talkgen.runtimes import runpod as worker
    from talkgen.service import TalkGen

    def lost(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError(ILLEGAL_ACCESS)

    monkeypatch.setattr(worker, "_service", TalkGen(native_settings))
    try:
        monkeypatch.setattr(generate_module, "sample", lost)
        out = worker.handler({"id": "gpu-lost-1", "input": request(native_media,
                                                                   wav_path=str(native_media / "short.wav"))})
        assert out["error_code"] == "gpu_failed" and out["retryable"] is True
        assert out["refresh_worker"] is True
        assert "illegal memory access" in out["error"]
    finally:
        worker.reset_service()
