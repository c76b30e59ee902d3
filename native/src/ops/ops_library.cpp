// libedgespec_ops.so: the custom ops for sessions that edgespec's engine does not create (the
// onnxruntime Python package: SessionOptions.register_custom_ops_library(path)). ORT calls
// RegisterCustomOps with its own API, which this library then uses.
#include <onnxruntime_cxx_api.h>

#include <exception>

#include "attention_op.h"

extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL
RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
  const OrtApi* api = api_base->GetApi(ORT_API_VERSION);
  if (api == nullptr) return nullptr;  // cannot even report: ORT older than our headers
  Ort::InitApi(api);
  try {
    Ort::UnownedSessionOptions(options).Add(edgespec::ops::domain());
    return nullptr;
  } catch (const std::exception& err) {
    return api->CreateStatus(ORT_RUNTIME_EXCEPTION, err.what());
  }
}
