"""Offline manifest checks: the strict Kubernetes 1.37 JSON schema plus the rules the schema cannot express.

The schema (``kubernetes-validate``) checks field names and types. The API server also enforces semantic
rules the schema misses, and talkgen adds a few of its own; `semantic_problems` checks those without a
cluster: per-index retries and podFailurePolicy need ``Indexed`` + ``restartPolicy: Never``, ``FailIndex``
needs ``backoffLimitPerIndex``, GPU counts are whole numbers with request == limit, DNS-1123 names,
enum values (completionMode, restartPolicy, podFailurePolicy actions and operators, tolerations,
imagePullPolicy), quantities, parallelism ≤ completions, volume mounts that name a volume.
"""

from __future__ import annotations

import re
from typing import Any

from talkgen.errors import InvalidRequest
from talkgen.k8s import names

KUBERNETES_VERSION = "1.37.0"
COMPLETION_MODES = ("NonIndexed", "Indexed")
JOB_RESTART_POLICIES = ("Never", "OnFailure")
RESTART_POLICIES = ("Always", "OnFailure", "Never")
POLICY_ACTIONS = ("FailJob", "FailIndex", "Ignore", "Count")
EXIT_CODE_OPERATORS = ("In", "NotIn")
CONDITION_STATUSES = ("True", "False", "Unknown")
TOLERATION_OPERATORS = ("Exists", "Equal")
TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
MAX_INDEXED_COMPLETIONS = 100_000
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

Problem = tuple[str, str]


def path_of(base: str, key: str | int) -> str:
    """``spec.template``, ``containers[0]``, ``limits["nvidia.com/gpu"]``: a JSON path for messages."""
    if isinstance(key, int):
        return f"{base}[{key}]"
    if not _PLAIN_KEY.fullmatch(key):
        return f'{base}["{key}"]'
    return f"{base}.{key}" if base else key


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _enum(out: list[Problem], where: str, value: Any, allowed: tuple[str, ...], required: bool = False) -> None:
    if value is None and not required:
        return
    if value not in allowed:
        out.append((where, f"{str(value)[:80]!r} is not one of {', '.join(allowed)}"))


def _count(out: list[Problem], where: str, value: Any, minimum: int = 0) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < minimum:
            out.append((where, f"{value} must be at least {minimum}"))
            return None
        return value
    return None


