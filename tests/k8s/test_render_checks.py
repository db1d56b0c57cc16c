"""Mutation tests: each of talkgen's semantic checks catches a broken manifest the strict schema accepts.

Every mutant here passes ``kubernetes_validate.validate(..., strict=True)`` (asserted, so a schema that
starts catching one is noticed) and is rejected by `validate_manifest` with the problem at the right path.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pytest

from talkgen.errors import InvalidRequest
from talkgen.k8s.checks import manifest_problems, validate_manifest
from talkgen.k8s.options import DownloadOptions, RenderOptions
from talkgen.k8s.render import render_download_job, render_job, to_manifest

Mutation = Callable[[dict[str, Any]], None]


@pytest.fixture(scope="module")
def job() -> dict[str, Any]:
    opts = RenderOptions.parse(requests="s3://b/batch.jsonl", output="s3://b/out/", image="talkgen:1", gpus=1,
                               parallelism=4, shards=8, max_failed_indexes=2, models_pvc="weights", memory="32Gi")
    return to_manifest(render_job(opts))


def _pod(m: dict[str, Any]) -> dict[str, Any]:
    return m["spec"]["template"]["spec"]


def _c(m: dict[str, Any]) -> dict[str, Any]:
    return _pod(m)["containers"][0]


def _set(**spec: Any) -> Mutation:
    return lambda m: m["spec"].update(spec)


def _drop_per_index(m: dict[str, Any]) -> None:
    del m["spec"]["backoffLimitPerIndex"]


def _restart(policy: str) -> Mutation:
    return lambda m: _pod(m).update(restartPolicy=policy)


def _rule(i: int, **fields: Any) -> Mutation:
    return lambda m: m["spec"]["podFailurePolicy"]["rules"][i].update(fields)


def _exit_codes(**fields: Any) -> Mutation:
    return lambda m: m["spec"]["podFailurePolicy"]["rules"][1]["onExitCodes"].update(fields)


def _gpu(limit: str | None = "1", request: str | None = None) -> Mutation:
    def mutate(m: dict[str, Any]) -> None:
        res = _c(m)["resources"]
        res["limits"].pop("nvidia.com/gpu")
        if limit is not None:
            res["limits"]["nvidia.com/gpu"] = limit
        if request is not None:
            res.setdefault("requests", {})["nvidia.com/gpu"] = request
    return mutate


def _toleration(**fields: Any) -> Mutation:
    return lambda m: _pod(m)["tolerations"][0].update(fields)


def _meta(**fields: Any) -> Mutation:
    return lambda m: m["metadata"].update(fields)


POD = "spec.template.spec"
GPU_LIMIT = f'{POD}.containers[0].resources.limits["nvidia.com/gpu"]'
GPU_REQUEST = f'{POD}.containers[0].resources.requests["nvidia.com/gpu"]'
MUTATIONS: dict[str, tuple[Mutation, str]] = {
    "completionMode not an enum value": (_set(completionMode="Sharded"), "spec.completionMode"),
    "per-index backoff without Indexed": (_set(completionMode="NonIndexed"), "spec.backoffLimitPerIndex"),
    "maxFailedIndexes without Indexed": (_set(completionMode="NonIndexed"), "spec.maxFailedIndexes"),
    "podFailurePolicy with OnFailure": (_restart("OnFailure"), f"{POD}.restartPolicy"),
    "restartPolicy Always in a Job": (_restart("Always"), f"{POD}.restartPolicy"),
    "restartPolicy not an enum value": (_restart("Sometimes"), f"{POD}.restartPolicy"),
    "FailIndex without backoffLimitPerIndex": (_drop_per_index, "spec.podFailurePolicy.rules[1].action"),
    "maxFailedIndexes without backoffLimitPerIndex": (_drop_per_index, "spec.maxFailedIndexes"),
    "policy action not an enum value": (_rule(1, action="Retry"), "spec.podFailurePolicy.rules[1].action"),
    "exit-code operator not an enum value": (_exit_codes(operator="Contains"),
                                             "spec.podFailurePolicy.rules[1].onExitCodes.operator"),
    "exit codes for a container that does not exist": (_exit_codes(containerName="worker"),
                                                      "spec.podFailurePolicy.rules[1].onExitCodes.containerName"),
    "operator In with exit code 0": (_exit_codes(values=[0, 42]), "spec.podFailurePolicy.rules[1].onExitCodes.values"),
    "duplicate exit codes": (_exit_codes(values=[42, 42]), "spec.podFailurePolicy.rules[1].onExitCodes.values"),
    "a rule with both matchers": (_rule(0, onExitCodes={"operator": "In", "values": [1]}),
                                  "spec.podFailurePolicy.rules[0]"),
    "condition status not an enum value": (
        lambda m: m["spec"]["podFailurePolicy"]["rules"][0]["onPodConditions"][0].update(status="Maybe"),
        "spec.podFailurePolicy.rules[0].onPodConditions[0].status"),
    "fractional GPU count": (_gpu("1.5"), GPU_LIMIT),
    "GPU count not a quantity": (_gpu("one"), GPU_LIMIT),
    "GPU request different from the limit": (_gpu("1", "2"), GPU_REQUEST),
    "GPU request without a limit": (_gpu(None, "1"), GPU_REQUEST),
    "memory not a quantity": (lambda m: _c(m)["resources"]["limits"].update(memory="lots"),
                              f"{POD}.containers[0].resources.limits.memory"),
    "Job name not DNS-1123": (_meta(name="Talkgen_Batch"), "metadata.name"),
    "Job name longer than 63": (_meta(name="a" * 64), "metadata.name"),
    "namespace not DNS-1123": (_meta(namespace="Media"), "metadata.namespace"),
    "label value not valid": (lambda m: m["metadata"]["labels"].update(team="a b"), 'metadata.labels.team'),
    "container name not DNS-1123": (lambda m: _c(m).update(name="Talkgen"), f"{POD}.containers[0].name"),
    "imagePullPolicy not an enum value": (lambda m: _c(m).update(imagePullPolicy="Sometimes"),
                                          f"{POD}.containers[0].imagePullPolicy"),
    "env var name not valid": (lambda m: _c(m)["env"][0].update(name="1WORK"), f"{POD}.containers[0].env[0].name"),
    "toleration operator not an enum value": (_toleration(operator="Sometimes"), f"{POD}.tolerations[0].operator"),
    "toleration effect not an enum value": (_toleration(effect="NoRun"), f"{POD}.tolerations[0].effect"),
    "Exists toleration with a value": (_toleration(value="yes"), f"{POD}.tolerations[0].value"),
    "tolerationSeconds without NoExecute": (_toleration(tolerationSeconds=60),
                                            f"{POD}.tolerations[0].tolerationSeconds"),
    "parallelism above completions": (_set(parallelism=9), "spec.parallelism"),
    "maxFailedIndexes above completions": (_set(maxFailedIndexes=9), "spec.maxFailedIndexes"),
    "Indexed without completions": (lambda m: m["spec"].pop("completions"), "spec.completions"),
    "negative parallelism": (_set(parallelism=-1), "spec.parallelism"),
    "zero activeDeadlineSeconds": (_set(activeDeadlineSeconds=0), "spec.activeDeadlineSeconds"),
    "emptyDir size not a quantity": (lambda m: _pod(m)["volumes"][0]["emptyDir"].update(sizeLimit="big"),
                                     f"{POD}.volumes[0].emptyDir.sizeLimit"),
    "mount of a volume that does not exist": (lambda m: _c(m)["volumeMounts"][0].update(name="scratch"),
                                              f"{POD}.containers[0].volumeMounts[0].name"),
    "nodeSelector key not valid": (lambda m: _pod(m).update(nodeSelector={"bad key": "x"}),
                                   f'{POD}.nodeSelector["bad key"]'),
    "runAsNonRoot as root": (lambda m: _pod(m)["securityContext"].update(runAsUser=0), f"{POD}.securityContext"),
}


@pytest.mark.parametrize("case", MUTATIONS)
def test_semantic_check_catches_what_the_schema_accepts(job: dict[str, Any], case: str) -> None:
    mutate, path = MUTATIONS[case]
    mutant = copy.deepcopy(job)
    mutate(mutant)
    kubernetes_validate.validate(mutant, "1.37.0", strict=True)  # the schema alone lets it through
    with pytest.raises(InvalidRequest) as caught:
        validate_manifest(mutant)
    paths = [p["path"] for p in caught.value.details["problems"]]
    assert path in paths, (case, paths)
    assert path in caught.value.message


def test_the_unmutated_job_is_clean(job: dict[str, Any]) -> None:
    assert manifest_problems(job) == []


def test_schema_problems_are_reported_with_their_path(job: dict[str, Any]) -> None:
    mutant = copy.deepcopy(job)
    mutant["spec"]["completionsMode"] = "Indexed"  # a typo only strict mode catches
    mutant["spec"]["completions"] = "8"
    with pytest.raises(InvalidRequest) as caught:
        validate_manifest(mutant)
    assert caught.value.details["problems"][0]["path"] in ("spec", "spec.completions")
    assert "schema:" in caught.value.message


def test_every_problem_is_listed_at_once(job: dict[str, Any]) -> None:
    mutant = copy.deepcopy(job)
    for case in ("Job name not DNS-1123", "fractional GPU count", "podFailurePolicy with OnFailure",
                 "toleration effect not an enum value"):
        MUTATIONS[case][0](mutant)
    with pytest.raises(InvalidRequest) as caught:
        validate_manifest(mutant)
    paths = {p["path"] for p in caught.value.details["problems"]}
    assert {"metadata.name", GPU_LIMIT, f"{POD}.restartPolicy", f"{POD}.tolerations[0].effect"} <= paths
    assert caught.value.message.startswith("The manifest job/Talkgen_Batch is invalid (")


def test_download_job_is_clean_and_checked() -> None:
    data = to_manifest(render_download_job(DownloadOptions.parse(image="talkgen:1", models_pvc="weights")))
    assert manifest_problems(data) == []
    data["spec"]["backoffLimitPerIndex"] = 1  # per-index retries on a NonIndexed Job
    assert ("spec.backoffLimitPerIndex", "needs completionMode: Indexed") in manifest_problems(data)


@pytest.mark.parametrize("data", [[], "text", {"kind": "Job"}, {"apiVersion": "v1", "kind": "Gadget",
                                                                  "metadata": {"name": "x"}}])
def test_non_manifests_are_problems_not_crashes(data: Any) -> None:
    assert manifest_problems(data)
