"""The native engine on CUDA through `TalkGen.generate`, the CLI and the RunPod handler (tiny preset)."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import subprocess_env
from tests.native.conftest import SIZE, request
from tests.support.video_check import decode

MULTI = {"person_count": "multi"}
VIDEO = {"input_type": "video", "image_path": None}


def _check(path: Path, seconds: float, varied: bool = True):  # type: ignore[no-untyped-def]
    video = decode(path)
    assert video.count == round(25 * seconds)
    assert video.fps == 25 and (video.width, video.height) == (SIZE, SIZE)
    assert video.audio_duration == pytest.approx(video.count / 25, abs=0.03)
    if varied:  # (the test clip's frames are flat colours: colour matching keeps a V2V output flat too)
        assert np.std(np.stack(video.frames)) > 1  # real frames, not a blank
    return video


def _frames(settings, media, out, **fields):  # type: ignore[no-untyped-def]
    from talkgen.service import TalkGen

    service = TalkGen(settings)
    try:
        result = service.generate(request(media, wav_path=str(media / "short.wav"), **fields), output=str(out))
    finally:
        service.close()
    return result, np.stack(_check(out, 1.6).frames)


def _differ(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.mark.parametrize("fields, seconds", [
    ({}, 3.4),
    ({**MULTI, "audio_type": "para"}, 3.4),
    ({**MULTI, "audio_type": "add"}, 3.4 + 1.6),
    ({**VIDEO, "video_path": "clip30.mp4"}, 3.4),
    ({**VIDEO, **MULTI, "video_path": "clip30.mp4", "speaker_boxes": [[0, 10, 70, 120], [90, 10, 160, 120]]}, 3.4),
], ids=["i2v", "i2v-multi-para", "i2v-multi-add", "v2v", "v2v-multi"])
def test_every_mode_on_the_gpu(gpu, gpu_service, native_media, tmp_path, fields, seconds):
    fields = dict(fields)
    if "video_path" in fields:
        fields["video_path"] = str(native_media / fields["video_path"])
    if "person_count" in fields:
        fields["wav_path_2"] = str(native_media / "short.wav")
    result = gpu_service.generate(request(native_media, **fields), output=str(tmp_path / "o.mp4"))
    _check(tmp_path / "o.mp4", seconds, varied="video_path" not in fields)
    assert result.params["device"].startswith(gpu.type)


@pytest.fixture(scope="module")
def resident(gpu_settings, native_media, tmp_path_factory):
    return _frames(gpu_settings.model_copy(update={"native_offload": "none"}), native_media,
                   tmp_path_factory.mktemp("resident") / "r.mp4")[1]


@pytest.mark.parametrize("offload", ["model", "group", "auto"])
def test_offload_modes_make_the_same_video(gpu_settings, native_media, tmp_path, resident, offload):
    result, frames = _frames(gpu_settings.model_copy(update={"native_offload": offload}), native_media,
                             tmp_path / "o.mp4")
    expected = "none" if offload == "auto" else offload  # the tiny preset fits any card
    assert result.params["memory"].startswith(f"offload={expected}")
    assert _differ(frames, resident) < 1.0


def test_the_speaker_adapter_swap_reaches_streamed_blocks(gpu_settings, native_media, tmp_path):
    """Under group offload the blocks rest in pinned copies: the multi adapter must land there too."""
    two = {"person_count": "multi", "wav_path_2": str(native_media / "short.wav"), "audio_type": "para"}
    videos = {}
    for offload in ("none", "group"):
        from talkgen.service import TalkGen

        service = TalkGen(gpu_settings.model_copy(update={"native_offload": offload}))
        try:  # a single-speaker job first, so the swap happens on a warm engine
            service.generate(request(native_media, wav_path=str(native_media / "short.wav")),
                             output=str(tmp_path / f"{offload}-1.mp4"))
            service.generate(request(native_media, wav_path=str(native_media / "short.wav"), **two),
                             output=str(tmp_path / f"{offload}-2.mp4"))
        finally:
            service.close()
        videos[offload] = np.stack(_check(tmp_path / f"{offload}-2.mp4", 1.6).frames)
    assert _differ(videos["group"], videos["none"]) < 1.0


@pytest.mark.parametrize("offload, fuse", [("none", True), ("group", True), ("group", False), ("none", "fp8")])
def test_presets_switch_per_job_on_the_gpu(gpu_settings, native_media, tmp_path, offload, fuse):
    """fast → quality → fast on one warm engine: the LoRA's factors ride with their blocks (resident or
    streamed), the dense deltas reach the pinned copies, and nothing drifts between the two fast jobs."""
    from talkgen.service import TalkGen

    update = {"native_offload": offload, "native_fuse_lora": fuse is not False}
    if fuse == "fp8":
        update["native_quant"] = "fp8"
    service = TalkGen(gpu_settings.model_copy(update=update))
    short = str(native_media / "short.wav")
    try:
        first = service.generate(request(native_media, wav_path=short), output=str(tmp_path / "f1.mp4"))
        quality = service.generate(request(native_media, wav_path=short, preset="quality"),
                                   output=str(tmp_path / "q.mp4"))
        service.generate(request(native_media, wav_path=short, preset="fast"), output=str(tmp_path / "f2.mp4"))
    finally:
        service.close()
    assert (first.params["preset"], quality.params["preset"]) == ("fast", "quality")
    fast1, fast2 = (np.stack(_check(tmp_path / f"{n}.mp4", 1.6).frames) for n in ("f1", "f2"))
    assert _differ(fast1, fast2) == 0.0
    assert _differ(np.stack(_check(tmp_path / "q.mp4", 1.6).frames), fast1) > 1.0


@pytest.mark.parametrize("source, offload", [("quant", "none"), ("quant", "group"), ("scaled-files", "none")])
def test_fp8_weights_on_the_gpu(gpu_settings, tiny_fp8_models, native_media, tmp_path, resident, source, offload):
    """fp8 storage (quantised at load, or the seed's `_scaled` files), with and without streamed blocks; the
    two-speaker adapter swapped into the fp8 layers after a one-speaker job."""
    from talkgen.service import TalkGen

    root, dit = tiny_fp8_models
    update = ({"native_quant": "fp8"} if source == "quant" else {"models_dir": root, "native_transformer": dit})
    service = TalkGen(gpu_settings.model_copy(update={**update, "native_offload": offload}))
    two = {"person_count": "multi", "wav_path_2": str(native_media / "short.wav")}
    try:
        result = service.generate(request(native_media, wav_path=str(native_media / "short.wav")),
                                  output=str(tmp_path / "one.mp4"))
        service.generate(request(native_media, wav_path=str(native_media / "short.wav"), **two),
                         output=str(tmp_path / "two.mp4"))
    finally:
        service.close()
    assert result.params["memory"].startswith(f"offload={offload}")
    assert _differ(np.stack(_check(tmp_path / "one.mp4", 1.6).frames), resident) < 10.0  # fp8 vs bf16 weights
    _check(tmp_path / "two.mp4", 1.6)


@pytest.mark.parametrize("update", [
    {"native_vae_tiling": True}, {"native_dtype": "fp16"}, {"native_dtype": "bf16"}, {"color_correction": 0.0},
    {"native_compile": "always"}, {"native_compile": "auto", "native_compile_min_passes": 1},
    {"native_vae_dtype": "bf16"},
], ids=["vae-tiling", "fp16", "bf16", "no-colour", "compile", "compile-auto", "vae-bf16"])
def test_options_on_the_gpu(gpu, gpu_settings, native_media, tmp_path, update):
    if "native_compile" in update and gpu.type != "cuda":
        pytest.skip("compiling on the CPU takes minutes; the rehearsal leaves it to the GPU")
    result, _ = _frames(gpu_settings.model_copy(update=update), native_media, tmp_path / "o.mp4")
    if "native_dtype" in update:
        assert result.params["dtype"] == {"fp16": "float16", "bf16": "bfloat16"}[update["native_dtype"]]
    if "native_compile" in update:
        assert result.params["compiled"] is True


def test_a_gpu_checkpoint_resumes_on_the_gpu_and_on_the_cpu(gpu_settings, native_media, tmp_path):
    """Cancel after two windows, then continue: on the GPU (same frames) and on the CPU."""
    from talkgen.errors import Cancelled
    from talkgen.service import TalkGen

    settings = gpu_settings.model_copy(update={"native_dtype": "bf16", "work_dir": tmp_path})
    long = {"wav_path": str(native_media / "long.wav"), "seed": 5}
    service = TalkGen(settings)
    try:
        for job in ("gpu-then-gpu", "gpu-then-cpu"):
            cancel = threading.Event()

            def stop_after_two(event, _cancel=cancel):  # type: ignore[no-untyped-def]
                if re.fullmatch(r"window 2/\d+", event.message):  # window 2 is done
                    _cancel.set()

            with pytest.raises(Cancelled):
                service.generate(request(native_media, job_id=job, **long), output=str(tmp_path / "x.mp4"),
                                 progress=stop_after_two, cancel=cancel)
            state = json.loads((tmp_path / "talkgen-checkpoints" / job / "state.json").read_text())
            assert state["windows_done"] == 2
        resumed = service.generate(request(native_media, job_id="gpu-then-gpu", **long), output=str(tmp_path / "r.mp4"))
        service.generate(request(native_media, **long), output=str(tmp_path / "s.mp4"))
    finally:
        service.close()
    assert resumed.params["resumed_from_window"] == 2
    a, b = _check(tmp_path / "r.mp4", 9.2), _check(tmp_path / "s.mp4", 9.2)
    assert _differ(np.stack(a.frames), np.stack(b.frames)) < 1.0

    on_cpu = TalkGen(settings.model_copy(update={"native_device": "cpu"}))
    try:
        moved = on_cpu.generate(request(native_media, job_id="gpu-then-cpu", **long), output=str(tmp_path / "c.mp4"))
    finally:
        on_cpu.close()
    assert moved.params["resumed_from_window"] == 2 and moved.params["device"] == "cpu"
    _check(tmp_path / "c.mp4", 9.2)


def test_cli_on_the_gpu(gpu, tiny_models, native_media, tmp_path):
    env = subprocess_env(TALKGEN_ALLOWED_PATH_ROOTS=str(native_media), TALKGEN_MODELS_DIR=str(tiny_models),
                         TALKGEN_WORK_DIR=str(tmp_path), TALKGEN_NATIVE_DEVICE=str(gpu))
    run = subprocess.run([sys.executable, "-m", "talkgen.cli", "generate", "--engine", "native", "--image",
                          str(native_media / "face.png"), "--audio", str(native_media / "short.wav"), "--width",
                          str(SIZE), "--height", str(SIZE), "-o", str(tmp_path / "cli.mp4"), "--json"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout)["params"]["device"].startswith(gpu.type)
    _check(tmp_path / "cli.mp4", 1.6)


def test_runpod_handler_on_the_gpu(gpu, gpu_settings, native_media, tmp_path, monkeypatch):
    from talkgen.runtimes import runpod as worker
    from talkgen.service import TalkGen

    monkeypatch.setattr(worker, "_service", TalkGen(gpu_settings))
    try:
        out = worker.handler({"id": "gpu-handler", "input": request(native_media, wav_path=str(
            native_media / "short.wav"))})
    finally:
        worker.reset_service()
    assert "error" not in out, out
    assert "refresh_worker" not in out
    (tmp_path / "handler.mp4").write_bytes(base64.b64decode(out["video"].split(",")[-1]))
    _check(tmp_path / "handler.mp4", 1.6)


def test_bf16_dit_matches_fp32(gpu, tiny_models):
    """The same tiny random weights in bf16 and fp32 on the device: relative L2 of the output under 3e-2."""
    import torch

    from talkgen.engines.native.weights.layout import ModelFiles
    from talkgen.engines.native.weights.loading import load_transformer
    from talkgen.settings import Settings

    files = ModelFiles.from_settings(Settings(models_dir=tiny_models))
    gen = torch.Generator("cpu").manual_seed(0)
    config = {"audio_layers": 2}
    args = {"hidden_states": torch.randn(1, 36, 6, 16, 16, generator=gen), "timestep": torch.tensor([700.0]),
            "encoder_hidden_states": torch.randn(1, 512, 32, generator=gen),
            "encoder_hidden_states_image": torch.randn(1, 257, 32, generator=gen),
            "audio": torch.randn(1, 21, 5, 2, 32, generator=gen)}
    outs = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = load_transformer(files.transformer, config, adapter=files.adapter(1), dtype=dtype, device=gpu)
        with torch.no_grad():
            kwargs = {k: v.to(gpu, dtype if v.is_floating_point() and k != "timestep" else v.dtype)
                      for k, v in args.items()}
            outs[dtype] = model(**kwargs, return_dict=False)[0].float().cpu()
    ref = outs[torch.float32]
    rel = float((outs[torch.bfloat16] - ref).norm() / ref.norm())
    print(f"bf16 vs fp32 DiT on {gpu}: relative L2 {rel:.2e}")
    assert rel < 3e-2


def test_visitor_moves_weights_up_and_back_to_pinned_memory(cuda_only):
    import torch

    from talkgen.engines.native.devices.placement import Visitor

    model = torch.nn.Linear(64, 64)
    x = torch.randn(2, 64)
    expected = model(x)
    visitor = Visitor(model, cuda_only)
    assert model.weight.is_pinned() and model.weight.device.type == "cpu"
    with visitor.on() as module:
        assert module.weight.device.type == "cuda"
        got = module(x.to(cuda_only)).cpu()
    assert model.weight.device.type == "cpu" and model.weight.is_pinned()
    assert torch.allclose(got, expected, atol=1e-5)


def test_real_out_of_memory_is_coded_and_the_engine_goes_on(cuda_only, gpu_settings, native_media, tmp_path,
                                                             monkeypatch):
    import torch

    from talkgen.engines.native.run import generate as generate_module
    from talkgen.errors import OutOfMemory
    from talkgen.service import TalkGen

    service = TalkGen(gpu_settings)
    real = generate_module.sample
    try:
        monkeypatch.setattr(generate_module, "sample",
                            lambda *a, **k: torch.empty(1 << 46, dtype=torch.uint8, device=cuda_only))
        with pytest.raises(OutOfMemory, match="TALKGEN_NATIVE_OFFLOAD") as info:
            service.generate(request(native_media, wav_path=str(native_media / "short.wav")),
                             output=str(tmp_path / "x.mp4"))
        assert info.value.retryable and service.healthy
        monkeypatch.setattr(generate_module, "sample", real)
        service.generate(request(native_media, wav_path=str(native_media / "short.wav")),
                         output=str(tmp_path / "ok.mp4"))
    finally:
        service.close()
    _check(tmp_path / "ok.mp4", 1.6)


DEVICE_ASSERT = """
import json, sys, torch
from talkgen.engines.native.run import generate
from talkgen.runtimes import runpod as worker
def broken(*args, **kwargs):
    index = torch.tensor([10], device="cuda")
    torch.zeros(2, device="cuda")[index].sum().item()  # a device-side assert, as a bad kernel gives
generate.sample = broken
out = worker.handler({"id": "xid", "input": json.loads(sys.argv[1])})
print(json.dumps(out))
"""


def test_device_side_assert_asks_for_a_fresh_worker(cuda_only, tiny_models, native_media, tmp_path):
    env = subprocess_env(TALKGEN_ALLOWED_PATH_ROOTS=str(native_media), TALKGEN_MODELS_DIR=str(tiny_models),
                         TALKGEN_WORK_DIR=str(tmp_path), TALKGEN_NATIVE_DEVICE="cuda")
    job = request(native_media, wav_path=str(native_media / "short.wav"))
    run = subprocess.run([sys.executable, "-c", DEVICE_ASSERT, json.dumps(job)], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["error_code"] == "gpu_failed" and out["refresh_worker"] is True, out
