"""deploy/k8s/ examples are exactly what the commands in their headers render (and they validate).

After an intended change: ``TALKGEN_UPDATE_GOLDEN=1 .venv/bin/pytest tests/k8s/test_render_examples.py``
rewrites them (header + rendered YAML); review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from talkgen.k8s import render_cli
from talkgen.k8s.checks import manifest_problems

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
UPDATE = bool(os.environ.get("TALKGEN_UPDATE_GOLDEN"))
IMAGE = "registry.example.com/talkgen-native:0.1.0"
EXAMPLES: dict[str, tuple[str, click.Command, list[str]]] = {
    "batch-8-gpus.yaml": (
        "A 1,000-request batch on 8 GPUs: 16 shards of 62-63 requests, 8 pods at a time (each GPU runs two\n"
        "shards, so a shard of long clips does not hold the whole Job up). Weights from the talkgen-weights PVC\n"
        "(fill it with models-download.yaml), S3 credentials from the talkgen-s3 Secret.",
        render_cli.render,
        ["--requests", "s3://my-bucket/talkgen/batch-1000.jsonl", "--output", "s3://my-bucket/talkgen/out/",
         "--image", IMAGE, "--name", "talkgen-batch-1000", "--namespace", "talkgen", "--gpus", "1",
         "--parallelism", "8", "--shards", "16", "--models-pvc", "talkgen-weights", "--env-secret", "talkgen-s3",
         "--cpu", "8", "--memory", "96Gi", "--work-dir-size", "50Gi", "--deadline-s", "86400"]),
    "models-download.yaml": (
        "Fill the talkgen-weights PVC once: download infinitetalk-480p (resumable), then verify every file.\n"
        "HF_TOKEN (optional) from the hf-token Secret.",
        render_cli.render_download,
        ["--image", IMAGE, "--namespace", "talkgen", "--models-pvc", "talkgen-weights", "--model-set",
         "infinitetalk-480p", "--env-secret", "hf-token", "--memory", "8Gi"]),
}
STATIC = ["weights-pvc.yaml"]


def _header(title: str, command: str, args: list[str]) -> str:
    lines = [f"# {line}" for line in title.splitlines()]
    pairs, i = [], 0
    while i < len(args):
        takes_value = i + 1 < len(args) and not args[i + 1].startswith("--")
        pairs.append(" ".join(args[i:i + 2]) if takes_value else args[i])
        i += 2 if takes_value else 1
    lines.append("# Rendered by (tests/k8s/test_render_examples.py keeps it in sync):")
    lines.append(f"#   talkgen k8s {command} \\")
    lines += [f"#     {pair}" + (" \\" if n < len(pairs) - 1 else "") for n, pair in enumerate(pairs)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_is_what_its_command_renders(name: str) -> None:
    title, command, args = EXAMPLES[name]
    result = CliRunner().invoke(command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    expected = _header(title, command.name or "", args) + result.stdout
    path = DEPLOY / name
    if UPDATE:
        path.write_text(expected)
    assert path.read_text() == expected, f"{path} is stale: TALKGEN_UPDATE_GOLDEN=1 rewrites it"
    assert manifest_problems(yaml.safe_load(expected)) == []


@pytest.mark.parametrize("name", STATIC)
def test_static_examples_validate(name: str) -> None:
    for doc in yaml.safe_load_all((DEPLOY / name).read_text()):
        assert manifest_problems(doc) == []


def test_every_example_is_covered() -> None:
    files = {p.name for p in DEPLOY.glob("*.yaml")}
    assert files == set(EXAMPLES) | set(STATIC)


def test_batch_example_runs_1000_requests_on_8_gpus() -> None:
    job = yaml.safe_load((DEPLOY / "batch-8-gpus.yaml").read_text())
    spec = job["spec"]
    assert (spec["parallelism"], spec["completions"]) == (8, 16)
    assert spec["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert -(-1000 // spec["completions"]) == 63  # the largest shard
