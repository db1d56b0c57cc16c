"""Where the video goes: inline, network volume, request output_url, overflow to TALKGEN_OUTPUT_URL."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from talkgen.errors import TalkgenError
from tests.conftest import assert_no_leftovers
from tests.support.s3 import MotoS3
from tests.support.video_check import decode

pytest.importorskip("s3fs")
BUCKET = "talkgen-out"


@pytest.fixture(scope="module")
def s3():
    with MotoS3() as server:
        server.filesystem().mkdir(BUCKET)
        yield server


def _request(media_dir: Path, **extra) -> dict:
    return {"image_path": str(media_dir / "face.png"), "wav_path": str(media_dir / "speech.wav"),
            "width": 128, "height": 128, **extra}


def test_small_video_is_inline(service, media_dir: Path, tmp_path: Path) -> None:
    result = service.generate(_request(media_dir))
    assert result.video.startswith("data:video/mp4;base64,") and result.video_url is None
    assert decode(result.save(tmp_path / "v.mp4")).count == 50
    assert result.size_bytes == (tmp_path / "v.mp4").stat().st_size


def test_oversize_goes_to_the_configured_bucket_with_a_presigned_link(service, s3, media_dir: Path,
                                                                      tmp_path: Path, work_root: Path) -> None:
    service.settings = service.settings.model_copy(update={
        "inline_output_limit_mb": 0.001, "output_url": f"s3://{BUCKET}/videos/",
        "storage_options": {"s3": s3.storage_options}})
    result = service.generate(_request(media_dir, job_id="big-1"))
    assert result.video is None and result.video_url == f"s3://{BUCKET}/videos/big-1.mp4"
    info = s3.filesystem().info(f"{BUCKET}/videos/big-1.mp4")
    assert info["size"] == result.size_bytes and info["ContentType"] == "video/mp4"
    link = result.presigned_url
    assert link.startswith(s3.endpoint) and "Signature=" in link and "Expires=" in link
    (tmp_path / "dl.mp4").write_bytes(httpx.get(link, trust_env=False).content)
    assert decode(tmp_path / "dl.mp4").count == 50
    assert_no_leftovers(work_root)


def test_oversize_without_destination_is_a_clear_error(service, media_dir: Path, work_root: Path) -> None:
    service.settings = service.settings.model_copy(update={"inline_output_limit_mb": 0.001})
    with pytest.raises(TalkgenError) as err:
        service.generate(_request(media_dir))
    assert err.value.code == "output_failed" and "TALKGEN_OUTPUT_URL" in err.value.message
    assert_no_leftovers(work_root)


def test_request_output_url_exact_name_and_prefix(service, s3, media_dir: Path) -> None:
    service.settings = service.settings.model_copy(update={
        "storage_options": {"s3": s3.storage_options}, "output_protocols": ["s3", "memory"]})
    exact = service.generate(_request(media_dir, output_url=f"s3://{BUCKET}/exact/name.mp4"))
    assert exact.video_url == f"s3://{BUCKET}/exact/name.mp4"
    import fsspec

    fsspec.filesystem("memory").store.clear()
    prefixed = service.generate(_request(media_dir, output_url="memory://renders/", job_id="j7"))
    assert prefixed.video_url == "memory://renders/j7.mp4" and prefixed.presigned_url is None
    assert fsspec.filesystem("memory").size("/renders/j7.mp4") == prefixed.size_bytes


def test_network_volume_path_and_missing_volume(service, media_dir: Path, work_root: Path) -> None:
    with pytest.raises(TalkgenError) as err:  # checked before any download: the URL is never fetched
        service.generate({**_request(media_dir), "wav_path": None, "wav_url": "http://127.0.0.1:9/a.wav",
                          "network_volume": True})
    assert err.value.code == "output_failed" and err.value.field == "network_volume"
    assert "network volume" in err.value.message
    service.settings.volume_dir.mkdir()
    result = service.generate(_request(media_dir, network_volume=True, job_id="vol-1"))
    assert result.video_path == str(service.settings.volume_dir / "talkgen_vol-1.mp4")
    assert decode(Path(result.video_path)).count == 50
    assert_no_leftovers(work_root)


def test_local_output_url_only_under_output_roots(service, media_dir: Path, tmp_path: Path, work_root: Path) -> None:
    with pytest.raises(TalkgenError) as err:
        service.generate(_request(media_dir, output_url=str(tmp_path / "elsewhere" / "x.mp4")))
    assert err.value.code == "forbidden_source" and err.value.field == "output_url"
    allowed = service.settings.output_roots[0] / "ok.mp4"
    result = service.generate(_request(media_dir, output_url=f"file://{allowed}"))
    assert result.video_path == str(allowed) and decode(allowed).count == 50
    assert_no_leftovers(work_root)


@pytest.mark.parametrize("url", ["local:///tmp/talkgen-pwn.mp4", "simplecache::file:///tmp/talkgen-pwn.mp4",
                                 "FILE:///tmp/talkgen-pwn.mp4", "ftp://10.0.0.1/x.mp4", "memory://x/",
                                 "nosuchproto://bucket/x.mp4"])
def test_untrusted_output_url_cannot_reach_local_files_or_other_hosts(service, media_dir: Path, url: str,
                                                                      work_root: Path) -> None:
    with pytest.raises(TalkgenError) as err:  # refused before any work: the wav URL is never fetched
        service.generate({**_request(media_dir), "wav_path": None, "wav_url": "http://127.0.0.1:9/a.wav",
                          "output_url": url})
    assert err.value.code == "forbidden_source" and err.value.field == "output_url"
    assert not Path("/tmp/talkgen-pwn.mp4").exists()
    assert_no_leftovers(work_root)


def _on_stage(stage: str, action):  # type: ignore[no-untyped-def]
    """A progress callback that runs ``action`` once, when the job first reports ``stage``."""
    done = []

    def progress(event) -> None:  # type: ignore[no-untyped-def]
        if event.stage == stage and not done:
            done.append(True)
            action()

    return progress


def test_a_directory_or_a_file_parent_as_output_is_refused_before_any_work(service, media_dir: Path,
                                                                          tmp_path: Path, work_root: Path) -> None:
    unreachable = {**_request(media_dir), "wav_path": None, "wav_url": "http://127.0.0.1:9/a.wav"}
    target = tmp_path / "outdir" / "clip.mp4"
    target.mkdir(parents=True)
    with pytest.raises(TalkgenError) as err:  # refused before the (unreachable) audio is fetched
        service.generate(unreachable, output=target)
    assert (err.value.code, err.value.field, err.value.retryable) == ("invalid_request", "output", False)
    assert "is a directory" in err.value.message and str(target) in err.value.message
    (tmp_path / "afile").write_text("x")
    with pytest.raises(TalkgenError) as err:
        service.generate(unreachable, output=tmp_path / "afile" / "sub" / "v.mp4")
    assert err.value.code == "invalid_request" and "not a directory" in err.value.message
    roots = service.settings.output_roots
    (roots[0] / "taken.mp4").mkdir(parents=True)
    with pytest.raises(TalkgenError) as err:
        service.generate({**unreachable, "output_url": str(roots[0] / "taken.mp4")})
    assert (err.value.code, err.value.field) == ("invalid_request", "output_url")
    assert_no_leftovers(work_root)


def test_failed_local_write_leaves_no_partial_file(service, media_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "outdir" / "clip.mp4"
    swap = _on_stage("generate", lambda: target.mkdir(parents=True))  # a directory appears mid-render
    with pytest.raises(TalkgenError) as err:
        service.generate(_request(media_dir), output=target, progress=swap)
    assert err.value.code == "output_failed" and err.value.retryable is False
    assert sorted(p.name for p in target.parent.iterdir()) == ["clip.mp4"] and target.is_dir()


def test_output_dir_swapped_for_a_symlink_mid_render_is_refused(service, media_dir: Path, tmp_path: Path,
                                                                 work_root: Path) -> None:
    root = service.settings.output_roots[0]
    (root / "user").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()

    def swap() -> None:
        (root / "user").rmdir()
        (root / "user").symlink_to(outside, target_is_directory=True)

    with pytest.raises(TalkgenError) as err:
        service.generate(_request(media_dir, output_url=str(root / "user" / "clip.mp4")),
                         progress=_on_stage("generate", swap))
    assert (err.value.code, err.value.field, err.value.retryable) == ("forbidden_source", "output_url", False)
    assert "symbolic link" in err.value.message
    assert list(outside.iterdir()) == [] and not any(p.is_file() for p in root.rglob("*"))
    assert_no_leftovers(work_root)


def test_output_url_through_a_symlink_is_written_at_its_real_place_under_the_root(service, media_dir: Path,
                                                                                  tmp_path: Path) -> None:
    root = service.settings.output_roots[0]
    (root / "real").mkdir(parents=True)
    (root / "alias").symlink_to(root / "real", target_is_directory=True)  # inside the root: allowed
    result = service.generate(_request(media_dir, output_url=f"FILE://{root}/alias/", job_id="j9"))
    assert result.video_path == str(root / "real" / "j9.mp4") and decode(root / "real" / "j9.mp4").count == 50
    assert sorted(p.name for p in (root / "real").iterdir()) == ["j9.mp4"]  # no temporary file left


def test_unknown_protocol_as_trusted_output_is_refused_before_any_work(service, media_dir: Path) -> None:
    with pytest.raises(TalkgenError) as err:
        service.generate({**_request(media_dir), "wav_path": None, "wav_url": "http://127.0.0.1:9/a.wav"},
                         output="nosuchproto://bucket/x.mp4")
    assert (err.value.code, err.value.field) == ("invalid_request", "output")
