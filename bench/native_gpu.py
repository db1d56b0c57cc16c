"""Speed of the native engine at the real 14B configuration, with random weights (no download needed).

    .venv/bin/python bench/native_gpu.py [--steps 40] [--sizes 480p 720p] [--backends native flash _flash_3 sage]
    .venv/bin/python bench/native_gpu.py --smoke      # same code at the tiny configuration on CPU

Prints seconds per DiT pass, per denoising step (3 passes with text guidance, 2 with text scale 1) and
per 81-frame window (steps x step + VAE decode of 81 frames), with peak GPU memory, for each attention
backend and option that works on this machine. Without a GPU it says so and exits 0.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SIZES = {"480p": (832, 480), "720p": (1280, 720), "smoke": (128, 128)}
WINDOW = 81


@dataclass
class Case:
    backend: str
    option: str  # "", "compile", "group-offload"


def build(dit: dict, audio: dict, device, dtype):  # type: ignore[no-untyped-def]
    from talkgen.engines.native.weights.real_size import random_dit

    return random_dit(dit, audio, device, dtype)


def inputs(size: tuple[int, int], dit: dict, audio: dict, device, dtype, speakers: int = 1):  # type: ignore[no-untyped-def]
    import torch

    w, h = size
    latent_frames = (WINDOW - 1) // 4 + 1
    return {
        "hidden_states": torch.randn(1, 36, latent_frames, h // 8, w // 8, device=device, dtype=dtype),
        "timestep": torch.tensor([500.0], device=device),
        "encoder_hidden_states": torch.randn(1, 512, dit["text_dim"], device=device, dtype=dtype),
        "encoder_hidden_states_image": torch.randn(1, 257, dit["image_dim"], device=device, dtype=dtype),
        "audio": torch.randn(speakers, WINDOW, 5, audio["audio_layers"], audio["audio_channels"], device=device,
                             dtype=dtype),
    }


def time_pass(model, args: dict, repeats: int, sync) -> float:  # type: ignore[no-untyped-def]
    import torch

    with torch.no_grad():
        model(**args)  # warm-up (and compile)
        sync()
        start = time.perf_counter()
        for _ in range(repeats):
            model(**args)
        sync()
    return (time.perf_counter() - start) / repeats


def time_vae_decode(size: tuple[int, int], device, smoke: bool, sync) -> float:  # type: ignore[no-untyped-def]
    import torch
    from diffusers import AutoencoderKLWan

    vae = (AutoencoderKLWan(base_dim=8, dim_mult=[1, 1, 1, 1], num_res_blocks=1) if smoke
           else AutoencoderKLWan()).to(device).eval()
    w, h = size
    z = torch.randn(1, 16, (WINDOW - 1) // 4 + 1, h // 8, w // 8, device=device)
    with torch.no_grad():
        vae.decode(z[:, :, :2])  # warm-up
        sync()
        start = time.perf_counter()
        vae.decode(z)
        sync()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--sizes", nargs="+", default=["480p", "720p"])
    parser.add_argument("--backends", nargs="+", default=["native", "_native_cudnn", "flash", "_flash_3", "sage"])
    parser.add_argument("--options", nargs="+", default=["", "compile", "group-offload"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="tiny configuration on CPU (checks the script)")
    args = parser.parse_args()
    import torch

    from talkgen.engines.native.weights.quiet import quiet_hub_logging
    from talkgen.engines.native.weights.real_size import REAL_AUDIO, REAL_DIT
    from talkgen.engines.native.weights.tiny import AUDIO, DIT

    quiet_hub_logging()

    if args.smoke:
        device, dtype, dit, audio, sizes = torch.device("cpu"), torch.float32, DIT, AUDIO, ["smoke"]
        backends, options = ["native"], ["", "group-offload"]
    elif not torch.cuda.is_available():
        print("bench/native_gpu.py: no CUDA GPU here; run it on a GPU machine (nothing measured).")
        return 0
    else:
        device, dtype, dit, audio, sizes = torch.device("cuda"), torch.bfloat16, REAL_DIT, REAL_AUDIO, args.sizes
        backends, options = args.backends, args.options
        print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, bf16, random 14B weights")

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    rows = []
    for size_name in sizes:
        size = SIZES[size_name]
        decode_s = time_vae_decode(size, device, args.smoke, sync)
        for backend in backends:
            for option in options:
                label = f"{backend}{'+' + option if option else ''}"
                try:
                    model = build(dit, audio, torch.device("cpu") if option == "group-offload" else device, dtype)
                    model.set_attention_backend(backend)
                    if option == "compile":
                        model.compile_repeated_blocks(fullgraph=False)
                    if option == "group-offload":
                        model.enable_group_offload(onload_device=device, offload_device=torch.device("cpu"),
                                                   offload_type="block_level", num_blocks_per_group=1,
                                                   use_stream=device.type == "cuda")
                    if device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats()
                    per_pass = time_pass(model, inputs(size, dit, audio, device, dtype), args.repeats, sync)
                    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
                    rows.append((size_name, label, per_pass, decode_s, peak))
                except Exception as exc:  # a backend not installed, out of memory, …
                    rows.append((size_name, label, None, decode_s, f"{type(exc).__name__}: {str(exc)[:60]}"))
                finally:
                    model = None
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
    print(f"{'size':<6} {'backend/option':<24} {'s/pass':>7} {'s/step (3 pass)':>16} {'s/step (2)':>11} "
          f"{'s/window':>9} {'4-step window':>14} {'peak GiB':>9}")
    for size_name, label, per_pass, decode_s, peak in rows:
        if per_pass is None:
            print(f"{size_name:<6} {label:<24} unavailable: {peak}")
            continue
        step3, step2 = 3 * per_pass, 2 * per_pass
        window = args.steps * step3 + decode_s
        distilled = 4 * step2 + decode_s
        print(f"{size_name:<6} {label:<24} {per_pass:>7.2f} {step3:>16.2f} {step2:>11.2f} {window:>9.1f} "
              f"{distilled:>14.1f} {peak:>9.1f}")
    print(f"window = {args.steps} steps x 3 passes + VAE decode of 81 frames; 4-step window = distill LoRA, text "
          "scale 1 (2 passes). One window adds 72 frames = 2.88 s of video.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
