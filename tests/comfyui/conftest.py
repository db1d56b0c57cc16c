"""Fixtures: a fake ComfyUI server with a small synthetic node schema."""

from __future__ import annotations

import threading

import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("websocket")

SCHEMA = {
    "LoadImage": {"input": {"required": {"image": [[], {}]}}},
    "LoadAudio": {"input": {"required": {"audio": ["COMBO", {"options": []}]}}},
    "SamplerCustomAdvanced": {"input": {"required": {"noise": ["NOISE"]}}},
    "SaveVideo": {"input": {"required": {"video": ["VIDEO"], "filename_prefix": ["STRING", {}]}}},
    "VHS_VideoCombine": {"input": {"required": {"images": ["IMAGE"], "filename_prefix": ["STRING", {}]}}},
    "VAELoader": {"input": {"required": {"vae_name": [[], {}]}}},
}


def graph(image: str = "talkgen/j/face.png", output: str = "SaveVideo") -> dict:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}, "_meta": {"title": "talkgen:image"}},
        "2": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["1", 0]}},
        "3": {"class_type": output, "inputs": {"video": ["2", 0], "images": ["2", 0], "filename_prefix": "talkgen/j"}},
    }


@pytest.fixture
def comfy():
    from tests.support.fake_comfyui import FakeComfyUI

    with FakeComfyUI(SCHEMA, render=lambda g, i: b"VIDEO-BYTES") as server:
        server.inputs["talkgen/j/face.png"] = b"png"
        yield server


@pytest.fixture
def limits():
    from talkgen.engines.comfyui.run import RunLimits

    return RunLimits(cancel=threading.Event(), deadline=None, stall_s=5.0)
