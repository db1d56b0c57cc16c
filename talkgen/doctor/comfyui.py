"""The ComfyUI engine's server: reachable, with the nodes and model files the flavour's workflows need."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from talkgen.doctor.result import Check, error, ok, warning
from talkgen.settings import Settings

TIMEOUT_S = 10.0


def checks(settings: Settings) -> list[Check]:
    """Nothing for other engines; else the server, its nodes, and the model files each workflow loads."""
    if settings.engine != "comfyui":
        return []
    from talkgen.engines.comfyui.client import ComfyClient

    client = ComfyClient(settings.comfyui_url, timeout_s=TIMEOUT_S)
    try:
        return _server(settings, client)
    finally:
        client.close()


def _server(settings: Settings, client: Any) -> list[Check]:
    url = settings.comfyui_url
    if not client.alive():
        folder = settings.comfyui_dir
        if folder is not None and (Path(folder) / "main.py").is_file():
            return [warning("comfyui", f"no server answers at {url} yet; talkgen starts it from {folder} on the "
                            "first job, so its nodes and model files are not checked now",
                            "start the worker once (or ComfyUI itself) and rerun `talkgen doctor`")]
        return [error("comfyui", f"no ComfyUI server answers at {url} (TALKGEN_COMFYUI_URL)",
                      "start ComfyUI there (python main.py --listen 127.0.0.1 --port 8188), point "
                      "TALKGEN_COMFYUI_URL at a running one, or set TALKGEN_COMFYUI_DIR to a ComfyUI folder with "
                      "main.py for talkgen to start")]
    stats = client.system_stats()
    version = (stats.get("system") or {}).get("comfyui_version", "unknown version")
    devices = ", ".join(_device(d) for d in stats.get("devices") or []) or "no devices listed"
    out = [ok("comfyui", f"{url} answers: ComfyUI {version}; {devices}")]
    if settings.comfyui_flavour == "auto" and settings.comfyui_workflows_dir is None:
        return out + _auto(settings, client)
    return out + _flavour(settings, client, settings.comfyui_flavour)


def _flavour(settings: Settings, client: Any, flavour: str) -> list[Check]:
    """One flavour's workflows: their node classes and model files."""
    workflows = _workflows(settings, flavour)
    if not workflows:
        return [error("comfyui workflows", f"no {flavour} workflows (*.json) in {_folder(settings, flavour)}",
                      "set TALKGEN_COMFYUI_WORKFLOWS_DIR to a folder of API-format workflows, or reinstall talkgen")]
    return [_nodes(client, workflows, flavour), _models(client, workflows)]


def _auto(settings: Settings, client: Any) -> list[Check]:
    """TALKGEN_COMFYUI_FLAVOUR=auto: which flavours this server can run, and what that means for requests."""
    from talkgen.engines.comfyui.flavours import FLAVOURS, ServerFlavours

    server = ServerFlavours.check(lambda c: bool(client.node_info(c)))
    if not server.available:
        lacking = "; ".join(f"{f} lacks {server.lacks(f)}" for f in FLAVOURS)
        return [error("comfyui nodes", f"no workflow flavour can run here: {lacking}",
                      "install the node packs at the commits in talkgen's versions.json, then restart ComfyUI")]
    results = {f: _flavour(settings, client, f) for f in server.available}
    if len(results) > 1:  # one line per flavour and check
        results = {f: [replace(c, name=f"{c.name} ({f})") for c in found] for f, found in results.items()}
    usable = [f for f, found in results.items() if all(c.status == "ok" for c in found)]
    out = [c for f in server.available for c in results[f] if f in usable or not usable]
    if "wrapper" not in usable:
        why = server.lacks("wrapper") if "wrapper" not in server.available else "its model files (above)"
        out.append(warning("comfyui flavours", "auto runs the native flavour; two speakers talking at once "
                           f"(audio_type 'para', the seed's two-speaker default) are refused: wrapper lacks {why}",
                           "install the wrapper packs and model files, or send two-speaker requests with "
                           "audio_type 'add'"))
    elif "native" not in usable:
        out.append(ok("comfyui flavours", "auto runs every request on the wrapper flavour (one prompt per job)"))
    else:
        out.append(ok("comfyui flavours", "auto runs the native flavour, and the wrapper flavour for 'para'"))
    return out


def _device(device: dict[str, Any]) -> str:
    name = device.get("name", "?")
    free = device.get("vram_free")
    return f"{name} ({free / (1 << 30):.1f} GiB free)" if isinstance(free, (int, float)) and free else str(name)


def _folder(settings: Settings, flavour: str) -> Path:
    from talkgen.engines.comfyui import engine

    return Path(settings.comfyui_workflows_dir or engine.BUILTIN / flavour)


def _workflows(settings: Settings, flavour: str) -> dict[str, dict[str, Any]]:
    """``{file name: graph}`` of the flavour's workflows."""
    from talkgen.engines.comfyui.workflow import Workflow

    return {path.name: Workflow.load(path).graph for path in sorted(_folder(settings, flavour).glob("*.json"))}


def _nodes(client: Any, workflows: dict[str, dict[str, Any]], flavour: str) -> Check:
    from talkgen.engines.comfyui.flavours import REQUIRED_NODES

    wanted = set(REQUIRED_NODES.get(flavour, []))
    wanted |= {node["class_type"] for graph in workflows.values() for node in graph.values()}
    missing = sorted(c for c in wanted if not client.node_info(c))
    if missing:
        return error("comfyui nodes", f"the {flavour} flavour needs node classes this server "
                     f"lacks: {', '.join(missing)}", "install the node packs at the commits in talkgen's "
                     "versions.json (ComfyUI >= 0.11 for the core InfiniteTalk nodes), then restart ComfyUI")
    return ok("comfyui nodes", f"all {len(wanted)} node classes of the {flavour} flavour present")


def _models(client: Any, workflows: dict[str, dict[str, Any]]) -> Check:
    from talkgen.engines.comfyui.preflight import missing_models

    missing = sorted({m for graph in workflows.values() for m in missing_models(client, graph)})
    if missing:
        return error("comfyui models", f"model files the workflows load are missing: {', '.join(missing)}",
                     "download them into ComfyUI's models/ folder (the paths shown are under it), or use "
                     "workflows that name the files you have (TALKGEN_COMFYUI_WORKFLOWS_DIR)")
    return ok("comfyui models", f"every model file of {len(workflows)} workflows present")
