"""The ComfyUI engine end to end against the fake server: windows, uploads, streaming, errors."""

from __future__ import annotations

import io
import json
from pathlib import Path

import av
import numpy as np
import pytest

from talkgen.engines.comfyui.engine import BUILTIN
from tests.support.video_check import decode

TEMPLATES = [json.loads(p.read_text()) for p in (BUILTIN / "native").glob("*.json")]
SCHEMA = {n["class_type"]: {"input": {"required": {}}} for t in TEMPLATES for n in t.values()}
SCHEMA.update({c: {"input": {"required": {}}} for c in ("LoadVideo", "GetVideoComponents")})


MODELS = {"diffusion_models": ["Wan2_1-I2V-14B-480p_fp8_e4m3fn_scaled_KJ.safetensors"],
          "loras": ["lightx2v_I2V_14B_480p_cfg_step_distill_rank64_bf16.safetensors"],
          "text_encoders": ["umt5_xxl_fp8_e4m3fn_scaled.safetensors"], "vae": ["Wan2_1_VAE_bf16.safetensors"],
          "model_patches": ["wan2.1_infiniteTalk_single_fp16.safetensors",
                            "wan2.1_infiniteTalk_multi_fp16.safetensors"],
          "audio_encoders": ["wav2vec2-chinese-base_fp16.safetensors"]}


