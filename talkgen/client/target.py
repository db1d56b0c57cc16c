"""Where a job goes, written as one string (``--to`` / ``TALKGEN_TARGET``).

=================================================  =====================================================
``runpod:<endpoint_id>``                           RunPod's hosted endpoint; key from ``RUNPOD_API_KEY``
``runpod:http(s)://host:port`` (or ``runpod+http``)  any RunPod-compatible API, e.g. the SDK's local server
                                                   started with ``--rp_serve_api`` (key sent if set)
``modal:https://<workspace>--<app>.modal.run``     a deployed talkgen Modal app's web job API
``k8s:<namespace>``                                Kubernetes Jobs in that namespace of the current
                                                   kubeconfig (options: ``image``, ``staging``, …)
=================================================  =====================================================
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from talkgen.client.base import Platform
from talkgen.errors import InvalidRequest, shown

TARGET_ENV = "TALKGEN_TARGET"
EXAMPLES = ("runpod:<endpoint_id>, runpod:http://127.0.0.1:8000, modal:https://<workspace>--talkgen-api.modal.run, "
            "k8s:<namespace>")
_ENDPOINT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def parse_target(target: str) -> tuple[str, str]:
    """``(kind, where)``: kind ``runpod`` (where: endpoint id or base URL), ``modal`` (URL), ``k8s`` (namespace)."""
    if not isinstance(target, str) or not target.strip():
        raise InvalidRequest(f"Say where to send the job: --to TARGET or {TARGET_ENV}, e.g. {EXAMPLES}.",
                             field="target")
    text = target.strip()
    if text.startswith(("runpod+http://", "runpod+https://")):
        return "runpod", _url(text.removeprefix("runpod+"), "runpod")
    kind, sep, where = text.partition(":")
    kind = kind.lower()
    if not sep or kind in ("http", "https"):
        raise InvalidRequest(f"Target {shown(text)} does not say which platform: write runpod:<URL> for a "
                             f"RunPod-compatible API or modal:<URL> for a talkgen Modal app (targets: {EXAMPLES}).",
                             field="target")
    if kind == "runpod":
        if "://" in where:
            return "runpod", _url(where, "runpod")
        if not _ENDPOINT_ID.match(where):
            raise InvalidRequest(f"{shown(where)} is not a RunPod endpoint id (letters, digits, - and _, as in the "
                                 "console's endpoint page): write runpod:<endpoint_id> or runpod:<URL>.",
                                 field="target")
        return "runpod", where
    if kind == "modal":
        return "modal", _url(where, "modal")
    if kind in ("k8s", "kubernetes"):
        if not _NAMESPACE.match(where):
            raise InvalidRequest(f"{shown(where)} is not a Kubernetes namespace (lowercase letters, digits and -, "
                                 "at most 63): write k8s:<namespace>, e.g. k8s:default.", field="target")
        return "k8s", where
    raise InvalidRequest(f"Unknown platform {shown(kind)} in target {shown(text)}: use one of {EXAMPLES}.",
                         field="target")


def _url(url: str, kind: str) -> str:
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise InvalidRequest(f"{shown(url)} is not an http(s) URL: write {kind}:https://host[:port][/path].",
                             field="target")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise InvalidRequest(f"The {kind} URL must be a plain base URL (no credentials, query or fragment): "
                             "pass keys through the environment.", field="target")
    return url.rstrip("/")


def platform_for(target: str, **options: Any) -> Platform:
    """The platform a target names, built with ``options`` (see `talkgen.client.connect`)."""
    kind, where = parse_target(target)
    http = {k: options.pop(k) for k in ("retries", "backoff_s", "timeout_s", "transport", "sleep") if k in options}
    if kind == "runpod":
        from talkgen.client.runpod import RunPodPlatform

        _no_extra(options, {"api_key", "poll_s"}, target)
        if "://" in where:
            return RunPodPlatform(where, **options, **http)
        return RunPodPlatform.endpoint(where, **options, **http)
    if kind == "modal":
        from talkgen.client.modal import ModalPlatform

        _no_extra(options, {"modal_key", "modal_secret", "outputs_volume"}, target)
        return ModalPlatform(where, **options, **http)
    from talkgen.client.k8s import K8sPlatform

    return K8sPlatform(where, **options)


def _no_extra(options: dict[str, Any], allowed: set[str], target: str) -> None:
    extra = sorted(set(options) - allowed)
    if extra:
        raise InvalidRequest(f"Option{'s' if len(extra) > 1 else ''} {', '.join(extra)} "
                             f"{'do' if len(extra) > 1 else 'does'} not apply to target "
                             f"{shown(target)} (it takes {', '.join(sorted(allowed)) or 'none'}).", field=extra[0])
