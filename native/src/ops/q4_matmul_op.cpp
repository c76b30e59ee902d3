// ai.edgespec Q4MatMul: the ORT custom-op glue around q4_matmul.h.
//   inputs: x float [..., K]; q uint8 [tiles, K / 32, 256]; scale float [tiles, K / 32, 16];
//           m float16 [tiles, K / 32, 16] (export/quantize.py pack_q4_tiles)
//   attribute: N (int, 1 <= N <= 16 tiles)
//   output: y float [..., N] = x @ W^T, W = scale * q + m per block of 32 inputs
#include <algorithm>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "attention_op.h"
#include "q4_matmul.h"

namespace edgespec {
namespace ops {
namespace {

constexpr int64_t kUnitTiles = 4;         // tiles (64 columns) per ParallelFor unit
constexpr int64_t kSerialWork = 1 << 15;  // below this many multiply-adds: one thread

[[noreturn]] void fail(const std::string& what) {
  throw std::invalid_argument("ai.edgespec.Q4MatMul: " + what);
}

std::string shape_str(const std::vector<int64_t>& d) {
  std::string out = "[";
  for (size_t i = 0; i < d.size(); ++i) out += (i ? ", " : "") + std::to_string(d[i]);
  return out + "]";
}

struct Call {
  Q4Weights w;
  const int8_t* qx = nullptr;  // int8 [rows, K]
  const float* d = nullptr;    // [rows, nb]
  const float* xs = nullptr;   // [rows, nb]
  float* y = nullptr;          // [rows, n]
  int64_t rows = 0, n = 0;
};

void run_unit(void* data, size_t u) {
  const Call& c = *static_cast<const Call*>(data);
  const int64_t t0 = static_cast<int64_t>(u) * kUnitTiles;
  const int64_t t1 = std::min(t0 + kUnitTiles, c.w.tiles);
  q4_matmul_tiles(c.w, c.qx, c.d, c.xs, c.rows, t0, t1, c.y, c.n, c.n);
}

class Q4MatMulKernel {
 public:
  explicit Q4MatMulKernel(const OrtKernelInfo* raw) {
    int64_t n = 0;
    OrtStatus* status = Ort::GetApi().KernelInfoGetAttribute_int64(raw, "N", &n);
    if (status != nullptr) {
      Ort::GetApi().ReleaseStatus(status);
      fail("attribute N is missing");
    }
    if (n <= 0 || n > (int64_t{1} << 24)) fail("N must be in [1, 2^24], got " + std::to_string(n));
    n_ = n;
  }

  OrtStatusPtr ComputeV2(OrtKernelContext* raw) noexcept {
    try {
      compute(Ort::KernelContext(raw));
      return nullptr;
    } catch (const std::exception& err) {
      return Ort::GetApi().CreateStatus(ORT_RUNTIME_EXCEPTION, err.what());
    }
  }

 private:
  void compute(Ort::KernelContext ctx) const;
  int64_t n_ = 0;
};

// Checks the packed inputs against x's K and the attribute N; returns the weights.
Q4Weights weights(const Ort::ConstValue& q, const Ort::ConstValue& s, const Ort::ConstValue& m,
                  int64_t k, int64_t n) {
  const std::vector<int64_t> qs = q.GetTensorTypeAndShapeInfo().GetShape();
  const std::vector<int64_t> ss = s.GetTensorTypeAndShapeInfo().GetShape();
  const std::vector<int64_t> ms = m.GetTensorTypeAndShapeInfo().GetShape();
  const int64_t tiles = (n + kQ4Tile - 1) / kQ4Tile, nb = k / kQ4Block;
  const std::vector<int64_t> want_q = {tiles, nb, 256}, want_s = {tiles, nb, kQ4Tile};
  if (k % kQ4Block != 0) fail("K = " + std::to_string(k) + " is not a multiple of 32");
  if (qs != want_q || ss != want_s || ms != want_s) {
    fail("q " + shape_str(qs) + ", scale " + shape_str(ss) + ", m " + shape_str(ms) + " must be " +
         shape_str(want_q) + ", " + shape_str(want_s) + ", " + shape_str(want_s) + " for K " +
         std::to_string(k) + ", N " + std::to_string(n));
  }
  Q4Weights w;
  w.q = q.GetTensorData<uint8_t>();
  w.scale = s.GetTensorData<float>();
  w.m = reinterpret_cast<const uint16_t*>(m.GetTensorRawData());
  w.nb = nb;
  w.tiles = tiles;
  return w;
}

void Q4MatMulKernel::compute(Ort::KernelContext ctx) const {
  const Ort::ConstValue x = ctx.GetInput(0);
  std::vector<int64_t> shape = x.GetTensorTypeAndShapeInfo().GetShape();  // [..., K]
  if (shape.empty()) fail("x must have at least one dimension");
  const int64_t k = shape.back();
  Call c;
  c.w = weights(ctx.GetInput(1), ctx.GetInput(2), ctx.GetInput(3), k, n_);
  c.n = n_;
  c.rows = k > 0 ? x.GetTensorTypeAndShapeInfo().GetElementCount() / k : 0;
  shape.back() = n_;
  c.y = ctx.GetOutput(0, shape).GetTensorMutableData<float>();
  if (c.rows == 0) return;
  thread_local std::vector<int8_t> qx;  // int8 [rows, K]
  thread_local std::vector<float> dxs;  // [2, rows, nb]: d then xs
  const size_t blocks = static_cast<size_t>(c.rows * c.w.nb);
  if (qx.size() < blocks * kQ4Block) qx.resize(blocks * kQ4Block);
  if (dxs.size() < 2 * blocks) dxs.resize(2 * blocks);
  q4_quantize_rows(x.GetTensorData<float>(), c.rows, c.w.nb, qx.data(), dxs.data(),
                   dxs.data() + blocks);
  c.qx = qx.data();
  c.d = dxs.data();
  c.xs = dxs.data() + blocks;
  const size_t units = static_cast<size_t>((c.w.tiles + kUnitTiles - 1) / kUnitTiles);
  if (c.rows * k * n_ < kSerialWork || units == 1) {
    q4_matmul_tiles(c.w, c.qx, c.d, c.xs, c.rows, 0, c.w.tiles, c.y, n_, n_);
  } else {
    ctx.ParallelFor(run_unit, units, 0, &c);
  }
}

struct Q4MatMulOp : Ort::CustomOpBase<Q4MatMulOp, Q4MatMulKernel, true> {
  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const {
    return create_kernel<Q4MatMulKernel>(api, info, kernel);
  }
  const char* GetName() const { return "Q4MatMul"; }
  size_t GetInputTypeCount() const { return 4; }
  ONNXTensorElementDataType GetInputType(size_t i) const {
    return i == 1   ? ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8
           : i == 3 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16
                    : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t) const {
    return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
};

}  // namespace

const OrtCustomOp* q4_matmul_op() {
  static const Q4MatMulOp op;
  return &op;
}

}  // namespace ops
}  // namespace edgespec
