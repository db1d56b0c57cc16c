"""Render validated options as typed ``kubernetes`` client models, and those as YAML manifests.

The batch Job is Indexed: index ``i`` runs ``talkgen k8s run`` over shard ``i`` of the requests file (the
pod reads ``JOB_COMPLETION_INDEX``, which Kubernetes sets). Exit codes 42 (bad input) and 78 (cannot
start) fail the index at once; a disruption (preemption, eviction) does not count against its retries.
Manifests are serialised with the client's own serializer, never ``to_dict()`` (snake_case keys).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from talkgen.k8s.options import DownloadOptions, PodOptions, RenderOptions

if TYPE_CHECKING:
    from kubernetes.client import V1Container, V1Job, V1PodSpec

CONTAINER = "talkgen"
USER_ID = 10001  # the images' non-root user (deploy/native.Dockerfile)
MODELS_DIR = "/models"
WORK_DIR = "/work"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
FAIL_INDEX_EXIT_CODES = (42, 78)  # talkgen.batch.exit_codes: EXIT_FINAL_FAILURE, EXIT_CONFIG
ANNOTATION_REQUESTS = "talkgen.dev/requests"
ANNOTATION_OUTPUT = "talkgen.dev/output"
ANNOTATION_SHARDS = "talkgen.dev/shards"


def _labels(name: str, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "talkgen", "app.kubernetes.io/component": component,
            "app.kubernetes.io/instance": name, "app.kubernetes.io/managed-by": "talkgen"}


def _security(k: Any) -> tuple[Any, Any]:
    """Pod and container security contexts: the images' non-root user, no privilege, default seccomp."""
    seccomp = k.V1SeccompProfile(type="RuntimeDefault")
    pod = k.V1PodSecurityContext(run_as_non_root=True, run_as_user=USER_ID, run_as_group=USER_ID, fs_group=USER_ID,
                                 fs_group_change_policy="OnRootMismatch", seccomp_profile=seccomp)
    container = k.V1SecurityContext(run_as_non_root=True, run_as_user=USER_ID, run_as_group=USER_ID,
                                    allow_privilege_escalation=False,
                                    capabilities=k.V1Capabilities(drop=["ALL"]), seccomp_profile=seccomp)
    return pod, container


def _env(k: Any, fixed: dict[str, str], opts: PodOptions) -> list[Any]:
    merged = {**fixed, **opts.env}  # the user's --env wins over talkgen's defaults
    return [k.V1EnvVar(name=key, value=value) for key, value in merged.items()]


def _resources(k: Any, opts: PodOptions, gpus: int) -> Any:
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if opts.cpu:
        requests["cpu"] = opts.cpu
    if opts.memory:
        requests["memory"] = limits["memory"] = opts.memory
    if gpus:
        limits[GPU_RESOURCE] = str(gpus)  # extended resources: the request defaults to the limit
    if not (requests or limits):
        return None
    return k.V1ResourceRequirements(requests=requests or None, limits=limits or None)


def _container(k: Any, name: str, args: list[str], opts: PodOptions, env: dict[str, str], mounts: list[Any],
               gpus: int) -> V1Container:
    _, security = _security(k)
    env_from = [k.V1EnvFromSource(secret_ref=k.V1SecretEnvSource(name=s)) for s in opts.env_secrets] or None
    return k.V1Container(name=name, image=opts.image, image_pull_policy=opts.image_pull_policy, args=args,
                         env=_env(k, env, opts), env_from=env_from, resources=_resources(k, opts, gpus),
                         volume_mounts=mounts or None, security_context=security)


def _pod_spec(k: Any, opts: PodOptions, containers: list[Any], volumes: list[Any], *, gpus: int,
              init_containers: list[Any] | None = None, node_selector: dict[str, str] | None = None,
              grace_period_s: int | None = None) -> V1PodSpec:
    tolerations = [k.V1Toleration(key=t.key, operator=t.operator, value=t.value, effect=t.effect)
                   for t in opts.tolerations]
    if gpus and not any(t.key == GPU_RESOURCE for t in opts.tolerations):
        tolerations.append(k.V1Toleration(key=GPU_RESOURCE, operator="Exists", effect="NoSchedule"))
    pod_security, _ = _security(k)
    return k.V1PodSpec(restart_policy="Never", service_account_name=opts.service_account,
                       security_context=pod_security, init_containers=init_containers, containers=containers,
                       volumes=volumes or None, tolerations=tolerations or None,
                       node_selector={**opts.node_selector, **(node_selector or {})} or None,
                       termination_grace_period_seconds=grace_period_s)


def _models_volume(k: Any, claim: str, read_only: bool) -> tuple[Any, Any]:
    volume = k.V1Volume(name="models", persistent_volume_claim=k.V1PersistentVolumeClaimVolumeSource(
        claim_name=claim, read_only=read_only or None))
    return volume, k.V1VolumeMount(name="models", mount_path=MODELS_DIR, read_only=read_only or None)


