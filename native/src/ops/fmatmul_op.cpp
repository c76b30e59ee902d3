// ai.edgespec FMatMul: the ORT custom-op glue around fmatmul.h.
//   inputs: x float [..., K]; w float [tiles, K, 16] (export/graph.py pack_ftiles)
//   attribute: N (int, >= 1)
//   output: y float [..., N] = x @ W, W [K, N] the unpacked weights
#include <algorithm>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "attention_op.h"
#include "fmatmul.h"

namespace edgespec {
namespace ops {
namespace {

constexpr int64_t kUnitTiles = 4;         // tiles (64 columns) per ParallelFor unit
constexpr int64_t kSerialWork = 1 << 15;  // below this many multiply-adds: one thread

[[noreturn]] void fail(const std::string& what) {
  throw std::invalid_argument("ai.edgespec.FMatMul: " + what);
}

struct Call {
  FWeights w;
  const float* x = nullptr;  // [rows, K]
  float* y = nullptr;        // [rows, n]
  int64_t rows = 0, n = 0;
};

void run_unit(void* data, size_t u) {
  const Call& c = *static_cast<const Call*>(data);
  const int64_t t0 = static_cast<int64_t>(u) * kUnitTiles;
  const int64_t t1 = std::min(t0 + kUnitTiles, c.w.tiles);
  fmatmul_tiles(c.w, c.x, c.w.k, c.rows, t0, t1, c.y, c.n, c.n);
}

class FMatMulKernel {
 public:
  explicit FMatMulKernel(const OrtKernelInfo* raw) {
    const int64_t n = int_attr(Ort::ConstKernelInfo(raw), "N", -1);
    if (n == -1) fail("attribute N is missing");
    if (n <= 0 || n > (int64_t{1} << 24)) fail("N must be in [1, 2^24], got " + std::to_string(n));
    n_ = n;
  }

  OrtStatusPtr ComputeV2(OrtKernelContext* raw) noexcept {
    return guarded([&] { compute(Ort::KernelContext(raw)); });
  }

 private:
  void compute(Ort::KernelContext ctx) const;
  int64_t n_ = 0;
};

// Checks the packed weights against x's K and N; returns them.
FWeights weights(const Ort::ConstValue& w, int64_t k, int64_t n) {
  const std::vector<int64_t> ws = w.GetTensorTypeAndShapeInfo().GetShape();
  const std::vector<int64_t> want = {(n + kFTile - 1) / kFTile, k, kFTile};
  if (ws != want) {
    fail("w " + shape_str(ws) + " must be " + shape_str(want) + " for K " + std::to_string(k) +
         ", N " + std::to_string(n));
  }
  return FWeights{w.GetTensorData<float>(), k, want[0]};
}

void FMatMulKernel::compute(Ort::KernelContext ctx) const {
  const Ort::ConstValue x = ctx.GetInput(0);
  std::vector<int64_t> shape = x.GetTensorTypeAndShapeInfo().GetShape();  // [..., K]
  if (shape.empty()) fail("x must have at least one dimension");
  const int64_t k = shape.back();
  if (k < 1) fail("x's last dimension (K) must be >= 1, got " + std::to_string(k));
  Call c;
  c.w = weights(ctx.GetInput(1), k, n_);
  c.n = n_;
  c.rows = x.GetTensorTypeAndShapeInfo().GetElementCount() / k;
  shape.back() = n_;
  c.y = ctx.GetOutput(0, shape).GetTensorMutableData<float>();
  if (c.rows == 0) return;
  c.x = x.GetTensorData<float>();
  const size_t units = static_cast<size_t>((c.w.tiles + kUnitTiles - 1) / kUnitTiles);
  if (c.rows * k * n_ < kSerialWork || units == 1) {
    fmatmul_tiles(c.w, c.x, k, c.rows, 0, c.w.tiles, c.y, n_, n_);
  } else {
    ctx.ParallelFor(run_unit, units, 0, &c);
  }
}

struct FMatMulOp : Ort::CustomOpBase<FMatMulOp, FMatMulKernel, true> {
  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const {
    return create_kernel<FMatMulKernel>(api, info, kernel);
  }
  const char* GetName() const { return "FMatMul"; }
  size_t GetInputTypeCount() const { return 2; }
  ONNXTensorElementDataType GetInputType(size_t) const {
    return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t) const {
    return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
};

}  // namespace

const OrtCustomOp* fmatmul_op() {
  static const FMatMulOp op;
  return &op;
}

}  // namespace ops
}  // namespace edgespec
