// The qwen-dense plugin: Qwen2 / Qwen2.5 and Qwen3 dense decoders. As llama.cpp's
// src/models/qwen2.cpp and qwen3.cpp: RMS norm -> attention (Q/K/V biases where the file has them,
// per-head Q/K RMS norms where it has them, NeoX RoPE) -> residual -> RMS norm -> SwiGLU FFN ->
// residual, then the output head (with its bias where the file has one).
// A separate library from the qwen MoE plugin because the fused forms it runs differ: the dense
// specs declare attn_qkv only.
#include "plugin/export.hpp"
#include "plugin/graph.hpp"

namespace {

using archreg::plugin::Graph;
using archreg::plugin::Tensor;

int build(const archreg_graph_api_v2* api, archreg_graph* graph, const char*) {
  return archreg::plugin::guarded_build(api, graph, [](const Graph& g) {
    const int32_t n_layer = static_cast<int32_t>(g.hparam("n_layer"));
    const float eps = g.hparam_f("rms_eps", 1e-6);
    Tensor x = g.embed(g.require("token_embd.weight"));
    for (int32_t il = 0; il < n_layer; ++il) {
      archreg::plugin::AttentionConfig attn = archreg::plugin::standard_attention(g, il, ARCHREG_ROPE_NEOX, eps);
      Tensor h = g.rms_norm(x, g.require("attn_norm.weight", il), eps);
      x = g.add(x, archreg::plugin::self_attention(g, il, h, attn));
      h = g.rms_norm(x, g.require("ffn_norm.weight", il), eps);
      x = g.named(g.add(x, g.named(g.ffn(h, archreg::plugin::ffn_weights(g, il)), "ffn_out", il)), "l_out", il);
    }
    archreg::plugin::standard_logits(g, x, eps);
  });
}

}  // namespace

ARCHREG_DEFINE_PLUGIN("qwen-dense", nullptr, build, "attn_qkv")
