"""talkgen on Modal: a GPU class with a warm engine, a web job API, a weights downloader and batches.

    pip install 'talkgen[modal]'; modal token new                  # once
    modal run deploy/modal_app.py::download                         # fill the weights Volume (once)
    modal deploy deploy/modal_app.py                                # the GPU class + the job API
    modal run deploy/modal_app.py::batch --requests batch.jsonl --output /outputs/batch-1/

Settings are ``TALKGEN_MODAL_*`` variables read when this file is imported (`talkgen.modal.settings`), e.g.
``TALKGEN_MODAL_GPU="H100,A100-80GB"``, ``TALKGEN_MODAL_MAX_CONTAINERS=8``, ``TALKGEN_MODAL_SECRETS=aws``;
talkgen's own settings for the containers go in ``TALKGEN_MODAL_ENV`` (JSON) or a Modal Secret. The
container-side logic lives in `talkgen.modal` so this file stays a readable deployment description.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import modal
import modal.experimental

from talkgen.modal.settings import MODELS_DIR, OUTPUTS_DIR, load_modal_settings

settings = load_modal_settings()
app = modal.App(settings.app_name)

# ---------------------------------------------------------------------------------------------------------
# Images. As in deploy/native.Dockerfile: slim Python (PyPI's torch wheels bring their own CUDA runtime, the
# host provides the driver), torch first, then every dependency at the pins the tests ran with, then talkgen
# itself from this checkout (a code change rebuilds only that last small layer).
REPO = Path(__file__).resolve().parent.parent
REQUIREMENTS = "/tmp/native-requirements.txt"


def base_image() -> modal.Image:
    if settings.base_image:
        return modal.Image.from_registry(settings.base_image)
    return modal.Image.debian_slim(python_version=settings.python_version)


def with_talkgen(image: modal.Image, spec: str) -> modal.Image:
    """``image`` with talkgen installed from this checkout (``spec``: ``/src[extras]``, held to the pins)."""
    source = modal.FilePatternMatcher.from_file(REPO / ".dockerignore")
    return (image.add_local_dir(REPO, "/src", copy=True, ignore=source)
            .run_commands(f"pip install --no-cache-dir -c {REQUIREMENTS} '{spec}'"))


pinned = base_image().env({"PYTHONUNBUFFERED": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}).add_local_file(
    REPO / "deploy" / "native-requirements.txt", REQUIREMENTS, copy=True)
gpu_image = with_talkgen(
    pinned.run_commands(f"pip install --no-cache-dir -c {REQUIREMENTS} '{settings.torch_spec}'",
                        f"pip install --no-cache-dir -r {REQUIREMENTS}"),
    "/src[native,s3]")
# The job API and the batch driver need no torch: a small image starts in seconds.
light_image = with_talkgen(pinned, "/src[s3]").run_commands(f"pip install --no-cache-dir -c {REQUIREMENTS} fastapi")

# ---------------------------------------------------------------------------------------------------------
# Storage: weights (read by the GPU class, filled by `download`), videos, and each call's progress.
weights = modal.Volume.from_name(settings.weights_volume, create_if_missing=True)
outputs = modal.Volume.from_name(settings.outputs_volume, create_if_missing=True)
progress = modal.Dict.from_name(settings.progress_dict, create_if_missing=True)
secrets = [modal.Secret.from_name(name) for name in settings.secrets]
env = settings.container_env()  # every container re-imports this file: it must read the same settings


# ---------------------------------------------------------------------------------------------------------
# The GPU class: one TalkGen per container, built in @modal.enter (TALKGEN_WARMUP loads the engine there),
# warm for every call until the container scales down. `generate` returns the response; `generate_stream`
# (a generator method: `TalkGenWorker().generate_stream.remote_gen(request)`) yields each HLS segment event of a
# `stream: true` request as it is written, then the response.
@app.cls(image=gpu_image, volumes={MODELS_DIR: weights.read_only(), OUTPUTS_DIR: outputs}, secrets=secrets,
         **settings.cls_options())
class TalkGenWorker:
    @modal.enter()
    def start(self) -> None:
        from talkgen.modal.worker import Worker

        self.worker = Worker(settings, progress_store=progress, commit=outputs.commit)
        self.worker.start()

    @modal.method()
    def generate(self, request: dict, output: str | None = None, job_id: str | None = None) -> dict:
        """A request (the same dict as every runtime) → the response dict, or the talkgen error dict. The video
        is in the outputs Volume (``video_path`` /outputs/…) or at the request's ``output_url``."""
        call_id = modal.current_function_call_id()
        key = call_id if job_id is None or call_id is None else f"{call_id}:{job_id}"  # .map shares a call id
        response = self.worker.generate(request, output=output, job_id=job_id or call_id, call_id=key)
        if not self.worker.healthy:  # e.g. a CUDA error: this container takes no more inputs, a fresh one starts
            modal.experimental.stop_fetching_inputs()
        return response

    @modal.method()
    def generate_stream(self, request: dict, output: str | None = None, job_id: str | None = None):  # type: ignore[no-untyped-def]
        """`generate` as a generator (``.remote_gen(request)``): each HLS segment event ``{"event": "segment",
        "job_id", "window", "index", "url", "playlist", "frames", "seconds", "start"}`` as the job writes it
        (request ``stream: true``), then the response dict or the talkgen error dict."""
        call_id = modal.current_function_call_id()
        key = call_id if job_id is None or call_id is None else f"{call_id}:{job_id}"
        yield from self.worker.generate_stream(request, output=output, job_id=job_id or call_id, call_id=key)
        if not self.worker.healthy:
            modal.experimental.stop_fetching_inputs()

    @modal.exit()
    def stop(self) -> None:
        self.worker.stop()


