"""`ModalSettings`: how `deploy/modal_app.py` deploys talkgen, from ``TALKGEN_MODAL_*`` variables.

Modal itself accepts ``gpu="FOO"`` or ``timeout=0`` until deploy time; these settings are checked when the
app file is imported, so a mistake is one clear `InvalidConfig` naming the variable and the fix.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Modal's GPU types (modal.com/docs/guide/gpu), upper case as Modal normalises them. "H100!" pins H100 (no
# upgrade to H200), "B200+" allows an upgrade to newer Blackwell parts.
GPU_TYPES = ("T4", "L4", "A10", "L40S", "A100", "A100-40GB", "A100-80GB", "RTX-PRO-6000", "H100", "H100!",
             "H200", "B200", "B200+")
MAX_GPUS = {"A10": 4}  # every other type: up to 8 on one container
MAX_GPU_COUNT = 8
APP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
PREFIX = "TALKGEN_MODAL_"


def parse_gpu(value: str) -> tuple[str, int]:
    """``"h100:2"`` → ``("H100", 2)``; ValueError with the fix for an unknown type or a bad count."""
    kind, sep, count_text = value.strip().partition(":")
    kind = kind.strip().upper()
    if kind not in GPU_TYPES:
        raise ValueError(f"{value.strip()[:40]!r} is not a Modal GPU type: use one of {', '.join(GPU_TYPES)} "
                         "(case-insensitive), optionally with a count such as H100:2")
    count = 1
    if sep:
        try:
            count = int(count_text.strip())
        except ValueError:
            raise ValueError(f"{value.strip()[:40]!r}: the GPU count after ':' must be a whole number") from None
    limit = MAX_GPUS.get(kind, MAX_GPU_COUNT)
    if not 1 <= count <= limit:
        raise ValueError(f"{value.strip()[:40]!r}: Modal gives 1 to {limit} {kind} GPUs to one container")
    return kind, count


class ModalSettings(BaseSettings):
    """Everything `modal deploy deploy/modal_app.py` needs that is not in the talkgen settings."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore")

    app_name: str = Field("talkgen", description="Modal app name (`modal app list`).")
    gpu: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["H100"],
        description='GPU type, "TYPE:COUNT", or an ordered fallback list ("H100,A100-80GB" or a JSON list). '
        "A count above 1 runs each video on that many GPUs (context parallelism under torchrun).",
    )
    timeout_s: int = Field(3600, ge=1, le=86400, description="Longest one call may run (Modal: 1 s to 24 h).")
    startup_timeout_s: int = Field(
        1200, ge=1, le=86400, description="Longest a container may take to start, loading the engine included.")
    scaledown_window_s: int = Field(300, ge=2, le=3600, description="Idle seconds before a container stops.")
    max_containers: int | None = Field(None, ge=1, description="Most GPU containers at once (none: Modal's).")
    min_containers: int = Field(0, ge=0, description="GPU containers kept warm while idle (billed).")
    weights_volume: str = Field("talkgen-models", description="Volume with the weights, mounted at /models.")
    outputs_volume: str = Field("talkgen-outputs", description="Volume the videos are written to (/outputs).")
    progress_dict: str = Field("talkgen-progress", description="modal.Dict holding each call's progress.")
    secrets: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Modal Secret names whose variables the containers get (AWS_*, HF_TOKEN).")
    engine: str = Field("native", description="TALKGEN_ENGINE of the GPU containers.")
    model_set: str = Field("infinitetalk-480p", description="What `download` fetches (`talkgen models download`).")
    python_version: str = Field("3.11", pattern=r"^3\.\d{1,2}(\.\d{1,2})?$",
                                description="Python of the image (the native image's is 3.11).")
    base_image: str | None = Field(None, description="A registry image with Python instead of Modal's debian_slim.")
    torch_spec: str = Field("torch==2.13.0", description="The torch requirement, installed before the pins.")
    web_auth: bool = Field(True, description="The job API requires Modal proxy auth (Modal-Key/Modal-Secret).")
    env: dict[str, str] = Field(
        default_factory=dict, description='Extra variables for the containers, JSON: {"TALKGEN_NATIVE_QUANT": "fp8"}.')

    @field_validator("gpu", mode="before")
    @classmethod
    def _split_gpu(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [p for p in text.split(",") if p.strip()]
        return value

    @field_validator("gpu")
    @classmethod
    def _check_gpu(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("give at least one GPU type, e.g. H100")
        parsed = [parse_gpu(v) for v in value]
        if len({count for _, count in parsed}) > 1:
            raise ValueError("every GPU in a fallback list needs the same count (a video is split over that "
                             "many GPUs): e.g. H100:2,A100-80GB:2")
        return [kind if count == 1 else f"{kind}:{count}" for kind, count in parsed]

    @field_validator("secrets", mode="before")
    @classmethod
    def _split_names(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [p.strip() for p in text.split(",") if p.strip()]
        return value

    @field_validator("app_name", "weights_volume", "outputs_volume", "progress_dict")
    @classmethod
    def _name(cls, value: str) -> str:
        if not APP_NAME.match(value):
            raise ValueError(f"{value[:80]!r} is not a valid Modal name: 1-64 letters, digits, '.', '_' or '-'")
        return value

    @field_validator("env")
    @classmethod
    def _no_modal_env(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [k for k in value if k.startswith(PREFIX)]
        if bad:
            raise ValueError(f"{bad[0]} is a deploy setting: set it in your shell, not in the containers' env")
        return value

    @model_validator(mode="after")
    def _containers(self) -> ModalSettings:
        if self.max_containers is not None and self.min_containers > self.max_containers:
            raise ValueError(f"min_containers ({self.min_containers}) is above max_containers ({self.max_containers})")
        return self

    @property
    def gpu_count(self) -> int:
        """GPUs per container (the same for every fallback type)."""
        return parse_gpu(self.gpu[0])[1]

    def container_env(self) -> dict[str, str]:
        """Variables of the GPU containers: volume paths, the engine, warm-up on, then ``env`` on top, then
        these settings themselves (so the container reads the values the app was deployed with)."""
        base = {"TALKGEN_MODELS_DIR": MODELS_DIR, "TALKGEN_ENGINE": self.engine, "TALKGEN_WARMUP": "true",
                "TALKGEN_OUTPUT_ROOTS": OUTPUTS_DIR, "TALKGEN_VOLUME_DIR": OUTPUTS_DIR,
                "TALKGEN_JOB_TIMEOUT_S": str(max(self.timeout_s - 30, 1))}
        return {**base, **self.env, **self.as_env()}

    def as_env(self) -> dict[str, str]:
        """These settings as ``TALKGEN_MODAL_*`` variables (the values a container re-reads)."""
        out = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
            out[PREFIX + name.upper()] = text.lower() if isinstance(value, bool) else text
        return out

    def cls_options(self) -> dict[str, Any]:
        """Keyword arguments of ``app.cls(...)`` for the GPU class (image, volumes and secrets are Modal
        objects: the app file adds them)."""
        options: dict[str, Any] = {
            "gpu": self.gpu[0] if len(self.gpu) == 1 else list(self.gpu),
            "timeout": self.timeout_s,
            "startup_timeout": self.startup_timeout_s,
            "scaledown_window": self.scaledown_window_s,
            "min_containers": self.min_containers,
            "env": self.container_env(),
        }
        if self.max_containers is not None:
            options["max_containers"] = self.max_containers
        return options


MODELS_DIR = "/models"
OUTPUTS_DIR = "/outputs"


def load_modal_settings(**overrides: Any) -> ModalSettings:
    """`ModalSettings` from the environment; a mistake is an `InvalidConfig` naming the variable and the fix."""
    from pydantic import ValidationError
    from pydantic_settings.exceptions import SettingsError

    from talkgen.errors import InvalidConfig

    try:
        return ModalSettings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False, include_input=False):
            name = str(err["loc"][0]) if err["loc"] else ""
            label = f"{PREFIX}{name.upper()} ({name})" if name else "TALKGEN_MODAL_*"
            problems.append(f"{label}: {err['msg'].removeprefix('Value error, ')}")
        raise InvalidConfig("Invalid TALKGEN_MODAL_* configuration: " + "; ".join(problems) + ".") from None
    except (SettingsError, json.JSONDecodeError) as exc:
        raise InvalidConfig(f"Invalid TALKGEN_MODAL_* configuration: {exc}".replace("\n", " ")) from None
