// The CUDA backend: the same graphs as the CPU backend, on one NVIDIA GPU. Weights are uploaded
// once (Backend::place: one allocation, every storage at its own offset, so the parts of a fused
// storage stay one buffer); activations live in one device arena planned like the CPU's; the KV
// cache is F32 as on the CPU. The batch's tokens and position are copied to the device before
// each run and read there by the kernels, so a graph's launches do not depend on them: from its
// second run on, a graph is replayed as a captured CUDA graph (one launch per token at decode).
#include <cuda_runtime_api.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <stdexcept>
#include <vector>

#include "cpu/quants.hpp"
#include "cuda/ops.hpp"
#include "runtime/backend.hpp"
#include "runtime/session.hpp"

namespace archreg::runtime {
namespace {

namespace kg = kernels::cuda;
using Op = Node::Op;

constexpr int64_t kAlign = 256;

int64_t align_up(int64_t n) {
  return (n + kAlign - 1) / kAlign * kAlign;
}

void check(cudaError_t status, std::string_view what) {
  if (status != cudaSuccess) throw std::runtime_error(fmt::format("CUDA: {}: {}", what, cudaGetErrorString(status)));
}

std::string gib(uint64_t bytes) {
  return fmt::format("{:.2f} GiB", static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0));
}

// One device allocation, freed with its owner.
class DeviceMemory {
 public:
  DeviceMemory() = default;
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  ~DeviceMemory() { release(); }
  void allocate(uint64_t bytes, std::string_view what) {
    release();
    if (bytes == 0) return;
    size_t free_bytes = 0;
    size_t total = 0;
    check(cudaMemGetInfo(&free_bytes, &total), "cudaMemGetInfo");
    if (bytes > free_bytes) {
      throw RunError(fmt::format("CUDA: no room for {} ({}): the device has {} free of {}", what, gib(bytes), gib(free_bytes), gib(total)));
    }
    check(cudaMalloc(&ptr_, bytes), what);
    bytes_ = bytes;
  }
  std::byte* data() const { return static_cast<std::byte*>(ptr_); }
  uint64_t bytes() const { return bytes_; }

