// ai.edgespec GroupQueryAttention: the ORT custom-op glue around row_attention.h (see
// attention_op.h for the contract).
#include "attention_op.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "row_attention.h"

namespace edgespec {
namespace ops {
namespace {

// Input and output slots (com.microsoft GroupQueryAttention's order, then edgespec's tree).
enum Input {
  kQuery,
  kKey,
  kValue,
  kPastKey,
  kPastValue,
  kSeqlensK,
  kTotalLength,
  kCos,
  kSin,
  kTreeParents
};
enum Output { kOut, kPresentKey, kPresentValue };

float float_attr(const Ort::ConstKernelInfo& info, const char* name, float fallback) {
  float value = fallback;
  OrtStatus* status = Ort::GetApi().KernelInfoGetAttribute_float(info, name, &value);
  if (status != nullptr) Ort::GetApi().ReleaseStatus(status);
  return status != nullptr ? fallback : value;
}

// A tensor's shape in a fixed array. On a good path a call allocates nothing of its own (error
// messages are built only on failure); ORT allocates one shape-info object per queried input.
// Ranks above 4 keep their rank, not their dims.
struct Dims {
  size_t rank = 0;
  int64_t d[4] = {0, 0, 0, 0};

  bool operator==(const Dims& o) const {
    return rank == o.rank && std::equal(d, d + std::min<size_t>(rank, 4), o.d);
  }
  std::string str() const {
    std::string out = "[";
    for (size_t i = 0; i < std::min<size_t>(rank, 4); ++i) {
      out += (i ? ", " : "") + std::to_string(d[i]);
    }
    return out + (rank > 4 ? ", ...]" : "]");
  }
};

Dims dims_of(const Ort::ConstValue& v) {
  Dims out;
  const Ort::TensorTypeAndShapeInfo info = v.GetTensorTypeAndShapeInfo();
  out.rank = info.GetDimensionsCount();
  if (out.rank <= 4) Ort::ThrowOnError(Ort::GetApi().GetDimensions(info, out.d, out.rank));
  return out;
}

[[noreturn]] void fail(const std::string& what) {
  throw std::invalid_argument("ai.edgespec.GroupQueryAttention: " + what);
}

void expect(bool ok, const char* what) {  // a constant message: no allocation when ok
  if (!ok) fail(what);
}

// Input `index` (`name` in errors), which must be present.
Ort::ConstValue required(Ort::KernelContext& ctx, size_t index, const char* name) {
  Ort::ConstValue v = ctx.GetInput(index);
  if (static_cast<const OrtValue*>(v) == nullptr)
    fail(std::string("input ") + name + " is missing");
  return v;
}

// The one int32 of input `index` (seqlens_k: [1] for batch 1; total_sequence_length: []).
int32_t one_int(Ort::KernelContext& ctx, size_t index, const char* name) {
  Ort::ConstValue v = required(ctx, index, name);
  const size_t count = v.GetTensorTypeAndShapeInfo().GetElementCount();
  if (count != 1) {
    fail(std::string(name) + " must hold one value (batch 1), got " + std::to_string(count));
  }
  return v.GetTensorData<int32_t>()[0];
}

// A verify call's token tree (input tree_parents, int32 [S]): row i's parent is row parents[i]
// (-1: the past), so it sits at position past + depth(i) and attends to the past and then to its
// ancestors (itself included) in increasing row order: exactly the keys, in the same order, of
// the same tokens verified as a chain. A chain (parents[i] == i - 1) takes the plain path.
constexpr int kMaxTree = 64;  // rows of a tree call (the engine's widest verify)
struct Tree {
  int32_t depth[kMaxTree];                      // [S]: root rows 0
  int32_t at[kMaxTree];                         // [S]: row i's ancestors start at rows[at[i]]
  int32_t rows[kMaxTree * (kMaxTree + 1) / 2];  // ancestors' cache rows (past + row)
};

// One call's sizes and buffers (batch 1). Rows i < seq are the new tokens at positions past + i;
// unit u = (block b of unit_rows rows) x (unit_heads query heads from h0). A chain call runs up to
// kMaxRows rows per unit, which then share each key block while it is in L1: a verify call's rows
// read a head's keys and values once instead of once per row (int4, 450 cached positions, width
// 5: the op's time 3.3 -> 2.5 ms against one row per unit), and a prefill chunk's blocks of
// kMaxRows (a 768-token prompt in 256-token chunks: 1.03x GroupQueryAttention's time, 1.12x with
// one row per unit). A narrow call (kGroupVectors) or a tree call also gives a unit all the
// query heads of a key/value group, which share each key block too (a tree runs one row per
// unit: its rows gather different ancestors).

// Rows x heads of a group up to which a chain call's unit takes the whole group (a one-row call
// always does). The op's time per forward over SmolLM2's 30 layers (9 query heads, 3 key/value
// heads; int4 target, ORT profiler, interleaved), one unit per head -> per group, at 450 / 1500
// cached positions: width 1 2.63 -> 2.00 / 6.06 -> 4.04 ms, width 2 2.86 -> 2.16 / 7.38 ->
// 4.98, width 3 3.09 -> 2.67 / 7.81 -> 6.47, width 4 2.72 -> 2.69 / 10.04 -> 9.57, width 5 about
// even, width 7 3.72 -> 3.93 / 14.0 -> 14.7 (3 units for 2 threads leave one idle half the time).
constexpr int kGroupVectors = 12;

struct Call {
  int seq = 0, past = 0, capacity = 0, dim = 0, num_heads = 0, kv_heads = 0, half = 0;
  int unit_rows = 1;                // query rows per unit (1 for a tree, else <= kMaxRows)
  int unit_heads = 1;               // query heads per unit: 1, or a whole key/value group
  int64_t q_stride = 0;             // floats between consecutive rows of q
  float scale = 0;                  // softmax scale
  const float* q = nullptr;         // [seq, q_stride]: query head h at h * dim
  const float* cos = nullptr;       // [max_pos, half] (rotary only)
  const float* sin = nullptr;       // [max_pos, half]
  float* present_key = nullptr;     // [kv_heads, capacity, dim]
  float* present_value = nullptr;   // [kv_heads, capacity, dim]
  float* out = nullptr;             // [seq, num_heads * dim]
  const Tree* tree = nullptr;       // null: row i at position past + i, seeing keys < past + i + 1
  std::atomic<bool> failed{false};  // a unit could not get its scratch memory

