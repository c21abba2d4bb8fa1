// The CUDA backend against the CPU backend (the reference), ggml's test-backend-ops in spirit:
// every operation on fresh random data, through the Backend interface both implement, at decode
// (1 token), small batches and prefill sizes; then whole models' logits, each file fused and
// unfused. Without a GPU every CUDA test is reported as skipped, with the reason; the same op
// tests also run with the CPU backend on one thread in place of CUDA (CpuOneThread/...), which
// checks the tests' graphs themselves wherever they are built.
//
// Agreement is measured as the normalised squared error sum((cuda - cpu)^2) / sum(cpu^2): the CPU
// backend quantizes activations to ggml's vec_dot types (Q8_0, Q8_K, ...) and the CUDA backend's
// prefill products round to TF32, so products agree to ~1e-5; a wrong index or formula gives ~1.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "../tools/random_weights.hpp"
#include "../tools/splitmix64.hpp"
#include "cpu/quants.hpp"
#include "registry/registry.hpp"
#include "registry/spec_catalog.hpp"
#include "runtime/backend.hpp"
#include "runtime/graph.hpp"
#include "runtime/model.hpp"
#include "runtime/session.hpp"

namespace archreg::runtime {
namespace {

namespace kc = kernels::cpu;
using Op = Node::Op;

constexpr double kProductLimit = 1e-4;  // quantized activations (CPU) against F32/TF32 (CUDA)
constexpr double kFloatLimit = 1e-8;    // F32 on both sides, in another order

void skip_without_gpu() {
  if (auto why = cuda_unavailable()) GTEST_SKIP() << "CUDA tests need a GPU: " << *why;
}

double nmse(const std::vector<float>& got, const std::vector<float>& want) {
  double err = 0.0;
  double norm = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double d = static_cast<double>(got[i]) - want[i];
    err += d * d;
    norm += static_cast<double>(want[i]) * want[i];
  }
  return norm > 0 ? err / norm : err;
}

// A hand-built graph over random weights: what a plugin's build() would record.
class OpGraph {
 public:
  OpGraph(int32_t n_tokens, uint64_t seed) : rng_(seed) { graph_.n_tokens = n_tokens; }

  Node* add(Op op, std::array<int64_t, 4> ne, std::initializer_list<const Node*> src = {}) {
    auto node = std::make_unique<Node>();
    node->op = op;
    node->id = static_cast<int32_t>(graph_.nodes.size());
    node->ne = ne;
    size_t i = 0;
    for (const Node* s : src) node->src[i++] = s;
    graph_.nodes.push_back(std::move(node));
    if (op != Op::kWeight) graph_.logits = graph_.nodes.back().get();  // the output: the last block made
    return graph_.nodes.back().get();
  }

  // Matrices [k, rows, mats] of `type`, random; with `parts` > 1, that many such stacks stored as
  // one fused tensor (part p is rows [p * rows, (p + 1) * rows) of every matrix), holding the
  // values `parts` separate calls would have made.
  std::vector<Node*> weights(int32_t type, int64_t k, int64_t rows, int64_t mats, int parts = 1) {
    const uint64_t row_bytes = kc::row_size(type, k);
    const size_t part_bytes = static_cast<size_t>(row_bytes) * static_cast<size_t>(rows);
    std::vector<uint8_t>& bytes = buffer(std::vector<uint8_t>(part_bytes * static_cast<size_t>(mats * parts)));
    for (int p = 0; p < parts; ++p) {
      // Weights of about 1/sqrt(k), as trained ones are: a chain of products stays finite.
      const auto values = testing::random_weight_rows(type, k, rows * mats, rng_, 2.0 / std::sqrt(static_cast<double>(k)));
      for (int64_t m = 0; m < mats; ++m) {
        std::copy_n(values.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(m) * part_bytes), part_bytes,
                    bytes.begin() + static_cast<std::ptrdiff_t>((static_cast<size_t>(m * parts + p)) * part_bytes));
      }
    }
    Storage& storage = add_storage(bytes);
    std::vector<Node*> out;
    for (int p = 0; p < parts; ++p) {
      TensorView& v = views_.emplace_back();
      v.name = "w" + std::to_string(views_.size());
      v.type = type;
      v.n_dims = mats > 1 ? 3 : 2;
      v.ne = {static_cast<uint64_t>(k), static_cast<uint64_t>(rows), static_cast<uint64_t>(mats), 1};
      v.nb = {kc::type_size(type), row_bytes, row_bytes * static_cast<uint64_t>(rows * parts),
              row_bytes * static_cast<uint64_t>(rows * parts * mats)};
      v.storage = &storage;
      v.offset = row_bytes * static_cast<uint64_t>(rows * p);
      out.push_back(weight_node(v));
    }
    return out;
  }
  Node* matrix(int32_t type, int64_t k, int64_t rows, int64_t mats = 1) { return weights(type, k, rows, mats)[0]; }

