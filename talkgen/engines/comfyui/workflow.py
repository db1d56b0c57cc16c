"""API-format workflows with titled input nodes, filled per job.

A workflow is ComfyUI's API export (``{"<id>": {"class_type", "inputs", "_meta": {"title"}}}``). Nodes
titled ``talkgen:<slot>`` receive the job's values: ``talkgen:image``, ``talkgen:video``,
``talkgen:audio_1``, ``talkgen:audio_2``, ``talkgen:prompt``, ``talkgen:negative_prompt``, ``talkgen:size``,
``talkgen:seed``, ``talkgen:steps``, ``talkgen:guidance``, ``talkgen:audio_guidance``, ``talkgen:frames``,
``talkgen:audio_type``, ``talkgen:mask_1``, ``talkgen:mask_2``, ``talkgen:output``; a node serving
several slots lists them: ``talkgen:size,frames``. Each slot names the input(s) it sets
per node class in `SLOT_INPUTS`; binding is by title, never by node id.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from talkgen.errors import InvalidConfig

TITLE_PREFIX = "talkgen:"
SLOT_INPUTS: dict[str, dict[str, tuple[str, ...]]] = {
    "image": {"LoadImage": ("image",)},
    "video": {"LoadVideo": ("file",), "VHS_LoadVideo": ("video",)},
    "audio_1": {"LoadAudio": ("audio",)},
    "audio_2": {"LoadAudio": ("audio",)},
    "mask_1": {"LoadImageMask": ("image",)},
    "mask_2": {"LoadImageMask": ("image",)},
    "prompt": {"CLIPTextEncode": ("text",), "WanVideoTextEncodeCached": ("positive_prompt",)},
    "negative_prompt": {"CLIPTextEncode": ("text",), "WanVideoTextEncodeCached": ("negative_prompt",)},
    "size": {"WanInfiniteTalkToVideo": ("width", "height"), "WanVideoImageToVideoMultiTalk": ("width", "height"),
             "ImageResizeKJv2": ("width", "height")},
    "seed": {"RandomNoise": ("noise_seed",), "WanVideoSampler": ("seed",)},
    "steps": {"BasicScheduler": ("steps",), "WanVideoSampler": ("steps",)},
    "guidance": {"CFGGuider": ("cfg",), "WanVideoSampler": ("cfg",)},
    "audio_guidance": {"MultiTalkWav2VecEmbeds": ("audio_cfg_scale",)},
    "frames": {"WanInfiniteTalkToVideo": ("length",), "MultiTalkWav2VecEmbeds": ("num_frames",)},
    "audio_type": {"MultiTalkWav2VecEmbeds": ("multi_audio_type",)},
    "output": {"SaveVideo": ("filename_prefix",), "VHS_VideoCombine": ("filename_prefix",)},
}


class Workflow:
    """A template graph and its titled slots."""

    def __init__(self, graph: dict[str, Any], name: str = "workflow") -> None:
        self.graph = graph
        self.name = name
        self.slots: dict[str, list[str]] = {}
        for node_id, node in graph.items():
            title = (node.get("_meta") or {}).get("title", "")
            if title.startswith(TITLE_PREFIX):  # one node may serve several slots: talkgen:size,frames
                for slot in title[len(TITLE_PREFIX):].split(","):
                    self.slots.setdefault(slot.strip(), []).append(node_id)
        unknown = sorted(set(self.slots) - set(SLOT_INPUTS))
        if unknown:
            raise InvalidConfig(f"{name}: unknown talkgen slot title(s) {', '.join(unknown)}; known: "
                                f"{', '.join(sorted(SLOT_INPUTS))}.")

    @classmethod
    def load(cls, path: Path) -> Workflow:
        try:
            graph = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InvalidConfig(f"Workflow {path} is not readable API-format JSON: {exc}") from exc
        if not isinstance(graph, dict) or not all(isinstance(n, dict) and "class_type" in n for n in graph.values()):
            raise InvalidConfig(f"Workflow {path} is not in API format (export it with 'Save (API)').")
        return cls(graph, Path(path).name)

    def fill(self, values: dict[str, Any]) -> dict[str, Any]:
        """A copy of the graph with every slot that has a value set; a value for a missing slot is an error."""
        graph = copy.deepcopy(self.graph)
        for slot, value in values.items():
            if value is None:
                continue
            nodes = self.slots.get(slot)
            if not nodes:
                raise InvalidConfig(f"{self.name} has no node titled {TITLE_PREFIX}{slot}, so "
                                    f"`{slot}` cannot reach the graph.")
            for node_id in nodes:
                node = graph[node_id]
                inputs = SLOT_INPUTS[slot].get(node["class_type"])
                if inputs is None:
                    raise InvalidConfig(f"{self.name}: node #{node_id} titled {TITLE_PREFIX}{slot} is a "
                                        f"{node['class_type']}; use one of {', '.join(SLOT_INPUTS[slot])}.")
                parts = value if isinstance(value, tuple) else (value,) * len(inputs)
                for name, part in zip(inputs, parts, strict=True):
                    node["inputs"][name] = part
        return graph
