"""One real-size window through the real engine path, per offload mode: speed and peak GPU memory.

    python bench/native_gpu_engine.py [--modes none model group] [--sizes 480p] [--steps 4]
    python bench/native_gpu_engine.py --smoke     # the same path at the tiny configuration on CPU

Builds the real InfiniteTalk set (14B DiT, umT5-XXL, CLIP-H, Wan VAE, wav2vec2) with random weights on
the GPU (no download), places it by each offload mode, and runs `TalkGen.generate` on the bundled portrait
and speech capped to one 81-frame window, text guidance 1 (2 passes per step). Prints per mode: setup
(build + placement), the window, seconds per DiT pass, measured peak GPU memory and the plan's estimate.
Without a GPU it says so and exits 0.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SIZES = {"480p": (832, 480), "720p": (1280, 720), "smoke": (128, 128)}
ENGINE = "native-random-weights"


def run_mode(mode: str, size: tuple[int, int], steps: int, smoke: bool, work: Path) -> dict:
    import torch

    from talkgen import hookimpl
    from talkgen.engines.native.devices.components import Components
    from talkgen.engines.native.devices.memory import Activations, estimate
    from talkgen.engines.native.devices.options import NativeOptions
    from talkgen.engines.native.run.engine import NativeEngine
    from talkgen.plugins import register_plugin, reset_registry, unregister_plugin
    from talkgen.service import TalkGen
    from talkgen.settings import Settings

    cuda = torch.cuda.is_available() and not smoke
    device = torch.device("cuda" if cuda else "cpu")
    settings = Settings(engine=ENGINE, models_dir=work / "none", work_dir=work, native_device=str(device),
                        native_offload=mode)
    started = time.perf_counter()
    if smoke:
        from talkgen.engines.native.weights.layout import ModelFiles
        from talkgen.engines.native.weights.models import load_models
        from talkgen.engines.native.weights.tiny import write_tiny

        tiny = settings.model_copy(update={"models_dir": write_tiny(work / f"tiny-{mode}")})
        options = NativeOptions.from_settings(tiny)
        models = load_models(ModelFiles.from_settings(tiny), options, dict.fromkeys(
            ("text", "image", "audio", "vae", "dit"), device))
    else:
        from talkgen.engines.native.weights.real_size import random_models

        options = NativeOptions.from_settings(settings)
        models = random_models(device, options.dtype, adapters={})
    components = Components(models, options)
    setup = time.perf_counter() - started
    engine = NativeEngine(settings, components=components)

    class Plugin:
        @hookimpl
        def register_engines(self, register):  # type: ignore[no-untyped-def]
            register(ENGINE, lambda _settings: engine)

    register_plugin(Plugin(), name=ENGINE)
    reset_registry()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    try:
        result = TalkGen(settings).generate({
            "image_path": str(ROOT / "examples" / "portrait.png"), "wav_path": str(ROOT / "examples" / "speech.wav"),
            "width": size[0], "height": size[1], "max_frame": 81, "steps": steps, "guidance_scale": 1.0,
            "seed": 1}, output=str(work / f"{mode}.mp4"))
    finally:
        unregister_plugin(ENGINE)
        reset_registry()
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    window = engine.last_timings.windows[0]
    plan, footprint = components.plan, models.footprint()
    estimated = estimate(plan.offload, plan.vae_tiling, footprint,
                         Activations.for_size(*size, model_width=footprint.width), plan.text_on_gpu)
    row = {"mode": mode, "plan": plan.describe(), "setup": setup, "window": window,
           "per_pass": window / (2 * steps), "peak": peak, "estimate": estimated / 2**30,
           "frames": result.frames}
    engine.close()
    del components, models
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return row


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--modes", nargs="+", default=["none", "model", "group"])
    parser.add_argument("--sizes", nargs="+", default=["480p"])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--smoke", action="store_true", help="tiny configuration on CPU (checks the script)")
    args = parser.parse_args()
    import tempfile

    import torch

    from talkgen.engines.native.weights.quiet import quiet_hub_logging

    quiet_hub_logging()
    if not args.smoke and not torch.cuda.is_available():
        print("bench/native_gpu_engine.py: no CUDA GPU here; run it on a GPU machine (nothing measured).")
        return 0
    sizes = ["smoke"] if args.smoke else args.sizes
    if not args.smoke:
        print(f"GPU: {torch.cuda.get_device_name()}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} "
              f"GiB, torch {torch.__version__}; real-size models, random weights, bf16")
    print(f"{'size':<6} {'mode':<6} {'setup s':>8} {'window s':>9} {'s/pass':>7} {'peak GiB':>9} {'est. GiB':>9}  plan")
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            for mode in args.modes:
                try:
                    r = run_mode(mode, SIZES[size], args.steps, args.smoke, Path(tmp))
                except Exception as exc:  # a mode that does not fit this card, …
                    print(f"{size:<6} {mode:<6} failed: {type(exc).__name__}: {str(exc)[:200]}")
                    continue
                print(f"{size:<6} {r['mode']:<6} {r['setup']:>8.1f} {r['window']:>9.1f} {r['per_pass']:>7.2f} "
                      f"{r['peak']:>9.1f} {r['estimate']:>9.1f}  {r['plan']}", flush=True)
    print(f"One 81-frame window ({args.steps} steps x 2 passes, text guidance 1) + encoders + VAE; s/pass = window / "
          "passes (includes the window's VAE work).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
