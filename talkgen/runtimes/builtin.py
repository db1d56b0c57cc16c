"""Registers the built-in runtimes (their SDKs are imported only when one runs)."""

from __future__ import annotations

from collections.abc import Sequence

from talkgen.hookspecs import hookimpl


def _runpod(argv: Sequence[str] | None = None) -> None:
    from talkgen.runtimes.runpod import main

    main(argv)


@hookimpl
def register_runtimes(register) -> None:  # type: ignore[no-untyped-def]
    register("runpod", _runpod, description="RunPod serverless worker: python -m talkgen.runtimes.runpod")