 private:
  void release() {
    if (ptr_ != nullptr) cudaFree(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
  }
  void* ptr_ = nullptr;
  uint64_t bytes_ = 0;
};

// Pinned host memory for the per-run copies (tokens in, logits out).
class PinnedMemory {
 public:
  PinnedMemory() = default;
  PinnedMemory(const PinnedMemory&) = delete;
  PinnedMemory& operator=(const PinnedMemory&) = delete;
  ~PinnedMemory() {
    if (ptr_ != nullptr) cudaFreeHost(ptr_);
  }
  std::byte* reserve(uint64_t bytes) {
    if (bytes > bytes_) {
      if (ptr_ != nullptr) cudaFreeHost(ptr_);
      ptr_ = nullptr;
      check(cudaMallocHost(&ptr_, bytes), "cudaMallocHost");
      bytes_ = bytes;
    }
    return static_cast<std::byte*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
  uint64_t bytes_ = 0;
};

// Where the scratch of an FFN or MoE node puts each of its buffers (bytes from the scratch's
// start); the same computation sizes the scratch in prepare and slices it when running.
struct FfnScratch {
  int64_t h = 0;        // [slots, n_ff]: the GLU's output, down's input
  int64_t h_pair = -1;  // [slots, 2 n_ff]: gate|up products when gate and up differ in type
  int64_t logits = 0;   // MoE: [tokens, n_expert]
  int64_t selection = 0;
  int64_t chosen = 0;   // [slots] int32
  int64_t weights = 0;  // [slots]
  int64_t offsets = 0;  // [n_expert + 1] int32
  int64_t slot_token = 0;
  int64_t slot_of = 0;
  int64_t tiles = 0;  // [max_tiles * 3] int32
  int64_t n_tiles = 0;
  int64_t y = 0;  // [slots, n_embd]
  int64_t max_tiles = 0;
  int64_t tile_cols = 0;
  int64_t total = 0;
};

bool gate_up_types_differ(const Node& n) {
  return n.ffn[0] != nullptr && n.ffn[0]->weight->type != n.ffn[1]->weight->type;
}

FfnScratch ffn_scratch(const Node& n) {
  const int64_t tokens = n.rows();
  const bool moe = n.op == Op::kMoe;
  const int64_t slots = moe ? tokens * n.moe.n_expert_used : tokens;
  const int64_t n_ff = static_cast<int64_t>(n.ffn[1]->weight->ne[1]);
  const int64_t n_embd = n.ne[0];
  FfnScratch s;
  int64_t at = 0;
  auto take = [&](int64_t bytes) {
    const int64_t here = at;
    at += align_up(bytes);
    return here;
  };
  s.h = take(slots * n_ff * 4);
  if (gate_up_types_differ(n)) s.h_pair = take(slots * 2 * n_ff * 4);
  if (moe) {
    const int64_t n_expert = static_cast<int64_t>(n.ffn[1]->weight->ne[2]);
    s.tile_cols = kg::tile_columns(tokens);
    s.max_tiles = kg::moe_max_tiles(slots, n_expert, s.tile_cols);
    s.logits = take(tokens * n_expert * 4);
    s.selection = take(tokens * n_expert * 4);
    s.chosen = take(slots * 4);
    s.weights = take(slots * 4);
    s.offsets = take((n_expert + 1) * 4);
    s.slot_token = take(slots * 4);
    s.slot_of = take(slots * 4);
    s.tiles = take(s.max_tiles * 3 * 4);
    s.n_tiles = take(4);
    s.y = take(slots * n_embd * 4);
  }
  s.total = at;
  return s;
}

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device) {
    check(cudaSetDevice(device), "cudaSetDevice");
    check(cudaGetDeviceProperties(&props_, device), "cudaGetDeviceProperties");
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    batch_state_.allocate(align_up(sizeof(int64_t)) + align_up(kMaxBatch * sizeof(int32_t)), "the batch's tokens");
    const char* graphs = std::getenv("ARCHREG_CUDA_GRAPHS");
    use_graphs_ = graphs == nullptr || std::string_view(graphs) != "0";
    // Debugging: wait for every node and name the first that fails (no graph capture then).
    const char* sync = std::getenv("ARCHREG_CUDA_SYNC");
    sync_each_node_ = sync != nullptr && std::string_view(sync) == "1";
    if (sync_each_node_) use_graphs_ = false;
  }

