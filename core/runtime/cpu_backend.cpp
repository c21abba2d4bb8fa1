// The CPU backend: runs a graph on a persistent thread pool. Weights are read in place from the
// mapped file (no copy); activations live in one arena whose blocks are reused once their last
// reader has run. Every node is split between all threads, which meet at a barrier after it.
#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <numeric>
#include <vector>

#include "cpu/ops.hpp"
#include "cpu/quants.hpp"
#include "runtime/backend.hpp"
#include "runtime/thread_pool.hpp"

namespace archreg::runtime {
namespace {

namespace kc = kernels::cpu;
using Op = Node::Op;

constexpr int64_t kAlign = 64;
constexpr int64_t kTokenTile = 16;  // activation rows a weight row is reused for while in cache

int64_t align_up(int64_t n) {
  return (n + kAlign - 1) / kAlign * kAlign;
}

std::pair<int64_t, int64_t> share(int64_t n, int ith, int nth) {
  return {n * ith / nth, n * (ith + 1) / nth};
}

const std::byte* row_of(const TensorView& w, int64_t row, int64_t matrix = 0) {
  return w.data() + static_cast<uint64_t>(row) * w.nb[1] + static_cast<uint64_t>(matrix) * w.nb[2];
}

int64_t act_row_bytes(int32_t weight_type, int64_t n) {
  return static_cast<int64_t>(kc::row_size(kc::vec_dot_type(weight_type), n));
}

// Chunk of rows a thread takes at a time from a dynamically split product: small enough to
// balance two busy cores, large enough that taking one costs nothing next to its dots.
int64_t row_chunk(int64_t rows, int nth) {
  return std::max<int64_t>(1, rows / (static_cast<int64_t>(nth) * 16));
}

// y[i * y_stride] = dot(weight row, activation row i) (* *scale) (+ *bias) for i < count, where
// activation row i is xq + column(i) * xq_row: the multi-column kernels decode the weight row once
// per kMaxCols.
template <typename Column>
void dot_columns(int32_t type, int64_t k, const std::byte* wr, const std::byte* xq, int64_t xq_row, int64_t count, Column&& column,
                 float* y, int64_t y_stride, const float* bias = nullptr, const float* scale = nullptr) {
  const void* rows[kTokenTile];
  float dots[kTokenTile];
  for (int64_t c0 = 0; c0 < count; c0 += kTokenTile) {
    const int64_t nc = std::min(kTokenTile, count - c0);
    for (int64_t i = 0; i < nc; ++i) rows[i] = xq + column(c0 + i) * xq_row;
    kc::vec_dot_cols(type, k, wr, rows, nc, dots);
    if (scale != nullptr) {
      for (int64_t i = 0; i < nc; ++i) dots[i] *= *scale;
    }
    if (bias != nullptr) {
      for (int64_t i = 0; i < nc; ++i) dots[i] += *bias;
    }
    for (int64_t i = 0; i < nc; ++i) y[(c0 + i) * y_stride] = dots[i];
  }
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int n_threads) : pool_(n_threads) {}

  std::string name() const override { return fmt::format("cpu ({} threads, {})", pool_.size(), kc::isa()); }

  std::optional<std::string> unsupported(const Node& node) const override {
    if (node.is_weight() && !kc::supported(node.weight->type)) {
      return fmt::format("{} is stored as {}, which it has no kernel for", node.weight->name, gguf::ggml_type_label(node.weight->type));
    }
    return std::nullopt;
  }

  void allocate_kv(std::span<const std::array<int64_t, 2>> widths, int64_t n_ctx) override {
    n_ctx_ = n_ctx;
    k_cache_.assign(widths.size(), {});
    v_cache_.assign(widths.size(), {});
    kv_bytes_ = 0;
    for (size_t l = 0; l < widths.size(); ++l) {
      k_cache_[l].assign(static_cast<size_t>(widths[l][0] * n_ctx), 0.0f);
      v_cache_[l].assign(static_cast<size_t>(widths[l][1] * n_ctx), 0.0f);
      kv_bytes_ += static_cast<uint64_t>((widths[l][0] + widths[l][1]) * n_ctx) * sizeof(float);
    }
    kv_widths_.assign(widths.begin(), widths.end());
  }

  uint64_t kv_bytes() const override { return kv_bytes_; }

  // Storages stay where the file maps them; only the paging advice differs by role. An
  // embedding table is read a few rows per token: no readahead. Matrices are read whole at
  // every token: paged in now, in the background, rather than fault by fault during the first
  // token. Experts are read where routed, and small vectors are copied to F32 by prepare: the
  // kernel's default paging.
  void place(std::span<const std::unique_ptr<Storage>> storages) override {
    const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    for (const auto& storage : storages) {
      if (storage->kind != Storage::Kind::kMapped || storage->bytes == 0) continue;
      int advice = 0;
      if (storage->role == spec::Role::kEmbedding) advice = MADV_RANDOM;
      if (storage->role == spec::Role::kMatrix) advice = MADV_WILLNEED;
      if (advice == 0) continue;
      const auto begin = reinterpret_cast<uintptr_t>(storage->host) & ~(page - 1);
      const auto end = reinterpret_cast<uintptr_t>(storage->host) + storage->bytes;
      // Advice only: a file read into memory (not mapped) refuses it harmlessly.
      (void)madvise(reinterpret_cast<void*>(begin), end - begin, advice);
    }
  }

