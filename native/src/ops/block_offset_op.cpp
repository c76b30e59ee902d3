// ai.edgespec BlockOffset: the ORT custom-op glue around block_offset.h.
//   inputs: y float [..., N] (MatMulNBits' output), x float [..., K] (its input, same leading
//           dims), m float16 [K / block_size, N]; attribute block_size (int, > 0)
//   output: z float [..., N] = y + blocksum(x) @ m
#include <algorithm>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "attention_op.h"
#include "block_offset.h"

namespace edgespec {
namespace ops {
namespace {

constexpr int64_t kUnitCols = 256;        // columns per ParallelFor unit
constexpr int64_t kSerialWork = 1 << 13;  // below this many multiply-adds: one thread

[[noreturn]] void fail(const std::string& what) {
  throw std::invalid_argument("ai.edgespec.BlockOffset: " + what);
}

struct Call {
  const float* s = nullptr;     // [rows, nb] block sums
  const uint16_t* m = nullptr;  // float16 [nb, n]
  const float* y = nullptr;     // [rows, n]
  float* z = nullptr;           // [rows, n]
  int64_t rows = 0, nb = 0, n = 0;
};

void run_unit(void* data, size_t u) {
  const Call& c = *static_cast<const Call*>(data);
  const int64_t c0 = static_cast<int64_t>(u) * kUnitCols, c1 = std::min(c0 + kUnitCols, c.n);
  block_offset_cols(c.s, c.rows, c.nb, c.m, c.n, c0, c1, c.y, c.z);
}

class BlockOffsetKernel {
 public:
  explicit BlockOffsetKernel(const OrtKernelInfo* raw) {
    int64_t bs = 0;
    OrtStatus* status = Ort::GetApi().KernelInfoGetAttribute_int64(raw, "block_size", &bs);
    if (status != nullptr) {
      Ort::GetApi().ReleaseStatus(status);
      fail("attribute block_size is missing");
    }
    if (bs <= 0 || bs > (1 << 16))
      fail("block_size must be in [1, 65536], got " + std::to_string(bs));
    block_size_ = static_cast<int>(bs);
  }

  OrtStatusPtr ComputeV2(OrtKernelContext* raw) noexcept {
    return guarded([&] { compute(Ort::KernelContext(raw)); });
  }

 private:
  void compute(Ort::KernelContext ctx) const;
  int block_size_ = 0;
};

void BlockOffsetKernel::compute(Ort::KernelContext ctx) const {
  const Ort::ConstValue y = ctx.GetInput(0), x = ctx.GetInput(1), m = ctx.GetInput(2);
  const std::vector<int64_t> ys = y.GetTensorTypeAndShapeInfo().GetShape();
  const std::vector<int64_t> xs = x.GetTensorTypeAndShapeInfo().GetShape();
  const std::vector<int64_t> ms = m.GetTensorTypeAndShapeInfo().GetShape();
  if (ys.empty() || xs.size() != ys.size() || !std::equal(ys.begin(), ys.end() - 1, xs.begin())) {
    fail("y " + shape_str(ys) + " and x " + shape_str(xs) + " need the same leading dims");
  }
  const int64_t n = ys.back(), k = xs.back();
  if (ms.size() != 2 || ms[1] != n || ms[0] * block_size_ != k) {
    fail("m " + shape_str(ms) + " must be [K / block_size, N] = [" + std::to_string(k) + " / " +
         std::to_string(block_size_) + ", " + std::to_string(n) + "]");
  }
  Call c;
  c.n = n;
  c.nb = ms[0];
  c.rows = n > 0 ? y.GetTensorTypeAndShapeInfo().GetElementCount() / n : 0;
  c.m = reinterpret_cast<const uint16_t*>(m.GetTensorRawData());
  c.y = y.GetTensorData<float>();
  c.z = ctx.GetOutput(0, ys).GetTensorMutableData<float>();
  if (c.rows == 0 || n == 0) return;
  thread_local std::vector<float> sums;  // [rows, nb]
  if (sums.size() < static_cast<size_t>(c.rows * c.nb)) sums.resize(c.rows * c.nb);
  block_sums(x.GetTensorData<float>(), c.rows, c.nb, block_size_, sums.data());
  c.s = sums.data();
  const size_t units = static_cast<size_t>((n + kUnitCols - 1) / kUnitCols);
  if (c.rows * c.nb * n < kSerialWork || units == 1) {
    block_offset_cols(c.s, c.rows, c.nb, c.m, n, 0, n, c.y, c.z);
  } else {
    ctx.ParallelFor(run_unit, units, 0, &c);
  }
}

struct BlockOffsetOp : Ort::CustomOpBase<BlockOffsetOp, BlockOffsetKernel, true> {
  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const {
    return create_kernel<BlockOffsetKernel>(api, info, kernel);
  }
  const char* GetName() const { return "BlockOffset"; }
  size_t GetInputTypeCount() const { return 3; }
  ONNXTensorElementDataType GetInputType(size_t i) const {
    return i == 2 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t) const {
    return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
};

}  // namespace

const OrtCustomOp* block_offset_op() {
  static const BlockOffsetOp op;
  return &op;
}

}  // namespace ops
}  // namespace edgespec