  ~CudaBackend() override {
    forget_captures();
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  std::string name() const override { return fmt::format("cuda ({}, sm_{}{})", props_.name, props_.major, props_.minor); }

  std::optional<std::string> unsupported(const Node& node) const override {
    if (node.is_weight() && !kg::weight_type_supported(node.weight->type)) {
      return fmt::format("{} is stored as {}, which it has no kernel for", node.weight->name, gguf::ggml_type_label(node.weight->type));
    }
    if (node.op == Op::kAttention) {
      const int64_t dk = node.src[0]->ne[0];
      const int64_t dv = node.src[2]->ne[0];
      if (dk > kg::kMaxHeadK || dv > kg::kMaxHeadV) {
        return fmt::format("attention with heads of {} (keys) and {} (values) values; its kernel takes up to {} and {}", dk, dv,
                           kg::kMaxHeadK, kg::kMaxHeadV);
      }
    }
    if (node.op == Op::kMoe) {
      const int64_t n_expert = static_cast<int64_t>(node.ffn[1]->weight->ne[2]);
      if (n_expert > kg::kMaxExperts) return fmt::format("MoE with {} experts; its kernels take up to {}", n_expert, kg::kMaxExperts);
      if (node.moe.n_group > 64) return fmt::format("MoE with {} expert groups; its router takes up to 64", node.moe.n_group);
    }
    if (node.op == Op::kEmbed && node.ne[1] > kMaxBatch) return fmt::format("a batch of {} tokens; at most {}", node.ne[1], kMaxBatch);
    return std::nullopt;
  }

  // Every storage on the device, in one allocation. Embedding tables too: a lookup on the device
  // reads a few rows where they already are, and a tied output matrix is the same storage.
  void place(std::span<const std::unique_ptr<Storage>> storages) override {
    uint64_t total = 0;
    for (const auto& s : storages) total += static_cast<uint64_t>(align_up(static_cast<int64_t>(s->bytes)));
    weights_.allocate(total, "the model's weights");
    uint64_t at = 0;
    for (const auto& s : storages) {
      std::byte* to = weights_.data() + at;
      if (s->bytes > 0) check(cudaMemcpy(to, s->host, s->bytes, cudaMemcpyHostToDevice), fmt::format("uploading {}", s->name));
      on_device_[s.get()] = to;
      at += static_cast<uint64_t>(align_up(static_cast<int64_t>(s->bytes)));
    }
  }

  void allocate_kv(std::span<const std::array<int64_t, 2>> widths, int64_t n_ctx) override {
    kv_widths_.assign(widths.begin(), widths.end());
    uint64_t total = 0;
    kv_offsets_.clear();
    for (const auto& w : widths) {
      kv_offsets_.push_back(total);
      total += static_cast<uint64_t>(align_up((w[0] + w[1]) * n_ctx * 4));
    }
    forget_captures();
    kv_.allocate(total, "the KV cache");
    n_ctx_ = n_ctx;
    kv_bytes_ = 0;
    for (const auto& w : widths) kv_bytes_ += static_cast<uint64_t>((w[0] + w[1]) * n_ctx) * sizeof(float);
  }

  uint64_t kv_bytes() const override { return kv_bytes_; }

  void prepare(Graph& graph) override {
    plan_arena(graph, [](const Node& n) { return n.op == Op::kFfn || n.op == Op::kMoe ? ffn_scratch(n).total : int64_t{0}; });
    if (graph.arena_bytes > static_cast<int64_t>(arena_.bytes()) || graph.scratch_bytes > static_cast<int64_t>(scratch_.bytes())) {
      forget_captures();  // captured graphs point into the buffers being replaced
      if (graph.arena_bytes > static_cast<int64_t>(arena_.bytes()))
        arena_.allocate(static_cast<uint64_t>(graph.arena_bytes), "activations");
      if (graph.scratch_bytes > static_cast<int64_t>(scratch_.bytes()))
        scratch_.allocate(static_cast<uint64_t>(graph.scratch_bytes), "scratch");
    }
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
    // The position, then the tokens, in one copy to the device.
    const uint64_t state_bytes = static_cast<uint64_t>(align_up(sizeof(int64_t))) + batch.tokens.size_bytes();
    std::byte* staging = staging_in_.reserve(state_bytes);
    std::memcpy(staging, &batch.n_past, sizeof(int64_t));
    std::memcpy(staging + align_up(sizeof(int64_t)), batch.tokens.data(), batch.tokens.size_bytes());
    check(cudaMemcpyAsync(batch_state_.data(), staging, state_bytes, cudaMemcpyHostToDevice, stream_), "copying the batch");

    auto& run = runs_[&graph];
    if (use_graphs_ && run.exec == nullptr && run.count > 0 && !capture(graph, run)) use_graphs_ = false;
    if (run.exec != nullptr) {
      check(cudaGraphLaunch(run.exec, stream_), "cudaGraphLaunch");
    } else {
      enqueue(graph);
    }
    ++run.count;

    const size_t n = std::min<size_t>(logits.size(), static_cast<size_t>(graph.logits->n_elements()));
    std::byte* out = staging_out_.reserve(n * sizeof(float));
    check(cudaMemcpyAsync(out, data(graph.logits), n * sizeof(float), cudaMemcpyDeviceToHost, stream_), "copying the logits");
    check(cudaStreamSynchronize(stream_), "running the graph");
    std::memcpy(logits.data(), out, n * sizeof(float));
  }

 private:
  static constexpr int64_t kMaxBatch = 1 << 16;

  struct Run {
    cudaGraphExec_t exec = nullptr;
    int64_t count = 0;
  };

  // Captures the graph's launches as a CUDA graph. False (and nothing captured, the stream usable
  // again) when capturing fails: the graph then runs launch by launch, as the first time.
  bool capture(const Graph& graph, Run& run) {
    cudaGraph_t captured = nullptr;
    if (cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal) != cudaSuccess) return (void)cudaGetLastError(), false;
    bool launched = true;
    try {
      enqueue(graph);
    } catch (const std::exception&) {
      launched = false;
    }
    const cudaError_t ended = cudaStreamEndCapture(stream_, &captured);
    cudaError_t status =
        launched && ended == cudaSuccess ? cudaGraphInstantiate(&run.exec, captured, 0) : cudaErrorStreamCaptureInvalidated;
    if (captured != nullptr) cudaGraphDestroy(captured);
    if (status != cudaSuccess) {
      run.exec = nullptr;
      (void)cudaGetLastError();  // clears the capture's error; the eager launches report their own
      fmt::print(stderr, "archreg: CUDA graph capture failed ({}); running launch by launch\n", cudaGetErrorString(status));
      return false;
    }
    return true;
  }

