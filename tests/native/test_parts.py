"""The engine's parts against the InfiniteTalk formulas: audio windows, packing, sampler, routing, colour."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from talkgen.engines.native.model.audio_proj import gather_windows, pack_latent_windows
from talkgen.engines.native.model.speakers import speaker_masks, token_positions
from talkgen.engines.native.run.colour import lab_to_rgb, match_colours, reference_stats, rgb_to_lab
from talkgen.engines.native.run.sampler import guided, passes, timesteps
from talkgen.engines.native.run.windows import audio_positions
from talkgen.media.boxes import default_boxes
from talkgen.plan import windows


def test_wav2vec2_features_at_25fps_with_the_real_layer_layout():
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    from talkgen.engines.native.model.audio_encoder import AudioEncoder

    torch.manual_seed(0)
    config = Wav2Vec2Config(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=256,
                            conv_bias=False, feat_extract_norm="group", do_stable_layer_norm=False)
    model = Wav2Vec2Model(config).eval()
    encoder = AudioEncoder(model, Wav2Vec2FeatureExtractor(do_normalize=False), torch.device("cpu"), torch.float32)
    seconds = 3.0
    samples = np.random.default_rng(0).standard_normal(int(16000 * seconds)).astype(np.float32) * 0.1
    feats = encoder.encode(samples, 16000, 25, int(seconds * 25))
    assert feats.shape == (75, 12, 768)
    # layer outputs in order: the last equals the encoder's last hidden state at 25 fps
    with torch.no_grad():
        values = torch.from_numpy(samples)[None]
        conv = model.feature_extractor(values).transpose(1, 2)
        conv = torch.nn.functional.interpolate(conv.transpose(1, 2), size=75, mode="linear",
                                               align_corners=True).transpose(1, 2)
        hidden, _ = model.feature_projection(conv)
        last = model.encoder(hidden).last_hidden_state
        h = model.encoder.layer_norm(hidden + model.encoder.pos_conv_embed(hidden))
        layer0 = model.encoder.layers[0](h)
        layer0 = layer0[0] if isinstance(layer0, tuple) else layer0
    assert torch.allclose(torch.from_numpy(feats[:, 0]), layer0[0], atol=1e-5)
    assert torch.allclose(torch.from_numpy(feats[:, -1]), last[0], atol=1e-5)


def test_long_audio_is_encoded_in_segments_to_a_memmap(tmp_path, monkeypatch):
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    from talkgen.engines.native.model import audio_encoder

    model = Wav2Vec2Model(Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=64, conv_dim=(32,) * 7, num_conv_pos_embeddings=16,
                                         num_conv_pos_embedding_groups=4)).eval()
    enc = audio_encoder.AudioEncoder(model, Wav2Vec2FeatureExtractor(do_normalize=False), torch.device("cpu"),
                                     torch.float32)
    samples = np.random.default_rng(1).standard_normal(16000 * 6).astype(np.float32) * 0.1
    whole = enc.encode(samples, 16000, 25, 150)
    monkeypatch.setattr(audio_encoder, "SEGMENT_S", 2.0)
    monkeypatch.setattr(audio_encoder, "CONTEXT_S", 1.0)
    parts = enc.encode(samples, 16000, 25, 150, out=tmp_path / "f.npy")
    assert isinstance(parts, np.memmap) and parts.shape == whole.shape
    assert np.array_equal(np.load(tmp_path / "f.npy"), parts)
    # segments see 1 s of context on each side: away from the cuts they agree closely with one pass
    assert np.abs(parts[60:90] - whole[60:90]).mean() < 0.25 * np.abs(whole[60:90]).mean()


def test_audio_windows_clamp_then_reflect_in_the_last_window():
    first, last = windows(100)[0], windows(100)[-1]
    rows = audio_positions(first)
    assert rows[0].tolist() == [0, 0, 0, 1, 2] and rows[10].tolist() == [8, 9, 10, 11, 12]
    last_rows = audio_positions(last)
    assert last.is_last and last.start == 72
    assert last_rows[27].tolist() == [97, 98, 99, 99, 98]  # frame 99, then reflected past the end
    feats = torch.arange(100.0)[:, None, None]
    assert gather_windows(feats, [0, 99])[..., 0, 0].tolist() == [[0, 0, 0, 1, 2], [97, 98, 99, 99, 99]]


def test_packing_keeps_first_window_and_3_1_1_3_per_latent_frame():
    frames = torch.arange(81 * 5, dtype=torch.float32).reshape(1, 81, 5, 1, 1)  # value = frame*5 + slot
    first, rest = pack_latent_windows(frames)
    assert first.shape == (1, 1, 5, 1, 1) and rest.shape == (1, 20, 8, 1, 1)
    group = rest[0, 0, :, 0, 0].tolist()  # frames 1..4
    assert group == [5, 6, 7, 12, 17, 22, 23, 24]


def test_shifted_schedule_and_guidance_formulas():
    ts = timesteps(4, 7.0)
    assert ts[0] == pytest.approx(1000) and ts[-1] == 0
    u = 667.0 / 1000
    assert ts[1] == pytest.approx(7 * u / (1 + 6 * u) * 1000, rel=1e-5)
    assert passes(5.0, 4.0) == ("cond", "drop_text", "uncond") and passes(1.0, 4.0) == ("cond", "drop_audio")
    assert passes(1.0, 1.0) == ("cond",) and passes(5.0, 1.0) == ("cond", "drop_text", "uncond")
    c, dt, u0 = torch.tensor(3.0), torch.tensor(2.0), torch.tensor(1.0)
    assert guided({"cond": c, "drop_text": dt, "uncond": u0}, 5.0, 4.0) == 1 + 5 * 1 + 4 * 1
    assert guided({"cond": c, "drop_audio": u0}, 1.0, 2.0) == 1 + 2 * 2


def test_speaker_masks_follow_the_crop_and_routing_positions():
    masks = speaker_masks(default_boxes(200, 100), 200, 100, 128, 128)  # 200x100 covers 128x128: crop sides
    assert masks.shape == (3, 128, 128)
    assert torch.equal(masks[2], (masks[:2].sum(0) == 0).float())
    assert masks[0, 64, :64].sum() > 0 and masks[1, 64, 64:].sum() > 0 and masks[0, :, 64:].sum() == 0
    ref_map = torch.tensor([[0.9, 0.1, 0.2, 0.5], [0.05, 0.8, 0.1, 0.2], [0.05, 0.1, 0.7, 0.3]])
    pos = token_positions(ref_map)
    assert pos[0] == pytest.approx(4.0) and 20 <= pos[1] <= 24 and pos[2] == 12.0 and 0 <= pos[3] <= 4


def test_one_speaker_skips_the_reference_map(monkeypatch):
    from talkgen.engines.native.model import transformer as module
    from talkgen.engines.native.weights.tiny import AUDIO, DIT

    calls = []
    real = module.reference_attention_map
    monkeypatch.setattr(module, "reference_attention_map", lambda *a: calls.append(1) or real(*a))
    model = module.InfiniteTalkTransformer3DModel(**DIT, **AUDIO).eval()
    x = torch.randn(1, 36, 3, 8, 8)
    args = (x, torch.tensor([500.0]), torch.randn(1, 512, 32), torch.randn(1, 257, 32))
    masks = speaker_masks(default_boxes(64, 64), 64, 64, 64, 64)
    with torch.no_grad():
        one = model(*args, audio=torch.randn(1, 9, 5, 2, 32), speaker_masks=masks).sample
        assert calls == []
        two = model(*args, audio=torch.randn(2, 9, 5, 2, 32), speaker_masks=masks).sample
    assert len(calls) == DIT["num_layers"]
    assert one.shape == two.shape == (1, 16, 3, 8, 8)


def test_colour_conversion_round_trip_and_matching():
    rgb = torch.rand(32, 32, 3)
    assert torch.allclose(lab_to_rgb(rgb_to_lab(rgb)), rgb, atol=1e-4)
    assert rgb_to_lab(torch.ones(1, 3))[0].tolist() == pytest.approx([100, 0, 0], abs=1e-2)
    reference = torch.rand(3, 16, 16) * 2 - 1
    video = (torch.rand(3, 4, 16, 16) * 0.5).clamp(-1, 1)  # darker than the reference
    assert torch.equal(match_colours(video, reference_stats(reference), 0.0), video)
    matched = match_colours(video, reference_stats(reference), 1.0)
    ref_mean = reference_stats(reference)[0]
    got = rgb_to_lab(((matched[:, 0] + 1) / 2).permute(1, 2, 0)).reshape(-1, 3).mean(0)
    assert torch.allclose(got, ref_mean, atol=3.0)


def test_one_pass_when_both_guidance_scales_are_1_equals_the_two_pass_path_bit_for_bit(monkeypatch):
    from talkgen.engines.native.run import sampler

    def predict(name: str, t: float, latent: torch.Tensor) -> torch.Tensor:
        calls.append(name)
        g = torch.Generator().manual_seed(int(t) * 7 + len(name))
        return latent * 0.9 + torch.randn(latent.shape, generator=g)

    start = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    ts = timesteps(6, 5.0)
    calls: list[str] = []
    one = sampler.sample(start, ts, predict, 1.0, 1.0, lambda x: x)
    assert calls == ["cond"] * 6  # half the passes of the two-pass path
    calls.clear()
    monkeypatch.setattr(sampler, "passes", lambda text, audio: ("cond", "drop_audio"))
    two = sampler.sample(start, ts, predict, 1.0, 1.0, lambda x: x)
    assert calls.count("drop_audio") == 6
    assert torch.equal(one, two)
