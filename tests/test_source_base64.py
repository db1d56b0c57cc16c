"""Base64Source: raw base64 and data URIs of real media, strict validation, size cap, the core's sniffing."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from talkgen.errors import Cancelled, InvalidRequest, MediaTooLarge, UnsupportedMedia
from talkgen.request import MediaRef
from talkgen.settings import Settings
from talkgen.sources import FetchContext, fetch_media
from talkgen.sources import base64 as b64_module
from talkgen.sources.base64 import Base64Source
from tests.support.media_factory import make_audio, make_image, make_wav
from tests.support.source_checks import assert_refused, use_builtin_sources_only


def make_ctx(tmp_path: Path, **options: object) -> FetchContext:
    return FetchContext(Settings(**options), dest_dir=tmp_path / "work")


def ref(value: str, field: str = "image_base64") -> MediaRef:
    role = "image" if field.startswith("image") else "audio_1"
    return MediaRef(role=role, field=field, via="base64", value=value)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def fetch_bytes(value: str, tmp_path: Path, field: str = "image_base64") -> bytes:
    return Base64Source().fetch(ref(value, field), make_ctx(tmp_path)).read_bytes()


def refuse(value: str, tmp_path: Path, error: type[Exception] = InvalidRequest, **options: object):
    ctx = make_ctx(tmp_path, **options)
    with pytest.raises(error) as exc:
        Base64Source().fetch(ref(value), ctx)
    assert_refused(exc, ctx, exc.value.code, "image_base64")
    return exc.value


@pytest.fixture
def png(tmp_path: Path) -> bytes:
    return make_image(tmp_path / "face.png").read_bytes()


# --- accepted forms --------------------------------------------------------------------------------


def test_raw_base64_of_a_png(tmp_path, png):
    ctx = make_ctx(tmp_path)
    path = Base64Source().fetch(ref(b64(png)), ctx)
    assert path == ctx.dest_dir / "input_image"
    assert path.read_bytes() == png


def test_data_uri_of_a_wav(tmp_path):
    wav = make_wav(tmp_path / "voice.wav").read_bytes()
    assert fetch_bytes(f"data:audio/wav;base64,{b64(wav)}", tmp_path, "wav_base64") == wav


@pytest.mark.parametrize("header", ["data:image/png;name=face.png;base64,", "DATA:;BASE64,", "data:;base64,"])
def test_data_uri_headers(tmp_path, png, header):
    assert fetch_bytes(header + b64(png), tmp_path) == png


def test_mime_wrapped_url_safe_unpadded(tmp_path, png):
    text = base64.urlsafe_b64encode(png).decode().rstrip("=")
    wrapped = "\r\n".join(text[i:i + 76] for i in range(0, len(text), 76))
    assert fetch_bytes(f"  {wrapped}\n", tmp_path) == png


@settings(max_examples=150, deadline=None)
@given(
    data=st.binary(min_size=1, max_size=300),
    url_safe=st.booleans(),
    padded=st.booleans(),
    wrap=st.integers(min_value=0, max_value=9),
    slice_chars=st.integers(min_value=1, max_value=17),
)
def test_round_trip_across_slice_boundaries(tmp_path_factory, data, url_safe, padded, wrap, slice_chars):
    text = (base64.urlsafe_b64encode if url_safe else base64.b64encode)(data).decode()
    text = text if padded else text.rstrip("=")
    if wrap:
        text = "\n".join(text[i:i + wrap] for i in range(0, len(text), wrap))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(b64_module, "SLICE", slice_chars)  # exercise carries and padding split across slices
        assert fetch_bytes(text, tmp_path_factory.mktemp("b64")) == data


# --- refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "position", "char"),
    [("QUJD*EVG", 5, "*"), ("QUJD\nRE%G", 8, "%"), ("QUJDREé=", 7, "é"),
     ("data:image/png;base64,QU.D", 25, ".")],
)
def test_characters_outside_the_alphabet_are_reported_with_their_position(tmp_path, value, position, char):
    error = refuse(value, tmp_path)
    assert f"at character {position}, {char!r}" in error.message


def test_mixing_standard_and_url_safe_alphabets_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(b64_module, "SLICE", 4)  # the clash is found even in a later slice
    error = refuse("ab+cdefg_hij", tmp_path)
    assert "at character 9, '_'" in error.message and "alphabets" in error.message


@pytest.mark.parametrize("value", ["QUJD=", "QQ=", "Q", "QUJDQ", "QQ===", "QQ==QQ==", "QQ=\n=Q", "QUI=="])
def test_bad_padding_is_refused(tmp_path, value):
    error = refuse(value, tmp_path)
    assert "padding" in error.message


def test_data_uri_that_is_not_base64_is_explained(tmp_path):
    error = refuse("data:image/png,%89PNG", tmp_path)
    assert "not base64-encoded" in error.message


def test_data_uri_without_a_comma_is_refused(tmp_path):
    assert "without a comma" in refuse("data:image/png;base64", tmp_path).message


@pytest.mark.parametrize("value", ["data:image/png;base64,", " \n\t ", "data:;base64,=="])
def test_empty_payload_is_refused(tmp_path, value):
    assert "is empty" in refuse(value, tmp_path).message


def test_payload_over_the_base64_limit_is_refused_before_decoding(tmp_path):
    error = refuse(b64(b"\0" * 1001), tmp_path, MediaTooLarge, max_base64_mb=0.001)
    assert "URL" in error.message and "TALKGEN_MAX_BASE64_MB" in error.message
    # Exactly at the limit is fine, and whitespace does not count towards it.
    text = b64(b"\0" * 1000)
    ctx = make_ctx(tmp_path, max_base64_mb=0.001)
    assert Base64Source().fetch(ref("\n".join(text)), ctx).stat().st_size == 1000


def test_cancel_leaves_no_file(tmp_path, png):
    ctx = make_ctx(tmp_path)
    ctx.cancel.set()
    with pytest.raises(Cancelled) as exc:
        Base64Source().fetch(ref(b64(png)), ctx)
    assert_refused(exc, ctx, "cancelled", "image_base64")


# --- through the core (registry, sniffing, role check) ---------------------------------------------


@pytest.fixture
def sources_only(monkeypatch: pytest.MonkeyPatch) -> None:
    use_builtin_sources_only(monkeypatch)


def test_fetch_media_accepts_a_png_as_the_image(tmp_path, png, sources_only):
    media = fetch_media(ref(f"data:image/png;base64,{b64(png)}"), make_ctx(tmp_path))
    assert (media.kind, media.mime, media.source) == ("image", "image/png", "image_base64")


def test_fetch_media_refuses_an_mp3_sent_as_the_image(tmp_path, sources_only):
    mp3 = make_audio(tmp_path / "voice.mp3").read_bytes()
    ctx = make_ctx(tmp_path)
    with pytest.raises(UnsupportedMedia) as exc:
        fetch_media(ref(f"data:image/png;base64,{b64(mp3)}"), ctx)
    assert_refused(exc, ctx, "unsupported_media", "image_base64")
    assert "audio/mpeg" in exc.value.message