  void forget_captures() {
    for (auto& [graph, run] : runs_) {
      if (run.exec != nullptr) cudaGraphExecDestroy(run.exec);
      run.exec = nullptr;
    }
  }

  // ---- operands ----------------------------------------------------------------------------------

  const int64_t* n_past() const { return reinterpret_cast<const int64_t*>(batch_state_.data()); }
  const int32_t* tokens() const { return reinterpret_cast<const int32_t*>(batch_state_.data() + align_up(sizeof(int64_t))); }

  float* data(const Node* n) const { return reinterpret_cast<float*>(arena_.data()) + storage_root(n)->offset / 4; }
  std::byte* scratch(int64_t offset) const { return scratch_.data() + offset; }

  const uint8_t* on_device(const TensorView& v) const { return reinterpret_cast<const uint8_t*>(on_device_.at(v.storage)) + v.offset; }

  // Weights read as float rows (norm scales, biases, sinks, rope factors): in place when stored
  // as contiguous F32, else dequantized on the host once and uploaded.
  void f32_weight(const Node* w) {
    if (w == nullptr) return;
    const TensorView& v = *w->weight;
    if ((v.type == kernels::cpu::kF32 && v.contiguous()) || f32_copies_.count(&v) > 0) return;
    std::vector<float> values(v.ne[0] * v.ne[1] * v.ne[2] * v.ne[3]);
    float* to = values.data();
    for (uint64_t i3 = 0; i3 < v.ne[3]; ++i3) {
      for (uint64_t i2 = 0; i2 < v.ne[2]; ++i2) {
        for (uint64_t i1 = 0; i1 < v.ne[1]; ++i1) {
          kernels::cpu::dequantize_row(v.type, v.data() + i1 * v.nb[1] + i2 * v.nb[2] + i3 * v.nb[3], to, static_cast<int64_t>(v.ne[0]));
          to += v.ne[0];
        }
      }
    }
    auto& copy = f32_copies_[&v];
    copy = std::make_unique<DeviceMemory>();
    copy->allocate(values.size() * sizeof(float), v.name);
    check(cudaMemcpy(copy->data(), values.data(), values.size() * sizeof(float), cudaMemcpyHostToDevice),
          fmt::format("uploading {}", v.name));
  }
  const float* f32(const Node* w) const {
    if (w == nullptr) return nullptr;
    const TensorView& v = *w->weight;
    auto it = f32_copies_.find(&v);
    if (it != f32_copies_.end()) return reinterpret_cast<const float*>(it->second->data());
    return reinterpret_cast<const float*>(on_device(v));
  }
  const float* operand(const Node* n) const { return n == nullptr ? nullptr : n->is_weight() ? f32(n) : data(n); }

  // A weight as the product kernels read it, with its per-matrix scale and a bias node.
  kg::Weight weight(const TensorView& v, const Node* bias = nullptr) const {
    kg::Weight w;
    w.data = on_device(v);
    w.type = v.type;
    w.row_bytes = static_cast<int64_t>(v.nb[1]);
    w.mat_bytes = static_cast<int64_t>(v.nb[2]);
    w.scale = v.scale != nullptr ? reinterpret_cast<const float*>(on_device(*v.scale)) : nullptr;
    w.bias = f32(bias);
    return w;
  }

