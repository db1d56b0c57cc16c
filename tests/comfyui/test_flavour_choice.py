"""TALKGEN_COMFYUI_FLAVOUR=auto (the default): every seed request runs on a server that has what it needs, the
result says which flavour ran, and a server that cannot run a request says what it lacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from talkgen.engines.comfyui.flavours import FLAVOURS, ServerFlavours, candidates
from talkgen.errors import EngineUnavailable, InvalidRequest
from tests.comfyui import test_engine as native
from tests.comfyui import test_wrapper as wrapper
from tests.support.video_check import decode

OBJECT_INFO = Path(__file__).resolve().parents[3] / "shared" / "comfyui" / "object_info.json"
BOTH_SCHEMA = {**native.SCHEMA, **wrapper.SCHEMA}
BOTH_MODELS = {folder: sorted(set(native.MODELS.get(folder, [])) | set(wrapper.MODELS.get(folder, [])))
               for folder in {*native.MODELS, *wrapper.MODELS}}


def render(graph: dict, inputs: dict) -> bytes:
    """Each flavour's fake output: a whole clip (wrapper) or one window (native)."""
    if any(n["class_type"] == "MultiTalkWav2VecEmbeds" for n in graph.values()):
        return wrapper.render(graph, inputs)
    return native.render(graph, inputs)


def seed_request(media: Path, kind: str, **extra) -> dict:  # type: ignore[no-untyped-def]
    """The seed README's two-speaker examples: person_count multi and no audio_type (simultaneous speech)."""
    visual = {"image_path": str(media / "face.png")} if kind == "image" else {"video_path": str(media / "clip.mp4")}
    return {"input_type": kind, "person_count": "multi", "prompt": "Two people having a conversation.", **visual,
            "wav_path": str(media / "speech.wav"), "wav_path_2": str(media / "speech2.wav"), "width": 128,
            "height": 128, **extra}


def service_for(server, media_dir, work_root, **settings):  # type: ignore[no-untyped-def]
    from talkgen.service import TalkGen
    from talkgen.settings import Settings

    return TalkGen(Settings(engine="comfyui", comfyui_url=server.url, allowed_path_roots=[media_dir],
                            work_dir=work_root, comfyui_stall_s=5, **settings))


@pytest.mark.parametrize("kind", ["image", "video"])
def test_seed_two_speaker_requests_run_unchanged_with_the_default_settings(kind, media_dir, work_root, tmp_path):
    from tests.support.fake_comfyui import FakeComfyUI

    with FakeComfyUI(BOTH_SCHEMA, render=render, models=BOTH_MODELS) as server:
        service = service_for(server, media_dir, work_root)
        try:
            multi = service.generate(seed_request(media_dir, kind), output=str(tmp_path / "multi.mp4"))
            single = service.generate({"input_type": kind, **{k: v for k, v in seed_request(media_dir, kind).items()
                                                             if k.startswith(("image", "video"))},
                                       "wav_path": str(media_dir / "speech.wav"), "width": 128, "height": 128},
                                      output=str(tmp_path / "single.mp4"))
        finally:
            service.close()
        graphs = list(server.prompts)
    assert multi.params["flavour"] == "wrapper" and multi.audio_type == "para"
    assert single.params["flavour"] == "native"  # per window where it can: progress and memory per window
    video = decode(tmp_path / "multi.mp4")
    assert video.count == multi.frames == 50 and video.audio_duration == pytest.approx(2.0, abs=0.03)
    assert decode(tmp_path / "single.mp4").count == 50
    assert any(n["class_type"] == "MultiTalkWav2VecEmbeds" for n in graphs[0].values())
    if OBJECT_INFO.is_file():  # the graphs the engine filled fit a real server's node schemas
        from talkgen.engines.comfyui.schema import check_graph

        real = json.loads(OBJECT_INFO.read_text())
        assert [p for g in graphs for p in check_graph(g, real)] == []


