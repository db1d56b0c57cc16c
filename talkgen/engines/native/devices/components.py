"""Every model the native engine runs, kept warm, placed on the GPU by a memory plan.

Where each model lives follows `MemoryPlan` (see `memory.py`): resident on the compute device, visiting it
from pinned CPU memory while it runs, or (the DiT under ``group``) streamed block by block. Every input is
moved to the device of the model that takes it, and every result leaves on a stated device, so no tensor
made on one device meets one on another.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from talkgen.engines.native.devices.gpu_errors import as_gpu_error
from talkgen.engines.native.devices.memory import Activations, MemoryPlan, free_bytes, plan_memory
from talkgen.engines.native.devices.options import NativeOptions, should_compile
from talkgen.engines.native.devices.params import write_params
from talkgen.engines.native.devices.placement import Visitor
from talkgen.engines.native.model.audio_encoder import AudioEncoder
from talkgen.engines.native.weights.fp8_scales import conform
from talkgen.engines.native.weights.layout import TEXT_TOKENS, ModelFiles
from talkgen.engines.native.weights.models import Models, footprint_for, load_models
from talkgen.engines.native.weights.quiet import quiet_hub_logging
from talkgen.engines.native.weights.tensors import read_weights
from talkgen.errors import EngineUnavailable

log = logging.getLogger(__name__)
CLIP_SIZE = 224
TEXT_CACHE_SIZE = 8
PLANNING_SIZE = (832, 480)
"""The job size ``auto`` plans for at load; a bigger job re-plans (lighter offload) when it starts."""


class _Resident:
    """A model that stays on its device (same interface as `Visitor`)."""

    def __init__(self, module: torch.nn.Module, device: torch.device) -> None:
        self.module = module.to(device)
        self.device = device

    @contextmanager
    def on(self) -> Iterator[torch.nn.Module]:
        yield self.module


class Components:
    """Text/image/audio encoders, VAE and the DiT (with the adapter for the job's speaker count)."""

    def __init__(self, models: Models, options: NativeOptions, plan: MemoryPlan | None = None) -> None:
        self.models = models
        self.options = options
        self.device = options.device
        self.dtype = options.dtype
        self.tokenizer = models.tokenizer
        self.text_encoder = models.text_encoder
        self.image_encoder = models.image_encoder
        self.vae = models.vae
        self.transformer = models.transformer
        self.footprint = models.footprint()  # weights do not change size: sized once
        cfg = self.vae.config
        self.latents_mean = torch.tensor(cfg.latents_mean).view(-1, 1, 1, 1)
        self.latents_std = torch.tensor(cfg.latents_std).view(-1, 1, 1, 1)
        self.vae_scale_spatial = 2 ** len(cfg.temperal_downsample)
        self.vae_scale_temporal = 2 ** sum(cfg.temperal_downsample)
        self.audio = AudioEncoder(models.wav2vec, models.feature_extractor, self.device, torch.float32)
        self._text_cache: dict[str, torch.Tensor] = {}  # per instance: a closed engine's models are not kept alive
        self._adapters: dict[int, dict[str, torch.Tensor]] = {}
        self.speakers = 1
        self.plan: MemoryPlan | None = None
        self._encoders: dict[str, _Resident | Visitor] = {}
        self._group = False
        self.passes_run = 0  # DiT passes this engine has run (for `maybe_compile`)
        self.compiled = False
        self._set_attention()
        self._apply(plan or self.plan_for(*PLANNING_SIZE))
        self._add_hooks()

    @classmethod
    def from_files(cls, files: ModelFiles, options: NativeOptions) -> Components:
        """Load the models under ``files``, each straight to where the memory plan puts it."""
        files.check()
        files.check_preset(options.preset)  # the default preset must run; another one is checked per job
        quiet_hub_logging()
        try:
            footprint = footprint_for(files, options)
            plan = plan_memory(options.offload, options.vae_tiling, footprint, Activations.for_size(*PLANNING_SIZE),
                               free_bytes(options.device))
            cpu, gpu = torch.device("cpu"), options.device
            encoders = gpu if plan.offload == "none" else cpu
            homes = {"text": encoders, "image": encoders, "audio": encoders, "vae": gpu,
                     "dit": cpu if plan.offload == "group" else gpu}
            models = load_models(files, options, homes)
        except EngineUnavailable:
            raise
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            gpu_error = as_gpu_error(exc, "while loading the models", options.offload, options.vae_tiling)
            if gpu_error is not None:
                raise gpu_error from exc
            raise EngineUnavailable(f"Could not load the native engine's models from {files.root}: "
                                    f"{type(exc).__name__}: {exc}", retryable=False) from exc
        return cls(models, options, plan)

    # -- memory plan -----------------------------------------------------------------------------------
    def plan_for(self, width: int, height: int) -> MemoryPlan:
        """The plan for a job of this size given the free memory now (the resident models count as free)."""
        free = free_bytes(self.device)
        if free is not None and self.plan is not None:
            free += self.footprint.resident(self.plan.offload)
        act = Activations.for_size(width, height, model_width=self.footprint.width)
        return plan_memory(self.options.offload, self.options.vae_tiling, self.footprint, act, free)

    def prepare(self, width: int, height: int) -> MemoryPlan:
        """Before a job: with ``auto``, move to a lighter plan when this job's size would not fit the current
        one (never back to a heavier one: that would cost a reload for a job that might come again)."""
        assert self.plan is not None
        if self.options.offload != "auto":
            return self.plan
        wanted = self.plan_for(width, height)
        if wanted.free is not None and wanted.lightness > self.plan.lightness:  # free is None: nothing measured
            log.warning("native engine: %dx%d does not fit %s; switching to %s", width, height,
                        self.plan.describe(), wanted.describe())
            self._apply(wanted)
        return self.plan

    def _apply(self, plan: MemoryPlan) -> None:
        """Put every model where ``plan`` says (from the current plan, towards less GPU memory)."""
        cpu = torch.device("cpu")
        if plan.vae_tiling:
            self.vae.enable_tiling()
        self.vae.to(self.device)
        offload = plan.offload
        for name, module in (("text", self.text_encoder), ("image", self.image_encoder),
                             ("audio", self.audio.model)):
            if offload == "none":
                self._encoders[name] = _Resident(module, self.device)
            else:
                target = self.device if name != "text" or plan.text_on_gpu else cpu
                self._encoders[name] = Visitor(module, target)
        if offload == "group" and not self._group:
            self.transformer.to(cpu)
            self.transformer.enable_group_offload(onload_device=self.device, offload_device=cpu,
                                                  offload_type="block_level", num_blocks_per_group=1,
                                                  use_stream=self.device.type == "cuda")
            self._group = True
        elif offload != "group":
            self.transformer.to(self.device)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        self.plan = plan
        log.info("native engine memory: %s", plan.describe())

    def _set_attention(self) -> None:
        t = self.transformer
        from diffusers.models.attention_dispatch import AttentionBackendName

        try:  # always set, "native" too: diffusers also keeps a process-wide active backend
            t.set_attention_backend(self.options.attention)
            backend = AttentionBackendName(self.options.attention.lower())
        except Exception as exc:
            raise EngineUnavailable(f"Attention backend {self.options.attention!r} is not usable here: {exc}. "
                                    "Use TALKGEN_NATIVE_ATTENTION=native or install its package.",
                                    retryable=False) from exc
        for block in t.blocks:
            block.audio_cross_attn._attention_backend = backend
        if self.options.world > 1:
            from talkgen.engines.native.model.parallel import enable_context_parallel

            enable_context_parallel(t, self.device, self.options.world)

    def _add_hooks(self) -> None:
        """First-block cache and compile go on after offloading hooks (diffusers' order)."""
        t = self.transformer
        if self.options.cache == "first-block":
            from diffusers.hooks import FirstBlockCacheConfig
            from diffusers.hooks._helpers import TransformerBlockMetadata, TransformerBlockRegistry

            from talkgen.engines.native.model.transformer import InfiniteTalkBlock

            TransformerBlockRegistry.register(InfiniteTalkBlock, TransformerBlockMetadata(return_hidden_states_index=0))
            t.enable_cache(FirstBlockCacheConfig(threshold=self.options.cache_threshold))
        self.maybe_compile(0)

    def maybe_compile(self, passes_ahead: int) -> None:
        """Compile the repeated blocks once `should_compile` says so (compiled code then serves every job)."""
        options = self.options
        if self.compiled or not should_compile(options.compile, self.device.type, self.passes_run + passes_ahead,
                                               options.compile_min_passes):
            return
        log.info("native engine: compiling the DiT's repeated blocks (%d passes run, %d ahead)", self.passes_run,
                 passes_ahead)
        self.transformer.compile_repeated_blocks(fullgraph=False, dynamic=False)
        self.compiled = True

    # -- adapters --------------------------------------------------------------------------------------
    def use_adapter(self, speakers: int) -> None:
        """Swap the audio adapter weights (single ↔ multi) in place; base weights stay."""
        if speakers == self.speakers:
            return
        path = self.models.adapters[speakers]
        if not Path(path).is_file():
            raise EngineUnavailable(f"The {'multi' if speakers == 2 else 'single'}-speaker InfiniteTalk adapter is "
                                    "missing from the models dir: an operator can run `talkgen models download "
                                    "infinitetalk-480p`.", retryable=False, private=f"missing: {path}")
        if speakers not in self._adapters:
            # in the form the model holds (fp8 + scale where its layers are fp8): a plain copy_ is then exact
            self._adapters[speakers] = conform(self.transformer, *read_weights(Path(path)))
        if self.speakers not in self._adapters:  # keep the current adapter on the CPU to swap back
            own = self.transformer.state_dict()
            self._adapters[self.speakers] = {k: own[k].detach().to("cpu", copy=True) for k in self._adapters[speakers]}
        misfits = write_params(self.transformer, self._adapters[speakers])
        if misfits:
            raise EngineUnavailable(f"Adapter {path} does not fit the model: {misfits[0]}.", retryable=False)
        self.speakers = speakers

    def use_lora(self, path: Path | None, strength: float, preset: str) -> None:
        """Run the next passes with the presets' LoRA at ``strength`` (``path`` None: without it)."""
        lora = self.models.lora
        if path is None:
            if lora is not None:
                lora.use(0.0)
            return
        if lora is None or lora.path != path:
            raise EngineUnavailable(f"The {preset} preset's LoRA is not loaded on this server: an operator must "
                                    "run `talkgen models download` (it fetches only what is missing) and restart "
                                    "the worker.", retryable=False, private=f"expected {path}")
        lora.use(strength)

    # -- encoders and VAE: inputs go to the model's device, results come back as stated ----------------
    @torch.no_grad()
    def encode_audio(self, track: np.ndarray, rate: int, fps: int, frames: int, out: Path | None = None) -> np.ndarray:
        """wav2vec2 features ``[frames, layers, hidden]`` (float32, on the CPU / in a memmap)."""
        audio = self._encoders["audio"]
        with audio.on():
            self.audio.device = audio.device
            return self.audio.encode(track, rate, fps, frames, out)

    @torch.no_grad()
    def encode_text(self, prompt: str) -> torch.Tensor:
        """``[1, 512, text_dim]`` on the compute device: umT5 states, zeroed past the prompt's tokens (as Wan)."""
        if prompt not in self._text_cache:
            if len(self._text_cache) >= TEXT_CACHE_SIZE:
                self._text_cache.pop(next(iter(self._text_cache)))
            self._text_cache[prompt] = self._encode_text(prompt)
        return self._text_cache[prompt].to(self.device)

    def _encode_text(self, prompt: str) -> torch.Tensor:
        tokens = self.tokenizer(prompt, padding="max_length", max_length=TEXT_TOKENS, truncation=True,
                                add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
        text = self._encoders["text"]
        with text.on() as enc:
            mask = tokens.attention_mask.to(text.device)
            states = enc(tokens.input_ids.to(text.device), mask).last_hidden_state
            states = states * mask[..., None].to(states.dtype)
        return states.to(self.dtype).cpu()

    @torch.no_grad()
    def encode_image(self, frame: torch.Tensor) -> torch.Tensor:
        """``[3, H, W]`` in [-1, 1] (any device) → CLIP penultimate states ``[1, 257, image_dim]`` on the device."""
        image = self._encoders["image"]
        x = F.interpolate(frame[None].float(), size=(CLIP_SIZE, CLIP_SIZE), mode="bicubic", align_corners=False)
        x = (((x + 1) / 2) - self.models.clip_mean.to(x.device)) / self.models.clip_std.to(x.device)
        with image.on() as enc:
            out = enc(pixel_values=x.to(image.device, self.dtype), output_hidden_states=True)
            states = out.hidden_states[-2]
        return states.to(self.device, self.dtype)

    @torch.no_grad()
    def vae_encode(self, video: torch.Tensor) -> torch.Tensor:
        """``[3, T, H, W]`` in [-1, 1] (any device) → normalised latents ``[16, t, h, w]`` on the device."""
        z = self.vae.encode(video[None].to(self.device, self.options.vae_dtype)).latent_dist.mode()[0].float()
        return (z - self.latents_mean.to(z)) / self.latents_std.to(z)

    @torch.no_grad()
    def vae_decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents ``[16, t, h, w]`` (any device) → video ``[3, T, H, W]`` in [-1, 1] on the device."""
        z = latents.to(self.device, torch.float32)
        z = z * self.latents_std.to(z) + self.latents_mean.to(z)
        return self.vae.decode(z[None].to(self.options.vae_dtype)).sample[0].float().clamp(-1, 1)