  void prepare(Graph& graph) override {
    plan_arena(graph, [&](const Node& n) { return scratch_for(n); });
    if (graph.arena_bytes > static_cast<int64_t>(arena_.size()))
      arena_.assign(static_cast<size_t>(graph.arena_bytes) / sizeof(float) + 16, 0.0f);
    if (graph.scratch_bytes > static_cast<int64_t>(scratch_.size()))
      scratch_.assign(static_cast<size_t>(graph.scratch_bytes) + kAlign, std::byte{0});
    // Weights read as rows of floats (not through vec_dot): dequantized once here unless they
    // are contiguous F32 already. Matrices stay in the mapping.
    for (const auto& node : graph.nodes) {
      switch (node->op) {
        case Op::kNorm:
        case Op::kRope: f32_weight(node->src[1]), f32_weight(node->src[2]); break;
        case Op::kAdd:
        case Op::kMul: f32_weight(node->src[1]->is_weight() ? node->src[1] : nullptr); break;
        case Op::kAttention: f32_weight(node->src[3]); break;
        case Op::kFfn:
        case Op::kMoe:
          for (size_t i = 3; i < 6; ++i) f32_weight(node->ffn[i]);
          f32_weight(node->ffn[7]);
          f32_weight(node->selection_bias);
          break;
        default: break;
      }
    }
  }

  void compute(const Graph& graph, const Batch& batch, std::span<float> logits) override {
    batch_ = &batch;
    pool_.run([&](int ith, int nth) {
      for (const auto& node : graph.nodes) {
        if (node->is_weight() || node->op == Op::kReshape) continue;
        run(*node, ith, nth);
        pool_.barrier();
      }
    });
    const float* out = data(graph.logits);
    std::memcpy(logits.data(), out, std::min<size_t>(logits.size(), static_cast<size_t>(graph.logits->n_elements())) * sizeof(float));
    batch_ = nullptr;
  }

 private:
  // ---- planning -------------------------------------------------------------------------------

  int64_t scratch_for(const Node& n) const {
    const int nth = pool_.size();
    switch (n.op) {
      case Op::kMatmul: {
        const TensorView& w = *n.src[0]->weight;
        return align_up(n.src[1]->rows() * act_row_bytes(w.type, n.src[1]->ne[0]));
      }
      case Op::kRope: return align_up(static_cast<int64_t>(nth) * n.ne[0] * 4);
      case Op::kAttention: return align_up(static_cast<int64_t>(nth) * std::max<int64_t>(n_ctx_, 1) * 4);
      case Op::kFfn: return ffn_layout(n, n.rows(), n.rows()).total;
      case Op::kMoe: return ffn_layout(n, n.rows(), n.rows() * n.moe.n_expert_used).total;
      default: return 0;
    }
  }

  // Scratch of a gated FFN over `tokens` inputs and `slots` expert applications.
  struct FfnLayout {
    int64_t xq_gate = 0, xq_up = 0, h = 0, gq = 0, y = 0, route = 0, total = 0;
    int64_t xq_row = 0, gq_row = 0, h_row = 0;
  };
  FfnLayout ffn_layout(const Node& n, int64_t tokens, int64_t slots) const {
    const TensorView& up = *n.ffn[1]->weight;
    const TensorView& down = *n.ffn[2]->weight;
    const Node* gate = n.ffn[0];
    const int64_t n_embd = n.ne[0];
    const int64_t n_ff = static_cast<int64_t>(up.ne[1]);
    FfnLayout l;
    l.xq_row = act_row_bytes(up.type, n_embd);
    l.gq_row = act_row_bytes(down.type, n_ff);
    l.h_row = (gate != nullptr ? 2 : 1) * n_ff;
    int64_t at = 0;
    auto take = [&](int64_t bytes) {
      const int64_t here = at;
      at += align_up(bytes);
      return here;
    };
    l.xq_up = take(tokens * l.xq_row);
    l.xq_gate = gate != nullptr && kc::vec_dot_type(gate->weight->type) != kc::vec_dot_type(up.type)
                    ? take(tokens * act_row_bytes(gate->weight->type, n_embd))
                    : l.xq_up;
    l.h = take(slots * l.h_row * 4);
    l.gq = take(slots * l.gq_row);
    if (n.op == Op::kMoe) {
      const int64_t n_expert = static_cast<int64_t>(up.ne[2]);
      const TensorView& router = *n.ffn[6]->weight;
      l.y = take(slots * n_embd * 4);
      // router activations, probabilities and selection scores, choices, weights, grouping
      l.route = take(tokens * act_row_bytes(router.type, n_embd) + tokens * n_expert * 8 + slots * 16 + (n_expert + 1) * 12);
    }
    l.total = at;
    return l;
  }

