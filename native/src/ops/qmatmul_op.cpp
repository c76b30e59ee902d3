// ai.edgespec QMatMul: the ORT custom-op glue around qmatmul.h.
//   inputs: x float [..., K]; q uint8 [tiles, K / 32, 64 * bits]; scale float [tiles, K / 32, 16];
//           m float16 [tiles, K / 32, 16] (export/quantize.py pack_qtiles)
//   attributes: N (int, >= 1), bits (int, 4 or 8; default 4), zero_point (int, 0 .. 2^bits - 1;
//               default 0)
//   output: y float [..., N] = x @ W^T, W = scale * (q - zero_point) + m per block of 32 inputs
#include <algorithm>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "attention_op.h"
#include "qmatmul.h"

namespace edgespec {
namespace ops {
namespace {

constexpr int64_t kUnitTiles = 4;         // tiles (64 columns) per ParallelFor unit
constexpr int64_t kSerialWork = 1 << 15;  // below this many multiply-adds: one thread
constexpr int64_t kUnitRows = 16;         // rows per ParallelFor unit of the activation quantizer

[[noreturn]] void fail(const std::string& what) {
  throw std::invalid_argument("ai.edgespec.QMatMul: " + what);
}

struct Call {
  QWeights w;
  const float* x = nullptr;  // [rows, K]
  QRows a;                   // the quantized rows
  float* y = nullptr;        // [rows, n]
  int64_t rows = 0, n = 0;
};

// Quantizes rows [16 u, 16 u + 16) of x into c.a (rows quantize independently).
void quantize_unit(void* data, size_t u) {
  const Call& c = *static_cast<const Call*>(data);
  const int64_t r0 = static_cast<int64_t>(u) * kUnitRows, nr = std::min(kUnitRows, c.rows - r0);
  const int64_t b0 = r0 * c.w.nb;  // first block of row r0
  const QRows part{c.a.qx + b0 * kQBlock, c.a.d + b0, c.a.xs + b0, c.a.qs + b0};
  qmatmul_quantize_rows(c.x + b0 * kQBlock, nr, c.w.nb, part);
}

void run_unit(void* data, size_t u) {
  const Call& c = *static_cast<const Call*>(data);
  const int64_t t0 = static_cast<int64_t>(u) * kUnitTiles;
  const int64_t t1 = std::min(t0 + kUnitTiles, c.w.tiles);
  qmatmul_tiles(c.w, c.a, c.rows, t0, t1, c.y, c.n, c.n);
}

class QMatMulKernel {
 public:
  explicit QMatMulKernel(const OrtKernelInfo* raw) {
    int64_t n = 0;
    OrtStatus* status = Ort::GetApi().KernelInfoGetAttribute_int64(raw, "N", &n);
    if (status != nullptr) {
      Ort::GetApi().ReleaseStatus(status);
      fail("attribute N is missing");
    }
    if (n <= 0 || n > (int64_t{1} << 24)) fail("N must be in [1, 2^24], got " + std::to_string(n));
    n_ = n;
    const Ort::ConstKernelInfo info(raw);
    const int64_t bits = int_attr(info, "bits", 4);
    if (bits != 4 && bits != 8) fail("bits must be 4 or 8, got " + std::to_string(bits));
    bits_ = static_cast<int>(bits);
    const int64_t zp = int_attr(info, "zero_point", 0);
    if (zp < 0 || zp >= (int64_t{1} << bits_)) {
      fail("zero_point must be in [0, " + std::to_string((1 << bits_) - 1) + "], got " +
           std::to_string(zp));
    }
    zero_point_ = static_cast<int>(zp);
  }

  OrtStatusPtr ComputeV2(OrtKernelContext* raw) noexcept {
    return guarded([&] { compute(Ort::KernelContext(raw)); });
  }