  int position(int i) const { return past + (tree != nullptr ? tree->depth[i] : i); }
};

// The unit's query vectors, row-major from row i0 and head h0 (see run_unit), rotated at their
// positions, into q [nv, dim], and the keys each one sees into n [nv].
void load_queries(const Call& c, int i0, int h0, int nv, float* q, int32_t* n) {
  for (int x = 0; x < nv; ++x) {
    const int i = i0 + x / c.unit_heads, h = h0 + x % c.unit_heads;
    float* qx = q + static_cast<int64_t>(x) * c.dim;
    std::memcpy(qx, c.q + i * c.q_stride + static_cast<int64_t>(h) * c.dim, sizeof(float) * c.dim);
    if (c.half > 0) rotate_half(qx, c.position(i), c.cos, c.sin, c.half);
    n[x] = c.position(i) + 1;
  }
}

// Attention of unit u (see Call) into c.out. Its vectors, row-major: vector x is row
// i0 + x / unit_heads, query head h0 + x % unit_heads, seeing the keys before its position.
void run_unit(void* data, size_t u) {
  Call& c = *static_cast<Call*>(data);
  const int per_block = c.num_heads / c.unit_heads;  // units per block of rows
  const int b = static_cast<int>(u / per_block);
  const int h0 = static_cast<int>(u % per_block) * c.unit_heads;
  const int g = h0 / (c.num_heads / c.kv_heads);  // the heads' key/value group
  const int i0 = b * c.unit_rows, nv = std::min(c.unit_rows, c.seq - i0) * c.unit_heads;
  KeyRows rows;  // a tree row (unit_rows 1) gathers its ancestors
  if (c.tree != nullptr) rows = {c.past, c.tree->rows + c.tree->at[i0]};
  const int64_t stride = (c.position(i0 + (nv - 1) / c.unit_heads) + 8) / 8 * 8;  // keys + 1 up
  const bool gather = c.unit_heads > 1 && nv > c.unit_heads;  // outputs not one stride apart
  thread_local std::vector<float> scratch;  // q [nv, dim], scores [nv, stride], out [nv, dim]
  const size_t need = static_cast<size_t>(nv) * (c.dim * (gather ? 2 : 1) + stride);
  try {
    if (scratch.size() < need) scratch.resize(need);
  } catch (const std::exception&) {
    c.failed = true;
    return;
  }
  float* q = scratch.data();  // [nv, dim]
  int32_t n[kMaxVectors];     // [nv]: keys each vector sees
  load_queries(c, i0, h0, nv, q, n);
  const int64_t head = static_cast<int64_t>(g) * c.capacity * c.dim;  // [capacity, dim] offset
  const int64_t out_stride = static_cast<int64_t>(c.num_heads) * c.dim;
  float* scores = q + static_cast<int64_t>(nv) * c.dim;                     // [nv, stride]
  float* out = c.out + i0 * out_stride + static_cast<int64_t>(h0) * c.dim;  // vector 0's row
  if (gather) out = scores + nv * stride;                                   // [nv, dim]
  attend_rows(q, nv, n, c.present_key + head, c.present_value + head, c.dim, c.scale, scores,
              stride, out, c.unit_heads > 1 ? c.dim : out_stride, rows);
  for (int x = 0; gather && x < nv; ++x) {  // vector x to row i0 + x / unit_heads
    const int i = i0 + x / c.unit_heads, h = h0 + x % c.unit_heads;
    std::memcpy(c.out + i * out_stride + static_cast<int64_t>(h) * c.dim, out + x * c.dim,
                sizeof(float) * c.dim);
  }
}

// Copies the new rows' keys and values into cache slots past + i (keys rotated at position(i)).
void write_kv(const Call& c, const float* k, const float* v, int64_t kv_stride) {
  for (int i = 0; i < c.seq; ++i) {
    for (int g = 0; g < c.kv_heads; ++g) {
      const int64_t slot = (static_cast<int64_t>(g) * c.capacity + c.past + i) * c.dim;
      const int64_t src = i * kv_stride + static_cast<int64_t>(g) * c.dim;
      std::memcpy(c.present_key + slot, k + src, sizeof(float) * c.dim);
      std::memcpy(c.present_value + slot, v + src, sizeof(float) * c.dim);
      if (c.half > 0) rotate_half(c.present_key + slot, c.position(i), c.cos, c.sin, c.half);
    }
  }
}

// Reads the optional tree_parents input into tree; false when absent or a chain.
bool read_tree(Ort::KernelContext& ctx, const Call& c, Tree& tree) {
  const Ort::ConstValue in = ctx.GetInput(kTreeParents);
  if (static_cast<const OrtValue*>(in) == nullptr) return false;
  const Dims ts = dims_of(in);
  if (ts.rank != 1 || ts.d[0] != c.seq) {
    fail("tree_parents must be [S] = [" + std::to_string(c.seq) + "], got " + ts.str());
  }
  const int32_t* parent = in.GetTensorData<int32_t>();
  bool chain = true;
  for (int i = 0; i < c.seq; ++i) chain = chain && parent[i] == i - 1;
  if (chain) return false;
  if (c.seq > kMaxTree) {
    fail("a tree of " + std::to_string(c.seq) + " rows exceeds " + std::to_string(kMaxTree));
  }
  int n = 0;  // entries of tree.rows written
  for (int i = 0; i < c.seq; ++i) {
    const int p = parent[i];
    if (p < -1 || p >= i) {
      fail("tree_parents[" + std::to_string(i) + "] = " + std::to_string(p) + " is not in [-1, " +
           std::to_string(i) + ")");
    }
    tree.depth[i] = p < 0 ? 0 : tree.depth[p] + 1;
    tree.at[i] = n;
    if (p >= 0) {  // the parent's ancestors, then the row itself
      std::copy_n(tree.rows + tree.at[p], tree.depth[p] + 1, tree.rows + n);
      n += tree.depth[p] + 1;
    }
    tree.rows[n++] = c.past + i;
  }
  return true;
}

class AttentionKernel {
 public:
  explicit AttentionKernel(const OrtKernelInfo* raw) {
    Ort::ConstKernelInfo info(raw);
    num_heads_ = static_cast<int>(int_attr(info, "num_heads", 0));
    kv_heads_ = static_cast<int>(int_attr(info, "kv_num_heads", 0));
    scale_ = float_attr(info, "scale", 0.0f);
    rotary_ = int_attr(info, "do_rotary", 0) != 0;
    if (num_heads_ <= 0 || kv_heads_ <= 0 || num_heads_ % kv_heads_ != 0) {  // once, at load
      fail("num_heads " + std::to_string(num_heads_) + " must be a positive multiple of " +
           "kv_num_heads " + std::to_string(kv_heads_));
    }
    expect(int_attr(info, "rotary_interleaved", 0) == 0, "rotary_interleaved=1 is not supported");
    expect(int_attr(info, "local_window_size", -1) == -1, "local_window_size is not supported");
    expect(float_attr(info, "softcap", 0.0f) == 0.0f, "softcap is not supported");
    expect(int_attr(info, "smooth_softmax", 0) == 0, "smooth_softmax is not supported");
  }