  // F32 values uniform in [lo, hi): norm scales, biases, sinks, rope factors, per-matrix scales.
  Node* values(std::array<int64_t, 4> ne, float lo, float hi) {
    const int64_t n = ne[0] * ne[1] * ne[2] * ne[3];
    std::vector<uint8_t>& bytes = buffer(std::vector<uint8_t>(static_cast<size_t>(n) * 4));
    for (int64_t i = 0; i < n; ++i) {
      const float f = lo + (hi - lo) * static_cast<float>(rng_.uniform());
      std::memcpy(bytes.data() + 4 * i, &f, 4);
    }
    TensorView& v = views_.emplace_back();
    v.name = "v" + std::to_string(views_.size());
    v.type = kc::kF32;
    v.n_dims = 1;
    v.ne = {static_cast<uint64_t>(ne[0]), static_cast<uint64_t>(ne[1]), static_cast<uint64_t>(ne[2]), static_cast<uint64_t>(ne[3])};
    v.nb = {4, 4 * v.ne[0], 4 * v.ne[0] * v.ne[1], 4 * v.ne[0] * v.ne[1] * v.ne[2]};
    v.storage = &add_storage(bytes);
    v.role = spec::Role::kVector;
    return weight_node(v);
  }

  // Activations [n, rows]: rows of a random F32 table looked up by the batch's tokens (0..63).
  Node* input(int64_t n) {
    const Node* table = values({n, kVocab, 1, 1}, -1.0f, 1.0f);
    return add(Op::kEmbed, {n, graph_.n_tokens, 1, 1}, {table});
  }

  Graph& graph() { return graph_; }
  std::span<const std::unique_ptr<Storage>> storages() const { return storages_; }
  static constexpr int64_t kVocab = 64;

 private:
  std::vector<uint8_t>& buffer(std::vector<uint8_t> bytes) { return buffers_.emplace_back(std::move(bytes)); }
  Storage& add_storage(const std::vector<uint8_t>& bytes) {
    auto s = std::make_unique<Storage>();
    s->name = "s" + std::to_string(storages_.size());
    s->host = reinterpret_cast<const std::byte*>(bytes.data());
    s->bytes = bytes.size();
    storages_.push_back(std::move(s));
    return *storages_.back();
  }
  Node* weight_node(const TensorView& v) {
    Node* n = add(Op::kWeight, {static_cast<int64_t>(v.ne[0]), static_cast<int64_t>(v.ne[1]), static_cast<int64_t>(v.ne[2]), 1});
    n->weight = &v;
    return n;
  }

  testing::SplitMix64 rng_;
  Graph graph_;
  std::deque<std::vector<uint8_t>> buffers_;
  std::deque<TensorView> views_;
  std::vector<std::unique_ptr<Storage>> storages_;
};

// The graph's output on one backend for each batch in turn (positions continue from batch to
// batch, through the KV cache).
std::vector<std::vector<float>> run_on(Backend& backend, OpGraph& g, int batches) {
  Graph& graph = g.graph();
  for (const auto& node : graph.nodes) {
    auto why = backend.unsupported(*node);
    EXPECT_FALSE(why.has_value()) << backend.name() << ": " << why.value_or("");
  }
  backend.place(g.storages());
  backend.allocate_kv(graph.kv_widths, 256);
  backend.prepare(graph);
  std::vector<std::vector<float>> out;
  for (int b = 0; b < batches; ++b) {
    std::vector<int32_t> tokens(static_cast<size_t>(graph.n_tokens));
    for (size_t t = 0; t < tokens.size(); ++t) tokens[t] = static_cast<int32_t>((7 * (b * tokens.size() + t) + 3) % OpGraph::kVocab);
    std::vector<float> values(static_cast<size_t>(graph.logits->n_elements()));
    backend.compute(graph, Batch{tokens, static_cast<int64_t>(b) * graph.n_tokens}, values);
    out.push_back(std::move(values));
  }
  return out;
}

