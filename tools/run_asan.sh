#!/usr/bin/env bash
# Build the native core with AddressSanitizer + UndefinedBehaviorSanitizer into build/asan and run
# native tests against it (`make asan`).
#
#   tools/run_asan.sh                      # the default native tests (below)
#   tools/run_asan.sh tests/e2e/test_engine.py -k greedy   # any pytest arguments
#
# How: the editable install's import hook (scikit-build-core's finder, installed by a .pth file)
# maps edgespec._native to the normal build and would shadow PYTHONPATH, so the tests run in an
# interpreter that drops that hook and imports edgespec from build/asan/stage instead: the live
# Python sources (symlinks) next to the sanitized _native module.
# Python itself is not instrumented, so libasan/libubsan are LD_PRELOADed. detect_leaks=0:
# CPython (and torch, which the fixtures import to export the tiny models) keep memory alive
# until exit by design, and LeakSanitizer would report those; heap/stack/global overflows,
# use-after-free, double free and every UBSan check stay on and stop the run at the first error.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
BUILD="${EDGESPEC_ASAN_BUILD:-$ROOT/build/asan}"
STAGE="$BUILD/stage"
CXX="${CXX:-g++}"
DEFAULT_TESTS=(tests/unit/test_spec_math.py tests/unit/test_row_attention.py tests/unit/test_ngram_index.py
  tests/unit/test_qmatmul.py tests/export/test_block_offset_op.py tests/export/test_qmatmul_op.py
  tests/e2e/test_engine.py tests/e2e/test_lossless.py tests/e2e/test_engine_eagle.py
  tests/e2e/test_faults.py tests/e2e/test_lookup_table.py tests/e2e/test_prefix_reuse.py)

cd "$ROOT"
start=$(date +%s)

# 1. configure + build (incremental) the sanitized module and custom-op library only
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER="$CXX" -DEDGESPEC_SANITIZE=ON \
  -DPython_EXECUTABLE="$PY" -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" >/dev/null
cmake --build "$BUILD" --target _native edgespec_ops -j "${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
module="$(ls "$BUILD"/_native*.so)"

# 2. stage an importable edgespec package: live sources + the sanitized module and ops library
rm -rf "$STAGE"
mkdir -p "$STAGE/edgespec"
for entry in "$ROOT"/edgespec/*; do
  case "$(basename "$entry")" in _native*.so | libedgespec_ops.so | __pycache__) continue ;; esac
  ln -s "$entry" "$STAGE/edgespec/"
done
ln -s "$ROOT/export" "$STAGE/edgespec/export"
ln -s "$module" "$STAGE/edgespec/"
ln -s "$BUILD/libedgespec_ops.so" "$STAGE/edgespec/"

# 3. run pytest under the sanitizers
lib() { "$CXX" -print-file-name="$1"; }
export LD_PRELOAD="$(lib libasan.so):$(lib libubsan.so)${LD_PRELOAD:+:$LD_PRELOAD}"
asan="detect_leaks=0:halt_on_error=1:abort_on_error=1:strict_string_checks=1"
asan+=":detect_stack_use_after_return=1:check_initialization_order=1"
export ASAN_OPTIONS="$asan${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export PYTHONMALLOC=malloc  # Python objects in ASan-tracked heap memory too
export EDGESPEC_ASAN_STAGE="$STAGE"
[ $# -eq 0 ] && set -- "${DEFAULT_TESTS[@]}"

set +e
"$PY" - "$@" <<'EOF'
import os
import sys

stage = os.environ["EDGESPEC_ASAN_STAGE"]
# drop scikit-build-core's editable finder (it would import the normal build), then put the stage
# first on the path
sys.meta_path = [f for f in sys.meta_path if "editable" not in type(f).__module__]
sys.path.insert(0, stage)
import edgespec._native as native  # noqa: E402

if not native.__file__.startswith(stage):
    sys.exit(f"run_asan: imported {native.__file__}, not the sanitized build under {stage}")
print(f"run_asan: {native.__file__}", file=sys.stderr)
import pytest  # noqa: E402

sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "-m", "not slow", *sys.argv[1:]]))
EOF
rc=$?
set -e
echo "run_asan: exit $rc after $(( $(date +%s) - start )) s (build + tests)"
exit $rc
