"""Hardware options run on CPU too: offloading, first-block cache, attention backends, VAE tiling."""

from __future__ import annotations

import numpy as np
import pytest

from tests.native.conftest import request
from tests.support.video_check import decode


def _frames(settings, media, out):  # type: ignore[no-untyped-def]
    from talkgen.service import TalkGen

    service = TalkGen(settings)
    try:
        result = service.generate(request(media, wav_path=str(media / "short.wav")), output=str(out))
    finally:
        service.close()
    return result, np.stack(decode(out).frames)


@pytest.fixture(scope="module")
def baseline(native_settings, native_media, tmp_path_factory):
    return _frames(native_settings, native_media, tmp_path_factory.mktemp("base") / "b.mp4")[1]


@pytest.mark.parametrize("options", [
    {"native_offload": "model", "native_vae_tiling": True},
    {"native_offload": "group"},
])
def test_memory_options_do_not_change_the_video(native_settings, native_media, tmp_path, baseline, options):
    _, frames = _frames(native_settings.model_copy(update=options), native_media, tmp_path / "o.mp4")
    assert np.array_equal(frames, baseline)


def test_first_block_cache_and_math_attention_run(native_settings, native_media, tmp_path, baseline):
    cached_settings = native_settings.model_copy(update={"native_cache": "first-block", "native_cache_threshold": 0.5})
    result, cached = _frames(cached_settings, native_media, tmp_path / "c.mp4")
    assert cached.shape == baseline.shape and result.params["steps"] == 2
    math_settings = native_settings.model_copy(update={"native_attention": "_native_math"})
    _, math = _frames(math_settings, native_media, tmp_path / "m.mp4")
    assert math.shape == baseline.shape
    assert np.abs(math.astype(int) - baseline.astype(int)).mean() < 2.0  # same maths, another kernel
    # and the default backend is restored for the next engine in the process
    _, again = _frames(native_settings, native_media, tmp_path / "a.mp4")
    assert np.array_equal(again, baseline)


def test_unusable_attention_backend_is_a_clear_error(native_settings, native_media, tmp_path):
    from talkgen.errors import EngineUnavailable

    with pytest.raises(EngineUnavailable, match="TALKGEN_NATIVE_ATTENTION=native") as info:
        _frames(native_settings.model_copy(update={"native_attention": "no-such-backend"}), native_media,
                tmp_path / "x.mp4")
    assert not info.value.retryable


def test_gpu_out_of_memory_is_a_clear_retryable_error_and_the_engine_stays(native_settings, native_media, tmp_path,
                                                                          monkeypatch):
    import torch

    from talkgen.engines.native.run import sampler
    from talkgen.errors import OutOfMemory
    from talkgen.service import TalkGen

    service = TalkGen(native_settings)
    real = sampler.sample

    def exhausted(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    from talkgen.engines.native.run import generate as generate_module

    monkeypatch.setattr(generate_module, "sample", exhausted)
    with pytest.raises(OutOfMemory, match="TALKGEN_NATIVE_OFFLOAD") as info:
        service.generate(request(native_media, wav_path=str(native_media / "short.wav"), job_id="oom-1"),
                         output=str(tmp_path / "x.mp4"))
    assert info.value.retryable and info.value.code == "out_of_memory"
    assert service.healthy
    monkeypatch.setattr(generate_module, "sample", real)
    result = service.generate(request(native_media, wav_path=str(native_media / "short.wav")),
                              output=str(tmp_path / "y.mp4"))
    assert result.frames == 40
    service.close()


def test_cancel_stops_between_steps(native_service, native_media, tmp_path):
    import threading

    from talkgen.errors import Cancelled

    cancel = threading.Event()
    seen = []

    def progress(event):  # type: ignore[no-untyped-def]
        seen.append(event.message)
        if event.message.endswith("step 2/4"):
            cancel.set()

    with pytest.raises(Cancelled):
        native_service.generate(request(native_media, preset="quality"), output=str(tmp_path / "c.mp4"),
                                progress=progress, cancel=cancel)
    assert not any("step 4/4" in m for m in seen)
    assert not (tmp_path / "c.mp4").exists()


@pytest.mark.parametrize("option, device, passes, want", [
    ("auto", "cuda", 159, False), ("auto", "cuda", 160, True), ("auto", "cpu", 10**6, False),
    ("always", "cpu", 0, True), ("never", "cuda", 10**6, False),
])
def test_compile_decision(option, device, passes, want):
    from talkgen.engines.native.devices.options import should_compile

    assert should_compile(option, device, passes, 160) is want


@pytest.mark.parametrize("value, want", [("true", "always"), ("0", "never"), (True, "always"), ("auto", "auto")])
def test_compile_setting_accepts_the_old_booleans(value, want):
    from talkgen.settings import Settings

    assert Settings(native_compile=value).native_compile == want


def test_auto_compile_counts_passes_across_jobs(native_service, native_media, tmp_path, monkeypatch):
    """On a CUDA device, ``auto`` compiles once the passes run plus the job's reach the threshold."""
    components = native_service._engine("native").components
    calls = []
    monkeypatch.setattr(components.transformer, "compile_repeated_blocks", lambda **kw: calls.append(kw))
    monkeypatch.setattr(components, "device", type(components.device)("cuda"))  # the decision only reads its type
    monkeypatch.setattr(components, "compiled", False)
    monkeypatch.setattr(components, "options", components.options.__class__(
        **{**components.options.__dict__, "compile": "auto", "compile_min_passes": components.passes_run + 10}))
    components.maybe_compile(9)
    assert calls == [] and not components.compiled
    components.maybe_compile(10)
    assert calls == [{"fullgraph": False, "dynamic": False}] and components.compiled
    components.maybe_compile(10**6)
    assert len(calls) == 1  # once per engine
