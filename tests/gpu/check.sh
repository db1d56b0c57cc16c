#!/usr/bin/env bash
# `make gpu-check`: the GPU suite (tests/gpu), then one real-size window per offload mode.
#
# Python: $PYTHON, else .venv/bin/python, else python3 when it already has talkgen's packages or .whl/
# holds them (a GPU machine with torch and no internet: `make gpu-wheels` here, carry .whl/ there),
# else `make install` first. Extra arguments go to pytest (e.g. -k resume).
set -euo pipefail
cd "$(dirname "$0")/../.."
export RUNPOD_SKIP_AUTO_SYSTEM_CHECKS=true PYTHONUNBUFFERED=1
NEEDED="import diffusers, av, pydantic_settings, pyloudnorm"
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python
  elif [ -d .whl ] || python3 -c "$NEEDED" 2>/dev/null; then PY=python3
  else make install >&2; PY=.venv/bin/python
  fi
fi
if ! "$PY" -c "$NEEDED" 2>/dev/null; then
  [ -d .whl ] || { echo "gpu-check: $PY lacks talkgen's packages and there is no .whl/ (make gpu-wheels)" >&2; exit 2; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/talkgen-site .whl/*.whl
  export PYTHONPATH="/tmp/talkgen-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import torch; print('gpu-check:', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device')"
"$PY" -m pytest -q -m gpu tests/gpu -rs -p no:cacheprovider -o addopts="" "$@"
"$PY" bench/native_gpu_engine.py
