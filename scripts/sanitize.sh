#!/usr/bin/env bash
# Builds fastvae._C with AddressSanitizer + UndefinedBehaviorSanitizer (build/sanitize, never the
# normal build) into a temporary copy of the package, and runs the fast tests against it with the
# sanitizer runtimes preloaded (python itself is not instrumented). Fails if a sanitizer reports
# anything: ASan reports land in log files (so reports from subprocesses count too), UBSan halts. Usage: bash scripts/sanitize.sh
# [--build-only | pytest args]; PYTHON picks the interpreter (default .venv/bin/python; it needs torch and pytest).
# --build-only stops after the build (.ci/run builds beside the test suite, then runs this again to test).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PYTHON:-$REPO/.venv/bin/python}
CXX=${CXX:-g++}
# -O1 and line tables only (-g1, enough for the reports' stack traces): instrumented at -O3 with full debug
# information, the build took 14.5 min of the CI budget on a 2-core host; at -O1 -g1 each source compiles 2-3x faster.
SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -g1 -DNDEBUG"
BUILD=$REPO/build/sanitize
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# CMakeLists.txt compiles through ccache when one is on PATH (objects keyed on these flags too).
cmake -S . -B "$BUILD" -G Ninja -DPython_EXECUTABLE="$PY" -DCMAKE_CXX_COMPILER="$CXX" \
  -DCMAKE_BUILD_TYPE=None -DFASTVAE_OPT_LEVEL=-O1 -DFASTVAE_INPLACE=OFF \
  -DCMAKE_CXX_FLAGS="$SAN" -DCMAKE_MODULE_LINKER_FLAGS="$SAN" -DCMAKE_SHARED_LINKER_FLAGS="$SAN" >/dev/null
cmake --build "$BUILD"
if [ "${1:-}" = "--build-only" ]; then exit 0; fi

# A private copy of the package with the instrumented extension, first on PYTHONPATH.
cp -r python/fastvae "$WORK/fastvae"
rm -f "$WORK"/fastvae/_C*.so "$WORK/fastvae/_build_info.py"
cp "$BUILD"/_C*.so "$BUILD/_build_info.py" "$WORK/fastvae/"
mkdir "$WORK/logs"

export PYTHONPATH=$WORK${PYTHONPATH:+:$PYTHONPATH}
# libasan must come first in the process; python and torch are not instrumented.
export LD_PRELOAD="$($CXX -print-file-name=libasan.so) $($CXX -print-file-name=libubsan.so)"
# Python and torch keep allocations alive until exit by design: leak reports would be noise.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:log_path=$WORK/logs/asan
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:log_path=$WORK/logs/ubsan
export FASTVAE_DATA=${FASTVAE_DATA:-$REPO/../shared/data/mnist}

# Refuse to test anything but the instrumented build (an editable install could shadow PYTHONPATH).
"$PY" -c "import fastvae, sys; sys.exit(0 if fastvae._C.__file__.startswith('$WORK/') else
  'sanitize.sh: fastvae._C was loaded from ' + fastvae._C.__file__ + ', not the instrumented build')"

tests=("$@")
# The two longest fits of test_fit.py (45 s instrumented) train for their ELBO's sake, through the code paths the
# shorter fits run; the normal suite keeps them.
[ ${#tests[@]} -gt 0 ] || tests=(tests/models/test_vae.py tests/ops/test_samplers.py tests/models/test_estimators.py
                                 tests/cavi/test_cavi.py tests/training/test_fit.py tests/ops/test_heads.py
                                 tests/training/test_worker_pool.py tests/training/test_fused_adam.py
                                 tests/ops/test_gemm_at_b.py tests/training/test_sparse_input.py
                                 tests/training/test_torch_uniform.py tests/ops/test_activation.py
                                 tests/training/test_adam_in_place.py
                                 --deselect tests/ops/test_activation.py::test_float32_tanh_is_within_its_ulp_bound_over_the_normal_floats
                                 --deselect tests/training/test_fit.py::test_kl_weight_trades_kl_for_reconstruction
                                 --deselect tests/training/test_fit.py::test_fit_learns_and_records_history)
status=0
"$PY" -m pytest -x -q -p no:cacheprovider "${tests[@]}" || status=$?
if compgen -G "$WORK/logs/*" >/dev/null; then
  cat "$WORK"/logs/* >&2
  echo "sanitize.sh: the sanitizers reported errors (above)" >&2
  exit 1
fi
[ "$status" -eq 0 ] && echo "sanitize.sh: no sanitizer reports"
exit "$status"