def render(graph: dict, inputs: dict) -> bytes:
    """A window video: ``length`` frames whose brightness encodes (window, frame)."""
    talk = next(n for n in graph.values() if n["class_type"] == "WanInfiniteTalkToVideo")["inputs"]
    save = next(n for n in graph.values() if n["class_type"] == "SaveVideo")["inputs"]
    window = int(save["filename_prefix"].rsplit("-", 1)[1])
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25, options={"crf": "0"})
        stream.width, stream.height, stream.pix_fmt = talk["width"], talk["height"], "yuv444p"
        for i in range(talk["length"]):
            frame = np.full((talk["height"], talk["width"], 3), (window * 60 + i * 2) % 250, np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    return buffer.getvalue()


@pytest.fixture
def comfy_service(media_dir, work_root, tmp_path):
    from talkgen.service import TalkGen
    from talkgen.settings import Settings
    from tests.support.fake_comfyui import FakeComfyUI
    from tests.support.media_factory import make_wav

    make_wav(media_dir / "long.wav", seconds=4.0)
    with FakeComfyUI(SCHEMA, render=render, models=MODELS) as server:
        settings = Settings(engine="comfyui", comfyui_url=server.url, allowed_path_roots=[media_dir],
                            work_dir=work_root, comfyui_stall_s=5)
        service = TalkGen(settings)
        yield service, server, media_dir
        service.close()


def test_i2v_single_in_windows(comfy_service, tmp_path):
    service, server, media = comfy_service
    events = []
    result = service.generate({"image_path": str(media / "face.png"), "wav_path": str(media / "long.wav"),
                               "width": 128, "height": 128, "seed": 5, "steps": 3, "job_id": "cj1"},
                              output=str(tmp_path / "c.mp4"), progress=events.append)
    video = decode(tmp_path / "c.mp4")
    assert video.count == 100 and (video.width, video.height) == (128, 128)
    assert video.audio_duration == pytest.approx(4.0, abs=0.03)
    brightness = [int(f.mean()) for f in video.frames]
    assert brightness[:81] == pytest.approx([(i * 2) % 250 for i in range(81)], abs=2)  # window 1 whole
    assert brightness[81:] == pytest.approx([(60 + i * 2) % 250 for i in range(9, 28)], abs=2)  # window 2, new only
    first, second = server.prompts
    assert "previous_frames" not in json.dumps(first)
    talk = next(n for n in second.values() if n["class_type"] == "WanInfiniteTalkToVideo")["inputs"]
    loader = second[talk["previous_frames"][0]]
    assert second[loader["inputs"]["video"][0]]["inputs"]["file"] == "talkgen/cj1/motion-1.mp4"
    assert {"talkgen/cj1/window-0-speaker-1.wav", "talkgen/cj1/window-1-speaker-1.wav"} <= set(server.inputs)
    noise = next(n for n in second.values() if n["class_type"] == "RandomNoise")["inputs"]
    assert noise["noise_seed"] == 5 and talk["width"] == 128 and talk["length"] == 81
    assert any(e.message == "window 2/2, step 4/4" for e in events)
    assert result.engine == "comfyui" and result.params["windows"] == 2 and result.params["preset"] == "fast"


def test_quality_preset_is_refused_with_the_way_out(comfy_service, tmp_path):
    from talkgen.errors import InvalidRequest

    service, server, media = comfy_service
    before = len(server.prompts)
    with pytest.raises(InvalidRequest, match="native engine") as info:
        service.generate({"image_path": str(media / "face.png"), "wav_path": str(media / "speech.wav"),
                          "width": 128, "height": 128, "preset": "quality"}, output=str(tmp_path / "q.mp4"))
    assert info.value.field == "preset" and not info.value.retryable
    assert len(server.prompts) == before and not (tmp_path / "q.mp4").exists()


def test_execution_error_reaches_the_caller(comfy_service, tmp_path):
    from talkgen.errors import EngineFailed

    service, server, media = comfy_service
    server.behaviour = "error"
    with pytest.raises(EngineFailed, match="SafetensorError") as info:
        service.generate({"image_path": str(media / "face.png"), "wav_path": str(media / "speech.wav"),
                          "width": 128, "height": 128}, output=str(tmp_path / "x.mp4"))
    assert info.value.code == "engine_failed"
    assert not Path(tmp_path / "x.mp4").exists()


def test_missing_nodes_and_unsupported_modes(media_dir, work_root, tmp_path):
    from talkgen.errors import EngineUnavailable
    from talkgen.service import TalkGen
    from talkgen.settings import Settings
    from tests.support.fake_comfyui import FakeComfyUI

    with FakeComfyUI({"LoadImage": {"input": {"required": {}}}}) as old:
        service = TalkGen(Settings(engine="comfyui", comfyui_url=old.url, allowed_path_roots=[media_dir],
                                   work_dir=work_root))
        with pytest.raises(EngineUnavailable, match="native lacks WanInfiniteTalkToVideo"):
            service.generate({"image_path": str(media_dir / "face.png"), "wav_path": str(media_dir / "speech.wav")},
                             output=str(tmp_path / "x.mp4"))
    with FakeComfyUI(SCHEMA, models={**MODELS, "vae": [], "model_patches": []}) as server:
        service = TalkGen(Settings(engine="comfyui", comfyui_url=server.url, allowed_path_roots=[media_dir],
                                   work_dir=work_root))
        with pytest.raises(EngineUnavailable, match=r"lacks model files for I2V_single.json: "
                           r"model_patches/wan2.1_infiniteTalk_single_fp16.safetensors, "
                           r"vae/Wan2_1_VAE_bf16.safetensors \(under"):
            service.generate({"image_path": str(media_dir / "face.png"), "wav_path": str(media_dir / "speech.wav")},
                             output=str(tmp_path / "x.mp4"))
        assert server.prompts == [] and server.inputs == {}  # found before any upload or prompt
        with pytest.raises(EngineUnavailable, match=r"need the wrapper flavour.*send audio_type 'add'"):
            service.generate({"image_path": str(media_dir / "face.png"), "wav_path": str(media_dir / "speech.wav"),
                              "wav_path_2": str(media_dir / "speech2.wav"), "person_count": "multi"},
                             output=str(tmp_path / "x.mp4"))



def test_job_files_and_history_are_cleaned(media_dir, work_root, tmp_path):
    from talkgen.service import TalkGen
    from talkgen.settings import Settings
    from tests.support.fake_comfyui import FakeComfyUI

    comfy_dir = tmp_path / "comfy"
    for kind in ("input", "output"):
        (comfy_dir / kind / "talkgen" / "cj2").mkdir(parents=True)
        (comfy_dir / kind / "talkgen" / "cj2" / "file").write_bytes(b"x")
    (comfy_dir / "input" / "talkgen" / "other-job").mkdir()
    with FakeComfyUI(SCHEMA, render=render, models=MODELS) as server:
        service = TalkGen(Settings(engine="comfyui", comfyui_url=server.url, comfyui_dir=comfy_dir,
                                   allowed_path_roots=[media_dir], work_dir=work_root))
        service.generate({"image_path": str(media_dir / "face.png"), "wav_path": str(media_dir / "speech.wav"),
                          "width": 128, "height": 128, "job_id": "cj2"}, output=str(tmp_path / "o.mp4"))
        assert server.history == {}  # every window's history entry was deleted
    assert not (comfy_dir / "input" / "talkgen" / "cj2").exists()
    assert not (comfy_dir / "output" / "talkgen" / "cj2").exists()
    assert (comfy_dir / "input" / "talkgen" / "other-job").exists()


def test_two_speakers_in_turns_cut_at_the_turn(comfy_service, tmp_path):
    import wave

    service, server, media = comfy_service
    result = service.generate({"image_path": str(media / "face.png"), "wav_path": str(media / "speech.wav"),
                               "wav_path_2": str(media / "speech2.wav"), "person_count": "multi",
                               "audio_type": "add", "width": 128, "height": 128, "job_id": "cj3"},
                              output=str(tmp_path / "m.mp4"))
    assert result.frames == 80 and decode(tmp_path / "m.mp4").count == 80

    def seconds(name: str) -> float:
        with wave.open(io.BytesIO(server.inputs[f"talkgen/cj3/{name}"])) as wav:
            return wav.getnframes() / wav.getframerate()

    # speaker 1 speaks 2.0 s, then speaker 2: the one window holds speaker 1's turn, then speaker 2's
    assert seconds("window-0-speaker-1.wav") == pytest.approx(2.0, abs=0.05)
    assert seconds("window-0-speaker-2.wav") == pytest.approx(81 / 25 - 2.0, abs=0.05)
    talk = next(n for n in server.prompts[0].values() if n["class_type"] == "WanInfiniteTalkToVideo")["inputs"]
    assert talk["mode"] == "two_speakers"
    mask_node = server.prompts[0][talk["mode.mask_1"][0]]
    assert mask_node["inputs"]["image"] == "talkgen/cj3/mask_1.png"


def test_request_fields_reach_the_graph_or_are_refused(comfy_service, tmp_path):
    from talkgen.errors import InvalidRequest

    service, server, media = comfy_service
    base = {"image_path": str(media / "face.png"), "wav_path": str(media / "speech.wav"), "width": 128,
            "height": 128}
    service.generate({**base, "negative_prompt": "blurry", "guidance_scale": 3.0, "steps": 5},
                     output=str(tmp_path / "n.mp4"))
    graph = server.prompts[-1]
    negative = next(n for n in graph.values() if (n.get("_meta") or {}).get("title") == "talkgen:negative_prompt")
    guider = next(n for n in graph.values() if n["class_type"] == "CFGGuider")
    scheduler = next(n for n in graph.values() if n["class_type"] == "BasicScheduler")
    assert negative["inputs"]["text"] == "blurry" and guider["inputs"]["cfg"] == 3.0
    assert scheduler["inputs"]["steps"] == 5
    # the core node has no audio guidance: refused, not silently dropped
    with pytest.raises(InvalidRequest, match=r"`audio_guidance_scale` cannot reach I2V_single\.json") as info:
        service.generate({**base, "audio_guidance_scale": 4.0}, output=str(tmp_path / "x.mp4"))
    assert info.value.field == "audio_guidance_scale"


def test_v2v_sends_each_window_its_source_segment(comfy_service, tmp_path):
    service, server, media = comfy_service
    result = service.generate({"input_type": "video", "video_path": str(media / "clip.mp4"),
                               "wav_path": str(media / "long.wav"), "width": 128, "height": 128, "job_id": "cv"},
                              output=str(tmp_path / "v.mp4"))
    assert result.mode == "V2V_single" and decode(tmp_path / "v.mp4").count == 100
    for index in (0, 1):
        graph = server.prompts[index]
        loader = next(n for n in graph.values() if (n.get("_meta") or {}).get("title") == "talkgen:video")
        assert loader["inputs"]["file"] == f"talkgen/cv/source-{index}.mp4"
        segment = tmp_path / f"seg{index}.mp4"
        segment.write_bytes(server.inputs[loader["inputs"]["file"]])
        frames = decode(segment).frames
        assert len(frames) == 81 and frames[0].shape == (128, 128, 3)
    # the 30 fps source (2 s, a bar moving right) is resampled to 25 fps: window 2 starts 72 frames (2.88 s) in,
    # past the source's end, so it holds the last source frame throughout
    last = decode(tmp_path / "seg1.mp4").frames
    assert abs(last[0].astype(int) - last[-1].astype(int)).mean() < 2