  OrtStatusPtr ComputeV2(OrtKernelContext* raw) noexcept {
    return guarded([&] { compute(Ort::KernelContext(raw)); });
  }

 private:
  void compute(Ort::KernelContext ctx) const;
  void prepare(Ort::KernelContext& ctx, Call& c) const;
  void bind_rotary(Ort::KernelContext& ctx, int total, Call& c) const;

  int num_heads_ = 0, kv_heads_ = 0;
  float scale_ = 0;
  bool rotary_ = false;
};

// Checks shapes and lengths, binds the outputs; copies past into present when they differ.
void AttentionKernel::prepare(Ort::KernelContext& ctx, Call& c) const {
  const auto query = ctx.GetInput(kQuery), past_key = ctx.GetInput(kPastKey);
  const auto past_value = ctx.GetInput(kPastValue);
  const Dims qs = dims_of(query), ks = dims_of(past_key);  // [1, S, width], [1, G, C, D]
  if (qs.rank != 3 || qs.d[0] != 1) fail("query must be [1, S, width], got " + qs.str());
  const Dims vs = dims_of(past_value);
  if (ks.rank != 4 || ks.d[0] != 1 || ks.d[1] != kv_heads_ || !(vs == ks)) {
    fail("past_key/past_value must both be [1, kv_num_heads, capacity, head_dim], got " + ks.str() +
         " and " + vs.str());
  }
  c.seq = static_cast<int>(qs.d[1]), c.capacity = static_cast<int>(ks.d[2]);
  c.dim = static_cast<int>(ks.d[3]), c.num_heads = num_heads_, c.kv_heads = kv_heads_;
  const int total = one_int(ctx, kSeqlensK, "seqlens_k") + 1;
  const int total_in = one_int(ctx, kTotalLength, "total_sequence_length");
  c.past = total - c.seq;
  if (total != total_in || c.past < 0 || total > c.capacity) {
    fail("seqlens_k + 1 = " + std::to_string(total) + " and total_sequence_length " +
         std::to_string(total_in) + " must agree, cover the " + std::to_string(c.seq) +
         " new tokens and fit the capacity " + std::to_string(c.capacity));
  }
  c.scale = scale_ != 0.0f ? scale_ : 1.0f / std::sqrt(static_cast<float>(c.dim));
  c.q = query.GetTensorData<float>();
  c.q_stride = qs.d[2];
  if (rotary_) bind_rotary(ctx, total, c);
  const int64_t out_dims[3] = {1, qs.d[1], int64_t{num_heads_} * c.dim};  // [1, S, NQ * D]
  c.out = ctx.GetOutput(kOut, out_dims, 3).GetTensorMutableData<float>();
  c.present_key = ctx.GetOutput(kPresentKey, ks.d, 4).GetTensorMutableData<float>();
  c.present_value = ctx.GetOutput(kPresentValue, ks.d, 4).GetTensorMutableData<float>();
  const size_t bytes = sizeof(float) * kv_heads_ * c.capacity * c.dim;
  const float* pk = past_key.GetTensorData<float>();
  const float* pv = past_value.GetTensorData<float>();
  if (c.present_key != pk) std::memcpy(c.present_key, pk, bytes);  // not a shared buffer
  if (c.present_value != pv) std::memcpy(c.present_value, pv, bytes);
}

// cos_cache / sin_cache: [>= total, half] each, 2 half <= head_dim.
void AttentionKernel::bind_rotary(Ort::KernelContext& ctx, int total, Call& c) const {
  const Ort::ConstValue cos = required(ctx, kCos, "cos_cache (do_rotary=1)");
  const Ort::ConstValue sin = required(ctx, kSin, "sin_cache (do_rotary=1)");
  const Dims cs = dims_of(cos), ss = dims_of(sin);  // [max_pos, half]
  if (cs.rank != 2 || 2 * cs.d[1] > c.dim || cs.d[0] < total || !(ss == cs)) {
    fail("cos_cache / sin_cache " + cs.str() + " / " + ss.str() +
         " must both be [>= " + std::to_string(total) + ", <= " + std::to_string(c.dim / 2) + "]");
  }
  c.half = static_cast<int>(cs.d[1]);
  c.cos = cos.GetTensorData<float>();
  c.sin = sin.GetTensorData<float>();
}

void AttentionKernel::compute(Ort::KernelContext ctx) const {
  Call c;
  prepare(ctx, c);
  Tree tree;  // ~8.6 KiB on the stack: no allocation per call
  if (read_tree(ctx, c, tree)) c.tree = &tree;
  const auto key = ctx.GetInput(kKey);
  const int64_t q_width = int64_t{num_heads_} * c.dim, kv_width = int64_t{kv_heads_} * c.dim;
  if (static_cast<const OrtValue*>(key) == nullptr) {  // packed [q | k | v] rows
    if (c.q_stride != q_width + 2 * kv_width) {
      fail("packed query width " + std::to_string(c.q_stride) +
           " must be (num_heads + 2 kv_num_heads) head_dim = " +
           std::to_string(q_width + 2 * kv_width));
    }
    write_kv(c, c.q + q_width, c.q + q_width + kv_width, c.q_stride);
  } else {
    const Ort::ConstValue value = required(ctx, kValue, "value (with key)");
    const Dims want{3, {1, c.seq, kv_width, 0}}, ks = dims_of(key), vs = dims_of(value);
    if (c.q_stride != q_width || !(ks == want) || !(vs == want)) {
      fail(
          "query / key / value must be [1, S, num_heads head_dim] / [1, S, kv_num_heads "
          "head_dim] x 2, got width " +
          std::to_string(c.q_stride) + " / " + ks.str() + " / " + vs.str());
    }
    write_kv(c, key.GetTensorData<float>(), value.GetTensorData<float>(), kv_width);
  }
  const int group = num_heads_ / kv_heads_;  // query heads per key/value head
  const bool grouped =
      group <= kMaxVectors && (c.tree != nullptr || c.seq == 1 || c.seq * group <= kGroupVectors);
  c.unit_heads = grouped ? group : 1;
  c.unit_rows = c.tree != nullptr ? 1 : std::min({c.seq, kMaxRows, kMaxVectors / c.unit_heads});
  const size_t blocks = (c.seq + c.unit_rows - 1) / c.unit_rows;
  ctx.ParallelFor(run_unit, blocks * (num_heads_ / c.unit_heads), 0, &c);
  if (c.failed) throw std::runtime_error("ai.edgespec.GroupQueryAttention: out of memory");
}

struct AttentionOp : Ort::CustomOpBase<AttentionOp, AttentionKernel, true> {
  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const {
    return create_kernel<AttentionKernel>(api, info, kernel);
  }
  const char* GetName() const { return "GroupQueryAttention"; }
  size_t GetInputTypeCount() const { return 10; }
  ONNXTensorElementDataType GetInputType(size_t i) const {
    return i == kSeqlensK || i == kTotalLength || i == kTreeParents
               ? ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32
               : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t i) const {
    const bool optional = i == kKey || i == kValue || i == kCos || i == kSin || i == kTreeParents;
    return optional ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
  }
  size_t GetOutputTypeCount() const { return 3; }
  ONNXTensorElementDataType GetOutputType(size_t) const {
    return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
};

}  // namespace

std::string shape_str(const std::vector<int64_t>& d) {
  std::string out = "[";
  for (size_t i = 0; i < d.size(); ++i) out += (i ? ", " : "") + std::to_string(d[i]);
  return out + "]";
}

int64_t int_attr(const Ort::ConstKernelInfo& info, const char* name, int64_t fallback) {
  int64_t value = fallback;
  OrtStatus* status = Ort::GetApi().KernelInfoGetAttribute_int64(info, name, &value);
  if (status != nullptr) Ort::GetApi().ReleaseStatus(status);  // absent: the default
  return status != nullptr ? fallback : value;
}

Ort::CustomOpDomain& domain() {
  static Ort::CustomOpDomain* d = [] {
    auto* dom = new Ort::CustomOpDomain(kDomain);
    dom->Add(new AttentionOp());  // leaked with the domain (see attention_op.h)
    dom->Add(block_offset_op());
    dom->Add(qmatmul_op());
    dom->Add(fmatmul_op());
    return dom;
  }();
  return *d;
}

}  // namespace ops
}  // namespace edgespec
