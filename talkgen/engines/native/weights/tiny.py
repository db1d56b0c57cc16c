"""`talkgen models tiny DIR`: seeded random weights for every component, in the real on-disk layout.

Same folders, file names and formats as the real models (diffusers Wan folder with a sharded transformer,
the DiT again in Wan's original layout, InfiniteTalk adapters under their original key names, wav2vec2 in
HF layout, the vocal separator in the seed file's), so the real loading code runs on CPU in seconds. The
weights are random: videos show the pipeline working, not a face.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from talkgen.engines.native.weights.keys import to_original
from talkgen.engines.native.weights.layout import (
    ADAPTERS,
    WAN_DIR,
    WAN_ORIGINAL_DIR,
    WAV2VEC_DIR,
    ModelSet,
    SamplingPreset,
)
from talkgen.engines.native.weights.tiny_lora import write_tiny_lora
from talkgen.engines.native.weights.tiny_separator import write_tiny_separator
from talkgen.separation.config import SEPARATOR_FILE

TINY_LORA = "loras/tiny-step-distill-rank4.safetensors"
TINY = ModelSet(
    name="tiny",
    presets={
        "fast": SamplingPreset(steps=2, guidance_scale=1.0, audio_guidance_scale=2.0, shift=2.0, shift_720p=2.0,
                               lora=TINY_LORA, source="the real fast preset's passes, on fewer steps"),
        "quality": SamplingPreset(steps=4, guidance_scale=5.0, audio_guidance_scale=4.0, shift=7.0, shift_720p=11.0,
                                  source="the real quality preset's passes, on fewer steps"),
    },
    notes={"weights": "random (seeded): shows the pipeline, not a real face"},
)
DIT = {"num_attention_heads": 2, "attention_head_dim": 16, "in_channels": 36, "out_channels": 16, "text_dim": 32,
       "freq_dim": 32, "ffn_dim": 64, "num_layers": 2, "image_dim": 32, "added_kv_proj_dim": 32}
AUDIO = {"audio_layers": 2, "audio_channels": 32, "audio_intermediate_dim": 32, "audio_output_dim": 32,
         "audio_context_tokens": 4}
SENTENCES = [
    "A person talking naturally", "a woman is speaking to the camera", "a man explains something calmly",
    "bright tones, overexposed, static, blurred details, subtitles, worst quality, low quality",
    "two people have a conversation", "ugly, incomplete, deformed, messy background",
]


def _is_audio_key(key: str) -> bool:
    return key.startswith("audio_proj.") or ".audio_cross_attn." in key or ".norm_x." in key


def write_tiny(root: Path, seed: int = 0) -> Path:
    """Write the tiny preset under ``root`` and return it."""
    from safetensors.torch import save_file

    from talkgen.engines.native.weights.quiet import quiet_hub_logging

    quiet_hub_logging()
    root = Path(root)
    wan = root / WAN_DIR
    torch.manual_seed(seed)
    write_tokenizer(wan / "tokenizer")
    vocab = len(json.loads((wan / "tokenizer" / "tokenizer.json").read_text())["model"]["vocab"])
    _text_encoder(wan / "text_encoder", vocab)
    _image_encoder(wan)
    _vae(wan / "vae")
    _wav2vec(root / WAV2VEC_DIR)

    from diffusers import WanTransformer3DModel

    from talkgen.engines.native.model.transformer import InfiniteTalkTransformer3DModel

    full = InfiniteTalkTransformer3DModel(**DIT, **AUDIO)
    state = {k: v.contiguous() for k, v in full.state_dict().items()}
    base = {k: v for k, v in state.items() if not _is_audio_key(k)}
    wan_dit = WanTransformer3DModel(**DIT)
    wan_dit.load_state_dict(base, strict=True)
    wan_dit.save_pretrained(wan / "transformer", max_shard_size="150KB")
    _original_layout(root / WAN_ORIGINAL_DIR, base)
    adapter = {to_original(k): v for k, v in state.items() if _is_audio_key(k)}
    for speakers, rel in ADAPTERS.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if speakers == 2:  # a different adapter, as the real single and multi files are
            adapter = {k: v + 0.02 * torch.randn_like(v) for k, v in adapter.items()}
        save_file(adapter, str(path))
    write_tiny_lora(root / TINY_LORA, base)
    write_tiny_separator(root / SEPARATOR_FILE, seed)
    _model_index(wan)
    TINY.save(root)
    make_readable(root)
    return root


def make_readable(root: Path) -> None:
    """Give every file under ``root`` read permission for all: safetensors writes owner-only files, which a
    worker running as another user (the images' non-root user) could not open."""
    for path in root.rglob("*"):
        if path.is_file():
            path.chmod(path.stat().st_mode | 0o444)


def _original_layout(folder: Path, base: dict[str, torch.Tensor]) -> None:
    """The DiT again, in Wan's own naming, two shards plus an index and Wan's config.json."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    original = {to_original(k): v for k, v in base.items()}
    keys = sorted(original)
    shards = [keys[: len(keys) // 2], keys[len(keys) // 2:]]
    weight_map = {}
    for i, shard in enumerate(shards, start=1):
        name = f"diffusion_pytorch_model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file({k: original[k] for k in shard}, str(folder / name))
        weight_map.update(dict.fromkeys(shard, name))
    index = {"metadata": {"total_size": sum(v.numel() * v.element_size() for v in original.values())},
             "weight_map": weight_map}
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    config = {"_class_name": "WanModel", "model_type": "i2v", "patch_size": [1, 2, 2], "text_len": 512,
              "in_dim": DIT["in_channels"], "dim": DIT["num_attention_heads"] * DIT["attention_head_dim"],
              "ffn_dim": DIT["ffn_dim"], "freq_dim": DIT["freq_dim"], "text_dim": DIT["text_dim"],
              "out_dim": DIT["out_channels"], "num_heads": DIT["num_attention_heads"],
              "num_layers": DIT["num_layers"], "eps": 1e-6}
    (folder / "config.json").write_text(json.dumps(config, indent=2))


def write_tokenizer(folder: Path) -> None:
    """A small Unigram T5 tokenizer (the real umT5 one is a download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import T5TokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=200, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>")
    tok.train_from_iterator(SENTENCES * 4, trainer=trainer)
    fast = T5TokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                           extra_ids=0)
    fast.save_pretrained(folder)


def _text_encoder(folder: Path, vocab: int) -> None:
    from transformers import UMT5Config, UMT5EncoderModel

    cfg = UMT5Config(vocab_size=vocab, d_model=DIT["text_dim"], d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                     relative_attention_num_buckets=8, relative_attention_max_distance=32)
    UMT5EncoderModel(cfg).save_pretrained(folder)


def _image_encoder(wan: Path) -> None:
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    cfg = CLIPVisionConfig(hidden_size=DIT["image_dim"], intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, image_size=224, patch_size=14, projection_dim=32)
    CLIPVisionModel(cfg).save_pretrained(wan / "image_encoder")
    CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224},
                       resample=3).save_pretrained(wan / "image_processor")