  // Weights read as float rows (norm scales, biases, sinks): in place when stored as
  // contiguous F32, else dequantized once here.
  const float* f32_weight(const Node* w) {
    if (w == nullptr) return nullptr;
    const TensorView& v = *w->weight;
    if (v.type == kc::kF32 && v.contiguous()) return reinterpret_cast<const float*>(v.data());
    auto it = f32_copies_.find(&v);
    if (it == f32_copies_.end()) {
      std::vector<float> values(v.ne[0] * v.ne[1] * v.ne[2] * v.ne[3]);
      float* to = values.data();
      for (uint64_t i3 = 0; i3 < v.ne[3]; ++i3) {
        for (uint64_t i2 = 0; i2 < v.ne[2]; ++i2) {
          for (uint64_t i1 = 0; i1 < v.ne[1]; ++i1) {
            kc::dequantize_row(v.type, v.data() + i1 * v.nb[1] + i2 * v.nb[2] + i3 * v.nb[3], to, static_cast<int64_t>(v.ne[0]));
            to += v.ne[0];
          }
        }
      }
      it = f32_copies_.emplace(&v, std::move(values)).first;
    }
    return it->second.data();
  }
  const float* f32_weight_cached(const Node* w) const {
    if (w == nullptr) return nullptr;
    const TensorView& v = *w->weight;
    if (v.type == kc::kF32 && v.contiguous()) return reinterpret_cast<const float*>(v.data());
    return f32_copies_.at(&v).data();
  }

  // ---- execution ------------------------------------------------------------------------------

  float* data(const Node* n) { return arena_.data() + storage_root(n)->offset / 4; }
  const float* operand(const Node* n) { return n == nullptr ? nullptr : n->is_weight() ? f32_weight_cached(n) : data(n); }
  std::byte* scratch() { return scratch_.data(); }

  void run(const Node& n, int ith, int nth) {
    switch (n.op) {
      case Op::kEmbed: return embed(n, ith, nth);
      case Op::kNorm: return norm(n, ith, nth);
      case Op::kMatmul: return matmul(n, ith, nth);
      case Op::kAdd:
      case Op::kMul: return binary(n, ith, nth);
      case Op::kScale:
      case Op::kSigmoid: return unary(n, ith, nth);
      case Op::kSlice: return slice(n, ith, nth);
      case Op::kConcat: return concat(n, ith, nth);
      case Op::kRope: return rope(n, ith, nth);
      case Op::kAttention: return attention(n, ith, nth);
      case Op::kFfn: return ffn(n, ith, nth);
      case Op::kMoe: return moe(n, ith, nth);
      case Op::kOutputRows: return output_rows(n, ith, nth);
      case Op::kWeight:
      case Op::kReshape: return;
    }
  }

  void embed(const Node& n, int ith, int nth) {
    const TensorView& table = *n.src[0]->weight;
    float* out = data(&n);
    const auto [t0, t1] = share(n.ne[1], ith, nth);
    for (int64_t t = t0; t < t1; ++t)
      kc::dequantize_row(table.type, row_of(table, batch_->tokens[static_cast<size_t>(t)]), out + t * n.ne[0], n.ne[0]);
  }

  void norm(const Node& n, int ith, int nth) {
    const float* x = data(n.src[0]);
    const float* w = operand(n.src[1]);
    const float* b = operand(n.src[2]);
    float* y = data(&n);
    const int64_t len = n.ne[0];
    const auto [r0, r1] = share(n.rows(), ith, nth);
    for (int64_t r = r0; r < r1; ++r) {
      float* out = y + r * len;
      if (n.norm.kind == ARCHREG_NORM_RMS) {
        kc::rms_norm_row(x + r * len, out, len, n.norm.eps);
      } else {
        kc::layer_norm_row(x + r * len, out, len, n.norm.eps);
      }
      if (w != nullptr) {
        for (int64_t i = 0; i < len; ++i) out[i] *= w[i];
      }
      if (b != nullptr) {
        for (int64_t i = 0; i < len; ++i) out[i] += b[i];
      }
    }
  }

  // Quantizes rows [0, rows) of x (len values each) into `to` for dots with `weight_type`.
  static void quantize_rows(int32_t weight_type, const float* x, int64_t len, int64_t rows, std::byte* to, int ith, int nth) {
    const int32_t type = kc::vec_dot_type(weight_type);
    const int64_t bytes = static_cast<int64_t>(kc::row_size(type, len));
    const auto [r0, r1] = share(rows, ith, nth);
    for (int64_t r = r0; r < r1; ++r) kc::quantize_row(type, x + r * len, to + r * bytes, len);
  }

  void matmul(const Node& n, int ith, int nth) {
    const TensorView& w = *n.src[0]->weight;
    const Node& x = *n.src[1];
    const int64_t k = x.ne[0];
    const int64_t rows_out = n.ne[0];
    std::byte* xq = scratch();
    const int64_t xq_row = act_row_bytes(w.type, k);
    quantize_rows(w.type, data(&x), k, x.rows(), xq, ith, nth);
    pool_.barrier();
    float* out = data(&n);
    if (w.ne[2] > 1) {  // one matrix per head: x [k, heads, t]
      const int64_t heads = x.ne[1];
      const int64_t tokens = x.ne[2];
      const auto [i0, i1] = share(heads * rows_out, ith, nth);
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t h = i / rows_out;
        const int64_t r = i % rows_out;
        const std::byte* wr = row_of(w, r, h);
        for (int64_t t = 0; t < tokens; ++t)
          out[(t * heads + h) * rows_out + r] = kc::vec_dot(w.type, k, wr, xq + (t * heads + h) * xq_row);
      }
      return;
    }
    tiled_rows(rows_out, x.rows(), nth, [&](int64_t r, int64_t c0, int64_t count) {
      dot_columns(
          w.type, k, row_of(w, r), xq, xq_row, count, [&](int64_t i) { return c0 + i; }, out + c0 * rows_out + r, rows_out);
    });
  }

