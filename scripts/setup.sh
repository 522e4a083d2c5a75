#!/usr/bin/env bash
# Creates .venv (if missing), installs torch 2.13.0 (CPU) and the project's dependencies, and builds
# and installs fastvae against that torch. Safe to run again: it only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned, so no later step resolves an unpinned torch (which would pull CUDA builds).
.venv/bin/python -m pip install -q "torch==${FASTVAE_TORCH_VERSION:-2.13.0}"
.venv/bin/python -m pip install -q "scikit-build-core>=0.10" "cmake>=3.18" ninja
.venv/bin/python -m pip install -q --no-build-isolation ".[test]"
