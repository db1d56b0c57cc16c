"""The tiny preset with the seed's kind of DiT files: fp8 e4m3fn with per-tensor ``scale_weight`` keys.

`write_tiny_fp8` writes the tiny preset (`tiny.write_tiny`, same seed, so the same weights) and then, in
the seed's layout (see ``runpod-and-deploy.md`` §2.5): the base DiT as one file in Wan's original key
names, every 2-D weight in fp8 with ``<linear>.scale_weight`` next to it plus ComfyUI's ``scaled_fp8``
marker (Kijai's ``Wan2_1-I2V-14B-480P_fp8_e4m3fn_scaled_KJ.safetensors``), and both InfiniteTalk
adapters rewritten in place the same way (``Wan2_1-InfiniteTalk-{Single,Multi}_fp8_e4m3fn_scaled_KJ``).
The set's ``talkgen-presets.json`` names the fp8 DiT file, so the engine uses it with no other setting.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import torch

from talkgen.engines.native.model.fp8 import STORAGE, quantize
from talkgen.engines.native.weights.layout import ADAPTERS, WAN_ORIGINAL_DIR
from talkgen.engines.native.weights.tiny import TINY, make_readable, write_tiny

FP8_DIR = "fp8"
DIT_FILE = "Wan2_1-I2V-14B-480P_fp8_e4m3fn_scaled_KJ.safetensors"
REST = torch.bfloat16
"""What the non-fp8 tensors (biases, norms, modulation, convolutions) are stored in, as in the real files."""


def scaled_fp8(state: dict[str, torch.Tensor], scaled: bool = True) -> dict[str, torch.Tensor]:
    """Every 2-D ``.weight`` in fp8 e4m3fn (with ``.scale_weight`` when ``scaled``, else a plain cast), the
    rest in bf16; a ``scaled`` file gets the ``scaled_fp8`` marker."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith(".weight") and value.ndim == 2:
            if scaled:
                out[key], out[key.removesuffix("weight") + "scale_weight"] = quantize(value)
            else:
                out[key] = value.float().to(STORAGE)
        else:
            out[key] = value.to(REST)
    if scaled:
        out["scaled_fp8"] = torch.empty(0, dtype=STORAGE)
    return out


def write_tiny_fp8(root: Path, seed: int = 0, scaled: bool = True) -> Path:
    """Write the tiny preset with fp8 adapters under ``root``; return the fp8 DiT file (config.json beside it)."""
    from safetensors.torch import load_file, save_file

    root = Path(write_tiny(root, seed))
    original = root / WAN_ORIGINAL_DIR
    base = {k: v for f in sorted(original.glob("*.safetensors")) for k, v in load_file(str(f)).items()}
    folder = root / FP8_DIR
    folder.mkdir(parents=True, exist_ok=True)
    name = DIT_FILE if scaled else DIT_FILE.replace("_scaled_KJ", "")
    save_file(scaled_fp8(base, scaled), str(folder / name), metadata={"format": "pt"})
    shutil.copy(original / "config.json", folder / "config.json")
    for rel in ADAPTERS.values():
        path = root / rel
        save_file(scaled_fp8(load_file(str(path)), scaled), str(path), metadata={"format": "pt"})
    replace(TINY, name="tiny-fp8", files={"transformer": f"{FP8_DIR}/{name}"}).save(root)
    make_readable(root)
    return folder / name
