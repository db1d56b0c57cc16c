"""PathSource on real files: allowed roots, `..` and symlink escapes, special files, caps."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from talkgen.errors import Cancelled, ForbiddenSource, MediaTooLarge, MediaUnreadable
from talkgen.request import MediaRef
from talkgen.settings import Settings
from talkgen.sources import FetchContext
from talkgen.sources.path import PathSource
from tests.support.media_factory import make_image, make_wav
from tests.support.source_checks import assert_refused


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root").mkdir()
    return tmp_path / "root"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    (tmp_path / "outside").mkdir()
    return make_image(tmp_path / "outside" / "secret.png")


def make_ctx(tmp_path: Path, roots: list[Path], **settings: object) -> FetchContext:
    return FetchContext(Settings(allowed_path_roots=roots, **settings), dest_dir=tmp_path / "work")


def ref(value: str | Path, field: str = "image_path") -> MediaRef:
    role = "image" if field.startswith("image") else "audio_1"
    return MediaRef(role=role, field=field, via="path", value=str(value))


def test_copies_a_file_under_an_allowed_root(tmp_path, root):
    (root / "people").mkdir()
    face = make_image(root / "people" / "face.png")
    ctx = make_ctx(tmp_path, [tmp_path / "elsewhere", root])
    path = PathSource().fetch(ref(face), ctx)
    assert path == ctx.dest_dir / "input_image"
    assert path.read_bytes() == face.read_bytes()
    assert face.exists()


def test_relative_paths_resolve_from_the_working_directory(tmp_path, root, monkeypatch):
    wav = make_wav(root / "voice.wav")
    monkeypatch.chdir(root)
    path = PathSource().fetch(ref("voice.wav", field="wav_path"), make_ctx(tmp_path, [root]))
    assert path.read_bytes() == wav.read_bytes()


def test_a_root_given_through_a_symlink_still_allows_its_files(tmp_path, root):
    face = make_image(root / "face.png")
    link = tmp_path / "root-link"
    link.symlink_to(root)
    path = PathSource().fetch(ref(link / "face.png"), make_ctx(tmp_path, [link]))
    assert path.read_bytes() == face.read_bytes()


def test_a_symlink_that_stays_inside_the_root_is_followed(tmp_path, root):
    face = make_image(root / "face.png")
    (root / "alias.png").symlink_to(face)
    path = PathSource().fetch(ref(root / "alias.png"), make_ctx(tmp_path, [root]))
    assert path.read_bytes() == face.read_bytes()


@pytest.mark.parametrize(
    "escape",
    [
        lambda root, outside: f"{root}/../outside/{outside.name}",
        lambda root, outside: f"{root}/sub/../../outside/{outside.name}",
        lambda root, outside: str(outside),
        lambda root, outside: f"{root}2/{outside.name}",  # a sibling whose name starts like the root
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "prefix-sibling"],
)
def test_paths_outside_every_root_are_refused(tmp_path, root, outside, escape):
    (root / "sub").mkdir()
    (tmp_path / "root2").mkdir()
    make_image(tmp_path / "root2" / outside.name)
    ctx = make_ctx(tmp_path, [root])
    with pytest.raises(ForbiddenSource) as exc:
        PathSource().fetch(ref(escape(root, outside)), ctx)
    assert_refused(exc, ctx, "forbidden_source", "image_path")
    assert "TALKGEN_ALLOWED_PATH_ROOTS" in exc.value.message
    assert str(root) in exc.value.message


def test_a_symlink_escaping_the_root_is_refused(tmp_path, root, outside):
    (root / "innocent.png").symlink_to(outside)
    (root / "dir-link").symlink_to(outside.parent)
    ctx = make_ctx(tmp_path, [root])
    for value in (root / "innocent.png", root / "dir-link" / outside.name):
        with pytest.raises(ForbiddenSource) as exc:
            PathSource().fetch(ref(value), ctx)
        assert_refused(exc, ctx, "forbidden_source", "image_path")


def test_no_configured_roots_refuses_everything(tmp_path, root):
    face = make_image(root / "face.png")
    ctx = make_ctx(tmp_path, [])
    with pytest.raises(ForbiddenSource) as exc:
        PathSource().fetch(ref(face), ctx)
    assert_refused(exc, ctx, "forbidden_source", "image_path")


def test_missing_file_says_to_check_the_path(tmp_path, root):
    ctx = make_ctx(tmp_path, [root])
    with pytest.raises(MediaUnreadable) as exc:
        PathSource().fetch(ref(root / "nope.wav", field="wav_path"), ctx)
    assert_refused(exc, ctx, "media_unreadable", "wav_path")
    assert "file not found" in exc.value.message and "inside the container" in exc.value.message


def test_a_missing_file_outside_the_roots_is_refused_not_reported_missing(tmp_path, root):
    ctx = make_ctx(tmp_path, [root])
    with pytest.raises(ForbiddenSource) as exc:
        PathSource().fetch(ref(tmp_path / "outside-nope.png"), ctx)
    assert_refused(exc, ctx, "forbidden_source", "image_path")


def test_directories_and_special_files_are_refused(tmp_path, root):
    (root / "folder").mkdir()
    os.mkfifo(root / "pipe")  # opening a FIFO would block: it must be refused before that
    ctx = make_ctx(tmp_path, [root])
    for name in ("folder", "pipe"):
        with pytest.raises(MediaUnreadable) as exc:
            PathSource().fetch(ref(root / name), ctx)
        assert_refused(exc, ctx, "media_unreadable", "image_path")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_an_unreadable_file_is_reported(tmp_path, root):
    face = make_image(root / "face.png")
    face.chmod(0)
    ctx = make_ctx(tmp_path, [root])
    with pytest.raises(MediaUnreadable) as exc:
        PathSource().fetch(ref(face), ctx)
    assert_refused(exc, ctx, "media_unreadable", "image_path")


def test_files_over_the_size_cap_are_refused(tmp_path, root):
    (root / "big.bin").write_bytes(b"\0" * 1001)
    (root / "fits.bin").write_bytes(b"\0" * 1000)
    ctx = make_ctx(tmp_path, [root], max_download_mb=0.001)
    with pytest.raises(MediaTooLarge) as exc:
        PathSource().fetch(ref(root / "big.bin"), ctx)
    assert_refused(exc, ctx, "media_too_large", "image_path")
    assert PathSource().fetch(ref(root / "fits.bin"), ctx).stat().st_size == 1000


def test_cancel_stops_the_copy_and_leaves_no_file(tmp_path, root):
    face = make_image(root / "face.png")
    ctx = make_ctx(tmp_path, [root])
    ctx.cancel.set()
    with pytest.raises(Cancelled) as exc:
        PathSource().fetch(ref(face), ctx)
    assert_refused(exc, ctx, "cancelled", "image_path")


def test_handles_only_path_refs():
    assert PathSource().handles(ref("/x.png"))
    assert not PathSource().handles(MediaRef(role="image", field="image_url", via="url", value="/x.png"))
