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
// torn down by the loader after our static destructors would run).
Ort::Env& env();

// A session for `path` on the provider `prov` (name checked: std::invalid_argument).
// A provider that cannot load → std::runtime_error naming it and ORT's message, or a CPU
// session when prov.allow_fallback. `*used` receives the provider actually used.
Ort::Session open_session(const std::string& path, const ProviderSpec& prov, std::string* used);

}  // namespace ort
}  // namespace edgespec
