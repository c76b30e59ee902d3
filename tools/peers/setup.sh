#!/usr/bin/env bash
# Sets up the peer runtimes that `edgespec bench --peers ...` compares against, in their own
# virtual environment (default build/peers-venv) so that the main venv's pins stay untouched:
#   ortgenai      onnxruntime-genai (+ onnx_ir, torch, transformers, gguf for its model builder)
#   transformers  torch CPU + transformers + gguf (also usable from the main venv)
#   llamacpp      llama-cpp-python, built from source (slow: 10+ minutes on 2 cores)
# Each peer is installed independently: one that fails is reported and skipped, the others
# still install. Usage: tools/peers/setup.sh [ortgenai] [transformers] [llamacpp]  (default all)
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
VENV="${EDGESPEC_PEERS_VENV:-$ROOT/build/peers-venv}"
PY="${PY:-python3}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
GENAI_VERSION="${GENAI_VERSION:-0.18.0}"
LLAMACPP_VERSION="${LLAMACPP_VERSION:-0.3.36}"
PEERS=("$@")
[ ${#PEERS[@]} -eq 0 ] && PEERS=(transformers ortgenai llamacpp)

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV" || { echo "peers: cannot create $VENV" >&2; exit 1; }
  "$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored: it is neither"
fi
failed=()

pip_install() {  # quiet, without the notes about local package indexes that lack a package
  "$VENV/bin/python" -m pip install -q "$@" 2>&1 | grep -v "is ignored: it is neither" >&2
  return "${PIPESTATUS[0]}"
}
# Versions the benchmark was run with (transformers also loads the GGUF for the HF copy).
install_transformers() {
  pip_install "torch==$TORCH_VERSION" transformers==5.24.0 accelerate==1.15.0 gguf==0.19.0 \
    safetensors==0.8.0 tokenizers==0.23.3 numpy==2.4.6
}
install_ortgenai() {  # its model builder needs torch + transformers, and onnx_ir (undeclared)
  install_transformers && pip_install "onnxruntime-genai==$GENAI_VERSION" onnx==1.23.2 onnx_ir==1.1.0
}
install_llamacpp() {
  # GGML_NATIVE: tuned for this CPU (the benchmark machine); nice: the build takes minutes.
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=ON}" CMAKE_BUILD_PARALLEL_LEVEL="${JOBS:-2}" \
    nice -n 19 "$VENV/bin/python" -m pip install -q "llama-cpp-python==$LLAMACPP_VERSION" 2>&1 \
    | grep -v "is ignored: it is neither" >&2
  return "${PIPESTATUS[0]}"
}

for peer in "${PEERS[@]}"; do
  echo "peers: installing $peer into $VENV"
  if "install_$peer"; then echo "peers: $peer ok"; else echo "peers: $peer FAILED" >&2; failed+=("$peer"); fi
done
"$VENV/bin/python" - <<'PY'
import importlib
for mod in ("onnxruntime_genai", "transformers", "torch", "llama_cpp"):
    try:
        m = importlib.import_module(mod)
        print(f"peers: {mod} {getattr(m, '__version__', '?')}")
    except Exception as e:  # report, do not fail: the bench states the reason per peer
        print(f"peers: {mod} unavailable ({type(e).__name__}: {e})")
PY
if [ ${#failed[@]} -gt 0 ]; then echo "peers: failed: ${failed[*]} (bench skips them)" >&2; fi
exit 0
