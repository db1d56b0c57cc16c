"""Checkpoints that cannot lie: a crash at any write, damage, other inputs, or a failed delivery never make
a resumed job wrong or stuck."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from talkgen.engines.native.run import checkpoint as ckpt
from talkgen.engines.native.run.checkpoint import Checkpoint, checkpoint_root
from talkgen.errors import EngineFailed, OutputFailed
from tests.native.conftest import request
from tests.support.video_check import decode


class Crash(BaseException):
    """A kill: nothing after it runs, nothing catches it as an error."""


def _frames(window: int) -> np.ndarray:
    return np.random.default_rng(window).integers(0, 255, (3, 16, 24, 3), dtype=np.uint8)


def _save_windows(url: str, count: int) -> None:
    saver = Checkpoint(url, "fp")
    for k in range(count):
        saver.save(k, _frames(k), {"seed": 1, "after": k})


@pytest.mark.parametrize("where", ["local", "memory"])
def test_a_crash_at_any_write_leaves_the_last_complete_window(where, tmp_path, monkeypatch):
    """Three windows are 9 writes; kill the run at each one, in the middle of it for local files."""
    url = str(tmp_path / "ck") if where == "local" else f"memory://ck-{tmp_path.name}"
    real = ckpt.write_atomic
    for crash_at in range(9):
        calls = {"n": 0}

        def write(fs, path, blob, crash_at=crash_at, calls=calls):  # type: ignore[no-untyped-def]
            if calls["n"] == crash_at:
                if where == "local":  # killed while the bytes go out: half of them reach the disk
                    monkeypatch.setattr(ckpt.os, "fsync", _raise_crash)
                    try:
                        real(fs, path, blob[: len(blob) // 2])
                    finally:
                        monkeypatch.undo()
                raise Crash
            calls["n"] += 1
            real(fs, path, blob)

        monkeypatch.setattr(ckpt, "write_atomic", write)
        with pytest.raises(Crash):
            _save_windows(url, 3)
        monkeypatch.setattr(ckpt, "write_atomic", real)

        resume = Checkpoint(url, "fp").load()
        done = crash_at // 3  # the index is the third write of each window
        if done == 0:
            assert resume is None
        else:
            loaded = Checkpoint(url, "fp")
            resume = loaded.load()
            assert resume.windows_done == done and resume.tensors["after"] == done - 1
            for k in range(done):
                assert np.array_equal(loaded.frames(k), _frames(k))
        if where == "local":
            assert not list(Path(url).glob("*.tmp")), "a killed write left a temporary file"
        Checkpoint(url, "fp").clear()


@pytest.mark.parametrize("damage", ["index-garbage", "index-truncated", "state-truncated", "window-missing",
                                    "other-fingerprint"])
def test_a_damaged_checkpoint_is_discarded_with_a_warning(damage, tmp_path, caplog):
    url = tmp_path / "ck"
    _save_windows(str(url), 2)
    if damage == "index-garbage":
        (url / "state.json").write_bytes(b"\x00\xff{not json")
    elif damage == "index-truncated":
        (url / "state.json").write_bytes((url / "state.json").read_bytes()[:40])
    elif damage == "state-truncated":
        state = url / "state-00001.pt"
        state.write_bytes(state.read_bytes()[:100])
    elif damage == "window-missing":
        (url / "window-00000.mkv").unlink()
    with caplog.at_level(logging.WARNING):
        assert Checkpoint(str(url), "other" if damage == "other-fingerprint" else "fp").load() is None
    assert "starting over" in caplog.text
    assert not url.exists()


def test_same_size_corruption_fails_retryably_once_then_starts_over(tmp_path):
    url = tmp_path / "ck"
    _save_windows(str(url), 2)
    window = url / "window-00001.mkv"
    blob = bytearray(window.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    window.write_bytes(bytes(blob))
    loaded = Checkpoint(str(url), "fp")
    assert loaded.load().windows_done == 2  # sizes match: found only when the frames are read back
    assert np.array_equal(loaded.frames(0), _frames(0))
    with pytest.raises(EngineFailed) as err:
        loaded.frames(1)
    assert err.value.retryable and not url.exists()


# ---- through the engine ----------------------------------------------------------------------------

def _job(native_media: Path, wav: str = "speech.wav", **extra):  # type: ignore[no-untyped-def]
    return request(native_media, wav_path=str(native_media / wav), seed=21, **extra)


def _raise_crash(*_args) -> None:  # type: ignore[no-untyped-def]
    raise Crash


@pytest.fixture
def straight(native_service, native_media, tmp_path):  # type: ignore[no-untyped-def]
    out = tmp_path / "straight.mp4"
    native_service.generate(_job(native_media), output=str(out))
    return decode(out)


def _same(a, b) -> bool:  # type: ignore[no-untyped-def]
    return a.count == b.count and all(np.array_equal(x, y) for x, y in zip(a.frames, b.frames, strict=True))


def test_killed_between_window_files_and_index_resumes_into_the_same_video(native_service, native_media, tmp_path,
                                                                           monkeypatch, straight):
    """Window 1's frames and state are written, its index is not: the rerun redoes window 1 only."""
    real, calls = ckpt.write_atomic, {"n": 0}

    def write(fs, path, blob):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 6:  # window 0: 3 writes; window 1: frames, state, then the index
            raise Crash
        real(fs, path, blob)

    monkeypatch.setattr(ckpt, "write_atomic", write)
    with pytest.raises(Crash):
        native_service.generate(_job(native_media, job_id="kill-before-index"), output=str(tmp_path / "x.mp4"))
    monkeypatch.setattr(ckpt, "write_atomic", real)

    out = tmp_path / "resumed.mp4"
    result = native_service.generate(_job(native_media, job_id="kill-before-index"), output=str(out))
    assert result.params["resumed_from_window"] == 1
    assert _same(decode(out), straight)


