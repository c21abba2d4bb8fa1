// The compute graph a plugin builds from the host's blocks (core/plugin/abi.h): nodes in the
// order they were made (a topological order), each an operation on earlier nodes, weights or
// the batch. A graph is built once per batch size and run for every batch of that size: the
// tokens, their positions and the KV cache length are read when it runs, not when it is built.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "plugin/abi.h"
#include "runtime/model.hpp"

// The opaque handle of the ABI is the host's node.
struct archreg_tensor {
  enum class Op {
    kWeight,
    kEmbed,
    kNorm,
    kMatmul,
    kAdd,
    kMul,
    kScale,
    kSigmoid,
    kReshape,
    kSlice,
    kConcat,
    kRope,
    kAttention,
    kFfn,
    kMoe,
    kOutputRows,
  };
  Op op = Op::kWeight;
  int32_t id = 0;
  std::array<int64_t, 4> ne{1, 1, 1, 1};  // activations: contiguous float32
  std::array<const archreg_tensor*, 4> src{};
  const archreg::runtime::TensorView* weight = nullptr;  // kWeight

  // Operation parameters (only those of `op` are meaningful).
  archreg_norm_options norm{};
  archreg_rope_options rope{};
  archreg_attention_options attention{};
  archreg_glu_options glu{};
  archreg_moe_options moe{};
  std::array<const archreg_tensor*, 8> ffn{};  // gate, up, down, gate_bias, up_bias, down_bias, router, router_bias
  const archreg_tensor* selection_bias = nullptr;
  int32_t layer = -1;
  float factor = 1.0f;
  int64_t begin = 0;

  // Set by the planner: where the value lives (an offset into the activation arena), or the
  // node it aliases (reshape).
  int64_t offset = -1;
  const archreg_tensor* alias_of = nullptr;
  std::string name;

  bool is_weight() const { return op == Op::kWeight; }
  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  int64_t rows() const { return ne[1] * ne[2] * ne[3]; }
};

namespace archreg::runtime {

using Node = archreg_tensor;

struct Graph {
  int32_t n_tokens = 0;
  bool all_logits = false;  // output_rows keeps every row, not only the last
  std::vector<std::unique_ptr<Node>> nodes;
  const Node* logits = nullptr;
  // Filled by plan(): the activation arena's size and the scratch each node needs.
  int64_t arena_bytes = 0;
  int64_t scratch_bytes = 0;
  // Per layer: the K and V widths (elements per position) that attention stores.
  std::vector<std::array<int64_t, 2>> kv_widths;
};

// The node whose buffer `n` reads (through reshapes, which alias their source).
const Node* storage_root(const Node* n);

// Plans the activation arena (plan.cpp), the same for every backend: each node's value gets an
// offset, reusing the blocks of values whose last reader has run (best fit), and the graph's
// scratch is the largest a node asks for (scratch_for, per backend).
void plan_arena(Graph& graph, const std::function<int64_t(const Node&)>& scratch_for);

}  // namespace archreg::runtime
