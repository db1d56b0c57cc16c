#!/bin/sh
# Entry point of the talkgen images: check the machine with `talkgen doctor`, then start the RunPod worker.
#
#   (no arguments)                   the worker (production queue on RunPod)
#   --test_input '{"input": {...}}'  one local job, then exit (0 on success)
#   --rp_serve_api --rp_api_host 0.0.0.0 --rp_api_port 8000   the SDK's local /run, /runsync API
#   any other command (talkgen doctor --json, bash)            run as given, without the checks
#
# TALKGEN_DOCTOR=false skips the check; TALKGEN_DOCTOR_ARGS adds options (e.g. --verify re-hashes the
# model files: thorough, but minutes for the full-size weights).
set -eu

case "${1:-}" in
    ""|-*) ;;
    *) exec "$@" ;;
esac

if [ "${TALKGEN_DOCTOR:-true}" != "false" ]; then
    # Fail fast: a worker without a usable GPU or without its models would otherwise take jobs and fail
    # each one (the seed template's workers spun for minutes). Warnings are printed and do not stop it.
    # shellcheck disable=SC2086  # TALKGEN_DOCTOR_ARGS is a list of options
    if ! talkgen doctor ${TALKGEN_DOCTOR_ARGS:-}; then
        echo "talkgen-entrypoint: talkgen doctor reported an error (above): not starting the worker." >&2
        exit 1
    fi
fi

# The health check looks for this process; exec keeps the PID, so signals from tini reach the worker.
echo "$$" > /tmp/talkgen-worker.pid
exec python -m talkgen.runtimes.runpod "$@"
