"""The wrapper flavour (the seed's WanVideoWrapper stack): one prompt per job, all four modes."""

from __future__ import annotations

import io
import json

import av
import numpy as np
import pytest
from PIL import Image

from talkgen.engines.comfyui.engine import BUILTIN
from talkgen.engines.comfyui.preflight import LOADERS
from tests.support.video_check import decode

TEMPLATES = {p.stem: json.loads(p.read_text()) for p in (BUILTIN / "wrapper").glob("*.json")}
SCHEMA = {n["class_type"]: {"input": {"required": {}}} for g in TEMPLATES.values() for n in g.values()}
MODELS: dict[str, list[str]] = {}
for _graph in TEMPLATES.values():  # every file the loaders name, as a server with the seed's models has
    for _node in _graph.values():
        if _node["class_type"] in LOADERS:
            _input, _folder = LOADERS[_node["class_type"]]
            MODELS.setdefault(_folder, []).append(_node["inputs"][_input])


def render(graph: dict, inputs: dict) -> bytes:
    """The whole clip: ``num_frames`` frames at the resize node's size, brightness rising with the frame."""
    frames = next(n for n in graph.values() if n["class_type"] == "MultiTalkWav2VecEmbeds")["inputs"]["num_frames"]
    size = next(n for n in graph.values() if n["class_type"] == "ImageResizeKJv2")["inputs"]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25, options={"crf": "0"})
        stream.width, stream.height, stream.pix_fmt = size["width"], size["height"], "yuv444p"
        for i in range(frames):
            frame = np.full((size["height"], size["width"], 3), i % 250, np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    return buffer.getvalue()


@pytest.fixture
def wrapper(media_dir, work_root):
    from talkgen.service import TalkGen
    from talkgen.settings import Settings
    from tests.support.fake_comfyui import FakeComfyUI

    with FakeComfyUI(SCHEMA, render=render, models=MODELS) as server:
        service = TalkGen(Settings(engine="comfyui", comfyui_flavour="wrapper", comfyui_url=server.url,
                                   allowed_path_roots=[media_dir], work_dir=work_root))
        yield service, server
        service.close()


def test_i2v_single(wrapper, media_dir, tmp_path):
    service, server = wrapper
    result = service.generate({"image_path": str(media_dir / "face.png"), "wav_path": str(media_dir / "speech.wav"),
                               "width": 128, "height": 128, "seed": 9, "prompt": "hello"},
                              output=str(tmp_path / "a.mp4"))
    video = decode(tmp_path / "a.mp4")
    assert video.count == 50 and (video.width, video.height) == (128, 128)
    assert [int(f.mean()) for f in video.frames] == pytest.approx(list(range(50)), abs=2)  # in order, none lost
    graph = server.prompts[0]
    embeds = next(n for n in graph.values() if n["class_type"] == "MultiTalkWav2VecEmbeds")["inputs"]
    sampler = next(n for n in graph.values() if n["class_type"] == "WanVideoSampler")["inputs"]
    text = next(n for n in graph.values() if n["class_type"] == "WanVideoTextEncodeCached")["inputs"]
    assert embeds["num_frames"] == 50 and sampler["seed"] == 9 and sampler["steps"] == 6
    assert text["positive_prompt"] == "hello"
    assert result.params["flavour"] == "wrapper"


def test_v2v_two_speakers_in_turns(wrapper, media_dir, tmp_path):
    service, server = wrapper
    request = {"input_type": "video", "person_count": "multi", "video_path": str(media_dir / "clip.mp4"),
               "wav_path": str(media_dir / "speech.wav"), "wav_path_2": str(media_dir / "speech2.wav"),
               "audio_type": "add", "width": 128, "height": 128, "job_id": "w2"}
    result = service.generate(request, output=str(tmp_path / "b.mp4"))
    video = decode(tmp_path / "b.mp4")
    assert video.count == 80 and video.audio_duration == pytest.approx(3.2, abs=0.03)  # 2.0 s + 1.2 s in turns
    names = set(server.inputs)
    assert {"talkgen/w2/video.mp4", "talkgen/w2/speech_1.wav", "talkgen/w2/speech_2.wav", "talkgen/w2/mask_1.png",
            "talkgen/w2/mask_2.png"} <= names
    mask_1 = np.asarray(Image.open(io.BytesIO(server.inputs["talkgen/w2/mask_1.png"])))[..., 0]
    assert mask_1[:, :60].max() == 255 and mask_1[:, 70:].max() == 0  # speaker 1: left part of the frame
    graph = server.prompts[0]
    embeds = next(n for n in graph.values() if n["class_type"] == "MultiTalkWav2VecEmbeds")["inputs"]
    assert embeds["num_frames"] == 80 and "audio_2" in embeds and embeds["multi_audio_type"] == "para"
    assert result.mode == "V2V_multi"
