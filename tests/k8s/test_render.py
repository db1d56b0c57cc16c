"""``talkgen k8s render``: options validation, the rendered Job's content, golden manifests, strict validation.

Golden files: tests/k8s/golden/<case>.yaml hold the exact YAML each case renders. After an intended change
to the manifests, regenerate them with ``TALKGEN_UPDATE_GOLDEN=1 .venv/bin/pytest tests/k8s/test_render*.py``
and review the diff (the same variable rewrites the deploy/k8s examples, see test_render_examples.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from talkgen.errors import InvalidRequest
from talkgen.k8s.checks import manifest_problems, validate_manifest
from talkgen.k8s.options import DownloadOptions, RenderOptions
from talkgen.k8s.render import render_download_job, render_job, to_manifest, to_yaml

GOLDEN = Path(__file__).parent / "golden"
UPDATE = bool(os.environ.get("TALKGEN_UPDATE_GOLDEN"))
BASE = {"requests": "s3://bucket/batch.jsonl", "output": "s3://bucket/out/",
        "image": "registry.example.com/talkgen-native:0.1.0"}

BATCH_CASES: dict[str, dict[str, Any]] = {
    "batch-minimal": {},
    "batch-full": {
        "name": "voices-2026-12", "namespace": "media", "gpus": 2, "parallelism": 4, "shards": 12,
        "models_pvc": "talkgen-weights", "backoff_per_index": 3, "max_failed_indexes": 2, "deadline_s": 7200,
        "ttl_s": 3600, "gpu_product": "NVIDIA-H100-80GB-HBM3", "tolerations": ["dedicated=gpu:NoSchedule"],
        "node_selector": ["pool=gpu"], "env_secrets": ["s3-credentials"], "env": ["TALKGEN_NATIVE_QUANT=fp8"],
        "cpu": "8", "memory": "64Gi", "work_dir_size": "100Gi", "service_account": "talkgen-batch",
        "image_pull_policy": "IfNotPresent", "grace_period_s": 300,
    },
    "batch-cpu": {"gpus": 0, "parallelism": 2, "shards": 3, "deadline_s": 0},
}
DOWNLOAD_CASES: dict[str, dict[str, Any]] = {
    "download-minimal": {"image": BASE["image"], "models_pvc": "talkgen-weights"},
    "download-fp8": {"image": BASE["image"], "models_pvc": "talkgen-weights", "model_set": "infinitetalk-480p-fp8",
                     "skip": ["two-speakers"], "env_secrets": ["hf-token"], "namespace": "media", "memory": "4Gi"},
}


def _batch(**flags: Any) -> RenderOptions:
    return RenderOptions.parse(**{**BASE, **flags})


def _rendered(case: str) -> str:
    if case in BATCH_CASES:
        return to_yaml(render_job(_batch(**BATCH_CASES[case])))
    return to_yaml(render_download_job(DownloadOptions.parse(**DOWNLOAD_CASES[case])))


@pytest.mark.parametrize("case", [*BATCH_CASES, *DOWNLOAD_CASES])
def test_golden_manifests(case: str) -> None:
    text = _rendered(case)
    golden = GOLDEN / f"{case}.yaml"
    if UPDATE:
        golden.write_text(text)
    assert golden.is_file(), f"{golden} is missing: run with TALKGEN_UPDATE_GOLDEN=1"
    assert text == golden.read_text(), f"{case} renders differently from {golden} (regenerate after review)"
    data = yaml.safe_load(text)
    kubernetes_validate.validate(data, "1.37.0", strict=True)  # the library's own call, not only ours
    assert manifest_problems(data) == []


def test_batch_job_content() -> None:
    job = to_manifest(render_job(_batch(**BATCH_CASES["batch-full"])))
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 12, 4)
    assert (spec["backoffLimitPerIndex"], spec["maxFailedIndexes"]) == (3, 2)
    assert pod["restartPolicy"] == "Never"
    assert "backoffLimit" not in spec  # per-index retries replace the Job-wide count
    rules = spec["podFailurePolicy"]["rules"]
    assert {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]} in rules
    assert {"action": "FailIndex", "onExitCodes": {"containerName": "talkgen", "operator": "In",
                                                   "values": [42, 78]}} in rules
    assert container["args"] == ["talkgen", "k8s", "run", "--requests", BASE["requests"], "--output",
                                 BASE["output"], "--shards", "12"]
    assert "command" not in container  # the image's entrypoint (tini) runs the args
    assert job["metadata"]["annotations"] == {"talkgen.dev/requests": BASE["requests"],
                                              "talkgen.dev/output": BASE["output"], "talkgen.dev/shards": "12"}
    assert container["resources"] == {"limits": {"nvidia.com/gpu": "2", "memory": "64Gi"},
                                      "requests": {"cpu": "8", "memory": "64Gi"}}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {"TALKGEN_WORK_DIR": "/work", "TALKGEN_MODELS_DIR": "/models", "TALKGEN_NATIVE_QUANT": "fp8"}
    assert container["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["models"] == {"name": "models", "mountPath": "/models", "readOnly": True}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "talkgen-weights", "readOnly": True}
    assert volumes["work"]["emptyDir"] == {"sizeLimit": "100Gi"}
    assert pod["nodeSelector"] == {"pool": "gpu", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["fsGroup"]) == (10001, 10001)
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert (spec["ttlSecondsAfterFinished"], spec["activeDeadlineSeconds"]) == (3600, 7200)
    assert pod["terminationGracePeriodSeconds"] == 300
    assert job["metadata"]["labels"]["app.kubernetes.io/name"] == "talkgen"


def test_exit_codes_match_the_runner() -> None:
    from talkgen.batch.exit_codes import EXIT_CONFIG, EXIT_FINAL_FAILURE
    from talkgen.k8s.render import FAIL_INDEX_EXIT_CODES

    assert FAIL_INDEX_EXIT_CODES == (EXIT_FINAL_FAILURE, EXIT_CONFIG)


def test_cpu_job_has_no_gpu_and_no_default_toleration() -> None:
    pod = to_manifest(render_job(_batch(gpus=0)))["spec"]["template"]["spec"]
    assert "resources" not in pod["containers"][0]
    assert "tolerations" not in pod
    assert "TALKGEN_MODELS_DIR" not in {e["name"] for e in pod["containers"][0]["env"]}  # the image's own


def test_an_explicit_gpu_toleration_replaces_the_default() -> None:
    pod = to_manifest(render_job(_batch(tolerations=["nvidia.com/gpu=present:NoExecute"])))["spec"]["template"]["spec"]
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present",
                                   "effect": "NoExecute"}]


def test_download_job_content() -> None:
    job = to_manifest(render_download_job(DownloadOptions.parse(**DOWNLOAD_CASES["download-fp8"])))
    pod = job["spec"]["template"]["spec"]
    assert "completionMode" not in job["spec"] and job["spec"]["backoffLimit"] == 4
    (init,), (main,) = pod["initContainers"], pod["containers"]
    assert init["args"] == ["talkgen", "models", "download", "infinitetalk-480p-fp8", "--dir", "/models",
                            "--skip", "two-speakers"]
    assert main["args"] == ["talkgen", "models", "verify", "infinitetalk-480p-fp8", "--dir", "/models",
                            "--skip", "two-speakers"]
    assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": "talkgen-weights"}  # read-write
    assert all("readOnly" not in c["volumeMounts"][0] for c in (init, main))
    assert init["envFrom"] == [{"secretRef": {"name": "hf-token"}}]


def test_cli_flags_of_the_download_command_exist() -> None:
    """The args the download Job runs are ones `talkgen models download/verify` accept."""
    from talkgen.cli_models import download, verify

    flags = {opt for cmd in (download, verify) for p in cmd.params for opt in p.opts}
    assert {"--dir", "--skip", "--skip-optional"} <= flags


def test_default_name_is_deterministic() -> None:
    first, again = _batch().job_name, _batch().job_name
    assert first == again and first.startswith("talkgen-batch-") and len(first) == len("talkgen-batch-") + 8
    assert _batch(output="s3://bucket/other/").job_name != first
    assert _batch(name="mine").job_name == "mine"


def test_shards_default_to_parallelism() -> None:
    assert _batch(parallelism=8).shard_count == 8
    assert _batch(parallelism=8, shards=40).shard_count == 40


@pytest.mark.parametrize(("flags", "flag", "words"), [
    ({"name": "Talkgen_Batch"}, "--name", "DNS-1123"),
    ({"name": "a" * 64}, "--name", "at most 63"),
    ({"namespace": "-media"}, "--namespace", "DNS-1123"),
    ({"gpus": -1}, "--gpus", "greater than or equal to 0"),
    ({"gpus": 1.5}, "--gpus", "integer"),
    ({"gpus": "1"}, "--gpus", "integer"),
    ({"parallelism": 0}, "--parallelism", "greater than or equal to 1"),
    ({"parallelism": 9, "shards": 4}, None, "raise --shards"),
    ({"max_failed_indexes": 9, "shards": 4, "parallelism": 4}, None, "--max-failed-indexes 9"),
    ({"memory": "lots"}, "--memory", "not a quantity"),
    ({"cpu": "0"}, "--cpu", "more than zero"),
    ({"work_dir_size": "1.5.Gi"}, "--work-dir-size", "not a quantity"),
    ({"requests": " "}, "--requests", "storage URL"),
    ({"output": ""}, "--output", "storage URL"),
    ({"image": "bad image"}, "--image", "image reference"),
    ({"models_pvc": "Weights"}, "--models-pvc", "DNS-1123 subdomain"),
    ({"env_secrets": ["s3_creds"]}, "--env-secret", "DNS-1123 subdomain"),
    ({"env": ["NOVALUE"]}, "--env", "NAME=VALUE"),
    ({"env": ["1X=2"]}, "--env", "environment variable name"),
    ({"tolerations": ["gpu:Sometimes"]}, "--toleration", "NoSchedule"),
    ({"tolerations": ["=x:NoSchedule"]}, "--toleration", "no key"),
    ({"node_selector": ["pool"]}, "--node-selector", "LABEL=VALUE"),
    ({"gpu_product": "H100 80GB"}, "--gpu-product", "label value"),
    ({"deadline_s": -5}, "--deadline-s", "greater than or equal to 1"),
    ({"image_pull_policy": "Sometimes"}, "--image-pull-policy", "Always"),
])
def test_bad_options_name_the_flag(flags: dict[str, Any], flag: str | None, words: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        _batch(**flags)
    assert words in caught.value.message
    if flag:
        assert caught.value.field == flag and flag in caught.value.message


def test_missing_flags_are_named() -> None:
    with pytest.raises(InvalidRequest) as caught:
        RenderOptions.parse(image="x:1")
    assert "--requests: is required" in caught.value.message and "--output: is required" in caught.value.message


def test_to_yaml_validates_before_returning() -> None:
    job = render_job(_batch())
    job.spec.completion_mode = "Sharded"  # the client's models do not check enums
    with pytest.raises(InvalidRequest, match=r"spec\.completionMode"):
        to_yaml(job)


def test_serialisation_is_camel_case_and_round_trips() -> None:
    from kubernetes import client

    data = to_manifest(render_job(_batch(**BATCH_CASES["batch-full"])))
    assert "completionMode" in data["spec"] and "status" not in data
    assert to_manifest(client.V1Job.from_dict(data)) == data
    validate_manifest(data)


@pytest.mark.parametrize(("text", "value"), [("50Gi", 50 * 2**30), ("500m", 0.5), ("2", 2), (4, 4), ("1.5k", 1500),
                                             ("1e3", 1000), (".5", 0.5)])
def test_quantities(text: Any, value: float) -> None:
    from talkgen.k8s.names import parse_quantity

    assert float(parse_quantity(text)) == value


@pytest.mark.parametrize("text", ["", "Gi", "5 Gi", "5gi", "1.5.Gi", True, 1.5, None])
def test_not_quantities(text: Any) -> None:
    from talkgen.k8s.names import parse_quantity

    with pytest.raises(ValueError, match="quantity"):
        parse_quantity(text)


@pytest.mark.parametrize(("text", "fields"), [
    ("nvidia.com/gpu:NoSchedule", {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}),
    ("dedicated=gpu:NoExecute", {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoExecute"}),
    ("spot", {"key": "spot", "operator": "Exists"}),
    ("pool=a100", {"key": "pool", "operator": "Equal", "value": "a100"}),
])
def test_toleration_flags(text: str, fields: dict[str, str]) -> None:
    pod = to_manifest(render_job(_batch(gpus=0, tolerations=[text])))["spec"]["template"]["spec"]
    assert pod["tolerations"] == [fields]
