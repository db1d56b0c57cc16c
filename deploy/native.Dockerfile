# talkgen native image: the RunPod serverless worker with the native PyTorch engine.
#
#   docker build -f deploy/native.Dockerfile -t talkgen-native .          (from the repository root)
#
# Build arguments (deploy/README.md has the table): BASE_IMAGE, TORCH_SPEC, PIP_FIND_LINKS, BAKE_MODELS.
#
# Base image: python:3.11 slim (Debian bookworm), not nvidia/cuda. The PyPI torch wheels for Linux
# x86_64 bundle the CUDA runtime, cuDNN, cuBLAS and NCCL as nvidia-* wheels, and the host's NVIDIA
# container toolkit mounts the driver, so a CUDA base would only add ~3 GB of libraries that torch never
# loads (its own copies win). The tag pins the Python patch release; pin a digest (@sha256:...) for
# byte-identical rebuilds. Python 3.11 also matches the local CPU test wheel (tests/images/image_test.sh).
ARG BASE_IMAGE=python:3.11.13-slim-bookworm

# ---------------------------------------------------------------------------------------------------
# deps: a venv at /opt/venv with torch and every pinned dependency of talkgen[native,runpod,s3].
FROM ${BASE_IMAGE} AS deps
# TORCH_SPEC: the torch requirement. Default: the CUDA build from PyPI. The CPU test build passes
# torch==2.13.0+cpu with PIP_FIND_LINKS pointing at a mounted wheel folder.
ARG TORCH_SPEC=torch==2.13.0
ARG PIP_FIND_LINKS=""
# pip verifies TLS against the system bundle (a build that goes through an intercepting proxy mounts
# its CA bundle over this file for the build only; it does not end up in the image).
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=180 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN python3 -m venv /opt/venv
# Exact pins of every dependency, generated from the tested .venv (deploy/freeze_requirements.py).
COPY deploy/native-requirements.txt /tmp/native-requirements.txt
# torch first, so pip never picks another build; its own dependencies are held to the pins.
RUN pip install --no-cache-dir ${PIP_FIND_LINKS:+--find-links "$PIP_FIND_LINKS"} \
        -c /tmp/native-requirements.txt "$TORCH_SPEC"
# A layer of its own on purpose (hadolint DL3059): torch (~1-4 GB) stays cached when a pin changes.
# hadolint ignore=DL3059
RUN pip install --no-cache-dir -r /tmp/native-requirements.txt

# build: talkgen itself, as a wheel (the runtime stage installs it over the deps venv, so a code change
# costs a small layer, not a new copy of the whole venv), and the tiny test weights. talkgen writes weight
# files owner-only (0600); the worker runs as another user, so they are made world-readable.
FROM deps AS build
COPY . /src
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels /src \
    && pip install --no-cache-dir --no-deps /wheels/talkgen-*.whl \
    && pip check \
    && talkgen models tiny /opt/talkgen/tiny-models \
    && chmod -R a+rX /opt/talkgen

# ---------------------------------------------------------------------------------------------------
# models: optional baked weights. BAKE_MODELS="" (default) bakes nothing: the worker reads
# TALKGEN_MODELS_DIR=/runpod-volume/models (a network volume filled once with `talkgen models download`).
# BAKE_MODELS="infinitetalk-480p" (any arguments of `talkgen models download`, e.g.
# "infinitetalk-480p --skip two-speakers") downloads and verifies them into /models (~100 GB image).
FROM build AS models
ARG BAKE_MODELS=""
# The arguments are split on purpose: BAKE_MODELS is a model set name followed by options.
# hadolint ignore=SC2086
RUN mkdir -p /models \
    && if [ -n "$BAKE_MODELS" ]; then talkgen models download $BAKE_MODELS --dir /models; fi \
    && chmod -R a+rX /models

# ---------------------------------------------------------------------------------------------------
# runtime: the venv, tini, a non-root user. No compilers, no pip cache, no source tree.
FROM ${BASE_IMAGE} AS runtime
ARG BAKE_MODELS=""
# tini as PID 1 forwards SIGTERM to the worker (talkgen cancels the running job, then the SDK stops)
# and reaps zombies. Bookworm's version is pinned. TINI_SUBREAPER keeps it correct (and quiet) when
# the engine adds its own init (`docker run --init`, `podman run --init`).
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin talkgen
COPY --from=deps /opt/venv /opt/venv
COPY --from=build /wheels /tmp/wheels
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps --no-index /tmp/wheels/talkgen-*.whl \
    && rm -rf /tmp/wheels
COPY --from=build /opt/talkgen/tiny-models /opt/talkgen/tiny-models
COPY --from=models /models /models
COPY examples /app/examples
COPY deploy/entrypoint.sh /usr/local/bin/talkgen-entrypoint
# TALKGEN_MODELS_DIR: /models when weights were baked, else the RunPod network volume's models folder.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TINI_SUBREAPER=1 \
    TALKGEN_BAKED_MODELS=${BAKE_MODELS:+/models}
ENV TALKGEN_MODELS_DIR=${TALKGEN_BAKED_MODELS:-/runpod-volume/models}
# Relative paths in requests (examples/portrait.png, as in .runpod/tests.json) resolve here; the working
# directory is one of talkgen's allowed path roots.
WORKDIR /app
USER 10001:10001
# Healthy while the worker process the entrypoint started (after `talkgen doctor` passed) is alive.
# The queue worker serves no HTTP port, so this is what can be checked without slowing a job.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["/bin/sh", "-c", "kill -0 \"$(cat /tmp/talkgen-worker.pid)\""]
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/talkgen-entrypoint"]
CMD []