// The backend under test: CUDA, or (where there is no GPU too) the CPU backend on one thread,
// which checks that every graph of these tests is valid and that the CPU backend's split of the
// work between threads changes nothing.
std::unique_ptr<Backend> make_backend_under_test(const std::string& name) {
  return name == "cuda" ? make_cuda_backend() : make_cpu_backend(1);
}

// The backend under test against the CPU on the graph `g`, batch by batch; returns its outputs.
std::vector<std::vector<float>> expect_agree(const std::string& backend, OpGraph& g, double limit, const std::string& what,
                                             int batches = 1) {
  auto cpu = make_cpu_backend(2);
  auto tested = make_backend_under_test(backend);
  const auto want = run_on(*cpu, g, batches);
  const auto got = run_on(*tested, g, batches);
  for (int b = 0; b < batches; ++b) {
    // A graph whose reference output is all zeros, or not finite, would check nothing.
    const auto& reference = want[static_cast<size_t>(b)];
    EXPECT_TRUE(std::all_of(reference.begin(), reference.end(), [](float v) { return std::isfinite(v); }) &&
                std::any_of(reference.begin(), reference.end(), [](float v) { return v != 0.0f; }))
        << what << ", batch " << b << ": the CPU's output is all zeros or not finite";
    const double e = nmse(got[static_cast<size_t>(b)], want[static_cast<size_t>(b)]);
    EXPECT_LE(e, limit) << what << ", batch " << b << ": normalised squared error " << e;
    for (float v : got[static_cast<size_t>(b)]) {
      if (!std::isfinite(v)) {
        ADD_FAILURE() << what << ", batch " << b << ": a non-finite output";
        break;
      }
    }
  }
  return got;
}

const int32_t kTypes[] = {kc::kF32,  kc::kF16,  kc::kBF16, kc::kQ4_0, kc::kQ4_1, kc::kQ5_0, kc::kQ5_1,
                          kc::kQ8_0, kc::kQ2_K, kc::kQ3_K, kc::kQ4_K, kc::kQ5_K, kc::kQ6_K, kc::kMXFP4};

std::string type_name(int32_t type) {
  return std::to_string(type);
}

class OpsAgainstCpu : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "cuda") skip_without_gpu();
  }
  std::vector<std::vector<float>> expect_agree(OpGraph& g, double limit, const std::string& what, int batches = 1) {
    return runtime::expect_agree(GetParam(), g, limit, what, batches);
  }
};

// Every weight type at decode (1 token), a small batch (the vector kernel) and a prefill batch
// whose columns and rows do not fill the tiles; float rows also with a length not a multiple of 32.
TEST_P(OpsAgainstCpu, MatmulEveryTypeAtEveryBatchSize) {
  for (int32_t type : kTypes) {
    for (int32_t tokens : {1, 5, 67}) {
      for (int64_t k : {int64_t{256}, int64_t{40}}) {
        if (k % kc::block_size(type) != 0) continue;
        OpGraph g(tokens, 1000 + static_cast<uint64_t>(type));
        const Node* x = g.input(k);
        const Node* w = g.matrix(type, k, 80);
        g.add(Op::kMatmul, {80, tokens, 1, 1}, {w, x});
        expect_agree(g, kProductLimit, "matmul type " + type_name(type) + " k " + std::to_string(k) + " tokens " + std::to_string(tokens));
      }
    }
  }
}

TEST_P(OpsAgainstCpu, MatmulPerHeadMatrices) {
  for (int32_t tokens : {1, 19}) {
    OpGraph g(tokens, 7);
    const Node* x = g.input(64 * 4);
    const Node* xh = g.add(Op::kReshape, {64, 4, tokens, 1}, {x});
    const Node* w = g.matrix(kc::kF16, 64, 32, 4);
    g.add(Op::kMatmul, {32, 4, tokens, 1}, {w, xh});
    expect_agree(g, kProductLimit, "per-head matmul, tokens " + std::to_string(tokens));
  }
}

