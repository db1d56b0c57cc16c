"""Memory plans: what auto picks on the cards people rent, models visiting the GPU, re-planning per job."""

from __future__ import annotations

import numpy as np
import pytest

from tests.native.conftest import request
from tests.support.video_check import decode

GIB = 1 << 30


@pytest.fixture(scope="module")
def real_footprint():
    """The real 14B set's weights, sized on the meta device (no memory, no download)."""
    from talkgen.engines.native.devices.memory import Footprint
    from talkgen.engines.native.weights.real_size import meta_models

    return Footprint.of_modules(*meta_models())


@pytest.mark.parametrize(("free_gib", "offload", "tiling", "text_on_gpu"), [
    (139, "none", False, True),  # H200
    (79, "none", False, True),  # A100/H100 80 GB
    (44.4, "model", True, False),  # L40S / A6000 48 GB: encoders off the GPU
    (22.5, "group", False, True),  # 4090 / A10 / L4 24 GB
])
def test_auto_picks_the_plan_the_card_can_hold(real_footprint, free_gib, offload, tiling, text_on_gpu):
    from talkgen.engines.native.devices.memory import Activations, plan_memory

    plan = plan_memory("auto", False, real_footprint, Activations.for_size(832, 480), int(free_gib * GIB))
    assert (plan.offload, plan.vae_tiling, plan.text_on_gpu) == (offload, tiling, text_on_gpu), plan.describe()
    assert plan.fits and plan.peak <= free_gib * GIB


def test_a_bigger_job_needs_a_lighter_plan(real_footprint):
    from talkgen.engines.native.devices.memory import Activations, plan_memory

    at_480 = plan_memory("auto", False, real_footprint, Activations.for_size(832, 480), 70 * GIB)
    at_720 = plan_memory("auto", False, real_footprint, Activations.for_size(1280, 720), 70 * GIB)
    assert at_720.lightness > at_480.lightness
    assert Activations.for_size(1280, 720).dit > 2 * Activations.for_size(832, 480).dit


def test_explicit_offload_is_kept_even_when_it_does_not_fit(real_footprint):
    from talkgen.engines.native.devices.memory import Activations, plan_memory

    plan = plan_memory("none", False, real_footprint, Activations.for_size(832, 480), 22 * GIB)
    assert plan.offload == "none" and not plan.fits


def test_footprint_from_file_headers_matches_the_loaded_models(tiny_models, native_settings):
    import torch

    from talkgen.engines.native.devices.components import Components
    from talkgen.engines.native.devices.options import NativeOptions
    from talkgen.engines.native.weights.layout import ModelFiles
    from talkgen.engines.native.weights.models import footprint_from_files

    files = ModelFiles.from_settings(native_settings)
    predicted = footprint_from_files(files, torch.float32)
    models = Components.from_files(files, NativeOptions.from_settings(native_settings)).models
    loaded = models.footprint()
    for name in ("dit_block", "text", "image", "audio", "vae"):
        got, want = getattr(predicted, name), getattr(loaded, name)
        assert abs(got - want) <= 0.05 * want, (name, got, want)
    dit_params = sum(p.numel() * p.element_size() for p in models.transformer.parameters())
    assert predicted.dit == dit_params  # RoPE tables: buffers made at load, not stored; the fused LoRA's factors
    assert not any(".lora_" in n for n, _ in models.transformer.named_buffers())  # rest on the CPU
    unfused = footprint_from_files(files, torch.float32, lora_resident=True)
    options = NativeOptions.from_settings(native_settings.model_copy(update={"native_fuse_lora": False}))
    transformer = Components.from_files(files, options).models.transformer
    lora = sum(b.numel() * b.element_size() for n, b in transformer.named_buffers() if ".lora_" in n)
    assert lora > 0 and unfused.dit == dit_params + lora
    assert predicted.blocks == loaded.blocks == 2


def test_a_visitor_on_the_cpu_runs_the_model_in_place():
    """(On a GPU, tests/gpu checks the visit itself: weights up for the block, back to pinned CPU memory.)"""
    import torch

    from talkgen.engines.native.devices.placement import Visitor

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4)).eval()
    pointers = [t.data_ptr() for t in model.state_dict().values()]
    x = torch.randn(3, 4)
    expected = model(x)
    with Visitor(model, torch.device("cpu")).on() as module:
        assert torch.equal(module(x), expected)
    assert [t.data_ptr() for t in model.state_dict().values()] == pointers


def test_auto_moves_to_a_lighter_plan_when_a_job_does_not_fit(native_settings, native_media, tmp_path,
                                                               monkeypatch):
    """The re-planning path on CPU, with the free memory a small card would report: the video is unchanged."""
    from talkgen.engines.native.devices import components
    from talkgen.service import TalkGen

    def run(name: str):  # type: ignore[no-untyped-def]
        service = TalkGen(native_settings)
        try:
            result = service.generate(request(native_media, wav_path=str(native_media / "short.wav")),
                                      output=str(tmp_path / name))
            return result, np.stack(decode(tmp_path / name).frames), service._engines["native"].components.plan
        finally:
            service.close()

    _, baseline, plan = run("base.mp4")
    assert plan.offload == "none" and plan.free is None  # on the CPU nothing is measured: no offload
    free = iter([10 * GIB, 1000])  # plenty at load, almost nothing when the job starts
    monkeypatch.setattr(components, "free_bytes", lambda device: next(free, 1000))
    result, frames, plan = run("small.mp4")
    assert plan.offload == "group" and plan.vae_tiling
    assert result.params["memory"].startswith("offload=group")
    assert np.array_equal(frames, baseline)
