"""Speed and memory of the native engine at the real 14B configuration, per preset, with random weights.

    python bench/native_gpu.py                   # the per-preset table (needs a CUDA GPU)
    python bench/native_gpu.py --sizes 480p --precisions fp8 --modes eager     # a part of it
    python bench/native_gpu.py --backends native flash _flash_3 sage          # + seconds per pass per backend
    python bench/native_gpu.py --smoke           # the same code at the tiny configuration on CPU

For each size, speaker count, precision (bf16; fp8 block weights) and mode (eager; compiled repeated
blocks) it measures one DiT pass with the weights as the default server holds them (the fast preset's LoRA
fused: a plain pass), the same pass with a rank-64 LoRA branch switched on (what a `quality` job pays on that
server), the compile time, and the peak GPU memory; plus the VAE decode of a window. From those it prints
GPU seconds per second of video for each preset (a window adds 72 frames = 2.88 s). Offload rows give the
same pass's speed and peak memory with the DiT's blocks streamed from CPU memory (`group`). The VAE decode
is timed in fp32 (used in the table) and in bf16.

Without a GPU (and without --smoke) it prints each preset's passes per window and exits 0.
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
NEW_SECONDS = 72 / 25  # video a window adds once the first one exists
LORA_RANK = 64


@dataclass
class Row:
    size: str
    speakers: int
    precision: str
    mode: str
    offload: str
    pass_s: float | None = None
    branch_s: float | None = None
    compile_s: float = 0.0
    peak_gib: float = float("nan")
    error: str = ""


def presets() -> dict:
    from talkgen.engines.native.weights.layout import ModelSet

    return ModelSet().presets


def print_pass_counts() -> None:
    for name, preset in presets().items():
        per_step = preset.passes_per_step()
        print(f"{name:<8} {preset.steps} steps x {per_step} passes = {preset.steps * per_step} DiT passes per window"
              f" (text guidance {preset.guidance_scale:g}, audio {preset.audio_guidance_scale:g}, "
              f"LoRA {'yes' if preset.lora else 'no'})")


def inputs(size: tuple[int, int], dit: dict, audio: dict, device, dtype, speakers: int):  # type: ignore[no-untyped-def]
    import torch

    from talkgen.engines.native.model.speakers import speaker_masks
    from talkgen.media.boxes import default_boxes

    w, h = size
    g = torch.Generator(device).manual_seed(0)
    args = {
        "hidden_states": torch.randn(1, 36, (WINDOW - 1) // 4 + 1, h // 8, w // 8, generator=g, device=device,
                                     dtype=dtype),
        "timestep": torch.tensor([500.0], device=device),
        "encoder_hidden_states": torch.randn(1, 512, dit["text_dim"], generator=g, device=device, dtype=dtype),
        "encoder_hidden_states_image": torch.randn(1, 257, dit["image_dim"], generator=g, device=device,
                                                   dtype=dtype),
        "audio": torch.randn(speakers, WINDOW, 5, audio["audio_layers"], audio["audio_channels"], generator=g,
                             device=device, dtype=dtype),
    }
    if speakers == 2:
        args["speaker_masks"] = speaker_masks(default_boxes(w, h), w, h, w, h).to(device)
    return args


def time_call(fn, repeats: int, sync) -> float:  # type: ignore[no-untyped-def]
    """Fastest of ``repeats`` timed calls (the least disturbed)."""
    best = float("inf")
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def time_vae_decode(size: tuple[int, int], device, smoke: bool, sync, dtype) -> float:  # type: ignore[no-untyped-def]
    import torch
    from diffusers import AutoencoderKLWan

    vae = (AutoencoderKLWan(base_dim=8, dim_mult=[1, 1, 1, 1], num_res_blocks=1) if smoke
           else AutoencoderKLWan()).to(device, dtype).eval()
    w, h = size
    z = torch.randn(1, 16, (WINDOW - 1) // 4 + 1, h // 8, w // 8, device=device, dtype=dtype)
    with torch.no_grad():
        vae.decode(z[:, :, :2])  # warm-up
        return time_call(lambda: vae.decode(z), 1, sync)


def measure(row: Row, dit: dict, audio: dict, device, dtype, repeats: int, sync) -> Row:  # type: ignore[no-untyped-def]
    """Fill ``row`` (a failure, e.g. out of memory, is recorded in it, not raised)."""
    import torch

    from talkgen.engines.native.model.fp8 import quantize_blocks
    from talkgen.engines.native.model.lora import AttachedLora
    from talkgen.engines.native.weights.real_size import random_dit, random_lora

    model = None
    try:
        home = torch.device("cpu") if row.offload == "group" else device
        model = random_dit(dit, audio, home, dtype)
        if row.precision == "fp8":
            quantize_blocks(model)
        lora = AttachedLora(model, random_lora(model, LORA_RANK), fused=1.0, dtype=dtype)
        if row.offload == "group":
            model.enable_group_offload(onload_device=device, offload_device=torch.device("cpu"),
                                       offload_type="block_level", num_blocks_per_group=1,
                                       use_stream=device.type == "cuda")
        if row.mode == "compiled":
            model.compile_repeated_blocks(fullgraph=False, dynamic=False)
        args = inputs(SIZES[row.size], dit, audio, device, dtype, row.speakers)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        with torch.no_grad():
            started = time.perf_counter()
            model(**args)  # warm-up: compiles in compiled mode
            sync()
            row.compile_s = time.perf_counter() - started if row.mode == "compiled" else 0.0
            row.pass_s = time_call(lambda: model(**args), repeats, sync)
            lora.use(0.0)  # a quality job on a server that fused the fast preset's LoRA: the branch runs
            model(**args)
            row.branch_s = time_call(lambda: model(**args), repeats, sync)
        if device.type == "cuda":
            row.peak_gib = torch.cuda.max_memory_allocated() / 2**30
    except Exception as exc:  # out of memory, a kernel this GPU lacks, …
        row.error = f"{type(exc).__name__}: {str(exc)[:80]}"
    finally:
        model = lora = None
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


def per_video_second(pass_s: float, decode_s: float, steps: int, passes: int) -> float:
    return (steps * passes * pass_s + decode_s) / NEW_SECONDS


def print_table(rows: list[Row], decode: dict[str, float]) -> None:
    fast, quality = presets()["fast"], presets()["quality"]
    print(f"\n{'size':<6}{'spk':>4} {'weights':<8}{'mode':<9}{'offload':<8}{'s/pass':>8}{'+LoRA':>8}"
          f"{'compile s':>10}{'peak GiB':>9}{'fast s/s':>10}{'quality s/s':>12}")
    for r in rows:
        head = f"{r.size:<6}{r.speakers:>4} {r.precision:<8}{r.mode:<9}{r.offload:<8}"
        if r.pass_s is None or r.branch_s is None:
            print(f"{head}unavailable: {r.error}")
            continue
        fast_s = per_video_second(r.pass_s, decode[r.size], fast.steps, fast.passes_per_step())
        quality_s = per_video_second(r.branch_s, decode[r.size], quality.steps, quality.passes_per_step())
        print(f"{head}{r.pass_s:>8.2f}{r.branch_s:>8.2f}{r.compile_s:>10.1f}{r.peak_gib:>9.1f}{fast_s:>10.1f}"
              f"{quality_s:>12.1f}")
    print(f"s/s = GPU seconds per second of video: steps x passes x s/pass + the window's VAE decode "
          f"({', '.join(f'{k} {v:.2f} s' for k, v in decode.items())}), over {NEW_SECONDS:.2f} s of new video. "
          f"fast: {fast.steps} x {fast.passes_per_step()} plain passes (LoRA fused); quality: {quality.steps} x "
          f"{quality.passes_per_step()} passes with the rank-{LORA_RANK} branch subtracting it (+LoRA column).")


def backend_table(sizes: list[str], backends: list[str], dit: dict, audio: dict, device, dtype, repeats: int,
                  sync) -> None:  # type: ignore[no-untyped-def]
    import torch

    from talkgen.engines.native.weights.real_size import random_dit

    print(f"\n{'size':<6} {'attention backend':<20} {'s/pass':>7}")
    for size in sizes:
        args = inputs(SIZES[size], dit, audio, device, dtype, 1)
        model = random_dit(dit, audio, device, dtype)
        for backend in backends:
            try:
                model.set_attention_backend(backend)
                with torch.no_grad():
                    model(**args)
                    seconds = time_call(lambda m=model, a=args: m(**a), repeats, sync)
                    print(f"{size:<6} {backend:<20} {seconds:>7.2f}")
            except Exception as exc:  # not installed here
                print(f"{size:<6} {backend:<20} unavailable: {type(exc).__name__}: {str(exc)[:60]}")
        model = None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", nargs="+", default=["480p", "720p"])
    parser.add_argument("--speakers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--precisions", nargs="+", default=["bf16", "fp8"])
    parser.add_argument("--modes", nargs="+", default=["eager", "compiled"])
    parser.add_argument("--offloads", nargs="*", default=["group"], help="offload rows (480p, one speaker, eager)")
    parser.add_argument("--backends", nargs="*", default=[], help="also time these attention backends")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="tiny configuration on CPU (checks the script)")
    args = parser.parse_args()
    print_pass_counts()
    import torch

    from talkgen.engines.native.weights.quiet import quiet_hub_logging
    from talkgen.engines.native.weights.real_size import REAL_AUDIO, REAL_DIT
    from talkgen.engines.native.weights.tiny import AUDIO, DIT

    quiet_hub_logging()
    if args.smoke:
        device, dtype, dit, audio, sizes = torch.device("cpu"), torch.float32, DIT, AUDIO, ["smoke"]
        modes = ["eager"]  # compiling on a CPU box takes minutes and measures nothing useful
    elif not torch.cuda.is_available():
        print("bench/native_gpu.py: no CUDA GPU here; run it on a GPU machine (nothing measured).")
        return 0
    else:
        device, dtype, dit, audio, sizes = torch.device("cuda"), torch.bfloat16, REAL_DIT, REAL_AUDIO, args.sizes
        modes = args.modes
        print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, bf16 compute, random 14B weights")

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    decode = {size: time_vae_decode(SIZES[size], device, args.smoke, sync, torch.float32) for size in sizes}
    for size in sizes:
        bf16 = time_vae_decode(SIZES[size], device, args.smoke, sync, torch.bfloat16)
        print(f"VAE decode of a {size} window: {decode[size]:.2f} s in fp32, {bf16:.2f} s in bf16 "
              "(TALKGEN_NATIVE_VAE_DTYPE)")
    rows = [measure(Row(size, speakers, precision, mode, "none"), dit, audio, device, dtype, args.repeats, sync)
            for size in sizes for speakers in args.speakers for precision in args.precisions for mode in modes]
    rows += [measure(Row(sizes[0], 1, precision, "eager", offload), dit, audio, device, dtype, args.repeats, sync)
             for offload in args.offloads for precision in args.precisions]
    print_table(rows, decode)
    if args.backends:
        backend_table(sizes, args.backends, dit, audio, device, dtype, args.repeats, sync)
    return 0


if __name__ == "__main__":
    sys.exit(main())
