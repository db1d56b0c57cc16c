"""What ``talkgen k8s render`` / ``render-download`` take: pydantic models, validated before anything renders.

Build them with `RenderOptions.parse(**flags)` / `DownloadOptions.parse(**flags)`: a mistake is one
`InvalidRequest` naming every bad flag and what to use instead (pydantic's own error is never shown raw).
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from talkgen.errors import InvalidRequest
from talkgen.k8s import names

DEFAULT_MODEL_SET = "infinitetalk-480p"
TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def _check(problem: str | None, value: str) -> str:
    if problem:
        raise ValueError(problem)
    return value


def _pairs(value: Any, what: str) -> Any:
    """``("K=V", ...)`` from the command line as a dict; a dict is taken as it is."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    out: dict[str, str] = {}
    for item in value:
        key, sep, val = str(item).partition("=")
        if not sep or not key:
            raise ValueError(f"{str(item)[:80]!r} is not {what}=VALUE")
        out[key] = val
    return out


class Toleration(BaseModel):
    """One pod toleration; from the command line as ``key[=value][:effect]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None

    @property
    def operator(self) -> str:
        return "Exists" if self.value is None else "Equal"

    @classmethod
    def parse(cls, text: str) -> Toleration:
        rest, _, effect = text.rpartition(":") if ":" in text else (text, "", "")
        key, sep, value = rest.partition("=")
        if effect and effect not in TOLERATION_EFFECTS:
            raise ValueError(f"{text[:80]!r}: the effect must be one of {', '.join(TOLERATION_EFFECTS)} "
                             "(form key[=value][:effect])")
        if not key:
            raise ValueError(f"{text[:80]!r} has no key (form key[=value][:effect], e.g. nvidia.com/gpu:NoSchedule)")
        return cls(key=key, value=value if sep else None, effect=effect or None)

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        return _check(names.label_key_problem(value), value)

    @field_validator("value")
    @classmethod
    def _value(cls, value: str | None) -> str | None:
        return value if value is None else _check(names.label_value_problem(value), value)


class PodOptions(BaseModel):
    """What every rendered Job shares: where it runs, which image, credentials, resources, lifetimes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    FLAGS: ClassVar[dict[str, str]] = {"tolerations": "--toleration", "env_secrets": "--env-secret",
                                       "node_selector": "--node-selector"}

    name: str | None = None
    namespace: str | None = None
    image: str
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    models_pvc: str | None = None
    env_secrets: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)
    service_account: str | None = None
    cpu: str | None = None
    memory: str | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    ttl_s: int = Field(7 * 24 * 3600, ge=0, strict=True,
                       description="ttlSecondsAfterFinished: delete the Job this long after it finished.")
    deadline_s: int | None = Field(24 * 3600, ge=1, strict=True,
                                   description="activeDeadlineSeconds: the whole Job's wall-clock limit.")

    @classmethod
    def parse(cls, **flags: Any) -> Any:
        """Options from command-line values (None = the default); `InvalidRequest` naming each bad flag."""
        try:
            return cls(**{k: v for k, v in flags.items() if v is not None})
        except ValidationError as exc:
            problems, first = [], None
            for err in exc.errors(include_url=False):
                field = str(err["loc"][0]) if err["loc"] else ""
                flag = cls.FLAGS.get(field, "--" + field.replace("_", "-")) if field else None
                first = first or flag
                message = err["msg"].removeprefix("Value error, ")
                if err["type"] == "missing":
                    message = "is required: give it on the command line"
                problems.append(f"{flag}: {message}" if flag else message)
            raise InvalidRequest("Invalid options: " + "; ".join(problems) + ".", field=first) from None

    @field_validator("deadline_s", mode="before")
    @classmethod
    def _no_deadline(cls, value: Any) -> Any:
        return None if value == 0 and not isinstance(value, bool) else value

    @field_validator("name", "namespace")
    @classmethod
    def _dns_label(cls, value: str | None) -> str | None:
        return value if value is None else _check(names.dns_label_problem(value), value)

    @field_validator("models_pvc", "service_account")
    @classmethod
    def _subdomain(cls, value: str | None) -> str | None:
        return value if value is None else _check(names.dns_subdomain_problem(value), value)

    @field_validator("env_secrets")
    @classmethod
    def _secrets(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            _check(names.dns_subdomain_problem(name), name)
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if not value or value != value.strip() or any(c.isspace() for c in value):
            raise ValueError(f"{value[:80]!r} is not an image reference: e.g. registry.example.com/talkgen-native:1.0")
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _env_pairs(cls, value: Any) -> Any:
        return _pairs(value, "NAME")

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            _check(names.env_name_problem(key), key)
        return value

    @field_validator("node_selector", mode="before")
    @classmethod
    def _selector_pairs(cls, value: Any) -> Any:
        return _pairs(value, "LABEL")

    @field_validator("node_selector")
    @classmethod
    def _selector(cls, value: dict[str, str]) -> dict[str, str]:
        for key, val in value.items():
            _check(names.label_key_problem(key) or names.label_value_problem(val), key)
        return value

    @field_validator("tolerations", mode="before")
    @classmethod
    def _tolerations(cls, value: Any) -> Any:
        return tuple(Toleration.parse(v) if isinstance(v, str) else v for v in value or ())

    @field_validator("cpu", "memory")
    @classmethod
    def _quantity(cls, value: str | None) -> str | None:
        if value is not None and names.parse_quantity(value) <= 0:
            raise ValueError(f"{value!r} must be more than zero")
        return value


class RenderOptions(PodOptions):
    """An Indexed Job running ``talkgen k8s run`` over ``shards`` shards of a JSONL of requests."""

    FLAGS: ClassVar[dict[str, str]] = {**PodOptions.FLAGS, "max_failed_indexes": "--max-failed-indexes"}

    requests: str
    output: str
    gpus: int = Field(1, ge=0, le=64, strict=True, description="nvidia.com/gpu per pod (0: a CPU-only run).")
    gpu_product: str | None = Field(None,
                                    description="nodeSelector nvidia.com/gpu.product (e.g. NVIDIA-H100-80GB-HBM3).")
    parallelism: int = Field(1, ge=1, le=10_000, strict=True)
    shards: int | None = Field(None, ge=1, le=100_000, strict=True, description="Indexes (default: parallelism).")
    backoff_per_index: int = Field(2, ge=0, le=100, strict=True)
    max_failed_indexes: int | None = Field(None, ge=0, strict=True)
    work_dir_size: str = "50Gi"
    grace_period_s: int = Field(120, ge=0, le=3600, strict=True,
                                description="terminationGracePeriodSeconds: time to checkpoint on SIGTERM.")

    @field_validator("requests", "output")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.strip() or any(c in value for c in "\r\n\x00"):
            raise ValueError("must be a storage URL the pods can read, e.g. s3://bucket/batch.jsonl")
        return value

    @field_validator("gpu_product")
    @classmethod
    def _product(cls, value: str | None) -> str | None:
        return value if value is None else _check(names.label_value_problem(value), value)

    @field_validator("work_dir_size")
    @classmethod
    def _size(cls, value: str) -> str:
        if names.parse_quantity(value) <= 0:
            raise ValueError(f"{value!r} must be more than zero (e.g. 50Gi)")
        return value

    @model_validator(mode="after")
    def _counts(self) -> RenderOptions:
        shards = self.shard_count
        if self.parallelism > shards:
            raise ValueError(f"--parallelism {self.parallelism} is more than --shards {shards}: pods beyond one per "
                             "shard would have nothing to do; raise --shards or lower --parallelism")
        if self.max_failed_indexes is not None and self.max_failed_indexes > shards:
            raise ValueError(f"--max-failed-indexes {self.max_failed_indexes} is more than --shards {shards}")
        return self

    @property
    def shard_count(self) -> int:
        return self.shards if self.shards is not None else self.parallelism

    @property
    def job_name(self) -> str:
        """``name``, or ``talkgen-batch-<8 hex>`` from the requests and output URLs (same batch, same name)."""
        if self.name:
            return self.name
        digest = hashlib.sha256(f"{self.requests}\n{self.output}".encode()).hexdigest()[:8]
        return f"talkgen-batch-{digest}"


class DownloadOptions(PodOptions):
    """A one-off Job filling the weights PVC with ``talkgen models download`` and checking it."""

    models_pvc: str
    model_set: str = DEFAULT_MODEL_SET
    skip: tuple[str, ...] = ()
    skip_optional: bool = False
    backoff_limit: int = Field(4, ge=0, le=100, strict=True)

    @field_validator("model_set")
    @classmethod
    def _model_set(cls, value: str) -> str:
        if not value or value.startswith("-") or any(c.isspace() for c in value):
            raise ValueError(f"{value[:80]!r} is not a model set: use one of `talkgen models list` "
                             f"(e.g. {DEFAULT_MODEL_SET})")
        return value

    @property
    def job_name(self) -> str:
        """``name``, or ``talkgen-models-<8 hex>`` from the PVC and the model set."""
        if self.name:
            return self.name
        digest = hashlib.sha256(f"{self.models_pvc}\n{self.model_set}".encode()).hexdigest()[:8]
        return f"talkgen-models-{digest}"
