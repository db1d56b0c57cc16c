"""The memory plan `auto` picks on the cards people rent, bf16 against fp8 block weights (estimates, CPU only).

    .venv/bin/python bench/memory_plans.py

Sizes the real 14B set on the meta device (nothing allocated, nothing downloaded) as the default server
holds it (the fast preset's LoRA fused, its factors in CPU memory; `TALKGEN_NATIVE_FUSE_LORA=false` keeps
rank-64 factors on the GPU too: their size is printed), and prints the plan and its estimated peak for
each card's free memory at 832x480 and 1280x720. These are the planner's estimates (`devices/memory.py`), not
measurements: `bench/native_gpu.py` measures the peaks on a GPU.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GIB = 2**30
CARDS = {"H200 141 GB": 139.0, "A100/H100 80 GB": 79.0, "L40S/A6000 48 GB": 44.4, "4090/L4/A10 24 GB": 22.5}
SIZES = {"480p": (832, 480), "720p": (1280, 720)}
LORA_RANK = 64


def footprints():  # type: ignore[no-untyped-def]
    import torch

    from talkgen.engines.native.devices.memory import Footprint, module_bytes
    from talkgen.engines.native.weights.real_size import meta_models

    dit, text, image, audio, vae = meta_models()
    bf16 = Footprint.of_modules(dit, text, image, audio, vae)
    linears = [m for n, m in dit.named_modules() if isinstance(m, torch.nn.Linear) and n.startswith("blocks.")]
    saved = sum(m.weight.numel() for m in linears)  # 2 bytes → 1 byte each (+ a 4-byte scale, negligible)
    saved_block = sum(m.weight.numel() for m in linears if m in set(dit.blocks[0].modules()))
    lora = sum(2 * LORA_RANK * (m.in_features + m.out_features) for m in linears if "audio" not in str(m))
    fp8 = replace(bf16, dit=bf16.dit - saved, dit_block=bf16.dit_block - saved_block)
    print(f"DiT with adapter: {bf16.dit / GIB:.1f} GiB in bf16, {fp8.dit / GIB:.1f} GiB with fp8 block weights; "
          f"rank-{LORA_RANK} LoRA factors {lora / GIB:.2f} GiB (on the GPU only when not fused); "
          f"module_bytes check {module_bytes(dit) / GIB:.1f} GiB")
    return {"bf16": bf16, "fp8": fp8}


def main() -> int:
    from talkgen.engines.native.devices.memory import Activations, plan_memory

    fps = footprints()
    print(f"\n{'card (free GiB)':<26}{'size':<6}{'bf16 weights':<48}{'fp8 block weights'}")
    for card, free in CARDS.items():
        for size, (w, h) in SIZES.items():
            cells = []
            for fp in fps.values():
                plan = plan_memory("auto", False, fp, Activations.for_size(w, h), int(free * GIB))
                cells.append(plan.describe().removeprefix("offload="))
            print(f"{card + f' ({free:g})':<26}{size:<6}{cells[0]:<48}{cells[1]}")
    print("Estimates of the planner (resident weights + the largest transient, + 10 %), not measurements.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
