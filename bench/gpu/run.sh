#!/usr/bin/env bash
# The GPU proof in one command (bench/gpu/run.py; docs/gpu.md): installs refllm without network,
# then runs the stages, each with its own time limit. On the device machine:
#   bash bench/gpu/run.sh --out "$OUT"            (add --dry-run for the CPU rehearsal CI runs)
set -uo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-python3}"
if [ -z "${REFLLM_NO_INSTALL:-}" ]; then
    # the GPU image has torch, scipy, matplotlib, safetensors, tqdm, pytest(-benchmark),
    # hypothesis; refllm's two small pure-Python imports it lacks travel as wheels when
    # bench/gpu/fetch-wheels.sh has put them here (no network there)
    if compgen -G "bench/gpu/wheels/*.whl" > /dev/null; then
        "$PY" -m pip install -q --no-index --no-deps bench/gpu/wheels/*.whl
    fi
    "$PY" -m pip install -q --no-deps --no-build-isolation -e . \
        || "$PY" -m pip install -q --no-deps -e .
fi
exec "$PY" bench/gpu/run.py "$@"
