"""Python, the installed packages, and the TALKGEN_* settings themselves."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from importlib import metadata

from talkgen.doctor.result import Check, error, ok, warning
from talkgen.errors import InvalidConfig
from talkgen.settings import Settings

MIN_PYTHON = (3, 10)
PACKAGES = ("talkgen", "torch", "diffusers", "transformers", "safetensors", "accelerate", "av", "numpy", "pydantic",
            "httpx", "fsspec", "runpod", "aiohttp", "websocket-client", "s3fs")
NEEDED = {"native": ("torch", "diffusers", "transformers", "safetensors"),
          "comfyui": ("httpx", "websocket-client")}
"""Packages an engine cannot run without (the rest are optional)."""
EXTRAS = {"native": "native", "comfyui": "comfyui"}


def load(overrides: dict[str, object] | None = None) -> tuple[Settings, list[Check]]:
    """The settings, and an error per bad TALKGEN_* value; bad values are replaced by their defaults so the
    other checks still run."""
    from pydantic import ValidationError
    from pydantic_settings.exceptions import SettingsError

    fallback, checks = dict(overrides or {}), []
    for _ in range(len(Settings.model_fields)):  # each pass replaces at least one bad value
        try:
            with _without_env(fallback):
                settings = Settings(**fallback)
        except ValidationError as exc:
            bad = [(str(e["loc"][0]) if e["loc"] else "settings", e["msg"].removeprefix("Value error, "))
                   for e in exc.errors(include_url=False, include_input=False)]  # inputs may hold credentials
        except SettingsError as exc:  # a value that is not valid JSON, for instance
            found = re.search(r'field "(\w+)"', str(exc))
            bad = [(found.group(1) if found else "settings", "not a valid value (JSON expected)")]
        else:
            return settings, checks or [ok("settings", "TALKGEN_* configuration is valid")]
        for name, message in bad:
            field = Settings.model_fields.get(name)
            if field is None or name in fallback:
                raise InvalidConfig(f"Invalid TALKGEN_* configuration: {name}: {message}.")
            checks.append(error(f"setting {name}", f"TALKGEN_{name.upper()}: {message}",
                                f"correct or unset TALKGEN_{name.upper()} (its default is used below)"))
            fallback[name] = field.get_default(call_default_factory=True)
    raise InvalidConfig("Invalid TALKGEN_* configuration.")


@contextmanager
def _without_env(names: Iterable[str]) -> Iterator[None]:
    """Hide ``TALKGEN_<NAME>`` for each name while the settings load (a value the env source cannot even parse
    fails the load whatever the keyword arguments say)."""
    wanted = {f"TALKGEN_{name}".upper() for name in names}
    hidden = {key: os.environ.pop(key) for key in list(os.environ) if key.upper() in wanted}
    try:
        yield
    finally:
        os.environ.update(hidden)


def python() -> list[Check]:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info[:2] < MIN_PYTHON:
        return [error("python", f"{version} ({sys.executable})",
                      f"use Python {'.'.join(map(str, MIN_PYTHON))} or newer")]
    return [ok("python", f"{version} ({sys.executable})")]


def packages(engine: str) -> list[Check]:
    """One line of installed versions; an error per package the configured engine needs and lacks."""
    found, absent = [], []
    for name in PACKAGES:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            absent.append(name)
    checks = [ok("packages", ", ".join(found) + (f"; not installed (optional): {', '.join(absent)}" if absent
                                                   else ""))]
    missing = [name for name in NEEDED.get(engine, ()) if name in absent]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        checks.append(error(f"{engine} engine", f"needs {', '.join(missing)}, which {verb} not installed",
                            f"pip install 'talkgen[{EXTRAS.get(engine, engine)}]'"))
    return checks


def engine(settings: Settings) -> list[Check]:
    """The configured engine is one that is installed."""
    from talkgen.plugins import get_registry

    engines = get_registry().engines
    if settings.engine not in engines:
        return [error("engine", f"TALKGEN_ENGINE={settings.engine!r} is not installed (installed: "
                      f"{', '.join(sorted(engines)) or 'none'})",
                      f"pip install 'talkgen[{settings.engine}]' or set TALKGEN_ENGINE to an installed engine")]
    detail = f"{settings.engine} (installed: {', '.join(sorted(engines))})"
    if settings.engine not in ("native", "comfyui"):
        return [warning("engine", detail, "doctor checks the native and comfyui engines only; a plugin engine's "
                        "own needs are not checked")]
    return [ok("engine", detail)]
