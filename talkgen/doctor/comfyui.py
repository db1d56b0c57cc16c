"""The ComfyUI engine's server: reachable, with the nodes and model files the flavour's workflows need."""

from __future__ import annotations

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
    workflows = _workflows(settings)
    if not workflows:
        out.append(error("comfyui workflows", f"no {settings.comfyui_flavour} workflows (*.json) in "
                         f"{_folder(settings)}", "set TALKGEN_COMFYUI_WORKFLOWS_DIR to a folder of API-format "
                         "workflows, or reinstall talkgen"))
        return out
    out.append(_nodes(settings, client, workflows))
    out.append(_models(client, workflows))
    return out


def _device(device: dict[str, Any]) -> str:
    name = device.get("name", "?")
    free = device.get("vram_free")
    return f"{name} ({free / (1 << 30):.1f} GiB free)" if isinstance(free, (int, float)) and free else str(name)


def _folder(settings: Settings) -> Path:
    from talkgen.engines.comfyui import engine

    return Path(settings.comfyui_workflows_dir or engine.BUILTIN / settings.comfyui_flavour)


def _workflows(settings: Settings) -> dict[str, dict[str, Any]]:
    """``{file name: graph}`` of the flavour's workflows."""
    from talkgen.engines.comfyui.workflow import Workflow

    return {path.name: Workflow.load(path).graph for path in sorted(_folder(settings).glob("*.json"))}


def _nodes(settings: Settings, client: Any, workflows: dict[str, dict[str, Any]]) -> Check:
    from talkgen.engines.comfyui import engine

    wanted = set(engine.REQUIRED_NODES.get(settings.comfyui_flavour, []))
    wanted |= {node["class_type"] for graph in workflows.values() for node in graph.values()}
    missing = sorted(c for c in wanted if not client.node_info(c))
    if missing:
        return error("comfyui nodes", f"the {settings.comfyui_flavour} flavour needs node classes this server "
                     f"lacks: {', '.join(missing)}", "install the node packs at the commits in talkgen's "
                     "versions.json (ComfyUI >= 0.11 for the core InfiniteTalk nodes), then restart ComfyUI")
    return ok("comfyui nodes", f"all {len(wanted)} node classes of the {settings.comfyui_flavour} flavour present")


def _models(client: Any, workflows: dict[str, dict[str, Any]]) -> Check:
    from talkgen.engines.comfyui.preflight import missing_models

    missing = sorted({m for graph in workflows.values() for m in missing_models(client, graph)})
    if missing:
        return error("comfyui models", f"model files the workflows load are missing: {', '.join(missing)}",
                     "download them into ComfyUI's models/ folder (the paths shown are under it), or use "
                     "workflows that name the files you have (TALKGEN_COMFYUI_WORKFLOWS_DIR)")
    return ok("comfyui models", f"every model file of {len(workflows)} workflows present")