# ---------------------------------------------------------------------------------------------------------
# The job API: POST /jobs → id, GET /jobs/{id} → status + progress + output, DELETE /jobs/{id} → cancel.
@app.function(image=light_image, secrets=secrets, env=env)
@modal.concurrent(max_inputs=100)
@modal.asgi_app(requires_proxy_auth=settings.web_auth)
def api():  # type: ignore[no-untyped-def]
    from talkgen.modal.calls import cancel_call, lookup_call
    from talkgen.modal.jobs_api import build_job_api

    def spawn(request: dict) -> str:
        return TalkGenWorker().generate.spawn(request).object_id

    return build_job_api(spawn, lookup_call, cancel_call, progress)


# ---------------------------------------------------------------------------------------------------------
# Weights: `modal run deploy/modal_app.py::download [--model-set infinitetalk-480p-fp8] [--args "--skip …"]`.
@app.function(image=gpu_image, volumes={MODELS_DIR: weights}, secrets=secrets, env=env, timeout=86400)
def fetch_weights(model_set: str, args: str = "") -> None:
    import subprocess

    subprocess.run(["talkgen", "models", "download", model_set, "--dir", MODELS_DIR, *shlex.split(args)],
                   check=True)
    weights.commit()


@app.local_entrypoint()
def download(model_set: str = "", args: str = "") -> None:
    fetch_weights.remote(model_set or settings.model_set, args)
    print(f"weights of {model_set or settings.model_set} are in Volume {settings.weights_volume}")


# ---------------------------------------------------------------------------------------------------------
# Batches: `modal run deploy/modal_app.py::batch --requests <JSONL path or URL> --output <prefix>`. Every
# request goes through TalkGenWorker.generate with .map; a failed one is a failed record, never a lost batch.
# The prefix is on the outputs Volume (/outputs/…) or storage the containers can write (s3://…).
@app.function(image=light_image, volumes={OUTPUTS_DIR: outputs}, secrets=secrets, env=env, timeout=86400)
def run_batch_job(requests_url: str, output: str, requests_text: str | None = None) -> dict:
    import tempfile

    from talkgen.errors import TalkgenError
    from talkgen.modal.batch import run_batch

    def gpu_map(requests: list[dict], destinations: list[str], keys: list[str]):  # type: ignore[no-untyped-def]
        return TalkGenWorker().generate.map(requests, destinations, keys, return_exceptions=True)

    outputs.reload()  # records of an earlier run, written by other containers
    with tempfile.TemporaryDirectory() as tmp:
        if requests_text is not None:  # a file on the caller's machine, sent along
            requests_url = str(Path(tmp) / "requests.jsonl")
            Path(requests_url).write_text(requests_text)
        try:
            summary = run_batch(requests_url, output, gpu_map).to_dict()
        except TalkgenError as exc:  # unreadable requests file, unwritable results: the batch did not run
            summary = {"error": exc.to_dict()}
    outputs.commit()
    return summary


@app.local_entrypoint()
def batch(requests: str, output: str) -> None:
    from talkgen.errors import TalkgenError
    from talkgen.modal.batch import check_output, local_requests

    try:
        check_output(output)
        text = local_requests(requests)
    except TalkgenError as exc:
        raise SystemExit(f"error ({exc.code}): {exc.message}") from None
    summary = run_batch_job.remote(requests, output, text)
    if "error" in summary:
        raise SystemExit(f"error ({summary['error']['error_code']}): {summary['error']['error']}")
    print(json.dumps(summary, indent=2))
