"""The cheap two-speaker routing equals the old implementation (fp32, CPU) to 1e-5."""

from __future__ import annotations

import pytest
import torch

from talkgen.engines.native.model import speakers
from talkgen.engines.native.model.speakers import mask_values, speaker_masks, token_masks
from talkgen.engines.native.model.transformer import InfiniteTalkTransformer3DModel
from talkgen.media.boxes import default_boxes
from tests.native import two_speakers_reference as old

DIT = {"num_attention_heads": 4, "attention_head_dim": 16, "in_channels": 36, "out_channels": 16, "text_dim": 32,
       "freq_dim": 32, "ffn_dim": 64, "num_layers": 3, "image_dim": 32, "added_kv_proj_dim": 64}
AUDIO = {"audio_layers": 2, "audio_channels": 32, "audio_intermediate_dim": 32, "audio_output_dim": 32,
         "audio_context_tokens": 4}
TOLERANCE = 1e-5


def _error(new: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """(max abs error, max abs error / max abs reference)."""
    abs_err = (new.double() - ref.double()).abs().max().item()
    return abs_err, abs_err / ref.double().abs().max().item()


@pytest.fixture(scope="module")
def model() -> InfiniteTalkTransformer3DModel:
    torch.manual_seed(0)
    dit = InfiniteTalkTransformer3DModel(**DIT, **AUDIO).eval().requires_grad_(False)
    with torch.no_grad():  # sharper attention than the default init, so routing has clear winners
        for block in dit.blocks:
            block.attn1.to_q.weight.mul_(4.0)
            block.attn1.to_k.weight.mul_(4.0)
    return dit


def _inputs(speakers_count: int, boxes: list[list[float]] | None = None) -> tuple[tuple, dict]:
    g = torch.Generator().manual_seed(speakers_count)
    x = torch.randn(1, 36, 3, 16, 24, generator=g)  # grid 3 x 8 x 12: 96 tokens per latent frame
    args = (x, torch.tensor([700.0]), torch.randn(1, 512, 32, generator=g), torch.randn(1, 257, 32, generator=g))
    masks = speaker_masks(boxes or default_boxes(192, 128), 192, 128, 192, 128)
    return args, {"audio": torch.randn(speakers_count, 9, 5, 2, 32, generator=g), "speaker_masks": masks}


@pytest.mark.parametrize("boxes", [None, [[10, 0, 90, 100], [110, 20, 180, 128]]])
def test_two_speaker_pass_equals_the_old_implementation(model, monkeypatch, boxes):
    monkeypatch.setattr(speakers, "MAP_CHUNK_TOKENS", 100)  # several chunks, one ending inside a frame
    args, kwargs = _inputs(2, boxes)
    with torch.no_grad():
        new = model(*args, **kwargs).sample
        with old.reference_implementation(model):
            ref = model(*args, **kwargs).sample
        one_speaker = model(*args, **{**kwargs, "audio": kwargs["audio"][:1]}).sample
    abs_err, rel_err = _error(new, ref)
    assert abs_err < TOLERANCE and rel_err < TOLERANCE, (abs_err, rel_err)
    assert (new - one_speaker).abs().max() > 1e-3  # the routed second speaker changes the output


def test_one_speaker_pass_is_unchanged(model):
    args, kwargs = _inputs(1)
    with torch.no_grad():
        new = model(*args, **kwargs).sample
        with old.reference_implementation(model):
            ref = model(*args, **kwargs).sample
    assert torch.equal(new, ref)


def test_reference_map_and_positions_equal_the_old_ones():
    g = torch.Generator().manual_seed(3)
    heads, dim, frame_tokens, length = 4, 16, 96, 3 * 96
    q = torch.randn(1, length, heads, dim, generator=g) * 3
    k = torch.randn(1, length, heads, dim, generator=g) * 3
    masks = token_masks(speaker_masks(default_boxes(192, 128), 192, 128, 192, 128), 8, 12)
    assert masks.shape == (3, frame_tokens)
    ref_map = old.reference_attention_map(q, k, masks)
    for values in (None, mask_values(masks, heads, dim, torch.float32)):
        new_map = speakers.reference_attention_map(q, k, masks, values)
        abs_err, rel_err = _error(new_map, ref_map)
        assert abs_err < TOLERANCE * ref_map.abs().max() and rel_err < TOLERANCE, (abs_err, rel_err)
    positions = speakers.token_positions(new_map)
    abs_err, rel_err = _error(positions, old.token_positions(ref_map))
    assert abs_err < TOLERANCE * 24 and rel_err < TOLERANCE, (abs_err, rel_err)
    assert set(new_map.argmax(0).tolist()) == {0, 1, 2}


def test_label_rope_equals_the_old_one():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 50, 4, 16, generator=g)
    positions = torch.rand(50, generator=g) * 24
    abs_err, rel_err = _error(speakers.rope_1d(x, positions), old.rope_1d(x, positions))
    assert abs_err < TOLERANCE and rel_err < TOLERANCE
    k = torch.randn(5, 8, 2, 4, 16, generator=g)[:, :, 0]  # a strided slice, as the audio keys are
    pos = speakers.audio_token_positions(8)
    assert torch.allclose(speakers.rope_1d(k, pos), old.rope_1d(k, pos), atol=TOLERANCE, rtol=0)


def test_bf16_routing_stays_close_to_fp32():
    """The map in bf16 (the GPU path: bf16 q/k through SDPA) against the old fp32 map of the same q/k."""
    g = torch.Generator().manual_seed(5)
    heads, dim, grid = 8, 64, (3, 16, 24)
    frame_tokens = grid[1] * grid[2]
    q = (torch.randn(1, grid[0] * frame_tokens, heads, dim, generator=g) * 2).bfloat16()
    k = (torch.randn(1, grid[0] * frame_tokens, heads, dim, generator=g) * 2).bfloat16()
    masks = token_masks(speaker_masks(default_boxes(192, 128), 192, 128, 192, 128), *grid[1:])
    fp32 = old.token_positions(old.reference_attention_map(q, k, masks))
    bf16 = speakers.token_positions(speakers.reference_attention_map(q, k, masks))
    same_side = ((fp32 - 12).sign() == (bf16 - 12).sign()).float().mean().item()
    assert same_side > 0.99  # the same speaker (or background) for nearly every token
    assert (fp32 - bf16).abs().median() < 0.05
