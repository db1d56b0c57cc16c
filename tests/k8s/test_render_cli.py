"""The render / render-download / validate commands through click's CliRunner (a throwaway ``k8s`` group)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from talkgen.k8s import render_cli
from talkgen.k8s.checks import manifest_problems

BATCH = ["--requests", "s3://bucket/batch.jsonl", "--output", "s3://bucket/out/", "--image", "talkgen:0.1.0"]


@pytest.fixture(scope="module")
def k8s() -> click.Group:
    group = click.Group("k8s")
    for command in (render_cli.render, render_cli.render_download, render_cli.validate, render_cli.submit,
                    render_cli.status, render_cli.delete):
        group.add_command(command)
    return group


def _run(k8s: click.Group, *args: str, stdin: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(k8s, list(args), input=stdin, catch_exceptions=False)


def test_command_names(k8s: click.Group) -> None:
    assert sorted(k8s.commands) == ["delete", "render", "render-download", "status", "submit", "validate"]


def test_render_prints_a_valid_job(k8s: click.Group) -> None:
    result = _run(k8s, "render", *BATCH, "--gpus", "1", "--parallelism", "8", "--models-pvc", "weights",
                  "--toleration", "dedicated=gpu:NoSchedule", "--env", "TALKGEN_NATIVE_QUANT=fp8")
    assert result.exit_code == 0, result.output
    job = yaml.safe_load(result.stdout)
    assert manifest_problems(job) == []
    assert (job["spec"]["completions"], job["spec"]["parallelism"]) == (8, 8)
    assert job["spec"]["template"]["spec"]["volumes"][1]["persistentVolumeClaim"]["claimName"] == "weights"


def test_render_to_a_file(k8s: click.Group, tmp_path: Path) -> None:
    out = tmp_path / "job.yaml"
    result = _run(k8s, "render", *BATCH, "-o", str(out))
    assert result.exit_code == 0 and result.stdout == ""
    assert f"wrote {out}" in result.stderr
    assert yaml.safe_load(out.read_text())["kind"] == "Job"


def test_render_errors_name_the_flag(k8s: click.Group) -> None:
    result = _run(k8s, "render", *BATCH, "--name", "My_Batch", "--parallelism", "9", "--shards", "4")
    assert result.exit_code == 2
    assert "error (invalid_request [--name]): Invalid options: --name: 'My_Batch' is not a DNS-1123 label" \
        in result.stderr
    assert result.stdout == ""
    result = _run(k8s, "render", *BATCH, "--parallelism", "9", "--shards", "4")
    assert result.exit_code == 2 and "raise --shards or lower --parallelism" in result.stderr


def test_render_download(k8s: click.Group) -> None:
    result = _run(k8s, "render-download", "--image", "talkgen:0.1.0", "--models-pvc", "weights",
                  "--model-set", "infinitetalk-480p-fp8", "--skip", "two-speakers", "--env-secret", "hf-token")
    assert result.exit_code == 0, result.output
    job = yaml.safe_load(result.stdout)
    assert manifest_problems(job) == []
    assert job["spec"]["template"]["spec"]["initContainers"][0]["args"][3:] == [
        "infinitetalk-480p-fp8", "--dir", "/models", "--skip", "two-speakers"]
    missing = _run(k8s, "render-download", "--image", "talkgen:0.1.0")
    assert missing.exit_code == 2 and "--models-pvc: is required" in missing.stderr


def test_validate_accepts_rendered_files(k8s: click.Group, tmp_path: Path) -> None:
    batch = _run(k8s, "render", *BATCH).stdout
    download = _run(k8s, "render-download", "--image", "talkgen:1", "--models-pvc", "weights").stdout
    path = tmp_path / "all.yaml"
    path.write_text(batch + "---\n" + download)
    result = _run(k8s, "validate", str(path))
    assert result.exit_code == 0, result.output
    assert "valid (job/talkgen-batch-" in result.stdout and "job/talkgen-models-" in result.stdout
    as_json = json.loads(_run(k8s, "validate", str(path), "--json").stdout)
    assert as_json["valid"] is True and len(as_json["resources"]) == 2
    assert _run(k8s, "validate", "-", stdin=batch).exit_code == 0


def test_validate_lists_every_problem_of_every_document(k8s: click.Group, tmp_path: Path) -> None:
    first = yaml.safe_load(_run(k8s, "render", *BATCH).stdout)
    second = yaml.safe_load(_run(k8s, "render", *BATCH, "--name", "second").stdout)
    first["spec"]["completionMode"] = "Sharded"
    second["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "0.5"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump_all([first, second]))
    result = _run(k8s, "validate", str(path))
    assert result.exit_code == 2
    assert "document 1 (job/talkgen-batch-" in result.stderr and "spec.completionMode: 'Sharded'" in result.stderr
    assert 'document 2 (job/second) spec.template.spec.containers[0].resources.limits["nvidia.com/gpu"]' \
        in result.stderr
    out = json.loads(_run(k8s, "validate", str(path), "--json").stdout)
    assert out["error_code"] == "invalid_request"
    paths = [p["path"] for p in out["details"]["problems"]]
    assert any(p.endswith("spec.completionMode") for p in paths)
    assert any(p.endswith("spec.backoffLimitPerIndex") for p in paths)  # Sharded is not Indexed either
    assert any(p.startswith("document 2") for p in paths)


@pytest.mark.parametrize(("text", "words"), [("", "holds no manifest"), ("a: [b", "is not YAML"),
                                              ("- 1\n- 2\n", "a manifest must be a mapping")])
def test_validate_bad_files(k8s: click.Group, tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    result = _run(k8s, "validate", str(path))
    assert result.exit_code == 2 and words in result.stderr


def test_validate_missing_file(k8s: click.Group, tmp_path: Path) -> None:
    result = _run(k8s, "validate", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2 and "Cannot read" in result.stderr
