"""Every model the native engine runs, loaded once and kept warm, with device/offload handling."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from talkgen.engines.native.audio_encoder import AudioEncoder
from talkgen.engines.native.layout import TEXT_TOKENS, ModelFiles
from talkgen.engines.native.loading import load_transformer, read_config
from talkgen.engines.native.options import NativeOptions
from talkgen.engines.native.quiet import quiet_hub_logging
from talkgen.engines.native.weights import read_weights
from talkgen.errors import EngineUnavailable

CLIP_SIZE = 224
TEXT_CACHE_SIZE = 8


class Components:
    """Text/image/audio encoders, VAE and the DiT (with the adapter for the job's speaker count)."""

    def __init__(self, files: ModelFiles, options: NativeOptions) -> None:
        files.check()
        self.files = files
        self.options = options
        self.device = options.device
        self.dtype = options.dtype
        self._text_cache: dict[str, torch.Tensor] = {}  # per instance: a closed engine's models are not kept alive
        quiet_hub_logging()
        try:
            self._load()
        except EngineUnavailable:
            raise
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise EngineUnavailable(f"Could not load the native engine's models from {files.root}: "
                                    f"{type(exc).__name__}: {exc}", retryable=False) from exc

    def _load(self) -> None:
        from diffusers import AutoencoderKLWan
        from transformers import (
            AutoTokenizer,
            CLIPVisionModel,
            UMT5EncoderModel,
            Wav2Vec2FeatureExtractor,
            Wav2Vec2Model,
        )

        wan, store = self.files.wan, self._home
        self.tokenizer = AutoTokenizer.from_pretrained(wan / "tokenizer")
        self.text_encoder = UMT5EncoderModel.from_pretrained(wan / "text_encoder", dtype=self.dtype).to(store).eval()
        self.image_encoder = CLIPVisionModel.from_pretrained(wan / "image_encoder", dtype=self.dtype).to(store).eval()
        processor = json.loads((wan / "image_processor" / "preprocessor_config.json").read_text())
        self.clip_mean = torch.tensor(processor["image_mean"]).view(3, 1, 1)
        self.clip_std = torch.tensor(processor["image_std"]).view(3, 1, 1)
        self.vae = AutoencoderKLWan.from_pretrained(wan / "vae", torch_dtype=torch.float32).to(store).eval()
        if self.options.vae_tiling:
            self.vae.enable_tiling()
        cfg = self.vae.config
        self.latents_mean = torch.tensor(cfg.latents_mean).view(-1, 1, 1, 1)
        self.latents_std = torch.tensor(cfg.latents_std).view(-1, 1, 1, 1)
        self.vae_scale_spatial = 2 ** len(cfg.temperal_downsample)
        self.vae_scale_temporal = 2 ** sum(cfg.temperal_downsample)
        w2v = Wav2Vec2Model.from_pretrained(self.files.wav2vec, attn_implementation="sdpa").to(store).eval()
        extractor = Wav2Vec2FeatureExtractor.from_pretrained(self.files.wav2vec)
        self.audio = AudioEncoder(w2v, extractor, self.device if self.options.offload == "none" else store,
                                  torch.float32)
        self._adapters: dict[int, dict[str, torch.Tensor]] = {}
        self.speakers = 1
        self.transformer = load_transformer(
            self.files.transformer, self._dit_config(), adapter=self.files.adapter(1),
            loras=self.options.loras, dtype=self.dtype, device=store,
        )
        self._configure_transformer()

    @property
    def _home(self) -> torch.device:
        """Where models rest: the GPU, or the CPU when offloading."""
        return torch.device("cpu") if self.options.offload != "none" else self.device

    def _dit_config(self) -> dict:
        cfg = dict(read_config(self.files.transformer))
        from transformers import AutoConfig

        w2v = AutoConfig.from_pretrained(self.files.wav2vec)
        cfg.setdefault("audio_layers", w2v.num_hidden_layers)
        return cfg

    def _configure_transformer(self) -> None:
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
            from talkgen.engines.native.parallel import enable_context_parallel

            enable_context_parallel(t, self.device, self.options.world)
        if self.options.offload == "group":
            t.enable_group_offload(onload_device=self.device, offload_device=torch.device("cpu"),
                                   offload_type="block_level", num_blocks_per_group=1,
                                   use_stream=self.device.type == "cuda")
        if self.options.cache == "first-block":
            from diffusers.hooks import FirstBlockCacheConfig
            from diffusers.hooks._helpers import TransformerBlockMetadata, TransformerBlockRegistry

            from talkgen.engines.native.transformer import InfiniteTalkBlock

            TransformerBlockRegistry.register(InfiniteTalkBlock, TransformerBlockMetadata(return_hidden_states_index=0))
            t.enable_cache(FirstBlockCacheConfig(threshold=self.options.cache_threshold))
        if self.options.compile:
            t.compile_repeated_blocks(fullgraph=False, dynamic=False)

    def use_adapter(self, speakers: int) -> None:
        """Swap the audio adapter weights (single ↔ multi) in place; base weights stay."""
        if speakers == self.speakers:
            return
        if speakers not in self._adapters:
            tensors, _ = read_weights(self.files.adapter(speakers))
            self._adapters[speakers] = tensors
        if self.speakers not in self._adapters:
            own = self.transformer.state_dict()
            self._adapters[self.speakers] = {k: own[k].clone() for k in self._adapters[speakers]}
        state = self._adapters[speakers]
        with torch.no_grad():
            params = dict(self.transformer.named_parameters())
            for key, value in state.items():
                if key not in params or params[key].shape != value.shape:
                    raise EngineUnavailable(f"Adapter {self.files.adapter(speakers)} does not fit the model: {key}.")
                params[key].copy_(value.to(params[key].dtype))
        self.speakers = speakers

    @contextmanager
    def on_device(self, module: torch.nn.Module) -> Iterator[torch.nn.Module]:
        """With model offload: move ``module`` to the GPU for the block, back to the CPU after."""
        if self.options.offload != "model":
            yield module
            return
        module.to(self.device)
        try:
            yield module
        finally:
            module.to("cpu")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    @torch.no_grad()
    def encode_text(self, prompt: str) -> torch.Tensor:
        """``[1, 512, text_dim]``: umT5 states, zeroed past the prompt's tokens (as Wan does)."""
        if prompt not in self._text_cache:
            if len(self._text_cache) >= TEXT_CACHE_SIZE:
                self._text_cache.pop(next(iter(self._text_cache)))
            self._text_cache[prompt] = _encode_text(self, prompt)
        return self._text_cache[prompt].to(self.device)

    @torch.no_grad()
    def encode_image(self, frame: torch.Tensor) -> torch.Tensor:
        """``[3, H, W]`` in [-1, 1] → CLIP penultimate hidden states ``[1, 257, image_dim]``."""
        x = F.interpolate(frame[None].float(), size=(CLIP_SIZE, CLIP_SIZE), mode="bicubic", align_corners=False)
        x = (((x + 1) / 2) - self.clip_mean) / self.clip_std
        with self.on_device(self.image_encoder) as enc:
            out = enc(pixel_values=x.to(self.device, self.dtype), output_hidden_states=True)
        return out.hidden_states[-2].to(self.dtype)

    @torch.no_grad()
    def vae_encode(self, video: torch.Tensor) -> torch.Tensor:
        """``[3, T, H, W]`` in [-1, 1] → normalised latents ``[16, t, h, w]``."""
        with self.on_device(self.vae) as vae:
            dist = vae.encode(video[None].to(self.device, torch.float32)).latent_dist
            z = dist.mode()[0]
        return (z - self.latents_mean.to(z)) / self.latents_std.to(z)

    @torch.no_grad()
    def vae_decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents ``[16, t, h, w]`` → video ``[3, T, H, W]`` in [-1, 1]."""
        z = latents.float() * self.latents_std.to(latents.device) + self.latents_mean.to(latents.device)
        with self.on_device(self.vae) as vae:
            return vae.decode(z[None].to(self.device)).sample[0].clamp(-1, 1)


def _encode_text(components: Components, prompt: str) -> torch.Tensor:
    tokens = components.tokenizer(prompt, padding="max_length", max_length=TEXT_TOKENS, truncation=True,
                                  add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
    mask = tokens.attention_mask
    with components.on_device(components.text_encoder) as enc:
        states = enc(tokens.input_ids.to(components.device), mask.to(components.device)).last_hidden_state
    states = states * mask.to(states.device)[..., None]
    return states.to(components.dtype).cpu()
