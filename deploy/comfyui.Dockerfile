# talkgen ComfyUI image: the RunPod worker with the `comfyui` engine, which starts and supervises a ComfyUI
# server in the same container (TALKGEN_COMFYUI_DIR=/opt/ComfyUI, on 127.0.0.1 only).
#
#   docker build -f deploy/comfyui.Dockerfile -t talkgen-comfyui .   (repository root; FLAVOUR=all by default)
#
# Build arguments (deploy/README.md, "ComfyUI image", has the table): BASE_IMAGE, FLAVOUR, SOURCES,
# LOCAL_SOURCES_ONLY, TORCH_SPEC, PIP_FIND_LINKS, BAKE_MODELS.
#
# ComfyUI and the node packs come from workflows/versions.json, the one source of truth: the build copies
# that file and deploy/comfyui/fetch_sources.py fetches each repository at exactly its commit (a GitHub
# tarball of the commit; never a clone of a branch). No commit is written in this file.
#
# Base image: python:3.11 slim (Debian bookworm), as for the native image: the PyPI torch wheels bundle the
# CUDA runtime (nvidia-* wheels) and the host's NVIDIA container toolkit mounts the driver. The tag pins the
# Python patch release; pin a digest (@sha256:...) for byte-identical rebuilds.
ARG BASE_IMAGE=python:3.11.13-slim-bookworm
# SOURCES=github (default): fetch in the build. SOURCES=local: copy deploy/comfyui/sources/, prepared on the
# host by fetch_sources.py from git snapshots (TALKGEN_SOURCES_MIRROR), for build hosts without GitHub.
ARG SOURCES=github

# ---------------------------------------------------------------------------------------------------
# sources-github: ComfyUI + the flavour's node packs at the commits in versions.json, downloaded here.
FROM ${BASE_IMAGE} AS sources-github
ARG FLAVOUR=all
COPY workflows/versions.json /tmp/versions.json
COPY deploy/comfyui/fetch_sources.py /tmp/fetch_sources.py
RUN python3 /tmp/fetch_sources.py --versions /tmp/versions.json --flavour "$FLAVOUR" --dest /opt/ComfyUI

# sources-local: the same folders, prepared by fetch_sources.py on the host; checked against versions.json
# here so stale sources fail the build. LOCAL_SOURCES_ONLY (comma-separated owner/name) narrows the check
# for a partial test build with only some snapshots at hand; such an image is not a working one.
FROM ${BASE_IMAGE} AS sources-local
ARG FLAVOUR=all
ARG LOCAL_SOURCES_ONLY=""
COPY workflows/versions.json /tmp/versions.json
COPY deploy/comfyui/fetch_sources.py /tmp/fetch_sources.py
COPY deploy/comfyui/sources /opt/ComfyUI
RUN python3 /tmp/fetch_sources.py --versions /tmp/versions.json --flavour "$FLAVOUR" --dest /opt/ComfyUI \
        --repos "$LOCAL_SOURCES_ONLY" --check

# DL3006 (tag the image): this names a stage of this file (sources-github or sources-local), not an image.
# hadolint ignore=DL3006
FROM sources-${SOURCES} AS sources

# ---------------------------------------------------------------------------------------------------
# build: one venv at /opt/venv for ComfyUI and talkgen (talkgen starts ComfyUI with its own Python).
FROM ${BASE_IMAGE} AS build
# TORCH_SPEC: what the ComfyUI server this project's graphs were checked against ran (torch 2.13.0,
# torchvision 0.28.0, torchaudio 2.11.0); from PyPI these are the CUDA builds. PIP_FIND_LINKS: a mounted
# local wheel folder (a CPU test build).
ARG TORCH_SPEC="torch==2.13.0 torchvision==0.28.0 torchaudio==2.11.0"
ARG PIP_FIND_LINKS=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=180 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN python3 -m venv /opt/venv
# Exact pins of talkgen's dependencies from the tested .venv (deploy/freeze_requirements.py), used as
# constraints: where ComfyUI or a pack needs the same package, it gets the tested version.
COPY deploy/native-requirements.txt /tmp/constraints.txt
# The split is on purpose: TORCH_SPEC is a list of requirements.
# hadolint ignore=SC2086
RUN pip install --no-cache-dir ${PIP_FIND_LINKS:+--find-links "$PIP_FIND_LINKS"} -c /tmp/constraints.txt $TORCH_SPEC
COPY --from=sources /opt/ComfyUI /opt/ComfyUI
# ComfyUI's, the packs' and the flavour's requirements (talkgen-requirements.txt, written by fetch_sources.py;
# the packs' own version ranges apply, held to the constraints above).
RUN pip install --no-cache-dir ${PIP_FIND_LINKS:+--find-links "$PIP_FIND_LINKS"} -c /tmp/constraints.txt \
        -r /opt/ComfyUI/talkgen-requirements.txt
