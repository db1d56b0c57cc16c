"""Workflow templates: slots bound by title, and every filled graph checked against a real server's schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from talkgen.engines.comfyui.schema import check_graph
from talkgen.engines.comfyui.workflow import Workflow
from talkgen.errors import InvalidConfig

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
OBJECT_INFO = Path(__file__).resolve().parents[3] / "shared" / "comfyui" / "object_info.json"
TEMPLATES = sorted(WORKFLOWS.glob("*/*.json"))


@pytest.fixture(scope="module")
def object_info():
    if not OBJECT_INFO.is_file():
        pytest.skip("../shared/comfyui/object_info.json is not available")
    return json.loads(OBJECT_INFO.read_text())


VALUES = {"image": "talkgen/j/face.png", "video": "talkgen/j/source.mp4", "audio_1": "talkgen/j/speech.wav",
          "audio_2": "talkgen/j/speech_2.wav", "mask_1": "talkgen/j/mask_1.png", "mask_2": "talkgen/j/mask_2.png",
          "prompt": "a person talking", "negative_prompt": "blurry", "size": (512, 512), "seed": 7, "steps": 4,
          "guidance": 1.0, "audio_guidance": 1.0, "frames": 81, "output": "talkgen/j/out"}


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_filled_template_fits_the_schema(path, object_info):
    workflow = Workflow.load(path)
    graph = workflow.fill({k: v for k, v in VALUES.items() if k in workflow.slots})
    assert check_graph(graph, object_info) == []
    visual = "image" if "image" in workflow.slots else "video"
    assert visual in workflow.slots and "audio_1" in workflow.slots and "seed" in workflow.slots
    seed_node = graph[workflow.slots["seed"][0]]
    assert 7 in seed_node["inputs"].values()


def test_schema_check_finds_real_mistakes(object_info):
    workflow = Workflow.load(WORKFLOWS / "native" / "I2V_single.json")
    graph = workflow.fill({k: v for k, v in VALUES.items() if k in workflow.slots})
    graph["13"]["inputs"]["sampler_name"] = "no-such-sampler"
    graph["17"]["inputs"]["latent_image"] = ["18", 0]  # IMAGE where a LATENT belongs
    del graph["12"]["inputs"]["vae"]
    graph["21"] = {"class_type": "WanVideoSamplerTypo", "inputs": {}}
    problems = "\n".join(check_graph(graph, object_info))
    assert "'no-such-sampler' not in" in problems
    assert "#17 SamplerCustomAdvanced.latent_image: expects LATENT, linked to IMAGE of #18" in problems
    assert "#12 WanInfiniteTalkToVideo: required input 'vae' missing" in problems
    assert "class 'WanVideoSamplerTypo' does not exist" in problems


def test_binding_errors_are_clear(tmp_path):
    workflow = Workflow.load(WORKFLOWS / "native" / "I2V_single.json")
    with pytest.raises(InvalidConfig, match="no node titled talkgen:audio_2"):
        workflow.fill({"audio_2": "x.wav"})
    (tmp_path / "ui.json").write_text(json.dumps({"nodes": [], "links": []}))
    with pytest.raises(InvalidConfig, match="not in API format"):
        Workflow.load(tmp_path / "ui.json")
    (tmp_path / "typo.json").write_text(json.dumps({"1": {"class_type": "LoadImage", "inputs": {},
                                                          "_meta": {"title": "talkgen:imgae"}}}))
    with pytest.raises(InvalidConfig, match=r"unknown talkgen slot title.*imgae"):
        Workflow.load(tmp_path / "typo.json")


def test_versions_file_lists_every_model_each_flavour_loads():
    from talkgen.engines.comfyui.preflight import LOADERS

    versions = json.loads((WORKFLOWS / "versions.json").read_text())
    assert len(versions["comfyui"]["commit"]) == 40
    for flavour in ("native", "wrapper"):
        named = set()
        for path in (WORKFLOWS / flavour).glob("*.json"):
            for node in json.loads(path.read_text()).values():
                if node["class_type"] in LOADERS:
                    key, folder = LOADERS[node["class_type"]]
                    named.add(f"{folder}/{node['inputs'][key]}")
        assert named == set(versions["models"][flavour])
        assert all(name.rsplit("/", 1)[1] in versions["model_sources"] for name in named)