 private:
  void compute(Ort::KernelContext ctx) const;
  int64_t n_ = 0;
  int bits_ = 4;
  int zero_point_ = 0;
};

// Checks the packed inputs against x's K and the attributes; returns the weights.
QWeights weights(const Ort::ConstValue& q, const Ort::ConstValue& s, const Ort::ConstValue& m,
                 int64_t k, int64_t n, int bits, int zero_point) {
  const std::vector<int64_t> qs = q.GetTensorTypeAndShapeInfo().GetShape();
  const std::vector<int64_t> ss = s.GetTensorTypeAndShapeInfo().GetShape();
  const std::vector<int64_t> ms = m.GetTensorTypeAndShapeInfo().GetShape();
  const int64_t tiles = (n + kQTile - 1) / kQTile, nb = k / kQBlock;
  const std::vector<int64_t> want_q = {tiles, nb, 64 * bits}, want_s = {tiles, nb, kQTile};
  if (k % kQBlock != 0) fail("K = " + std::to_string(k) + " is not a multiple of 32");
  if (qs != want_q || ss != want_s || ms != want_s) {
    fail("q " + shape_str(qs) + ", scale " + shape_str(ss) + ", m " + shape_str(ms) + " must be " +
         shape_str(want_q) + ", " + shape_str(want_s) + ", " + shape_str(want_s) + " for K " +
         std::to_string(k) + ", N " + std::to_string(n));
  }
  QWeights w;
  w.q = q.GetTensorData<uint8_t>();
  w.scale = s.GetTensorData<float>();
  w.m = reinterpret_cast<const uint16_t*>(m.GetTensorRawData());
  w.nb = nb;
  w.tiles = tiles;
  w.bits = bits;
  w.zero_point = zero_point;
  return w;
}

void QMatMulKernel::compute(Ort::KernelContext ctx) const {
  const Ort::ConstValue x = ctx.GetInput(0);
  std::vector<int64_t> shape = x.GetTensorTypeAndShapeInfo().GetShape();  // [..., K]
  if (shape.empty()) fail("x must have at least one dimension");
  const int64_t k = shape.back();
  Call c;
  c.w = weights(ctx.GetInput(1), ctx.GetInput(2), ctx.GetInput(3), k, n_, bits_, zero_point_);
  c.n = n_;
  c.rows = k > 0 ? x.GetTensorTypeAndShapeInfo().GetElementCount() / k : 0;
  shape.back() = n_;
  c.y = ctx.GetOutput(0, shape).GetTensorMutableData<float>();
  if (c.rows == 0) return;
  thread_local std::vector<int8_t> qx;   // int8 [rows, K]
  thread_local std::vector<float> dxs;   // [2, rows, nb]: d then xs
  thread_local std::vector<int32_t> qs;  // [rows, nb]
  const size_t blocks = static_cast<size_t>(c.rows * c.w.nb);
  if (qx.size() < blocks * kQBlock) qx.resize(blocks * kQBlock);
  if (dxs.size() < 2 * blocks) dxs.resize(2 * blocks);
  if (qs.size() < blocks) qs.resize(blocks);
  c.x = x.GetTensorData<float>();
  c.a = {qx.data(), dxs.data(), dxs.data() + blocks, qs.data()};
  if (c.rows > kUnitRows) {  // a prefill chunk: its quantization is worth the threads
    ctx.ParallelFor(quantize_unit, static_cast<size_t>((c.rows + kUnitRows - 1) / kUnitRows), 0,
                    &c);
  } else {
    qmatmul_quantize_rows(c.x, c.rows, c.w.nb, c.a);
  }
  const size_t units = static_cast<size_t>((c.w.tiles + kUnitTiles - 1) / kUnitTiles);
  if (c.rows * k * n_ < kSerialWork || units == 1) {
    qmatmul_tiles(c.w, c.a, c.rows, 0, c.w.tiles, c.y, n_, n_);
  } else {
    ctx.ParallelFor(run_unit, units, 0, &c);
  }
}

struct QMatMulOp : Ort::CustomOpBase<QMatMulOp, QMatMulKernel, true> {
  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const {
    return create_kernel<QMatMulKernel>(api, info, kernel);
  }
  const char* GetName() const { return "QMatMul"; }
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

const OrtCustomOp* qmatmul_op() {
  static const QMatMulOp op;
  return &op;
}

}  // namespace ops
}  // namespace edgespec
