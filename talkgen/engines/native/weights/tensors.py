"""Reading DiT weights from any of the layouts people have, with errors that name the file and key.

Accepted: a diffusers transformer folder (sharded or not), Wan's original shards (a folder with an
index or ``*.safetensors``), single-file repacks (fp32/bf16/fp16, optional ``model.diffusion_model.``
prefix), fp8 files (plain or ComfyUI/Kijai ``_scaled``, see `fp8_scales`) and InfiniteTalk adapter files
(LoRAs: see `lora`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from talkgen.engines.native.model.fp8 import SCALE, is_fp8
from talkgen.engines.native.weights.keys import looks_original, strip_prefix, to_diffusers
from talkgen.errors import EngineUnavailable

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
IGNORED_KEYS = re.compile(r"(^|\.)norm_added_q\.|^scaled_fp8$|\.scale_input$|\.input_scale$")
"""Keys some checkpoints carry that the model does not use: Wan's ``norm_added_q`` (diffusers ignores it
too), and the fp8 format marker and activation scales of ComfyUI's scaled fp8 files (see `fp8_scales`)."""
SHOWN_KEYS = 8


def unusable(message: str) -> EngineUnavailable:
    """Broken or mismatched weights: retrying the same job cannot help."""
    return EngineUnavailable(message, retryable=False)


def weight_files(path: Path) -> list[Path]:
    """The weight files behind ``path``: itself, the shards its index lists, or every weight file in it."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise unusable(f"Model weights not found: {path} does not exist. Run `talkgen models download` "
                                "(or `talkgen models tiny DIR` for test weights) and set TALKGEN_MODELS_DIR.")
    for index in sorted(path.glob("*.index.json")):
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing = [s for s in shards if not (path / s).is_file()]
        if missing:
            raise unusable(f"{index} lists shards that are missing: {', '.join(missing)}. Re-run "
                                    "`talkgen models download` to fetch them.")
        return [path / s for s in shards]
    files = sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    if not files:
        raise unusable(f"No weight files (*.safetensors, *.pth, *.bin) in {path}.")
    return files


def read_file(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of one weight file (safetensors memory-mapped; pickles loaded weights-only)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return state.get("state_dict", state) if isinstance(state, dict) else state
    except Exception as exc:  # truncated downloads and foreign formats fail here
        raise unusable(
            f"Cannot read weight file {path} ({type(exc).__name__}: {exc}): it is truncated or not a weight "
            "file. Delete it and run `talkgen models download` again."
        ) from exc


def read_weights(source: Path | Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors in diffusers names plus, for each key, the file it came from (for error messages)."""
    if isinstance(source, Mapping):
        raw = {k: (v, "<state dict>") for k, v in source.items()}
    else:
        raw = {}
        for file in weight_files(Path(source)):
            raw.update({k: (v, str(file)) for k, v in read_file(file).items()})
    original = looks_original(list(raw))
    tensors: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key, (tensor, file) in raw.items():
        name = to_diffusers(key) if original else strip_prefix(key)
        if IGNORED_KEYS.search(name):
            continue
        tensors[name], origin[name] = tensor, file
    return tensors, origin


def check_against(model: torch.nn.Module, tensors: Mapping[str, torch.Tensor], origin: Mapping[str, str],
                  sources: Iterable[str]) -> None:
    """Raise `EngineUnavailable` naming missing, unexpected or mis-shaped keys and their files."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [k for k in expected.keys() & tensors.keys() if tuple(tensors[k].shape) != expected[k]]
    where = ", ".join(sources)
    if wrong:
        k = sorted(wrong)[0]
        raise unusable(
            f"Weight {k!r} in {origin[k]} has shape {list(tensors[k].shape)}, the model expects "
            f"{list(expected[k])} ({len(wrong)} mismatched keys): the file belongs to a different model size or "
            "version than the config. Use matching files (see `talkgen models list`)."
        )
    if missing:
        audio = [k for k in missing if "audio" in k or "norm_x" in k]
        hint = (" The InfiniteTalk adapter (audio_proj / audio_cross_attn / norm_x) is missing: check the "
                "adapter file." if audio else "")
        raise unusable(
            f"{len(missing)} weights missing from {where}: {', '.join(missing[:SHOWN_KEYS])}"
            f"{' …' if len(missing) > SHOWN_KEYS else ''}.{hint}"
        )
    if unexpected:
        first = unexpected[0]
        raise unusable(
            f"{len(unexpected)} unexpected weights, e.g. {first!r} from {origin[first]}: the files do not belong "
            "to an InfiniteTalk/Wan2.1-I2V DiT with this config."
        )


def cast_for(model: Any, tensors: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Cast to ``dtype``, keeping the modules diffusers keeps in fp32 (norms, modulation, time embedder).

    fp8 weights and their fp32 ``scale_weight`` stay as they are (see `fp8`). Always copies: memory-mapped
    file tensors can be unaligned, which makes CPU kernels take other code paths (results differ in the
    last bits), and the copy lets the file mappings go.
    """
    keep = tuple(getattr(model, "_keep_in_fp32_modules", None) or ())
    out = {}
    for key, value in tensors.items():
        if is_fp8(value) or key.endswith(f".{SCALE}"):
            out[key] = value.clone()
            continue
        fp32 = dtype != torch.float32 and any(part in key.split(".") for part in keep)
        target = torch.float32 if fp32 else dtype
        out[key] = value.to(target, copy=True) if value.is_floating_point() else value.clone()
    return out