TEST_P(OpsAgainstCpu, Norms) {
  for (auto kind : {ARCHREG_NORM_RMS, ARCHREG_NORM_LAYER}) {
    OpGraph g(7, 11);
    const Node* x = g.input(300);
    const Node* w = g.values({300, 1, 1, 1}, 0.5f, 1.5f);
    const Node* b = g.values({300, 1, 1, 1}, -0.1f, 0.1f);
    Node* n = g.add(Op::kNorm, {300, 7, 1, 1}, {x, w, kind == ARCHREG_NORM_LAYER ? b : nullptr});
    n->norm.kind = kind;
    n->norm.eps = 1e-5f;
    expect_agree(g, kFloatLimit, kind == ARCHREG_NORM_RMS ? "rms norm" : "layer norm");
  }
}

TEST_P(OpsAgainstCpu, Elementwise) {
  const int32_t tokens = 6;
  auto check = [&](const std::string& what, auto&& build) {
    OpGraph g(tokens, 21);
    build(g, g.input(48));
    expect_agree(g, kFloatLimit, what);
  };
  check("add", [](OpGraph& g, const Node* x) { g.add(Op::kAdd, x->ne, {x, g.add(Op::kScale, x->ne, {x})}); });
  check("add a weight row", [](OpGraph& g, const Node* x) { g.add(Op::kAdd, x->ne, {x, g.values({48, 1, 1, 1}, -1, 1)}); });
  check("mul a scalar per row", [](OpGraph& g, const Node* x) {
    const Node* s = g.add(Op::kSlice, {1, x->ne[1], 1, 1}, {x});
    g.add(Op::kMul, x->ne, {x, s});
  });
  check("scale", [](OpGraph& g, const Node* x) { g.add(Op::kScale, x->ne, {x})->factor = -2.5f; });
  check("sigmoid", [](OpGraph& g, const Node* x) { g.add(Op::kSigmoid, x->ne, {x}); });
  check("slice", [](OpGraph& g, const Node* x) { g.add(Op::kSlice, {20, x->ne[1], 1, 1}, {x})->begin = 13; });
  check("concat, b repeated", [](OpGraph& g, const Node* x) {
    const Node* a = g.add(Op::kReshape, {16, 3, x->ne[1], 1}, {x});
    const Node* b = g.add(Op::kReshape, {8, 1, x->ne[1], 1}, {g.add(Op::kSlice, {8, x->ne[1], 1, 1}, {x})});
    g.add(Op::kConcat, {24, 3, x->ne[1], 1}, {a, b});
  });
  check("output rows", [](OpGraph& g, const Node* x) { g.add(Op::kOutputRows, {48, 2, 1, 1}, {x}); });
}

TEST_P(OpsAgainstCpu, Rope) {
  struct Case {
    const char* what;
    uint32_t mode;
    int32_t n_rot;
    bool factors;
    float ext_factor;
  };
  for (const Case& c :
       {Case{"normal", ARCHREG_ROPE_NORMAL, 64, false, 0.0f}, Case{"neox, partial", ARCHREG_ROPE_NEOX, 32, false, 0.0f},
        Case{"neox, freq factors", ARCHREG_ROPE_NEOX, 64, true, 0.0f}, Case{"YaRN", ARCHREG_ROPE_NORMAL, 64, false, 1.0f}}) {
    OpGraph g(9, 31);
    const Node* x = g.add(Op::kReshape, {64, 4, 9, 1}, {g.input(256)});
    const Node* f = c.factors ? g.values({c.n_rot / 2, 1, 1, 1}, 1.0f, 8.0f) : nullptr;
    Node* r = g.add(Op::kRope, {64, 4, 9, 1}, {x, f});
    r->rope.mode = c.mode;
    r->rope.n_rot = c.n_rot;
    r->rope.freq_base = 10000.0f;
    r->rope.freq_scale = c.ext_factor != 0 ? 0.25f : 1.0f;
    r->rope.ext_factor = c.ext_factor;
    r->rope.attn_factor = 1.0f;
    r->rope.beta_fast = 32.0f;
    r->rope.beta_slow = 1.0f;
    r->rope.n_ctx_orig = 4096;
    expect_agree(g, 1e-7, std::string("rope ") + c.what, 3);
  }
}

