"""Run one prompt to the end: websocket events for progress, history for the result.

The websocket is opened before the prompt is queued. When it drops, the run reconnects (the server
re-sends the current node) and, failing that, polls ``/history`` and ``/queue``. A server that stops
answering is reported as stalled; cancel and the deadline interrupt the prompt on the server.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from talkgen.engines.comfyui.client import ComfyClient
from talkgen.engines.comfyui.errors import execution_error
from talkgen.errors import Cancelled, EngineFailed, Timeout

log = logging.getLogger(__name__)
RECV_TIMEOUT_S = 1.0
POLL_S = 1.0


@dataclass
class Step:
    """A progress event: ``value`` of ``max`` in node ``node``."""

    node: str | None
    value: int
    max: int


@dataclass
class RunLimits:
    cancel: threading.Event
    deadline: float | None  # time.monotonic()
    stall_s: float = 120.0  # no event for this long: check the server is alive


def run_prompt(client: ComfyClient, graph: dict[str, Any], limits: RunLimits,
               on_step: Callable[[Step], None] | None = None, prompt_id: str | None = None) -> dict[str, Any]:
    """Queue ``graph`` and wait for it; returns the history entry's ``outputs``."""
    prompt_id = prompt_id or str(uuid.uuid4())
    ws = _connect(client)
    try:
        client.queue_prompt(graph, prompt_id)
        ws = _follow(client, ws, prompt_id, limits, on_step)
    except (Cancelled, Timeout):
        _stop(client, prompt_id)
        raise
    finally:
        if ws is not None:
            ws.close()
    entry = client.history(prompt_id) or {}
    status = entry.get("status", {})
    if status.get("status_str") != "success":
        for kind, data in status.get("messages", []):
            if kind == "execution_error":
                raise execution_error(data)
            if kind == "execution_interrupted":
                raise EngineFailed(f"ComfyUI interrupted the run in node #{data.get('node_id')} "
                                   f"{data.get('node_type')} (someone called /interrupt).", retryable=True)
        raise EngineFailed(f"ComfyUI finished prompt {prompt_id} without success: {json.dumps(status)[:300]}",
                           retryable=True)
    return entry.get("outputs", {})


def _connect(client: ComfyClient):  # type: ignore[no-untyped-def]
    try:
        ws = client.websocket()
        ws.settimeout(RECV_TIMEOUT_S)
        return ws
    except Exception as exc:  # websocket-client raises several unrelated types
        log.warning("ComfyUI websocket unavailable (%s); following the prompt by polling", exc)
        return None


def _check_limits(limits: RunLimits) -> None:
    if limits.cancel.is_set():
        raise Cancelled("The job was cancelled.", retryable=False)
    if limits.deadline is not None and time.monotonic() > limits.deadline:
        raise Timeout("ComfyUI did not finish in the time this audio length allows (TALKGEN_COMFYUI_TIMEOUT_S "
                      "and TALKGEN_COMFYUI_TIMEOUT_PER_AUDIO_S).")


def _follow(client: ComfyClient, ws, prompt_id: str, limits: RunLimits,  # type: ignore[no-untyped-def]
            on_step: Callable[[Step], None] | None):
    import websocket

    last_event = time.monotonic()
    while True:
        _check_limits(limits)
        if ws is None:
            if _finished_by_polling(client, prompt_id):
                return None
            ws = _connect(client)
            if ws is None:
                time.sleep(POLL_S)
            elif _finished_by_polling(client, prompt_id):  # it may have ended while we reconnected
                return ws
            last_event = time.monotonic()
            continue
        try:
            frame = ws.recv()
        except websocket.WebSocketTimeoutException:
            if time.monotonic() - last_event > limits.stall_s:
                if not client.alive():
                    raise EngineFailed(f"ComfyUI at {client.base_url} stopped answering mid-run (no event for "
                                       f"{limits.stall_s:g} s and /system_stats fails).", retryable=True) from None
                if _finished_by_polling(client, prompt_id):
                    return ws
                last_event = time.monotonic()
            continue
        except (websocket.WebSocketException, OSError) as exc:
            log.warning("ComfyUI websocket dropped (%s); reconnecting", exc)
            ws.close()
            ws = None
            continue
        last_event = time.monotonic()
        if isinstance(frame, bytes) or not frame:
            continue  # previews and text frames: not ours to read
        message = json.loads(frame)
        data = message.get("data") or {}
        if data.get("prompt_id") not in (None, prompt_id):
            continue
        kind = message.get("type")
        if kind == "progress" and on_step is not None:
            on_step(Step(node=str(data.get("node")), value=int(data.get("value", 0)), max=int(data.get("max", 1))))
        elif kind == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
            return ws


def _finished_by_polling(client: ComfyClient, prompt_id: str) -> bool:
    if client.history(prompt_id) is not None:
        return True
    running, pending = client.queue_ids()
    if prompt_id not in running and prompt_id not in pending:
        # not queued, not running, no history yet: give the history write a moment, then call it lost
        time.sleep(POLL_S)
        if client.history(prompt_id) is not None:
            return True
        raise EngineFailed(f"ComfyUI lost prompt {prompt_id} (not queued, not running, no history): the server "
                           "probably restarted.", retryable=True)
    return False


def _stop(client: ComfyClient, prompt_id: str) -> None:
    try:
        client.cancel(prompt_id)
    except Exception:  # the server may be gone; the job fails with its own error anyway
        log.warning("could not interrupt ComfyUI prompt %s", prompt_id, exc_info=True)