  // ---- execution ---------------------------------------------------------------------------------

  void enqueue(const Graph& graph) {
    for (const auto& node : graph.nodes) {
      if (node->is_weight() || node->op == Op::kReshape) continue;
      run(*node);
      if (sync_each_node_)
        check(cudaStreamSynchronize(stream_), fmt::format("node {} ({}, op {})", node->id, node->name, static_cast<int>(node->op)));
    }
    check(cudaGetLastError(), "launching the graph's kernels");
  }

  void run(const Node& n) {
    switch (n.op) {
      case Op::kEmbed: {
        const TensorView& table = *n.src[0]->weight;
        return kg::embed(on_device(table), table.type, static_cast<int64_t>(table.nb[1]), n.ne[0], tokens(), n.ne[1], data(&n), stream_);
      }
      case Op::kNorm:
        return kg::norm(data(n.src[0]), data(&n), n.ne[0], n.rows(), n.norm.kind == ARCHREG_NORM_RMS, n.norm.eps, operand(n.src[1]),
                        operand(n.src[2]), stream_);
      case Op::kMatmul: return matmul(n);
      case Op::kAdd:
      case Op::kMul: {
        const Node& b = *n.src[1];
        const bool per_row_scalar = b.ne[0] == 1 && n.ne[0] != 1;
        return kg::binary(data(n.src[0]), operand(&b), data(&n), n.ne[0], n.rows(), !per_row_scalar && b.rows() == 1, per_row_scalar,
                          n.op == Op::kAdd, stream_);
      }
      case Op::kScale: return kg::scale(data(n.src[0]), data(&n), n.n_elements(), n.factor, stream_);
      case Op::kSigmoid: return kg::sigmoid(data(n.src[0]), data(&n), n.n_elements(), stream_);
      case Op::kSlice: return kg::slice(data(n.src[0]), data(&n), n.src[0]->ne[0], n.begin, n.ne[0], n.rows(), stream_);
      case Op::kConcat: {
        const Node& a = *n.src[0];
        const Node& b = *n.src[1];
        return kg::concat(data(&a), data(&b), data(&n), a.ne[0], b.ne[0], n.rows(), b.ne[1] == a.ne[1] ? 1 : a.ne[1], stream_);
      }
      case Op::kRope: return rope(n);
      case Op::kAttention: return attention(n);
      case Op::kFfn:
      case Op::kMoe: return ffn(n);
      case Op::kOutputRows: {
        const Node& x = *n.src[0];
        return kg::copy(data(&x) + (x.ne[1] - n.ne[1]) * x.ne[0], data(&n), n.n_elements(), stream_);
      }
      case Op::kWeight:
      case Op::kReshape: return;
    }
  }

  void matmul(const Node& n) {
    const TensorView& w = *n.src[0]->weight;
    const Node& x = *n.src[1];
    kg::Product p;
    p.w = weight(w);
    p.w.scale = nullptr;  // the builder applies a matmul's scale as its own node
    p.k = x.ne[0];
    p.rows = n.ne[0];
    p.x = data(&x);
    p.y = data(&n);
    if (w.ne[2] > 1) {  // one matrix per head: x [k, heads, tokens]
      const int64_t heads = x.ne[1];
      p.n_mat = heads;
      p.cols = x.ne[2];
      p.x_col = heads * p.k;
      p.x_mat = p.k;
      p.y_col = heads * p.rows;
      p.y_mat = p.rows;
    } else {
      p.cols = x.rows();
      p.x_col = p.k;
      p.y_col = p.rows;
    }
    kg::product(p, stream_);
  }

  void rope(const Node& n) {
    kg::Rope r;
    r.n_rot = n.rope.n_rot;
    r.neox = n.rope.mode == ARCHREG_ROPE_NEOX;
    r.freq_base = n.rope.freq_base != 0 ? n.rope.freq_base : 10000.0f;
    r.freq_scale = n.rope.freq_scale != 0 ? n.rope.freq_scale : 1.0f;
    r.ext_factor = n.rope.ext_factor;
    r.attn_factor = n.rope.attn_factor != 0 ? n.rope.attn_factor : 1.0f;
    r.beta_fast = n.rope.beta_fast;
    r.beta_slow = n.rope.beta_slow;
    r.n_ctx_orig = n.rope.n_ctx_orig;
    r.freq_factors = operand(n.src[1]);
    kg::rope(r, data(n.src[0]), data(&n), n.ne[0], n.ne[1], n.ne[2], n_past(), stream_);
  }

