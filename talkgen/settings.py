"""Configuration from ``TALKGEN_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PACKAGE_DIR = Path(__file__).resolve().parent
EXAMPLES_DIR = PACKAGE_DIR.parent / "examples"
RUNPOD_VOLUME = Path("/runpod-volume")


def _default_path_roots() -> list[Path]:
    """The examples, the working directory (unless it is `/`, which would allow every file) and the volume."""
    roots = [EXAMPLES_DIR]
    if Path.cwd() != Path(Path.cwd().anchor):
        roots.append(Path.cwd())
    if RUNPOD_VOLUME.is_dir():
        roots.append(RUNPOD_VOLUME)
    return roots


def _default_output_roots() -> list[Path]:
    return [RUNPOD_VOLUME] if RUNPOD_VOLUME.is_dir() else []


def _default_models_dir() -> Path:
    """The network volume's models folder on RunPod, else the user cache."""
    if RUNPOD_VOLUME.is_dir():
        return RUNPOD_VOLUME / "models"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "talkgen" / "models"


MB = 1_000_000


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with configuration mistakes as a clear `TalkgenError`."""
    from pydantic import ValidationError
    from pydantic_settings.exceptions import SettingsError

    from talkgen.errors import InvalidConfig

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False, include_input=False):  # inputs may hold credentials
            name = str(err["loc"][0]) if err["loc"] else "settings"
            problems.append(f"TALKGEN_{name.upper()} ({name}): {err['msg'].removeprefix('Value error, ')}")
        raise InvalidConfig("Invalid TALKGEN_* configuration: " + "; ".join(problems) + ".") from None
    except SettingsError as exc:
        raise InvalidConfig(f"Invalid TALKGEN_* configuration: {exc}".replace("\n", " ")) from None


def known_protocols(url: str) -> str:
    """``url`` with each fsspec protocol in lower case; ValueError naming one fsspec does not know."""
    if "://" not in url:
        return url  # a local path
    from fsspec.registry import get_filesystem_class, known_implementations, registry

    parts = []
    for part in url.split("::"):
        head, sep, rest = part.partition("://")
        protocol = head.lower()
        if protocol not in known_implementations and protocol not in registry:
            raise ValueError(
                f"{head[:40]!r} is not a storage protocol fsspec knows: use one such as s3://, gs://, az:// "
                "or a local path"
            )
        try:
            get_filesystem_class(protocol)
        except ImportError as exc:
            raise ValueError(f"the {protocol}:// driver is not installed ({str(exc)[:200]})") from None
        parts.append(f"{protocol}{sep}{rest}")
    return "::".join(parts)


def _creatable_dir(path: Path) -> None:
    """ValueError unless ``path`` is, or can be created as, a directory this process can write in."""
    probe = path.expanduser()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"{str(path)[:200]!r} cannot be a directory: {str(probe)[:200]!r} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{str(path)[:200]!r} cannot be created or written: no write permission in "
                         f"{str(probe)[:200]!r}")


class Settings(BaseSettings):
    """Every knob an operator sets; requests cannot change these."""

    model_config = SettingsConfigDict(env_prefix="TALKGEN_", extra="ignore")

    # engines
    engine: str = Field("native", description="Engine used when a request names none.")
    warmup: bool = Field(
        False, description="Workers (RunPod) load the default engine at start, before the first job; a failure "
        "there stops the worker with its message."
    )

    # sources
    allowed_path_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=_default_path_roots,
        description="Directories `*_path` inputs may read from (JSON list).",
    )
    allow_private_urls: bool = Field(
        False, description="Allow URL inputs that resolve to private or loopback addresses (not link-local: "
        "see allow_link_local_urls)."
    )
    allow_link_local_urls: bool = Field(
        False, description="Allow URL inputs on link-local addresses (169.254.0.0/16, fe80::/10) and cloud "
        "metadata endpoints (169.254.169.254, fd00:ec2::254, 100.100.100.200, 168.63.129.16); refused otherwise, "
        "even with allow_private_urls."
    )
    max_download_mb: float = Field(2000, gt=0, description="Largest URL or storage download, in MB.")
    max_base64_mb: float = Field(200, gt=0, description="Largest decoded base64 input, in MB.")
    url_connect_timeout_s: float = Field(10, gt=0)
    url_read_timeout_s: float = Field(60, gt=0)
    url_retries: int = Field(3, ge=0, le=10, description="Retries on 5xx, 429 and timeouts.")
    url_max_redirects: int = Field(5, ge=0, le=20)
    download_timeout_s: float = Field(
        600, gt=0, description="Longest time one input may take to download or copy (independent of the job "
        "deadline): a slow sender cannot hold a worker."
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description='Extra fsspec options per protocol, JSON: {"s3": {"endpoint_url": ...}}.',
    )

    # media
    max_image_pixels: int = Field(50_000_000, gt=0, description="Refuse larger images (decompression bombs).")
    max_duration_s: float = Field(3600, gt=0, description="Longest audio a job may produce video for.")
    fps: int = Field(25, description="Output frame rate (InfiniteTalk works at 25 fps).")

    # outputs
    inline_output_limit_mb: float = Field(
        14, gt=0, description="Largest video returned inline as base64; RunPod rejects results near 20 MB."
    )
    output_url: str | None = Field(
        None, description="fsspec URL prefix for videos too large to inline (e.g. s3://bucket/talkgen/)."
    )
    output_protocols: list[str] = Field(
        default_factory=lambda: ["s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "oss"],
        description="Storage protocols a request's output_url may write to (JSON list).",
    )
    output_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=_default_output_roots,
        description="Local directories a request's output_url may write into.",
    )
    volume_dir: Path = Field(RUNPOD_VOLUME, description="Where `network_volume: true` writes the video.")
    presign_expiry_s: int = Field(7 * 24 * 3600, gt=0, le=7 * 24 * 3600)
    stream: bool = Field(
        False, description="Stream every job as live HLS next to its video (a request's `stream` overrides it)."
    )

    # jobs
    job_timeout_s: float | None = Field(
        None, gt=0, description="Fail a job with `timeout` after this many seconds (align with the platform's)."
    )
    work_dir: Path | None = Field(None, description="Parent of per-job work directories (default: temp dir).")
    checkpoint_url: str | None = Field(
        None, description="fsspec URL prefix for resumable-job checkpoints (default: <work dir>/checkpoints)."
    )

    # native engine
    models_dir: Path = Field(
        default_factory=_default_models_dir, description="Where model weights live (`talkgen models download`)."
    )
    native_transformer: Path | None = Field(
        None, description="DiT weights to use instead of the models dir's: diffusers folder, Wan shards or one file."
    )
    native_device: str = Field("auto", description="torch device: auto (cuda if present), cuda, cuda:1, cpu.")
    native_dtype: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="DiT/text-encoder dtype: auto = bf16 on GPU, fp32 on CPU."
    )
    native_attention: str = Field(
        "native", description="diffusers attention backend: native (SDPA), flash, _flash_3, sage, xformers …"
    )
    native_offload: Literal["auto", "none", "model", "group"] = Field(
        "auto", description="auto: the lightest plan that fits the free VRAM; none: all resident; model: DiT and "
        "VAE resident, encoders visit the GPU; group: DiT blocks stream from pinned CPU memory (least VRAM)."
    )
    native_quant: Literal["none", "fp8"] = Field(
        "none", description="fp8: quantise the DiT's block weights to fp8 e4m3fn at load (half the bytes; computed "
        "in native_dtype). fp8 files (plain or _scaled) stay fp8 either way."
    )
    native_vae_dtype: Literal["fp32", "bf16"] = Field(
        "fp32", description="dtype the VAE encodes and decodes in: bf16 halves its memory and time (frames within "
        "the tolerance the README states)."
    )
    native_vae_tiling: bool = Field(False, description="Decode/encode the VAE in tiles (less VRAM at 720p).")
    native_compile: Literal["auto", "always", "never"] = Field(
        "auto", description="torch.compile the repeated DiT blocks: auto = on a GPU, once the passes this worker "
        "has run plus the job's reach native_compile_min_passes (compiling pays off only over many passes)."
    )
    native_compile_min_passes: int = Field(
        160, ge=0, description="For native_compile=auto: DiT passes after which compiling pays for itself."
    )
    native_cache: Literal["none", "first-block"] = Field(
        "none", description="diffusers cache hook: first-block skips steps whose first block barely changes."
    )
    native_cache_threshold: float = Field(0.05, gt=0, description="Threshold of the first-block cache.")
    native_preset: Literal["fast", "quality"] = Field(
        "fast", description="Sampling preset of requests that name none: fast (distill LoRA, 4 steps, 2 passes) or "
        "quality (upstream's 40 steps × 3 passes)."
    )
    native_fuse_lora: bool = Field(
        True, description="Fuse the default preset's LoRA into the weights at load (no cost for that preset; the "
        "other preset then subtracts it with a small low-rank pass). false: keep it beside the weights (bit-exact "
        "base weights for every preset, a small low-rank pass for the LoRA's preset)."
    )
    native_loras: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="LoRA files fused into the DiT, each `path` or `path@strength`."
    )
    # vocal separation (both engines: runs while the job's audio is prepared)
    separation_model: Path | None = Field(
        None, description="MelBand-RoFormer vocal separator file (default: <models dir>/MelBandRoFormer/"
        "MelBandRoformer_fp16.safetensors, where `talkgen models download` puts it)."
    )
    separation_device: str = Field(
        "auto", description="torch device of the vocal separator: auto (the native engine's device, else cuda if "
        "present, else cpu), cpu, cuda, cuda:N."
    )
    # ComfyUI engine
    comfyui_url: str = Field("http://127.0.0.1:8188", description="ComfyUI server the `comfyui` engine drives.")
    comfyui_flavour: Literal["auto", "native", "wrapper"] = Field(
        "auto", description="Workflow flavour: ComfyUI core InfiniteTalk nodes (native), the seed's WanVideoWrapper "
        "stack (wrapper), or auto: native where it can run the job and the server has it, else wrapper."
    )
    comfyui_dir: Path | None = Field(
        None, description="The ComfyUI folder (or --base-directory) when it is on this machine: job files are removed."
    )
    comfyui_args: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Extra flags when talkgen starts ComfyUI (e.g. --cpu --max-upload-size 500)."
    )
    comfyui_python: Path | None = Field(None, description="Python of ComfyUI's environment (default: this one).")
    comfyui_start_timeout_s: float = Field(180, gt=0, description="How long a started ComfyUI may take to answer.")
    comfyui_workflows_dir: Path | None = Field(
        None, description="Your own API-format workflows (<mode>.json with talkgen:* titles) instead of the built-in."
    )
    comfyui_timeout_s: float = Field(600, gt=0, description="Base time a ComfyUI prompt may take.")
    comfyui_timeout_per_audio_s: float = Field(
        600, gt=0, description="Extra time per second of audio in a prompt (the deadline grows with the audio)."
    )
    comfyui_stall_s: float = Field(120, gt=0, description="No event this long: check the server is still alive.")
    color_correction: float = Field(
        1.0, ge=0, le=1, description="Pull each window's colours toward the first frame (0 disables)."
    )

    @field_validator("comfyui_args", mode="before")
    @classmethod
    def _split_args(cls, value: Any) -> Any:
        if isinstance(value, str):
            import shlex

            return json.loads(value) if value.lstrip().startswith("[") else shlex.split(value)
        return value

    @field_validator("native_compile", mode="before")
    @classmethod
    def _compile_from_bool(cls, value: Any) -> Any:
        """true/false (the old boolean setting) mean always/never."""
        if isinstance(value, bool):
            return "always" if value else "never"
        if isinstance(value, str) and value.strip().lower() in {"true", "1", "yes", "on", "false", "0", "no", "off"}:
            return "always" if value.strip().lower() in {"true", "1", "yes", "on"} else "never"
        return value

    @field_validator("native_loras", mode="before")
    @classmethod
    def _split_loras(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value) if value.lstrip().startswith("[") else [p for p in value.split(",") if p]
        return value

    @field_validator("checkpoint_url", "output_url")
    @classmethod
    def _storage_url(cls, value: str | None) -> str | None:
        """A storage URL whose protocols fsspec knows (lower-cased), or a local path."""
        return None if value is None else known_protocols(value.strip())

    @field_validator("work_dir")
    @classmethod
    def _work_dir(cls, value: Path | None) -> Path | None:
        if value is not None:
            _creatable_dir(value)
        return value

    @field_validator("allowed_path_roots", "output_roots", mode="before")
    @classmethod
    def _split_paths(cls, value: Any) -> Any:
        """Accept a JSON list or an os.pathsep-separated string (as PATH is written)."""
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [p for p in value.split(os.pathsep) if p]
        return value

    @property
    def max_download_bytes(self) -> int:
        return int(self.max_download_mb * MB)

    @property
    def max_base64_bytes(self) -> int:
        return int(self.max_base64_mb * MB)

    @property
    def inline_output_limit_bytes(self) -> int:
        return int(self.inline_output_limit_mb * MB)

    def storage_options_for(self, protocol: str) -> dict[str, Any]:
        """fsspec options configured for one protocol or one of its aliases (``s3a`` uses ``s3``'s)."""
        protocol = protocol.lower()
        if protocol in self.storage_options or not self.storage_options:
            return dict(self.storage_options.get(protocol, {}))
        import fsspec

        try:
            names = fsspec.get_filesystem_class(protocol).protocol
        except (ImportError, ValueError):
            return {}
        for name in (names,) if isinstance(names, str) else names:
            if name in self.storage_options:
                return dict(self.storage_options[name])
        return {}
