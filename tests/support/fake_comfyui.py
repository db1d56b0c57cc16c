"""A fake ComfyUI server (aiohttp, loopback) that speaks the real protocol, for engine tests.

It validates prompts the way ComfyUI does for what the engine relies on (unknown classes →
``missing_node_type``, a client ``prompt_id`` must be a lowercase UUID, ``LoadImage``/``LoadAudio``/
``LoadVideo`` inputs must exist in the input dir, model combos must name files in ``models``), runs a
prompt by sending the real websocket sequence (text events, binary preview frames, ``progress``,
``executed``, ``executing`` with ``node: null`` last) and writes history in SaveVideo or VHS shape.

``behaviour`` scripts a run: ``"ok"``, ``"error"`` (execution_error), ``"oom"``, ``"drop_ws"`` (closes our
socket mid-run, the prompt goes on), ``"die"`` (the server stops mid-run), ``"slow"`` (runs until
interrupted). ``render(graph, inputs)`` returns the bytes of the output video.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
FILE_INPUTS = {"LoadImage": "image", "LoadAudio": "audio", "LoadVideo": "file", "VHS_LoadVideo": "video",
               "LoadImageMask": "image"}


class FakeComfyUI:
    def __init__(self, object_info: dict[str, Any], models: dict[str, list[str]] | None = None,
                 render: Callable[[dict[str, Any], dict[str, bytes]], bytes] | None = None,
                 output_shape: str = "savevideo", max_upload_mb: float = 100, steps: int = 4) -> None:
        self.object_info = object_info
        self.models = models or {}
        self.render = render or (lambda graph, inputs: b"not a video")
        self.output_shape = output_shape
        self.max_upload = int(max_upload_mb * 1e6)
        self.steps = steps
        self.behaviour = "ok"
        self.inputs: dict[str, bytes] = {}
        self.outputs: dict[str, bytes] = {}
        self.history: dict[str, Any] = {}
        self.prompts: list[dict[str, Any]] = []
        self.running: str | None = None
        self.pending: list[str] = []
        self.interrupted: set[str] = set()
        self.calls: list[str] = []
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._counter = 0

    # -- lifecycle ----------------------------------------------------------------------------------
    def __enter__(self) -> FakeComfyUI:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _start(self) -> None:
        app = web.Application(client_max_size=self.max_upload + 1_000_000)
        r = app.router
        r.add_get("/ws", self._ws)
        r.add_post("/prompt", self._post_prompt)
        r.add_get("/history/{prompt_id}", self._get_history)
        r.add_post("/history", self._post_history)
        r.add_get("/queue", self._get_queue)
        r.add_post("/queue", self._post_queue)
        r.add_post("/interrupt", self._interrupt)
        r.add_post("/upload/image", self._upload)
        r.add_get("/view", self._view)
        r.add_get("/system_stats", self._stats)
        r.add_get("/object_info/{cls}", self._object_info)
        r.add_get("/models/{folder}", self._models)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        """Stop serving (the "server died" case); `start_again` brings it back on the same port."""
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._runner = None

    def start_again(self) -> None:
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    # -- routes -------------------------------------------------------------------------------------
    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        client = request.query.get("clientId", "")
        self.sockets[client] = ws
        await ws.send_json({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}},
                                                      "sid": client}})
        if self.running:
            await ws.send_json({"type": "executing", "data": {"node": "1", "display_node": "1",
                                                             "prompt_id": self.running}})
        async for msg in ws:
            if msg.type == WSMsgType.ERROR:
                break
        return ws

    async def _post_prompt(self, request: web.Request) -> web.Response:
        self.calls.append("prompt")
        body = await request.json()
        graph, prompt_id, client = body.get("prompt"), body.get("prompt_id"), body.get("client_id")
        if not graph:
            return _error(400, "no_prompt", "No prompt provided")
        if prompt_id is not None and not UUID.match(prompt_id):
            return _error(400, "invalid_prompt_id", f"Invalid prompt_id: {prompt_id}")
        for node_id, node in graph.items():
            if node["class_type"] not in self.object_info:
                return web.json_response({"error": {
                    "type": "missing_node_type",
                    "message": f"Node '{node['class_type']}' not found. The custom node may not be installed.",
                    "details": f"Node ID '#{node_id}'",
                    "extra_info": {"node_id": node_id, "class_type": node["class_type"], "node_title": ""}},
                    "node_errors": {}}, status=400)
        node_errors = self._validate(graph)
        if node_errors:
            return web.json_response({"error": {"type": "prompt_outputs_failed_validation",
                                                "message": "Prompt outputs failed validation", "details": "",
                                                "extra_info": {}}, "node_errors": node_errors}, status=400)
        self.prompts.append(graph)
        self.pending.append(prompt_id)
        self._counter += 1
        asyncio.get_running_loop().create_task(self._execute(prompt_id, graph, client))
        return web.json_response({"prompt_id": prompt_id, "number": self._counter, "node_errors": {}})

    def _validate(self, graph: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, Any] = {}
        for node_id, node in graph.items():
            info = self.object_info[node["class_type"]]
            problems = []
            required = info.get("input", {}).get("required", {})
            for name, spec in required.items():
                if name not in node["inputs"] and not name.startswith("mode"):
                    problems.append({"type": "required_input_missing", "message": "Required input is missing",
                                     "details": name, "extra_info": {"input_name": name}})
                    continue
                value = node["inputs"].get(name)
                options = spec[0] if isinstance(spec[0], list) else None
                if isinstance(value, str) and options is not None and not options and node["class_type"] in (
                        "UNETLoader", "VAELoader", "ModelPatchLoader", "LoraLoaderModelOnly"):
                    folder = _MODEL_FOLDERS.get(node["class_type"], "")
                    if value not in self.models.get(folder, []):
                        problems.append({"type": "value_not_in_list", "message": "Value not in list",
                                         "details": f"{name}: '{value}' not in {self.models.get(folder, [])}",
                                         "extra_info": {"input_name": name, "received_value": value}})
            file_input = FILE_INPUTS.get(node["class_type"])
            if file_input and node["inputs"].get(file_input) not in self.inputs:
                problems.append({"type": "custom_validation_failed", "message": "Custom validation failed for node",
                                 "details": f"{file_input} - Invalid file: {node['inputs'].get(file_input)}",
                                 "extra_info": {"input_name": file_input}})
            if problems:
                errors[node_id] = {"errors": problems, "dependent_outputs": [], "class_type": node["class_type"]}
        return errors

    async def _send(self, client: str | None, kind: str, data: dict[str, Any]) -> None:
        ws = self.sockets.get(client or "")
        if ws is not None and not ws.closed:
            with contextlib.suppress(ConnectionError):
                await ws.send_json({"type": kind, "data": data})

    async def _execute(self, prompt_id: str, graph: dict[str, Any], client: str | None) -> None:
        while self.running is not None:
            await asyncio.sleep(0.01)
        self.pending.remove(prompt_id)
        self.running = prompt_id
        started = time.time()
        messages: list[list[Any]] = [["execution_start", {"prompt_id": prompt_id, "timestamp": started}]]
        await self._send(client, "execution_start", {"prompt_id": prompt_id, "timestamp": started})
        await self._send(client, "execution_cached", {"nodes": [], "prompt_id": prompt_id, "timestamp": started})
        sampler = next((i for i, n in graph.items() if "Sampler" in n["class_type"]), "1")
        await self._send(client, "executing", {"node": sampler, "display_node": sampler, "prompt_id": prompt_id})
        status: dict[str, Any]
        outputs: dict[str, Any] = {}
        step = 0
        while True:
            if prompt_id in self.interrupted:
                data = {"prompt_id": prompt_id, "node_id": sampler, "node_type": graph[sampler]["class_type"],
                        "executed": [], "timestamp": time.time()}
                messages.append(["execution_interrupted", data])
                await self._send(client, "execution_interrupted", data)
                status = {"status_str": "error", "completed": False, "messages": messages}
                break
            if self.behaviour != "slow" and step >= self.steps:
                break
            step += 1
            await self._send(client, "progress", {"value": min(step, self.steps), "max": self.steps,
                                                  "prompt_id": prompt_id, "node": sampler})
            ws = self.sockets.get(client or "")
            if ws is not None and not ws.closed:
                await ws.send_bytes(struct.pack(">II", 1, 1) + b"\xff\xd8jpeg-preview")
            if step == 2 and self.behaviour == "drop_ws" and ws is not None:
                self.behaviour = "ok"
                await ws.close()
            if step == 2 and self.behaviour == "die":
                self.running = None
                asyncio.get_running_loop().create_task(self._runner.cleanup())  # type: ignore[union-attr]
                return
            await asyncio.sleep(0.05)
        if prompt_id not in self.interrupted:
            if self.behaviour in ("error", "oom"):
                data = {"prompt_id": prompt_id, "node_id": sampler, "node_type": graph[sampler]["class_type"],
                        "executed": [], "exception_message": "Allocation on device failed: CUDA out of memory."
                        if self.behaviour == "oom" else "Error while deserializing header: header too small\n",
                        "exception_type": "torch.OutOfMemoryError" if self.behaviour == "oom"
                        else "safetensors._safetensors_rust.SafetensorError", "traceback": [],
                        "current_inputs": {}, "current_outputs": [], "timestamp": time.time()}
                messages.append(["execution_error", data])
                await self._send(client, "execution_error", data)
                status = {"status_str": "error", "completed": False, "messages": messages}
            else:
                outputs = self._outputs(graph)
                for node_id, ui in outputs.items():
                    await self._send(client, "executed", {"node": node_id, "display_node": node_id, "output": ui,
                                                          "prompt_id": prompt_id})
                messages.append(["execution_success", {"prompt_id": prompt_id, "timestamp": time.time()}])
                await self._send(client, "execution_success", {"prompt_id": prompt_id, "timestamp": time.time()})
                status = {"status_str": "success", "completed": True, "messages": messages}
        self.history[prompt_id] = {"prompt": [self._counter, prompt_id, graph, {}, []], "outputs": outputs,
                                   "status": status, "meta": {}}
        self.running = None
        await self._send(client, "executing", {"node": None, "prompt_id": prompt_id})

    def _outputs(self, graph: dict[str, Any]) -> dict[str, Any]:
        inputs = {name: data for name, data in self.inputs.items()}
        video = self.render(graph, inputs)
        outputs = {}
        for node_id, node in graph.items():
            if node["class_type"] == "SaveVideo":
                name = f"{node['inputs'].get('filename_prefix', 'video/ComfyUI')}_{self._counter:05d}_.mp4"
                sub, _, filename = name.rpartition("/")
                self.outputs[f"{sub}/{filename}"] = video
                outputs[node_id] = {"images": [{"filename": filename, "subfolder": sub, "type": "output"}],
                                    "animated": [True]}
            elif node["class_type"] == "VHS_VideoCombine":
                name = f"{node['inputs'].get('filename_prefix', 'AnimateDiff')}_{self._counter:05d}-audio.mp4"
                sub, _, filename = name.rpartition("/")
                self.outputs[f"{sub}/{filename}"] = video
                outputs[node_id] = {"gifs": [{"filename": filename, "subfolder": sub, "type": "output",
                                              "format": "video/h264-mp4", "frame_rate": 25.0,
                                              "workflow": filename.replace(".mp4", ".png"),
                                              "fullpath": f"/comfy/output/{sub}/{filename}"}]}
        return outputs

    async def _get_history(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        entry = self.history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry else {})

    async def _post_history(self, request: web.Request) -> web.Response:
        body = await request.json()
        for prompt_id in body.get("delete", []):
            self.history.pop(prompt_id, None)
        return web.Response()

    async def _get_queue(self, request: web.Request) -> web.Response:
        running = [[0, self.running, {}, {}, []]] if self.running else []
        return web.json_response({"queue_running": running,
                                  "queue_pending": [[1, p, {}, {}, []] for p in self.pending]})

    async def _post_queue(self, request: web.Request) -> web.Response:
        body = await request.json()
        for prompt_id in body.get("delete", []):
            if prompt_id in self.pending:
                self.pending.remove(prompt_id)
        return web.Response()

    async def _interrupt(self, request: web.Request) -> web.Response:
        self.calls.append("interrupt")
        body = await request.json() if request.can_read_body else {}
        target = body.get("prompt_id") or self.running
        if target and target == self.running:
            self.interrupted.add(target)
        return web.Response()

    async def _upload(self, request: web.Request) -> web.Response:
        if request.content_length and request.content_length > self.max_upload:
            return web.Response(status=413, text="Request Entity Too Large")
        form = await request.post()
        part = form.get("image")
        if part is None or not hasattr(part, "file"):
            return web.Response(status=400)
        subfolder = str(form.get("subfolder", ""))
        if ".." in subfolder or subfolder.startswith("/"):
            return web.Response(status=400)
        name = f"{subfolder}/{part.filename}".lstrip("/")
        self.inputs[name] = part.file.read()
        return web.json_response({"name": part.filename, "subfolder": subfolder, "type": "input"})

    async def _view(self, request: web.Request) -> web.StreamResponse:
        name = request.query.get("filename", "")
        if ".." in name or name.startswith("/"):
            return web.Response(status=400)
        key = f"{request.query.get('subfolder', '')}/{name}".lstrip("/")
        store = self.inputs if request.query.get("type") == "input" else self.outputs
        if key not in store:
            return web.Response(status=404)
        return web.Response(body=store[key], content_type="video/mp4")

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({"system": {"comfyui_version": "0.33.0", "os": "posix"},
                                  "devices": [{"name": "cpu", "type": "cpu"}]})

    async def _object_info(self, request: web.Request) -> web.Response:
        cls = request.match_info["cls"]
        return web.json_response({cls: self.object_info[cls]} if cls in self.object_info else {})

    async def _models(self, request: web.Request) -> web.Response:
        folder = request.match_info["folder"]
        if folder not in _KNOWN_FOLDERS:
            return web.Response(status=404)
        return web.json_response(self.models.get(folder, []))


_MODEL_FOLDERS = {"UNETLoader": "diffusion_models", "VAELoader": "vae", "ModelPatchLoader": "model_patches",
                  "LoraLoaderModelOnly": "loras"}
_KNOWN_FOLDERS = {"diffusion_models", "vae", "model_patches", "loras", "audio_encoders", "text_encoders",
                  "clip_vision", "wav2vec2", "checkpoints"}


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"error": {"type": kind, "message": message, "details": "", "extra_info": {}},
                              "node_errors": {}}, status=status)


def load_object_info(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