def test_a_server_without_the_wrapper_packs_refuses_para_naming_what_is_missing(media_dir, work_root, tmp_path):
    from tests.support.fake_comfyui import FakeComfyUI

    with FakeComfyUI(native.SCHEMA, render=native.render, models=native.MODELS) as server:
        service = service_for(server, media_dir, work_root)
        try:
            with pytest.raises(EngineUnavailable) as info:
                service.generate(seed_request(media_dir, "image"), output=str(tmp_path / "x.mp4"))
            turns = service.generate(seed_request(media_dir, "image", audio_type="add"), output=str(tmp_path / "t.mp4"))
        finally:
            service.close()
    message = info.value.message
    assert info.value.field == "audio_type" and not info.value.retryable
    assert "need the wrapper flavour" in message and "WanVideoSampler" in message
    assert "ComfyUI-WanVideoWrapper" in message
    assert "audio_type 'add'" in message and "native engine" in message
    assert turns.params["flavour"] == "native" and not (tmp_path / "x.mp4").exists()


def test_auto_takes_the_flavour_whose_model_files_are_there(media_dir, work_root, tmp_path):
    from tests.support.fake_comfyui import FakeComfyUI

    models = {**BOTH_MODELS, "model_patches": []}  # the core node's InfiniteTalk patches are not downloaded
    with FakeComfyUI(BOTH_SCHEMA, render=render, models=models) as server:
        service = service_for(server, media_dir, work_root)
        try:
            result = service.generate({"image_path": str(media_dir / "face.png"), "wav_path": str(media_dir /
                                       "speech.wav"), "width": 128, "height": 128}, output=str(tmp_path / "a.mp4"))
        finally:
            service.close()
    assert result.params["flavour"] == "wrapper" and decode(tmp_path / "a.mp4").count == 50


def test_an_explicit_flavour_wins_and_a_refusal_names_the_one_that_would_work(media_dir, work_root, tmp_path):
    from tests.support.fake_comfyui import FakeComfyUI

    with FakeComfyUI(BOTH_SCHEMA, render=render, models=BOTH_MODELS) as server:
        service = service_for(server, media_dir, work_root, comfyui_flavour="native")
        try:
            with pytest.raises(InvalidRequest, match=r"in turns only.*TALKGEN_COMFYUI_FLAVOUR=wrapper or auto"):
                service.generate(seed_request(media_dir, "image"), output=str(tmp_path / "x.mp4"))
        finally:
            service.close()
        service = service_for(server, media_dir, work_root, comfyui_flavour="wrapper")
        try:
            single = service.generate({"image_path": str(media_dir / "face.png"), "wav_path": str(media_dir /
                                       "speech.wav"), "width": 128, "height": 128}, output=str(tmp_path / "w.mp4"))
        finally:
            service.close()
    assert single.params["flavour"] == "wrapper"


def test_a_server_with_neither_flavour_says_what_each_lacks(media_dir, work_root, tmp_path):
    from tests.support.fake_comfyui import FakeComfyUI

    with FakeComfyUI({"LoadImage": {"input": {"required": {}}}}) as server:
        service = service_for(server, media_dir, work_root)
        with pytest.raises(EngineUnavailable) as info:
            service.generate({"image_path": str(media_dir / "face.png"), "wav_path": str(media_dir / "speech.wav")},
                             output=str(tmp_path / "x.mp4"))
    assert "native lacks WanInfiniteTalkToVideo" in info.value.message
    assert "wrapper lacks WanVideoSampler" in info.value.message and "ComfyUI >= 0.11" in info.value.message


def test_candidates_order_and_refusals():
    both = ServerFlavours.check(lambda c: True)
    native_only = ServerFlavours.check(lambda c: c in native.SCHEMA)
    assert candidates("auto", both, 1, None) == list(FLAVOURS) == ["native", "wrapper"]
    assert candidates("auto", both, 2, "add") == ["native", "wrapper"]
    assert candidates("auto", both, 2, "para") == ["wrapper"]
    assert candidates("auto", native_only, 2, "add") == ["native"]
    assert candidates("wrapper", native_only, 2, "para") == ["wrapper"]  # explicit: the start check said if not
    with pytest.raises(EngineUnavailable, match="need the wrapper flavour"):
        candidates("auto", native_only, 2, "para")
    with pytest.raises(InvalidRequest, match="in turns only"):
        candidates("native", both, 2, "para")
