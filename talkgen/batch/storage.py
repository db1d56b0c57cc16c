"""Where batch files live: a local path or any fsspec URL, with the options that reach it."""

from __future__ import annotations

from typing import Any

from talkgen.storage_url import protocol_of


def options_for(url: str, storage_options: dict[str, Any] | None) -> dict[str, Any]:
    """fsspec options for ``url``.

    ``storage_options`` is either the options themselves (``{"key": ..., "client_kwargs": ...}``) or,
    like ``TALKGEN_STORAGE_OPTIONS``, one dict per protocol (``{"s3": {...}}``); None reads
    ``TALKGEN_STORAGE_OPTIONS`` from the environment.
    """
    protocol = protocol_of(url)
    if not protocol or protocol == "file":
        return {}
    if storage_options is None:
        from talkgen.settings import load_settings

        return load_settings().storage_options_for(protocol)
    if storage_options and _per_protocol(storage_options):
        from talkgen.settings import Settings

        return Settings.model_construct(storage_options=storage_options).storage_options_for(protocol)
    return dict(storage_options)


def _per_protocol(options: dict[str, Any]) -> bool:
    """True when every key names an fsspec protocol and every value is a dict (``{"s3": {...}}``)."""
    from fsspec.registry import known_implementations, registry

    return all(
        isinstance(value, dict) and (key.lower() in known_implementations or key.lower() in registry)
        for key, value in options.items()
    )


def joined(prefix: str, name: str) -> str:
    """``prefix/name`` whether or not ``prefix`` ends with a slash."""
    return prefix.rstrip("/") + "/" + name