# The source last: a talkgen change rebuilds only the layers from here on.
COPY . /src
RUN pip install --no-cache-dir -c /tmp/constraints.txt "/src[comfyui,separation,runpod,s3]" \
    && pip check \
    && pip freeze --exclude-editable > /opt/ComfyUI/talkgen-freeze.txt \
    && rm -rf /src
COPY deploy/comfyui/extra_model_paths.yaml /opt/ComfyUI/extra_model_paths.yaml

# ---------------------------------------------------------------------------------------------------
# models: optional baked model files. BAKE_MODELS="" (default) bakes nothing: ComfyUI reads the volume,
# /runpod-volume/models/comfyui/<folder>/<file>. BAKE_MODELS=true downloads the FLAVOUR's files (the list in
# versions.json, wav2vec2 included) into /models/comfyui with a lock file (revision, sha256 per file).
FROM build AS models
ARG FLAVOUR=all
ARG BAKE_MODELS=""
COPY workflows/versions.json /tmp/versions.json
COPY deploy/comfyui/fetch_models.py /tmp/fetch_models.py
RUN mkdir -p /models/comfyui \
    && if [ -n "$BAKE_MODELS" ]; then \
        python /tmp/fetch_models.py --versions /tmp/versions.json --flavour "$FLAVOUR" --dest /models/comfyui; \
    fi

# ---------------------------------------------------------------------------------------------------
# runtime: the venv, ComfyUI (read-only code; its input/output/temp/user folders writable), tini,
# a non-root user. No git, compilers, pip cache or source tree.
FROM ${BASE_IMAGE} AS runtime
ARG FLAVOUR=all
# tini as PID 1 forwards SIGTERM to the worker, which stops ComfyUI (its own process group) on the way out,
# and reaps zombies. TINI_SUBREAPER keeps it correct under `docker run --init` / `podman run --init` too.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin talkgen
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/ComfyUI /opt/ComfyUI
COPY --from=models /models /models
COPY examples /app/examples
COPY deploy/entrypoint.sh /usr/local/bin/talkgen-entrypoint
RUN mkdir -p /opt/ComfyUI/input /opt/ComfyUI/output /opt/ComfyUI/temp /opt/ComfyUI/user \
    && touch /opt/ComfyUI/talkgen-comfyui.log \
    && chown -R talkgen:talkgen /opt/ComfyUI/input /opt/ComfyUI/output /opt/ComfyUI/temp /opt/ComfyUI/user \
        /opt/ComfyUI/talkgen-comfyui.log
# TALKGEN_WARMUP: the worker starts ComfyUI and loads the engine before its first job, so a broken server
# or missing model file stops the worker at start, not on a user's job.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TINI_SUBREAPER=1 \
    TALKGEN_ENGINE=comfyui \
    TALKGEN_COMFYUI_FLAVOUR=auto \
    TALKGEN_SEPARATION_MODEL=/runpod-volume/models/comfyui/diffusion_models/MelBandRoformer_fp16.safetensors \
    TALKGEN_COMFYUI_DIR=/opt/ComfyUI \
    TALKGEN_COMFYUI_URL=http://127.0.0.1:8188 \
    TALKGEN_WARMUP=true
WORKDIR /app
# Numeric, so a runtime (Kubernetes runAsNonRoot) can tell it is not root without reading /etc/passwd.
USER 10001:10001
# Healthy while the worker process the entrypoint started (after `talkgen doctor` passed) is alive.
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
    CMD ["/bin/sh", "-c", "kill -0 \"$(cat /tmp/talkgen-worker.pid)\""]
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/talkgen-entrypoint"]
CMD []