def _vae(folder: Path) -> None:
    from diffusers import AutoencoderKLWan

    AutoencoderKLWan(base_dim=8, dim_mult=[1, 1, 1, 1], num_res_blocks=1).save_pretrained(folder)


def _wav2vec(folder: Path) -> None:
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    cfg = Wav2Vec2Config(hidden_size=AUDIO["audio_channels"], num_hidden_layers=AUDIO["audio_layers"],
                         num_attention_heads=2, intermediate_size=64, conv_dim=(32,) * 7, conv_bias=False,
                         feat_extract_norm="group", do_stable_layer_norm=False, num_conv_pos_embeddings=16,
                         num_conv_pos_embedding_groups=4)
    Wav2Vec2Model(cfg).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=False,
                             return_attention_mask=False).save_pretrained(folder)


def _model_index(wan: Path) -> None:
    index = {"_class_name": "WanImageToVideoPipeline", "_diffusers_version": "0.42.1",
             "image_encoder": ["transformers", "CLIPVisionModel"],
             "image_processor": ["transformers", "CLIPImageProcessor"],
             "text_encoder": ["transformers", "UMT5EncoderModel"], "tokenizer": ["transformers", "T5TokenizerFast"],
             "transformer": ["diffusers", "WanTransformer3DModel"], "vae": ["diffusers", "AutoencoderKLWan"]}
    (wan / "model_index.json").write_text(json.dumps(index, indent=2))
