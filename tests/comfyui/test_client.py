"""The ComfyUI client and run loop against the fake server: success and every failure path."""

from __future__ import annotations

import threading
import time

import pytest

from talkgen.engines.comfyui.client import ComfyClient
from talkgen.engines.comfyui.run import RunLimits, run_prompt
from talkgen.errors import Cancelled, EngineFailed, EngineUnavailable, MediaTooLarge, OutOfMemory, Timeout
from tests.comfyui.conftest import graph


def test_success_follows_steps_skips_binary_frames_and_downloads(comfy, limits, tmp_path):
    client = ComfyClient(comfy.url)
    steps = []
    outputs = run_prompt(client, graph(), limits, steps.append)
    assert [s.value for s in steps] == [1, 2, 3, 4] and steps[-1].max == 4 and steps[0].node == "2"
    file = outputs["3"]["images"][0]
    assert outputs["3"]["animated"] == [True]
    assert client.download(file, tmp_path / "v.mp4").read_bytes() == b"VIDEO-BYTES"


def test_vhs_gifs_output(comfy, limits, tmp_path):
    client = ComfyClient(comfy.url)
    outputs = run_prompt(client, graph(output="VHS_VideoCombine"), limits)
    file = outputs["3"]["gifs"][0]
    assert file["format"] == "video/h264-mp4"
    assert client.download(file, tmp_path / "v.mp4").read_bytes() == b"VIDEO-BYTES"


def test_validation_errors_name_node_class_and_input(comfy, limits):
    client = ComfyClient(comfy.url)
    with pytest.raises(EngineFailed, match=r"#1 LoadImage \('talkgen:image'\) input 'image'.*missing\.png"):
        run_prompt(client, graph(image="talkgen/j/missing.png"), limits)
    bad = graph()
    bad["4"] = {"class_type": "WanVideoSampler", "inputs": {}}
    with pytest.raises(EngineUnavailable, match=r"node #4 needs class 'WanVideoSampler'") as info:
        run_prompt(client, bad, limits)
    assert not info.value.retryable
    bad = graph()
    bad["5"] = {"class_type": "VAELoader", "inputs": {"vae_name": "Wan2_1_VAE_bf16.safetensors"}}
    with pytest.raises(EngineUnavailable, match=r"#5 VAELoader input 'vae_name'.*Wan2_1_VAE_bf16"):
        run_prompt(client, bad, limits)
    assert comfy.prompts == []  # nothing ran


@pytest.mark.parametrize("behaviour, error, pattern", [
    ("error", EngineFailed, r"node #2 SamplerCustomAdvanced: SafetensorError: Error while deserializing header"),
    ("oom", OutOfMemory, r"out of memory in node #2"),
])
def test_execution_errors(comfy, limits, behaviour, error, pattern):
    comfy.behaviour = behaviour
    with pytest.raises(error, match=pattern):
        run_prompt(ComfyClient(comfy.url), graph(), limits)


def test_websocket_drop_mid_run_reconnects(comfy, limits, tmp_path):
    comfy.behaviour = "drop_ws"
    outputs = run_prompt(ComfyClient(comfy.url), graph(), limits)
    assert outputs["3"]["images"]


def test_server_death_mid_run_is_reported_retryable(comfy):
    comfy.behaviour = "die"
    limits = RunLimits(cancel=threading.Event(), deadline=None, stall_s=1.0)
    started = time.monotonic()
    with pytest.raises(EngineFailed) as info:
        run_prompt(ComfyClient(comfy.url, timeout_s=2), graph(), limits)
    assert info.value.retryable and time.monotonic() - started < 30


def test_cancel_interrupts_the_running_prompt(comfy):
    comfy.behaviour = "slow"
    cancel = threading.Event()
    limits = RunLimits(cancel=cancel, deadline=None)
    threading.Timer(0.5, cancel.set).start()
    with pytest.raises(Cancelled):
        run_prompt(ComfyClient(comfy.url), graph(), limits)
    assert "interrupt" in comfy.calls
    time.sleep(0.3)
    assert comfy.running is None


def test_deadline_interrupts(comfy):
    comfy.behaviour = "slow"
    with pytest.raises(Timeout, match="TALKGEN_COMFYUI_TIMEOUT"):
        run_prompt(ComfyClient(comfy.url), graph(), RunLimits(cancel=threading.Event(),
                                                                deadline=time.monotonic() + 0.6))
    assert "interrupt" in comfy.calls


def test_upload_into_job_subfolder_and_limit(comfy, tmp_path):
    from tests.support.fake_comfyui import FakeComfyUI

    client = ComfyClient(comfy.url)
    (tmp_path / "a.wav").write_bytes(b"RIFF....")
    assert client.upload(tmp_path / "a.wav", "speech.wav", "talkgen/job1") == "talkgen/job1/speech.wav"
    assert comfy.inputs["talkgen/job1/speech.wav"] == b"RIFF...."
    with FakeComfyUI({}, max_upload_mb=0.001) as small:
        (tmp_path / "big.bin").write_bytes(b"x" * 5000)
        with pytest.raises(MediaTooLarge, match="max-upload-size"):
            ComfyClient(small.url).upload(tmp_path / "big.bin", "big.bin", "talkgen/j")


def test_unreachable_server(tmp_path, limits):
    with pytest.raises(EngineFailed, match="did not answer") as info:
        run_prompt(ComfyClient("http://127.0.0.1:9", timeout_s=1), graph(), limits)
    assert info.value.retryable
