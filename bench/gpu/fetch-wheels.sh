#!/usr/bin/env bash
# Download the pure-Python wheels refllm imports that the GPU image lacks (einops, jaxtyping and
# its one dependency) into bench/gpu/wheels/ (git-ignored), to carry to the device machine.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m pip download -q --no-deps -d wheels einops jaxtyping wadler_lindig
ls wheels