  // row_tile(r, c0, count) for every row r < rows and tile of columns [c0, c0 + count) of a
  // product: rows in chunks taken as threads come; within a chunk, columns in tiles of
  // kTokenTile, so the chunk's weight rows stay in cache for every tile.
  template <typename RowTile>
  void tiled_rows(int64_t rows, int64_t cols, int nth, RowTile&& row_tile) {
    pool_.for_chunks(rows, row_chunk(rows, nth), [&](int64_t r0, int64_t r1) {
      for (int64_t c0 = 0; c0 < cols; c0 += kTokenTile) {
        const int64_t count = std::min(kTokenTile, cols - c0);
        for (int64_t r = r0; r < r1; ++r) row_tile(r, c0, count);
      }
    });
  }

  void binary(const Node& n, int ith, int nth) {
    const float* a = data(n.src[0]);
    const Node& bn = *n.src[1];
    const float* b = operand(&bn);
    float* y = data(&n);
    const int64_t len = n.ne[0];
    const bool per_row_scalar = bn.ne[0] == 1 && len != 1;
    const bool one_row = !per_row_scalar && bn.rows() == 1;
    const bool is_add = n.op == Op::kAdd;
    const auto [r0, r1] = share(n.rows(), ith, nth);
    for (int64_t r = r0; r < r1; ++r) {
      const float* ar = a + r * len;
      float* yr = y + r * len;
      if (per_row_scalar) {
        const float s = b[r];
        for (int64_t i = 0; i < len; ++i) yr[i] = is_add ? ar[i] + s : ar[i] * s;
        continue;
      }
      const float* br = one_row ? b : b + r * len;
      for (int64_t i = 0; i < len; ++i) yr[i] = is_add ? ar[i] + br[i] : ar[i] * br[i];
    }
  }

  void unary(const Node& n, int ith, int nth) {
    const float* x = data(n.src[0]);
    float* y = data(&n);
    const auto [i0, i1] = share(n.n_elements(), ith, nth);
    if (n.op == Op::kScale) {
      for (int64_t i = i0; i < i1; ++i) y[i] = x[i] * n.factor;
    } else {
      for (int64_t i = i0; i < i1; ++i) y[i] = kc::sigmoid(x[i]);
    }
  }

  void slice(const Node& n, int ith, int nth) {
    const Node& x = *n.src[0];
    const float* in = data(&x);
    float* out = data(&n);
    const auto [r0, r1] = share(n.rows(), ith, nth);
    for (int64_t r = r0; r < r1; ++r) std::memcpy(out + r * n.ne[0], in + r * x.ne[0] + n.begin, static_cast<size_t>(n.ne[0]) * 4);
  }

  void concat(const Node& n, int ith, int nth) {
    const Node& a = *n.src[0];
    const Node& b = *n.src[1];
    const float* pa = data(&a);
    const float* pb = data(&b);
    float* out = data(&n);
    const auto [r0, r1] = share(n.rows(), ith, nth);
    for (int64_t r = r0; r < r1; ++r) {
      // b may have one row per (ne2, ne3) index, repeated over ne1.
      const int64_t rb = b.ne[1] == a.ne[1] ? r : r / a.ne[1];
      std::memcpy(out + r * n.ne[0], pa + r * a.ne[0], static_cast<size_t>(a.ne[0]) * 4);
      std::memcpy(out + r * n.ne[0] + a.ne[0], pb + rb * b.ne[0], static_cast<size_t>(b.ne[0]) * 4);
    }
  }

