// edgespec's ONNX Runtime custom ops (CPU): domain "ai.edgespec", op GroupQueryAttention, a
// drop-in for com.microsoft GroupQueryAttention (same inputs, outputs and attributes, batch 1,
// float32, rotate-half rotary, shared or separate past/present buffers) that computes each
// query row on its own (row_attention.h), so a verify call equals one-token steps bit for bit.
// One input of its own after sin_cache (slot 9, where com.microsoft has position_ids): optional
// tree_parents int32 [S], a token tree to verify in one call (attention_op.cpp, Tree).
// The engine adds the domain to its sessions; libedgespec_ops.so exposes it to the onnxruntime
// Python package (SessionOptions.register_custom_ops_library) through RegisterCustomOps.
#pragma once

#include <onnxruntime_cxx_api.h>

#include <exception>
#include <string>
#include <vector>

namespace edgespec {
namespace ops {

constexpr const char* kDomain = "ai.edgespec";

// ai.edgespec BlockOffset (block_offset_op.cpp, kernel in block_offset.h): the float16 per-block
// offset of 4-bit weights with non-integer zero points (GGUF Q4_1), one node instead of four.
const OrtCustomOp* block_offset_op();

// ai.edgespec QMatMul (qmatmul_op.cpp, kernel in qmatmul.h): a 4-bit linear layer (GGUF
// Q4_1's form) with int8 activations that reads its weights once for all rows of a call.
const OrtCustomOp* qmatmul_op();

// ai.edgespec FMatMul (fmatmul_op.cpp, kernel in fmatmul.h): a float32 linear layer (packed
// weights) that streams its weights once for all rows of a call, each output one fma chain.
const OrtCustomOp* fmatmul_op();

// CreateKernelV2 of every op: a new Kernel(info), or a status with the message of what its
// constructor threw (a bad attribute fails the session's load, not the process).
template <class Kernel>
OrtStatusPtr create_kernel(const OrtApi& api, const OrtKernelInfo* info, void** kernel) {
  try {
    *kernel = new Kernel(info);
    return nullptr;
  } catch (const std::exception& err) {
    return api.CreateStatus(ORT_INVALID_ARGUMENT, err.what());
  }
}

// ComputeV2 of every op: runs f (the kernel's compute), or returns a status with the message of
// what it threw (a bad input fails the Run, not the process).
template <class F>
OrtStatusPtr guarded(F&& f) noexcept {
  try {
    f();
    return nullptr;
  } catch (const std::exception& err) {
    return Ort::GetApi().CreateStatus(ORT_RUNTIME_EXCEPTION, err.what());
  }
}

// A shape for error messages: "[2, 64, 16]".
std::string shape_str(const std::vector<int64_t>& d);

// An int attribute of a node, `fallback` when the node does not set it.
int64_t int_attr(const Ort::ConstKernelInfo& info, const char* name, int64_t fallback);

// The process-wide domain holding every op (created on first use with the ORT API already
// initialised, never destroyed: sessions may outlive any owner of ours).
Ort::CustomOpDomain& domain();

}  // namespace ops
}  // namespace edgespec
