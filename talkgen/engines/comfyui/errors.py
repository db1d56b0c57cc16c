"""ComfyUI's error shapes → `TalkgenError`s that name the node, its class, the input and the reason."""

from __future__ import annotations

from typing import Any

from talkgen.errors import EngineFailed, EngineUnavailable, OutOfMemory, TalkgenError

SETUP_ERRORS = {"missing_node_type", "value_not_in_list"}
"""Validation errors that mean the server lacks a custom node or a model file (fix the server, not the job)."""
SHOWN = 6


def _title(graph: dict[str, Any], node_id: str) -> str:
    node = graph.get(node_id, {})
    title = node.get("_meta", {}).get("title")
    return f"#{node_id} {node.get('class_type', '?')}" + (f" ({title!r})" if title else "")


def validation_error(status: int, body: dict[str, Any], graph: dict[str, Any]) -> TalkgenError:
    """A rejected ``POST /prompt`` (HTTP 400, or 200 with ``node_errors``)."""
    problems: list[str] = []
    kinds: set[str] = set()
    error = body.get("error") or {}
    if isinstance(error, dict) and error.get("type"):
        kinds.add(error["type"])
        if error["type"] == "missing_node_type":
            info = error.get("extra_info") or {}
            problems.append(f"node #{info.get('node_id', '?')} needs class {info.get('class_type', '?')!r}, which "
                            "this server does not have (install its custom node pack)")
    for node_id, entry in (body.get("node_errors") or {}).items():
        for item in entry.get("errors", []):
            kinds.add(item.get("type", ""))
            name = (item.get("extra_info") or {}).get("input_name") or item.get("details") or ""
            problems.append(f"{_title(graph, node_id)} input {name!r}: {item.get('message', '')}"
                            f"{' - ' + item['details'] if item.get('details') and item['details'] != name else ''}")
    if not problems:
        message = error.get("message") if isinstance(error, dict) else str(error)
        problems.append(message or f"HTTP {status}")
    shown = "; ".join(problems[:SHOWN]) + (f"; and {len(problems) - SHOWN} more" if len(problems) > SHOWN else "")
    if kinds & SETUP_ERRORS:
        return EngineUnavailable(f"ComfyUI rejected the workflow: {shown}. Install the missing nodes or model files "
                                 "(`talkgen` lists them at startup in the preflight).", retryable=False)
    return EngineFailed(f"ComfyUI rejected the workflow: {shown}.", retryable=False)


def execution_error(data: dict[str, Any]) -> TalkgenError:
    """An ``execution_error`` event (or the same record from history)."""
    node = f"node #{data.get('node_id', '?')} {data.get('node_type', '?')}"
    kind = data.get("exception_type", "")
    message = (data.get("exception_message") or "").strip()
    if "OutOfMemory" in kind or "out of memory" in message.lower():
        return OutOfMemory(f"ComfyUI ran out of memory in {node}: {message}. Use a smaller size, or start ComfyUI "
                           "with more offloading (--lowvram).", retryable=True)
    return EngineFailed(f"ComfyUI failed in {node}: {kind.rsplit('.', 1)[-1]}: {message}", retryable=False)