  void attention(const Node& n) {
    const size_t layer = static_cast<size_t>(n.layer);
    kg::Attention a;
    a.q = data(n.src[0]);
    a.k = data(n.src[1]);
    a.v = data(n.src[2]);
    a.sinks = operand(n.src[3]);
    a.kw = kv_widths_[layer][0];
    a.vw = kv_widths_[layer][1];
    a.k_cache = reinterpret_cast<float*>(kv_.data() + kv_offsets_[layer]);
    a.v_cache = a.k_cache + a.kw * n_ctx_;
    a.out = data(&n);
    a.dk = n.src[0]->ne[0];
    a.dv = n.src[2]->ne[0];
    a.heads = n.src[0]->ne[1];
    a.kv_heads = n.src[1]->ne[1];
    a.tokens = n.src[0]->ne[2];
    a.scale = n.attention.scale;
    a.softcap = n.attention.softcap;
    a.window = n.attention.sliding_window;
    a.n_past = n_past();
    kg::attention(a, stream_);
  }

  // A gated FFN or a MoE layer: [router, routing, grouping,] gate|up with the GLU on the way out,
  // down, [weighted combine]. Dense FFNs are the one-expert case of the same products.
  void ffn(const Node& n) {
    const bool moe = n.op == Op::kMoe;
    const FfnScratch s = ffn_scratch(n);
    const TensorView* gate = n.ffn[0] != nullptr ? n.ffn[0]->weight : nullptr;
    const TensorView& up = *n.ffn[1]->weight;
    const TensorView& down = *n.ffn[2]->weight;
    const int64_t tokens = n.rows();
    const int64_t n_embd = n.ne[0];
    const int64_t n_ff = static_cast<int64_t>(up.ne[1]);
    const int64_t n_expert = moe ? static_cast<int64_t>(up.ne[2]) : 1;
    const int32_t used = moe ? n.moe.n_expert_used : 1;
    const int64_t slots = tokens * used;
    const archreg_glu_options& glu = moe ? n.moe.glu : n.glu;
    const float* in = data(n.src[0]);
    float* h = reinterpret_cast<float*>(scratch(s.h));

    // The columns of the products: the tokens (dense), or the slots grouped by expert.
    kg::Product cols;
    cols.n_mat = n_expert;
    cols.scale_first = moe;
    cols.activation = static_cast<kg::Activation>(glu.activation);
    cols.alpha = glu.alpha;
    cols.limit = glu.limit;
    if (moe) {
      const TensorView& router = *n.ffn[6]->weight;
      float* logits = reinterpret_cast<float*>(scratch(s.logits));
      kg::Product r;
      r.w = weight(router, n.ffn[7]);
      r.k = n_embd;
      r.rows = n_expert;
      r.cols = tokens;
      r.x = in;
      r.x_col = n_embd;
      r.y = logits;
      r.y_col = n_expert;
      r.fp32 = true;
      kg::product(r, stream_);
      kg::Routing routing;
      routing.gating = static_cast<int32_t>(n.moe.gating);
      routing.used = used;
      routing.normalize = n.moe.normalize;
      routing.weight_scale = n.moe.weight_scale;
      routing.n_group = n.moe.n_group;
      routing.n_group_used = n.moe.n_group_used;
      routing.selection_bias = f32(n.selection_bias);
      auto* chosen = reinterpret_cast<int32_t*>(scratch(s.chosen));
      kg::moe_route(routing, logits, reinterpret_cast<float*>(scratch(s.selection)), n_expert, tokens, chosen,
                    reinterpret_cast<float*>(scratch(s.weights)), stream_);
      kg::moe_group(chosen, slots, used, n_expert, s.tile_cols, reinterpret_cast<int32_t*>(scratch(s.offsets)),
                    reinterpret_cast<int32_t*>(scratch(s.slot_token)), reinterpret_cast<int32_t*>(scratch(s.slot_of)),
                    reinterpret_cast<int32_t*>(scratch(s.tiles)), reinterpret_cast<int32_t*>(scratch(s.n_tiles)), stream_);
      cols.tiles = reinterpret_cast<const int32_t*>(scratch(s.tiles));
      cols.n_tiles = reinterpret_cast<const int32_t*>(scratch(s.n_tiles));
      cols.max_tiles = s.max_tiles;
      cols.tile_cols = s.tile_cols;
    } else {
      cols.cols = tokens;
    }

    kg::Product gu = cols;
    gu.k = n_embd;
    gu.rows = n_ff;
    gu.x = in;
    gu.x_col = n_embd;
    gu.gather = moe ? reinterpret_cast<const int32_t*>(scratch(s.slot_token)) : nullptr;
    gu.up = weight(up, n.ffn[4]);
    if (gate == nullptr) {  // no gate: act(up)
      gu.w = gu.up;
      gu.epilogue = kg::Epilogue::kActivation;
      gu.y = h;
      gu.y_col = n_ff;
      kg::product(gu, stream_);
    } else if (!gate_up_types_differ(n)) {  // one product over gate and up, the GLU on the way out
      gu.w = weight(*gate, n.ffn[3]);
      gu.epilogue = kg::Epilogue::kGlu;
      gu.y = h;
      gu.y_col = n_ff;
      kg::product(gu, stream_);
    } else {  // gate and up of different types: two products, then the GLU
      float* pair = reinterpret_cast<float*>(scratch(s.h_pair));
      kg::Product half = gu;
      half.y_col = 2 * n_ff;
      half.w = weight(*gate, n.ffn[3]);
      half.y = pair;
      kg::product(half, stream_);
      half.w = gu.up;
      half.y = pair + n_ff;
      kg::product(half, stream_);
      kg::glu(pair, h, n_ff, slots, cols.activation, cols.alpha, cols.limit, stream_);
    }

    kg::Product d = cols;
    d.w = weight(down, n.ffn[5]);
    d.k = n_ff;
    d.rows = n_embd;
    d.x = h;
    d.x_col = n_ff;
    d.y = moe ? reinterpret_cast<float*>(scratch(s.y)) : data(&n);
    d.y_col = n_embd;
    kg::product(d, stream_);
    if (moe) {
      kg::moe_combine(reinterpret_cast<const float*>(scratch(s.y)), reinterpret_cast<const int32_t*>(scratch(s.slot_of)),
                      reinterpret_cast<const float*>(scratch(s.weights)), data(&n), n_embd, tokens, used, stream_);
    }
  }