TEST_P(OpsAgainstCpu, Attention) {
  struct Case {
    const char* what;
    int64_t heads, kv_heads, dk, dv;
    int32_t tokens;
    int batches;
    bool sinks;
    int32_t window;
    float softcap;
  };
  for (const Case& c :
       {Case{"GQA prefill then more", 8, 2, 64, 64, 37, 3, false, 0, 0.0f}, Case{"GQA decode", 8, 2, 64, 64, 1, 5, false, 0, 0.0f},
        Case{"sinks, sliding window", 4, 4, 64, 64, 11, 4, true, 5, 0.0f}, Case{"softcap", 4, 1, 128, 128, 20, 2, false, 0, 30.0f},
        Case{"MLA-shaped (576 / 512, one cache head)", 4, 1, 576, 512, 9, 3, false, 0, 0.0f}}) {
    OpGraph g(c.tokens, 41);
    g.graph().kv_widths = {{c.kv_heads * c.dk, c.kv_heads * c.dv}};
    const Node* q = g.add(Op::kReshape, {c.dk, c.heads, c.tokens, 1}, {g.input(c.dk * c.heads)});
    const Node* k = g.add(Op::kReshape, {c.dk, c.kv_heads, c.tokens, 1}, {g.input(c.dk * c.kv_heads)});
    const Node* v = g.add(Op::kReshape, {c.dv, c.kv_heads, c.tokens, 1}, {g.input(c.dv * c.kv_heads)});
    const Node* sinks = c.sinks ? g.values({c.heads, 1, 1, 1}, -1.0f, 2.0f) : nullptr;
    Node* a = g.add(Op::kAttention, {c.dv, c.heads, c.tokens, 1}, {q, k, v, sinks});
    a->layer = 0;
    a->attention.scale = 1.0f / std::sqrt(static_cast<float>(c.dk));
    a->attention.sliding_window = c.window;
    a->attention.softcap = c.softcap;
    expect_agree(g, 1e-7, std::string("attention ") + c.what, c.batches);
  }
}

// A gated FFN node [n_embd, tokens] over gate|up (one fused storage, or two tensors) and down.
struct FfnSetup {
  int32_t gate_type = kc::kQ4_K;
  int32_t up_type = kc::kQ4_K;
  int32_t down_type = kc::kQ6_K;
  bool gated = true;
  bool fused = false;
  bool biases = false;
  bool scales = false;
  uint32_t activation = ARCHREG_ACT_SILU;
};

void ffn_weights(OpGraph& g, Node* n, const FfnSetup& s, int64_t n_embd, int64_t n_ff, int64_t mats) {
  if (s.gated && s.fused) {
    const auto parts = g.weights(s.gate_type, n_embd, n_ff, mats, 2);
    n->ffn[0] = parts[0];
    n->ffn[1] = parts[1];
  } else {
    if (s.gated) n->ffn[0] = g.matrix(s.gate_type, n_embd, n_ff, mats);
    n->ffn[1] = g.matrix(s.up_type, n_embd, n_ff, mats);
  }
  n->ffn[2] = g.matrix(s.down_type, n_ff, n_embd, mats);
  if (s.biases) {
    if (s.gated) n->ffn[3] = g.values({n_ff, mats, 1, 1}, -0.5f, 0.5f);
    n->ffn[4] = g.values({n_ff, mats, 1, 1}, -0.5f, 0.5f);
    n->ffn[5] = g.values({n_embd, mats, 1, 1}, -0.5f, 0.5f);
  }
  if (s.scales) {
    for (int i = 0; i < 3; ++i) {
      if (n->ffn[i] == nullptr) continue;
      const_cast<TensorView*>(n->ffn[i]->weight)->scale = g.values({mats, 1, 1, 1}, 0.5f, 2.0f)->weight;
    }
  }
  n->glu.activation = s.activation;
  n->glu.alpha = 1.702f;
  n->glu.limit = 7.0f;
  n->moe.glu = n->glu;
}

