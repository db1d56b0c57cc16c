"""Saving the video a response points at: inline data, http(s), storage URLs, local paths."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from talkgen.client.download import save_video
from talkgen.errors import FetchFailed, InvalidRequest, OutputFailed
from tests.support.http_server import LoopbackServer, Reply

DATA = b"\x00\x00\x00\x20ftypisom" + bytes(range(256)) * 10


def test_inline_data_uri_and_the_seeds_bare_base64(tmp_path: Path) -> None:
    b64 = base64.b64encode(DATA).decode()
    assert save_video({"video": f"data:video/mp4;base64,{b64}"}, tmp_path / "a.mp4").read_bytes() == DATA
    assert save_video({"video": b64}, tmp_path / "sub" / "b.mp4").read_bytes() == DATA
    with pytest.raises(OutputFailed, match="not valid base64"):
        save_video({"video": "data:video/mp4;base64,@@@"}, tmp_path / "c.mp4")
    assert not (tmp_path / "c.mp4").exists() and not list(tmp_path.glob(".*part"))


def test_presigned_url_first_then_errors_say_why(tmp_path: Path) -> None:
    with LoopbackServer() as server:
        server.route("/v.mp4", Reply.file(DATA, "video/mp4"))
        server.route("/gone.mp4", Reply.error(403))
        response = {"video_url": "s3://private/v.mp4", "presigned_url": server.url("/v.mp4?X-Amz-Signature=s")}
        assert save_video(response, tmp_path / "p.mp4").read_bytes() == DATA
        with pytest.raises(FetchFailed, match=r"HTTP 403: a presigned URL expires") as caught:
            save_video({"video_url": server.url("/gone.mp4")}, tmp_path / "g.mp4")
    assert "Signature" not in str(caught.value) and not (tmp_path / "g.mp4").exists()


def test_storage_url_with_storage_options(tmp_path: Path) -> None:
    pytest.importorskip("s3fs")
    from tests.support.s3 import MotoS3

    with MotoS3() as s3:
        fs = s3.filesystem()
        fs.mkdir("client-out")
        fs.pipe("client-out/jobs/j1.mp4", DATA)
        path = save_video({"video_url": "s3://client-out/jobs/j1.mp4"}, tmp_path / "s3.mp4",
                          {"s3": s3.storage_options})
        assert path.read_bytes() == DATA
        with pytest.raises(FetchFailed, match=r"s3://client-out/jobs/none\.mp4 failed"):
            save_video({"video_url": "s3://client-out/jobs/none.mp4"}, tmp_path / "n.mp4", s3.storage_options)


def test_local_and_remote_paths(tmp_path: Path) -> None:
    (tmp_path / "on-volume.mp4").write_bytes(DATA)
    assert save_video({"video_path": str(tmp_path / "on-volume.mp4")}, tmp_path / "copy.mp4").read_bytes() == DATA
    with pytest.raises(OutputFailed, match="this machine cannot read: set `output_url`"):
        save_video({"video_path": "/runpod-volume/infinitetalk_task_x.mp4"}, tmp_path / "x.mp4")
    with pytest.raises(InvalidRequest, match="names no video"):
        save_video({"frames": 3}, tmp_path / "y.mp4")
