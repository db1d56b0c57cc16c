"""The request contract: seed fields, additions, and precise errors."""

from __future__ import annotations

import pytest

from talkgen.errors import ConflictingMedia, InvalidRequest, MissingMedia, TalkgenError
from talkgen.mode import Mode
from talkgen.request import TalkRequest

IMG = {"image_url": "https://h/a.jpg"}
WAV = {"wav_url": "https://h/a.wav"}


def test_seed_defaults() -> None:
    req = TalkRequest.parse({**IMG, **WAV})
    assert req.mode is Mode.I2V_SINGLE
    assert req.prompt == "A person talking naturally"
    assert req.output_size() == (512, 512)
    assert req.force_offload is True and req.network_volume is False
    assert req.resolved_audio_type is None


@pytest.mark.parametrize(("input_type", "person_count", "mode", "roles"), [
    ("image", "single", Mode.I2V_SINGLE, ["image", "audio_1"]),
    ("image", "multi", Mode.I2V_MULTI, ["image", "audio_1", "audio_2"]),
    ("video", "single", Mode.V2V_SINGLE, ["video", "audio_1"]),
    ("video", "multi", Mode.V2V_MULTI, ["video", "audio_1", "audio_2"]),
])
def test_modes_name_their_roles(input_type: str, person_count: str, mode: Mode, roles: list[str]) -> None:
    data = {"input_type": input_type, "person_count": person_count, "wav_path": "/a.wav"}
    data["video_base64" if input_type == "video" else "image_base64"] = "AAAA"
    if person_count == "multi":
        data["wav_url_2"] = "https://h/b.wav"
    req = TalkRequest.parse(data)
    assert req.mode is mode
    assert list(req.media_refs()) == roles
    assert mode.workflow == mode.value and (mode.speakers == 2) == (person_count == "multi")
    if person_count == "multi":
        assert req.resolved_audio_type == "para"


def test_two_sources_for_one_role_names_both() -> None:
    with pytest.raises(ConflictingMedia) as err:
        TalkRequest.parse({**IMG, "image_path": "/a.png", **WAV})
    assert "`image_path`" in err.value.message and "`image_url`" in err.value.message
    assert err.value.code == "conflicting_media"


def test_missing_media_names_the_three_fields_and_never_substitutes() -> None:
    with pytest.raises(MissingMedia) as err:
        TalkRequest.parse({**IMG})
    for field in ("wav_path", "wav_url", "wav_base64"):
        assert f"`{field}`" in err.value.message
    with pytest.raises(MissingMedia) as err:
        TalkRequest.parse({"person_count": "multi", **IMG, **WAV})
    assert "wav_url_2" in err.value.message and err.value.field == "wav_url_2"


def test_media_for_an_unused_role_is_an_error() -> None:
    with pytest.raises(InvalidRequest) as err:
        TalkRequest.parse({**IMG, **WAV, "wav_url_2": "https://h/b.wav"})
    assert err.value.field == "wav_url_2" and "I2V_single" in err.value.message
    with pytest.raises(InvalidRequest):
        TalkRequest.parse({"input_type": "video", "video_path": "/v.mp4", **IMG, **WAV})


def test_unknown_fields_listed_with_closest_name() -> None:
    with pytest.raises(InvalidRequest) as err:
        TalkRequest.parse({**IMG, **WAV, "widht": 640, "promt": "x", "zzz": 1})
    msg = err.value.message
    assert "`widht` (did you mean `width`?)" in msg and "`promt` (did you mean `prompt`?)" in msg
    assert "`zzz`" in msg


@pytest.mark.parametrize(("width", "height", "expected"), [
    (512, 512, (512, 512)), (500, 300, (496, 304)), (128, 1920, (128, 1920)), (1913, 135, (1920, 128)),
])
def test_sizes_round_to_16(width: int, height: int, expected: tuple[int, int]) -> None:
    assert TalkRequest.parse({**IMG, **WAV, "width": width, "height": height}).output_size() == expected


@pytest.mark.parametrize("bad", [{"width": 100}, {"height": 4000}, {"width": "wide"}, {"steps": 0},
                                 {"input_type": "gif"}, {"seed": -1}, {"resolution": "1080p"}])
def test_out_of_range_values(bad: dict) -> None:
    with pytest.raises(InvalidRequest) as err:
        TalkRequest.parse({**IMG, **WAV, **bad})
    assert err.value.field == next(iter(bad))


def test_resolution_takes_aspect_from_input() -> None:
    req = TalkRequest.parse({**IMG, **WAV, "resolution": "480p"})
    w, h = req.output_size(1920, 1080)
    assert w % 16 == 0 and h % 16 == 0 and abs(w / h - 16 / 9) < 0.05 and abs(w * h - 832 * 480) < 20000
    with pytest.raises(InvalidRequest):
        TalkRequest.parse({**IMG, **WAV, "resolution": "720p", "width": 640})


def test_two_speaker_options() -> None:
    base = {"person_count": "multi", **IMG, **WAV, "wav_url_2": "https://h/b.wav"}
    req = TalkRequest.parse({**base, "audio_type": "add", "speaker_boxes": [[0, 0, 10, 10], [10, 0, 20, 10]]})
    assert req.resolved_audio_type == "add"
    for bad in ({"speaker_boxes": [[0, 0, 10, 10]]}, {"speaker_boxes": [[5, 0, 1, 10], [0, 0, 1, 1]]}):
        with pytest.raises(InvalidRequest) as err:
            TalkRequest.parse({**base, **bad})
        assert err.value.field == "speaker_boxes"
    with pytest.raises(InvalidRequest) as err:
        TalkRequest.parse({**IMG, **WAV, "audio_type": "add"})
    assert err.value.field == "audio_type"


def test_caps_combine_max_frame_and_max_duration() -> None:
    assert TalkRequest.parse({**IMG, **WAV, "max_frame": 50}).max_seconds(25) == 2.0
    assert TalkRequest.parse({**IMG, **WAV, "max_frame": 500, "max_duration": 3}).max_seconds(25) == 3
    assert TalkRequest.parse({**IMG, **WAV}).max_seconds(25) is None


def test_non_object_request() -> None:
    with pytest.raises(TalkgenError) as err:
        TalkRequest.parse(["not", "a", "dict"])
    assert err.value.code == "invalid_request"