TEST_P(OpsAgainstCpu, Ffn) {
  struct Case {
    const char* what;
    FfnSetup s;
  };
  FfnSetup gelu;
  gelu.gate_type = gelu.up_type = kc::kF16;
  gelu.activation = ARCHREG_ACT_GELU;
  FfnSetup oai;
  oai.gate_type = oai.up_type = oai.down_type = kc::kQ8_0;
  oai.biases = true;
  oai.activation = ARCHREG_ACT_SWIGLU_OAI;
  FfnSetup ungated;
  ungated.gated = false;
  FfnSetup mixed;
  mixed.up_type = kc::kQ6_K;
  FfnSetup scaled;
  scaled.biases = scaled.scales = true;
  FfnSetup fused;
  fused.fused = true;
  for (const Case& c :
       {Case{"SwiGLU", FfnSetup{}}, Case{"GeGLU, F16", gelu}, Case{"clamped SwiGLU with biases", oai}, Case{"no gate", ungated},
        Case{"gate and up of different types", mixed}, Case{"scales and biases", scaled}, Case{"gate|up fused", fused}}) {
    for (int32_t tokens : {1, 70}) {
      OpGraph g(tokens, 51);
      const Node* x = g.input(256);
      Node* n = g.add(Op::kFfn, {256, tokens, 1, 1}, {x});
      ffn_weights(g, n, c.s, 256, 512, 1);
      expect_agree(g, kProductLimit, std::string("ffn ") + c.what + ", tokens " + std::to_string(tokens));
    }
  }
}

struct MoeSetup {
  FfnSetup ffn;
  archreg_moe_options moe{};
  int64_t n_expert = 8;
  bool selection_bias = false;
  bool router_bias = false;
};

Node* moe_node(OpGraph& g, const MoeSetup& m, int32_t tokens) {
  const int64_t n_embd = 256;
  const int64_t n_ff = 256;
  const Node* x = g.input(n_embd);
  Node* n = g.add(Op::kMoe, {n_embd, tokens, 1, 1}, {x});
  ffn_weights(g, n, m.ffn, n_embd, n_ff, m.n_expert);
  const archreg_glu_options glu = n->moe.glu;
  n->moe = m.moe;
  n->moe.glu = glu;
  n->ffn[6] = g.matrix(kc::kF32, n_embd, m.n_expert);
  if (m.router_bias) n->ffn[7] = g.values({m.n_expert, 1, 1, 1}, -0.1f, 0.1f);
  if (m.selection_bias) n->selection_bias = g.values({m.n_expert, 1, 1, 1}, -0.5f, 0.5f);
  return n;
}

std::vector<MoeSetup> moe_cases() {
  MoeSetup softmax;
  softmax.moe.n_expert_used = 2;
  softmax.moe.gating = ARCHREG_GATING_SOFTMAX;
  softmax.moe.normalize = 1;
  softmax.moe.weight_scale = 1.0f;
  MoeSetup grouped;  // deepseek-style: sigmoid, selection bias, group-limited, scaled weights
  grouped.n_expert = 16;
  grouped.selection_bias = true;
  grouped.moe.n_expert_used = 4;
  grouped.moe.gating = ARCHREG_GATING_SIGMOID;
  grouped.moe.normalize = 1;
  grouped.moe.weight_scale = 2.5f;
  grouped.moe.n_group = 4;
  grouped.moe.n_group_used = 2;
  grouped.ffn.fused = true;
  MoeSetup oai;  // gpt-oss-style: softmax over the chosen, MXFP4 experts with biases
  oai.router_bias = true;
  oai.moe.n_expert_used = 4;
  oai.moe.gating = ARCHREG_GATING_SOFTMAX_TOPK;
  oai.moe.weight_scale = 1.0f;
  oai.ffn.gate_type = oai.ffn.up_type = oai.ffn.down_type = kc::kMXFP4;
  oai.ffn.biases = true;
  oai.ffn.activation = ARCHREG_ACT_SWIGLU_OAI;
  MoeSetup mixed = softmax;
  mixed.ffn.up_type = kc::kQ5_K;
  mixed.ffn.scales = true;
  return {softmax, grouped, oai, mixed};
}

TEST_P(OpsAgainstCpu, MoeAtEveryBatchSize) {
  int i = 0;
  for (const MoeSetup& m : moe_cases()) {
    for (int32_t tokens : {1, 6, 100}) {
      OpGraph g(tokens, 61);
      moe_node(g, m, tokens);
      expect_agree(g, kProductLimit, "moe case " + std::to_string(i) + ", tokens " + std::to_string(tokens), 2);
    }
    ++i;
  }
}

