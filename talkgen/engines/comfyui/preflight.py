"""Before a job runs: does the server have every model file the workflow's loaders name?"""

from __future__ import annotations

from typing import Any

from talkgen.engines.comfyui.client import ComfyClient
from talkgen.errors import EngineUnavailable

LOADERS: dict[str, tuple[str, str]] = {
    "UNETLoader": ("unet_name", "diffusion_models"),
    "LoraLoaderModelOnly": ("lora_name", "loras"),
    "CLIPLoader": ("clip_name", "text_encoders"),
    "VAELoader": ("vae_name", "vae"),
    "ModelPatchLoader": ("name", "model_patches"),
    "AudioEncoderLoader": ("audio_encoder_name", "audio_encoders"),
    "CLIPVisionLoader": ("clip_name", "clip_vision"),
    "WanVideoModelLoader": ("model", "diffusion_models"),
    "MultiTalkModelLoader": ("model", "diffusion_models"),
    "WanVideoVAELoader": ("model_name", "vae"),
    "WanVideoTextEncodeCached": ("model_name", "text_encoders"),
    "WanVideoLoraSelect": ("lora", "loras"),
    "Wav2VecModelLoader": ("model", "wav2vec2"),
}
"""Loader class → (input naming the file, folder under ComfyUI's models/)."""


def missing_models(client: ComfyClient, graph: dict[str, Any]) -> list[str]:
    """``folder/file`` for every model the graph loads that the server does not list."""
    listings: dict[str, list[str]] = {}
    missing = []
    for node in graph.values():
        spec = LOADERS.get(node["class_type"])
        if spec is None or not isinstance(node["inputs"].get(spec[0]), str):
            continue
        name, folder = node["inputs"][spec[0]], spec[1]
        if folder not in listings:
            listings[folder] = client.models(folder)
        if name not in listings[folder]:
            missing.append(f"{folder}/{name}")
    return sorted(set(missing))


def check_models(client: ComfyClient, graph: dict[str, Any], workflow: str) -> None:
    missing = missing_models(client, graph)
    if missing:
        raise EngineUnavailable(
            f"ComfyUI at {client.base_url} lacks model files for {workflow}: {', '.join(missing)} (under its "
            "models/ folder). Download them, or use workflows that name the files you have.", retryable=False)
