"""Cost of the two-speaker routing per DiT pass: one vs two speakers, the old routing vs the new, in one run.

    OMP_NUM_THREADS=1 .venv/bin/python bench/two_speakers.py [--repeats 3] [--layers 4] [--frames 81] ...

"old" is the implementation before the cheap routing (`tests/native/two_speakers_reference.py`), "new" the
engine's. With CUDA: the real 14B DiT (random weights) at 832x480, 81 frames, bf16. Without: a small random
DiT (sizes below, fp32 unless ``--dtype bf16``). Also prints how the routing in bf16 compares with the old
fp32 map on the same bf16 model (``--no-precision`` skips it).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from talkgen.engines.native.model import transformer  # noqa: E402
from talkgen.engines.native.model.speakers import speaker_masks  # noqa: E402
from talkgen.engines.native.weights.real_size import REAL_AUDIO, REAL_DIT, random_dit  # noqa: E402
from talkgen.media.boxes import default_boxes  # noqa: E402
from tests.native import two_speakers_reference as old  # noqa: E402


def sizes(args: argparse.Namespace, cuda: bool) -> tuple[dict, dict, tuple[int, int]]:
    if cuda:
        return REAL_DIT, REAL_AUDIO, (832, 480)
    dit = {"num_attention_heads": args.heads, "attention_head_dim": args.head_dim, "in_channels": 36,
           "out_channels": 16, "text_dim": 64, "freq_dim": 64, "ffn_dim": args.ffn, "num_layers": args.layers,
           "image_dim": 64, "added_kv_proj_dim": args.heads * args.head_dim}
    audio = {"audio_layers": 2, "audio_channels": 32, "audio_intermediate_dim": 64, "audio_output_dim": 64,
             "audio_context_tokens": 32}
    return dit, audio, (args.width, args.height)


def inputs(dit: dict, audio: dict, size: tuple[int, int], frames: int, device: torch.device,
           dtype: torch.dtype) -> dict:
    g = torch.Generator(device).manual_seed(0)
    w, h = size
    return {
        "hidden_states": torch.randn(1, 36, (frames - 1) // 4 + 1, h // 8, w // 8, generator=g, device=device,
                                     dtype=dtype),
        "timestep": torch.tensor([500.0], device=device),
        "encoder_hidden_states": torch.randn(1, 512, dit["text_dim"], generator=g, device=device, dtype=dtype),
        "encoder_hidden_states_image": torch.randn(1, 257, dit["image_dim"], generator=g, device=device,
                                                   dtype=dtype),
        "audio": torch.randn(2, frames, 5, audio["audio_layers"], audio["audio_channels"], generator=g,
                             device=device, dtype=dtype),
        "speaker_masks": speaker_masks(default_boxes(w, h), w, h, w, h).to(device),
    }


def run(model: torch.nn.Module, args: dict, speakers: int, impl: str) -> torch.Tensor:
    with torch.no_grad():
        call = {**args, "audio": args["audio"][:speakers]}
        if impl == "new":
            return model(**call).sample
        with old.reference_implementation(model):
            return model(**call).sample


def timings(model: torch.nn.Module, args: dict, repeats: int, sync) -> dict[tuple[str, int], float]:  # type: ignore[no-untyped-def]
    """Fastest of ``repeats`` seconds per pass for each (impl, speakers); the cases interleave so load
    drifts hit all alike (the minimum is the least disturbed run on a shared machine)."""
    cases = [(impl, n) for impl in ("old", "new") for n in (1, 2)]
    for impl, n in cases:  # warm-up
        run(model, args, n, impl)
    times: dict[tuple[str, int], list[float]] = {case: [] for case in cases}
    for _ in range(repeats):
        for impl, n in cases:
            sync()
            start = time.perf_counter()
            run(model, args, n, impl)
            sync()
            times[(impl, n)].append(time.perf_counter() - start)
    return {case: min(values) for case, values in times.items()}


def parts(model: torch.nn.Module, args: dict, repeats: int, sync) -> list[str]:  # type: ignore[no-untyped-def]
    """Fastest seconds per block of each piece of two-speaker work, old vs new, on block 0's weights.

    "8-wide values" is the map with values narrower than the head dim (not flash-eligible: SDPA picks the
    memory-efficient kernel on CUDA, the math one on CPU), to choose the width on a GPU.
    """
    from talkgen.engines.native.model import speakers

    block, cfg = model.blocks[0], model.config
    attn = block.attn1
    hidden = args["hidden_states"]
    grid = (hidden.shape[2], hidden.shape[3] // 2, hidden.shape[4] // 2)
    length = grid[0] * grid[1] * grid[2]
    g = torch.Generator(hidden.device).manual_seed(1)
    x = torch.randn(1, length, cfg.num_attention_heads * cfg.attention_head_dim, generator=g, device=hidden.device,
                    dtype=hidden.dtype)
    rotary = model.rope(hidden)
    masks = speakers.token_masks(args["speaker_masks"], *grid[1:])
    values = speakers.mask_values(masks, cfg.num_attention_heads, cfg.attention_head_dim, x.dtype)

    def project() -> tuple[torch.Tensor, torch.Tensor]:
        q = attn.norm_q(attn.to_q(x)).unflatten(2, (attn.heads, -1))
        k = attn.norm_k(attn.to_k(x)).unflatten(2, (attn.heads, -1))
        return old._rotate(q, *rotary), old._rotate(k, *rotary)

    with torch.no_grad():
        q, k = project()
        positions = speakers.token_positions(speakers.reference_attention_map(q, k, masks, values))
        pieces = {
            "q/k projected twice (old only)": (project, None),
            "reference map": (lambda: old.reference_attention_map(q, k, masks),
                              lambda: speakers.reference_attention_map(q, k, masks, values)),
            "reference map, 8-wide values": (None, lambda: speakers.reference_attention_map(
                q, k, masks, speakers.mask_values(masks, cfg.num_attention_heads, 8, x.dtype))),
            "label RoPE on q": (lambda: old.rope_1d(q, positions), lambda: speakers.rope_1d(q, positions)),
        }
        lines = [f"{'per block':<32} {'old s':>9} {'new s':>9}"]
        for name, fns in pieces.items():
            best: list[str] = []
            for fn in fns:
                if fn is None:
                    best.append("-")
                    continue
                fn()
                times = []
                for _ in range(repeats):
                    sync()
                    start = time.perf_counter()
                    fn()
                    sync()
                    times.append(time.perf_counter() - start)
                best.append(f"{min(times):.4f}")
            lines.append(f"{name:<32} {best[0]:>9} {best[1]:>9}")
    return lines


def routing_precision(model: torch.nn.Module, args: dict, fp32_out: torch.Tensor | None) -> list[str]:
    """The bf16 model routed by the new bf16 map vs by the old fp32 map (and both vs an fp32 pass if given)."""
    recorded: dict[str, list[torch.Tensor]] = {"old": [], "new": []}

    def recorder(impl: str, real):  # type: ignore[no-untyped-def]
        return lambda *a: recorded[impl].append(real(*a)) or recorded[impl][-1]

    originals = (transformer.token_positions, old.token_positions)
    transformer.token_positions, old.token_positions = recorder("new", originals[0]), recorder("old", originals[1])
    try:
        out = {impl: run(model, args, 2, impl).float() for impl in ("old", "new")}
    finally:
        transformer.token_positions, old.token_positions = originals
    flips = [100 * ((a - 12).sign() != (b - 12).sign()).float().mean().item()
             for a, b in zip(recorded["old"], recorded["new"], strict=True)]
    delta = (recorded["old"][0].float() - recorded["new"][0].float()).abs()
    lines = [f"bf16 model, new bf16 map vs old fp32 map: tokens routed to another class per block "
             f"{' '.join(f'{f:.2f}' for f in flips)} %; block 1 |Δposition| median {delta.median().item():.4f} "
             f"(positions span 0-24); pass rel. L2 {_rel(out['new'], out['old']):.2e}"]
    if fp32_out is not None:
        lines.append(f"against the fp32 pass: bf16 + old fp32 map rel. L2 {_rel(out['old'], fp32_out):.2e}, "
                     f"bf16 + new bf16 map {_rel(out['new'], fp32_out):.2e}")
    return lines


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=32)
    parser.add_argument("--ffn", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=192)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default=None, help="default: bf16 on CUDA, else fp32")
    parser.add_argument("--no-precision", action="store_true", help="skip the bf16-vs-fp32 routing comparison")
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype or ("bf16" if cuda else "fp32")]
    dit, audio, size = sizes(args, cuda)
    torch.manual_seed(0)
    model = random_dit(dit, audio, device, dtype)
    data = inputs(dit, audio, size, args.frames, device, dtype)
    grid = data["hidden_states"].shape[2:]
    tokens = grid[0] * (grid[1] // 2) * (grid[2] // 2)
    print(f"{device.type} {torch.get_num_threads()} threads, {str(dtype).removeprefix('torch.')}: "
          f"{dit['num_layers']} blocks, {dit['num_attention_heads']} heads x {dit['attention_head_dim']}, "
          f"{size[0]}x{size[1]}, {args.frames} frames ({tokens} tokens), best of {args.repeats}")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    result = timings(model, data, args.repeats, sync)
    print(f"{'impl':<5} {'1 speaker s':>12} {'2 speakers s':>13} {'two/one':>8}")
    for impl in ("old", "new"):
        one, two = result[(impl, 1)], result[(impl, 2)]
        print(f"{impl:<5} {one:>12.3f} {two:>13.3f} {two / one:>8.3f}")
    print(f"two speakers, new vs old: {result[('new', 2)] / result[('old', 2)]:.3f}x the time")
    print("\n".join(parts(model, data, max(args.repeats, 5), sync)))
    if not args.no_precision:
        fp32_out = None
        if dtype != torch.bfloat16:  # the same weights, rounded to bf16 (norms stay fp32 as the loader keeps them)
            fp32_out = run(model, data, 2, "old")
            torch.manual_seed(0)
            model = random_dit(dit, audio, device, torch.bfloat16)
            data = {k: v.bfloat16() if k not in ("timestep", "speaker_masks") else v for k, v in data.items()}
        print("\n".join(routing_precision(model, data, fp32_out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