  int device_;
  cudaDeviceProp props_{};
  cudaStream_t stream_ = nullptr;
  bool use_graphs_ = true;
  bool sync_each_node_ = false;
  DeviceMemory weights_;
  std::map<const Storage*, std::byte*> on_device_;
  std::map<const TensorView*, std::unique_ptr<DeviceMemory>> f32_copies_;
  DeviceMemory arena_;
  DeviceMemory scratch_;
  DeviceMemory kv_;
  DeviceMemory batch_state_;
  PinnedMemory staging_in_;
  PinnedMemory staging_out_;
  std::vector<uint64_t> kv_offsets_;
  std::vector<std::array<int64_t, 2>> kv_widths_;
  std::map<const Graph*, Run> runs_;
  int64_t n_ctx_ = 0;
  uint64_t kv_bytes_ = 0;
};

}  // namespace

std::optional<std::string> cuda_unavailable() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) return fmt::format("no usable CUDA device ({})", cudaGetErrorString(status));
  if (count == 0) return std::string("no CUDA device");
  return std::nullopt;
}

std::unique_ptr<Backend> make_cuda_backend() {
  if (auto why = cuda_unavailable()) throw std::runtime_error(fmt::format("the CUDA backend cannot run: {}", *why));
  return std::make_unique<CudaBackend>(0);
}

}  // namespace archreg::runtime
