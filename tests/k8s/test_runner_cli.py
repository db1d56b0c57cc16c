"""The ``run`` command's flags and exit codes, without an engine (bad lines only, or nothing to start)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from talkgen.k8s.run_cli import run


def _invoke(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(run, list(args), env={"JOB_COMPLETION_INDEX": None, **(env or {})})


@pytest.fixture
def batch(tmp_path: Path) -> Path:
    path = tmp_path / "b.jsonl"
    path.write_text('{oops\n\n[1]\n{"job_id": "x", "nonsense_field": 1, "width": 128}\n')
    return path


@pytest.mark.parametrize(("args", "message"), [
    (("--shards", "0", "--index", "0"), "--shards"),
    (("--shards", "2", "--index", "-1"), "--index"),
    (("--shards", "2", "--index", "nope"), "--index"),
    (("--index", "0"), "--shards"),
])
def test_bad_flags_exit_78(batch, tmp_path, args, message):
    result = _invoke("--requests", str(batch), "--output", str(tmp_path / "out"), *args)
    assert result.exit_code == 78, result.output
    assert message in result.output


def test_index_from_the_indexed_job_environment(batch, tmp_path):
    base = ("--requests", str(batch), "--output", str(tmp_path / "out"), "--shards", "3", "--json")
    missing = _invoke(*base)
    assert missing.exit_code == 78 and "JOB_COMPLETION_INDEX" in missing.output
    outside = _invoke(*base, env={"JOB_COMPLETION_INDEX": "3"})
    assert outside.exit_code == 78 and "outside 0..2" in outside.output
    garbage = _invoke(*base, env={"JOB_COMPLETION_INDEX": "two"})
    assert garbage.exit_code == 78 and "not a shard number" in garbage.output
    ok = _invoke(*base, env={"JOB_COMPLETION_INDEX": "1"})  # shard 1 of 3 holds line 3 only
    summary = json.loads(ok.output.strip().splitlines()[-1])
    assert (ok.exit_code, summary["index"], summary["items"], summary["failed"]) == (42, 1, 1, 1)


def test_bad_lines_fail_for_good_without_an_engine(batch, tmp_path):
    out = tmp_path / "out"
    result = _invoke("--requests", str(batch), "--output", str(out), "--shards", "1", "--index", "0", "--json",
                     env={"TALKGEN_MODELS_DIR": str(tmp_path / "no-weights")})
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert result.exit_code == 42, result.output
    assert (summary["items"], summary["failed"], summary["succeeded"]) == (3, 3, 0)
    records = {p.name: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert set(records) == {"line-000001.json", "line-000003.json", "x.json"}
    assert records["x.json"]["response"]["error_code"] == "invalid_request"
    assert "nonsense_field" in records["x.json"]["response"]["error"]
    assert "Line 3" in records["line-000003.json"]["response"]["error"]
    assert "line 1 line-000001: failed (invalid_request, final)" in result.output


def test_missing_requests_file_and_bad_output_exit_78(tmp_path, batch):
    gone = _invoke("--requests", str(tmp_path / "gone.jsonl"), "--output", str(tmp_path), "--shards", "1",
                   "--index", "0")
    assert gone.exit_code == 78 and "does not exist" in gone.output
    proto = _invoke("--requests", str(batch), "--output", "nosuch://b/out", "--shards", "1", "--index", "0")
    assert proto.exit_code == 78 and "--output" in proto.output
    file_like = _invoke("--requests", str(batch), "--output", str(tmp_path / "v.mp4"), "--shards", "1",
                        "--index", "0")
    assert file_like.exit_code == 78 and "looks like a file" in file_like.output


def test_help_lists_the_exit_codes():
    result = CliRunner().invoke(run, ["--help"])
    assert result.exit_code == 0
    for code in ("0", "42", "75", "78"):
        assert f"{code} " in result.output
