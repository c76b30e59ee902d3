#!/usr/bin/env bash
# The GPU check, in one run on a machine with an NVIDIA GPU, CUDA 13 libraries and Python 3.12
# (the lent device machine: its python3 has torch, transformers, onnx, pybind11, cmake).
#
#   bash tools/gpu_check.sh PAYLOAD_DIR [OUT_DIR]
#
# PAYLOAD_DIR holds what that machine lacks, made here by tools/gpu_payload.sh: the onnxruntime
# package of the onnxruntime-gpu wheel (ort.tar.xz), the gguf wheel, the SmolLM2 GGUF and the
# Spec-Bench dev prompts. Stages (each logs, and a failure does not stop the next):
#   1. unpack; ORT with CUDA first on PYTHONPATH, the CUDA libraries on LD_LIBRARY_PATH
#   2. build and install edgespec (editable, as `make build` does)
#   3. tests/gpu with EDGESPEC_REQUIRE_GPU=1 (a skip would be a failure)
#   4. export SmolLM2-135M at fp16 and fp32 with GroupQueryAttention; node placement per provider
#      (fp32 shows why a Session refuses it on a GPU: ORT runs its attention on the CPU)
#   5. `edgespec bench --provider cuda` of the fp16 export: plain vs prompt lookup
#   6. the CPU test tiers with onnxruntime-gpu installed (what a GPU user's `make test` sees)
# Results: OUT_DIR (default $OUT, else ./gpu_out): log.txt, pytest-gpu.txt, placement.txt,
# bench-*.md / .json, summary.txt.
set -uo pipefail
PAY=$(realpath "${1:?usage: gpu_check.sh PAYLOAD_DIR [OUT_DIR]}")
RES=$(realpath -m "${2:-${OUT:-gpu_out}}")
W=${EDGESPEC_GPU_WORK:-/tmp/es-gpu}
PER_CATEGORY=${PER_CATEGORY:-6}  # Spec-Bench questions per category group in the bench
MAX_NEW=${MAX_NEW:-256}
mkdir -p "$RES" "$W"
exec > >(tee -a "$RES/log.txt") 2>&1
SUMMARY=$RES/summary.txt
: >"$SUMMARY"
stage() { echo; echo "=== $1 ($(date +%T))"; }
record() { echo "$1: $2" | tee -a "$SUMMARY"; }
run_stage() {  # name, command...: run, record ok/FAILED with the exit status and seconds
  local name=$1 t0=$SECONDS rc
  shift
  stage "$name"
  "$@"
  rc=$?
  record "$name" "$([ $rc -eq 0 ] && echo ok || echo "FAILED rc=$rc") ($((SECONDS - t0)) s)"
  return $rc
}

unpack() {
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || return 1
  python3 -V && nproc
  if [ ! -d "$W/site/onnxruntime" ]; then
    python3 - "$PAY" "$W" <<'EOF' || return 1
import sys, tarfile, pathlib
pay, w = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
parts = sorted(pay.glob("payload.part*"))
with open(w / "payload.tar", "wb") as out:
    for p in parts:
        out.write(p.read_bytes())
with tarfile.open(w / "payload.tar") as t:
    t.extractall(w / "pay", filter="data")
with tarfile.open(w / "pay" / "ort.tar.xz") as t:
    t.extractall(w / "site", filter="data")
print("payload:", sorted(p.name for p in (w / "pay").iterdir()))
EOF
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$W/site" \
      "$W"/pay/gguf-*.whl || return 1
  fi
  python3 -c 'import onnxruntime as o; print("onnxruntime", o.__version__, o.__file__,
o.get_available_providers())'
}

set_env() {
  export PYTHONPATH=$W/site XDG_CACHE_HOME=$W/xdg PYTHONUNBUFFERED=1
  local libs
  libs=$(python3 - <<'EOF'
import glob, os, site, sys
dirs = set()
for base in site.getsitepackages() + sys.path:
    for so in glob.glob(os.path.join(base, "nvidia", "**", "lib*.so*"), recursive=True):
        dirs.add(os.path.dirname(so))
print(":".join(sorted(dirs)))
EOF
  )
  export LD_LIBRARY_PATH=$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
}

build() {
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) python3 -m pip install -q --no-build-isolation \
    --no-deps --no-index -e . || return 1
  python3 -c 'import edgespec; print("edgespec on ORT", edgespec.runtime_version(),
edgespec.available_providers())'
}

gpu_tests() {
  EDGESPEC_REQUIRE_GPU=1 python3 -m pytest -q -rs -p no:cacheprovider -W default tests/gpu \
    2>&1 | tee "$RES/pytest-gpu.txt"
}

export_models() {
  local gguf
  gguf=$(ls "$W"/pay/*.gguf) || return 1
  for p in fp16 fp32; do
    python3 -m edgespec.cli export --gguf "$gguf" --precision "$p" --attention gqa \
      -o "$W/models/smollm2-$p" --force --quiet || return 1
  done
  for p in fp16 fp32; do
    echo "--- $p target on cuda, context 300"
    python3 tools/ort_placement.py "$W/models/smollm2-$p" --provider cuda --widths 1,2,5,9
  done 2>&1 | tee "$RES/placement.txt"
}

bench() {  # precision, questions per category group, time limit (s)
  local out=$W/bench-$1
  timeout "$3" python3 -m edgespec.cli bench "$W/models/smollm2-$1" --provider cuda \
    --drafters none,ngram --per-category "$2" --max-new-tokens "$MAX_NEW" \
    --threads 4 --prompts "$W/pay/spec_bench_dev.jsonl" --out "$out" || return 1
  cp "$out/results.md" "$RES/bench-$1.md" && cp "$out/results.json" "$RES/bench-$1.json"
}

cpu_tests() {
  timeout 200 python3 -m pytest -q -p no:cacheprovider -W default -m "not slow" \
    tests/unit tests/export tests/e2e 2>&1 | tail -25
}

run_stage unpack unpack || exit 1
set_env
run_stage build build || exit 1
run_stage gpu-tests gpu_tests
run_stage export export_models && {
  run_stage bench-fp16 bench fp16 "$PER_CATEGORY" 300
}
run_stage cpu-tests cpu_tests
echo
cat "$SUMMARY"
sleep 1  # let tee write the log