def render_job(opts: RenderOptions) -> V1Job:
    """The Indexed batch Job for ``opts`` (a `kubernetes.client.V1Job`; not yet validated: see `to_yaml`)."""
    from kubernetes import client as k

    name, shards = opts.job_name, opts.shard_count
    env = {"TALKGEN_WORK_DIR": WORK_DIR}
    volumes = [k.V1Volume(name="work", empty_dir=k.V1EmptyDirVolumeSource(size_limit=opts.work_dir_size))]
    mounts = [k.V1VolumeMount(name="work", mount_path=WORK_DIR)]
    if opts.models_pvc:
        volume, mount = _models_volume(k, opts.models_pvc, read_only=True)
        volumes.append(volume)
        mounts.append(mount)
        env["TALKGEN_MODELS_DIR"] = MODELS_DIR
    args = ["talkgen", "k8s", "run", "--requests", opts.requests, "--output", opts.output, "--shards", str(shards)]
    container = _container(k, CONTAINER, args, opts, env, mounts, opts.gpus)
    selector = {GPU_PRODUCT_LABEL: opts.gpu_product} if opts.gpu_product else None
    labels = _labels(name, "batch")
    pod = _pod_spec(k, opts, [container], volumes, gpus=opts.gpus, node_selector=selector,
                    grace_period_s=opts.grace_period_s)
    policy = k.V1PodFailurePolicy(rules=[
        # A preempted or evicted pod is replaced without spending one of the index's retries.
        k.V1PodFailurePolicyRule(action="Ignore", on_pod_conditions=[
            k.V1PodFailurePolicyOnPodConditionsPattern(type="DisruptionTarget", status="True")]),
        # Bad input or a runner that cannot start: a retry cannot help, so the index fails now.
        k.V1PodFailurePolicyRule(action="FailIndex", on_exit_codes=k.V1PodFailurePolicyOnExitCodesRequirement(
            container_name=CONTAINER, operator="In", values=list(FAIL_INDEX_EXIT_CODES))),
    ])
    spec = k.V1JobSpec(completion_mode="Indexed", completions=shards, parallelism=opts.parallelism,
                       backoff_limit_per_index=opts.backoff_per_index, max_failed_indexes=opts.max_failed_indexes,
                       pod_failure_policy=policy, ttl_seconds_after_finished=opts.ttl_s,
                       active_deadline_seconds=opts.deadline_s,
                       template=k.V1PodTemplateSpec(metadata=k.V1ObjectMeta(labels=labels), spec=pod))
    annotations = {ANNOTATION_REQUESTS: opts.requests, ANNOTATION_OUTPUT: opts.output, ANNOTATION_SHARDS: str(shards)}
    meta = k.V1ObjectMeta(name=name, namespace=opts.namespace, labels=labels, annotations=annotations)
    return k.V1Job(api_version="batch/v1", kind="Job", metadata=meta, spec=spec)


def render_download_job(opts: DownloadOptions) -> V1Job:
    """A one-off Job that fills the weights PVC: ``talkgen models download`` (an init container, resumable),
    then ``talkgen models verify`` (re-hashes every file; the Job fails if one is missing or corrupt)."""
    from kubernetes import client as k

    name = opts.job_name
    volume, mount = _models_volume(k, opts.models_pvc, read_only=False)
    skips = [arg for group in opts.skip for arg in ("--skip", group)]
    download = ["talkgen", "models", "download", opts.model_set, "--dir", MODELS_DIR, *skips]
    if opts.skip_optional:
        download.append("--skip-optional")
    verify = ["talkgen", "models", "verify", opts.model_set, "--dir", MODELS_DIR, *skips]
    env = {"TALKGEN_MODELS_DIR": MODELS_DIR}
    pod = _pod_spec(k, opts, [_container(k, "verify", verify, opts, env, [mount], 0)], [volume], gpus=0,
                    init_containers=[_container(k, "download", download, opts, env, [mount], 0)])
    labels = _labels(name, "models-download")
    spec = k.V1JobSpec(backoff_limit=opts.backoff_limit, ttl_seconds_after_finished=opts.ttl_s,
                       active_deadline_seconds=opts.deadline_s,
                       template=k.V1PodTemplateSpec(metadata=k.V1ObjectMeta(labels=labels), spec=pod))
    meta = k.V1ObjectMeta(name=name, namespace=opts.namespace, labels=labels)
    return k.V1Job(api_version="batch/v1", kind="Job", metadata=meta, spec=spec)


def to_manifest(obj: Any) -> dict[str, Any]:
    """A client model (or an already camelCase dict) as a manifest dict, via the client's own serializer."""
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(obj)


def to_yaml(*objs: Any) -> str:
    """Validated YAML of one or more manifests (``---`` between them); `validate_manifest` raises first."""
    import yaml

    from talkgen.k8s.checks import validate_manifest

    docs = []
    for obj in objs:
        data = to_manifest(obj)
        validate_manifest(data)
        docs.append(yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=1000))
    return "---\n".join(docs)
