// ORT loader: dlopens libonnxruntime once per process, initialises the C++ API
// (ORT_API_MANUAL_INIT), owns the process-wide Ort::Env and creates sessions for a ProviderSpec.
#pragma once

#include <onnxruntime_cxx_api.h>

#include <string>

#include "edgespec/engine.h"

namespace edgespec {
namespace ort {

// Throws std::runtime_error unless load_runtime() succeeded.
void require_loaded();

// The process-wide environment (created on first use, never destroyed: ORT may be
// torn down by the loader after our static destructors would run). It owns one global intra-op
// thread pool, sized by the first caller's `threads` (0 = ORT's default: the physical cores),
// for sessions that share it (see open_session).
Ort::Env& env(int threads = 0);

// A session for `path` on the provider `prov` (name checked: std::invalid_argument).
// A provider that cannot load → std::runtime_error naming it and ORT's message, or a CPU
// session when prov.allow_fallback. `*used` receives the provider actually used.
// shared_threads: run on the environment's global thread pool instead of a pool of its own.
// A target and a draft that alternate on a small CPU must share one pool: two pools of spinning
// threads fight for the cores (measured here: a 1-token target step went from 9.8 ms alone to
// 23 ms when interleaved with a draft session).
Ort::Session open_session(const std::string& path, const ProviderSpec& prov, std::string* used,
                          bool shared_threads = false);

}  // namespace ort
}  // namespace edgespec
