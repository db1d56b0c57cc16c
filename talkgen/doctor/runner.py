"""Run every check in order, each guarded, into one `Report`."""

from __future__ import annotations

from talkgen.doctor import comfyui, gpu, models, separation, storage, system
from talkgen.doctor.result import Check, Report, error, guarded


def diagnose(verify: bool = False, overrides: dict[str, object] | None = None) -> Report:
    """Check this machine against the TALKGEN_* settings (``overrides`` replace some of them; ``verify``
    re-hashes every model file instead of comparing sizes with the lock file)."""
    checks: list[Check] = guarded("python", system.python)
    try:
        settings, found = system.load(overrides)
    except Exception as exc:  # settings that fail even with defaults: nothing else can be checked
        return Report([*checks, error("settings", f"cannot load the settings: {type(exc).__name__}: "
                                      f"{str(exc)[:300]}", "correct the TALKGEN_* environment variables")])
    checks += found
    checks += guarded("packages", lambda: system.packages(settings.engine))
    checks += guarded("engine", lambda: system.engine(settings))
    checks += guarded("gpu", lambda: gpu.checks(settings))
    checks += guarded("models", lambda: models.checks(settings, verify))
    checks += guarded("vocal separator", lambda: separation.checks(settings))
    checks += guarded("comfyui", lambda: comfyui.checks(settings))
    checks += guarded("storage", lambda: storage.checks(settings))
    return Report(checks)
