"""The `talkgen` command as a user runs it: a real subprocess, real files, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import assert_no_leftovers, subprocess_env
from tests.support.video_check import decode


def run(args: list[str], tmp_path: Path, work_root: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "talkgen.cli", *args], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env=subprocess_env(**{"TALKGEN_ENGINE": "test-bars", "TALKGEN_WORK_DIR": str(work_root), **env}),
    )


def test_generate_with_flags_writes_the_mp4(media_dir: Path, tmp_path: Path, work_root: Path) -> None:
    out = tmp_path / "talk.mp4"
    proc = run(["generate", "--image", str(media_dir / "face.jpg"), "--audio", str(media_dir / "speech.mp3"),
                "--width", "160", "--height", "128", "--seed", "3", "-o", str(out), "--json"], tmp_path, work_root)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["video_path"] == str(out) and result["seed"] == 3
    video = decode(out)
    assert video.count == result["frames"] == 40  # 1.6 s of mp3 at 25 fps
    assert (video.width, video.height) == (160, 128)
    assert_no_leftovers(work_root)


def test_no_separate_vocals_flag_skips_the_separator(media_dir: Path, tmp_path: Path, work_root: Path) -> None:
    args = ["generate", "--image", str(media_dir / "face.png"), "--audio", str(media_dir / "speech.wav"), "--width",
            "128", "--height", "128", "--json"]
    gone = str(tmp_path / "no-such-separator.safetensors")
    needs = run([*args, "-o", "a.mp4"], tmp_path, work_root, TALKGEN_SEPARATION_MODEL=gone)
    assert needs.returncode == 1 and json.loads(needs.stdout)["error_code"] == "engine_unavailable"
    skipped = run([*args, "--no-separate-vocals", "-o", "b.mp4"], tmp_path, work_root, TALKGEN_SEPARATION_MODEL=gone)
    assert skipped.returncode == 0, skipped.stderr
    assert json.loads(skipped.stdout)["params"]["separate_vocals"] is False
    assert decode(tmp_path / "b.mp4").count == 50


def test_generate_from_request_file_two_speakers(media_dir: Path, tmp_path: Path, work_root: Path) -> None:
    req = tmp_path / "req.json"
    req.write_text(json.dumps({"input": {
        "person_count": "multi", "audio_type": "add", "image_path": str(media_dir / "face.png"),
        "wav_path": str(media_dir / "speech.wav"), "wav_path_2": str(media_dir / "speech2.wav"),
        "width": 128, "height": 128}}))
    proc = run(["generate", "--request", str(req), "-o", "two.mp4"], tmp_path, work_root)
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and "80 frames" in proc.stdout  # 2.0 s + 1.2 s in turns
    assert decode(tmp_path / "two.mp4").count == 80


def test_exit_code_2_for_bad_input_1_for_other_failures(media_dir: Path, tmp_path: Path, work_root: Path) -> None:
    missing = run(["generate", "--image", str(media_dir / "face.png"), "--json"], tmp_path, work_root)
    assert missing.returncode == 2
    assert json.loads(missing.stdout)["error_code"] == "missing_media"
    wrong_kind = run(["generate", "--image", str(media_dir / "speech.mp3"), "--audio", str(media_dir / "speech.wav")],
                     tmp_path, work_root)
    assert wrong_kind.returncode == 2 and "unsupported_media" in wrong_kind.stderr
    assert "Traceback" not in wrong_kind.stderr
    named = run(["generate", "--image", str(media_dir / "face.png"), "--audio", str(media_dir / "speech.wav"),
                 "--engine", "no-such-engine"], tmp_path, work_root)
    assert named.returncode == 2 and "Unknown engine 'no-such-engine'" in named.stderr
    not_a_request = tmp_path / "list.json"
    not_a_request.write_text("[1, 2]")
    for command in (["validate", str(not_a_request)], ["generate", "--request", str(not_a_request)]):
        proc = run(command, tmp_path, work_root)
        assert proc.returncode == 2 and "must be a JSON object" in proc.stderr and "Traceback" not in proc.stderr
    # The operator's default engine missing, or storage that cannot be reached, is not the input's fault: exit 1.
    default = run(["generate", "--image", str(media_dir / "face.png"), "--audio", str(media_dir / "speech.wav"),
                   "-o", "o.mp4"], tmp_path, work_root, TALKGEN_ENGINE="no-such-engine")
    assert default.returncode == 1 and "engine_unavailable" in default.stderr and "TALKGEN_ENGINE" in default.stderr
    upload = run(["generate", "--image", str(media_dir / "face.png"), "--audio", str(media_dir / "speech.wav"),
                  "-o", "s3://bucket/x.mp4"], tmp_path, work_root,
                 TALKGEN_STORAGE_OPTIONS=json.dumps({"s3": {"key": "k", "secret": "s", "client_kwargs": {
                     "endpoint_url": "http://127.0.0.1:9"}, "config_kwargs": {"retries": {"max_attempts": 1}}}}))
    assert upload.returncode == 1 and "output_failed" in upload.stderr
    assert_no_leftovers(work_root)


def test_validate_fetches_nothing(tmp_path: Path, work_root: Path) -> None:
    req = tmp_path / "r.json"
    req.write_text(json.dumps({"input_type": "video", "video_url": "https://unreachable.invalid/v.mp4",
                               "wav_url": "https://unreachable.invalid/a.wav", "width": 640, "height": 360}))
    proc = run(["validate", str(req), "--json"], tmp_path, work_root)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"valid": True, "mode": "V2V_single",
                                       "media": {"video": "video_url", "audio_1": "wav_url"},
                                       "size": "640x368", "audio_type": None}
    req.write_text(json.dumps({"image_url": "https://x/a.png"}))
    assert run(["validate", str(req)], tmp_path, work_root).returncode == 2


def test_plugins_lists_builtins_and_the_installed_test_plugin(tmp_path: Path, work_root: Path) -> None:
    proc = run(["plugins", "--json"], tmp_path, work_root)
    assert proc.returncode == 0, proc.stderr
    rows = {(r["kind"], r["name"]): r for r in json.loads(proc.stdout)}
    for key in [("source", "path"), ("source", "url"), ("source", "base64"), ("source", "fsspec"),
                ("sink", "inline"), ("sink", "file"), ("sink", "fsspec"), ("runtime", "runpod")]:
        assert rows[key]["distribution"] == "talkgen (built-in)"
    assert rows[("engine", "test-bars")]["distribution"] == "talkgen-test-engine 0.1"


def test_help_imports_nothing_heavy(tmp_path: Path) -> None:
    code = ("import sys, runpy; sys.argv = ['talkgen', '--help']\n"
            "try:\n    runpy.run_module('talkgen.cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'runpod', 'diffusers', 'transformers', 'av', 'numpy') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env())
    assert "HEAVY []" in proc.stdout, proc.stdout + proc.stderr


def test_unreadable_request_files_are_invalid_requests(tmp_path: Path, work_root: Path) -> None:
    (tmp_path / "latin1.json").write_bytes(b'{"prompt": "caf\xe9"}')
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "empty.json").write_text("")
    cases = {
        "latin1.json": "not UTF-8", "deep.json": "nested too deeply", "empty.json": "it is empty",
        "missing.json": "No such file",
    }
    for name, expected in cases.items():
        proc = run(["generate", "--request", name, "--json"], tmp_path, work_root)
        error = json.loads(proc.stdout)
        assert proc.returncode == 2 and error["error_code"] == "invalid_request", (name, proc.stdout)
        assert expected in error["error"] and error["retryable"] is False and "Traceback" not in proc.stderr
    closed = subprocess.run(  # `talkgen generate --request - <&-`: no stdin at all
        [sys.executable, "-m", "talkgen.cli", "generate", "--request", "-"], cwd=tmp_path, capture_output=True,
        text=True, timeout=60, stdin=subprocess.DEVNULL, env=subprocess_env(TALKGEN_WORK_DIR=str(work_root)),
        preexec_fn=lambda: os.close(0),
    )
    assert closed.returncode == 2 and "stdin is closed" in closed.stderr, closed.stderr
    assert_no_leftovers(work_root)


def test_output_problems_are_found_before_the_inputs_are_fetched(media_dir: Path, tmp_path: Path,
                                                                work_root: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    unreachable = ["--image", str(media_dir / "face.png"), "--audio", "http://127.0.0.1:9/never.wav"]
    for target, expected in [(str(tmp_path), "is a directory"), ("a-file/out.mp4", "not a directory")]:
        proc = run(["generate", *unreachable, "-o", target], tmp_path, work_root,
                   TALKGEN_ALLOW_PRIVATE_URLS="true")
        assert proc.returncode == 2 and "invalid_request [output]" in proc.stderr, proc.stderr
        assert expected in proc.stderr and "fetch" not in proc.stderr
    assert_no_leftovers(work_root)


def test_bad_settings_and_work_dir_are_invalid_config(media_dir: Path, tmp_path: Path, work_root: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    args = ["generate", "--image", str(media_dir / "face.png"), "--audio", str(media_dir / "speech.wav"), "--json"]
    for env, name in [({"TALKGEN_WORK_DIR": str(tmp_path / "a-file" / "work")}, "TALKGEN_WORK_DIR"),
                      ({"TALKGEN_CHECKPOINT_URL": "nosuchproto://bucket/ckpt/"}, "TALKGEN_CHECKPOINT_URL"),
                      ({"TALKGEN_OUTPUT_URL": "dbfs-x://bucket/out/"}, "TALKGEN_OUTPUT_URL")]:
        proc = run(args, tmp_path, work_root, **env)
        error = json.loads(proc.stdout)
        assert proc.returncode == 1 and error["error_code"] == "invalid_config" and name in error["error"], error
        assert error["retryable"] is False and "Traceback" not in proc.stderr


_CRASHING_ENGINE = """
import sys
from tests.support.bar_engine import BarEngine

def crash(self, job):
    raise RuntimeError("tensor shapes do not match")

BarEngine.generate = crash
from talkgen.cli import main
main(sys.argv[1:])
"""


def test_an_engine_crash_prints_no_traceback_unless_debugging(media_dir: Path, tmp_path: Path,
                                                              work_root: Path) -> None:
    args = ["generate", "--image", str(media_dir / "face.png"), "--audio", str(media_dir / "speech.wav"),
            "-o", "x.mp4"]

    def crash(**env: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", _CRASHING_ENGINE, *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120, env=subprocess_env(
                                  TALKGEN_ENGINE="test-bars", TALKGEN_WORK_DIR=str(work_root), **env))

    quiet = crash()
    assert quiet.returncode == 1 and "error (engine_failed)" in quiet.stderr, quiet.stderr
    assert "tensor shapes do not match" in quiet.stderr and "Traceback" not in quiet.stderr
    debug = crash(TALKGEN_DEBUG="1")
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    assert_no_leftovers(work_root)
