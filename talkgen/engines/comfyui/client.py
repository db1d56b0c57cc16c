"""A ComfyUI server over HTTP (httpx) and its websocket (websocket-client): the calls talkgen needs.

No engine logic here: uploads, `/prompt`, `/history`, `/queue`, `/interrupt`, `/view`, `/object_info`,
`/models`, `/system_stats`, and the websocket connection. Errors become `TalkgenError`s.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from talkgen.engines.comfyui.errors import validation_error
from talkgen.errors import EngineFailed, MediaTooLarge

CHUNK = 1024 * 1024


class ComfyClient:
    """One ComfyUI server. ``client_id`` routes that server's websocket events to us."""

    def __init__(self, base_url: str, timeout_s: float = 30.0, client_id: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id or uuid.uuid4().hex
        self.http = httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(timeout_s, read=max(timeout_s, 120)))

    def close(self) -> None:
        self.http.close()

    # -- plain requests ----------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise EngineFailed(f"ComfyUI at {self.base_url} did not answer {method} {path}: {type(exc).__name__}: "
                               f"{exc}", retryable=True) from exc

    def get_json(self, path: str) -> Any:
        response = self._request("GET", path)
        if response.status_code != 200:
            raise EngineFailed(f"ComfyUI {path} answered {response.status_code}: {response.text[:300]}",
                               retryable=response.status_code >= 500)
        return response.json()

    def alive(self) -> bool:
        try:
            return self.http.get("/system_stats", timeout=10).status_code == 200
        except httpx.HTTPError:
            return False

    def system_stats(self) -> dict[str, Any]:
        return self.get_json("/system_stats")

    def node_info(self, class_type: str) -> dict[str, Any]:
        """The schema of one node class, or {} when the server does not have it."""
        return self.get_json(f"/object_info/{class_type}").get(class_type, {})

    def models(self, folder: str) -> list[str]:
        response = self._request("GET", f"/models/{folder}")
        return response.json() if response.status_code == 200 else []

    # -- files ------------------------------------------------------------------------------------
    def upload(self, path: Path, name: str, subfolder: str) -> str:
        """Upload ``path`` into ComfyUI's input dir as ``subfolder/name``; returns that relative name."""
        with Path(path).open("rb") as fh:
            response = self._request(
                "POST", "/upload/image", files={"image": (name, fh, "application/octet-stream")},
                data={"subfolder": subfolder, "type": "input", "overwrite": "true"},
            )
        if response.status_code == 413:
            size_mb = Path(path).stat().st_size / 1e6
            raise MediaTooLarge(f"ComfyUI refused a {size_mb:.0f} MB upload ({name}): start it with a larger "
                                "--max-upload-size (MB; default 100), or send a smaller file.")
        if response.status_code != 200:
            raise EngineFailed(f"ComfyUI upload of {name} answered {response.status_code}: {response.text[:300]}")
        stored = response.json()
        return f"{stored.get('subfolder') or subfolder}/{stored['name']}".lstrip("/")

    def download(self, file: dict[str, Any], dest: Path) -> Path:
        """Stream an output file (``{"filename", "subfolder", "type"}`` from history) to ``dest``."""
        query = urlencode({"filename": file["filename"], "subfolder": file.get("subfolder", ""),
                           "type": file.get("type", "output")})
        try:
            with self.http.stream("GET", f"/view?{query}") as response:
                if response.status_code != 200:
                    raise EngineFailed(f"ComfyUI /view of {file['filename']} answered {response.status_code}.",
                                       retryable=True)
                with dest.open("wb") as fh:
                    for chunk in response.iter_bytes(CHUNK):
                        fh.write(chunk)
        except httpx.HTTPError as exc:
            raise EngineFailed(f"Download of {file['filename']} from ComfyUI failed: {exc}", retryable=True) from exc
        return dest

    # -- prompts ----------------------------------------------------------------------------------
    def queue_prompt(self, graph: dict[str, Any], prompt_id: str) -> None:
        """POST /prompt; HTTP 400 or any ``node_errors`` raise with every node's problem listed."""
        response = self._request("POST", "/prompt", json={"prompt": graph, "client_id": self.client_id,
                                                           "prompt_id": prompt_id})
        try:
            body = response.json()
        except json.JSONDecodeError:
            body = {}
        if response.status_code != 200 or body.get("node_errors"):
            raise validation_error(response.status_code, body, graph)

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The finished job's history entry, or None while it is queued or running."""
        return self.get_json(f"/history/{prompt_id}").get(prompt_id)

    def queue_ids(self) -> tuple[set[str], set[str]]:
        """(running, pending) prompt ids."""
        queue = self.get_json("/queue")
        return ({item[1] for item in queue.get("queue_running", [])},
                {item[1] for item in queue.get("queue_pending", [])})

    def cancel(self, prompt_id: str) -> None:
        """Interrupt the prompt if it runs, remove it if it waits."""
        running, pending = self.queue_ids()
        if prompt_id in running:
            self._request("POST", "/interrupt", json={"prompt_id": prompt_id})
        elif prompt_id in pending:
            self._request("POST", "/queue", json={"delete": [prompt_id]})

    def free_history(self, prompt_id: str) -> None:
        self._request("POST", "/history", json={"delete": [prompt_id]})

    # -- websocket --------------------------------------------------------------------------------
    def websocket(self, timeout_s: float = 10.0):  # type: ignore[no-untyped-def]
        """A connected websocket for this client id (events of our prompts only)."""
        import websocket

        parts = urlsplit(self.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        ws = websocket.WebSocket()
        ws.connect(f"{scheme}://{parts.netloc}{parts.path}/ws?clientId={self.client_id}", timeout=timeout_s)
        return ws