def test_a_failed_delivery_keeps_the_checkpoint_and_the_rerun_renders_nothing(native_service, native_media, tmp_path,
                                                                             monkeypatch, straight):
    real_deliver = type(native_service)._deliver

    def broken(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise OutputFailed("the upload broke off")

    monkeypatch.setattr(type(native_service), "_deliver", broken)
    with pytest.raises(OutputFailed):
        native_service.generate(_job(native_media, job_id="slow-upload"), output=str(tmp_path / "x.mp4"))
    monkeypatch.setattr(type(native_service), "_deliver", real_deliver)
    folder = Path(checkpoint_root(native_service.settings)) / "slow-upload"
    assert (folder / "state.json").is_file()

    out = tmp_path / "delivered.mp4"
    result = native_service.generate(_job(native_media, job_id="slow-upload"), output=str(out))
    assert result.params["resumed_from_window"] == result.params["windows"] == 2
    assert _same(decode(out), straight)
    assert not folder.exists()  # removed once the video was delivered


def test_a_different_file_at_the_same_path_starts_over(native_service, native_media, tmp_path, monkeypatch):
    """The fingerprint covers the inputs' bytes: same path, new audio → no frames from the old audio."""
    audio = tmp_path / "inputs" / "voice.wav"
    audio.parent.mkdir()
    shutil.copy(native_media / "speech.wav", audio)
    settings = native_service.settings.model_copy(update={"allowed_path_roots": [native_media, audio.parent]})
    service = type(native_service)(settings)
    service._engines = native_service._engines  # the warm engine
    req = request(native_media, wav_path=str(audio), seed=4, job_id="same-path")
    monkeypatch.setattr(type(service), "_deliver", lambda *a, **k: (_ for _ in ()).throw(OutputFailed("down")))
    with pytest.raises(OutputFailed):
        service.generate(req, output=str(tmp_path / "x.mp4"))
    monkeypatch.undo()

    shutil.copy(native_media / "speech_low.wav", audio)  # same length and name, other speech
    out = tmp_path / "new.mp4"
    assert service.generate(req, output=str(out)).params["resumed_from_window"] == 0
    fresh = tmp_path / "fresh.mp4"
    native_service.generate(request(native_media, wav_path=str(native_media / "speech_low.wav"), seed=4),
                            output=str(fresh))
    assert _same(decode(out), decode(fresh))