// The fused gate|up storage and the two tensors it replaces: the same kernel reads the same rows,
// so the outputs are identical, bit for bit.
TEST_P(OpsAgainstCpu, FusedAndUnfusedExpertsAreBitIdentical) {
  for (int32_t tokens : {1, 100}) {
    std::vector<std::vector<float>> outputs;
    for (bool fused : {false, true}) {
      MoeSetup m = moe_cases()[0];
      m.ffn.fused = fused;
      OpGraph g(tokens, 71);
      moe_node(g, m, tokens);
      auto tested = make_backend_under_test(GetParam());
      outputs.push_back(run_on(*tested, g, 1)[0]);
    }
    EXPECT_EQ(outputs[0], outputs[1]) << "tokens " << tokens;
  }
}

INSTANTIATE_TEST_SUITE_P(Cuda, OpsAgainstCpu, ::testing::Values("cuda"));
INSTANTIATE_TEST_SUITE_P(CpuOneThread, OpsAgainstCpu, ::testing::Values("cpu"));

// ---- whole models ------------------------------------------------------------------------------

// The runtime models of tests/fixtures/make_runtime_models.py (scripts/device-check.sh writes
// them and their fused copies): prompt logits and greedy decode steps on CUDA against the CPU,
// and each fused copy against its unfused file on CUDA, bit for bit.
std::filesystem::path models_dir() {
  const char* dir = std::getenv("ARCHREG_CUDA_MODELS");
  return dir != nullptr ? std::filesystem::path(dir) : std::filesystem::path();
}

std::vector<float> model_logits(const std::filesystem::path& file, const std::string& backend, const std::vector<int32_t>& prompt,
                                int steps) {
  registry::Registry registry({registry::SpecCatalog::default_dirs(), registry::Registry::default_plugin_dirs()});
  const Model model = Model::open(file, registry);
  SessionOptions options;
  options.backend = backend;
  options.threads = 2;
  options.n_ctx = 64;
  options.all_logits = true;
  Session session(model, options);
  std::vector<float> all;
  auto logits = session.eval(prompt);
  all.assign(logits.begin(), logits.end());
  for (int s = 0; s < steps; ++s) {
    const int32_t next[1] = {static_cast<int32_t>((31 * s + 5) % 200)};
    logits = session.eval(next);
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

TEST(CudaModels, LogitsMatchTheCpuFusedAndUnfused) {
  skip_without_gpu();
  if (IsSkipped()) return;
  const std::filesystem::path dir = models_dir();
  if (dir.empty() || !std::filesystem::is_directory(dir)) {
    GTEST_SKIP() << "set ARCHREG_CUDA_MODELS to a directory of runtime models (tests/fixtures/make_runtime_models.py; "
                    "scripts/device-check.sh does)";
  }
  const std::vector<int32_t> prompt = {1, 17, 301, 42, 5, 499, 77, 250, 3, 128, 64, 411, 9, 333, 200, 100};
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (entry.path().extension() != ".gguf" || name.find(".fused.") != std::string::npos) continue;
    ++files;
    SCOPED_TRACE(name);
    const std::vector<float> cpu = model_logits(entry.path(), "cpu", prompt, 4);
    const std::vector<float> cuda = model_logits(entry.path(), "cuda", prompt, 4);
    // As test_run_logits.py holds the CPU to llama.cpp: the largest difference within 2% of the
    // range of the reference's logits (the CPU quantizes activations and the GPU does not, as
    // llama.cpp's two summation orders differ; a wrong kernel moves logits by much more).
    const auto [lo, hi] = std::minmax_element(cpu.begin(), cpu.end());
    double worst = 0.0;
    for (size_t i = 0; i < cpu.size(); ++i) worst = std::max(worst, std::abs(static_cast<double>(cuda[i]) - cpu[i]));
    EXPECT_LE(worst, 2e-2 * (*hi - *lo)) << name << ": CUDA's logits differ from the CPU's by up to " << worst << " for a range of "
                                         << (*hi - *lo);
    std::filesystem::path fused = entry.path();
    fused.replace_extension(".fused.gguf");
    if (std::filesystem::exists(fused)) {
      EXPECT_EQ(model_logits(fused, "cuda", prompt, 4), cuda) << fused.filename().string() << " differs from its unfused file on CUDA";
    }
  }
  EXPECT_GT(files, 0) << "no .gguf in " << dir;
}

}  // namespace
}  // namespace archreg::runtime
