#!/usr/bin/env bash
# Creates .venv (if missing), installs torch 2.13.0 (CPU), then fastvae and its test dependencies with
# a plain `pip install ".[test]"` (build isolation on, as users type it): the in-tree backend builds
# against the torch of .venv and downloads no other (docs/install.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: fastvae is built against whatever torch .venv has.
.venv/bin/python -m pip install -q "torch==${FASTVAE_TORCH_VERSION:-2.13.0}"
# Each isolated build environment is new, so scikit-build-core reconfigures build/<wheel tag> from
# scratch; ccache (when installed) makes the recompilation of unchanged sources a cache hit.
if [ -z "${CMAKE_CXX_COMPILER_LAUNCHER:-}" ] && command -v ccache >/dev/null; then
  export CMAKE_CXX_COMPILER_LAUNCHER=ccache
fi
.venv/bin/python -m pip install -q ".[test]"