  void rope(const Node& n, int ith, int nth) {
    const float* x = data(n.src[0]);
    float* y = data(&n);
    kc::RopeParams p;
    p.n_rot = n.rope.n_rot;
    p.neox = n.rope.mode == ARCHREG_ROPE_NEOX;
    p.freq_base = n.rope.freq_base != 0 ? n.rope.freq_base : 10000.0f;
    p.freq_scale = n.rope.freq_scale != 0 ? n.rope.freq_scale : 1.0f;
    p.ext_factor = n.rope.ext_factor;
    p.attn_factor = n.rope.attn_factor != 0 ? n.rope.attn_factor : 1.0f;
    p.beta_fast = n.rope.beta_fast;
    p.beta_slow = n.rope.beta_slow;
    p.n_ctx_orig = n.rope.n_ctx_orig;
    p.freq_factors = operand(n.src[1]);
    float* cache = reinterpret_cast<float*>(scratch()) + static_cast<int64_t>(ith) * n.ne[0];
    const int64_t head = n.ne[0];
    const int64_t heads = n.ne[1];
    const auto [t0, t1] = share(n.ne[2], ith, nth);
    for (int64_t t = t0; t < t1; ++t) {
      kc::rope_cache(p, batch_->n_past + t, cache);
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t at = (t * heads + h) * head;
        std::memcpy(y + at, x + at, static_cast<size_t>(head) * 4);
        kc::rope_apply(p, cache, y + at);
      }
    }
  }

  void attention(const Node& n, int ith, int nth) {
    const Node& q = *n.src[0];
    const Node& k = *n.src[1];
    const Node& v = *n.src[2];
    const float* sinks = operand(n.src[3]);
    const size_t layer = static_cast<size_t>(n.layer);
    const int64_t kw = kv_widths_[layer][0];
    const int64_t vw = kv_widths_[layer][1];
    float* kc_data = k_cache_[layer].data();
    float* vc_data = v_cache_[layer].data();
    const int64_t tokens = q.ne[2];
    {
      const auto [t0, t1] = share(tokens, ith, nth);
      for (int64_t t = t0; t < t1; ++t) {
        std::memcpy(kc_data + (batch_->n_past + t) * kw, data(&k) + t * kw, static_cast<size_t>(kw) * 4);
        std::memcpy(vc_data + (batch_->n_past + t) * vw, data(&v) + t * vw, static_cast<size_t>(vw) * 4);
      }
    }
    pool_.barrier();
    const int64_t dk = q.ne[0];
    const int64_t dv = v.ne[0];
    const int64_t heads = q.ne[1];
    const int64_t group = heads / k.ne[1];
    const float* qd = data(&q);
    float* out = data(&n);
    float* scores = reinterpret_cast<float*>(scratch()) + static_cast<int64_t>(ith) * n_ctx_;
    const float scale = n.attention.scale;
    const float softcap = n.attention.softcap;
    const int64_t window = n.attention.sliding_window;
    // A token attends to every position before it, so later tokens cost more: they are taken
    // first, by whichever thread is free, up to one token's heads at a time (a single decoded
    // token's heads are still shared between the threads).
    const int64_t chunk = std::max<int64_t>(1, std::min(heads, heads * tokens / (static_cast<int64_t>(nth) * 8)));
    pool_.for_chunks(heads * tokens, chunk, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t t = tokens - 1 - i / heads;
        const int64_t h = i % heads;
        const int64_t pos = batch_->n_past + t;
        const int64_t first = window > 0 ? std::max<int64_t>(0, pos - window + 1) : 0;
        const int64_t kvh = h / group;
        const float* qv = qd + (t * heads + h) * dk;
        // q . k for every position at once: one kernel lookup, not one per position.
        dot_columns(
            kc::kF32, dk, reinterpret_cast<const std::byte*>(qv), reinterpret_cast<const std::byte*>(kc_data + kvh * dk),
            kw * static_cast<int64_t>(sizeof(float)), pos + 1 - first, [&](int64_t p) { return first + p; }, scores + first, 1);
        float max = -INFINITY;
        for (int64_t j = first; j <= pos; ++j) {
          float s = scores[j] * scale;
          if (softcap != 0) s = softcap * std::tanh(s / softcap);
          scores[j] = s;
          max = std::max(max, s);
        }
        if (sinks != nullptr) max = std::max(max, sinks[h]);
        double sum = 0.0;
        for (int64_t j = first; j <= pos; ++j) {
          scores[j] = std::exp(scores[j] - max);
          sum += static_cast<double>(scores[j]);
        }
        if (sinks != nullptr) sum += static_cast<double>(std::exp(sinks[h] - max));
        const float inverse = static_cast<float>(1.0 / sum);
        float* o = out + (t * heads + h) * dv;
        std::fill(o, o + dv, 0.0f);
        for (int64_t j = first; j <= pos; ++j) {
          const float p = scores[j] * inverse;
          const float* vr = vc_data + j * vw + kvh * dv;
          for (int64_t d = 0; d < dv; ++d) o[d] += p * vr[d];
        }
      }
    });
  }

  void output_rows(const Node& n, int ith, int nth) {
    const Node& x = *n.src[0];
    const float* in = data(&x) + (x.ne[1] - n.ne[1]) * x.ne[0];
    float* out = data(&n);
    const auto [r0, r1] = share(n.ne[1], ith, nth);
    std::memcpy(out + r0 * n.ne[0], in + r0 * n.ne[0], static_cast<size_t>((r1 - r0) * n.ne[0]) * 4);
  }

  // ---- FFN and MoE ------------------------------------------------------------------------------

  static float activate(const archreg_glu_options& glu, float g) {
    switch (glu.activation) {
      case ARCHREG_ACT_GELU: return kc::gelu(g);
      default: return kc::silu(g);
    }
  }

  // Gate and up rows of one expert (matrix e) for the given activation rows: one product over
  // both, row i < n_ff from gate, the rest from up — the same arithmetic whether the two are
  // parts of one fused storage or stored apart.
  struct Experts {
    const TensorView* gate;
    const TensorView* up;
    const TensorView* down;
    const float* gate_bias;
    const float* up_bias;
    const float* down_bias;
    int64_t n_ff;
    int64_t n_embd;
    // Per-matrix scales (.scale sidecars; F32, one per expert), or null.
    const float* gate_scale;
    const float* up_scale;
    const float* down_scale;
  };

  static const float* scale_of(const TensorView* w) {
    return w != nullptr && w->scale != nullptr ? reinterpret_cast<const float*>(w->scale->data()) : nullptr;
  }

  Experts experts_of(const Node& n) const {
    const TensorView* gate = n.ffn[0] != nullptr ? n.ffn[0]->weight : nullptr;
    return Experts{gate,
                   n.ffn[1]->weight,
                   n.ffn[2]->weight,
                   f32_weight_cached(n.ffn[3]),
                   f32_weight_cached(n.ffn[4]),
                   f32_weight_cached(n.ffn[5]),
                   static_cast<int64_t>(n.ffn[1]->weight->ne[1]),
                   n.ne[0],
                   scale_of(gate),
                   scale_of(n.ffn[1]->weight),
                   scale_of(n.ffn[2]->weight)};
  }

  // h[slot][row] for one row of gate|up of expert e, for `count` consecutive slots from
  // `first_slot`; slot i reads activation row tokens[i] (or first_slot + i when tokens is null).
  void gate_up_row(const Experts& x, const FfnLayout& l, int64_t e, int64_t row, int64_t first_slot, const int32_t* tokens, int64_t count) {
    const bool from_gate = x.gate != nullptr && row < x.n_ff;
    const TensorView& w = from_gate ? *x.gate : *x.up;
    const int64_t r = from_gate || x.gate == nullptr ? row : row - x.n_ff;
    const std::byte* wr = row_of(w, r, e);
    const std::byte* xq = scratch() + (from_gate ? l.xq_gate : l.xq_up);
    const int64_t xq_row = act_row_bytes(w.type, x.n_embd);
    float* h = reinterpret_cast<float*>(scratch() + l.h);
    dot_columns(
        w.type, x.n_embd, wr, xq, xq_row, count, [&](int64_t i) { return tokens != nullptr ? tokens[i] : first_slot + i; },
        h + first_slot * l.h_row + row, l.h_row);
  }

  // GLU of one slot's h row (in place into its first n_ff values), then quantized for down.
  void glu_slot(const Node& n, const Experts& x, const FfnLayout& l, int64_t e, int64_t slot) {
    float* h = reinterpret_cast<float*>(scratch() + l.h) + slot * l.h_row;
    const float* gb = x.gate_bias != nullptr ? x.gate_bias + e * x.n_ff : nullptr;
    const float* ub = x.up_bias != nullptr ? x.up_bias + e * x.n_ff : nullptr;
    const archreg_glu_options& glu = n.op == Op::kMoe ? n.moe.glu : n.glu;
    if (x.gate_scale != nullptr || x.up_scale != nullptr) {
      // Per-matrix scales, in llama.cpp's order: an expert's product times its scale, then the
      // bias (build_moe_ffn); a dense FFN's product plus its bias, then times the scale (build_ffn).
      const bool scale_first = n.op == Op::kMoe;
      const auto apply = [&](float* row, const float* bias, const float* scale) {
        const float s = scale != nullptr ? scale[e] : 1.0f;
        for (int64_t i = 0; i < x.n_ff; ++i) {
          const float b = bias != nullptr ? bias[i] : 0.0f;
          row[i] = scale_first ? row[i] * s + b : (row[i] + b) * s;
        }
      };
      if (x.gate != nullptr) apply(h, gb, x.gate_scale);
      apply(h + (x.gate != nullptr ? x.n_ff : 0), ub, x.up_scale);
      gb = ub = nullptr;
    }
    if (x.gate == nullptr) {
      for (int64_t i = 0; i < x.n_ff; ++i) h[i] = activate(glu, h[i] + (ub ? ub[i] : 0.0f));
    } else {
      for (int64_t i = 0; i < x.n_ff; ++i) {
        const float g = gb != nullptr ? h[i] + gb[i] : h[i];
        const float u = ub != nullptr ? h[x.n_ff + i] + ub[i] : h[x.n_ff + i];
        h[i] = glu.activation == ARCHREG_ACT_SWIGLU_OAI ? kc::swiglu_oai(g, u, glu.alpha, glu.limit) : activate(glu, g) * u;
      }
    }
    kc::quantize_row(kc::vec_dot_type(x.down->type), h, scratch() + l.gq + slot * l.gq_row, x.n_ff);
  }

  void ffn(const Node& n, int ith, int nth) {
    const Experts x = experts_of(n);
    const int64_t tokens = n.rows();
    const FfnLayout l = ffn_layout(n, tokens, tokens);
    const float* in = data(n.src[0]);
    quantize_rows(x.up->type, in, x.n_embd, tokens, scratch() + l.xq_up, ith, nth);
    if (l.xq_gate != l.xq_up) quantize_rows(x.gate->type, in, x.n_embd, tokens, scratch() + l.xq_gate, ith, nth);
    pool_.barrier();
    tiled_rows(l.h_row, tokens, nth, [&](int64_t r, int64_t c0, int64_t count) { gate_up_row(x, l, 0, r, c0, nullptr, count); });
    pool_.barrier();
    const auto [t0, t1] = share(tokens, ith, nth);
    for (int64_t t = t0; t < t1; ++t) glu_slot(n, x, l, 0, t);
    pool_.barrier();
    float* out = data(&n);
    const std::byte* gq = scratch() + l.gq;
    tiled_rows(x.n_embd, tokens, nth, [&](int64_t r, int64_t c0, int64_t count) {
      // build_ffn: (product + bias) * scale, as product * scale + bias * scale
      const float scaled_bias = x.down_bias != nullptr && x.down_scale != nullptr ? x.down_bias[r] * x.down_scale[0] : 0.0f;
      const float* bias = x.down_bias == nullptr ? nullptr : x.down_scale != nullptr ? &scaled_bias : x.down_bias + r;
      dot_columns(
          x.down->type, x.n_ff, row_of(*x.down, r), gq, l.gq_row, count, [&](int64_t i) { return c0 + i; }, out + c0 * x.n_embd + r,
          x.n_embd, bias, x.down_scale);
    });
  }

  // Routing of one token: which experts, with which weights (llama.cpp's build_moe_ffn order).
  static void route(const archreg_moe_options& o, float* probs, float* selection, const float* selection_bias, int64_t n_expert,
                    int32_t* chosen, float* weights) {
    switch (o.gating) {
      case ARCHREG_GATING_SOFTMAX: kc::softmax_row(probs, n_expert); break;
      case ARCHREG_GATING_SIGMOID:
        for (int64_t e = 0; e < n_expert; ++e) probs[e] = kc::sigmoid(probs[e]);
        break;
      default: break;  // SOFTMAX_TOPK: raw logits now, softmax over the chosen below
    }
    for (int64_t e = 0; e < n_expert; ++e) selection[e] = selection_bias != nullptr ? probs[e] + selection_bias[e] : probs[e];
    if (o.n_group > 1) {
      // Keep the n_group_used groups whose two best experts score highest.
      const int64_t per_group = n_expert / o.n_group;
      thread_local std::vector<std::pair<float, int64_t>> groups;
      groups.clear();
      for (int64_t gi = 0; gi < o.n_group; ++gi) {
        float best = -INFINITY;
        float second = -INFINITY;
        for (int64_t e = gi * per_group; e < (gi + 1) * per_group; ++e) {
          if (selection[e] > best) {
            second = best;
            best = selection[e];
          } else if (selection[e] > second) {
            second = selection[e];
          }
        }
        groups.emplace_back(per_group > 1 ? best + second : best, gi);
      }
      std::stable_sort(groups.begin(), groups.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
      for (size_t gi = static_cast<size_t>(o.n_group_used); gi < groups.size(); ++gi) {
        for (int64_t e = groups[gi].second * per_group; e < (groups[gi].second + 1) * per_group; ++e) selection[e] = -INFINITY;
      }
    }
    thread_local std::vector<int32_t> order;  // reused: routing runs for every token of every MoE layer
    order.resize(static_cast<size_t>(n_expert));
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + o.n_expert_used, order.end(),
                      [&](int32_t a, int32_t b) { return selection[a] > selection[b] || (selection[a] == selection[b] && a < b); });
    for (int32_t k = 0; k < o.n_expert_used; ++k) {
      chosen[k] = order[static_cast<size_t>(k)];
      weights[k] = probs[chosen[k]];
    }
    if (o.gating == ARCHREG_GATING_SOFTMAX_TOPK) kc::softmax_row(weights, o.n_expert_used);
    if (o.normalize != 0) {
      float sum = 0.0f;
      for (int32_t k = 0; k < o.n_expert_used; ++k) sum += weights[k];
      sum = std::max(sum, 6.103515625e-5f);
      for (int32_t k = 0; k < o.n_expert_used; ++k) weights[k] /= sum;
    }
    if (o.weight_scale != 1.0f) {
      for (int32_t k = 0; k < o.n_expert_used; ++k) weights[k] *= o.weight_scale;
    }
  }

  void moe(const Node& n, int ith, int nth) {
    const Experts x = experts_of(n);
    const TensorView& router = *n.ffn[6]->weight;
    const float* router_bias = f32_weight_cached(n.ffn[7]);
    const float* selection_bias = f32_weight_cached(n.selection_bias);
    const int64_t tokens = n.rows();
    const int64_t used = n.moe.n_expert_used;
    const int64_t slots_total = tokens * used;
    const int64_t n_expert = static_cast<int64_t>(x.up->ne[2]);
    const FfnLayout l = ffn_layout(n, tokens, slots_total);
    // route scratch: router activations | probs | selection | chosen | weights | counts | offsets |
    // slot tokens | slot of each choice | active experts
    std::byte* r = scratch() + l.route;
    const int64_t rq_row = act_row_bytes(router.type, x.n_embd);
    std::byte* rq = r;
    float* probs = reinterpret_cast<float*>(rq + align_up(tokens * rq_row));
    float* selection = probs + tokens * n_expert;
    int32_t* chosen = reinterpret_cast<int32_t*>(selection + tokens * n_expert);
    float* weights = reinterpret_cast<float*>(chosen + slots_total);
    int32_t* counts = reinterpret_cast<int32_t*>(weights + slots_total);
    int32_t* offsets = counts + n_expert;
    int32_t* slot_token = offsets + n_expert + 1;
    int32_t* slot_of = slot_token + slots_total;
    int32_t* active = slot_of + slots_total;  // the experts with at least one slot, then their count
    const float* in = data(n.src[0]);

    quantize_rows(router.type, in, x.n_embd, tokens, rq, ith, nth);
    quantize_rows(x.up->type, in, x.n_embd, tokens, scratch() + l.xq_up, ith, nth);
    if (l.xq_gate != l.xq_up) quantize_rows(x.gate->type, in, x.n_embd, tokens, scratch() + l.xq_gate, ith, nth);
    pool_.barrier();
    {
      const auto [t0, t1] = share(tokens, ith, nth);
      for (int64_t t = t0; t < t1; ++t) {
        float* p = probs + t * n_expert;
        for (int64_t e = 0; e < n_expert; ++e) {
          p[e] = kc::vec_dot(router.type, x.n_embd, row_of(router, e), rq + t * rq_row);
          if (router_bias != nullptr) p[e] += router_bias[e];
        }
        route(n.moe, p, selection + t * n_expert, selection_bias, n_expert, chosen + t * used, weights + t * used);
      }
    }
    pool_.barrier();
    if (ith == 0) {  // group the (token, choice) slots by expert
      std::fill(counts, counts + n_expert, 0);
      for (int64_t s = 0; s < slots_total; ++s) ++counts[chosen[s]];
      offsets[0] = 0;
      for (int64_t e = 0; e < n_expert; ++e) offsets[e + 1] = offsets[e] + counts[e];
      thread_local std::vector<int32_t> fill;
      fill.assign(offsets, offsets + n_expert);
      for (int64_t s = 0; s < slots_total; ++s) {
        const int32_t slot = fill[static_cast<size_t>(chosen[s])]++;
        slot_token[slot] = static_cast<int32_t>(s / used);
        slot_of[s] = slot;
      }
      int32_t n_active = 0;
      for (int64_t e = 0; e < n_expert; ++e) {
        if (counts[e] > 0) active[n_active++] = static_cast<int32_t>(e);
      }
      active[n_expert] = n_active;
    }
    pool_.barrier();
    const int64_t n_active = active[n_expert];
    {
      const int64_t items = n_active * l.h_row;
      pool_.for_chunks(items, row_chunk(items, nth), [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          const int64_t e = active[i / l.h_row];
          gate_up_row(x, l, e, i % l.h_row, offsets[e], slot_token + offsets[e], counts[e]);
        }
      });
    }
    pool_.barrier();
    {
      const auto [s0, s1] = share(slots_total, ith, nth);
      for (int64_t s = s0; s < s1; ++s) {
        const int64_t e = std::upper_bound(offsets, offsets + n_expert + 1, static_cast<int32_t>(s)) - offsets - 1;
        glu_slot(n, x, l, e, s);
      }
    }
    pool_.barrier();
    float* y = reinterpret_cast<float*>(scratch() + l.y);
    {
      const int64_t items = n_active * x.n_embd;
      const std::byte* gq = scratch() + l.gq;
      pool_.for_chunks(items, row_chunk(items, nth), [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          const int64_t e = active[i / x.n_embd];
          const int64_t row = i % x.n_embd;
          dot_columns(
              x.down->type, x.n_ff, row_of(*x.down, row, e), gq, l.gq_row, counts[e], [&](int64_t s) { return offsets[e] + s; },
              y + static_cast<int64_t>(offsets[e]) * x.n_embd + row, x.n_embd,
              x.down_bias != nullptr ? x.down_bias + e * x.n_embd + row : nullptr, x.down_scale != nullptr ? x.down_scale + e : nullptr);
        }
      });
    }
    pool_.barrier();
    float* out = data(&n);
    const auto [t0, t1] = share(tokens, ith, nth);
    for (int64_t t = t0; t < t1; ++t) {
      float* o = out + t * x.n_embd;
      for (int64_t k = 0; k < used; ++k) {
        const float* ys = y + slot_of[t * used + k] * x.n_embd;
        const float w = weights[t * used + k];
        if (k == 0) {
          for (int64_t i = 0; i < x.n_embd; ++i) o[i] = ys[i] * w;
        } else {
          for (int64_t i = 0; i < x.n_embd; ++i) o[i] += ys[i] * w;
        }
      }
    }
  }

  ThreadPool pool_;
  const Batch* batch_ = nullptr;
  std::vector<float> arena_;
  std::vector<std::byte> scratch_;
  std::map<const TensorView*, std::vector<float>> f32_copies_;
  std::vector<std::vector<float>> k_cache_;
  std::vector<std::vector<float>> v_cache_;
  std::vector<std::array<int64_t, 2>> kv_widths_;
  int64_t n_ctx_ = 0;
  uint64_t kv_bytes_ = 0;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int n_threads) {
  return std::make_unique<CpuBackend>(n_threads);
}

}  // namespace archreg::runtime