def schema_problems(data: dict[str, Any], strict: bool = True) -> list[Problem]:
    """The first problem the Kubernetes JSON schema finds (strict: unknown fields too), or none."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(data, KUBERNETES_VERSION, strict=strict)
    except kubernetes_validate.ValidationError as exc:
        where = ""
        for key in exc.absolute_path:
            where = path_of(where, key)
        return [(where or "(document)", f"schema: {exc.message[:300]}")]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [("kind", f"{exc.message}: not a resource Kubernetes {KUBERNETES_VERSION[:4]} knows")]
    except (KeyError, TypeError, AttributeError) as exc:
        return [("(document)", f"not a Kubernetes resource (needs apiVersion and kind): {exc!s:.100}")]
    return []


def _metadata(out: list[Problem], meta: Any, base: str, name_limit: int | None) -> None:
    meta = _dict(meta)
    name = meta.get("name")
    if name is not None or base == "metadata":
        problem = (names.dns_label_problem(name, name_limit) if name_limit else names.dns_subdomain_problem(name))
        if problem:
            out.append((path_of(base, "name"), problem))
    if meta.get("namespace") is not None and (problem := names.dns_label_problem(meta["namespace"])):
        out.append((path_of(base, "namespace"), problem))
    for key, value in _dict(meta.get("labels")).items():
        if problem := names.label_key_problem(key) or names.label_value_problem(value):
            out.append((path_of(path_of(base, "labels"), key), problem))
    for key in _dict(meta.get("annotations")):
        if problem := names.label_key_problem(key):
            out.append((path_of(path_of(base, "annotations"), key), problem))


def _is_extended(resource: str) -> bool:
    """Extended resources (``nvidia.com/gpu``): whole units, never overcommitted, request == limit."""
    domain, sep, _ = resource.partition("/")
    return bool(sep) and not domain.endswith("kubernetes.io") and not resource.startswith("hugepages-")


def _resources(out: list[Problem], resources: Any, base: str) -> None:
    resources = _dict(resources)
    parsed: dict[str, dict[str, Any]] = {}
    for kind in ("limits", "requests"):
        parsed[kind] = {}
        for resource, value in _dict(resources.get(kind)).items():
            where = path_of(path_of(base, kind), resource)
            try:
                amount = names.parse_quantity(value)
            except ValueError as exc:
                out.append((where, str(exc)))
                continue
            if amount < 0:
                out.append((where, f"{value!r} must not be negative"))
            elif _is_extended(resource) and amount != amount.to_integral_value():
                out.append((where, f"{value!r}: {resource} is counted in whole units; use an integer such as \"1\""))
            parsed[kind][resource] = amount
    for resource, request in parsed["requests"].items():
        limit = parsed["limits"].get(resource)
        where = path_of(path_of(base, "requests"), resource)
        if _is_extended(resource):
            if limit is None:
                out.append((where, f"{resource} must be set in limits (a request alone is refused); put it in limits"))
            elif request != limit:
                out.append((where, f"{resource} request must equal its limit ({limit}); omit the request or make "
                                   "them equal"))
        elif limit is not None and request > limit:
            out.append((where, f"the {resource} request is more than its limit"))


def _container(out: list[Problem], container: Any, base: str, volumes: set[str]) -> None:
    container = _dict(container)
    if problem := names.dns_label_problem(container.get("name")):
        out.append((path_of(base, "name"), problem))
    _enum(out, path_of(base, "imagePullPolicy"), container.get("imagePullPolicy"), PULL_POLICIES)
    if not str(container.get("image") or "").strip():
        out.append((path_of(base, "image"), "must name the image to run"))
    for i, env in enumerate(_list(container.get("env"))):
        if problem := names.env_name_problem(_dict(env).get("name")):
            out.append((path_of(path_of(path_of(base, "env"), i), "name"), problem))
    _resources(out, container.get("resources"), path_of(base, "resources"))
    seen: set[str] = set()
    for i, mount in enumerate(_list(container.get("volumeMounts"))):
        mount, where = _dict(mount), path_of(path_of(base, "volumeMounts"), i)
        if mount.get("name") not in volumes:
            out.append((path_of(where, "name"), f"{str(mount.get('name'))[:80]!r} is not a volume of the pod: add it "
                                                "to volumes or fix the name"))
        if mount.get("mountPath") in seen:
            out.append((path_of(where, "mountPath"), f"{mount.get('mountPath')!r} is mounted twice"))
        seen.add(mount.get("mountPath"))
    security = _dict(container.get("securityContext"))
    if security.get("runAsNonRoot") is True and security.get("runAsUser") == 0:
        out.append((path_of(base, "securityContext"), "runAsNonRoot with runAsUser 0 can never start"))


def _tolerations(out: list[Problem], tolerations: Any, base: str) -> None:
    for i, tol in enumerate(_list(tolerations)):
        tol, where = _dict(tol), path_of(base, i)
        operator = tol.get("operator") or "Equal"
        _enum(out, path_of(where, "operator"), tol.get("operator"), TOLERATION_OPERATORS)
        if tol.get("effect"):
            _enum(out, path_of(where, "effect"), tol.get("effect"), TOLERATION_EFFECTS)
        if tol.get("key") and (problem := names.label_key_problem(tol["key"])):
            out.append((path_of(where, "key"), problem))
        if operator == "Exists" and tol.get("value"):
            out.append((path_of(where, "value"), "must be empty when operator is Exists"))
        if operator == "Equal" and not tol.get("key"):
            out.append((path_of(where, "operator"), "must be Exists when the key is empty (matches every taint)"))
        if tol.get("tolerationSeconds") is not None and tol.get("effect") != "NoExecute":
            out.append((path_of(where, "tolerationSeconds"), "only applies with effect NoExecute"))


def pod_spec_problems(spec: Any, base: str) -> list[Problem]:
    """Semantic problems of a pod spec at ``base``."""
    out: list[Problem] = []
    spec = _dict(spec)
    _enum(out, path_of(base, "restartPolicy"), spec.get("restartPolicy"), RESTART_POLICIES)
    volumes: set[str] = set()
    for i, volume in enumerate(_list(spec.get("volumes"))):
        volume, where = _dict(volume), path_of(path_of(base, "volumes"), i)
        if problem := names.dns_label_problem(volume.get("name")):
            out.append((path_of(where, "name"), problem))
        elif volume["name"] in volumes:
            out.append((path_of(where, "name"), f"{volume['name']!r} is used by two volumes"))
        volumes.add(volume.get("name"))
        size = _dict(volume.get("emptyDir")).get("sizeLimit")
        if size is not None:
            try:
                names.parse_quantity(size)
            except ValueError as exc:
                out.append((path_of(path_of(where, "emptyDir"), "sizeLimit"), str(exc)))
    seen: set[str] = set()
    for kind in ("initContainers", "containers"):
        for i, container in enumerate(_list(spec.get(kind))):
            where = path_of(path_of(base, kind), i)
            _container(out, container, where, volumes)
            name = _dict(container).get("name")
            if name in seen:
                out.append((path_of(where, "name"), f"{name!r} names two containers"))
            seen.add(name)
    _tolerations(out, spec.get("tolerations"), path_of(base, "tolerations"))
    for key, value in _dict(spec.get("nodeSelector")).items():
        if problem := names.label_key_problem(key) or names.label_value_problem(value):
            out.append((path_of(path_of(base, "nodeSelector"), key), problem))
    security = _dict(spec.get("securityContext"))
    if security.get("runAsNonRoot") is True and security.get("runAsUser") == 0:
        out.append((path_of(base, "securityContext"), "runAsNonRoot with runAsUser 0 can never start"))
    return out


def _failure_policy(out: list[Problem], policy: Any, base: str, per_index: bool, containers: set[str]) -> None:
    for i, rule in enumerate(_list(_dict(policy).get("rules"))):
        rule, where = _dict(rule), path_of(path_of(base, "rules"), i)
        _enum(out, path_of(where, "action"), rule.get("action"), POLICY_ACTIONS, required=True)
        if rule.get("action") == "FailIndex" and not per_index:
            out.append((path_of(where, "action"), "FailIndex needs spec.backoffLimitPerIndex: set it (e.g. 2) or "
                                                  "use FailJob"))
        codes, conditions = rule.get("onExitCodes"), rule.get("onPodConditions")
        if (codes is None) == (conditions is None):
            out.append((where, "needs exactly one of onExitCodes and onPodConditions"))
        if codes is not None:
            codes, cwhere = _dict(codes), path_of(where, "onExitCodes")
            _enum(out, path_of(cwhere, "operator"), codes.get("operator"), EXIT_CODE_OPERATORS, required=True)
            values = _list(codes.get("values"))
            if not values or len(values) > 255:
                out.append((path_of(cwhere, "values"), "needs 1 to 255 exit codes"))
            if len(set(map(str, values))) != len(values):
                out.append((path_of(cwhere, "values"), "exit codes must be unique"))
            if codes.get("operator") == "In" and 0 in values:
                out.append((path_of(cwhere, "values"), "0 (success) cannot be matched with operator In"))
            name = codes.get("containerName")
            if name is not None and name not in containers:
                out.append((path_of(cwhere, "containerName"), f"{str(name)[:80]!r} is not a container of the pod"))
        for j, cond in enumerate(_list(conditions)):
            cond, pwhere = _dict(cond), path_of(path_of(where, "onPodConditions"), j)
            if not cond.get("type"):
                out.append((path_of(pwhere, "type"), "must name a pod condition, e.g. DisruptionTarget"))
            _enum(out, path_of(pwhere, "status"), cond.get("status"), CONDITION_STATUSES)


def job_spec_problems(spec: Any, base: str = "spec") -> list[Problem]:
    """Semantic problems of a Job spec at ``base`` (pod template included)."""
    out: list[Problem] = []
    spec = _dict(spec)
    pod = _dict(_dict(spec.get("template")).get("spec"))
    restart = pod.get("restartPolicy")
    restart_where = f"{base}.template.spec.restartPolicy"
    _enum(out, path_of(base, "completionMode"), spec.get("completionMode"), COMPLETION_MODES)
    if restart is None or restart in RESTART_POLICIES:
        _enum(out, restart_where, restart, JOB_RESTART_POLICIES, required=True)
    indexed = spec.get("completionMode") == "Indexed"
    completions = _count(out, path_of(base, "completions"), spec.get("completions"))
    parallelism = _count(out, path_of(base, "parallelism"), spec.get("parallelism"))
    _count(out, path_of(base, "backoffLimit"), spec.get("backoffLimit"))
    per_index = _count(out, path_of(base, "backoffLimitPerIndex"), spec.get("backoffLimitPerIndex"))
    max_failed = _count(out, path_of(base, "maxFailedIndexes"), spec.get("maxFailedIndexes"))
    _count(out, path_of(base, "ttlSecondsAfterFinished"), spec.get("ttlSecondsAfterFinished"))
    _count(out, path_of(base, "activeDeadlineSeconds"), spec.get("activeDeadlineSeconds"), 1)
    has_per_index = spec.get("backoffLimitPerIndex") is not None
    for field in ("backoffLimitPerIndex", "maxFailedIndexes"):
        if spec.get(field) is None:
            continue
        if not indexed:
            out.append((path_of(base, field), "needs completionMode: Indexed"))
        if restart != "Never":
            out.append((restart_where, f"must be Never when {field} is set"))
    if spec.get("maxFailedIndexes") is not None and not has_per_index:
        out.append((path_of(base, "maxFailedIndexes"), "needs backoffLimitPerIndex"))
    if spec.get("podFailurePolicy") is not None and restart != "Never":
        out.append((restart_where, "must be Never when podFailurePolicy is set"))
    if indexed and spec.get("completions") is None:
        out.append((path_of(base, "completions"), "an Indexed Job needs completions (the number of indexes)"))
    if indexed and completions is not None and completions > MAX_INDEXED_COMPLETIONS:
        out.append((path_of(base, "completions"), f"an Indexed Job has at most {MAX_INDEXED_COMPLETIONS} indexes"))
    if parallelism is not None and completions is not None and parallelism > completions:
        out.append((path_of(base, "parallelism"), f"{parallelism} is more than completions ({completions}): the "
                                                  "extra pods would have nothing to do"))
    if max_failed is not None and completions is not None and max_failed > completions:
        out.append((path_of(base, "maxFailedIndexes"), f"{max_failed} is more than completions ({completions})"))
    containers = {_dict(c).get("name") for kind in ("containers", "initContainers") for c in _list(pod.get(kind))}
    _failure_policy(out, spec.get("podFailurePolicy"), path_of(base, "podFailurePolicy"),
                    per_index is not None, containers)
    template = _dict(spec.get("template"))
    _metadata(out, template.get("metadata"), f"{base}.template.metadata", None)
    out.extend(pod_spec_problems(pod, f"{base}.template.spec"))
    return out


def semantic_problems(data: dict[str, Any]) -> list[Problem]:
    """talkgen's checks of what the schema misses (Jobs in depth; metadata of anything)."""
    out: list[Problem] = []
    is_job = data.get("kind") == "Job" and data.get("apiVersion") == "batch/v1"
    # A Job's name is also a label value on its pods (batch.kubernetes.io/job-name): at most 63 characters.
    _metadata(out, data.get("metadata"), "metadata", 63 if is_job else None)
    if is_job:
        out.extend(job_spec_problems(data.get("spec")))
    elif data.get("kind") == "Pod":
        out.extend(pod_spec_problems(data.get("spec"), "spec"))
    return out


def manifest_problems(data: Any) -> list[Problem]:
    """Every problem found in one manifest: the schema's first, then each semantic one."""
    if not isinstance(data, dict):
        return [("(document)", f"a manifest must be a mapping, got {type(data).__name__}")]
    return schema_problems(data) + semantic_problems(data)


def describe(data: Any) -> str:
    """``job/NAME`` for messages."""
    data = _dict(data)
    return f"{str(data.get('kind') or 'resource').lower()}/{_dict(data.get('metadata')).get('name') or '?'}"


def raise_problems(problems: list[Problem], what: str) -> None:
    """One `InvalidRequest` listing every problem with its path (no-op when there are none)."""
    if not problems:
        return
    listed = "; ".join(f"{where}: {message}" for where, message in problems)
    count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
    raise InvalidRequest(f"The manifest {what} is invalid ({count}): {listed}.", field=problems[0][0],
                         details={"problems": [{"path": p, "message": m} for p, m in problems]})


def validate_manifest(data: dict[str, Any]) -> None:
    """Strict Kubernetes 1.37 schema + talkgen's semantic checks; one `InvalidRequest` listing every problem."""
    raise_problems(manifest_problems(data), describe(data))
